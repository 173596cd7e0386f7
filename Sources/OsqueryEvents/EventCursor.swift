internal import CSQLite
import OsqueryEngine

/// The bounds of one scan of a subscriber's store: `start <= time <= stop` and `eid > afterEID`.
struct EventScanBounds: Equatable {
    var start: UInt64 = 0
    var stop = UInt64(Int64.max)
    var afterEID: UInt64 = 0

    /// The WHERE clause of the store's query (`?1`…: the bounds that narrow it), and the values
    /// to bind in order. An unbounded side is left out, so a plain scan walks the eid order
    /// (the table's rowid) with no index and no sort.
    var clause: (sql: String, values: [Int64]) {
        var terms: [String] = []
        var values: [Int64] = []
        if start > 0 {
            values.append(Int64(clamping: start))
            terms.append("time >= ?\(values.count)")
        }
        if stop < UInt64(Int64.max) {
            values.append(Int64(clamping: stop))
            terms.append("time <= ?\(values.count)")
        }
        if afterEID > 0 {
            values.append(Int64(clamping: afterEID))
            terms.append("eid > ?\(values.count)")
        }
        return (terms.isEmpty ? "" : " WHERE " + terms.joined(separator: " AND "), values)
    }
}

/// One scan of a subscriber's rows, read straight from the event database: a statement over
/// its table with the scan's bounds in the WHERE clause, stepped a batch at a time with the
/// database held, the batch's cells copied into memory the cursor reuses (so the database is
/// free between batches, and a query that joins two event tables, or runs for long, holds it
/// only briefly). SQLite reads cells from there; nothing is allocated per row.
///
/// At the end of the scan (or when it is abandoned), the scan's bookkeeping happens as
/// `generate`'s did: the query's `events_optimize` mark, expiry and `events_max`, the rows read.
final class EventCursor: RowCursor {
    private struct Slot {
        var kind: StoredCell.Kind
        var count: Int32
        /// An integer, a double's bits, or the offset of text or blob bytes in the arena.
        var value: Int64
    }

    let subscriber: EventSubscriber
    let bounds: EventScanBounds
    /// The scheduled query's scope and whether its mark bounds this scan.
    let scope: EventQueryScope?
    let optimize: Bool

    /// Columns of the store: eid, time, then the subscriber's values.
    private let storeColumns: Int
    /// Per schema column: its store column, or -1 for `eid` (given as osquery's ten-digit text).
    private let map: UnsafeMutablePointer<Int32>
    private let mapCount: Int
    private var statement: OpaquePointer?
    private var slots: UnsafeMutablePointer<Slot>
    private var arena: UnsafeMutableRawPointer
    private var arenaCapacity: Int
    private var arenaUsed = 0
    private var rowsInBatch = 0
    /// The current row in the batch; -1 before the first.
    private var row = -1
    private var finished = false
    private var failed = false
    private var closed = false
    private var rowsRead = 0
    private var last: (time: UInt64, eid: UInt64)?
    private let eidText = UnsafeMutablePointer<UInt8>.allocate(capacity: 24)

    /// Rows per batch, and the bytes of text a batch stops at (a row is never split).
    static let batchRows = 512
    static let batchBytes = 1 << 20

    init(subscriber: EventSubscriber, bounds: EventScanBounds, scope: EventQueryScope?, optimize: Bool) {
        self.subscriber = subscriber
        self.bounds = bounds
        self.scope = scope
        self.optimize = optimize
        let store = subscriber.store
        storeColumns = store.valueCount + 2
        let positions = store.valueCount + (store.eidAt < 0 ? 1 : 2)
        mapCount = positions
        map = .allocate(capacity: max(positions, 1))
        var value: Int32 = 2
        for p in 0..<positions {
            if p == store.timeAt {
                (map + p).initialize(to: 1)
            } else if p == store.eidAt {
                (map + p).initialize(to: -1)
            } else {
                (map + p).initialize(to: value)
                value += 1
            }
        }
        slots = .allocate(capacity: Self.batchRows * max(storeColumns, 1))
        arenaCapacity = 64 * 1024
        arena = .allocate(byteCount: arenaCapacity, alignment: 16)
    }

    deinit {
        close()
        map.deallocate()
        slots.deallocate()
        arena.deallocate()
        eidText.deallocate()
    }

    func advance() throws(EngineError) -> Bool {
        row += 1
        if row < rowsInBatch { return true }
        if finished || failed || closed { return false }
        let error = subscriber.database.withHandle { db in fill(db) }
        if let error {
            failed = true
            throw EngineError(code: 0, message: error)
        }
        row = 0
        return rowsInBatch > 0
    }

