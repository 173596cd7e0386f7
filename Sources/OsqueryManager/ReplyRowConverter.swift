import CSQLite
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import OsqueryEngine
import OsqueryProtocol
import ThriftCodec

extension ExtensionTable {
    /// Converts an extension's rows as osquery does: a missing key is NULL, an
    /// empty string in a numeric column is NULL, INTEGER parses like strtol
    /// base 0 into 32 bits, BIGINT overflow is NULL, DOUBLE must parse whole.
    /// Keys that are not columns are ignored; `rowid` sets the row's rowid.
    static func rows(from rows: [StringMap], schema: TableSchema, columnKeys: [ThriftString]) throws -> TableRows {
        var out = TableRows(schema: schema, reservingRows: rows.count)
        var rowids: [Int64]? = nil
        for (r, row) in rows.enumerated() {
            let entries = row.entries
            for (c, key) in columnKeys.enumerated() {
                // A repeated key: the last one, as osquery's decoded map keeps it.
                let value = entries.last(where: { $0.key == key })?.value
                out.append(Self.convert(value, to: schema.columns[c].type))
            }
            if let rowid = row["rowid"] {
                guard let text = rowid.string, let id = Int64(text) else {
                    throw EngineError(code: SQLITE_ERROR, message: "Invalid rowid value: \(rowid.lossyString)")
                }
                if rowids == nil { rowids = [Int64](repeating: 0, count: r) }
                rowids?.append(id)
            } else if rowids != nil {
                rowids?.append(Int64(r))
            }
        }
        out.rowids = rowids
        return out
    }

    static func convert(_ value: ThriftString?, to type: ColumnType) -> SQLValue {
        guard let value else { return .null }
        if let text = value.string { return SQLValue.converting(text, to: type) }
        switch type {
        case .text, .unknown, .blob: return .blob(value.bytes)  // raw bytes, unchanged
        default: return SQLValue.converting(value.lossyString, to: type)
        }
    }
}

/// Reads an extension's rows off the wire into ``TextCells``: where each column's value is in
/// the reply, converted when SQLite reads it, with the rules of
/// ``ExtensionTable/rows(from:schema:columnKeys:)`` (which it must match value for value): no
/// string is built for a key or a value, and no array per row.
struct RowConverter: ResponseRowsReader {
    let types: [ColumnType]
    /// Column names' bytes, back to back; key `c` is `keyBytes[keyStart[c]..<keyStart[c + 1]]`.
    let keyBytes: [UInt8]
    let keyStart: [Int]
    /// Per row, per column: ``TextCellsView/cell(offset:length:)`` or ``TextCellsView/missing``.
    var cells: [UInt64] = []
    var rowids: [Int64]?
    /// The keys of the last row, in its order, and what each was (``slot(of:keys:keyStart:columnCount:)``): rows of
    /// one reply nearly always repeat them, so a cell costs one key comparison.
    var layoutKeys: [UnsafeRawBufferPointer] = []
    var layoutSlots: [Int] = []
    var rowCount = 0
    var failure: EngineError?

    /// What a key is: its column's index + 1 in the low bits (0: not a column), and
    /// ``rowidFlag`` when it is `rowid` (which may be a column too).
    static let rowidFlag = 1 << 32

    init(schema: TableSchema, columnKeys: [ThriftString]) {
        self.types = schema.columns.map(\.type)
        var bytes: [UInt8] = []
        var starts = [0]
        for key in columnKeys {
            bytes += key.bytes
            starts.append(bytes.count)
        }
        self.keyBytes = bytes
        self.keyStart = starts
    }

    mutating func discardRows() {
        cells.removeAll()
        rowids = nil
        rowCount = 0
        failure = nil
    }

    mutating func readRows(from r: inout ThriftReader) throws(ThriftError) {
        let header = try r.readListBegin()
        guard header.count == 0 || header.element == .map else {
            throw .invalidData("expected list<map<string,string>>")
        }
        try r.enter()
        defer { r.leave() }
        cells.reserveCapacity(cells.count + header.count * types.count)
        let keyBytes = self.keyBytes
        var thrown: ThriftError?
        keyBytes.withUnsafeBytes { keys in
            do throws(ThriftError) {
                try readRows(header.count, from: &r, keys: keys)
            } catch {
                thrown = error
            }
        }
        // The layout points into this reply: never carried to another.
        layoutKeys.removeAll()
        layoutSlots.removeAll()
        if let thrown { throw thrown }
    }

