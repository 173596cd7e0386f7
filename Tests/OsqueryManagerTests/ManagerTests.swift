import Foundation
import OsqueryEngine
@testable import OsqueryManager
import OsqueryProtocol
import OsqueryTables
import Synchronization
import Testing
import ThriftCodec

func tempSocket(_ tag: String) -> String { "/tmp/osqm-\(tag)-\(getpid())-\(UInt16.random(in: 0...UInt16.max)).em" }

/// A core: a manager over a fresh registry with the built-in tables.
struct TestCore {
    let manager: ExtensionManager
    let client: ExtensionManagerClient
    let registry: PluginRegistry
    let flags: Flags

    static func start(_ tag: String, flags settings: [String: String] = [:]) async throws -> TestCore {
        let flags = Flags()
        try flags.set("extensions_interval", "0.2")
        // Generous: the full suite runs CPU-heavy tests (runaway queries, floods, the fuzzer) on
        // two cores, and a ping that misses its timeout removes a healthy extension. The same
        // timeout is a new registration's grace to start listening, and a test's task can wait
        // tens of seconds for a pool thread between registering and listening. A dead
        // extension's socket is gone, which is noticed at once, whatever the timeout.
        try flags.set("extensions_timeout", "60")
        for (k, v) in settings { try flags.set(k, v) }
        let registry = PluginRegistry()
        BuiltinTables.register(into: registry, flags: flags)
        let path = tempSocket(tag)
        let manager = try await ExtensionManager.start(socketPath: path, registry: registry, flags: flags, queryThreads: 3)
        return TestCore(manager: manager, client: ExtensionManagerClient(path: path), registry: registry, flags: flags)
    }

    func stop() async {
        client.close()
        await manager.stop()
    }
}

/// An extension served in-process on a real socket: answers `table` calls with
/// fixed rows and records every request.
final class TestExtension: ExtensionHandler {
    let requests = Mutex<[ExtensionPluginRequest]>([])
    let shutdowns = Atomic<Int>(0)
    let rows: [StringMap]
    let status: ExtensionStatus
    let gate: AsyncStream<Void>?

    init(rows: [StringMap], status: ExtensionStatus = .init(code: 0, message: "OK"), gate: AsyncStream<Void>? = nil) {
        self.rows = rows
        self.status = status
        self.gate = gate
    }

    func call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws -> ServerResponse {
        requests.withLock { $0.append(request) }
        if let gate { for await _ in gate {} }
        return .rows(ExtensionResponse(status: status, response: status.isSuccess ? rows : []))
    }

    func shutdown() async throws { shutdowns.add(1, ordering: .relaxed) }

    var contexts: [String] { requests.withLock { $0.compactMap { $0["context"]?.lossyString } } }
}

let t1Routes: ExtensionPluginResponse = [
    ["id": "column", "name": "a", "type": "TEXT", "op": "0"],
    ["id": "column", "name": "n", "type": "INTEGER", "op": "0"],
    ["id": "column", "name": "big", "type": "BIGINT", "op": "0"],
    ["id": "column", "name": "d", "type": "DOUBLE", "op": "0"],
    ["id": "attributes", "attributes": "0"],
]

/// Registers `handler` as extension `name` with table `table`, serving it at `<socket>.<uuid>`.
func attach(_ core: TestCore, name: ThriftString = "t1", table: ThriftString = "t1_tbl", _ handler: TestExtension)
    async throws -> (uuid: ExtensionRouteUUID, server: RPCServer)
{
    let status = try await core.client.registerExtension(
        info: InternalExtensionInfo(name: name, version: "1.0", sdkVersion: "1.7.7", minSDKVersion: "1.0.0"),
        registry: ["table": [table: t1Routes]])
    #expect(status.code == 0, "\(status)")
    let server = try await RPCServer.start(path: "\(core.manager.socketPath).\(status.uuid)", service: .extension(handler))
    return (status.uuid, server)
}

