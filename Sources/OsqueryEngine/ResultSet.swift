#if canImport(Glibc)
import Glibc
#endif

/// Rows of one or more statements: column names in order, values kept typed
/// (NULL distinct from empty text), stored flat row-major.
///
/// Cells are kept as SQLite gave them: numbers in place, text and blob bytes in one byte arena
/// per chunk of cells. A `String` is made only when a cell is asked for as a ``SQLValue``
/// (the subscripts, ``values``, ``rows``); the output formatters read the bytes.
public struct ResultSet: Sendable, Equatable {
    public var columns: [String]
    /// Declared types (`sqlite3_column_decltype`), nil for expressions.
    public var declaredTypes: [String?]
    /// The cells, in chunks of `cellsPerChunk` cells (the last may hold fewer).
    private var chunks: [ResultChunk]
    private var cellsPerChunk: Int
    /// Cells in all chunks.
    package private(set) var cellCount: Int

    public init(columns: [String] = [], declaredTypes: [String?] = [], values: [SQLValue] = []) {
        self.columns = columns
        self.declaredTypes = declaredTypes
        (chunks, cellsPerChunk, cellCount) = ResultSet.cells(values)
    }

    /// A result read by `writer`.
    init(columns: [String], declaredTypes: [String?], writer: consuming ResultWriter) {
        self.columns = columns
        self.declaredTypes = declaredTypes
        cellsPerChunk = writer.cellsPerChunk
        cellCount = writer.total
        chunks = writer.finish()
    }

    private static func cells(_ values: [SQLValue]) -> ([ResultChunk], Int, Int) {
        var writer = ResultWriter(cellsPerChunk: max(values.count, 1))
        writer.reserve(values.count)
        for v in values { writer.append(v) }
        let (perChunk, total) = (writer.cellsPerChunk, writer.total)
        return (writer.finish(), perChunk, total)
    }

    /// Every cell as a value, row-major (a `String` per text cell: read the cells a caller
    /// needs through the subscripts instead).
    public var values: [SQLValue] {
        get { (0..<cellCount).map { cell($0).value } }
        set { (chunks, cellsPerChunk, cellCount) = ResultSet.cells(newValue) }
    }

    public var rowCount: Int { columns.isEmpty ? 0 : cellCount / columns.count }
    public var isEmpty: Bool { cellCount == 0 }

    public subscript(row: Int, column: Int) -> SQLValue {
        cell(row * columns.count + column).value
    }

    public subscript(row: Int, column: String) -> SQLValue? {
        guard let c = columns.firstIndex(of: column) else { return nil }
        return self[row, c]
    }

    /// Cell `index` (row-major) as it is kept: its bytes stay valid while this result (or a
    /// copy of it) lives.
    @inline(__always)
    package func cell(_ index: Int) -> StoredCell {
        precondition(index >= 0 && index < cellCount, "ResultSet cell index out of range")
        if chunks.count == 1 { return chunks[0].cell(index) }
        let (chunk, offset) = index.quotientAndRemainder(dividingBy: cellsPerChunk)
        return chunks[chunk].cell(offset)
    }

    public var rows: [[SQLValue]] {
        let n = columns.count
        return (0..<rowCount).map { r in (0..<n).map { cell(r * n + $0).value } }
    }

    /// osquery-style rows: maps of column name → text (NULL → `nullValue`).
    public func rowMaps(nullValue: String = "") -> [[String: String]] {
        (0..<rowCount).map { r in
            var m: [String: String] = [:]
            for (c, name) in columns.enumerated() {
                m[name] = self[r, c].osqueryString ?? nullValue
            }
            return m
        }
    }

    /// The same columns and values (text that is not UTF-8 equals the blob of its bytes, as
    /// the subscripts give both).
    public static func == (a: ResultSet, b: ResultSet) -> Bool {
        guard a.columns == b.columns, a.declaredTypes == b.declaredTypes, a.cellCount == b.cellCount else { return false }
        for i in 0..<a.cellCount where a.cell(i).value != b.cell(i).value { return false }
        return true
    }
}

