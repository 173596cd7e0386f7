import OsqueryProtocol
import Testing
import Synchronization
@_spi(FastPath) import OsqueryExtension
import OsqueryExtensionTesting

final class Flag: Sendable {
    let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

func helloTable(_ name: String = "hello_t") -> Table {
    Table(name, columns: [.text("greeting"), .integer("n")]) { ctx in
        [["greeting": "hello", "n": 1], ["greeting": "world", "n": 2]]
    }
}

/// A cell value that counts the live instances of its table, to see generated rows freed.
final class CountedValue: ColumnValue {
    static let live = Atomic<Int>(0)
    let n: Int
    init(_ n: Int) {
        self.n = n
        Self.live.add(1, ordering: .relaxed)
    }
    deinit { Self.live.subtract(1, ordering: .relaxed) }
    var columnText: String? { String(n) }
}

/// A plugin of its own (not a ``Table``) whose answers say which path the server took.
struct EncodingPlugin: ExtensionPlugin {
    let name: String
    let encodes: Bool
    var registry: String { "config" }

    func handle(_ request: PluginRequest) async throws -> PluginResponse { .ok([["path": "handle"]]) }

    func reply(to request: PluginRequest) async throws -> PluginReply {
        guard encodes else { return PluginReply(.rows(try await handle(request).wire)) }
        var w = ThriftWriter()
        for i in 0..<3 { w.writeStringMap(["path": "encoded", "i": ThriftString(String(i))] as StringMap) }
        return PluginReply(.encoded(ExtensionStatus(code: 0, message: "OK"), EncodedRows(count: 3, encoded: w.finish())))
    }
}

@Suite struct RunnerTests {
    /// Issue 16 item 3: the fast path is the plugin protocol's, not ``Table``'s alone. A plugin
    /// of any kind that answers with encoded rows has them sent as they are (with its uuid in
    /// the status); one that does not gets its ``ExtensionPlugin/handle(_:)`` answer sent.
    @Test func anyPluginMayAnswerWithEncodedRows() async throws {
        let core = try await FakeCore.start()
        let ext = Extension(
            "encoding_ext",
            plugins: [EncodingPlugin(name: "encoded_cfg", encodes: true), EncodingPlugin(name: "plain_cfg", encodes: false)])
        try await ext.start(options: try options(core.socket))
        let encoded = try await core.callPluginRaw(registry: "config", item: "encoded_cfg", request: [:])
        #expect(encoded.status.code == 0 && encoded.status.uuid == ext.uuid && ext.uuid != 0)
        #expect(encoded.response == [["path": "encoded", "i": "0"], ["path": "encoded", "i": "1"], ["path": "encoded", "i": "2"]])
        let plain = try await core.callPluginRaw(registry: "config", item: "plain_cfg", request: [:])
        #expect(plain.status.code == 0 && plain.response == [["path": "handle"]])
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    /// A big generate's rows are freed after the reply is sent (not before): they must still be
    /// freed, and the reply must carry every row.
    @Test func bigGeneratedRowsAreFreedAfterTheReply() async throws {
        let core = try await FakeCore.start()
        let table = Table("counted_t", columns: [.integer("n")]) { _ in
            (0..<5000).map { ["n": CountedValue($0)] }
        }
        let ext = Extension("counted_ext", plugins: [table])
        try await ext.start(options: try options(core.socket))
        let rows = try await OsqueryClient(socket: core.socket).query("select n from counted_t")
        #expect(rows.count == 5000 && rows.last == ["n": "4999"])
        var freed = false
        for _ in 0..<500 where !freed {
            freed = CountedValue.live.load(ordering: .relaxed) == 0
            if !freed { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(freed, "\(CountedValue.live.load(ordering: .relaxed)) generated values still alive")
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    /// `queryReplyRows` gives the cells `queryRows` gives, in the same order, and the core's
    /// SQL errors as `.status`.
    @Test func clientReadsRowsInPlace() async throws {
        let core = try await FakeCore.start()
        let table = Table("many_t", columns: [.integer("n"), .text("s"), .double("d")]) { _ in
            (0..<20_000).map { ["n": $0, "s": "ü\($0)", "d": Double($0) / 4] }
        }
        let ext = Extension("many_ext", plugins: [table])
        try await ext.start(options: try options(core.socket))
        let client = OsqueryClient(socket: core.socket)
        let lazy = try await client.queryReplyRows("select * from many_t")
        let maps = try await client.queryRows("select * from many_t")
        #expect(lazy.count == 20_000 && lazy.stringMaps == maps)
        #expect(lazy[19_999]["s"] == "ü19999" && lazy[3]["d"] == "0.75" && lazy[3]["missing"] == nil)
        await #expect(throws: OsqueryClientError.self) { try await client.queryReplyRows("select * from no_such_t") }
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    @Test func registersTruthfullyListensPrivatelyAndServes() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("reg_ext", version: "2.3.4", plugins: [helloTable()])
        try await ext.start(options: try options(core.socket))
        let reg = try #require(core.registrations[ext.uuid])
        #expect(reg.name == "reg_ext" && reg.version == "2.3.4")
        #expect(reg.sdkVersion == OsquerySDK.osqueryVersion && reg.minSDKVersion == OsquerySDK.minimumCoreVersion)
        #expect(reg.plugins == ["table": ["hello_t"]])
        #expect(ext.listenPath == "\(core.socket).\(ext.uuid)")
        #expect(fileMode("\(core.socket).\(ext.uuid)") == 0o600)
        let ping = try await core.extensionClient(ext.uuid).ping()
        #expect(ping.code == 0 && ping.uuid == ext.uuid)
        let rows = try await OsqueryClient(socket: core.socket).query("select greeting from hello_t where n = 2")
        #expect(rows == [["greeting": "world"]])
        // Unknown registry / item: a status, and the connection stays usable.
        let client = core.extensionClient(ext.uuid)
        let unknownItem = try await client.call(registry: "table", item: "nope", request: ["action": "generate"])
        #expect(unknownItem.status.code == 1 && unknownItem.status.message == "Unknown registry item: nope")
        let unknownRegistry = try await client.call(registry: "killswitch", item: "x", request: [:])
        #expect(unknownRegistry.status.code == 1)
        #expect(try await client.ping().code == 0)
        ext.stop()
        #expect(await ext.waitUntilStopped() == .stopped)
        #expect(core.registrations.isEmpty)
        #expect(!exists("\(core.socket).\(reg.uuid)"))
        await core.stop()
    }

    @Test func slowPluginNeverDelaysPingsAndCallsRunConcurrently() async throws {
        let core = try await FakeCore.start()
        // Ordering, not timing: both calls are inside generate at once, and a
        // ping is answered while both are still held there.
        let inFlight = Mutex(0)
        let released = Mutex(false)
        let slow = Table("slow_t", columns: [.text("a")]) { _ in
            inFlight.withLock { $0 += 1 }
            while !released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
            return [["a": "done"]]
        }
        let ext = Extension("slow_ext", plugins: [slow])
        try await ext.start(options: try options(core.socket))
        let client = core.extensionClient(ext.uuid)
        async let a = client.call(registry: "table", item: "slow_t", request: ["action": "generate"])
        async let b = client.call(registry: "table", item: "slow_t", request: ["action": "generate"])
        var waited = 0
        while inFlight.withLock({ $0 }) < 2 && waited < 1000 {
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        #expect(inFlight.withLock { $0 } == 2)  // concurrent: both generates started before either finished
        #expect(try await client.ping().code == 0)  // answered while both are held
        released.withLock { $0 = true }
        let (ra, rb) = try await (a, b)
        #expect(ra.response.count == 1 && rb.response.count == 1)
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    @Test func shutdownRPCDrainsCallsHooksDeregistersAndRemovesSocket() async throws {
        let core = try await FakeCore.start()
        let hook = Flag()
        let started = Flag()
        let finished = Flag()
        let slow = Table("drain_t", columns: [.text("a")]) { _ in
            started.set()
            try? await Task.sleep(for: .milliseconds(600))
            finished.set()
            return [["a": "x"]]
        }
        let logger = LoggerPlugin("drain_log", shutdown: { hook.set() }) { _ in }
        let ext = Extension("drain_ext", plugins: [slow, logger])
        try await ext.start(options: try options(core.socket))
        let uuid = ext.uuid
        let client = core.extensionClient(uuid)
        let inFlight = Task { try await client.call(registry: "table", item: "drain_t", request: ["action": "generate"]) }
        // The call is in flight once generate runs (polled: a loaded suite may take a while).
        for _ in 0..<500 where !started.isSet { try await Task.sleep(for: .milliseconds(10)) }
        try await core.extensionClient(uuid).shutdown()
        #expect(await ext.waitUntilStopped() == .shutdownRequested)
        let r = try await inFlight.value
        #expect(r.status.code == 0 && r.response.count == 1)  // in-flight call finished
        #expect(finished.isSet && hook.isSet)
        #expect(core.registrations[uuid] == nil)
        #expect(!exists("\(core.socket).\(uuid)"))
        #expect(core.log.contains("deregisterExtension"))
        await core.stop()
    }

    @Test func silentDeregistrationIsNoticedByTheRegistrationCheck() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("zombie_ext", plugins: [helloTable("zombie_t")])
        try await ext.start(options: try options(core.socket, interval: 0.2))
        core.forget(uuid: ext.uuid)  // pings would still succeed; extensions() does not list us
        #expect(await ext.waitUntilStopped() == .deregistered)
        await core.stop()
    }

    @Test func supervisedModeReRegistersAfterSilentDeregistration() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("phoenix_ext", plugins: [helloTable("phoenix_t")])
        try await ext.start(options: try options(core.socket, interval: 0.2, supervised: true))
        let first = ext.uuid
        core.forget(uuid: first)
        let second = try await core.waitForExtension(named: "phoenix_ext", timeout: .seconds(60), excluding: [first])
        #expect(second != first)
        #expect(await eventually { ext.uuid == second })
        #expect(await eventually { (try? await core.extensionClient(second).ping().code) == 0 })
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    @Test func defaultModeExitsWhenTheCoreIsGone() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("gone_ext", plugins: [helloTable("gone_t")])
        try await ext.start(options: try options(core.socket, interval: 0.2))
        let uuid = ext.uuid
        await core.stop()
        #expect(await ext.waitUntilStopped() == .coreGone)
        #expect(!exists("\(core.socket).\(uuid)"))
    }

    @Test func supervisedModeSurvivesACoreRestart() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("survivor_ext", plugins: [helloTable("survivor_t")])
        try await ext.start(options: try options(core.socket, interval: 0.2, supervised: true))
        await core.stop()
        try await Task.sleep(for: .seconds(1))  // the extension notices and waits
        try await core.restart()
        let uuid = try await core.waitForExtension(named: "survivor_ext", timeout: .seconds(60))
        let rows = try await OsqueryClient(socket: core.socket).query("select * from survivor_t")
        #expect(rows.count == 2)
        #expect(ext.uuid == uuid)
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    @Test func duplicateRegistrationIsRetriedWithBackoff() async throws {
        let core = try await FakeCore.start()
        core.refuseNextRegistrations(3)
        // Four registrations must fit the window even when each takes seconds (the whole suite on 2 cores).
        var configuration = ExtensionConfiguration()
        configuration.duplicateRetryWindow = .seconds(120)
        let ext = Extension("dup_ext", plugins: [helloTable("dup_t")], configuration: configuration)
        try await ext.start(options: try options(core.socket))
        #expect(ext.uuid != 0)
        #expect(core.log.filter { $0 == "registerExtension" }.count == 4)
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    @Test func refusedRegistrationAndMissingCoreAreClearErrors() async throws {
        let core = try await FakeCore.start()
        let conflicting = Extension("bad_ext", plugins: [Table("t", columns: []) { _ in [] }])
        // A table with no routes at all cannot happen (attributes are always sent), so use a taken name.
        let first = Extension("first_ext", plugins: [helloTable("taken_t")])
        try await first.start(options: try options(core.socket))
        let second = Extension("second_ext", plugins: [helloTable("taken_t")])
        await #expect(throws: ExtensionError.self) { try await second.start(options: try options(core.socket)) }
        _ = conflicting
        first.stop()
        _ = await first.waitUntilStopped()
        await core.stop()
        let lonely = Extension("lonely_ext", plugins: [helloTable()])
        await #expect(throws: ExtensionError.self) {
            try await lonely.start(options: try options(tempSocket(), timeout: 0.5))
        }
        let tooLong = "/tmp/" + String(repeating: "x", count: 120)
        await #expect(throws: ExtensionError.self) { try await lonely.start(options: try options(tooLong)) }
    }

    @Test func pluginsCanBeAddedAndRemovedWhileRunning() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("dyn_ext", plugins: [helloTable("dyn_a")])
        try await ext.start(options: try options(core.socket))
        try await ext.add(helloTable("dyn_b"))
        #expect(core.registrations[ext.uuid]?.plugins["table"] == ["dyn_a", "dyn_b"])
        #expect(try await OsqueryClient(socket: core.socket).query("select * from dyn_b").count == 2)
        try await ext.remove(registry: "table", name: "dyn_a")
        #expect(core.registrations[ext.uuid]?.plugins["table"] == ["dyn_b"])
        #expect(core.registrations.count == 1)
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    @Test func tablesCanQueryTheCoreFromGenerate() async throws {
        let core = try await FakeCore.start()
        let inner = Table("inner_t", columns: [.text("v")]) { _ in [["v": "from inner"]] }
        let outer = Table("outer_t", columns: [.text("v")]) { ctx in
            let core = try #require(ctx.core)
            struct V: Decodable { var v: String }
            return try await core.query("select v from inner_t", as: V.self).map { ["v": "outer sees " + $0.v] }
        }
        let ext = Extension("reentrant_ext", plugins: [inner, outer])
        try await ext.start(options: try options(core.socket))
        let rows = try await OsqueryClient(socket: core.socket).query("select * from outer_t")
        #expect(rows == [["v": "outer sees from inner"]])
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    @Test func clientEveryRPCAndTypedQueries() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("client_ext", plugins: [helloTable("client_t")])
        try await ext.start(options: try options(core.socket))
        let client = try await OsqueryClient.connect(socket: core.socket)
        #expect(try await client.pingStatus().message == "pong")
        #expect(try await client.extensions()[ext.uuid]?.name == "client_ext")
        #expect(try await client.options()["extensions_socket"]?.value == core.socket)
        struct Greeting: Decodable, Equatable { var greeting: String; var n: Int }
        let typed = try await client.query("select * from client_t", as: Greeting.self)
        #expect(typed == [Greeting(greeting: "hello", n: 1), Greeting(greeting: "world", n: 2)])
        let call = try await client.callRaw(registry: "table", item: "client_t", request: ["action": "columns"])
        #expect(call.status.code == 0 && call.response.count == 3)
        await #expect(throws: OsqueryClientError.self) { try await client.query("select * from nope") }
        #expect(try await client.deregisterExtension(uuid: 424242).message == "No extension UUID found")
        try await client.shutdown()
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
        await #expect(throws: OsqueryClientError.self) {
            _ = try await OsqueryClient.connect(socket: core.socket, timeout: .milliseconds(300))
        }
    }
}

@Suite struct SQLBridgeTests {
    @Test func constraintsAndUsedColumnsAsTheCoreSendsThem() async throws {
        let t = Table("files_t", columns: [.text("path", .index), .bigint("size"), .text("owner", [.optimized, .index])]) { ctx in
            let paths = ctx["path"].equals.isEmpty ? ["/a", "/bb", "/ccc"] : ctx["path"].equals
            return paths.map { ["path": $0, "size": $0.count * 100, "owner": "root"] }
        }
        let tester = try TableTester(t)
        let rows = try await tester.query("select size from files_t where path = '/bb'")
        #expect(rows == [["size": "300"]])
        let ctx = try #require(tester.lastContext)
        #expect(ctx["path"].equals == ["/bb"])
        #expect(ctx.usedColumns == ["size", "path"])
        _ = try await tester.query("select path from files_t where owner in ('root', 'adm')")
        #expect(tester.lastContext?["owner"].equals.sorted() == ["adm", "root"])
        #expect(tester.lastContext?.usedColumns == ["path", "owner"])
        _ = try await tester.query("select * from files_t where path like '/a%'")
        #expect(tester.lastContext?["path"].likePatterns.map(\.pattern) == ["/a%"])
        // Plain columns get constraints too (extensions_default_index); SQLite re-filters.
        let big = try await tester.query("select path from files_t where size > 250")
        #expect(big.count == 2)
        #expect(tester.lastContext?["size"].range(as: Int64.self).lower?.value == 250)
    }

    @Test func requiredColumnsAndPluginErrorsSurfaceAsSQLErrors() async throws {
        let t = Table("req_t", columns: [.text("path", .required), .text("v")]) { ctx in
            throw PluginError("req_t: cannot read \(ctx["path"].equals.first ?? "?")")
        }
        let tester = try TableTester(t)
        await #expect(throws: SQLBridgeError.self) { try await tester.query("select * from req_t") }
        do {
            _ = try await tester.query("select * from req_t where path = '/x'")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("req_t: cannot read /x"))
        }
    }

    @Test func writableTableThroughSQL() async throws {
        let tester = try TableTester(Table("notes_t", columns: [.text("text")], store: Notes()))
        _ = try await tester.query("insert into notes_t (text) values ('one')")
        _ = try await tester.query("insert into notes_t (text) values ('two')")
        _ = try await tester.query("update notes_t set text = 'deux' where text = 'two'")
        _ = try await tester.query("delete from notes_t where text = 'one'")
        #expect(try await tester.query("select text from notes_t") == [["text": "deux"]])
        let readonly = try TableTester(helloTable("ro_t"))
        do {
            _ = try await readonly.query("insert into ro_t (greeting) values ('x')")
            Issue.record("expected readonly")
        } catch {
            #expect("\(error)".contains("may not be modified"))
        }
    }
}
