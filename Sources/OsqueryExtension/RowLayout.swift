import OsqueryProtocol

/// Precomputed keys of a table's columns, so encoding a row is appends and string compares.
struct RowLayout: Sendable {
    let names: [String]
    let keys: [ThriftString]
    let index: [String: Int]
    /// The keys as they go on the wire, encoded once.
    let keyWire: EncodedStrings
    /// Per column: its type when numeric (a string there is checked), else nil.
    let numeric: [ColumnType?]
    /// Logs a row's mistakes once per table and column.
    let notes: RowNotes
    /// Column aliases mapped to their target's index (used when a row names the alias).
    init(_ schema: TableSchema) {
        var names = schema.columns.map(\.name)
        for a in schema.columnAliases where !names.contains(a.name) { names.append(a.name) }
        names.append("rowid")
        self.names = names
        self.keys = names.map { ThriftString($0) }
        var index: [String: Int] = [:]
        for (i, n) in names.enumerated() where index[n] == nil { index[n] = i }
        self.index = index
        self.keyWire = EncodedStrings(keys)
        func typeNamed(_ name: String) -> ColumnType? { schema.columns.first { $0.name == name }?.type }
        // A column alias has its target's type; rowid is not checked.
        let types = names.dropLast().map { n in typeNamed(n) ?? schema.columnAliases.first { $0.name == n }.flatMap { typeNamed($0.target) } }
        self.notes = RowNotes(table: schema.name, types: types + [nil])
        self.numeric = notes.numeric
    }

    /// The column a row's cell fills: its own position when the row follows the schema's order
    /// (the usual case, a string compare), else a lookup; nil for a key that is no column.
    @inline(__always)
    func column(named name: String, at position: Int) -> Int? {
        if position < names.count, names[position] == name { return position }
        return index[name]
    }

    /// The error of a reply that passed its byte budget after `rows` rows.
    func overBudget(_ maxBytes: Int, afterRows rows: Int, table: String) -> PluginError {
        PluginError(
            "table \(table): result exceeds budget (more than \(maxBytes) bytes after \(rows) rows): "
                + "select fewer columns or add a WHERE")
    }

    /// The row budget check and which columns to send (the used ones), shared by both encoders.
    func columnsToSend(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) throws(PluginError)
        -> [Bool]
    {
        if let maxRows = limits.maxRows, rows.count > maxRows {
            throw PluginError(
                "table \(table): result exceeds budget (\(rows.count) rows, limit \(maxRows)): "
                    + "select fewer columns or add a WHERE")
        }
        var used = [Bool](repeating: true, count: names.count)
        if let set = context.usedColumns {
            for (i, n) in names.enumerated() where n != "rowid" { used[i] = set.contains(n) }
        }
        return used
    }

    func encode(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) throws(PluginError)
        -> [StringMap]
    {
        let used = try columnsToSend(rows, context: context, limits: limits, table: table)
        let maxBytes = limits.maxBytes ?? Int.max
        var bytes = 0
        var out: [StringMap] = []
        out.reserveCapacity(rows.count)
        for row in rows {
            var m = StringMap(minimumCapacity: row.cells.count)
            for (position, cell) in row.cells.enumerated() {
                // A key that is no column is left out (the core would ignore it), and said once.
                guard let i = column(named: cell.column, at: position) else {
                    notes.unknownKey(cell.column)
                    continue
                }
                guard used[i], let text = cell.value.wireText else { continue }
                if numeric[i] != nil { notes.check(cell.value, column: i, name: names[i]) }
                bytes += keys[i].byteCount + text.byteCount + 8
                m.append(keys[i], text)
            }
            bytes += 8
            if bytes > maxBytes { throw overBudget(maxBytes, afterRows: out.count, table: table) }
            out.append(m)
        }
        return out
    }
}

extension RowLayout {
    /// Replies this long are encoded in two halves at once; for fewer rows the second task costs
    /// about what it saves.
    static let concurrentEncodeFrom = 16_384
    /// A run's first buffer, before its first row tells how big the rows are.
    static let firstBufferBytes = 1 << 16
    /// The most a run's buffer is sized ahead without a byte budget (256 MiB).
    static let maxReservedBytes = 1 << 28

    /// ``encode(_:context:limits:table:)`` written straight to wire bytes: the same entries in
    /// the same order, the same budget checks at the same rows. Each value writes its own text
    /// into the buffer (``ColumnValue/writeColumnText(to:)``), and a row's map count is filled
    /// in after its entries, so no string or array is built per cell or per row.
    func encodeWire(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) throws(PluginError)
        -> EncodedRows
    {
        let used = try columnsToSend(rows, context: context, limits: limits, table: table)
        let part = encodeRows(rows[...], used: used, maxBytes: limits.maxBytes ?? Int.max, table: table)
        if let error = part.overBudget { throw error }
        return EncodedRows(count: rows.count, encoded: part.encoded)
    }

