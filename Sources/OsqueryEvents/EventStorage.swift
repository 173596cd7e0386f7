internal import CSQLite
package import OsqueryEngine
import Synchronization

/// The SQLite database that buffers event rows: the daemon's store (so rows survive a restart)
/// or a private in-memory one (the shell). Every use is serialized with the database's other
/// users; calls block.
package protocol EventDatabase: Sendable {
    /// Runs `body` with the connection, holding whatever lock guards it.
    func withHandle<T: Sendable>(_ body: (OpaquePointer) -> T) -> T
}

/// A private in-memory database (osqueryi: events live as long as the process).
package final class InMemoryEventDatabase: EventDatabase, @unchecked Sendable {  // `handle` is only used under `lock`
    private let lock = Mutex<Void>(())
    private let handle: OpaquePointer

    package init() {
        var db: OpaquePointer?
        Database.configureSQLite()
        guard sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK,
            let db
        else { fatalError("SQLite cannot open an in-memory database") }
        handle = db
    }

    deinit { sqlite3_close_v2(handle) }

    package func withHandle<T: Sendable>(_ body: (OpaquePointer) -> T) -> T {
        lock.withLock { _ in body(handle) }
    }
}

/// One buffered event: its identifier, time (Unix seconds) and the subscriber's columns
/// without `time` and `eid`.
package struct BufferedEvent: Sendable {
    package var eid: UInt64
    package var time: UInt64
    package var values: [SQLValue]

    package init(eid: UInt64, time: UInt64, values: [SQLValue]) {
        self.eid = eid
        self.time = time
        self.values = values
    }
}

