import Testing
import Foundation
import OsqueryExtension
import OsqueryExtensionTesting
import OsqueryManager
import OsqueryEngine
import OsqueryTables
#if canImport(Glibc)
import Glibc
#endif

/// Which manager an example runs against.
enum ManagerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// Tests/Peers/python/reference_manager.py: PyPI `osquery`'s generated code, none of ours.
    case reference
    /// Our core: OsqueryManager's ExtensionManager with the built-in tables, in process.
    case core
    /// OsqueryExtensionTesting.FakeCore: our wire layer and SQL engine, in process.
    case fake
    var testDescription: String { rawValue }
}

/// A running manager of either kind.
final class Manager: @unchecked Sendable {
    let socket: String
    let child: Child?
    let fake: FakeCore?
    let core: ExtensionManager?

    init(_ kind: ManagerKind) async throws {
        switch kind {
        case .core:
            let path = tempSocket()
            let flags = Flags()
            try flags.set("extensions_interval", "1")
            let registry = PluginRegistry()
            BuiltinTables.register(into: registry, flags: flags)
            core = try await ExtensionManager.start(socketPath: path, registry: registry, flags: flags, queryThreads: 3)
            child = nil
            fake = nil
            socket = path
        case .reference:
            let path = tempSocket()
            child = try Child(python, [referenceManagerScript, path])
            fake = nil
            core = nil
            socket = path
            let ok = await eventually { (try? await OsqueryClient(socket: path, connectTimeout: .seconds(1)).pingStatus().code) == 0 }
            if !ok { throw FakeCoreErrorForTests("reference manager did not start: \(child?.stderrText ?? "")") }
        case .fake:
            let core = try await FakeCore.start()
            fake = core
            child = nil
            self.core = nil
            socket = core.socket
        }
    }

    var client: OsqueryClient { OsqueryClient(socket: socket, callTimeout: .seconds(30)) }

    /// Waits for an extension to register; returns its uuid.
    func waitFor(_ name: String) async throws -> Int64 {
        var found: Int64?
        // Registered, and listening: extensions register before they listen, and the fake core's
        // calls (unlike the core's) do not wait for the socket to appear.
        _ = await eventually(timeout: .seconds(60)) {
            found = (try? await client.extensions())?.values.first { $0.name == name }?.uuid
            guard let found else { return false }
            return exists("\(socket).\(found)")
        }
        guard let found else { throw FakeCoreErrorForTests("\(name) never registered") }
        return found
    }

    /// Shuts down as osquery does: shutdown() to every extension, then the socket goes away.
    func shutDown() async {
        if let child {
            child.signal(SIGTERM)
            _ = await child.wait(timeout: .seconds(10))
            child.kill9()
        }
        if let core { await core.stop() }
        if let fake {
            for uuid in fake.registrations.keys { try? await fake.extensionClient(uuid).shutdown(timeout: .seconds(5)) }
            await fake.stop()
        }
    }
}

struct FakeCoreErrorForTests: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func launch(_ example: String, socket: String, extra: [String] = [], environment: [String: String] = [:]) throws -> Child {
    let dir = try #require(productsDir, "example executables not found; build with swift build")
    // argv exactly as osquery's autoloader passes it, plus a flag a newer core might add.
    return try Child(
        dir + "/" + example, ["--verbose", "--socket", socket, "--timeout", "5", "--interval", "1"] + extra,
        environment: environment)
}

func rowsOf(_ r: ExtensionResponse) -> [[String: String]] {
    r.response.map { Dictionary($0.entries.map { ($0.key.lossyString, $0.value.lossyString) }, uniquingKeysWith: { $1 }) }
}

/// Stops the manager and checks the extension exits 0 and removes its socket.
func expectCleanExit(_ ext: Child, manager: Manager, uuid: Int64) async {
    await manager.shutDown()
    let status = await ext.wait(timeout: .seconds(15))
    ext.kill9()
    #expect(status == 0, "exit status; stderr: \(ext.stderrText)")
    #expect(!exists("\(manager.socket).\(uuid)"))
}

