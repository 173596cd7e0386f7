import Foundation
import ProtocolFixture
import OsqueryEngine
import OsqueryExtension
import OsqueryManager
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon


/// What an SDK config plugin under test serves; changeable between calls.
final class ServedConfig: Sendable {
    let sources: Mutex<[String: String]>
    let packs: Mutex<[String: String]>
    let fail = Mutex<Bool>(false)
    let packRequests = Mutex<[String]>([])
    init(sources: [String: String], packs: [String: String]) {
        self.sources = Mutex(sources)
        self.packs = Mutex(packs)
    }

    struct Refused: Error {}

    var plugin: ConfigPlugin {
        ConfigPlugin(
            "test_config",
            genPack: { [self] name, value in
                packRequests.withLock { $0.append("\(name)=\(value)") }
                // An unknown pack fails: the reply has no row with the pack's key.
                guard let pack = packs.withLock({ $0[value] }) else { throw Refused() }
                return pack
            },
            genConfig: { [self] in
                if fail.withLock({ $0 }) { throw Refused() }
                return sources.withLock { $0 }
            })
    }
}

@Suite struct ConfigExtensionTests {
    @Test func extensionConfigSourceOverARealManagerAndAnSDKPlugin() async throws {
        var template = Array("/tmp/osq-cfgx-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let flags = Flags()
        try flags.set("extensions_interval", "0.5")
        try flags.set("extensions_timeout", "30")  // a registration's grace: the pool may be busy with other suites
        let manager = try await ExtensionManager.start(socketPath: socket, registry: PluginRegistry(), flags: flags, queryThreads: 1)

        let served = ServedConfig(
            sources: [
                "b_source": #"{"packs": {"remote": "pack-id-1"}, "options": {"custom_origin": "extension"}}"#,
                "a_source": "// comment\n{\"schedule\": {\"q\": {\"query\": \"SELECT 1\", \"interval\": \"60\"}}}",
            ],
            packs: ["pack-id-1": #"{"queries": {"r": {"query": "SELECT 2", "interval": 30}}}"#])
        let ext = Extension("config_ext", plugins: [served.plugin], configuration: .inProcess)
        try await ext.start(options: try ExtensionOptions.parse(["--socket", socket, "--interval", "0.5", "--timeout", "30"]))
        let uuid = ext.uuid
        #expect(uuid > 0)

        let source = ExtensionConfigSource(
            caller: ExtensionCaller(managerSocket: socket, timeout: .seconds(10)), uuid: uuid, plugin: "test_config")
        let loader = ConfigLoader(source: source, flags: flags, log: LogLines().sink)
        let config = try await offPool { try loader.load() }
        #expect(config.sourceOrder == ["a_source", "b_source"])
        #expect(config.scheduledQueries(host: linuxHost, discovery: noDiscovery).map(\.name) == ["q", "pack_remote_r"])
        #expect(served.packRequests.withLock { $0 } == ["remote=pack-id-1"])
        #expect(flags.value(named: "custom_origin") == "extension")

        // genPack: a reply without the pack's key is osquery's "Invalid plugin response".
        let missing = try await offPool { () -> String in
            do {
                _ = try source.genPack(name: "other", value: "unknown-id")
                return "none"
            } catch {
                return "\(error)"
            }
        }
        #expect(missing == "Invalid plugin response")

        // Unchanged content: nothing to do. Changed: the source is re-read.
        #expect(try await offPool { try loader.refresh() == nil })
        served.sources.withLock { $0["a_source"] = #"{"schedule": {"q2": {"query": "SELECT 3"}}}"# }
        let refreshed = try #require(try await offPool { try loader.refresh() })
        #expect(refreshed.scheduledQueries(host: linuxHost, discovery: noDiscovery).map(\.name) == ["q2", "pack_remote_r"])

        // A failing plugin (non-zero status) fails the refresh; the last good config stays.
        served.fail.withLock { $0 = true }
        let failure = try await offPool { () -> String in
            do {
                _ = try loader.refresh()
                return "none"
            } catch {
                return "\(error)"
            }
        }
        #expect(failure.hasPrefix("config plugin test_config failed: "), "\(failure)")
        #expect(loader.current?.packs.map(\.name) == ["main", "remote"])

        // A plugin that is gone: a clear error naming it.
        ext.stop()
        _ = await ext.waitUntilStopped()
        let gone = try await offPool { () -> String in
            do {
                _ = try source.genConfig()
                return "none"
            } catch {
                return "\(error)"
            }
        }
        #expect(gone.hasPrefix("config plugin test_config: "), "\(gone)")
        await manager.stop()
    }
}