@Suite struct ManagerRPCTests {
    @Test func pingExtensionsAndOptions() async throws {
        let core = try await TestCore.start("basic")
        #expect(try await core.client.ping() == ExtensionStatus(code: 0, message: "pong", uuid: 0))
        #expect(try await core.client.extensions().isEmpty)
        let options = try await core.client.options()
        #expect(options["extensions_socket"]?.type == "string")
        #expect(options["extensions_interval"]?.value == "0.2")
        for name in ["config_plugin", "logger_plugin", "distributed_plugin", "thrift_timeout"] {
            #expect(options[ThriftString(name)] != nil, "\(name)")
        }
        #expect(options["disable_extensions"]?.type == "bool")
        // The manager ignores shutdown, as osquery's does.
        try await core.client.shutdown()
        #expect(try await core.client.ping().message == "pong")
        await core.stop()
    }

    @Test func registrationFollowsOsquerysRulesAndMessages() async throws {
        // These extensions never listen: a long grace keeps the watcher from reaping them mid-test.
        let core = try await TestCore.start("reg", flags: ["extensions_timeout": "300"])
        let c = core.client
        func info(_ name: ThriftString, sdk: ThriftString = "") -> InternalExtensionInfo {
            InternalExtensionInfo(name: name, version: "v", sdkVersion: sdk, minSDKVersion: "m")
        }
        let ok = try await c.registerExtension(info: info("t1"), registry: ["table": ["t1_tbl": t1Routes]])
        #expect(ok.code == 0 && ok.message == "OK" && (1...65535).contains(ok.uuid))
        #expect(try await c.registerExtension(info: info("t1"), registry: [:])
            == ExtensionStatus(code: 1, message: "Duplicate extension registered"))
        #expect(try await c.registerExtension(info: info("old", sdk: "1.7.6"), registry: [:])
            == ExtensionStatus(code: 1, message: "Incompatible extension SDK version"))
        for (i, sdk) in (["1.7.7", "0.0.0", "", "3.0.7", "1.10.0"] as [ThriftString]).enumerated() {
            #expect(try await c.registerExtension(info: info(ThriftString("v\(i)"), sdk: sdk), registry: [:]).code == 0, "\(sdk)")
        }
        #expect(try await c.registerExtension(info: info("z", sdk: "1.6.99"), registry: [:])
            == ExtensionStatus(code: 1, message: "Incompatible extension SDK version"))
        #expect(try await c.registerExtension(info: info("dup"), registry: ["table": ["time": t1Routes]])
            == ExtensionStatus(code: 1, message: "Failed adding registry: Registry item time conflicts with another item of the same name."))
        #expect(try await c.registerExtension(info: info("ks"), registry: ["killswitch": [:]])
            == ExtensionStatus(code: 1, message: "Failed adding registry: Unknown registry: killswitch"))
        #expect(try await c.registerExtension(info: info("empty"), registry: ["table": ["t2": []]])
            == ExtensionStatus(code: 1, message: "Failed adding registry: Invalid route info"))
        // Nothing of a refused registration stays behind; the names are free again.
        #expect(try await c.registerExtension(info: info("dup"), registry: [:]).code == 0)
        let listed = try await c.extensions()
        #expect(listed[ok.uuid] == info("t1"))
        let reg = try await c.query("select name, owner_uuid from osquery_registry where registry='table' and name='t1_tbl'")
        #expect(reg.response == [["name": "t1_tbl", "owner_uuid": ThriftString(String(ok.uuid))]])
        #expect(try await c.deregisterExtension(uuid: ok.uuid) == ExtensionStatus(code: 0, message: "OK", uuid: 0))
        #expect(try await c.extensions()[ok.uuid] == nil)
        let gone = try await c.query("select * from t1_tbl")
        #expect(gone.status == ExtensionStatus(code: 1, message: "no such table: t1_tbl"))
        #expect(try await c.deregisterExtension(uuid: 424242) == ExtensionStatus(code: 1, message: "No extension UUID found"))
        await core.stop()
    }

    @Test func queryAndColumns() async throws {
        let core = try await TestCore.start("query")
        let c = core.client
        let cols = try await c.getQueryColumns("select seconds as s from time")
        #expect(cols == ExtensionResponse(status: .init(code: 0, message: "OK"), response: [["s": "INTEGER"]]))
        let bad = try await c.query("selectx")
        #expect(bad.status.code == 1 && bad.status.message.lossyString.contains("syntax error") && bad.response.isEmpty)
        let two = try await c.query("select 1 as a; select 2.5 as b, NULL as c")
        #expect(two.response == [["a": "1"], ["b": "2.5", "c": ""]])
        #expect(try await c.query("  ").response.isEmpty)
        await core.stop()
    }

    @Test func callRoutesToCoreTablesAndReportsErrors() async throws {
        let core = try await TestCore.start("call")
        let c = core.client
        let columns = try await c.call(registry: "table", item: "time", request: ["action": "columns"])
        #expect(columns.status.code == 0)
        #expect(columns.response.first?["id"] == "column")
        #expect(columns.response.last?["id"] == "attributes")
        #expect(try await c.call(registry: "table", item: "nope", request: ["action": "generate"]).status
            == ExtensionStatus(code: 1, message: "Cannot call registry item: nope"))
        #expect(try await c.call(registry: "table", item: "time", request: [:]).status
            == ExtensionStatus(code: 1, message: "Table plugins must include a request action"))
        #expect(try await c.call(registry: "nope", item: "x", request: [:]).status
            == ExtensionStatus(code: 1, message: "Unknown registry requested: nope"))
        let generated = try await c.call(registry: "table", item: "time", request: ["action": "generate"])
        #expect(generated.status.code == 0 && generated.response.count == 1 && generated.response[0]["unix_time"] != nil)
        await core.stop()
    }
}

