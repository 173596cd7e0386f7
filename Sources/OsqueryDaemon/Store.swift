internal import CSQLite
import Foundation
import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// osqueryd's embedded on-disk store at `--database_path`: one SQLite table of
/// (domain, key, value), with osquery's domains (`configurations`, `queries`,
/// `logs`, `persistent_settings`, …).
///
/// WAL journal with EXCLUSIVE locking and `synchronous=FULL`: a committed
/// transaction survives a SIGKILL and a power loss (event rows: a SIGKILL, not a
/// power loss; see `withHandle` in Events.swift), and a second process cannot open the same store
/// (osquery's RocksDB lock), so the watcher's next worker waits for the old
/// one's lock to go away. One connection serialized by a mutex: callable from
/// any thread, but every call blocks (run it on a dedicated thread, never on
/// the cooperative pool).
public final class DaemonStore: Sendable {
    /// osquery's domains (RocksDB column families).
    public enum Domain {
        public static let configurations = "configurations"
        public static let queries = "queries"
        public static let events = "events"
        public static let logs = "logs"
        public static let carves = "carves"
        public static let distributed = "distributed"
        public static let distributedRunning = "distributed_running"
        public static let queryPerformance = "query_performance"
        public static let persistentSettings = "persistent_settings"
    }

    /// The file (":memory:" for an in-memory store).
    public let path: String
    let connection: Mutex<Connection>

    private init(path: String, connection: sending Connection) {
        self.path = path
        self.connection = Mutex(connection)
    }

    /// Opens (creating when missing) the store at `path`. The parent directory
    /// is created 0700 and the file 0600. While another process holds the store
    /// it retries 25 times, 200 ms apart, as osquery does for RocksDB's lock.
    public static func open(path: String) throws(DaemonError) -> DaemonStore {
        try open(path: path, attempts: 25, delay: 200_000)
    }

