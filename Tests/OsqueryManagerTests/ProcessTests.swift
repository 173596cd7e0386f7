import Foundation
import ProtocolFixture
import OsqueryProtocol
import Testing
import ThriftCodec

/// Real binaries and real peers: the built osqueryi/osqueryd, the extension
/// written with PyPI `osquery` (Tests/Peers/python/osquery_extension.py) and
/// the C++ libthrift client (Tests/Peers/cpp/fixture_peer query/extensions).
enum Real {
    /// osqueryd keeps everything in `dir` and stays one process (the
    /// extensions it launches are its children).
    static func daemonBase(_ dir: String) -> [String] {
        ["--disable_watchdog", "--ephemeral", "--logger_path", dir + "/logs", "--config_path", dir + "/osquery.conf"]
    }

    /// osqueryd with `args` and `daemonBase(dir)`, its stderr in `dir/stderr` (returned as `log`).
    static func startDaemon(dir: String, _ args: [String]) throws -> (daemon: Process, log: String) {
        let log = dir + "/stderr"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
        daemon.arguments = args + daemonBase(dir)
        daemon.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try daemon.run()
        return (daemon, log)
    }

    /// Runs to completion off the cooperative pool; returns (status, stdout, stderr).
    static func run(_ path: String, _ args: [String], env: [String: String] = [:]) async throws -> (Int32, String, String) {
        try await runToCompletion(path, args, environment: env)
    }

    /// The C++ client's JSON answer.
    static func cpp(_ args: [String]) async throws -> Any {
        let (status, out, err) = try await run(Peers.cppClient, args)
        guard status == 0 else { throw RealError("fixture_peer \(args) failed: \(err)") }
        return try JSONSerialization.jsonObject(with: Data(out.utf8))
    }

}

struct RealError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func records(_ path: String) -> [[String: Any]] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

