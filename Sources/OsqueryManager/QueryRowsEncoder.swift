import Dispatch
import NIOCore
import OsqueryEngine
import OsqueryProtocol
import Synchronization
import ThriftCodec

/// Writes query result rows as Thrift maps, as osquery's `query` returns them: every value as
/// text (integers in decimal, doubles as `%.15g` plus `.0`, text and blobs as their bytes, NULL
/// as `--nullvalue`). Duplicate column names (`SELECT 1 AS a, 2 AS a`) give one key, in the
/// place of its first column, with the value of its last, as a map would.
///
/// A big result is encoded on a second thread while SQLite steps on the query thread: the query
/// thread copies each row's cells out of SQLite into a ``CellBatch`` (a tag and 8 bytes per cell,
/// text copied), and the encoder thread turns full batches into Thrift, in order. Formatting
/// numbers and writing maps is about half of a big `SELECT *`; SQLite cannot step a statement
/// on two threads, but that half can move. A result under one batch never leaves the query thread.
struct QueryRowsEncoder: ~Copyable {
    let nullValue: ThriftString
    var count = 0
    /// Per key, the column it takes its value from.
    var keyColumns: [Int] = []
    /// Rows copied out of SQLite and not yet handed on.
    var batch = CellBatch()
    /// The encoder thread and the reply's buffer, from the first full batch on.
    var pipeline: RowsPipeline?
    /// Where rows are written while there is no pipeline.
    var writer = ThriftWriter(reservingCapacity: 1 << 16)

    /// The most bytes of rows worth encoding: past it the reply could never be sent
    /// (`--extensions_max_message_size`), so the query stops instead of building it.
    let limit: Int
    /// The rows encoded so far passed `limit` (checked once per batch).
    private(set) var tooLarge = false

    init(nullValue: ThriftString, limit: Int = .max) {
        self.nullValue = nullValue
        self.limit = limit
    }

    /// Why a query stopped once ``tooLarge``.
    var tooLargeError: EngineError {
        EngineError(code: 1, message: "query result exceeds the maximum message size of \(limit) bytes")
    }

    mutating func begin(columns: [String]) {
        // The batch so far belongs to the previous statement's keys.
        flush()
        var keys: [(name: ThriftString, column: Int)] = []
        for (c, name) in columns.enumerated() {
            let key = ThriftString(name)
            if let i = keys.firstIndex(where: { $0.name == key }) { keys[i].column = c } else { keys.append((key, c)) }
        }
        keyColumns = keys.map(\.column)
        // The keys as they go on the wire, encoded once per statement; batches carry them.
        batch.keyWire = EncodedStrings(keys.map(\.name))
        batch.prepare(keyCount: keys.count)
    }

    mutating func add(_ row: StatementRow) {
        keyColumns.withUnsafeBufferPointer { batch.append(row, columns: $0) }
        count &+= 1
        guard batch.isFull else { return }
        // The encoder thread's count lags by the batches in flight, at most two.
        if (pipeline?.encodedBytes ?? writer.byteCount) > limit { tooLarge = true }
        if pipeline == nil {
            // The first full batch: a big result, encoded on the encoder thread from now on.
            var started = ThriftWriter(reservingCapacity: 0)
            swap(&started, &writer)
            pipeline = RowsPipeline(writer: started, nullValue: nullValue, first: batch)
        }
        flush()
    }

    /// Hands the batch's rows on: to the encoder thread once there is one, else encoded here
    /// (a short result never leaves the query thread).
    mutating func flush() {
        guard batch.rows > 0 else { return }
        if let pipeline {
            batch = pipeline.submit(batch)
        } else {
            batch.encode(to: &writer, nullValue: nullValue)
            batch.reset()
        }
    }