    static func open(path: String, attempts: Int, delay: useconds_t) throws(DaemonError) -> DaemonStore {
        guard !path.isEmpty else { throw DaemonError("--database_path is empty") }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, !FileManager.default.fileExists(atPath: parent) {
            do {
                try FileManager.default.createDirectory(
                    atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw DaemonError("Cannot create database directory \(parent): \(error.localizedDescription)")
            }
        }
        // Create the file 0600 before SQLite does (it would use 0644 minus umask).
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 {
            throw DaemonError("Cannot open database \(path): \(String(cString: strerror(errno)))")
        }
        close(fd)
        var lastError = ""
        for attempt in 0..<max(1, attempts) {
            if attempt > 0 { usleep(delay) }
            switch Connection.open(path) {
            case .success(let c):
                return DaemonStore(path: path, connection: c)
            case .failure(let e):
                lastError = e.message
                if !e.busy { throw DaemonError("Cannot open database \(path): \(e.message)") }
            }
        }
        throw DaemonError("Cannot open database \(path): it is locked by another process (\(lastError))")
    }

    /// A store that lives only as long as the process (`--disable_database`,
    /// `--ephemeral`).
    public static func inMemory() -> DaemonStore {
        switch Connection.open(":memory:") {
        case .success(let c): return DaemonStore(path: ":memory:", connection: c)
        case .failure(let e): fatalError("SQLite cannot open an in-memory database: \(e.message)")
        }
    }

    /// The value of `key` in `domain`, or nil when there is none. A read that
    /// fails (I/O error, corruption) throws: a missing value and an unreadable
    /// one call for different actions.
    public func get(_ domain: String, _ key: String) throws(DaemonError) -> String? {
        try connection.withLock { (c: inout Connection) throws(DaemonError) -> String? in try c.get(domain, key) }
    }

    /// Sets `key` in `domain` (one committed transaction).
    public func put(_ domain: String, _ key: String, _ value: String) throws(DaemonError) {
        try transaction { (t: inout Transaction) throws(DaemonError) in try t.put(domain, key, value) }
    }

    /// Removes `key` from `domain`; a missing key is not an error.
    public func delete(_ domain: String, _ key: String) throws(DaemonError) {
        try transaction { (t: inout Transaction) throws(DaemonError) in try t.delete(domain, key) }
    }

    /// The keys of `domain` starting with `prefix`, in byte order; throws when
    /// the scan fails.
    public func keys(_ domain: String, prefix: String = "", limit: Int = -1) throws(DaemonError) -> [String] {
        try connection.withLock { (c: inout Connection) throws(DaemonError) -> [String] in try c.keys(domain, prefix: prefix, limit: limit) }
    }

    /// Tests: values longer than `bytes` become unreadable (SQLite's
    /// "string or blob too big"), a real read error on a real row.
    func limitValueLength(_ bytes: Int32) {
        connection.withLock { c in _ = sqlite3_limit(c.db, SQLITE_LIMIT_LENGTH, bytes) }
    }

    /// Runs `body` in one transaction: everything it wrote is committed
    /// together, or (when it throws) nothing is.
    public func transaction<T>(_ body: (inout Transaction) throws(DaemonError) -> T) throws(DaemonError) -> T {
        try connection.withLock { (c: inout Connection) throws(DaemonError) -> T in
            try c.exec("BEGIN IMMEDIATE")
            var t = Transaction(connection: c)
            do throws(DaemonError) {
                let value = try body(&t)
                try c.exec("COMMIT")
                return value
            } catch {
                try? c.exec("ROLLBACK")
                throw error
            }
        }
    }

    /// Every key, one per line: `<domain>[<key>]: <value>` (`--database_dump`).
    /// A key or value holding control characters (a newline) is written as a
    /// JSON string, so a line is always one key.
    public func dump() throws(DaemonError) -> String {
        try connection.withLock { (c: inout Connection) throws(DaemonError) -> String in
            var out = ""
            try c.each("SELECT domain, key, value FROM store ORDER BY domain, key") { d, k, v in
                out += d
                out += "["
                out += Self.escaped(k)
                out += "]: "
                out += Self.escaped(v)
                out += "\n"
            }
            return out
        }
    }

    private static func escaped(_ s: String) -> String {
        s.utf8.contains(where: { $0 < 0x20 }) ? JSON.quoted(s) : s
    }

    /// Writes and reads inside `DaemonStore.transaction`.
    public struct Transaction: ~Copyable {
        fileprivate let connection: Connection

        public func get(_ domain: String, _ key: String) throws(DaemonError) -> String? {
            try connection.get(domain, key)
        }

        public func put(_ domain: String, _ key: String, _ value: String) throws(DaemonError) {
            try connection.put(domain, key, value)
        }

        public func delete(_ domain: String, _ key: String) throws(DaemonError) {
            try connection.delete(domain, key)
        }

        public func keys(_ domain: String, prefix: String = "") throws(DaemonError) -> [String] {
            try connection.keys(domain, prefix: prefix)
        }
    }
}

/// One SQLite connection with its prepared statements. Only touched under
/// `DaemonStore`'s mutex.
final class Connection: @unchecked Sendable {
    struct OpenError: Error {
        var message: String
        var busy: Bool
    }

    let db: OpaquePointer
    let path: String
    private var statements: [String: OpaquePointer] = [:]

    private init(db: OpaquePointer, path: String) {
        self.db = db
        self.path = path
    }

    deinit {
        for s in statements.values { sqlite3_finalize(s) }
        sqlite3_close_v2(db)
    }

    static func open(_ path: String) -> Result<Connection, OpenError> {
        var handle: OpaquePointer?
        Database.configureSQLite()
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "error \(rc)"
            if let handle { sqlite3_close_v2(handle) }
            return .failure(OpenError(message: message, busy: false))
        }
        let c = Connection(db: handle, path: path)
        // EXCLUSIVE before WAL: no shared-memory index, and the lock taken by
        // the first write is held until close (one process per store).
        let setup = [
            "PRAGMA locking_mode=EXCLUSIVE",
            "PRAGMA journal_mode=WAL",
            // FULL: the WAL is fsynced at every commit. The result pipeline
            // fsyncs the results file before it commits the cursor past an
            // entry, and relies on an entry (and its recorded file offset)
            // being on disk before it appends; with NORMAL a power loss could
            // roll back a commit whose effects the fsynced file already shows
            // (a baseline reverted: the next run logs the same lines again).
            // It costs an fsync per transaction, a few per scheduled run.
            "PRAGMA synchronous=FULL",
            """
            CREATE TABLE IF NOT EXISTS store (domain TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, \
            PRIMARY KEY (domain, key)) WITHOUT ROWID
            """,
            // Takes the exclusive lock now, so a second process fails at open.
            "BEGIN IMMEDIATE", "COMMIT",
        ]
        for sql in setup {
            let rc = sqlite3_exec(handle, sql, nil, nil, nil)
            if rc != SQLITE_OK {
                let message = String(cString: sqlite3_errmsg(handle))
                let busy = rc & 0xff == SQLITE_BUSY || rc & 0xff == SQLITE_LOCKED
                return .failure(OpenError(message: message, busy: busy))
            }
        }
        return .success(c)
    }