@Suite struct ExtensionTableTests {
    @Test func scansReachTheExtensionWithOsquerysContextAndConversions() async throws {
        let core = try await TestCore.start("scan")
        let ext = TestExtension(rows: [
            ["a": "x", "n": "0x10", "big": "9223372036854775807", "d": "1.5"],
            ["a": "y", "n": "", "big": "99999999999999999999", "d": "2.5abc"],
            ["a": ThriftString(bytes: [0xFF, 0x41]), "n": "abc", "extra": "ignored"],
            ["n": "010"],
        ])
        let (uuid, server) = try await attach(core, ext)
        let r = try await core.client.query("select a, n, big, d from t1_tbl")
        #expect(r.status.code == 0, "\(r.status)")
        #expect(r.response == [
            ["a": "x", "n": "16", "big": "9223372036854775807", "d": "1.5"],
            ["a": "y", "n": "", "big": "", "d": ""],
            ["a": ThriftString(bytes: [0xFF, 0x41]), "n": "", "big": "", "d": ""],
            ["a": "", "n": "8", "big": "", "d": ""],
        ])
        // A WHERE on a plain column is pushed down (extensions_default_index) as op 2.
        _ = try await core.client.query("select * from t1_tbl where a = 'x'")
        let context = try #require(ext.contexts.last)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(context.utf8)) as? [String: Any])
        let constraints = try #require(json["constraints"] as? [[String: Any]])
        #expect(constraints.map { $0["name"] as? String } == ["a", "big", "d", "n"])  // lexical order
        let a = try #require(constraints.first)
        #expect((a["list"] as? [[String: Any]])?.first?["op"] as? Int == 2)
        #expect((a["list"] as? [[String: Any]])?.first?["expr"] as? String == "x")
        #expect(a["affinity"] as? String == "TEXT")
        #expect(json["colsUsed"] != nil && json["colsUsedBitset"] != nil)
        // IN and JOIN feed constraints too; SQLite re-checks every row.
        let joined = try await core.client.query(
            "select t.a from t1_tbl t join (select 'y' as v union select 'x') j on t.a = j.v where t.n in (16, 8) order by t.a")
        #expect(joined.response == [["a": "x"]])
        // Values SQLite keeps past the row (an aggregate's best so far, a sort) outlive each scan
        // of the extension's reply, here re-scanned once per outer row.
        let kept = try await core.client.query(
            "select max(t.a) as m, count(*) as c, sum(t.n) as s, group_concat(t.big) as g from (select 1 union select 2) o, t1_tbl t")
        #expect(kept.response == [["m": ThriftString(bytes: [0xFF, 0x41]), "c": "8", "s": "48", "g": "9223372036854775807,9223372036854775807"]])
        #expect(core.registry.table(named: "t1_tbl") != nil)
        let info = try await core.client.query("select name, type from pragma_table_info('t1_tbl')")
        #expect(info.response == [
            ["name": "a", "type": "TEXT"], ["name": "n", "type": "INTEGER"], ["name": "big", "type": "BIGINT"],
            ["name": "d", "type": "DOUBLE"],
        ])
        let listed = try await core.client.query("select name, type, path from osquery_extensions where uuid = \(uuid)")
        #expect(listed.response == [["name": "t1", "type": "extension", "path": ThriftString("\(core.manager.socketPath).\(uuid)")]])
        await server.close()
        await core.stop()
    }

    /// A reply of 8192 rows or more is converted on another thread while SQLite scans: every way
    /// of reading the rows must see what the one-thread path gives.
    @Test func bigRepliesConvertedWhileScanned() async throws {
        let core = try await TestCore.start("bg")
        let count = 20_011
        let rows: [StringMap] = (0..<count).map { i in
            ["a": ThriftString("r\(i)"), "n": ThriftString(String(i)), "big": ThriftString(String(i * 3)),
             "d": ThriftString(String(Double(i) / 2))]
        }
        let (_, server) = try await attach(core, TestExtension(rows: rows))
        let all = try await core.client.query("select a, n, big, d from t1_tbl")
        #expect(all.status.code == 0 && all.response.count == count, "\(all.status)")
        let mismatch = all.response.indices.first { all.response[$0] != rows[$0] }
        #expect(mismatch == nil, "row \(mismatch ?? -1)")
        let sums = try await core.client.query("select count(*) as c, sum(n) as s, max(a) as m, min(d) as lo from t1_tbl")
        #expect(sums.response == [["c": ThriftString(String(count)), "s": ThriftString(String(count * (count - 1) / 2)),
                                   "m": ThriftString(rows.map { $0["a"]!.lossyString }.max()!), "lo": "0.0"]])
        // A scan that stops early (its conversion is cancelled), then the same table again.
        #expect(try await core.client.query("select a from t1_tbl limit 3").response == [["a": "r0"], ["a": "r1"], ["a": "r2"]])
        let joined = try await core.client.query(
            "select x.a as x, y.big as y from t1_tbl x join t1_tbl y on y.n = x.n where x.n in (7, 20010) order by x.n")
        #expect(joined.response == [["x": "r7", "y": "21"], ["x": "r20010", "y": "60030"]])
        #expect(try await core.client.query("select a from t1_tbl order by n desc limit 1").response == [["a": "r20010"]])
        // Rowids the extension sends, read once the conversion is done; a bad one fails the scan
        // that reaches it.
        let withIDs = rows.enumerated().map { i, row -> StringMap in
            var row = row
            row.append("rowid", ThriftString(String(i + 100)))
            return row
        }
        let (_, second) = try await attach(core, name: "t2", table: "t2_tbl", TestExtension(rows: withIDs))
        #expect(try await core.client.query("select rowid as r from t2_tbl where n = 5").response == [["r": "105"]])
        var bad = withIDs
        bad[count - 1].append("rowid", "nine")
        let (_, third) = try await attach(core, name: "t3", table: "t3_tbl", TestExtension(rows: bad))
        let failed = try await core.client.query("select count(*) from t3_tbl")
        #expect(failed.status.code != 0 && failed.status.message.lossyString.contains("Invalid rowid value: nine"), "\(failed.status)")
        await third.close()
        await second.close()
        await server.close()
        await core.stop()
    }

    /// A long reply's numbers are parsed off the query thread (with its cells): every odd value
    /// must come out as the short reply's, which SQLite's reads convert, with the same types.
    @Test func bigRepliesConvertNumbersLikeShortOnes() async throws {
        let core = try await TestCore.start("nums")
        let numbers = ["", "abc", "0x10", "  12", "12abc", "-5", "2147483648", "9223372036854775808", "1e3", " 2.5 ", "-0.0", "007"]
        let variants: [StringMap] = numbers.indices.map { i in
            var row: StringMap = ["a": ThriftString("v\(i)")]
            row.append("n", ThriftString(numbers[i]))
            row.append("big", ThriftString(numbers[(i + 3) % numbers.count]))
            if i % 4 != 1 { row.append("d", ThriftString(numbers[(i + 7) % numbers.count])) }  // some rows leave d out
            return row
        }
        let count = 9_000
        let (_, short) = try await attach(core, TestExtension(rows: variants))
        let (_, long) = try await attach(
            core, name: "t2", table: "t2_tbl", TestExtension(rows: (0..<count).map { variants[$0 % variants.count] }))
        let select = "select a, n, big, d, typeof(n) as tn, typeof(big) as tb, typeof(d) as td from "
        let expected = try await core.client.query(ThriftString(select + "t1_tbl"))
        let got = try await core.client.query(ThriftString(select + "t2_tbl"))
        #expect(expected.status.code == 0 && got.status.code == 0 && got.response.count == count, "\(got.status)")
        let mismatch = got.response.indices.first { got.response[$0] != expected.response[$0 % variants.count] }
        #expect(mismatch == nil, "row \(mismatch ?? -1): \(mismatch.map { got.response[$0] } ?? [:])")
        // The short reply's conversion is osquery's (checked elsewhere); a few for the record.
        #expect(expected.response[2]["n"] == "16" && expected.response[2]["tn"] == "integer")
        #expect(expected.response[1]["n"] == "" && expected.response[1]["tn"] == "null")
        await long.close()
        await short.close()
        await core.stop()
    }

    @Test func theExtensionsErrorBecomesTheSQLError() async throws {
        let core = try await TestCore.start("boom")
        let (_, server) = try await attach(core, TestExtension(rows: [], status: .init(code: 1, message: "boom")))
        let r = try await core.client.query("select * from t1_tbl")
        #expect(r.status == ExtensionStatus(code: 1, message: "boom"))
        #expect(r.response.isEmpty)
        await server.close()
        await core.stop()
    }

    @Test func writesGoOutAsOsquerysActions() async throws {
        let core = try await TestCore.start("write")
        let readonly = TestExtension(rows: [["status": "readonly"]])
        let (_, server) = try await attach(core, readonly)
        let r = try await core.client.query("insert into t1_tbl values('v', 1, 2, 3.5)")
        #expect(r.status.code == 1)
        #expect(r.status.message.lossyString.contains("may not be modified"), "\(r.status)")
        let sent = try #require(readonly.requests.withLock { $0.last })
        #expect(sent["action"] == "insert")
        #expect(sent["json_value_array"] == "[\"v\",1,2,3.5]")
        #expect(sent["auto_rowid"] == "true")
        await server.close()
        await core.stop()
    }
}