    mutating func readRows(_ count: Int, from r: inout ThriftReader, keys: UnsafeRawBufferPointer) throws(ThriftError) {
        let columnCount = types.count
        let keyStart = self.keyStart
        for _ in 0..<count {
            let map = try r.readMapBegin()
            guard map.count == 0 || (map.key == .string && map.value == .string) else {
                throw .invalidData("expected map<string,string>")
            }
            let rowStart = cells.count
            for _ in 0..<columnCount { cells.append(TextCellsView.missing) }
            var rowid: UnsafeRawBufferPointer?
            for i in 0..<map.count {
                let k = try r.readStringBytes()
                let v = try r.readStringBytes()
                let slot = Self.slot(of: k, at: i, layoutKeys: &layoutKeys, layoutSlots: &layoutSlots) {
                    Self.slot(of: $0, keys: keys, keyStart: keyStart, columnCount: columnCount)
                }
                // A repeated key: the last one wins, as in a decoded map.
                let column = slot & 0xFFFF_FFFF
                if column != 0 { cells[rowStart &+ column &- 1] = TextCellsView.cell(offset: r.offset &- v.count, length: v.count) }
                if slot & Self.rowidFlag != 0 { rowid = v }
            }
            readRowid(rowid)
            rowCount &+= 1
        }
    }

    /// ``readRows(_:from:keys:)`` for `count` rows of a list already checked whole
    /// (`ThriftReader.skipStringMaps`: every map string to string, every length within the
    /// bytes), written straight to `out` (`count` rows of cells). Nothing is checked twice, so a
    /// cell costs a key comparison and a store. Returns the offset after the rows.
    mutating func convertChecked(
        _ count: Int, bytes: UnsafeRawBufferPointer, at start: Int, keys: UnsafeRawBufferPointer,
        into out: UnsafeMutablePointer<UInt64>
    ) -> Int {
        let base = bytes.baseAddress!
        let columnCount = types.count
        // Local arrays: no reference counting or uniqueness checks on `self`'s in the loop.
        var layoutKeys = self.layoutKeys
        var layoutSlots = self.layoutSlots
        self.layoutKeys = []
        self.layoutSlots = []
        defer {
            self.layoutKeys = layoutKeys
            self.layoutSlots = layoutSlots
        }
        let keyStart = self.keyStart
        @inline(__always) func length(at offset: Int) -> Int {
            Int(UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        }
        var at = start
        for row in 0..<count {
            let rowCells = out + row &* columnCount
            rowCells.initialize(repeating: TextCellsView.missing, count: columnCount)
            let entries = length(at: at &+ 2)
            at &+= 6
            var rowid: UnsafeRawBufferPointer?
            for i in 0..<entries {
                let keyLength = length(at: at)
                let k = UnsafeRawBufferPointer(start: base + (at &+ 4), count: keyLength)
                at &+= 4 &+ keyLength
                let valueLength = length(at: at)
                let valueAt = at &+ 4
                at = valueAt &+ valueLength
                let slot = Self.slot(of: k, at: i, layoutKeys: &layoutKeys, layoutSlots: &layoutSlots) {
                    Self.slot(of: $0, keys: keys, keyStart: keyStart, columnCount: columnCount)
                }
                // A repeated key: the last one wins, as in a decoded map.
                let column = slot & 0xFFFF_FFFF
                if column != 0 { rowCells[column &- 1] = TextCellsView.cell(offset: valueAt, length: valueLength) }
                if slot & Self.rowidFlag != 0 { rowid = UnsafeRawBufferPointer(start: base + valueAt, count: valueLength) }
            }
            readRowid(rowid)
            rowCount &+= 1
        }
        return at
    }

    /// The slot of entry `i`'s key `k`: the previous row's when its key there was the same (one
    /// comparison), else looked up and remembered for the next row.
    @inline(__always)
    static func slot(
        of k: UnsafeRawBufferPointer, at i: Int, layoutKeys: inout [UnsafeRawBufferPointer], layoutSlots: inout [Int],
        lookUp: (UnsafeRawBufferPointer) -> Int
    ) -> Int {
        if i < layoutKeys.count, same(layoutKeys[i], k) { return layoutSlots[i] }
        let slot = lookUp(k)
        if i < layoutKeys.count {
            layoutKeys[i] = k
            layoutSlots[i] = slot
        } else {
            layoutKeys.append(k)
            layoutSlots.append(slot)
        }
        return slot
    }

    /// ``layoutSlots``' value for a key.
    static func slot(of key: UnsafeRawBufferPointer, keys: UnsafeRawBufferPointer, keyStart: [Int], columnCount: Int) -> Int {
        var slot = 0
        // Column names are unique (SQLite refuses a table that declares one twice).
        for c in 0..<columnCount where Self.same(UnsafeRawBufferPointer(rebasing: keys[keyStart[c]..<keyStart[c &+ 1]]), key) {
            slot = c &+ 1
            break
        }
        let name: StaticString = "rowid"
        if Self.same(key, UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)) { slot |= Self.rowidFlag }
        return slot
    }