/// One kept cell: an integer, a double's bits, or the offset of text or blob bytes in its
/// chunk's arena.
struct ResultCell {
    var bits: Int64
    var count: UInt32
    var kind: StoredCell.Kind
}

/// A chunk of a result's cells and the bytes of its text and blob cells; never changed once
/// made, so results sharing it may cross threads.
final class ResultChunk: @unchecked Sendable {
    private let cells: UnsafeMutablePointer<ResultCell>
    private let bytes: UnsafeMutableRawPointer?

    /// Takes over `cells` and `bytes` (allocated with malloc).
    init(cells: UnsafeMutablePointer<ResultCell>, bytes: UnsafeMutableRawPointer?) {
        self.cells = cells
        self.bytes = bytes
    }

    deinit {
        free(cells)
        free(bytes)
    }

    @inline(__always)
    func cell(_ i: Int) -> StoredCell {
        let c = cells[i]
        switch c.kind {
        case .text, .blob:
            guard c.count > 0, let bytes else { return StoredCell(kind: c.kind) }
            return StoredCell(kind: c.kind, bytes: UnsafeRawPointer(bytes + Int(c.bits)), count: Int(c.count))
        default:
            return StoredCell(kind: c.kind, bits: c.bits)
        }
    }
}

/// Builds a result's chunks: cells are appended a row at a time (``reserve(_:)`` first), and a
/// chunk holds exactly `cellsPerChunk` cells before the next starts, so a cell's chunk is its
/// index divided by that.
struct ResultWriter: ~Copyable {
    let cellsPerChunk: Int
    /// Cells appended so far.
    private(set) var total = 0
    private var sealed: [ResultChunk] = []
    private var cells: UnsafeMutablePointer<ResultCell>?
    private var count = 0
    private var capacity = 0
    private var bytes: UnsafeMutableRawPointer?
    private var used = 0
    private var bytesCapacity = 0
    /// The arena size the last chunk needed: the next one starts at that size.
    private var lastBytes = 0

    init(cellsPerChunk: Int) {
        self.cellsPerChunk = max(cellsPerChunk, 1)
    }

    /// Chunks of whole rows of `columns` cells, of about `Database.resultChunkValues` cells.
    init(columns: Int) {
        self.init(cellsPerChunk: columns > 0 ? max(Database.resultChunkValues / columns, 1) * columns : Database.resultChunkValues)
    }

    deinit {
        free(cells)
        free(bytes)
    }

