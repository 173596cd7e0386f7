import Foundation
import OsqueryEngine
import OsqueryManager
import OsqueryProtocol
import OsqueryTables
import ProtocolFixture
import Synchronization
import Testing
import ThriftCodec

let infiniteCTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

/// A table with an alias, for the pool's clean-state checks.
final class AliasedTable: TablePlugin {
    let schema = TableSchema(name: "aliased", columns: [TableColumn("a", .integer)], aliases: ["aliased_view"])
    func generate(_ context: QueryContext) throws -> TableRows {
        var rows = TableRows(schema: schema)
        rows.appendRow([7])
        return rows
    }
}

/// How many jobs have started, shared by several tasks.
final class StartCount: Sendable {
    let value = Atomic<Int>(0)
}

/// The query threads' side of issue 14: each caller gets a clean connection, a query stops at
/// its deadline or when its caller goes away, and a stuck query never starves the others.
// Serialized: runaway statements spin every core they get.
@Suite(.serialized) struct QueryThreadHardeningTests {
    func pool(threads: Int, timeout: String) throws -> QueryThreads {
        let flags = Flags()
        try flags.set("query_timeout", timeout)
        let registry = PluginRegistry()
        BuiltinTables.register(into: registry, flags: flags)
        #expect(registry.addTable(AliasedTable()))
        return QueryThreads(count: threads, registry: registry, flags: flags)
    }

    /// A caller's temp view named like a table, its tables, an open transaction and a pragma
    /// are not seen by the next caller on the same connection; the alias views survive.
    @Test func aCallersStateIsNotSeenByTheNext() async throws {
        let queries = try pool(threads: 1, timeout: "0")
        defer { queries.stop() }
        try await queries.run { db throws(EngineError) in
            _ = try db.execute(
                """
                CREATE TEMP VIEW time AS SELECT 1 AS poisoned; CREATE TEMP VIEW aliased AS SELECT 0 AS a;
                DROP VIEW aliased_view; CREATE TEMP VIEW aliased_view AS SELECT 0 AS a;
                CREATE TABLE main.kept(a); PRAGMA case_sensitive_like = 1; BEGIN
                """)
        }
        let seen = try await queries.run { db throws(EngineError) in
            (
                try db.execute("SELECT * FROM time").columns,
                try db.execute("SELECT a FROM aliased UNION ALL SELECT a FROM aliased_view").rows,
                try db.execute("SELECT count(*) FROM sqlite_schema").rows,
                try db.execute("SELECT 'a' LIKE 'A'").rows
            )
        }
        #expect(!seen.0.contains("poisoned") && seen.0.contains("unix_time"))
        #expect(seen.1 == [[.integer(7)], [.integer(7)]])
        #expect(seen.2 == [[.integer(0)]])
        #expect(seen.3 == [[.integer(1)]])
        // BEGIN works again: the previous caller's transaction was rolled back.
        try await queries.run { db throws(EngineError) in _ = try db.execute("BEGIN; COMMIT") }
    }