    /// The `rowid` key sets the row's rowid; once one row has one, every row gets one.
    mutating func readRowid(_ value: UnsafeRawBufferPointer?) {
        if let text = value {
            // Int64(String) semantics: an optional sign and decimal digits, nothing else.
            guard let id = String(validating: text.bindMemory(to: UInt8.self), as: UTF8.self).flatMap({ Int64($0) }) else {
                if failure == nil {
                    failure = EngineError(
                        code: SQLITE_ERROR,
                        message: "Invalid rowid value: \(String(decoding: text.bindMemory(to: UInt8.self), as: UTF8.self))")
                }
                return
            }
            if rowids == nil { rowids = [Int64](repeating: 0, count: rowCount) }
            rowids?.append(id)
        } else if rowids != nil {
            rowids?.append(Int64(rowCount))
        }
    }

    /// Byte equality of two short keys (column names), without a call for the usual ones.
    @inline(__always)
    static func same(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        let n = a.count
        guard n == b.count else { return false }
        if n == 0 { return true }
        if n <= 8 {
            var i = 0
            while i < n {
                if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
                i &+= 1
            }
            return true
        }
        return memcmp(a.baseAddress!, b.baseAddress!, n) == 0
    }

    /// Lists this long are converted on another thread while SQLite scans the rows already
    /// converted: the conversion then costs the query no time of its own (the scan is slower).
    static let backgroundFrom = 8192
    /// Rows converted between two publications of progress.
    static let backgroundChunk = 2048

    /// Converts the rows of `list` on another thread, in order, publishing them as they are
    /// ready; the rows returned wait for a row that is not ready yet (``CellsProgress``). A bad
    /// rowid fails the statement when its scan reaches the end.
    func convertInBackground(
        _ list: ExtensionRowsReader.List, bytes: UnsafeRawBufferPointer, owner: any AnyObject & Sendable, table: String
    ) -> TableRows {
        let columns = types.count
        let total = list.count
        let progress = CellsProgress()
        nonisolated(unsafe) let cells = UnsafeMutablePointer<UInt64>.allocate(capacity: max(total &* columns, 1))
        // Numbers are parsed here too, off the query thread, which then only hands them over.
        let numericColumns = types.indices.filter { types[$0].isNumeric }
        nonisolated(unsafe) let parsed =
            numericColumns.isEmpty ? nil : UnsafeMutablePointer<UInt64>.allocate(capacity: max(total &* columns, 1))
        let textCells = TextCells(
            owner: owner, base: bytes.baseAddress!, types: types, adopting: cells, parsed: parsed, rowCount: total,
            progress: progress)
        // The reply stays where it is while `textCells` (captured) keeps its owner alive; only
        // this thread writes the cells, and readers take rows only once they are published.
        nonisolated(unsafe) let bytes = bytes
        nonisolated(unsafe) let start = self
        DispatchQueue.global().async {
            withExtendedLifetime(textCells) {
                var converter = start
                // The list was checked whole before (by the framer or ExtensionRowsReader): its
                // header is 5 bytes.
                var at = list.start &+ 5
                var done = 0
                let keyBytes = converter.keyBytes
                let types = converter.types
                keyBytes.withUnsafeBytes { keys in
                    numericColumns.withUnsafeBufferPointer { numeric in
                        types.withUnsafeBufferPointer { types in
                            while done < total, !progress.isCancelled {
                                let n = min(Self.backgroundChunk, total &- done)
                                at = converter.convertChecked(n, bytes: bytes, at: at, keys: keys, into: cells + done &* columns)
                                if let parsed {
                                    for row in done..<(done &+ n) {
                                        TextCells.parseNumbers(
                                            row: cells + row &* columns, into: parsed + row &* columns, numericColumns: numeric,
                                            types: types, base: bytes.baseAddress!)
                                    }
                                }
                                done &+= n
                                progress.publish(ready: done)
                            }
                        }
                    }
                }
                progress.finish(failure: converter.failure?.message, rowids: converter.rowids)
            }
        }
        return TableRows(source: textCells)
    }