@Suite struct HealthTests {
    @Test func aDeadExtensionIsRemovedAndItsTableDetached() async throws {
        let core = try await TestCore.start("dead")
        let (uuid, server) = try await attach(core, TestExtension(rows: [["a": "x"]]))
        #expect(try await core.client.query("select a from t1_tbl").response == [["a": "x"]])
        // Killed before its first check, an extension would have the whole grace
        // (`extensions_timeout`) to come up; this test is about one that dies later.
        var seen = false
        for _ in 0..<600 where !seen {
            try await Task.sleep(for: .milliseconds(100))
            seen = core.manager.service.snapshot().contains { $0.uuid == uuid && $0.seenAlive }
        }
        #expect(seen)
        await server.close()  // the extension dies: its socket is gone
        // Removed within about one interval plus the timeout; poll, do not time.
        var removed = false
        for _ in 0..<600 where !removed {
            try await Task.sleep(for: .milliseconds(100))
            removed = try await core.client.extensions()[uuid] == nil
        }
        #expect(removed)
        #expect(try await core.client.query("select * from t1_tbl").status.message == "no such table: t1_tbl")
        // Its name is free again.
        let (_, again) = try await attach(core, TestExtension(rows: [["a": "z"]]))
        let reply = try await core.client.query("select a from t1_tbl")
        #expect(reply.response == [["a": "z"]], "\(reply.status)")
        await again.close()
        await core.stop()
    }