    /// A caller stopped at its deadline leaves nothing either: the clean-up is not cut short.
    @Test(.timeLimit(.minutes(1))) func aCallerStoppedAtTheDeadlineLeavesNothing() async throws {
        let queries = try pool(threads: 1, timeout: "1")
        defer { queries.stop() }
        await #expect(throws: EngineError.self) {
            try await queries.run { db throws(EngineError) in
                _ = try db.execute("CREATE TEMP VIEW time AS SELECT 1 AS poisoned; BEGIN; \(infiniteCTE)")
            }
        }
        let columns = try await queries.run { db throws(EngineError) in try db.execute("SELECT * FROM time").columns }
        #expect(columns.contains("unix_time") && !columns.contains("poisoned"))
    }

    /// Cancelling a caller's task takes its queued job out of the queue at once, and interrupts
    /// its running statement; the thread then serves the next caller.
    @Test(.timeLimit(.minutes(1))) func cancellationInterruptsTheQuery() async throws {
        let queries = try pool(threads: 1, timeout: "0")
        defer { queries.stop() }
        let started = Atomic<Bool>(false)
        let running = Task {
            try await queries.run { db throws(EngineError) in
                started.store(true, ordering: .sequentiallyConsistent)
                return try db.execute(infiniteCTE).rowCount
            }
        }
        #expect(await waitUntil(60) { started.load(ordering: .sequentiallyConsistent) })
        let queued = Task { try await queries.run { db throws(EngineError) in try db.execute("SELECT 1").rowCount } }
        queued.cancel()
        await #expect(throws: EngineError.self) { try await queued.value }
        running.cancel()
        do {
            _ = try await running.value
            Issue.record("the infinite query returned")
        } catch let error as EngineError {
            #expect(error.message.contains("cancelled"), "\(error.message)")
        }
        #expect(try await queries.run { db throws(EngineError) in try db.execute("SELECT 1").rows } == [[.integer(1)]])
    }

    /// Runaway statements on every base thread do not hold up a plain query: it gets a thread
    /// of its own and is answered while they run.
    @Test(.timeLimit(.minutes(1))) func aPlainQueryIsAnsweredWhileRunawaysRun() async throws {
        let queries = try pool(threads: 2, timeout: "0")
        defer { queries.stop() }
        let started = StartCount()
        var runaways: [Task<Int, any Error>] = []
        for _ in 0..<4 {
            runaways.append(Task {
                try await queries.run { db throws(EngineError) in
                    started.value.add(1, ordering: .sequentiallyConsistent)
                    return try db.execute(infiniteCTE).rowCount
                }
            })
        }
        #expect(await waitUntil(60) { started.value.load(ordering: .sequentiallyConsistent) == 4 })
        #expect(try await queries.run { db throws(EngineError) in try db.execute("SELECT 1").rows } == [[.integer(1)]])
        for task in runaways { task.cancel() }
        for task in runaways {
            await #expect(throws: EngineError.self) { try await task.value }
        }
    }

    /// More runaway queries than threads: each stops at the deadline with an error saying so,
    /// and a plain query queued behind them is answered.
    @Test(.timeLimit(.minutes(1))) func runawayQueriesStopAtTheDeadline() async throws {
        let queries = try pool(threads: 2, timeout: "1")
        defer { queries.stop() }
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    do {
                        _ = try await queries.run { db throws(EngineError) in try db.execute(infiniteCTE).rowCount }
                        return "returned"
                    } catch let error as EngineError {
                        return error.message
                    }
                }
            }
            let plain = try await queries.run { db throws(EngineError) in try db.execute("SELECT 1").rows }
            #expect(plain == [[.integer(1)]])
            for try await message in group {
                #expect(message.contains("deadline of 1 s (--query_timeout)"), "\(message)")
            }
        }
    }
}

/// The same through the manager's socket: what an extension's client sees.
@Suite(.serialized) struct ManagerQueryHardeningTests {
    /// Four clients send runaway queries: each gets the deadline's error, and a fifth
    /// client's `select 1` is answered.
    @Test(.timeLimit(.minutes(1))) func runawayClientsGetTheDeadlineAndOthersAreServed() async throws {
        let core = try await TestCore.start("deadline", flags: ["query_timeout": "1"])
        let clients = (0..<5).map { _ in ExtensionManagerClient(path: core.manager.socketPath) }
        defer { for c in clients { c.close() } }
        try await withThrowingTaskGroup(of: ExtensionResponse.self) { group in
            for client in clients.prefix(4) { group.addTask { try await client.query(ThriftString(infiniteCTE)) } }
            let plain = try await clients[4].query("select 1 as one")
            #expect(plain.status.code == 0 && plain.response == [["one": "1"]])
            for try await reply in group {
                #expect(reply.status.code == 1)
                #expect(reply.status.message.lossyString.contains("deadline"), "\(reply.status)")
            }
        }
        #expect(try await core.client.query("select 2 as two").response == [["two": "2"]])
        await core.stop()
    }

    /// Denied SQL through `query` gets SQLite's words, creates nothing, and the core serves on.
    /// End to end: a client sends a statement that never ends (no deadline set) and goes away;
    /// the server cancels the call and the query thread's statement is interrupted.
    @Test(.timeLimit(.minutes(1))) func aCallerThatDisconnectsHasItsQueryInterrupted() async throws {
        let core = try await TestCore.start("gone", flags: ["query_timeout": "0"])
        let fd = try connectUnix(core.manager.socketPath)
        let call = encodeMessage(MessageHeader(name: "query", type: .call, sequenceID: 1)) { w in
            w.writeFieldBegin(.string, id: 1)
            w.writeString(infiniteCTE)
            w.writeFieldStop()
        }
        #expect(call.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == call.count)
        #expect(await waitUntil(60) { core.manager.queries.runningCount == 1 })
        close(fd)
        #expect(await waitUntil(60) { core.manager.queries.runningCount == 0 })
        #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        await core.stop()
    }