@Suite(.serialized, .enabled(if: haveReferenceManager, "needs .venv (scripts/install-test-deps.sh) and built examples"))
struct ExampleProcessTests {
    @Test(arguments: ManagerKind.allCases)
    func pressureTableAndQueryClient(_ kind: ManagerKind) async throws {
        let manager = try await Manager(kind)
        let ext = try launch("example-pressure-table", socket: manager.socket, extra: ["--some-future-flag=1"])
        let uuid = try await manager.waitFor("pressure_stall")
        #expect(fileMode("\(manager.socket).\(uuid)") == 0o600)
        let info = try #require(try await manager.client.extensions()[uuid])
        #expect(info.sdkVersion == OsquerySDK.osqueryVersion)
        let rows = try await manager.client.query("select * from pressure_stall where resource = 'cpu'")
        if exists("/proc/pressure/cpu") {
            #expect(!rows.isEmpty)
            #expect(rows.allSatisfy { $0["resource"] == "cpu" && Double($0["avg10"] ?? "") != nil })
        }
        // The client example, as a separate process.
        let q = try Child(try #require(productsDir) + "/example-query", ["--socket", manager.socket, "select resource, kind from pressure_stall"])
        #expect(await q.wait(timeout: .seconds(20)) == 0)
        let lines = q.stdoutText().split(separator: "\n")
        if exists("/proc/pressure/cpu") { #expect(lines.contains { $0.contains(#""resource":"cpu""#) }) }
        await expectCleanExit(ext, manager: manager, uuid: uuid)
    }

    @Test(arguments: ManagerKind.allCases)
    func writableTable(_ kind: ManagerKind) async throws {
        let manager = try await Manager(kind)
        let ext = try launch("example-writable-table", socket: manager.socket)
        let uuid = try await manager.waitFor("kv_store")
        let insert = try await manager.client.callRaw(
            registry: "table", item: "kv_store",
            request: ["action": "insert", "json_value_array": #"["color","blue"]"#, "auto_rowid": "true"])
        #expect(insert.status.code == 0)
        #expect(rowsOf(insert).first?["status"] == "success")
        let dup = try await manager.client.callRaw(
            registry: "table", item: "kv_store",
            request: ["action": "insert", "json_value_array": #"["color","red"]"#, "auto_rowid": "true"])
        #expect(rowsOf(dup).first?["status"] == "constraint")
        let rows = try await manager.client.query("select key, value from kv_store")
        #expect(rows == [["key": "color", "value": "blue"]])
        await expectCleanExit(ext, manager: manager, uuid: uuid)
    }

    @Test(arguments: ManagerKind.allCases)
    func jsonLinesLogger(_ kind: ManagerKind) async throws {
        let manager = try await Manager(kind)
        let logPath = tempSocket() + ".jsonl"
        let ext = try launch("example-jsonl-logger", socket: manager.socket, environment: ["JSONL_LOGGER_PATH": logPath])
        let uuid = try await manager.waitFor("jsonl_logger")
        let client = manager.client
        let features = try await client.callRaw(registry: "logger", item: "jsonl", request: ["action": "features"])
        #expect(features.status.code == 3 || (kind == .reference && features.status.code == 1 && features.response.isEmpty) || features.status.code == 3)
        for request in [
            ["init": "osqueryd"], ["string": #"{"name":"pack_q","action":"added"}"#, "category": "event"],
            ["status": "true", "log": #"[{"s":0,"f":"x.cpp","i":7,"m":"hello","h":"host","c":"now","u":1}]"#],
            ["snapshot": #"{"snap":1}"#],
        ] {
            let r = try await client.callRaw(registry: "logger", item: "jsonl", request: request)
            #expect(r.status.code == 0, "\(request): \(r.status)")
        }
        await expectCleanExit(ext, manager: manager, uuid: uuid)
        let lines = try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(lines.contains { $0.contains(#""type":"result""#) && $0.contains("pack_q") })
        #expect(lines.contains { $0.contains(#""type":"status""#) && $0.contains(#""message":"hello""#) && $0.contains(#""line":7"#) })
        for line in lines { #expect((try? JSONValue.parse(line)) != nil) }
    }

    @Test(arguments: ManagerKind.allCases)
    func configExtension(_ kind: ManagerKind) async throws {
        let manager = try await Manager(kind)
        let ext = try launch("example-config", socket: manager.socket)
        let uuid = try await manager.waitFor("swift_static_config")
        let gen = try await manager.client.callRaw(registry: "config", item: "swift_static", request: ["action": "genConfig"])
        #expect(gen.status.code == 0)
        let config = try JSONValue.parse(try #require(rowsOf(gen).first?["swift_static"]))
        #expect(config["schedule"]?["swift_time"]?["query"] == .string("select * from time"))
        let pack = try await manager.client.callRaw(
            registry: "config", item: "swift_static", request: ["action": "genPack", "name": "swift_pack", "value": "from-extension"])
        #expect(try JSONValue.parse(try #require(rowsOf(pack).first?["swift_pack"]))["queries"] != nil)
        await expectCleanExit(ext, manager: manager, uuid: uuid)
    }

    @Test(arguments: ManagerKind.allCases)
    func distributedExtension(_ kind: ManagerKind) async throws {
        let manager = try await Manager(kind)
        let ext = try launch("example-distributed", socket: manager.socket)
        let uuid = try await manager.waitFor("swift_distributed")
        let q = try await manager.client.callRaw(registry: "distributed", item: "swift_distributed", request: ["action": "getQueries"])
        let results = try JSONValue.parse(try #require(rowsOf(q).first?["results"]))
        #expect(results["queries"]?["swift_uptime"] == .string("select * from uptime"))
        #expect(results["accelerate"]?.int64 == 60)
        let write = try await manager.client.callRaw(
            registry: "distributed", item: "swift_distributed",
            request: ["action": "writeResults", "results": #"{"queries":{"swift_uptime":[{"days":"1"}]},"statuses":{"swift_uptime":0},"stats":{"swift_uptime":{"wall_time_ms":5}}}"#])
        #expect(write.status.code == 0)
        await expectCleanExit(ext, manager: manager, uuid: uuid)
        #expect(ext.stderrText.contains("swift_uptime: status 0, 1 rows, 5 ms"))
    }

    @Test func sigtermDeregistersAndRemovesTheSocket() async throws {
        let manager = try await Manager(.reference)
        let ext = try launch("example-pressure-table", socket: manager.socket)
        let uuid = try await manager.waitFor("pressure_stall")
        ext.signal(SIGTERM)
        #expect(await ext.wait(timeout: .seconds(10)) == 0)
        #expect(try await manager.client.extensions()[uuid] == nil)
        #expect(!exists("\(manager.socket).\(uuid)"))
        // A restarted extension registers again at once (no "Duplicate extension registered").
        let again = try launch("example-pressure-table", socket: manager.socket)
        let second = try await manager.waitFor("pressure_stall")
        #expect(second != 0)
        again.signal(SIGINT)
        #expect(await again.wait(timeout: .seconds(10)) == 0)
        await manager.shutDown()
        ext.kill9()
        again.kill9()
    }

    /// A SIGTERM while the extension waits for its core ends the wait with a clean exit
    /// (the handlers are in place before the wait; they used to come after registration,
    /// so a signal then killed the extension half-started or, ignored, was lost).
    @Test func sigtermWhileWaitingForTheCoreExitsCleanly() async throws {
        let socket = tempSocket()
        let dir = try #require(productsDir)
        // No core at `socket`: the extension would wait 30 s for one.
        let ext = try Child(dir + "/example-pressure-table", ["--socket", socket, "--timeout", "30"])
        let bits: UInt64 = (1 << (UInt64(SIGTERM) - 1)) | (1 << (UInt64(SIGINT) - 1))
        let caught = await eventually(timeout: .seconds(25)) {
            let status = (try? String(contentsOfFile: "/proc/\(ext.pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("SigCgt:") } ?? ""
            let mask = UInt64(line.split(separator: "\t").last ?? "", radix: 16) ?? 0
            return mask & bits == bits
        }
        #expect(caught, "the extension never took SIGTERM/SIGINT while waiting for its core")
        ext.signal(SIGTERM)
        let status = await ext.wait(timeout: .seconds(20))
        ext.kill9()
        #expect(status == 0, "stderr: \(ext.stderrText)")
        #expect(ext.process.terminationReason == .exit)
        let left = try FileManager.default.contentsOfDirectory(atPath: (socket as NSString).deletingLastPathComponent)
        #expect(left.isEmpty)
    }

    @Test func extensionExitsWhenTheCoreDisappears() async throws {
        let manager = try await Manager(.reference)
        let ext = try launch("example-writable-table", socket: manager.socket)
        let uuid = try await manager.waitFor("kv_store")
        // Kill the manager without a shutdown() call: the liveness check must notice.
        manager.child?.kill9()
        let status = await ext.wait(timeout: .seconds(15))
        ext.kill9()
        #expect(status == 0)
        #expect(!exists("\(manager.socket).\(uuid)"))
    }

    @Test func specAndHelpNeedNoCore() async throws {
        let dir = try #require(productsDir)
        let spec = try Child(dir + "/example-pressure-table", ["--spec"])
        #expect(await spec.wait(timeout: .seconds(10)) == 0)
        let json = try JSONValue.parse(spec.stdoutText())
        #expect(json.array?.first?["name"] == .string("pressure_stall"))
        let help = try Child(dir + "/example-writable-table", ["--help"])
        #expect(await help.wait(timeout: .seconds(10)) == 0)
        #expect(help.stdoutText().contains("--socket"))
    }
}