    /// Room for `n` more cells (a row, at most `cellsPerChunk`): the chunk is sealed when they
    /// would not fit in it.
    @inline(__always)
    mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(n) }
    }

    private mutating func grow(_ n: Int) {
        if count + n > cellsPerChunk, count > 0 {
            seal()
            // A result that filled a chunk is large: the next one is made whole at once.
            resize(max(cellsPerChunk, n))
            return
        }
        resize(max(min(cellsPerChunk, max(capacity * 2, 64)), count + n))
    }

    private mutating func resize(_ target: Int) {
        guard let grown = realloc(cells, target * MemoryLayout<ResultCell>.stride) else { fatalError("out of memory") }
        cells = grown.assumingMemoryBound(to: ResultCell.self)
        capacity = target
    }

    private mutating func seal() {
        guard let full = cells else { return }
        sealed.append(ResultChunk(cells: full, bytes: bytes))
        lastBytes = used
        cells = nil
        bytes = nil
        count = 0
        capacity = 0
        used = 0
        bytesCapacity = 0
    }

    @inline(__always)
    mutating func append(_ kind: StoredCell.Kind, bits: Int64) {
        cells.unsafelyUnwrapped[count] = ResultCell(bits: bits, count: 0, kind: kind)
        count += 1
        total += 1
    }

    /// A text or blob cell: its bytes are copied into the chunk's arena.
    @inline(__always)
    mutating func append(_ kind: StoredCell.Kind, bytes source: UnsafeRawPointer?, count n: Int) {
        var offset = 0
        if n > 0, let source {
            if used + n > bytesCapacity { growBytes(n) }
            offset = used
            (bytes.unsafelyUnwrapped + used).copyMemory(from: source, byteCount: n)
            used += n
        }
        cells.unsafelyUnwrapped[count] = ResultCell(bits: Int64(offset), count: UInt32(truncatingIfNeeded: n), kind: kind)
        count += 1
        total += 1
    }

    private mutating func growBytes(_ n: Int) {
        let target = max(bytesCapacity * 2, used + n, lastBytes, 1024)
        guard let grown = realloc(bytes, target) else { fatalError("out of memory") }
        bytes = grown
        bytesCapacity = target
    }

    mutating func append(_ cell: StoredCell) {
        switch cell.kind {
        case .text, .blob: append(cell.kind, bytes: cell.bytes, count: cell.count)
        default: append(cell.kind, bits: cell.bits)
        }
    }

    mutating func append(_ value: SQLValue) {
        switch value {
        case .null: append(.null, bits: 0)
        case .integer(let v): append(.integer, bits: v)
        case .double(let d): append(.double, bits: Int64(bitPattern: d.bitPattern))
        case .text(var s):
            s.withUTF8 { append(.text, bytes: UnsafeRawPointer($0.baseAddress), count: $0.count) }
        case .blob(let b):
            b.withUnsafeBytes { append(.blob, bytes: $0.baseAddress, count: $0.count) }
        }
    }

    /// The chunks, the writer's buffers handed over to them.
    consuming func finish() -> [ResultChunk] {
        if count > 0 { seal() }
        let chunks = sealed
        return chunks
    }
}

extension StoredCell {
    /// The cell as SQLite's `sqlite3_column_text` renders it (what the shell prints; text that
    /// is not UTF-8 has its bad bytes replaced), NULL as nil.
    package var sqliteString: String? {
        switch kind {
        case .null: return nil
        case .integer: return String(bits)
        case .double: return SQLValue.sqliteDouble(Double(bitPattern: UInt64(bitPattern: bits)))
        case .text, .blob:
            let raw = UnsafeRawBufferPointer(start: bytes, count: count)
            return SQLValue.validUTF8String(raw) ?? String(decoding: raw.bindMemory(to: UInt8.self), as: UTF8.self)
        }
    }

    /// Calls `body` with the cell's shell text as UTF-8 bytes (``sqliteString``; NULL as
    /// `nullValue`), without a `String` for text that is already valid UTF-8 or for integers.
    @inline(__always)
    package func withShellText<R>(nullValue: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        switch kind {
        case .integer:
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buffer in
                body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[formatDecimal(bits, into: buffer)...]))
            }
        case .text, .blob:
            let raw = UnsafeRawBufferPointer(start: bytes, count: count)
            if isASCII(raw) { return body(raw) }
            var text = SQLValue.validUTF8String(raw) ?? String(decoding: raw.bindMemory(to: UInt8.self), as: UTF8.self)
            return text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        case .null:
            var text = nullValue
            return text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        case .double:
            var text = SQLValue.sqliteDouble(Double(bitPattern: UInt64(bitPattern: bits)))
            return text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        }
    }
}

/// Writes `value` in decimal at the end of `buffer` (20 bytes); the index of its first byte.
@inline(__always)
func formatDecimal(_ value: Int64, into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
    var v = value.magnitude
    var i = buffer.count
    repeat {
        i -= 1
        buffer[i] = UInt8(48 + v % 10)
        v /= 10
    } while v > 0
    if value < 0 {
        i -= 1
        buffer[i] = UInt8(ascii: "-")
    }
    return i
}