    /// osquery's text for a double, written without a String when it can be.
    static func writeDouble(_ d: Double, to writer: inout ThriftWriter) {
        if let (m, scale) = SQLValue.osqueryDecimal(d) {
            writer.writeFixedPointString(m, scale: scale, negative: d < 0)
        } else {
            writer.writeString(SQLValue.osqueryDouble(d))
        }
    }

    consuming func finish() -> EncodedRows {
        flush()
        // A big result is already in the buffer the reply is sent from.
        if let pipeline { return EncodedRows(count: count, buffer: pipeline.join()) }
        return EncodedRows(count: count, encoded: writer.finish())
    }
}

/// Cells of up to ``CellBatch/rowLimit`` rows copied out of SQLite: per cell a tag and 8 bytes
/// (the integer, the double's bits, or where its bytes are in `text`). Plain memory: the query
/// thread fills it once per cell, so no array bookkeeping per store.
final class CellBatch: @unchecked Sendable {
    // @unchecked: a batch is filled by the query thread, then owned by the encoder thread until
    // the pipeline hands it out again (`RowsPipeline.submit`); never used by both at once.
    static let rowLimit = 2048
    static let textLimit = 1 << 20

    enum Tag: UInt8 { case null, integer, double, text }

    var rows = 0
    var keyWire = EncodedStrings([])
    /// Cells stored so far.
    var cells = 0
    var cellCapacity = 0
    var tags: UnsafeMutablePointer<Tag>
    var words: UnsafeMutablePointer<UInt64>
    var text: UnsafeMutableRawPointer
    var textCount = 0
    var textCapacity = 1 << 16

    init() {
        tags = .allocate(capacity: 1)
        words = .allocate(capacity: 1)
        text = .allocate(byteCount: textCapacity, alignment: 1)
    }

    deinit {
        tags.deallocate()
        words.deallocate()
        text.deallocate()
    }

    var isFull: Bool { rows >= Self.rowLimit || textCount >= Self.textLimit }

    /// Room for a full batch of rows of `keyCount` cells.
    func prepare(keyCount: Int) {
        let need = Self.rowLimit * max(keyCount, 1)
        guard need > cellCapacity else { return }
        tags.deallocate()
        words.deallocate()
        tags = .allocate(capacity: need)
        words = .allocate(capacity: need)
        cellCapacity = need
    }

    /// Copies the cells of `row` in `columns` (one per key).
    func append(_ row: StatementRow, columns: UnsafeBufferPointer<Int>) {
        // Locals, stored back once: the stores per cell touch no class property.
        var i = cells
        var textCount = self.textCount
        let (tags, words) = (self.tags, self.words)
        for column in columns {
            switch row.cell(column) {
            case .null:
                tags[i] = .null
            case .integer(let v):
                tags[i] = .integer
                words[i] = UInt64(bitPattern: v)
            case .double(let d):
                tags[i] = .double
                words[i] = d.bitPattern
            case .text(let bytes), .blob(let bytes):
                tags[i] = .text
                let n = bytes.count
                if textCount &+ n > textCapacity { growText(to: textCount &+ n, keeping: textCount) }
                words[i] = UInt64(textCount) << 32 | UInt64(n)
                if n > 0 { copyBytes(to: text + textCount, from: bytes.baseAddress!, count: n) }
                textCount &+= n
            }
            i &+= 1
        }
        cells = i
        self.textCount = textCount
        rows &+= 1
    }

