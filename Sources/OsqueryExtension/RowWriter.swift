import OsqueryProtocol
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where a table's generate writes its rows when it makes many: each row goes straight into the
/// reply's wire bytes, with no dictionary, array or boxed value per row.
///
/// ```swift
/// let numbers = Table("numbers", columns: [.bigint("n"), .text("square")]) { context, rows in
///     for n in 0..<1_000_000 {
///         rows.add(n, String(n * n))   // values in the columns' order
///     }
/// }
/// ```
///
/// Values are given in the order the columns were declared (fewer values leave the last columns
/// NULL, as does an `Optional` that is nil). Only the columns the query uses are sent, and a
/// value is turned into text only when its column is sent. The table's ``TableLimits`` apply as
/// the rows are written: once a budget is passed, `add(_:)` returns false and takes no more
/// rows, and the core gets the budget's error, so a loop can stop early:
/// `guard rows.add(…) else { break }`.
public struct RowWriter: ~Copyable {
    @usableFromInline var writer: ThriftWriter
    /// The positional columns' keys, encoded once; key `i` is `keyBytes[keyStarts[i]..<keyStarts[i + 1]]`.
    @usableFromInline let keyBytes: UnsafeRawPointer
    @usableFromInline let keyStarts: UnsafePointer<Int>
    /// Whether positional column `i` is sent.
    @usableFromInline let sent: UnsafePointer<Bool>
    /// The number of declared columns (the values one row may give).
    @usableFromInline let columnCount: Int
    /// Whether a string cell may need checking: the table has a numeric column.
    @usableFromInline let checksStrings: Bool
    /// Rows written.
    @usableFromInline var rows: Int
    /// Budgets as counts the hot path compares against; Int.max when there is none.
    @usableFromInline let maxRows: Int
    @usableFromInline let maxBytes: Int
    /// Set once a budget is passed or a row is malformed: no more rows are taken.
    @usableFromInline var stopped: Bool
    /// The row being added: the next value's column and the entries written so far.
    @usableFromInline var column = 0
    @usableFromInline var entries: Int32 = 0
    @usableFromInline var rowStart = 0
    /// Bytes of earlier rows already moved to `output`.
    @usableFromInline var spilled = 0
    /// The rows so far, in the buffer the reply is sent from: `writer` holds only the latest
    /// rows and is emptied into it every ``spillSize`` bytes, while they are still in the cache,
    /// so no copy of the whole reply is left for after the generate.
    var output: ByteBuffer?
    @usableFromInline static var spillSize: Int { 1 << 17 }
    // Keeps the memory behind the pointers above.
    let storage: Storage
    let layout: RowLayout
    let usedByName: [Bool]
    let table: String
    var failure: PluginError?

    final class Storage {
        let memory: UnsafeMutableRawPointer
        init(byteCount: Int) {
            guard let m = malloc(max(byteCount, 1)) else { fatalError("RowWriter: out of memory") }
            memory = m
        }
        deinit { free(memory) }
    }

    init(layout: RowLayout, columnCount: Int, used: [Bool], limits: TableLimits, table: String) {
        // One block: the starts (columnCount + 1 Ints), the sent flags, then the key bytes.
        var encodedKeys = ThriftWriter(reservingCapacity: 256)
        var keyStarts = [0]
        for i in 0..<columnCount {
            encodedKeys.writeString(layout.keys[i])
            keyStarts.append(encodedKeys.byteCount)
        }
        let startsSize = (columnCount + 1) * MemoryLayout<Int>.stride
        let storage = Storage(byteCount: startsSize + columnCount + encodedKeys.byteCount)
        let starts = storage.memory.bindMemory(to: Int.self, capacity: columnCount + 1)
        let sent = (storage.memory + startsSize).bindMemory(to: Bool.self, capacity: max(columnCount, 1))
        let keys = storage.memory + startsSize + columnCount
        for i in 0...columnCount { starts[i] = keyStarts[i] }
        encodedKeys.withUnsafeBytes { raw in
            if let from = raw.baseAddress { keys.copyMemory(from: from, byteCount: raw.count) }
        }
        for i in 0..<columnCount { sent[i] = used[i] }
        self.storage = storage
        self.keyBytes = UnsafeRawPointer(keys)
        self.keyStarts = UnsafePointer(starts)
        self.sent = UnsafePointer(sent)
        self.columnCount = columnCount
        self.checksStrings = layout.numeric.contains { $0 != nil }
        self.layout = layout
        self.usedByName = used
        self.table = table
        self.maxRows = limits.maxRows ?? Int.max
        self.maxBytes = limits.maxBytes ?? Int.max
        self.rows = 0
        self.stopped = false
        self.writer = ThriftWriter(reservingCapacity: 1 << 16)
    }

    /// The number of rows written so far.
    public var count: Int { rows }

    /// True once the writer takes no more rows (a budget was passed); the reply will be the
    /// budget's error.
    package var isFull: Bool { stopped }