    /// The rows, kept as text in the reply read (whose memory starts at `base` and stays valid
    /// while `owner` lives), or the first bad rowid's error.
    consuming func finish(owner: any AnyObject & Sendable, base: UnsafeRawPointer) throws(EngineError) -> TableRows {
        if let failure { throw failure }
        return TableRows(source: TextCells(owner: owner, base: base, types: types, cells: cells), rowids: rowids)
    }
}

/// Reads an extension reply's rows: a short list is converted as it is read; a long one
/// (``RowConverter/backgroundFrom`` rows or more) is only found and checked (its shape and every
/// length), to be converted while SQLite scans it.
struct ExtensionRowsReader: ResponseRowsReader {
    struct List: Sendable {
        /// The offset of the list's header in the reply.
        var start: Int
        var count: Int
    }
    var converter: RowConverter
    var longList: List?
    /// The most cells (rows × columns) the rows may take (``ExtensionTable/cellBudget(replyBytes:floor:)``).
    var cellBudget = Int.max
    /// Set to the list's row count when its cells would pass ``cellBudget``: the list was
    /// skipped, nothing was allocated for it.
    var refusedRows: Int?

    mutating func discardRows() {
        converter.discardRows()
        longList = nil
        refusedRows = nil
    }

    /// Whether `rows` rows of this table's columns pass the budget (checked before any cell is
    /// allocated: rows × columns × 8 bytes is what a reply of empty rows would cost).
    func overBudget(_ rows: Int) -> Bool {
        let (cells, overflow) = rows.multipliedReportingOverflow(by: max(converter.types.count, 1))
        return overflow || cells > cellBudget
    }

    mutating func readRows(from r: inout ThriftReader, checked: MessageFramer.StringMapList?) throws(ThriftError) {
        // The framer walked and checked this list as it arrived: no second walk.
        if let checked, checked.start == r.offset, checked.count >= RowConverter.backgroundFrom {
            if overBudget(checked.count) {
                refusedRows = checked.count
            } else {
                longList = List(start: checked.start, count: checked.count)
            }
            r.offset = checked.end
            return
        }
        try readRows(from: &r)
    }

    mutating func readRows(from r: inout ThriftReader) throws(ThriftError) {
        let start = r.offset
        let header = try r.readListBegin()
        if overBudget(header.count) {
            guard header.count == 0 || header.element == .map else { throw .invalidData("expected list<map<string,string>>") }
            try r.enter()
            defer { r.leave() }
            try r.skipStringMaps(header.count)
            refusedRows = header.count
            return
        }
        guard header.count >= RowConverter.backgroundFrom else {
            r.offset = start
            try converter.readRows(from: &r)
            return
        }
        guard header.element == .map else { throw .invalidData("expected list<map<string,string>>") }
        try r.enter()
        defer { r.leave() }
        try r.skipStringMaps(header.count)
        longList = List(start: start, count: header.count)
    }
}
