import CSQLite
import Foundation
import ProtocolFixture
import OsqueryEngine
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

/// A fresh directory under /tmp for one test, removed by `remove()`.
struct ResultsTestDir {
    let path: String

    init(_ tag: String) {
        path = NSTemporaryDirectory() + "osq-results-\(tag)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func read(_ name: String) -> String {
        (try? String(contentsOfFile: file(name), encoding: .utf8)) ?? ""
    }

    func mode(_ name: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: file(name)))?[.posixPermissions] as? Int) ?? -1
    }
}

@Suite struct StoreTests {
    @Test func roundTripsAndReopens() throws {
        let dir = ResultsTestDir("store")
        defer { dir.remove() }
        let path = dir.file("db/sub/osquery.db")
        do {
            let store = try DaemonStore.open(path: path)
            try store.put("queries", "a", "1")
            try store.put("queries", "a", "2")
            try store.put("queries", "b", "")
            try store.put("queries", "query.a", "select 1")
            try store.put("persistent_settings", "a", "other domain")
            try store.put("queries", "nul", "x\u{0}y")
            #expect(try store.get("queries", "a") == "2")
            #expect(try store.get("queries", "b") == "")
            #expect(try store.get("queries", "missing") == nil)
            #expect(try store.get("queries", "nul") == "x\u{0}y")
            #expect(try store.keys("queries") == ["a", "b", "nul", "query.a"])
            #expect(try store.keys("queries", prefix: "query.") == ["query.a"])
            try store.delete("queries", "b")
            try store.delete("queries", "never-there")
            #expect(try store.get("queries", "b") == nil)
        }
        // Everything committed is there after reopening.
        let again = try DaemonStore.open(path: path)
        #expect(try again.get("queries", "a") == "2")
        #expect(try again.get("persistent_settings", "a") == "other domain")
        #expect(try again.keys("queries") == ["a", "nul", "query.a"])
        #expect(dir.mode("db/sub/osquery.db") == 0o600)
        #expect(dir.mode("db/sub") == 0o700)
    }

