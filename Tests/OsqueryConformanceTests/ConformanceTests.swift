import Foundation
import ProtocolFixture
import OsqueryConformance
import Testing

/// The kit run against real targets: our osqueryd and osqueryi, an Examples/ extension,
/// an extension written with PyPI `osquery`, and the kit's reference manager driven by
/// the C++ libthrift client.
enum Kit {
    /// Runs to completion off the cooperative pool; returns (status, stdout, stderr).
    static func run(_ path: String, _ args: [String]) async throws -> (Int32, String, String) {
        try await runToCompletion(path, args)
    }

    /// Runs `osquery-conformance ARGS --json`; returns the exit status and id → (status, detail).
    static func conformance(_ args: [String]) async throws -> (Int32, [String: (String, String)], String) {
        let (status, out, err) = try await run(try BuiltProducts.path("osquery-conformance"), args)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "no JSON: \(out) \(err)")
        var checks: [String: (String, String)] = [:]
        for c in object["checks"] as? [[String: Any]] ?? [] {
            checks[c["id"] as? String ?? ""] = (c["status"] as? String ?? "", c["detail"] as? String ?? "")
        }
        return (status, checks, out)
    }

    static func failures(_ checks: [String: (String, String)]) -> [String] {
        checks.filter { $0.value.0 == "FAIL" }.map { "\($0.key): \($0.value.1)" }.sorted()
    }

    /// Waits until something answers at `socket`.
    static func waitForSocket(_ socket: String) async throws {
        let end = Date().addingTimeInterval(60)
        while Date() < end {
            if FileManager.default.fileExists(atPath: socket), (try? await run(Peers.cppClient, ["extensions", socket]).0) == 0 { return }
            if !FileManager.default.fileExists(atPath: Peers.cppClient), FileManager.default.fileExists(atPath: socket) {
                try await Task.sleep(for: .milliseconds(500))
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw KitError("nothing answers at \(socket)")
    }
}

struct KitError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@Suite(.serialized) struct ConformanceTests {
    /// Every core check passes against our osqueryd (the SO_PEERCRED check is a skip).
    @Test func coreModeAgainstOsqueryd() async throws {
        let dir = try scratchDirectory("d")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
        daemon.arguments = [
            "--extensions_socket", socket, "--extensions_interval", "1", "--extensions_timeout", "3",
            "--disable_watchdog", "--ephemeral", "--logger_path", dir + "/logs", "--config_path", dir + "/osquery.conf",
        ]
        _ = FileManager.default.createFile(atPath: dir + "/stderr", contents: nil)
        daemon.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/stderr"))
        daemon.standardOutput = FileHandle.nullDevice
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate(); daemon.waitUntilExit() } }
        do {
            try await Kit.waitForSocket(socket)
        } catch {
            let stderr = (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? ""
            Issue.record("\(error); osqueryd running: \(daemon.isRunning); its stderr: \(stderr)")
            return
        }

        let (status, checks, out) = try await Kit.conformance(["core", "--socket", socket, "--json"])
        #expect(Kit.failures(checks) == [], "\(out)")
        #expect(status == 0)
        #expect(checks.count >= 40)
        #expect(checks["core.peer-credentials"]?.0 == "SKIP")
    }

    /// The same against osqueryi (stdin held open so the shell keeps serving).
    @Test func coreModeAgainstOsqueryi() async throws {
        let dir = try scratchDirectory("i")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/shell.em"
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryi"))
        shell.arguments = ["--extensions_socket", socket, "--extensions_interval", "1", "--extensions_timeout", "3"]
        let stdin = Pipe()
        shell.standardInput = stdin
        shell.standardOutput = FileHandle.nullDevice
        shell.standardError = FileHandle.nullDevice
        try shell.run()
        defer {
            try? stdin.fileHandleForWriting.close()
            if shell.isRunning { shell.terminate() }
            shell.waitUntilExit()
        }
        try await Kit.waitForSocket(socket)
        let (status, checks, out) = try await Kit.conformance(["core", "--socket", socket, "--json"])
        #expect(Kit.failures(checks) == [], "\(out)")
        #expect(status == 0)
    }

    /// An Examples/ extension: every extension check passes (no logger/config plugin → skips).
    @Test func extensionModeAgainstTheSDKExample() async throws {
        let (status, checks, out) = try await Kit.conformance(["extension", "--json", "--", try BuiltProducts.path("example-pressure-table")])
        #expect(Kit.failures(checks) == [], "\(out)")
        #expect(status == 0)
        #expect(checks.count >= 20)
        #expect(checks.filter { $0.value.0 == "PASS" }.count >= 20)
    }

    /// The other Examples/ extensions (logger, config, writable table, distributed): nothing fails.
    /// They are built by `swift test` as dependencies of OsqueryExtensionTests.
    @Test(arguments: ["example-jsonl-logger", "example-config", "example-writable-table", "example-distributed"])
    func extensionModeAgainstOtherExamples(_ name: String) async throws {
        let (status, checks, out) = try await Kit.conformance(["extension", "--json", "--", try BuiltProducts.path(name)])
        #expect(Kit.failures(checks) == [], "\(out)")
        #expect(status == 0)
    }

    /// The text report: one line per check, the summary on its own last line.
    @Test func textReportEndsWithTheSummary() async throws {
        let (status, out, _) = try await Kit.run(try BuiltProducts.path("osquery-conformance"), ["extension", "--", try BuiltProducts.path("example-config")])
        #expect(status == 0)
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.last?.range(of: #"^\d+ passed, 0 failed, \d+ skipped$"#, options: .regularExpression) != nil, "\(out)")
        #expect(lines.dropLast().allSatisfy { $0.hasPrefix("extension.") && ($0.contains(" PASS [") || $0.contains(" SKIP [")) })
    }

    /// PyPI `osquery` has known gaps; the kit reports exactly these, with clear messages.
    @Test func extensionModeAgainstPyPIOsquery() async throws {
        try Peers.require()
        let (status, checks, out) = try await Kit.conformance(["extension", "--json", "--", Peers.pythonExtension])
        #expect(status == 1)
        let failed = checks.filter { $0.value.0 == "FAIL" }.keys.sorted()
        #expect(failed == [
            "extension.idle-connection-does-not-block", "extension.liveness.forgotten", "extension.logger.features",
            "extension.table.generate.unknown-action",
        ], "\(out)")
        #expect(checks["extension.idle-connection-does-not-block"]?.1.contains("one connection at a time") == true)
        #expect(checks["extension.logger.features"]?.1.contains("code 1, message \"Not a valid logger plugin action\"") == true)
        #expect(checks["extension.liveness.forgotten"]?.1.contains("ping-only watchdog") == true)
        #expect(checks["extension.table.generate.unknown-action"]?.1.contains("TApplicationException") == true)
        #expect(checks["extension.liveness.manager-gone"]?.0 == "PASS")
        #expect(checks["extension.table.generate.missing-context"]?.0 == "PASS")
    }

    /// The reference manager, driven by osquery's own Thrift stack (the C++ libthrift client).
    @Test func referenceManagerWithTheCppClient() async throws {
        try Peers.require()
        let dir = try scratchDirectory("r")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let manager = ReferenceManager(socket: dir + "/ref.em")
        let server = try await manager.serve()

        let first = try await Kit.run(Peers.cppClient, ["register", manager.socket, "cfx_cpp"])
        let reg = try #require(try JSONSerialization.jsonObject(with: Data(first.1.utf8)) as? [String: Any], "\(first)")
        #expect(reg["code"] as? Int == 0)
        #expect(reg["message"] as? String == "OK")
        let uuid = try #require(reg["uuid"] as? Int)
        #expect((1...65535).contains(uuid))

        let again = try await Kit.run(Peers.cppClient, ["register", manager.socket, "cfx_cpp"])
        let dup = try JSONSerialization.jsonObject(with: Data(again.1.utf8)) as? [String: Any]
        #expect(dup?["code"] as? Int == 1)
        #expect(dup?["message"] as? String == "Duplicate extension registered")

        let listed = try await Kit.run(Peers.cppClient, ["extensions", manager.socket])
        let list = try JSONSerialization.jsonObject(with: Data(listed.1.utf8)) as? [String: [String: String]]
        #expect(list?["\(uuid)"]?["name"] == "cfx_cpp")
        #expect(list?["\(uuid)"]?["sdk_version"] == "1.7.7")

        // A real extension registers with the reference manager; the C++ client queries its table through it.
        let ext = Process()
        ext.executableURL = URL(fileURLWithPath: try BuiltProducts.path("example-pressure-table"))
        ext.arguments = ["--socket", manager.socket, "--timeout", "3", "--interval", "1"]
        ext.standardOutput = FileHandle.nullDevice
        ext.standardError = FileHandle.nullDevice
        try ext.run()
        defer { if ext.isRunning { ext.terminate(); ext.waitUntilExit() } }
        let end = Date().addingTimeInterval(60)
        while manager.current.count < 2 && Date() < end { try await Task.sleep(for: .milliseconds(100)) }
        let table = try #require(manager.current.values.compactMap { $0.registry["table"]?.keys.first?.lossyString }.first { $0 != "cfx_cpp_tbl" })
        let queried = try await Kit.run(Peers.cppClient, ["query", manager.socket, "select * from \(table)"])
        let result = try #require(try JSONSerialization.jsonObject(with: Data(queried.1.utf8)) as? [String: Any], "\(queried)")
        #expect(result["code"] as? Int == 0, "\(result)")
        #expect(((result["rows"] as? [[String: String]]) ?? []).isEmpty == false)

        let bad = try await Kit.run(Peers.cppClient, ["query", manager.socket, "select * from cfx_nothing"])
        let badResult = try JSONSerialization.jsonObject(with: Data(bad.1.utf8)) as? [String: Any]
        #expect(badResult?["code"] as? Int == 1)
        #expect(badResult?["message"] as? String == "no such table: cfx_nothing")
        await server.close()
    }
}