    /// ``encodeWire(_:context:limits:table:)`` with a big reply's two halves encoded at once on
    /// two threads (the same bytes; the extension is otherwise idle while it encodes). A budget
    /// exceeded anywhere is found again in one pass, for the same error at the same row.
    func encodeWireConcurrently(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) async
        throws(PluginError) -> EncodedRows
    {
        guard rows.count >= Self.concurrentEncodeFrom else { return try encodeWire(rows, context: context, limits: limits, table: table) }
        let used = try columnsToSend(rows, context: context, limits: limits, table: table)
        let maxBytes = limits.maxBytes ?? Int.max
        let middle = rows.count / 2
        async let firstHalf = encodeRows(rows[..<middle], used: used, maxBytes: maxBytes, table: table)
        let second = encodeRows(rows[middle...], used: used, maxBytes: maxBytes, table: table)
        let first = await firstHalf
        if first.overBudget != nil || second.overBudget != nil || first.bytes > maxBytes - second.bytes {
            return try encodeWire(rows, context: context, limits: limits, table: table)
        }
        var writer = ThriftWriter(reservingCapacity: first.encoded.count + second.encoded.count)
        first.encoded.withUnsafeBytes { writer.writeRaw(bytes: $0) }
        second.encoded.withUnsafeBytes { writer.writeRaw(bytes: $0) }
        return EncodedRows(count: rows.count, encoded: writer.finish())
    }

    /// One run of rows encoded: the bytes, the budget count (keys, values and 8 per entry, 8 per
    /// row) and the budget error at the first row that passed `maxBytes` counting from this run's
    /// start (row numbers are the rows' indices).
    struct EncodedPart: Sendable {
        var encoded: ThriftBytes
        var bytes: Int
        var overBudget: PluginError?
    }

    func encodeRows(_ rows: ArraySlice<Row>, used: [Bool], maxBytes: Int, table: String) -> EncodedPart {
        var bytes = 0
        var writer = ThriftWriter(reservingCapacity: Self.firstBufferBytes)
        var failure: PluginError?
        // A view of the keys, not the arrays: a reference count moved per cell costs more than the cell.
        keyWire.withView { keys in
            for r in rows.indices {
                let rowStart = writer.byteCount
                writer.writeMapBegin(key: .string, value: .string, count: 0)
                let entries = encodeCells(of: rows[r], used: used, keys: keys, to: &writer)
                writer.patchI32(entries, at: rowStart &+ 2)
                // The same count as before: keys, values and 8 per entry, 8 per row.
                bytes &+= writer.byteCount &- rowStart &+ 2
                if bytes > maxBytes {
                    failure = overBudget(maxBytes, afterRows: r, table: table)
                    return
                }
                // Rows of a table are alike: size the buffer once from the first, plus a margin.
                // Never more than the budget allows (or 256 MiB without one).
                if r == rows.startIndex {
                    let (estimate, overflow) = writer.byteCount.multipliedReportingOverflow(by: rows.count)
                    let cap = min(maxBytes, Self.maxReservedBytes)
                    writer.reserveCapacity(overflow ? cap : min(estimate / 8 * 9 + 64, cap))
                }
            }
        }
        return EncodedPart(encoded: writer.finish(), bytes: bytes, overBudget: failure)
    }
}

extension RowLayout {
    /// Writes a row's cells of the `used` columns as map entries and returns how many it wrote
    /// (NULLs and keys that are no column are left out: the core would ignore them).
    @inline(__always)
    func encodeCells(of row: Row, used: [Bool], keys: EncodedStrings.View, to writer: inout ThriftWriter) -> Int32 {
        var entries: Int32 = 0
        row.cells.withUnsafeBufferPointer { cells in
            // Cells are read in place through the pointer: no copy of the existential
            // (and retain of its string) per cell.
            guard let base = cells.baseAddress else { return }
            for position in 0..<cells.count {
                let cell = UnsafeRawPointer(base + position)
                let column = cell.assumingMemoryBound(to: String.self)
                let value = (cell + cellValueOffset).assumingMemoryBound(to: (any ColumnValue).self)
                guard let i = self.column(named: column.pointee, at: position) else {
                    notes.unknownKey(column.pointee)
                    continue
                }
                guard used[i] else { continue }
                if numeric[i] != nil { notes.check(value.pointee, column: i, name: names[i]) }
                let entryStart = writer.byteCount
                keys.write(i, to: &writer)
                if value.pointee.writeColumnText(to: &writer) {
                    entries &+= 1
                } else {
                    writer.truncate(to: entryStart)  // NULL: the key goes too
                }
            }
        }
        return entries
    }
}

/// Where a cell's value sits in a `(column: String, value: any ColumnValue)` tuple: after the
/// string, at the existential's alignment (tuples are laid out in order, like structs).
private let cellValueOffset: Int = {
    let align = MemoryLayout<any ColumnValue>.alignment
    return (MemoryLayout<String>.size + align - 1) / align * align
}()