@Suite(.serialized) struct RealPeerTests {
    @Test func osqueryiStartsAPythonExtensionAndQueriesItsTable() async throws {
        try Peers.require()
        let dir = try scratchDirectory("shell")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let record = dir + "/record.jsonl"
        let (status, out, err) = try await Real.run(
            try BuiltProducts.path("osqueryi"),
            [
                "--extension", Peers.pythonExtension, "--extensions_socket", dir + "/s.em",
                "--extensions_timeout", "10", "--extensions_interval", "1", "--json",
                "select p.name, p.value from py_table p join (select 'alpha' as n union select 'gamma') j on p.name = j.n "
                    + "where p.value in (1, 2147483647) order by p.name",
            ], env: ["OSQ_PY_EXT_RECORD": record])
        #expect(status == 0, "\(err)")
        #expect(out == "[\n  {\"name\":\"alpha\",\"value\":\"1\"},\n  {\"name\":\"gamma\",\"value\":\"2147483647\"}\n]\n", "\(out)\(err)")
        // The context the extension received: one entry per column in lexical
        // order, the JOIN and IN values pushed down as op 2.
        let contexts = records(record).compactMap { ($0["request"] as? [String: Any])?["context"] as? String }
        #expect(!contexts.isEmpty)
        var pushed: Set<String> = []
        for context in contexts {
            let json = try #require(try JSONSerialization.jsonObject(with: Data(context.utf8)) as? [String: Any])
            let constraints = try #require(json["constraints"] as? [[String: Any]])
            #expect(constraints.map { $0["name"] as? String } == ["big", "name", "ratio", "value"])
            for c in constraints {
                for item in (c["list"] as? [[String: Any]]) ?? [] where item["op"] as? Int == 2 {
                    pushed.insert("\(c["name"]!)=\(item["expr"]!)")
                }
            }
        }
        #expect(pushed.contains("value=1") && pushed.contains("value=2147483647"), "\(pushed)")
        // The shell stopped the extension and removed the sockets.
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("s.em") }
        #expect(left.isEmpty, "\(left)")
    }

    @Test func osquerydAutoloadsSupervisesAndActivatesPlugins() async throws {
        try Peers.require()
        let dir = try scratchDirectory("daemon")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let record = dir + "/record.jsonl"
        try (Peers.pythonExtension + "\n# a comment\n\n").write(toFile: dir + "/extensions.load", atomically: true, encoding: .utf8)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
        daemon.arguments = [
            "--extensions_socket", socket, "--extensions_autoload", dir + "/extensions.load",
            "--extensions_interval", "1", "--extensions_timeout", "3",
            "--config_plugin", "py_config", "--logger_plugin", "py_logger",
        ] + Real.daemonBase(dir)
        daemon.environment = ProcessInfo.processInfo.environment.merging(["OSQ_PY_EXT_RECORD": record]) { _, b in b }
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate() } }

        func registered() async throws -> [String: [String: String]] {
            (try? await Real.cpp(["extensions", socket]) as? [String: [String: String]]) ?? [:]
        }
        #expect(try await waitUntil(60) { try await registered().values.contains { $0["name"] == "py_ext" } })
        let firstUUID = try #require(try await registered().first { $0.value["name"] == "py_ext" }?.key)

        // The C++ client (osquery's own Thrift stack) queries the extension's table through us.
        let result = try #require(try await Real.cpp(["query", socket, "select count(*) as c, max(big) as m from py_table"]) as? [String: Any])
        #expect(result["code"] as? Int == 0)
        #expect((result["rows"] as? [[String: String]]) == [["c": "5", "m": "9223372036854775807"]])

        // The config plugin's options applied; the logger got init, then features, then status lines.
        let flag = try #require(try await Real.cpp(["query", socket, "select value from osquery_flags where name = 'custom_py'"]) as? [String: Any])
        #expect((flag["rows"] as? [[String: String]]) == [["value": "yes"]])
        #expect(await waitUntil(60) {
            records(record).contains { (($0["request"] as? [String: Any])?["status"] as? String) == "true" }
        })
        let loggerRequests = records(record).filter { $0["plugin"] as? String == "py_logger" }.compactMap { $0["request"] as? [String: Any] }
        #expect(loggerRequests.first?["init"] as? String == "osqueryd")
        #expect(loggerRequests.dropFirst().first?["action"] as? String == "features")
        let status = try #require(loggerRequests.first { $0["status"] as? String == "true" })
        let lines = try #require(try JSONSerialization.jsonObject(with: Data((status["log"] as! String).utf8)) as? [[String: Any]])
        #expect(Set(lines.first?.keys.map { $0 } ?? []) == ["s", "f", "i", "m", "h", "c", "u"])

        // kill -9 the extension: the watcher removes it, the supervisor relaunches it, it registers again.
        let pid = try #require(childPID(of: daemon.processIdentifier, containing: "osquery_extension.py"))
        kill(pid, SIGKILL)
        #expect(try await waitUntil(60) { try await registered()[firstUUID] == nil })
        #expect(try await waitUntil(30) {
            try await registered().contains { $0.value["name"] == "py_ext" && $0.key != firstUUID }
        })
        let again = try #require(try await Real.cpp(["query", socket, "select count(*) as c from py_table"]) as? [String: Any])
        #expect((again["rows"] as? [[String: String]]) == [["c": "5"]])

        // SIGTERM: the extension is stopped, the sockets removed, exit 0.
        daemon.terminate()
        let exited = try await offPool { daemon.waitUntilExit(); return daemon.terminationStatus }
        #expect(exited == 0)
        #expect(!FileManager.default.fileExists(atPath: socket))
        #expect(childPID(of: daemon.processIdentifier, containing: "osquery_extension.py") == nil)
    }
}