/// A subscriber's rows in the event database: one table per subscriber, `eid` its integer
/// primary key (AUTOINCREMENT, so SQLite remembers the highest eid even once every row has
/// expired and ids never restart), `time` indexed (a `time` constraint is a range scan), then
/// one untyped column per subscriber column (values keep their storage class).
package struct EventTableStore: Sendable {
    package let subscriber: String
    let valueCount: Int
    let table: String
    /// Where `time` and `eid` sit in a row (osquery's schemas place them anywhere; seccomp_events
    /// has no `eid`: -1).
    let timeAt: Int
    let eidAt: Int

    package init(subscriber: String, valueCount: Int, timeAt: Int? = nil, eidAt: Int? = nil, hasEID: Bool = true) {
        self.subscriber = subscriber
        self.valueCount = valueCount
        self.timeAt = timeAt ?? valueCount
        self.eidAt = hasEID ? eidAt ?? valueCount + 1 : -1
        self.table = "\"events." + subscriber.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    private static func exec(_ db: OpaquePointer, _ sql: String) -> String? {
        sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK ? nil : String(cString: sqlite3_errmsg(db))
    }

    private static func prepare(_ db: OpaquePointer, _ sql: String) -> OpaquePointer? {
        var s: OpaquePointer?
        return sqlite3_prepare_v2(db, sql, -1, &s, nil) == SQLITE_OK ? s : nil
    }

    /// Creates the table (replacing one of another shape, from an older layout); returns the
    /// highest eid ever used, or an error.
    package func open(_ db: OpaquePointer) -> Result<UInt64, EventError> {
        let columns = (0..<valueCount).map { ", c\($0)" }.joined()
        if let s = Self.prepare(db, "SELECT * FROM \(table) LIMIT 0") {
            let count = Int(sqlite3_column_count(s))
            sqlite3_finalize(s)
            if count != valueCount + 2, let e = Self.exec(db, "DROP TABLE \(table)") { return .failure(EventError(e)) }
        }
        let index = "\"events.time." + subscriber.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        for sql in [
            "CREATE TABLE IF NOT EXISTS \(table) (eid INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL\(columns))",
            "CREATE INDEX IF NOT EXISTS \(index) ON \(table) (time)",
        ] {
            if let e = Self.exec(db, sql) { return .failure(EventError("Cannot create the event table of \(subscriber): \(e)")) }
        }
        var last: UInt64 = 0
        if let s = Self.prepare(db, "SELECT seq FROM sqlite_sequence WHERE name = ?1") {
            let name = "events." + subscriber
            sqlite3_bind_text(s, 1, name, -1, osq_sqlite_transient())
            if sqlite3_step(s) == SQLITE_ROW { last = UInt64(max(0, sqlite3_column_int64(s, 0))) }
            sqlite3_finalize(s)
        }
        return .success(last)
    }

    /// Appends `events` in one transaction.
    package func append(_ db: OpaquePointer, _ events: [BufferedEvent]) -> EventError? {
        guard !events.isEmpty else { return nil }
        let marks = (0..<valueCount).map { ", ?\($0 + 3)" }.joined()
        guard let s = Self.prepare(db, "INSERT OR REPLACE INTO \(table) VALUES (?1, ?2\(marks))") else {
            return EventError("Cannot store events of \(subscriber): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(s) }
        if let e = Self.exec(db, "SAVEPOINT events_append") { return EventError(e) }
        for event in events {
            sqlite3_reset(s)
            sqlite3_bind_int64(s, 1, Int64(bitPattern: event.eid))
            sqlite3_bind_int64(s, 2, Int64(bitPattern: event.time))
            for (i, v) in event.values.enumerated() where i < valueCount {
                Self.bind(s, Int32(i + 3), v)
            }
            if sqlite3_step(s) != SQLITE_DONE {
                let message = String(cString: sqlite3_errmsg(db))
                _ = Self.exec(db, "ROLLBACK TO events_append")
                _ = Self.exec(db, "RELEASE events_append")
                return EventError("Cannot store events of \(subscriber): \(message)")
            }
        }
        if let e = Self.exec(db, "RELEASE events_append") { return EventError(e) }
        return nil
    }

    private static func bind(_ s: OpaquePointer, _ i: Int32, _ v: SQLValue) {
        switch v {
        case .null: sqlite3_bind_null(s, i)
        case .integer(let n): sqlite3_bind_int64(s, i, n)
        case .double(let d): sqlite3_bind_double(s, i, d)
        case .text(let t):
            // By length: text holding a NUL (a file name can't, a syslog line or an extension's row can) is kept whole.
            var copy = t
            copy.withUTF8 { buf in
                buf.withMemoryRebound(to: CChar.self) { chars in
                    // Empty text, not NULL (a nil pointer would bind NULL).
                    guard let base = chars.baseAddress else { return _ = sqlite3_bind_text(s, i, "", 0, osq_sqlite_transient()) }
                    _ = sqlite3_bind_text64(s, i, base, sqlite3_uint64(chars.count), osq_sqlite_transient(), UInt8(SQLITE_UTF8))
                }
            }
        case .blob(let b):
            // Bytes that are not UTF-8 (a file name) stay bytes: a blob, read back as `.blob`.
            b.withUnsafeBytes { raw in _ = sqlite3_bind_blob64(s, i, raw.baseAddress, sqlite3_uint64(raw.count), osq_sqlite_transient()) }
        }
    }

    /// The (time, eid) of the newest event within `bounds`.
    func lastEvent(_ db: OpaquePointer, _ bounds: EventScanBounds) -> (time: UInt64, eid: UInt64)? {
        let (clause, values) = bounds.clause
        guard let s = Self.prepare(db, "SELECT time, eid FROM \(table)\(clause) ORDER BY eid DESC LIMIT 1") else { return nil }
        defer { sqlite3_finalize(s) }
        for (i, v) in values.enumerated() { sqlite3_bind_int64(s, Int32(i + 1), v) }
        guard sqlite3_step(s) == SQLITE_ROW else { return nil }
        return (UInt64(bitPattern: sqlite3_column_int64(s, 0)), UInt64(bitPattern: sqlite3_column_int64(s, 1)))
    }

    /// Deletes the events older than `time`, keeping the newest one (osquery keeps the last
    /// batch so ids never restart; AUTOINCREMENT already guarantees that here, the row is kept
    /// for the same visible behaviour). Returns how many went.
    package func expire(_ db: OpaquePointer, before time: UInt64) -> Int {
        guard
            Self.exec(
                db, "DELETE FROM \(table) WHERE time < \(Int64(clamping: time)) AND eid < (SELECT max(eid) FROM \(table))") == nil
        else { return 0 }
        return Int(sqlite3_changes(db))
    }

    /// Deletes the oldest events beyond `max`; returns how many went.
    package func trim(_ db: OpaquePointer, keep max: UInt64) -> Int {
        guard
            Self.exec(
                db,
                "DELETE FROM \(table) WHERE eid <= (SELECT eid FROM \(table) ORDER BY eid DESC LIMIT 1 OFFSET \(Int64(clamping: max)))"
            ) == nil
        else { return 0 }
        return Int(sqlite3_changes(db))
    }

    package func count(_ db: OpaquePointer) -> Int {
        guard let s = Self.prepare(db, "SELECT count(*) FROM \(table)") else { return 0 }
        defer { sqlite3_finalize(s) }
        return sqlite3_step(s) == SQLITE_ROW ? Int(sqlite3_column_int64(s, 0)) : 0
    }
}

package enum EventID {
    /// osquery's index form: at least ten digits, zero-padded.
    package static func index(_ eid: UInt64) -> String {
        let digits = String(eid)
        return digits.count >= 10 ? digits : String(repeating: "0", count: 10 - digits.count) + digits
    }
}

package struct EventError: Error, Sendable, CustomStringConvertible {
    package var message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}