    /// Adds a row given as its values in the columns' declared order: integers, doubles,
    /// strings, byte arrays, booleans, optionals (nil is NULL) or any ``ColumnValue``.
    /// Returns false when the row was not taken because a budget was passed (or a row gave more
    /// values than the table has columns); the generate's reply is then that error.
    /// - Parameter values: the row's values, one per declared column, in order.
    /// - Returns: true when the row was taken.
    @inlinable
    @discardableResult
    public mutating func add<each V: ColumnValue>(_ values: repeat each V) -> Bool {
        guard beginRow() else { return false }
        repeat cell(each values)
        return finishRow()
    }

    /// Starts a row (its map header, its count patched at the end); false when no more rows are taken.
    @inlinable
    @inline(__always)
    mutating func beginRow() -> Bool {
        if _slowPath(stopped) { return false }
        rowStart = writer.byteCount
        writer.writeMapBegin(key: .string, value: .string, count: 0)
        column = 0
        entries = 0
        return true
    }

    /// Ends a positional row: its value count checked, then ``endRow(start:entries:)``.
    @inlinable
    @inline(__always)
    mutating func finishRow() -> Bool {
        if _slowPath(column > columnCount) { return refuse(tooManyValues: column, rowStart: rowStart) }
        return endRow(start: rowStart, entries: entries)
    }

    /// Writes the next positional cell of the row being added (if its column is sent).
    @inlinable
    @inline(__always)
    mutating func cell<V: ColumnValue>(_ value: V) {
        // Resolved when specialized: only a string in a table with numeric columns is looked at.
        if V.self == String.self, checksStrings, column < columnCount { check(string: value) }
        if column < columnCount, sent[column] {
            let entryStart = writer.byteCount
            writer.writeRaw(
                bytes: UnsafeRawBufferPointer(
                    start: keyBytes + keyStarts[column], count: keyStarts[column &+ 1] &- keyStarts[column]))
            if value.writeColumnText(to: &writer) {
                entries &+= 1
            } else {
                writer.truncate(to: entryStart)  // NULL: the key goes too
            }
        }
        column &+= 1
    }

    /// A string in a numeric column is logged once (the core would read it as NULL).
    @usableFromInline
    func check(string value: some ColumnValue) {
        if layout.numeric[column] != nil { layout.notes.check(value, column: column, name: layout.names[column]) }
    }

    /// Adds a row given by column names (the same rows a table's `[Row]` generate returns);
    /// keys that are no column are left out. Returns false as `add(_:)` does.
    /// - Parameter row: the row's cells by column name.
    /// - Returns: true when the row was taken.
    @discardableResult
    public mutating func add(_ row: Row) -> Bool {
        guard beginRow() else { return false }
        let entries = layout.keyWire.withView { keys in layout.encodeCells(of: row, used: usedByName, keys: keys, to: &writer) }
        return endRow(start: rowStart, entries: entries)
    }

    /// Ends the row begun at `start`: its entry count, then the budgets. The byte count is the
    /// one the `[Row]` encoder keeps (keys, values and 8 per entry, 8 per row), so both kinds of
    /// table stop at the same row.
    @inlinable
    mutating func endRow(start: Int, entries: Int32) -> Bool {
        writer.patchI32(entries, at: start &+ 2)
        rows &+= 1
        if _slowPath(rows > maxRows || spilled &+ writer.byteCount &+ 2 &* rows > maxBytes) {
            return refuse(overBudgetAt: start)
        }
        if _slowPath(writer.byteCount >= Self.spillSize) { spill() }
        return true
    }

    /// Moves the rows in `writer` to `output`.
    @usableFromInline
    mutating func spill() {
        let n = writer.byteCount
        if output == nil { output = ByteBufferAllocator().buffer(capacity: 1 << 20) }
        writer.withUnsafeBytes { _ = output!.writeBytes($0) }
        writer.truncate(to: 0)
        spilled &+= n
    }

    @usableFromInline
    mutating func refuse(overBudgetAt rowStart: Int) -> Bool {
        writer.truncate(to: rowStart)
        rows -= 1
        stopped = true
        if rows >= maxRows {
            failure = PluginError(
                "table \(table): result exceeds budget (more than \(maxRows) rows): select fewer columns or add a WHERE")
        } else {
            failure = layout.overBudget(maxBytes, afterRows: rows, table: table)
        }
        return false
    }

    @usableFromInline
    mutating func refuse(tooManyValues count: Int, rowStart: Int) -> Bool {
        writer.truncate(to: rowStart)
        stopped = true
        failure = PluginError("table \(table): row \(rows) has \(count) values but the table has \(columnCount) columns")
        return false
    }

    /// The rows as the reply carries them, or the error that stopped them.
    consuming func finish() throws(PluginError) -> EncodedRows {
        if let failure { throw failure }
        guard spilled > 0 else { return EncodedRows(count: rows, encoded: writer.finish()) }
        spill()
        return EncodedRows(count: rows, buffer: output!)
    }
}

// `add` for 1 to 16 values without a parameter pack: RowWriter+Arities.swift (generated).
