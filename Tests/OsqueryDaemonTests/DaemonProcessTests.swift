import Foundation
import ProtocolFixture
import OsqueryProtocol
import Testing
import ThriftCodec

/// The real osqueryd, as operators run it: temp config, files and sockets.
enum Daemond {
    /// The flags every test daemon gets: everything under `dir`.
    static func baseFlags(_ dir: String) -> [String] {
        [
            "--config_path", dir + "/osquery.conf", "--database_path", dir + "/osquery.db",
            "--logger_path", dir + "/logs", "--pidfile", dir + "/osqueryd.pid", "--extensions_socket", dir + "/osquery.em",
            "--extensions_autoload", dir + "/extensions.load", "--extensions_interval", "1", "--extensions_timeout", "5",
            "--host_identifier", "specified", "--specified_identifier", "test-host",
        ]
    }

    static func start(_ arguments: [String], env: [String: String] = [:], stderr: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
        if let stderr {
            if !FileManager.default.fileExists(atPath: stderr) { _ = FileManager.default.createFile(atPath: stderr, contents: nil) }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: stderr))
            handle.seekToEndOfFile()
            p.standardError = handle
        } else {
            p.standardError = FileHandle.nullDevice
        }
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// SIGTERM, sent directly: Foundation's `terminate()` only signals while
    /// it believes the process runs, and that belief was seen to go stale.
    static func stop(_ p: Process) async {
        signal(p, SIGTERM)
        _ = try? await offPool { p.waitUntilExit() }
    }

    /// Signals `p` only while it is still our osqueryd child: pids are reused
    /// quickly here (pid_max 32768), and a stale pid may be another test's process.
    static func signal(_ p: Process, _ signo: Int32) {
        signalOurChild(p.processIdentifier, named: "osqueryd", signo)
    }

    /// The pids of `p`'s children (the watcher's worker), while `p` is still ours.
    static func children(_ p: Process) -> [Int32] {
        let pid = p.processIdentifier
        guard p.isRunning, let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) else {
            return []
        }
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Result lines of the filesystem logger, parsed.
    static func lines(_ dir: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: dir + "/logs/osqueryd.results.log", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func columns(_ line: [String: Any]) -> [String: String] { (line["columns"] as? [String: String]) ?? [:] }
}

struct DaemonTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Replays event-format result lines of one query into the result set they
/// describe: a counter-0 run is a new baseline, other runs apply removed
/// then added rows. A lost or duplicated line makes the replay diverge.
func replay(_ lines: [[String: Any]], name: String) -> [String: Int] {
    var state: [String: Int] = [:]
    var lastCounter: Int?
    for line in lines where line["name"] as? String == name {
        let counter = line["counter"] as? Int ?? -1
        if counter == 0 && lastCounter != 0 { state = [:] }
        lastCounter = counter
        let key = Daemond.columns(line)["filename"] ?? ""
        switch line["action"] as? String {
        case "added": state[key, default: 0] += 1
        case "removed":
            state[key, default: 0] -= 1
            if state[key] == 0 { state[key] = nil }
        default: break
        }
    }
    return state
}

@Suite(.serialized) struct DaemonProcessTests {
    func setUp(_ tag: String, config: String) throws -> String {
        let dir = try scratchDirectory(tag)
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        try config.replacingOccurrences(of: "$DIR", with: dir).write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        return dir
    }

    static let filesConfig = """
        {
          // whole-line comments are allowed, as in osquery
          "schedule": {
            "files": {"query": "SELECT filename FROM file WHERE directory = '$DIR/watched'", "interval": 1}
          }
        }
        """

    /// The kill test's schedule: a SIGKILL that lands while the query runs would denylist it for
    /// a day (osquery's crash denylisting), and the final run would then never settle the log.
    static let filesConfigNoDenylist = """
        {
          "schedule": {
            "files": {"query": "SELECT filename FROM file WHERE directory = '$DIR/watched'", "interval": 1, "denylist": false}
          }
        }
        """

    func touch(_ dir: String, _ name: String) {
        _ = FileManager.default.createFile(atPath: dir + "/watched/" + name, contents: Data())
    }