    @Test func deniedSQLThroughTheSocket() async throws {
        let core = try await TestCore.start("denied")
        let dir = try scratchDirectory("denied")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let attach = try await core.client.query(ThriftString("ATTACH DATABASE '\(dir)/a.db' AS x; CREATE TABLE x.t(a)"))
        #expect(attach.status == ExtensionStatus(code: 1, message: "not authorized"))
        let vacuum = try await core.client.query(ThriftString("VACUUM INTO '\(dir)/v.db'"))
        #expect(vacuum.status == ExtensionStatus(code: 1, message: "authorization denied"))
        let leak = try await core.client.query("select hex(fts3_tokenizer('simple')) as p")
        #expect(leak.status.code == 1 && leak.response.isEmpty, "\(leak)")
        let columns = try await core.client.getQueryColumns("select fts3_tokenizer('simple', x'4141414141414141')")
        #expect(columns.status.code == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        await core.stop()
    }

    /// A temp view made through `query` never shadows the real table for later callers.
    @Test func aTempViewDoesNotPoisonLaterCallers() async throws {
        let core = try await TestCore.start("poison")
        let made = try await core.client.query("CREATE TEMP VIEW time AS SELECT 1 AS poisoned")
        #expect(made.status.code == 0)
        // More calls than query threads: whichever thread made the view serves one of them.
        for _ in 0..<9 {
            let rows = try await core.client.query("select * from time").response
            #expect(rows.count == 1 && rows[0]["poisoned"] == nil && rows[0]["unix_time"] != nil, "\(rows)")
        }
        await core.stop()
    }

    func register(_ core: TestCore, _ name: ThriftString, table: ThriftString, aliases: [String]) async throws -> ExtensionStatus {
        var routes = t1Routes
        for alias in aliases { routes.append(["id": "alias", "alias": ThriftString(alias)]) }
        return try await core.client.registerExtension(
            info: InternalExtensionInfo(name: name, version: "1.0", sdkVersion: "1.7.7", minSDKVersion: "1.0.0"),
            registry: ["table": [table: routes]])
    }

    /// An alias that is not a plain name, or that names a table or alias the core has, is
    /// refused at registration with a clear status; nothing of the registration stays.
    @Test func hostileAliasesAreRefusedAtRegistration() async throws {
        let core = try await TestCore.start("aliases")
        let dir = try scratchDirectory("aliases")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let injected = "v1 AS SELECT 1; ATTACH DATABASE '\(dir)/ai.db' AS ai; CREATE TABLE ai.t(a); CREATE TEMP VIEW v2"
        let smuggled = try await register(core, "smuggler", table: "smuggled", aliases: [injected])
        #expect(smuggled.code == 1)
        #expect(smuggled.message.lossyString == "Failed adding registry: Invalid table alias in smuggled: \(injected)")
        let shadow = try await register(core, "shadow", table: "shadow_tbl", aliases: ["Time"])
        #expect(shadow == ExtensionStatus(code: 1, message: "Failed adding registry: Table alias Time of shadow_tbl conflicts with an existing table or alias"))
        #expect(try await core.client.extensions().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        let time = try await core.client.query("select * from time").response
        #expect(time.count == 1 && time[0]["unix_time"] != nil)
        await core.stop()
    }

    /// An extension's alias view goes with its table, on every query thread: a later
    /// extension's table of that name is what queries reach.
    @Test func anAliasDoesNotOutliveItsExtension() async throws {
        let core = try await TestCore.start("alias-gone")
        let first = TestExtension(rows: [["a": "first"]])
        var routes = t1Routes
        routes.append(["id": "alias", "alias": "t1_alias"])
        let status = try await core.client.registerExtension(
            info: InternalExtensionInfo(name: "t1", version: "1.0", sdkVersion: "1.7.7", minSDKVersion: "1.0.0"),
            registry: ["table": ["t1_tbl": routes]])
        #expect(status.code == 0, "\(status)")
        let server = try await RPCServer.start(path: "\(core.manager.socketPath).\(status.uuid)", service: .extension(first))
        for _ in 0..<6 {
            #expect(try await core.client.query("select a from t1_alias").response == [["a": "first"]])
        }
        #expect(try await core.client.deregisterExtension(uuid: status.uuid).code == 0)
        server.stop()
        let second = TestExtension(rows: [["a": "second"]])
        let (_, secondServer) = try await attach(core, name: "t2", table: "t1_alias", second)
        for _ in 0..<9 {
            let rows = try await core.client.query("select a from t1_alias").response
            #expect(rows == [["a": "second"]])
        }
        secondServer.stop()
        await core.stop()
    }
}
