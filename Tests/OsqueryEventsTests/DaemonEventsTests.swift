import Foundation
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// The real osqueryd with FIM on and `SELECT … FROM file_events` scheduled.
enum FIMDaemon {
    static func flags(_ dir: String) -> [String] {
        [
            "--config_path", dir + "/osquery.conf", "--database_path", dir + "/osquery.db", "--logger_path", dir + "/logs",
            "--pidfile", dir + "/osqueryd.pid", "--extensions_socket", dir + "/osquery.em", "--extensions_autoload",
            dir + "/extensions.load", "--extensions_interval", "1", "--disable_watchdog", "--enable_file_events",
            "--host_identifier", "specified", "--specified_identifier", "test-host",
        ]
    }

    static func setUp(_ tag: String) throws -> String {
        let dir = try scratchDirectory("fimd-" + tag)
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let config = """
            {"schedule": {"fim": {"query": "SELECT target_path, action, eid FROM file_events WHERE action = 'CREATED'", "interval": 1}},
             "file_paths": {"test": ["\(dir)/watched/%%"]}}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        return dir
    }

    /// osqueryd with `arguments` (`flags(dir)` by default), its stderr appended to `dir/stderr`.
    static func start(_ dir: String, arguments: [String]? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
        p.arguments = arguments ?? flags(dir)
        let path = dir + "/stderr"
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
        p.standardError = handle
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Signals `p` only while it is still our osqueryd child (pids are reused quickly).
    static func signal(_ p: Process, _ signo: Int32) {
        signalOurChild(p.processIdentifier, named: "osqueryd", signo)
    }

    /// (target_path → how many times its CREATED was logged) from the results log.
    static func logged(_ dir: String) -> [String: Int] {
        loggedAdded(dir) { name, columns in name == "fim" ? columns["target_path"] : nil }
    }
}

@Suite struct DaemonEventsTests {
    /// Each buffered event is logged exactly once by the scheduled query, across clean restarts
    /// and SIGKILLs that land during a burst of file creations.
    @Test func eachBufferedEventIsLoggedOnceAcrossRestartsAndKills() async throws {
        let dir = try FIMDaemon.setUp("once")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var buffered: [String] = []
        var next = 0
        for round in 0..<4 {
            let daemon = try FIMDaemon.start(dir)
            let socket = dir + "/osquery.em"
            #expect(await waitUntil(60) { await coreQuery(socket, "SELECT 1") != nil })
            #expect(await waitUntil(60) {
                (await coreQuery(socket, "SELECT active FROM osquery_events WHERE name = 'inotify'"))?.first?["active"] == "1"
            })
            // A burst; a time-constrained read (not optimized) shows when its events are in the store.
            var names: [String] = []
            for _ in 0..<30 {
                let path = "\(dir)/watched/f\(next)"
                write(path, "x")
                names.append(path)
                next += 1
            }
            let stored = await waitUntil(60) {
                let rows = await coreQuery(socket, "SELECT target_path FROM file_events WHERE time > 0 AND action = 'CREATED'") ?? []
                return Set(names).isSubset(of: Set(rows.compactMap { $0["target_path"] }))
            }
            #expect(stored)
            buffered += names
            // The schedule logs some of them before the daemon goes: the next one must not repeat them.
            #expect(await waitUntil(60) { FIMDaemon.logged(dir)[names[0]] != nil })
            // More files while it is killed: these may or may not be buffered; they must never repeat.
            for _ in 0..<20 {
                write("\(dir)/watched/late\(next)", "y")
                next += 1
            }
            if round % 2 == 0 {
                FIMDaemon.signal(daemon, SIGKILL)
            } else {
                FIMDaemon.signal(daemon, SIGTERM)
            }
            try await offPool { daemon.waitUntilExit() }
        }
        // A last run logs whatever the killed ones left buffered.
        let daemon = try FIMDaemon.start(dir)
        defer { FIMDaemon.signal(daemon, SIGKILL) }
        let all = await waitUntil(60) {
            let logged = FIMDaemon.logged(dir)
            return buffered.allSatisfy { logged[$0] != nil }
        }
        FIMDaemon.signal(daemon, SIGTERM)
        try await offPool { daemon.waitUntilExit() }
        let logged = FIMDaemon.logged(dir)
        let stderr = ((try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "").suffix(2000)
        #expect(all, "missing \(buffered.filter { logged[$0] == nil }.prefix(10)); stderr: \(stderr)")
        #expect(logged.filter { $0.value > 1 }.isEmpty, "logged more than once: \(logged.filter { $0.value > 1 }.keys.sorted().prefix(10))")
    }
}

/// Issue 19's tables under the real osqueryd: config `yara` keys reach yara_events, the daemon
/// creates the syslog pipe, and each scheduled query logs each event once across a restart.
@Suite struct DaemonIssue19EventsTests {
    /// (query name, key column value) → how many times it was logged as added.
    static func logged(_ dir: String) -> [String: Int] {
        loggedAdded(dir) { name, columns in columns["key"].map { name + " " + $0 } }
    }

    @Test func yaraSyslogAndHardwareEventsAreLoggedOnceAcrossARestart() async throws {
        let dir = try FIMDaemon.setUp("issue19")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        write(dir + "/rules.yar", yaraRuleText)
        let config = """
            {"schedule": {
               "yara": {"query": "SELECT target_path || ' ' || eid AS key, matches FROM yara_events", "interval": 1},
               "syslog": {"query": "SELECT message AS key, tag FROM syslog_events", "interval": 1},
               "hw": {"query": "SELECT action || ' ' || path AS key FROM hardware_events", "interval": 1}},
             "file_paths": {"watched": ["\(dir)/watched/%"]},
             "yara": {"signatures": {"g1": ["\(dir)/rules.yar"]}, "file_paths": {"watched": ["g1"]}}}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let pipe = dir + "/syslog_pipe"
        try "--enable_syslog\n--syslog_pipe_path=\(pipe)\n".write(toFile: dir + "/flags", atomically: true, encoding: .utf8)
        var expected: [String] = []
        for round in 0..<2 {
            let daemon = Process()
            daemon.executableURL = URL(fileURLWithPath: try BuiltProducts.path("osqueryd"))
            daemon.arguments = FIMDaemon.flags(dir) + ["--flagfile", dir + "/flags"]
            daemon.standardOutput = FileHandle.nullDevice
            daemon.standardError = FileHandle.nullDevice
            try daemon.run()
            let socket = dir + "/osquery.em"
            #expect(await waitUntil(60) {
                (await coreQuery(socket, "SELECT name FROM osquery_events WHERE active = 1 AND type = 'publisher'"))?
                    .compactMap { $0["name"] }.contains("syslog") == true
            })
            let file = "\(dir)/watched/infected\(round)"
            write(file, "osquery-yara-marker \(round)")
            writeToPipe(pipe, csvLine("osqd", "round \(round)"))
            expected += ["yara " + file, "syslog round \(round)"]
            if let device = ueventDevice {
                trigger(device.uevent, "change")
                expected.append("hw change \(device.node)")
            }
            // One write is several inotify events (CREATED, UPDATED): yara rows are keyed by eid.
            #expect(
                await waitUntil(60) {
                    let l = Self.logged(dir).keys
                    return expected.allSatisfy { e in l.contains { $0 == e || $0.hasPrefix(e + " ") } }
                }, "\(Self.logged(dir))")
            FIMDaemon.signal(daemon, SIGTERM)
            try await offPool { daemon.waitUntilExit() }
        }
        let logged = Self.logged(dir)
        let repeated = logged.filter { ($0.key.hasPrefix("yara ") || $0.key.hasPrefix("syslog ")) && $0.value != 1 }
        #expect(repeated.isEmpty, "logged more than once: \(repeated)")
    }
}
