internal import CSQLite
import OsqueryEvents

// events (issue 17): the daemon's store buffers event rows.

extension DaemonStore: EventDatabase {
    /// Event rows share the store's connection (and its lock): one file, one writer.
    ///
    /// Their transactions commit with `synchronous=NORMAL`: in WAL mode a committed transaction
    /// then survives the process's crash or SIGKILL (the OS holds the write) but not a power
    /// loss, and a flush costs no fdatasync. osquery's RocksDB store makes the same trade, and
    /// a weaker one: event writes skip its write-ahead log altogether ("Events should be fast,
    /// and do not need to force syncs"). Every other use of the store stays at FULL, and its
    /// next commit syncs the log with the event rows written before it, so nothing the results
    /// pipeline committed can be lost behind an event row.
    package func withHandle<T: Sendable>(_ body: (OpaquePointer) -> T) -> T {
        connection.withLock { (c: inout Connection) -> T in
            sqlite3_exec(c.db, "PRAGMA synchronous=NORMAL", nil, nil, nil)
            defer { sqlite3_exec(c.db, "PRAGMA synchronous=FULL", nil, nil, nil) }
            return body(c.db)
        }
    }
}