/// A live process whose parent chain reaches `ancestor` and whose command line contains `text`.
func childPID(of ancestor: Int32, containing text: String) -> Int32? {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
    for entry in entries {
        guard let pid = Int32(entry),
            let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
            String(decoding: cmdline, as: UTF8.self).contains(text)
        else { continue }
        var current = pid
        for _ in 0..<8 {
            guard let stat = try? String(contentsOfFile: "/proc/\(current)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { break }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, let parent = Int32(fields[1]) else { break }
            if parent == ancestor { return pid }
            current = parent
        }
    }
    return nil
}

@Suite(.serialized) struct MoreRealPeerTests {
    /// Better than osquery: even if an operator loosens the socket's mode, a
    /// peer that is neither root nor the core's user cannot register.
    @Test func anotherUsersRegistrationIsRefused() async throws {
        try Peers.require()
        guard getuid() == 0 else { return }  // needs root to run a client as another uid
        let core = try await TestCore.start("peercred")
        let dir = try scratchDirectory("peercred")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The client must be reachable by uid 65534 whatever the checkout's permissions.
        let client = dir + "/fixture_peer"
        try await copyExecutable(Peers.cppClient, to: client)
        chmod(dir, 0o755)
        #expect(FileManager.default.fileExists(atPath: core.manager.socketPath))
        #expect(chmod(core.manager.socketPath, 0o666) == 0)
        let (status, out, err) = try await Real.run(
            "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", client, "register", core.manager.socketPath, "intruder"])
        #expect(status == 0, "\(err)")
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(reply["code"] as? Int == 1)
        #expect((reply["message"] as? String)?.hasPrefix("Permission denied") == true, "\(reply)")
        #expect(try await core.client.extensions().isEmpty)
        // The same request from root is accepted.
        let (_, rootOut, _) = try await Real.run(client, ["register", core.manager.socketPath, "friend"])
        #expect((try JSONSerialization.jsonObject(with: Data(rootOut.utf8)) as? [String: Any])?["code"] as? Int == 0)
        await core.stop()
    }

    @Test func missingRequiredExtensionIsLoggedAndTheDaemonKeepsServing() async throws {
        try Peers.require()
        let dir = try scratchDirectory("require")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let (daemon, log) = try Real.startDaemon(
            dir: dir, ["--extensions_socket", socket, "--extensions_require", "missing", "--extensions_timeout", "1"])
        defer { if daemon.isRunning { daemon.terminate() } }
        #expect(await waitUntil(60) { (try? await Real.cpp(["extensions", socket])) != nil })
        #expect(await waitUntil(60) {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("Required extension not found or not loaded: missing")
        })
        #expect(daemon.isRunning)
        daemon.terminate()
        _ = try await offPool { daemon.waitUntilExit() }
    }

    /// osqueryi with an extension built with our SDK (Examples/PressureTable): its table answers,
    /// and nothing but the result reaches the shell's output.
    @Test func osqueryiRunsAnSDKExtension() async throws {
        try Peers.require()
        let dir = try scratchDirectory("sdkext")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, out, err) = try await Real.run(
            try BuiltProducts.path("osqueryi"),
            [
                "--extension", try BuiltProducts.path("example-pressure-table"), "--extensions_socket", dir + "/s.em",
                "--extensions_timeout", "10", "--json", "select count(*) > 0 as some from pressure_stall",
            ])
        #expect(status == 0, "\(err)")
        let hasPressure = FileManager.default.fileExists(atPath: "/proc/pressure/cpu")
        #expect(out == "[\n  {\"some\":\"\(hasPressure ? 1 : 0)\"}\n]\n", "\(out)\(err)")
        #expect(err.isEmpty, "\(err)")
    }

    /// SIGTERM (or SIGHUP: its terminal closed) to osqueryi shuts its service group down as
    /// osqueryd's: the extension it launched is stopped and every socket file goes; then the
    /// signal ends the shell, as its default would.
    @Test(arguments: [SIGTERM, SIGHUP]) func aStopSignalStopsOsqueryisExtensionsAndRemovesTheSockets(_ number: Int32) async throws {
        try Peers.require()
        let dir = try scratchDirectory("shellterm")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/s.em"
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryi"))
        shell.arguments = [
            "--extension", try BuiltProducts.path("example-pressure-table"), "--extensions_socket", socket,
            "--extensions_timeout", "10", "--extensions_interval", "1",
        ]
        let input = Pipe()  // held open: the shell waits for its script
        shell.standardInput = input
        shell.standardOutput = FileHandle.nullDevice
        try shell.run()
        defer { if shell.isRunning { kill(shell.processIdentifier, SIGKILL) } }
        #expect(await waitUntil(30) {
            guard let list = try? await Real.cpp(["extensions", socket]) else { return false }
            return "\(list)".contains("pressure_stall")
        })
        let sockets = { (try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { $0.hasPrefix("s.em") } ?? [] }
        #expect(sockets().count == 2, "\(sockets())")
        kill(shell.processIdentifier, number)
        _ = try await offPool { shell.waitUntilExit() }
        #expect(shell.terminationReason == .uncaughtSignal && shell.terminationStatus == number)
        #expect(sockets().isEmpty, "\(sockets())")
        try? input.fileHandleForWriting.close()
    }

    /// Distributed queries through an extension written with our SDK (Examples/DistributedExtension).
    @Test func distributedQueriesRunThroughAnExtensionsPlugin() async throws {
        try Peers.require()
        let dir = try scratchDirectory("distributed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ext = dir + "/distributed.ext"
        try await copyExecutable(try BuiltProducts.path("example-distributed"), to: ext)
        try (ext + "\n").write(toFile: dir + "/extensions.load", atomically: true, encoding: .utf8)
        let log = dir + "/stderr"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
        daemon.arguments = [
            "--extensions_socket", dir + "/osquery.em", "--extensions_autoload", dir + "/extensions.load",
            "--extensions_timeout", "10", "--extensions_interval", "1",
            "--disable_distributed=false", "--distributed_plugin", "swift_distributed", "--distributed_interval", "1",
        ] + Real.daemonBase(dir)
        // The extension inherits stderr and reports what writeResults brought it.
        daemon.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate() } }
        #expect(await waitUntil(30) {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("swift_uptime: status 0, 1 rows")
        }, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        daemon.terminate()
        _ = try await offPool { daemon.waitUntilExit() }
    }
}
