import OsqueryEvents

// events (issue 17): the daemon's store buffers event rows.

extension DaemonStore: EventDatabase {
    /// Event rows share the store's connection (and its lock): one file, one writer.
    package func withHandle<T: Sendable>(_ body: (OpaquePointer) -> T) -> T {
        connection.withLock { (c: inout Connection) -> T in body(c.db) }
    }
}