    /// Differential results line by line across runs that add and remove rows,
    /// and across a restart (the baseline and counter survive it).
    /// A SIGTERM that is already pending when the worker sets up its signal sources (sent
    /// while blocked, as by a parent starting it) stops it cleanly: unblocked before
    /// libdispatch had installed its handler, it met the default action and killed the worker.
    @Test func sigtermPendingAtStartStopsTheWorkerCleanly() async throws {
        let dir = try setUp("pending-sigterm", config: Self.filesConfig)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [
            "-c",
            """
            import os, signal, sys
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            os.kill(os.getpid(), signal.SIGTERM)
            os.execv(sys.argv[1], sys.argv[1:])
            """,
            try BuiltProducts.path("osqueryd"), "--disable_watchdog", "--ephemeral",
        ] + Daemond.baseFlags(dir)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let exited = await waitUntil(60) { !p.isRunning }
        if !exited { kill(p.processIdentifier, SIGKILL) }
        _ = try await offPool { p.waitUntilExit() }
        #expect(exited)
        #expect(p.terminationReason == .exit)
        #expect(p.terminationStatus == 0)
    }

    @Test func scheduledQueryLogsOnlyWhatChanged() async throws {
        let dir = try setUp("diff", config: Self.filesConfig)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        touch(dir, "a")
        touch(dir, "b")
        var daemon = try Daemond.start(Daemond.baseFlags(dir), stderr: dir + "/stderr")
        #expect(await waitUntil(60) { Daemond.lines(dir).count >= 2 }, "\((try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "")")
        var lines = Daemond.lines(dir)
        #expect(lines.count == 2)
        for line in lines {
            #expect(line["name"] as? String == "files" && line["hostIdentifier"] as? String == "test-host")
            #expect(line["action"] as? String == "added" && line["counter"] as? Int == 0 && line["epoch"] as? Int == 0)
            #expect(line["numerics"] as? Bool == false && line["unixTime"] is Int && line["calendarTime"] is String)
        }
        #expect(Set(lines.map { Daemond.columns($0)["filename"] }) == ["a", "b"])
        // The raw line keeps osquery's key order.
        let raw = try String(contentsOfFile: dir + "/logs/osqueryd.results.log", encoding: .utf8)
        #expect(raw.hasPrefix(#"{"name":"files","hostIdentifier":"test-host","calendarTime":""#))

        // One added, one removed: exactly two more lines, removed first, counter 1.
        touch(dir, "c")
        try FileManager.default.removeItem(atPath: dir + "/watched/a")
        #expect(await waitUntil(60) { Daemond.lines(dir).count >= 4 })
        try await Task.sleep(for: .seconds(2))
        lines = Daemond.lines(dir)
        #expect(lines.count == 4)
        #expect(lines[2]["action"] as? String == "removed" && Daemond.columns(lines[2]) == ["filename": "a"])
        #expect(lines[3]["action"] as? String == "added" && Daemond.columns(lines[3]) == ["filename": "c"])
        #expect(lines[2]["counter"] as? Int == 1 && lines[3]["counter"] as? Int == 1)

        // Restart: nothing changed, nothing logged; the next change continues the counter.
        await Daemond.stop(daemon)
        daemon = try Daemond.start(Daemond.baseFlags(dir), stderr: dir + "/stderr")
        try await Task.sleep(for: .seconds(3))
        #expect(Daemond.lines(dir).count == 4)
        touch(dir, "d")
        #expect(await waitUntil(60) { Daemond.lines(dir).count >= 5 })
        let last = try #require(Daemond.lines(dir).last)
        #expect(last["counter"] as? Int == 2 && Daemond.columns(last) == ["filename": "d"])
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: dir + "/osqueryd.pid"))
    }

    /// SIGKILL at random points of many runs: replaying the log still gives
    /// exactly the final result set (nothing lost, nothing duplicated).
    @Test func killedAtAnyPointTheLogNeverLosesOrDuplicatesALine() async throws {
        let dir = try setUp("kill", config: Self.filesConfigNoDenylist)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<40 { touch(dir, "f\(i)") }
        var present = Set((0..<40).map { "f\($0)" })
        var next = 40
        for round in 0..<8 {
            let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--disable_watchdog"], stderr: dir + "/stderr")
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...2500)))
            // Change some rows while it runs, then kill it without warning.
            for _ in 0..<Int.random(in: 1...15) {
                if Bool.random(), let victim = present.randomElement() {
                    try? FileManager.default.removeItem(atPath: dir + "/watched/" + victim)
                    present.remove(victim)
                } else {
                    touch(dir, "f\(next)")
                    present.insert("f\(next)")
                    next += 1
                }
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...1200)))
            Daemond.signal(daemon, SIGKILL)
            try await offPool { daemon.waitUntilExit() }
            _ = round
        }
        // A clean run settles the final state.
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--disable_watchdog"], stderr: dir + "/stderr")
        let expected = Dictionary(uniqueKeysWithValues: present.map { ($0, 1) })
        let settled = await waitUntil(60) { replay(Daemond.lines(dir), name: "files") == expected }
        await Daemond.stop(daemon)
        let lines = Daemond.lines(dir)
        // On failure, say which rows differ and what the daemons said.
        let got = replay(lines, name: "files")
        let stderr = ((try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "").suffix(3000)
        #expect(
            settled,
            """
            replayed \(got.count) rows, expected \(expected.count); missing \(Set(expected.keys).subtracting(got.keys).sorted()), \
            extra \(Set(got.keys).subtracting(expected.keys).sorted()); stderr: \(stderr)
            """)
        // No line appears twice.
        let raw = try String(contentsOfFile: dir + "/logs/osqueryd.results.log", encoding: .utf8).split(separator: "\n")
        #expect(Set(raw).count == raw.count)
    }

    /// The watchdog stops a worker whose query grows past the memory limit;
    /// the new worker denylists that query (osquery_schedule shows it).
    @Test func watchdogStopsAWorkerOverItsMemoryLimitAndDenylistsTheQuery() async throws {
        let config = """
            {"schedule": {
              "hog": {"query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) SELECT length(group_concat(hex(randomblob(16)))) AS n FROM c", "interval": 1},
              "small": {"query": "SELECT 1 AS one", "interval": 1}
            }}
            """
        let dir = try setUp("watchdog", config: config)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try Daemond.start(
            Daemond.baseFlags(dir) + [
                "--watchdog_memory_limit", "50", "--watchdog_delay", "0",
                // The hog's ~1 GB string needs SQLite's own maximum length, not the wire-sized default.
                "--sql_max_length", "1000000000",
            ], stderr: dir + "/stderr")
        defer { Daemond.signal(daemon, SIGKILL) }
        let socket = dir + "/osquery.em"
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        #expect(await waitUntil(60) { stderr().contains("memory") }, "\(stderr())")
        let denylisted = await waitUntil(40) {
            await coreQuery(socket, "SELECT name, denylisted FROM osquery_schedule WHERE name = 'hog'") == [["name": "hog", "denylisted": "1"]]
        }
        #expect(denylisted, "\(stderr())")
        // The worker keeps running the other query.
        #expect(await waitUntil(60) { Daemond.lines(dir).contains { $0["name"] as? String == "small" } })
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
    }

    /// Results reach a logger extension written with PyPI `osquery`, and a
    /// config served by that extension schedules the query.
    @Test func resultsReachAPyPIOsqueryLoggerExtension() async throws {
        for path in [Peers.pythonExtension, Peers.repo + "/.venv/bin/python3"] where !FileManager.default.fileExists(atPath: path) {
            throw DaemonTestError("\(path) is missing: run scripts/install-test-deps.sh && scripts/build-peers.sh")
        }
        let dir = try setUp("pylogger", config: Self.filesConfig)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        touch(dir, "one")
        try (Peers.pythonExtension + "\n").write(toFile: dir + "/extensions.load", atomically: true, encoding: .utf8)
        let record = dir + "/record.jsonl"
        let daemon = try Daemond.start(
            Daemond.baseFlags(dir) + ["--logger_plugin", "py_logger", "--disable_watchdog"], env: ["OSQ_PY_EXT_RECORD": record],
            stderr: dir + "/stderr")
        func requests() -> [[String: Any]] {
            ((try? String(contentsOfFile: record, encoding: .utf8)) ?? "").split(separator: "\n")
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["plugin"] as? String == "py_logger" }.compactMap { $0["request"] as? [String: Any] }
        }
        let got = await waitUntil(30) { requests().contains { $0["category"] as? String == "event" } }
        #expect(got, "\((try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "")")
        let event = try #require(requests().first { $0["category"] as? String == "event" })
        let line = try #require(try JSONSerialization.jsonObject(with: Data((event["string"] as? String ?? "").utf8)) as? [String: Any])
        #expect(line["name"] as? String == "files" && Daemond.columns(line) == ["filename": "one"] && line["action"] as? String == "added")
        await Daemond.stop(daemon)
    }

    /// The same through a logger written with our SDK (Examples/JSONLogger), with the
    /// schedule coming from a config extension written with our SDK (Examples/ConfigExtension).
    @Test func resultsReachAnSDKLoggerAndTheConfigComesFromAnSDKExtension() async throws {
        let dir = try setUp("sdklogger", config: "{}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logger = dir + "/jsonl.ext", config = dir + "/config.ext"
        try await copyExecutable(try BuiltProducts.path("example-jsonl-logger"), to: logger)
        try await copyExecutable(try BuiltProducts.path("example-config"), to: config)
        try "\(logger)\n\(config)\n".write(toFile: dir + "/extensions.load", atomically: true, encoding: .utf8)
        let out = dir + "/out.jsonl"
        let daemon = try Daemond.start(
            Daemond.baseFlags(dir) + ["--logger_plugin", "jsonl", "--config_plugin", "swift_static", "--disable_watchdog"],
            env: ["JSONL_LOGGER_PATH": out], stderr: dir + "/stderr")
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        let logged = await waitUntil(60) {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("\"action\":\"added\"")
        }
        #expect(logged, "\(stderr())\n\((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        await Daemond.stop(daemon)
    }

    /// SIGHUP reloads the config: a query added to the file starts running;
    /// a broken file is reported and the last good config stays in force.
    @Test func sighupReloadsTheConfigAndABadOneKeepsTheLastGood() async throws {
        let dir = try setUp("hup", config: #"{"schedule": {"first": {"query": "SELECT 1 AS one", "interval": 1}}}"#)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--disable_watchdog"], stderr: dir + "/stderr")
        let names = { Set(Daemond.lines(dir).compactMap { $0["name"] as? String }) }
        #expect(await waitUntil(60) { names().contains("first") })
        try #"{"schedule": {"first": {"query": "SELECT 1 AS one", "interval": 1}, "second": {"query": "SELECT 2 AS two", "interval": 1}}}"#
            .write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        Daemond.signal(daemon, SIGHUP)
        #expect(await waitUntil(60) { names().contains("second") })
        try "{ not json".write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        Daemond.signal(daemon, SIGHUP)
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        #expect(await waitUntil(60) { stderr().contains("Error reading config") }, "\(stderr())")
        // Still running the last good schedule.
        let status = await coreQuery(dir + "/osquery.em", "SELECT name FROM osquery_schedule ORDER BY name")
        #expect(status == [["name": "first"], ["name": "second"]])
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
    }

    /// The identifier is resolved when lines are written, after the config
    /// is loaded, so its options name it (osquery's getHostIdentifier).
    @Test func hostIdentifierFromTheConfigOptionsNamesResultLines() async throws {
        let config = #"""
            {"options": {"host_identifier": "specified", "specified_identifier": "box-7"},
             "schedule": {"one": {"query": "SELECT 1 AS one", "interval": 1}}}
            """#
        let dir = try setUp("hostid", config: config)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The base flags without their own identifier.
        var flags = Daemond.baseFlags(dir)
        for name in ["--host_identifier", "--specified_identifier"] {
            if let i = flags.firstIndex(of: name) { flags.removeSubrange(i...(i + 1)) }
        }
        let daemon = try Daemond.start(flags + ["--disable_watchdog"], stderr: dir + "/stderr")
        defer { Daemond.signal(daemon, SIGKILL) }
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        #expect(await waitUntil(30) { Daemond.lines(dir).contains { $0["name"] as? String == "one" } }, "\(stderr())")
        let hosts = Set(Daemond.lines(dir).compactMap { $0["hostIdentifier"] as? String })
        #expect(hosts == ["box-7"], "\(hosts)")
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
    }

    /// enable_foreign is an ordinary flag in osquery: set in the config's
    /// options it registers the foreign tables too.
    @Test func enableForeignFromTheConfigOptions() async throws {
        let dir = try setUp("foreign", config: #"{"options": {"enable_foreign": true}}"#)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--disable_watchdog"], stderr: dir + "/stderr")
        defer { Daemond.signal(daemon, SIGKILL) }
        let socket = dir + "/osquery.em"
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        #expect(await waitUntil(30) { await coreQuery(socket, "SELECT count(1) AS n FROM launchd") == [["n": "0"]] }, "\(stderr())")
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
    }

    /// A SIGINT to the worker alone ends it cleanly (exit 0); as osquery's,
    /// the watcher starts a new worker and keeps running.
    @Test func theWatcherRespawnsAWorkerThatExitedCleanly() async throws {
        let dir = try setUp("respawn", config: #"{"schedule": {"one": {"query": "SELECT 1 AS one", "interval": 1}}}"#)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A quick respawn waits RESPAWN_DELAY + 2^n seconds; capped at 1 here.
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--watchdog_max_delay", "1"], stderr: dir + "/stderr")
        defer { Daemond.signal(daemon, SIGKILL) }
        let socket = dir + "/osquery.em"
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        #expect(await waitUntil(30) { await coreQuery(socket, "SELECT 1 AS one") != nil }, "\(stderr())")
        let first = Daemond.children(daemon)
        try #require(first.count == 1, "\(first)")
        kill(first[0], SIGINT)
        let replaced = await waitUntil(30) {
            let now = Daemond.children(daemon)
            return now.count == 1 && now[0] != first[0]
        }
        #expect(replaced, "\(stderr())")
        #expect(daemon.isRunning)
        #expect(await waitUntil(30) { await coreQuery(socket, "SELECT 1 AS one") == [["one": "1"]] }, "\(stderr())")
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
    }

    /// A worker that cannot run (exit 78, here a logger plugin that does not
    /// exist) ends the watcher with 78 and is not started again.
    @Test func aWorkerExiting78EndsTheWatcherWith78() async throws {
        let dir = try setUp("respawn78", config: Self.filesConfig)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--logger_plugin", "no_such_logger"], stderr: dir + "/stderr")
        defer { Daemond.signal(daemon, SIGKILL) }
        try await offPool { daemon.waitUntilExit() }
        #expect(daemon.terminationStatus == 78)
        let stderr = (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? ""
        #expect(stderr.components(separatedBy: "Cannot activate no_such_logger logger plugin").count == 2, "\(stderr)")
    }

    /// --config_check: 0 for a good config, 1 and the file/line for a bad one.
    @Test func configCheckExitCodes() async throws {
        let dir = try setUp("check", config: Self.filesConfig)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try Daemond.start(Daemond.baseFlags(dir) + ["--config_check"])
        try await offPool { good.waitUntilExit() }
        #expect(good.terminationStatus == 0)
        try "{\n  \"schedule\": {\n    \"x\": {\"query\": \"select 1\", \"interval\": 1,}\n  }\n}\n"
            .write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let bad = try Daemond.start(Daemond.baseFlags(dir) + ["--config_check"], stderr: dir + "/check.err")
        try await offPool { bad.waitUntilExit() }
        #expect(bad.terminationStatus == 1)
        let message = (try? String(contentsOfFile: dir + "/check.err", encoding: .utf8)) ?? ""
        #expect(message.contains("osquery.conf") && message.contains("3"), "\(message)")
    }
}