    func growText(to need: Int, keeping count: Int) {
        let grown = max(textCapacity * 2, need)
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 1)
        bigger.copyMemory(from: text, byteCount: count)
        text.deallocate()
        text = bigger
        textCapacity = grown
    }

    func reset() {
        rows = 0
        cells = 0
        textCount = 0
    }

    /// The rows as Thrift maps, as ``QueryRowsEncoder`` writes them.
    func encode(to writer: inout ThriftWriter, nullValue: ThriftString) {
        let keyCount = rows == 0 ? 0 : cells / rows
        let (tags, words, text, rows) = (self.tags, self.words, UnsafeRawPointer(self.text), self.rows)
        let null = EncodedStrings([nullValue])
        // Views, not the arrays: a reference count moved per cell costs more than the cell.
        keyWire.withView { keys in
            null.withView { null in
                var i = 0
                for _ in 0..<rows {
                    writer.writeMapBegin(key: .string, value: .string, count: keyCount)
                    for k in 0..<keyCount {
                        keys.write(k, to: &writer)
                        let word = words[i]
                        switch tags[i] {
                        case .null: null.write(0, to: &writer)
                        case .integer: writer.writeDecimalString(Int64(bitPattern: word))
                        case .double: QueryRowsEncoder.writeDouble(Double(bitPattern: word), to: &writer)
                        case .text:
                            writer.writeString(bytes: UnsafeRawBufferPointer(start: text + Int(word >> 32), count: Int(word & 0xFFFF_FFFF)))
                        }
                        i &+= 1
                    }
                }
            }
        }
    }
}

/// The encoder thread of one big result: batches are encoded in the order submitted, at most
/// two wait at a time (the query thread waits for a slot, so memory stays bounded).
final class RowsPipeline: @unchecked Sendable {
    // @unchecked: `scratch` and `output` are touched only by blocks on `queue` until `join()`,
    // which runs after them; `ring` and `next` only by the query thread, and a batch of the ring
    // only by the thread the semaphore hands it to (see `submit`).
    /// Each batch is encoded here, then appended to `output`: the reply's rows, in the buffer
    /// the server sends, so no copy of the whole result is left for after the scan.
    private var scratch = ThriftWriter(reservingCapacity: 1 << 17)
    private var output: ByteBuffer
    private let nullValue: ThriftString
    private let queue = DispatchQueue(label: "osquery.query-rows-encoder")
    private let slots = DispatchSemaphore(value: 2)
    /// Three batches used in turn: at most two are with the encoder thread while the query
    /// thread fills the third.
    private let ring: [CellBatch]
    private var next = 1
    /// Bytes of rows in `output`, for the query thread to check against its limit.
    private let encoded = Atomic<Int>(0)
    var encodedBytes: Int { encoded.load(ordering: .relaxed) }

    /// `first` is the batch being filled now (the first to be submitted).
    init(writer: consuming ThriftWriter, nullValue: ThriftString, first: CellBatch) {
        var output = ByteBufferAllocator().buffer(capacity: max(1 << 20, writer.byteCount * 2))
        writer.withUnsafeBytes { _ = output.writeBytes($0) }
        self.output = output
        self.nullValue = nullValue
        self.ring = [first, CellBatch(), CellBatch()]
    }

    /// Queues `batch` for encoding and returns an empty batch (for the same keys) to fill next.
    func submit(_ batch: CellBatch) -> CellBatch {
        let keyCount = batch.cells / max(batch.rows, 1)
        let keyWire = batch.keyWire
        // Once this wait returns, every submission before the previous one has been encoded
        // (two slots, and the serial queue finishes them in order): the ring's next batch, last
        // submitted two submissions ago, is free, and its reset happened before those signals.
        slots.wait()
        queue.async { [self] in
            batch.encode(to: &scratch, nullValue: nullValue)
            batch.reset()
            slots.signal()
            scratch.withUnsafeBytes { _ = output.writeBytes($0) }
            scratch.truncate(to: 0)
            encoded.store(output.readableBytes, ordering: .relaxed)
        }
        let fresh = ring[next]
        next = next == 2 ? 0 : next + 1
        fresh.keyWire = keyWire
        fresh.prepare(keyCount: keyCount)
        return fresh
    }

    /// Waits for every batch submitted and hands the encoded rows over.
    func join() -> ByteBuffer {
        // The queue is serial: once this returns, every block has run, and what they wrote is
        // visible here.
        queue.sync {}
        let out = output
        output = ByteBuffer()
        return out
    }
}
