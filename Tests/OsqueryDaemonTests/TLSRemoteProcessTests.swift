import Foundation
import ProtocolFixture
import Testing

/// The test suite's TLS remote API server (Tests/Peers/tls/tls_server.py, Python stdlib
/// `http.server` + `ssl`), with certificates made by `openssl` at test time. State and control
/// are files in its directory (see the script's header).
final class TLSServer: @unchecked Sendable {  // `process` changes only in start/stop, from one test
    static let script = Peers.repo + "/Tests/Peers/tls/tls_server.py"
    let dir: String
    let secret: String
    let clientCA: Bool
    private(set) var port: Int = 0
    private var process: Process?

    /// Certificates for every test of the run: a CA, a server certificate for localhost and
    /// 127.0.0.1, a client certificate, and an unrelated CA.
    static let certs: String = {
        let dir = "/tmp/osq-tls-certs-\(getpid())"
        if !FileManager.default.fileExists(atPath: dir + "/client.pem") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: python)
            p.arguments = [script, "certs", dir]
            try? p.run()
            p.waitUntilExit()
        }
        return dir
    }()

    static var python: String {
        let venv = Peers.repo + "/.venv/bin/python3"
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "/usr/bin/python3"
    }

    init(dir: String, secret: String = "s3cret", clientCA: Bool = false) throws {
        self.dir = dir
        self.secret = secret
        self.clientCA = clientCA
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    /// Starts the server (on the same port as before, after a restart); returns once it listens.
    func start() async throws {
        let certs = Self.certs
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.python)
        var arguments = [
            Self.script, "serve", dir, "--port", String(port), "--cert", certs + "/server.pem", "--key", certs + "/server.key",
            "--secret", secret,
        ]
        if clientCA { arguments += ["--client-ca", certs + "/ca.pem"] }
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        process = p
        let line = try await offPool { () -> String in
            var bytes: [UInt8] = []
            while let byte = try out.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { bytes.append(byte) }
            return String(decoding: bytes, as: UTF8.self)
        }
        guard let port = Int(line) else { throw DaemonTestError("tls_server.py did not start: \(line)") }
        self.port = port
    }

    func stop() async {
        guard let p = process else { return }
        process = nil
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        _ = try? await offPool { p.waitUntilExit() }
    }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: dir + "/" + name + ".tmp", atomically: false, encoding: .utf8)
        _ = rename(dir + "/" + name + ".tmp", dir + "/" + name)
    }

    func remove(_ name: String) { try? FileManager.default.removeItem(atPath: dir + "/" + name) }

    /// The JSON objects of a `.jsonl` file the server writes.
    func records(_ name: String) -> [[String: Any]] {
        ((try? String(contentsOfFile: dir + "/" + name, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Flags that point a daemon at this server with Fleet's paths.
    func flags(secretFile: String) -> [String] {
        [
            "--tls_hostname", "localhost:\(port)", "--tls_server_certs", Self.certs + "/ca.pem",
            "--enroll_secret_path", secretFile, "--enroll_tls_endpoint", "/api/osquery/enroll",
            "--config_plugin", "tls", "--config_tls_endpoint", "/api/osquery/config", "--config_refresh", "1",
            "--config_accelerated_refresh", "1", "--config_tls_max_attempts", "1",
            "--logger_plugin", "tls", "--logger_tls_endpoint", "/api/osquery/log", "--logger_tls_period", "1",
            "--logger_tls_backoff_max", "1", "--tls_enroll_max_attempts", "2", "--tls_enroll_max_interval", "1",
            "--tls_request_timeout", "5",
        ]
    }
}

/// osquery's TLS remote API against a real server: the real osqueryd binary enrolls, takes its
/// config, delivers results and statuses, and answers distributed queries.
@Suite(.serialized) struct TLSRemoteProcessTests {
    static let config = #"{"schedule": {"one": {"query": "SELECT 1 AS one, random() AS r", "interval": 1}}}"#

    func setUp(_ tag: String, secret: String = "s3cret", clientCA: Bool = false) async throws -> (String, TLSServer) {
        let dir = try scratchDirectory("tls-" + tag)
        try secret.write(toFile: dir + "/secret", atomically: true, encoding: .utf8)
        try "{}".write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let server = try TLSServer(dir: dir + "/server", clientCA: clientCA)
        try server.write("config.json", Self.config)
        try await server.start()
        return (dir, server)
    }

    func stderr(_ dir: String) -> String { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }

    func start(_ dir: String, _ server: TLSServer, _ extra: [String] = []) throws -> Process {
        try Daemond.start(
            Daemond.baseFlags(dir) + ["--disable_watchdog"] + server.flags(secretFile: dir + "/secret") + extra,
            stderr: dir + "/stderr")
    }

    func results(_ server: TLSServer, _ name: String) -> [[String: Any]] {
        server.records("log-result.jsonl").filter { $0["name"] as? String == name }
    }

    /// The daemon still answers on its extensions socket.
    func serves(_ dir: String) async -> Bool {
        await coreQuery(dir + "/osquery.em", "SELECT 1 AS x")?.first?["x"] == "1"
    }

    @Test func enrollsWithTheRightSecretAndKeepsTheNodeKeyInTheStore() async throws {
        let (dir, server) = try await setUp("enroll")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try start(dir, server)
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        let enroll = try #require(server.records("enroll.jsonl").first)
        #expect(enroll["host_identifier"] as? String == "test-host")
        #expect(enroll["platform_type"] as? String == "9")
        let details = enroll["host_details"] as? [String: Any] ?? [:]
        #expect((details["osquery_info"] as? [String: Any])?["version"] != nil)
        #expect(details["os_version"] != nil && details["system_info"] != nil)
        // Every request after enrollment carries the node key, as a member and a header.
        let config = try #require(server.records("requests.jsonl").first { ($0["path"] as? String)?.hasSuffix("/config") == true })
        let key = try #require(config["node_key"] as? String)
        #expect(config["authorization"] as? String == "NodeKey " + key)
        #expect((config["user_agent"] as? String)?.hasPrefix("osquery/") == true)
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)

        // The key is in the store: a restart does not enroll again.
        let dump = Process()
        dump.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
        dump.arguments = ["--database_dump", "--database_path", dir + "/osquery.db"]
        let pipe = Pipe()
        dump.standardOutput = pipe
        try dump.run()
        let text = try await offPool { String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
        dump.waitUntilExit()
        #expect(text.contains("persistent_settings[nodeKey]: \(key)"), "\(text)")
        let again = try start(dir, server)
        let before = results(server, "one").count
        #expect(await waitUntil(60) { results(server, "one").count > before })
        #expect(server.records("enroll.jsonl").count == 1)
        await Daemond.stop(again)
        await server.stop()
    }

    @Test func aWrongSecretIsRefusedAfterTheAttemptsAndTheDaemonKeepsServing() async throws {
        let (dir, server) = try await setUp("badsecret")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "wrong".write(toFile: dir + "/secret", atomically: true, encoding: .utf8)
        let daemon = try start(dir, server, ["--logger_plugin", "filesystem"])
        let refused = "Failed enrollment request to https://localhost:\(server.port)/api/osquery/enroll (Request failed: Invalid node key: invalid enroll secret)"
        #expect(await waitUntil(60) { stderr(dir).contains(refused) }, "\(stderr(dir))")
        #expect(await waitUntil(60) { server.records("enroll.jsonl").count >= 2 })
        #expect(server.records("enroll.jsonl").allSatisfy { $0["enroll_secret"] as? String == "wrong" })
        #expect(await serves(dir))
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
        await server.stop()
    }

    @Test func aNewConfigIsAppliedAndNodeInvalidReenrolls() async throws {
        let (dir, server) = try await setUp("refresh")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try start(dir, server)
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        try server.write("config.json", #"{"schedule": {"two": {"query": "SELECT 2 AS two", "interval": 1}}}"#)
        try server.write("invalidate", "")
        #expect(await waitUntil(60) { !results(server, "two").isEmpty }, "\(stderr(dir))")
        #expect(server.records("enroll.jsonl").count >= 2)
        #expect(Daemond.columns(try #require(results(server, "two").first)) == ["two": "2"])
        await Daemond.stop(daemon)
        await server.stop()
    }

    @Test func resultsAndStatusesArriveGzipped() async throws {
        let (dir, server) = try await setUp("gzip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try start(dir, server, ["--logger_tls_compress", "--tls_accept_gzip"])
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        #expect(await waitUntil(60) { server.records("log-status.jsonl").contains { ($0["message"] as? String)?.contains("osqueryd started") == true } })
        let logs = server.records("requests.jsonl").filter { ($0["path"] as? String)?.hasSuffix("/log") == true }
        #expect(!logs.isEmpty && logs.allSatisfy { $0["encoding"] as? String == "gzip" })
        let status = try #require(server.records("log-status.jsonl").first)
        #expect(status["hostIdentifier"] as? String == "test-host" && status["severity"] != nil && status["version"] != nil)
        await Daemond.stop(daemon)
        await server.stop()
    }

    /// The server goes away: lines wait in the store (across a restart of the daemon too) and
    /// arrive in order, none lost, once it is back.
    @Test func linesBufferedWhileTheServerIsDownArriveInOrder() async throws {
        let (dir, server) = try await setUp("down")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var daemon = try start(dir, server)
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        await server.stop()
        #expect(await waitUntil(60) { stderr(dir).components(separatedBy: "Error sending results to logger").count > 3 })
        await Daemond.stop(daemon)
        daemon = try start(dir, server)
        #expect(await waitUntil(60) { stderr(dir).components(separatedBy: "Error sending results to logger").count > 6 })
        try await server.start()
        let counters = { results(server, "one").compactMap { $0["counter"] as? Int } }
        let before = try #require(counters().max())
        #expect(await waitUntil(60) { (counters().max() ?? 0) > before + 3 }, "\(stderr(dir))")
        await Daemond.stop(daemon)
        // Every run's counter, once, in order: nothing lost or repeated while the server was down.
        let seen = counters()
        let runs = seen.reduce(into: [Int]()) { if $0.last != $1 { $0.append($1) } }
        #expect(runs == Array(0...(runs.last ?? 0)), "\(seen)")
        await server.stop()
    }

    @Test func aBufferAboveTheCapDropsTheOldestWithAStatusLine() async throws {
        let (dir, server) = try await setUp("cap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try start(dir, server, ["--buffered_log_max", "4"])
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        await server.stop()
        #expect(await waitUntil(60) { stderr(dir).contains("Purging buffered logs limit (4) exceeded") }, "\(stderr(dir))")
        try await server.start()
        #expect(await waitUntil(60) { server.records("log-status.jsonl").contains { ($0["message"] as? String)?.contains("Purging buffered logs") == true } })
        #expect(await serves(dir))
        await Daemond.stop(daemon)
        await server.stop()
    }

    /// A server that fails in every way: each failure is reported clearly and bounded in time,
    /// and the daemon goes on, taking the config again once the server is well.
    @Test func hostileServersAreBoundedAndReported() async throws {
        let (dir, server) = try await setUp("hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try start(dir, server, ["--logger_plugin", "filesystem", "--tls_request_timeout", "2", "--tls_max_response_size", "1048576"])
        #expect(await waitUntil(60) { !Daemond.lines(dir).isEmpty }, "\(stderr(dir))")
        let cases: [(String, String)] = [
            ("500", "Error reading config: Request failed: internal"),
            ("garbage", "is not a JSON object"),
            ("deep", "Error reading config: Request error: the answer (HTTP 200, 500006 bytes) is not a JSON object"),
            ("hang", "Error reading config: Request error: timed out after 2 s (--tls_request_timeout)"),
            ("huge", "Error reading config: Request error: the response is larger than 1048576 bytes (--tls_max_response_size)"),
            ("endless", "Error reading config: Request error: timed out after 2 s (--tls_request_timeout)"),
        ]
        for (mode, message) in cases {
            let before = stderr(dir).components(separatedBy: message).count
            try server.write("mode", mode)
            #expect(await waitUntil(60) { stderr(dir).components(separatedBy: message).count > before }, "\(mode): \(stderr(dir))")
            #expect(await serves(dir), "\(mode)")
        }
        try server.write("mode", "ok")
        try server.write("config.json", #"{"schedule": {"two": {"query": "SELECT 2 AS two", "interval": 1}}}"#)
        #expect(await waitUntil(60) { Daemond.lines(dir).contains { $0["name"] as? String == "two" } }, "\(stderr(dir))")
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
        await server.stop()
    }

    @Test func aServerCertificateFromAnotherCAIsRefused() async throws {
        let (dir, server) = try await setUp("wrongca")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try start(dir, server, ["--logger_plugin", "filesystem", "--tls_server_certs", TLSServer.certs + "/other-ca.pem"])
        let refused = "Request error: TLS handshake failed: the server's certificate is not trusted (CERTIFICATE_VERIFY_FAILED; see --tls_server_certs)"
        #expect(await waitUntil(60) { stderr(dir).contains("Failed enrollment request") && stderr(dir).contains(refused) }, "\(stderr(dir))")
        #expect(server.records("enroll.jsonl").isEmpty)
        #expect(await serves(dir))
        await Daemond.stop(daemon)
        await server.stop()
    }

    @Test func mutualTLSNeedsTheClientCertificate() async throws {
        let (dir, server) = try await setUp("mtls", clientCA: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var daemon = try start(dir, server, ["--logger_plugin", "filesystem"])
        #expect(await waitUntil(60) { stderr(dir).contains("Failed enrollment request") }, "\(stderr(dir))")
        #expect(server.records("enroll.jsonl").isEmpty)
        await Daemond.stop(daemon)
        daemon = try start(dir, server, ["--tls_client_cert", TLSServer.certs + "/client.pem", "--tls_client_key", TLSServer.certs + "/client.key"])
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        #expect(server.records("enroll.jsonl").count == 1)
        await Daemond.stop(daemon)
        await server.stop()
    }

    @Test func distributedQueriesWithDiscoveryAndAFailingOne() async throws {
        let (dir, server) = try await setUp("distributed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try server.write(
            "queries.json",
            #"{"queries": {"ok": "SELECT 1 AS one", "bad": "SELECT * FROM no_such_table", "gated": "SELECT 2 AS two", "open": "SELECT 3 AS three"}, "discovery": {"gated": "SELECT 1 WHERE 0", "open": "SELECT 1"}}"#)
        let daemon = try start(
            dir, server,
            [
                "--disable_distributed=false", "--distributed_plugin", "tls", "--distributed_interval", "1",
                "--distributed_tls_read_endpoint", "/api/osquery/distributed/read",
                "--distributed_tls_write_endpoint", "/api/osquery/distributed/write",
            ])
        #expect(await waitUntil(60) { !server.records("distributed.jsonl").isEmpty }, "\(stderr(dir))")
        let write = try #require(server.records("distributed.jsonl").first)
        let queries = write["queries"] as? [String: Any] ?? [:]
        #expect(queries["ok"] as? [[String: String]] == [["one": "1"]])
        #expect(queries["open"] as? [[String: String]] == [["three": "3"]])
        #expect(queries["gated"] == nil)
        let statuses = write["statuses"] as? [String: Int] ?? [:]
        #expect(statuses["ok"] == 0 && (statuses["bad"] ?? 0) != 0)
        let messages = write["messages"] as? [String: String] ?? [:]
        let badMessage = messages["bad"] ?? ""
        #expect(badMessage.contains("no such table"), "\(messages)")
        #expect((write["stats"] as? [String: Any])?["ok"] != nil)
        #expect(write["node_key"] as? String != nil)
        #expect(await serves(dir))
        await Daemond.stop(daemon)
        await server.stop()
    }

    /// A distributed query asks for a carve of a 10 MB file; the server reassembles its blocks
    /// into a tar archive whose member is the file, byte for byte.
    @Test func aCarveOfATenMegabyteFileIsReassembledByteIdentical() async throws {
        let (dir, server) = try await setUp("carve")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        let original = try #require(try random.read(upToCount: 10 << 20))
        try random.close()
        #expect(original.count == 10 << 20)
        let target = dir + "/evidence.bin"
        try original.write(to: URL(fileURLWithPath: target))
        try server.write("queries.json", #"{"queries": {"carve": "SELECT * FROM carves WHERE path = '\#(target)' AND carve = 1"}}"#)
        let daemon = try start(
            dir, server,
            [
                "--disable_distributed=false", "--distributed_plugin", "tls", "--distributed_interval", "1",
                "--distributed_tls_read_endpoint", "/api/osquery/distributed/read",
                "--distributed_tls_write_endpoint", "/api/osquery/distributed/write",
                "--disable_carver=false", "--carver_start_endpoint", "/api/osquery/carve/begin",
                "--carver_continue_endpoint", "/api/osquery/carve/block", "--carver_block_size", "1048576",
            ])
        let carves = server.dir + "/carves"
        func blocks() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: carves)) ?? []).filter { !$0.hasSuffix(".meta") }.sorted()
        }
        let begin = { server.records("carve-begin.jsonl").first }
        #expect(await waitUntil(120) { blocks().count == (begin()?["block_count"] as? Int ?? -1) }, "\(stderr(dir))")
        let request = try #require(begin())
        #expect(request["block_size"] as? Int == 1_048_576)
        var archive = Data()
        for block in blocks() { archive.append(try Data(contentsOf: URL(fileURLWithPath: carves + "/" + block))) }
        #expect(archive.count == request["carve_size"] as? Int)
        let tar = dir + "/carve.tar"
        try archive.write(to: URL(fileURLWithPath: tar))
        let extract = Process()
        extract.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        extract.arguments = ["-xOf", tar]
        let pipe = Pipe()
        extract.standardOutput = pipe
        try extract.run()
        let member = try await offPool { pipe.fileHandleForReading.readDataToEndOfFile() }
        extract.waitUntilExit()
        #expect(member == original)
        // The distributed answer has the carve's row; the carves table shows it done.
        #expect(await waitUntil(60) { await coreQuery(dir + "/osquery.em", "SELECT status FROM carves")?.first?["status"] == "SUCCESS" })
        await Daemond.stop(daemon)
        await server.stop()
    }

    /// README's "Join a fleet" flagfile, as written, against the test server (only the server's
    /// address, its CA, the secret's path and the intervals differ).
    @Test func theReadmeFlagfileJoinsTheTestServer() async throws {
        let (dir, server) = try await setUp("readme")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let readme = try String(contentsOfFile: Peers.repo + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: "# /etc/osquery/osquery.flags"))
        let end = try #require(readme.range(of: "```", range: start.upperBound..<readme.endIndex))
        let flagfile = String(readme[start.lowerBound..<end.lowerBound])
        #expect(flagfile.contains("--enroll_tls_endpoint=/api/osquery/enroll"))
        try flagfile.write(toFile: dir + "/osquery.flags", atomically: true, encoding: .utf8)
        try server.write("queries.json", #"{"queries": {"info": "SELECT version FROM osquery_info"}}"#)
        let daemon = try Daemond.start(
            Daemond.baseFlags(dir) + [
                "--disable_watchdog", "--flagfile", dir + "/osquery.flags", "--tls_hostname", "localhost:\(server.port)",
                "--tls_server_certs", TLSServer.certs + "/ca.pem", "--enroll_secret_path", dir + "/secret",
                "--config_refresh", "1", "--logger_tls_period", "1", "--distributed_interval", "1",
            ], stderr: dir + "/stderr")
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        #expect(await waitUntil(60) { !server.records("distributed.jsonl").isEmpty }, "\(stderr(dir))")
        let write = try #require(server.records("distributed.jsonl").first)
        #expect(((write["queries"] as? [String: Any])?["info"] as? [[String: String]])?.first?["version"] != nil)
        await Daemond.stop(daemon)
        await server.stop()
    }

    /// A run of 3 000 rows is stored in one transaction and sent gzipped in
    /// `--logger_tls_max_lines` batches: every row arrives once, in at least 5× fewer bytes.
    @Test func aBigRunArrivesWholeInBatches() async throws {
        let (dir, server) = try await setUp("big")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) SELECT x FROM c"
        try server.write("config.json", #"{"schedule": {"big": {"query": "\#(sql)", "interval": 1}}}"#)
        let daemon = try start(dir, server, ["--logger_tls_max_lines", "1000", "--logger_tls_compress"])
        let xs = { Set(results(server, "big").compactMap { Daemond.columns($0)["x"] }) }
        #expect(await waitUntil(60) { xs().count == 3000 }, "\(stderr(dir))")
        #expect(results(server, "big").count == 3000)
        let posts = server.records("requests.jsonl").filter { ($0["path"] as? String)?.hasSuffix("/log") == true }
        #expect(posts.count >= 3)
        let batches = posts.filter { ($0["json_bytes"] as? Int ?? 0) > 100_000 }
        let wire = batches.reduce(0) { $0 + ($1["wire_bytes"] as? Int ?? 0) }
        let json = batches.reduce(0) { $0 + ($1["json_bytes"] as? Int ?? 0) }
        #expect(!batches.isEmpty && wire * 5 <= json, "\(wire) bytes on the wire for \(json) bytes of JSON")
        await Daemond.stop(daemon)
        await server.stop()
    }

    /// A CONNECT proxy (Tests/Peers/tls/connect_proxy.py); returns it and its port.
    func startProxy(_ dir: String, refuse: Bool = false) async throws -> (Process, Int) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TLSServer.python)
        p.arguments = [Peers.repo + "/Tests/Peers/tls/connect_proxy.py", dir + "/proxy.log"] + (refuse ? ["--refuse"] : [])
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        let line = try await offPool { () -> String in
            var bytes: [UInt8] = []
            while let byte = try out.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { bytes.append(byte) }
            return String(decoding: bytes, as: UTF8.self)
        }
        guard let port = Int(line) else { throw DaemonTestError("connect_proxy.py did not start: \(line)") }
        return (p, port)
    }

    func stopProxy(_ p: Process) async {
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        _ = try? await offPool { p.waitUntilExit() }
    }

    /// `--proxy_hostname`: every request goes through the proxy as `CONNECT host:port`, and the
    /// TLS session inside the tunnel is still verified against the server's name.
    @Test func theDaemonReachesTheServerThroughAConnectProxy() async throws {
        let (dir, server) = try await setUp("proxy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (proxy, port) = try await startProxy(dir)
        let daemon = try start(dir, server, ["--proxy_hostname", "127.0.0.1:\(port)"])
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        let log = (try? String(contentsOfFile: dir + "/proxy.log", encoding: .utf8)) ?? ""
        #expect(log.contains("CONNECT localhost:\(server.port) HTTP/1.1"), "\(log)")
        #expect(!log.split(separator: "\n").contains { !$0.hasPrefix("CONNECT ") }, "\(log)")
        await Daemond.stop(daemon)
        await stopProxy(proxy)
        await server.stop()
    }

    /// A proxy that refuses the tunnel: the requests fail with a clear error, nothing reaches
    /// the server around the proxy, and the daemon keeps serving.
    @Test func aRefusingProxyIsReportedAndTheDaemonKeepsServing() async throws {
        let (dir, server) = try await setUp("proxyrefuse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (proxy, port) = try await startProxy(dir, refuse: true)
        let daemon = try start(dir, server, ["--proxy_hostname", "127.0.0.1:\(port)"])
        #expect(await waitUntil(60) { stderr(dir).contains("Request error") && stderr(dir).contains("proxy") }, "\(stderr(dir))")
        #expect(server.records("enroll.jsonl").isEmpty)
        #expect(await serves(dir))
        await Daemond.stop(daemon)
        await stopProxy(proxy)
        await server.stop()
    }

    /// The host-vitals queries a Fleet server sends a Linux host first (Fleet's docs, "Understanding
    /// host vitals"; written here for the same tables, columns and SQL functions): each answers with
    /// status 0 and the columns Fleet reads, and the software inventory has every installed deb.
    @Test func fleetHostVitalsQueriesAnswerWithTheColumnsFleetReads() async throws {
        let (dir, server) = try await setUp("vitals")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let users = """
            WITH g AS (SELECT * FROM groups) SELECT uid, username, type, groupname, shell FROM users LEFT JOIN g USING (gid) \
            WHERE type <> 'special' AND shell NOT LIKE '%/false' AND shell NOT LIKE '%/nologin' AND username NOT LIKE '\\_%' ESCAPE '\\' \
            AND NOT (username = 'sync' AND shell = '/bin/sync' AND directory <> '')
            """
        let queries: [String: String] = [
            "os_version": "SELECT * FROM os_version LIMIT 1",
            "os_unix_like": """
                SELECT os.name, os.major, os.minor, os.patch, os.extra, os.build, os.arch, os.platform, os.version AS version, \
                k.version AS kernel_version FROM os_version os, kernel_info k
                """,
            "osquery_info": "SELECT * FROM osquery_info LIMIT 1",
            "system_info": "SELECT * FROM system_info LIMIT 1",
            "uptime": "SELECT * FROM uptime LIMIT 1",
            "osquery_flags": """
                SELECT name, value FROM osquery_flags WHERE name IN ('distributed_interval', 'config_tls_refresh', 'config_refresh', 'logger_tls_period')
                """,
            "scheduled_query_stats": "SELECT *, (SELECT value FROM osquery_flags WHERE name = 'pack_delimiter') AS delimiter FROM osquery_schedule",
            "disk_space_unix": """
                SELECT (blocks_available * 100 / blocks) AS percent_disk_space_available, \
                round((blocks_available * blocks_size * 10e-10), 2) AS gigs_disk_space_available, \
                round((blocks * blocks_size * 10e-10), 2) AS gigs_total_disk_space FROM mounts WHERE path = '/' LIMIT 1
                """,
            "disk_encryption_linux": "SELECT de.encrypted, m.path FROM disk_encryption de JOIN mounts m ON m.device_alias = de.name",
            "network_interface_unix": """
                SELECT ia.address, id.mac FROM interface_addresses ia JOIN interface_details id ON id.interface = ia.interface \
                JOIN routes r ON r.interface = ia.interface WHERE (r.destination = '0.0.0.0' OR r.destination = '::') AND r.netmask = 0 \
                AND r.type = 'gateway' AND ((inet_aton(ia.address) IS NOT NULL AND (split(ia.address, '.', 0) = '10' \
                OR (split(ia.address, '.', 0) = '172' AND (CAST(split(ia.address, '.', 1) AS INTEGER) & 0xf0) = 16) \
                OR (split(ia.address, '.', 0) = '192' AND split(ia.address, '.', 1) = '168'))) \
                OR (inet_aton(ia.address) IS NULL AND regex_match(lower(ia.address), '^f[cd][0-9a-f][0-9a-f]:[0-9a-f:]+', 0) IS NOT NULL)) \
                ORDER BY r.metric ASC, inet_aton(ia.address) IS NOT NULL DESC LIMIT 1
                """,
            "users": users,
            "software_linux": """
                WITH u AS (\(users)) \
                SELECT name, version, '' AS extension_id, '' AS browser, 'deb_packages' AS source, '' AS release, '' AS vendor, '' AS arch, '' AS installed_path \
                FROM deb_packages WHERE status LIKE '% ok installed' \
                UNION SELECT package, version, '', '', 'portage_packages', '', '', '', '' FROM portage_packages \
                UNION SELECT name, version, '', '', 'rpm_packages', release, vendor, arch, '' FROM rpm_packages \
                UNION SELECT name, version, '', '', 'npm_packages', '', '', '', path FROM npm_packages \
                UNION SELECT name, version, identifier, browser_type, 'chrome_extensions', '', '', '', path FROM u CROSS JOIN chrome_extensions USING (uid) \
                UNION SELECT name, version, identifier, 'firefox', 'firefox_addons', '', '', '', path FROM u CROSS JOIN firefox_addons USING (uid) \
                UNION SELECT name, version, '', '', 'python_packages', '', '', '', path FROM python_packages
                """,
            "software_vscode_extensions": """
                SELECT name, version, uuid AS extension_id, publisher AS vendor, path AS installed_path FROM (\(users)) CROSS JOIN vscode_extensions USING (uid)
                """,
            "orbit_info": "SELECT * FROM orbit_info",
        ]
        let discovery = [
            "software_vscode_extensions": "SELECT 1 FROM osquery_registry WHERE active = true AND registry = 'table' AND name = 'vscode_extensions'",
            "orbit_info": "SELECT 1 FROM osquery_registry WHERE active = true AND registry = 'table' AND name = 'orbit_info'",
        ]
        let body = try JSONSerialization.data(withJSONObject: ["queries": queries, "discovery": discovery])
        try server.write("queries.json", String(decoding: body, as: UTF8.self))
        let daemon = try start(
            dir, server,
            [
                "--disable_distributed=false", "--distributed_plugin", "tls", "--distributed_interval", "1",
                "--distributed_tls_read_endpoint", "/api/osquery/distributed/read",
                "--distributed_tls_write_endpoint", "/api/osquery/distributed/write",
            ])
        #expect(await waitUntil(120) { !server.records("distributed.jsonl").isEmpty }, "\(stderr(dir))")
        let write = try #require(server.records("distributed.jsonl").first)
        let answers = write["queries"] as? [String: [[String: String]]] ?? [:]
        let statuses = write["statuses"] as? [String: Int] ?? [:]
        for name in queries.keys where name != "orbit_info" {
            #expect(statuses[name] == 0, "\(name): \((write["messages"] as? [String: String])?[name] ?? "")")
        }
        // A table this core lacks is left out by its discovery query, as osquery does.
        #expect(answers["orbit_info"] == nil && statuses["orbit_info"] == nil)
        func row(_ name: String) -> [String: String] { answers[name]?.first ?? [:] }
        for column in ["name", "version", "major", "minor", "patch", "build", "platform", "platform_like", "codename", "arch"] {
            #expect(row("os_version")[column] != nil, "os_version lacks \(column)")
        }
        var system = utsname()
        _ = Glibc.uname(&system)
        let release = withUnsafeBytes(of: system.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #expect(row("os_unix_like")["kernel_version"] == release)
        for column in ["uuid", "instance_id", "version", "config_hash", "config_valid", "build_platform", "start_time", "watcher"] {
            #expect(row("osquery_info")[column] != nil, "osquery_info lacks \(column)")
        }
        for column in ["hostname", "uuid", "cpu_brand", "cpu_physical_cores", "cpu_logical_cores", "physical_memory", "hardware_vendor",
            "hardware_model", "hardware_serial", "computer_name", "local_hostname"]
        {
            #expect(row("system_info")[column] != nil, "system_info lacks \(column)")
        }
        #expect(Int(row("uptime")["total_seconds"] ?? "") ?? 0 > 0)
        #expect(Set((answers["osquery_flags"] ?? []).compactMap { $0["name"] }) == ["distributed_interval", "config_refresh", "logger_tls_period"])
        #expect(Double(row("disk_space_unix")["gigs_total_disk_space"] ?? "") ?? 0 > 0)
        #expect((answers["users"] ?? []).contains { $0["username"] == "root" && $0["uid"] == "0" && $0["groupname"] == "root" })
        // Every installed deb (name, version) is in the inventory, as dpkg-query lists them.
        let dpkg = try await offPool { () -> String in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/dpkg-query")
            p.arguments = ["-W", "-f=${db:Status-Status} ${Package} ${Version}\\n"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        let installed = Set(dpkg.split(separator: "\n").filter { $0.hasPrefix("installed ") }.map { $0.split(separator: " ").dropFirst().joined(separator: " ") })
        let debs = Set((answers["software_linux"] ?? []).filter { $0["source"] == "deb_packages" }.map { "\($0["name"] ?? "") \($0["version"] ?? "")" })
        #expect(!installed.isEmpty && debs == installed, "\(installed.symmetricDifference(debs).prefix(5))")
        await Daemond.stop(daemon)
        await server.stop()
    }

    /// The secret from `--enroll_secret_env`; `--enroll_always` enrolls at every start;
    /// `--disable_reenrollment` keeps a refused key (and says so) instead of enrolling again.
    @Test func secretFromTheEnvironmentEnrollAlwaysAndNoReenrollment() async throws {
        let (dir, server) = try await setUp("enrollflags")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = Daemond.baseFlags(dir) + ["--disable_watchdog"] + server.flags(secretFile: dir + "/secret")
        let env = ["OSQ_TLS_TEST_SECRET": "s3cret"]
        var daemon = try Daemond.start(
            base + ["--enroll_secret_path=", "--enroll_secret_env", "OSQ_TLS_TEST_SECRET"], env: env, stderr: dir + "/stderr")
        #expect(await waitUntil(60) { !results(server, "one").isEmpty }, "\(stderr(dir))")
        await Daemond.stop(daemon)
        daemon = try Daemond.start(
            base + ["--enroll_always", "--disable_reenrollment", "--logger_plugin", "filesystem"], stderr: dir + "/stderr")
        #expect(await waitUntil(60) { server.records("enroll.jsonl").count == 2 }, "\(stderr(dir))")
        try server.write("invalidate", "")
        #expect(await waitUntil(60) { stderr(dir).contains("Error reading config: Request failed: Invalid node key: invalid node key") })
        #expect(server.records("enroll.jsonl").count == 2)
        #expect(await serves(dir))
        await Daemond.stop(daemon)
        await server.stop()
    }
}