    private func error(_ what: String) -> DaemonError {
        DaemonError("Database \(path): \(what): \(String(cString: sqlite3_errmsg(db)))")
    }

    func exec(_ sql: String) throws(DaemonError) {
        if sqlite3_exec(db, sql, nil, nil, nil) != SQLITE_OK { throw error(sql) }
    }

    private func statement(_ sql: String) throws(DaemonError) -> OpaquePointer {
        if let s = statements[sql] {
            sqlite3_reset(s)
            sqlite3_clear_bindings(s)
            return s
        }
        var s: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &s, nil) == SQLITE_OK, let s else { throw error("prepare") }
        statements[sql] = s
        return s
    }

    /// Binds text of any length: the 64-bit call takes the count unconverted,
    /// and SQLite's own length limit answers a value too big with an error
    /// (SQLITE_TOOBIG) instead of a trapping conversion.
    private func bind(_ s: OpaquePointer, _ index: Int32, _ text: String) throws(DaemonError) {
        var copy = text
        let rc = copy.withUTF8 { buf in
            buf.withMemoryRebound(to: CChar.self) { chars -> Int32 in
                // Empty text, not NULL (a nil pointer would bind NULL).
                guard let base = chars.baseAddress else { return sqlite3_bind_text(s, index, "", 0, osq_sqlite_transient()) }
                return sqlite3_bind_text64(
                    s, index, base, sqlite3_uint64(chars.count), osq_sqlite_transient(), UInt8(SQLITE_UTF8))
            }
        }
        if rc != SQLITE_OK {
            throw DaemonError("Database \(path): cannot store a value of \(text.utf8.count) bytes: \(String(cString: sqlite3_errstr(rc)))")
        }
    }

    private func text(_ s: OpaquePointer, _ column: Int32) -> String {
        guard let p = sqlite3_column_text(s, column) else { return "" }
        let n = Int(sqlite3_column_bytes(s, column))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }

    func get(_ domain: String, _ key: String) throws(DaemonError) -> String? {
        let s = try statement("SELECT value FROM store WHERE domain = ?1 AND key = ?2")
        defer { sqlite3_reset(s) }
        try bind(s, 1, domain)
        try bind(s, 2, key)
        switch sqlite3_step(s) {
        case SQLITE_ROW: return text(s, 0)
        case SQLITE_DONE: return nil
        default: throw error("read \(domain)/\(key)")
        }
    }

    func put(_ domain: String, _ key: String, _ value: String) throws(DaemonError) {
        let s = try statement("INSERT OR REPLACE INTO store (domain, key, value) VALUES (?1, ?2, ?3)")
        defer { sqlite3_reset(s) }
        try bind(s, 1, domain)
        try bind(s, 2, key)
        try bind(s, 3, value)
        if sqlite3_step(s) != SQLITE_DONE { throw error("write \(domain)/\(key)") }
    }

    func delete(_ domain: String, _ key: String) throws(DaemonError) {
        let s = try statement("DELETE FROM store WHERE domain = ?1 AND key = ?2")
        defer { sqlite3_reset(s) }
        try bind(s, 1, domain)
        try bind(s, 2, key)
        if sqlite3_step(s) != SQLITE_DONE { throw error("delete \(domain)/\(key)") }
    }

    func keys(_ domain: String, prefix: String, limit: Int = -1) throws(DaemonError) -> [String] {
        // A range scan on the primary key: [prefix, prefix + U+10FFFF) holds every
        // key starting with prefix (text compares bytewise, BINARY collation).
        let s = try statement("SELECT key FROM store WHERE domain = ?1 AND key >= ?2 AND key < ?3 ORDER BY key LIMIT ?4")
        defer { sqlite3_reset(s) }
        try bind(s, 1, domain)
        try bind(s, 2, prefix)
        try bind(s, 3, prefix + "\u{10FFFF}")
        sqlite3_bind_int64(s, 4, Int64(limit))
        var out: [String] = []
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error("scan \(domain)") }
            out.append(text(s, 0))
        }
        return out
    }

    func each(_ sql: String, _ body: (String, String, String) -> Void) throws(DaemonError) {
        let s = try statement(sql)
        defer { sqlite3_reset(s) }
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error("scan") }
            body(text(s, 0), text(s, 1), text(s, 2))
        }
    }
}