    @Test func transactionsCommitTogetherOrNotAtAll() throws {
        let store = DaemonStore.inMemory()
        try store.put("d", "kept", "before")
        #expect(throws: DaemonError.self) {
            try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) in
                try t.put("d", "kept", "changed")
                try t.put("d", "new", "value")
                #expect(try t.get("d", "new") == "value")
                throw DaemonError("stop")
            }
        }
        #expect(try store.get("d", "kept") == "before")
        #expect(try store.get("d", "new") == nil)
        let n = try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> Int in
            try t.put("d", "x", "1")
            try t.put("d", "y", "2")
            return try t.keys("d").count
        }
        #expect(n == 3)
        #expect(try store.get("d", "y") == "2")
    }

    /// Event rows commit without an fdatasync (synchronous=NORMAL: kept across a SIGKILL, not a
    /// power loss, as osquery's RocksDB events), every other write of the store with one (FULL),
    /// and the events' setting never outlives their call.
    @Test func eventRowsCommitWithoutSyncTheRestWithSync() throws {
        let dir = ResultsTestDir("sync")
        defer { dir.remove() }
        let store = try DaemonStore.open(path: dir.file("osquery.db"))
        func synchronous(_ db: OpaquePointer) -> Int32 {
            var s: OpaquePointer?
            guard sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &s, nil) == SQLITE_OK else { return -1 }
            defer { sqlite3_finalize(s) }
            return sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1
        }
        #expect(store.withHandle { synchronous($0) } == 1)
        #expect(store.connection.withLock { synchronous($0.db) } == 2)
        try store.put("queries", "a", "1")
        #expect(store.withHandle { synchronous($0) } == 1)
        #expect(store.connection.withLock { synchronous($0.db) } == 2)
        #expect(try store.get("queries", "a") == "1")
    }

    @Test func secondOpenOfALockedStoreFailsWithThePath() throws {
        let dir = ResultsTestDir("lock")
        defer { dir.remove() }
        let path = dir.file("osquery.db")
        let first = try DaemonStore.open(path: path)
        try first.put("d", "k", "v")
        let error = #expect(throws: DaemonError.self) {
            _ = try DaemonStore.open(path: path, attempts: 2, delay: 1000)
        }
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("locked") == true)
    }

    @Test func unusablePathIsAClearError() {
        let error = #expect(throws: DaemonError.self) {
            _ = try DaemonStore.open(path: "/proc/self/no/such/osquery.db")
        }
        #expect(error?.message.contains("/proc/self/no/such") == true)
    }

    @Test func aFileThatIsNoDatabaseIsAClearError() throws {
        let dir = ResultsTestDir("garbage")
        defer { dir.remove() }
        let path = dir.file("osquery.db")
        try String(repeating: "not a database ", count: 100).write(toFile: path, atomically: false, encoding: .utf8)
        let error = #expect(throws: DaemonError.self) { _ = try DaemonStore.open(path: path) }
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("not a database") == true, "\(error?.message ?? "")")
    }

    @Test func dumpIsOneLinePerKey() throws {
        let store = DaemonStore.inMemory()
        try store.put("queries", "q", "[{\"a\":\"1\"}]")
        try store.put("logs", "multi", "line1\nline2")
        #expect(try store.dump() == #"""
            logs[multi]: "line1\nline2"
            queries[q]: [{"a":"1"}]

            """#)
    }

    /// An unreadable row is an error, not a missing one (a caller would act on nil).
    @Test func readErrorsThrow() throws {
        let store = DaemonStore.inMemory()
        try store.put("persistent_settings", "instance_uuid_v1", String(repeating: "7", count: 300))
        try store.put("persistent_settings", "short", "ok")
        store.limitValueLength(200)
        let error = #expect(throws: DaemonError.self) { _ = try store.get("persistent_settings", "instance_uuid_v1") }
        #expect(error?.message.contains("too big") == true, "\(error?.message ?? "")")
        #expect(try store.get("persistent_settings", "short") == "ok")
        // The host identifier is not replaced by a new one on a failed read.
        let flags = Flags()
        try flags.set("host_identifier", "instance")
        #expect(HostIdentifier.resolve(flags: flags, store: store).count == 36)
        store.limitValueLength(1_000_000)
        #expect(try store.get("persistent_settings", "instance_uuid_v1") == String(repeating: "7", count: 300))
    }

    /// A value over SQLite's length limit is refused with a clear error (a 64-bit
    /// count is passed, no Int32 conversion to trap on a value over 2 GiB).
    @Test func aValueTooBigToStoreIsAClearError() throws {
        let store = DaemonStore.inMemory()
        store.limitValueLength(100)
        let error = #expect(throws: DaemonError.self) { try store.put("logs", "k", String(repeating: "x", count: 200)) }
        #expect(error?.message.contains("cannot store a value of 200 bytes") == true, "\(error?.message ?? "")")
        try store.put("logs", "k", "small")
        #expect(try store.get("logs", "k") == "small")
    }

    @Test func usableFromManyThreads() async throws {
        let store = DaemonStore.inMemory()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<4 {
                group.addTask {
                    try await offPool {
                        for i in 0..<100 { try store.put("d", "t\(t)-\(i)", String(i)) }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try store.keys("d").count == 400)
    }
}

/// Runs blocking work on its own thread (never on the cooperative pool).

@Suite struct HostIdentifierTests {
    @Test func modes() throws {
        let store = DaemonStore.inMemory()
        let flags = Flags()
        #expect(HostIdentifier.resolve(flags: flags, store: store) == HostIdentifier.hostname())
        #expect(!HostIdentifier.hostname().isEmpty)

        try flags.set("host_identifier", "instance")
        let instance = HostIdentifier.resolve(flags: flags, store: store)
        #expect(UUID(uuidString: instance) != nil && instance == instance.lowercased())
        #expect(HostIdentifier.resolve(flags: flags, store: store) == instance)
        #expect(try store.get("persistent_settings", "instance_uuid_v1") == instance)

        try flags.set("host_identifier", "ephemeral")
        let ephemeral = HostIdentifier.resolve(flags: flags, store: store)
        #expect(UUID(uuidString: ephemeral) != nil && ephemeral != instance)
        #expect(HostIdentifier.resolve(flags: flags, store: DaemonStore.inMemory()) == ephemeral)

        try flags.set("host_identifier", "specified")
        #expect(HostIdentifier.resolve(flags: flags, store: store) == HostIdentifier.hostname())
        try flags.set("specified_identifier", "web-42")
        #expect(HostIdentifier.resolve(flags: flags, store: store) == "web-42")

        try flags.set("host_identifier", "uuid")
        let uuid = HostIdentifier.resolve(flags: flags, store: store)
        #expect(UUID(uuidString: uuid) != nil)
        #expect(try store.get("persistent_settings", "host_uuid_v3") == uuid)
        #expect(HostIdentifier.resolve(flags: flags, store: store) == uuid)
    }

    /// As osquery's getHostIdentifier: the hostname until the flags (say a
    /// config's options) name another identifier, which is then kept.
    @Test func theIdentityFollowsTheFlagsUntilItIsNotTheHostname() throws {
        let flags = Flags()
        let identity = HostIdentity(flags: flags, store: DaemonStore.inMemory())
        #expect(identity.current() == HostIdentifier.hostname())
        try flags.set("host_identifier", "specified")
        #expect(identity.current() == HostIdentifier.hostname())
        try flags.set("specified_identifier", "box-7")
        #expect(identity.current() == "box-7")
        try flags.set("specified_identifier", "box-8")
        try flags.set("host_identifier", "ephemeral")
        #expect(identity.current() == "box-7")
    }

    @Test func hardwareUUIDUnlessPlaceholder() throws {
        let dir = ResultsTestDir("dmi")
        defer { dir.remove() }
        let path = dir.file("product_uuid")
        try "4C4C4544-0042-3510-8052-B4C04F384D32\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(HostIdentifier.hostUUID(store: DaemonStore.inMemory(), dmiPath: path) == "4C4C4544-0042-3510-8052-B4C04F384D32")
        try "03000200-0400-0500-0006-000700080009\n".write(toFile: path, atomically: false, encoding: .utf8)
        let generated = HostIdentifier.hostUUID(store: DaemonStore.inMemory(), dmiPath: path)
        #expect(generated != "03000200-0400-0500-0006-000700080009" && UUID(uuidString: generated) != nil)
        #expect(HostIdentifier.hardwareUUID(dir.file("missing")) == nil)
        // Stored once, reused even when the hardware answer changes.
        let store = DaemonStore.inMemory()
        try "11111111-2222-3333-4444-555555555555".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(HostIdentifier.hostUUID(store: store, dmiPath: path) == "11111111-2222-3333-4444-555555555555")
        try "66666666-2222-3333-4444-555555555555".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(HostIdentifier.hostUUID(store: store, dmiPath: path) == "11111111-2222-3333-4444-555555555555")
    }
}