    /// Reads the next batch (the database held); an error's message.
    private func fill(_ db: OpaquePointer) -> String? {
        rowsInBatch = 0
        arenaUsed = 0
        if statement == nil {
            let (clause, values) = bounds.clause
            var s: OpaquePointer?
            guard sqlite3_prepare_v2(db, "SELECT * FROM \(subscriber.store.table)\(clause) ORDER BY eid", -1, &s, nil) == SQLITE_OK,
                let s
            else { return readError(db) }
            for (i, v) in values.enumerated() { sqlite3_bind_int64(s, Int32(i + 1), v) }
            statement = s
        }
        guard let s = statement else { return nil }
        let columns = storeColumns
        while rowsInBatch < Self.batchRows && arenaUsed < Self.batchBytes {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE {
                finish()
                break
            }
            guard rc == SQLITE_ROW, sqlite3_column_count(s) == Int32(columns) else {
                let message = readError(db)
                finish()
                return message
            }
            let cells = slots + rowsInBatch * columns
            for c in 0..<columns {
                // One column call per cell, then the value's accessors (which skip the API's
                // per-call checks); text is read as stored, without a terminating NUL added.
                let v = sqlite3_column_value(s, Int32(c))
                switch sqlite3_value_type(v) {
                case SQLITE_INTEGER:
                    cells[c] = Slot(kind: .integer, count: 0, value: sqlite3_value_int64(v))
                case SQLITE_FLOAT:
                    cells[c] = Slot(kind: .double, count: 0, value: Int64(bitPattern: sqlite3_value_double(v).bitPattern))
                case SQLITE_TEXT:
                    let p = sqlite3_value_blob(v)
                    cells[c] = Slot(kind: .text, count: 0, value: 0)
                    copy(p, Int(sqlite3_value_bytes(v)), into: &cells[c])
                case SQLITE_BLOB:
                    let p = sqlite3_value_blob(v)
                    cells[c] = Slot(kind: .blob, count: 0, value: 0)
                    copy(p, Int(sqlite3_value_bytes(v)), into: &cells[c])
                default:
                    cells[c] = Slot(kind: .null, count: 0, value: 0)
                }
            }
            last = (UInt64(bitPattern: cells[1].value), UInt64(bitPattern: cells[0].value))
            rowsInBatch += 1
            rowsRead += 1
        }
        return nil
    }

    @inline(__always)
    private func copy(_ bytes: UnsafeRawPointer?, _ count: Int, into slot: inout Slot) {
        guard let bytes, count > 0 else { return }
        if arenaUsed + count > arenaCapacity {
            // Grows only while the batch is read: no cell handed out points into it yet.
            let grown = UnsafeMutableRawPointer.allocate(byteCount: max(arenaCapacity * 2, arenaUsed + count), alignment: 16)
            grown.copyMemory(from: arena, byteCount: arenaUsed)
            arena.deallocate()
            arena = grown
            arenaCapacity = max(arenaCapacity * 2, arenaUsed + count)
        }
        (arena + arenaUsed).copyMemory(from: bytes, byteCount: count)
        slot.value = Int64(arenaUsed)
        slot.count = Int32(truncatingIfNeeded: count)
        arenaUsed += count
    }

    private func readError(_ db: OpaquePointer) -> String {
        "Cannot read events of \(subscriber.name): \(String(cString: sqlite3_errmsg(db)))"
    }

    /// Ends the statement (the database held), so the rest of the scan needs no database.
    private func finish() {
        finished = true
        if let s = statement { sqlite3_finalize(s) }
        statement = nil
    }

    func cell(_ column: Int) -> StoredCell {
        guard row >= 0, row < rowsInBatch, column >= 0, column < mapCount else { return .null }
        let at = Int(map[column])
        let cells = slots + row * storeColumns
        if at < 0 { return eid(UInt64(bitPattern: cells[0].value)) }
        let slot = cells[at]
        switch slot.kind {
        case .text, .blob:
            return StoredCell(kind: slot.kind, bytes: UnsafeRawPointer(arena + Int(slot.value)), count: Int(slot.count))
        default:
            return StoredCell(kind: slot.kind, bits: slot.value)
        }
    }

    /// osquery's index form of an eid (at least ten digits, zero-padded), in the cursor's buffer.
    @inline(__always)
    private func eid(_ value: UInt64) -> StoredCell {
        var digits = 0
        var v = value
        repeat {
            digits += 1
            v /= 10
        } while v > 0
        let count = max(digits, 10)
        v = value
        var i = count
        while i > 0 {
            i -= 1
            eidText[i] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
        }
        return StoredCell(kind: .text, bytes: UnsafeRawPointer(eidText), count: count)
    }

    func close() {
        guard !closed else { return }
        closed = true
        let abandoned = !finished && !failed
        let (tail, trimmed) = subscriber.database.withHandle { db -> ((time: UInt64, eid: UInt64)?, Int) in
            if let s = statement { sqlite3_finalize(s) }
            statement = nil
            // A scan that stops early (LIMIT) still counts every event it matched as read, as
            // the rows `generate` gave did.
            let tail = abandoned && optimize ? subscriber.store.lastEvent(db, bounds) : nil
            return (tail, subscriber.enforceLimits(db))
        }
        if let tail, tail.eid > (last?.eid ?? 0) { last = tail }
        subscriber.scanEnded(rows: rowsRead, trimmed: trimmed)
        guard !failed else { return }
        if optimize { scope?.readEvents(through: last) } else { scope?.noteEventBased() }
    }
}