    @Test func aRegistrationThatNeverListensIsRemovedAfterTheGrace() async throws {
        let core = try await TestCore.start("nolisten", flags: ["extensions_timeout": "1"])
        let status = try await core.client.registerExtension(
            info: InternalExtensionInfo(name: "ghost", sdkVersion: "1.7.7"), registry: ["table": ["ghost_tbl": t1Routes]])
        var removed = false
        for _ in 0..<600 where !removed {
            try await Task.sleep(for: .milliseconds(100))
            removed = try await core.client.extensions()[status.uuid] == nil
        }
        #expect(removed)
        await core.stop()
    }

    /// An extension that died right after registering leaves a socket file nothing listens on:
    /// it is removed within about a second of refusals, not after the 60 s grace, so its
    /// restarted self is not refused as a duplicate meanwhile (osquery drops it at once too).
    @Test func aRegistrationWhoseSocketRefusesIsRemovedBeforeTheGrace() async throws {
        let core = try await TestCore.start("refusing")
        let status = try await core.client.registerExtension(
            info: InternalExtensionInfo(name: "ghost", sdkVersion: "1.7.7"), registry: ["table": ["ghost_tbl": t1Routes]])
        // Bound, never listening: a connect is refused, as at a killed process's socket.
        let path = core.manager.socketPath + ".\(status.uuid)"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd); unlink(path) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var removed = false
        for _ in 0..<450 where !removed {
            try await Task.sleep(for: .milliseconds(100))
            removed = try await core.client.extensions()[status.uuid] == nil
        }
        #expect(removed, "still registered after 45 s of refused connections (grace 60 s)")
        await core.stop()
    }

    @Test func aHungExtensionFailsOnlyItsOwnStatementAtTheDeadline() async throws {
        let core = try await TestCore.start("hung", flags: ["thrift_timeout": "1"])
        let (gate, opener) = AsyncStream<Void>.makeStream()
        let (_, server) = try await attach(core, TestExtension(rows: [["a": "x"]], gate: gate))
        let hung = Task { try await core.client.query("select * from t1_tbl") }
        // Meanwhile other statements on other connections are answered.
        for _ in 0..<5 {
            #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        }
        let failed = try await hung.value
        #expect(failed.status.code == 1)
        #expect(failed.status.message.lossyString.contains("timed out"), "\(failed.status)")
        opener.finish()
        await server.close()
        await core.stop()
    }

    @Test func stoppingTheCoreSendsShutdownAndRemovesSockets() async throws {
        let core = try await TestCore.start("stop")
        let ext = TestExtension(rows: [])
        let (uuid, server) = try await attach(core, ext)
        let path = core.manager.socketPath
        await core.stop()
        #expect(ext.shutdowns.load(ordering: .relaxed) == 1)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(!FileManager.default.fileExists(atPath: "\(path).\(uuid)"))
        await server.close()
    }
}
