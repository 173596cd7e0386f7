import Foundation
import OsqueryDaemon
import OsqueryEvents
import OsqueryExtension
import ProtocolFixture
import Synchronization
import Testing

/// Issue 17: an SDK event table (Examples/KernelLog, reading a file the test writes in
/// /dev/kmsg's record format) served by a real extension process to the real osqueryd, with
/// `SELECT … FROM kernel_log_events` scheduled.
@Suite struct ExtensionEventsDaemonTests {
    static func record(_ seq: Int) -> String { "6,\(seq),\(seq * 1000),-;line \(seq)\n" }

    static func append(_ path: String, _ seqs: Range<Int>) {
        let text = seqs.map(record).joined()
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(Data(text.utf8))
        try? handle.close()
    }

    static func startExtension(_ dir: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try BuiltProducts.path("example-kernel-log"))
        p.arguments = ["--socket", dir + "/osquery.em", "--timeout", "30", "--interval", "1"]
        p.environment = ProcessInfo.processInfo.environment.merging(
            ["KERNEL_LOG_PATH": dir + "/kmsg", "KERNEL_LOG_STATE": dir + "/state"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/extension.stderr"))
        log.seekToEndOfFile()
        p.standardError = log
        try p.run()
        return p
    }

    /// (sequence → how many times the scheduled query logged it).
    static func logged(_ dir: String) -> [Int: Int] {
        loggedAdded(dir) { name, columns in name == "kmsg" ? columns["sequence"].flatMap { Int($0) } : nil }
    }

    /// A new extension has `--extensions_timeout` to answer its first ping: 30 s here, since the
    /// test process (where the stubborn extension lives) and the machine are busy with the other
    /// suites, and the default 3 s could drop it before it serves. A killed extension's socket
    /// refuses at once, so it is still removed within about a second. `--verbose` puts
    /// registrations and removals in the daemon's stderr, for the failure messages.
    static func daemonFlags(_ dir: String) -> [String] { FIMDaemon.flags(dir) + ["--extensions_timeout", "30", "--verbose"] }

    /// The end of the daemon's stderr without the lines every run repeats.
    static func daemonLog(_ dir: String) -> Substring {
        let text = (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? ""
        let noise = ["no such table", "Executing scheduled query", "connection refused"]
        return text.split(separator: "\n").filter { line in !noise.contains { line.contains($0) } }
            .joined(separator: "\n").suffix(2000)
    }

    /// osqueryd in `dir` scheduling `SELECT sequence, message FROM kernel_log_events` every
    /// second, with an empty `kmsg` for the extension to read; returns once its socket answers.
    static func startDaemon(_ dir: String) async throws -> Process {
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let config = """
            {"schedule": {"kmsg": {"query": "SELECT sequence, message FROM kernel_log_events", "interval": 1}}}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: dir + "/kmsg", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/extension.stderr", contents: nil)
        let daemon = try FIMDaemon.start(dir, arguments: daemonFlags(dir))
        let answering = await waitUntil(60) { await coreQuery(dir + "/osquery.em", "SELECT 1") != nil }
        #expect(answering)
        return daemon
    }

    /// Each event is logged once, across a SIGKILL of the extension (its buffered, unlogged
    /// events come back from its state file; the replayed records are skipped by their
    /// sequence) and a clean restart; the daemon keeps the events_optimize mark of the query.
    @Test func eachEventIsLoggedOnceAcrossExtensionRestarts() async throws {
        let dir = try scratchDirectory("sdkev")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try await Self.startDaemon(dir)
        defer { FIMDaemon.signal(daemon, SIGKILL) }

        var total = 0
        for round in 0..<3 {
            let ext = try Self.startExtension(dir)
            Self.append(dir + "/kmsg", total..<(total + 20))
            total += 20
            let upTo = total
            let seen = await waitUntil(60) { (0..<upTo).allSatisfy { Self.logged(dir)[$0] != nil } }
            #expect(seen, "round \(round): \(Self.logged(dir).count) of \(upTo) logged")
            // Records the extension may read (and buffer) but the daemon has not logged yet.
            Self.append(dir + "/kmsg", total..<(total + 5))
            total += 5
            signalOurChild(ext.processIdentifier, named: "example-kernel", round == 1 ? SIGTERM : SIGKILL)
            try await offPool { ext.waitUntilExit() }
        }
        let ext = try Self.startExtension(dir)
        defer { signalOurChild(ext.processIdentifier, named: "example-kernel", SIGKILL) }
        let upTo = total
        let all = await waitUntil(60) { (0..<upTo).allSatisfy { Self.logged(dir)[$0] != nil } }
        let logged = Self.logged(dir)
        let stderr = Self.daemonLog(dir)
            + ((try? String(contentsOfFile: dir + "/extension.stderr", encoding: .utf8)) ?? "").suffix(1500)
        #expect(all, "missing \((0..<upTo).filter { logged[$0] == nil }); stderr: \(stderr)")
        #expect(logged.filter { $0.value > 1 }.isEmpty, "logged more than once: \(logged.filter { $0.value > 1 }.keys.sorted())")

        // The daemon stored the mark of the last event it logged (the extension's eid).
        FIMDaemon.signal(daemon, SIGTERM)
        try await offPool { daemon.waitUntilExit() }
        let store = try DaemonStore.open(path: dir + "/osquery.db")
        let mark = try store.get(DaemonStore.Domain.events, EventQueryScope.eidKey("kmsg")).flatMap { UInt64($0) }
        #expect(mark == UInt64(total))
    }

    /// Hostile: the extension loses its state file and restarts (the kernel log also starts
    /// over, as after a reboot): its eids start again at 1, below the daemon's mark. Its new
    /// epoch (route info) makes the daemon read its events from the start, so the new records
    /// are logged, once each, and the stored mark and epoch are the new run's.
    @Test func eventsAfterALostStateFileAreLogged() async throws {
        let dir = try scratchDirectory("sdkev-epoch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try await Self.startDaemon(dir)
        defer { FIMDaemon.signal(daemon, SIGKILL) }

        let first = try Self.startExtension(dir)
        Self.append(dir + "/kmsg", 0..<20)
        #expect(await waitUntil(60) { Self.logged(dir).count == 20 })
        signalOurChild(first.processIdentifier, named: "example-kernel", SIGKILL)
        try await offPool { first.waitUntilExit() }

        try FileManager.default.removeItem(atPath: dir + "/state/kernel_log_events.events")
        _ = FileManager.default.createFile(atPath: dir + "/kmsg", contents: nil)
        let second = try Self.startExtension(dir)
        defer { signalOurChild(second.processIdentifier, named: "example-kernel", SIGKILL) }
        Self.append(dir + "/kmsg", 100..<105)
        let all = await waitUntil(60) { (100..<105).allSatisfy { Self.logged(dir)[$0] != nil } }
        let logged = Self.logged(dir)
        let stderr = Self.daemonLog(dir)
            + ((try? String(contentsOfFile: dir + "/extension.stderr", encoding: .utf8)) ?? "").suffix(1500)
        #expect(all, "logged: \(logged.keys.sorted()); stderr: \(stderr)")
        #expect(logged.filter { $0.value > 1 }.isEmpty, "logged more than once: \(logged.filter { $0.value > 1 }.keys.sorted())")

        FIMDaemon.signal(daemon, SIGTERM)
        try await offPool { daemon.waitUntilExit() }
        let store = try DaemonStore.open(path: dir + "/osquery.db")
        #expect(try store.get(DaemonStore.Domain.events, EventQueryScope.eidKey("kmsg")).flatMap { UInt64($0) } == 5)
        let epochs = try store.get(DaemonStore.Domain.events, EventQueryScope.epochKey("kmsg")).map(EventQueryScope.decodeEpochs)
        #expect(epochs?["kernel_log_events"] != nil)
    }

    /// Hostile: an extension's event table that ignores the `eid > mark` constraint (a plain
    /// table with the event_based attribute, from any SDK) answers every run with the same
    /// events; the daemon drops the ones it logged instead of logging them again each run.
    @Test func eventsAnExtensionSendsAgainAreNotLoggedTwice() async throws {
        // The extension registers and moves to its socket from this task: on a thread of its
        // own, not behind the other suites' work on the cooperative pool.
        try await onOwnThread { try await stubbornExtensionRun() }
    }

    func stubbornExtensionRun() async throws {
        let dir = try scratchDirectory("sdkev-ignore")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let config = """
            {"schedule": {"kmsg": {"query": "SELECT sequence FROM stubborn_events", "interval": 1}}}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let daemon = try FIMDaemon.start(dir, arguments: Self.daemonFlags(dir))
        defer { FIMDaemon.signal(daemon, SIGKILL) }
        let socket = dir + "/osquery.em"
        #expect(await waitUntil(60) { await coreQuery(socket, "SELECT 1") != nil })
        let served = Mutex(3)
        let stubborn = Table(schema: TableSchema(
            name: "stubborn_events", columns: [.bigint("sequence"), .bigint("time"), .bigint("eid", .hidden)], attributes: .eventBased
        )) { _ in
            let count = served.withLock { $0 }
            return (1...count).map { ["sequence": $0, "time": 1_700_000_000, "eid": $0] as Row }
        }
        var configuration = ExtensionConfiguration()
        configuration.strikeLimit = 1_000
        let ext = Extension("stubborn", plugins: [stubborn], configuration: configuration)
        try await ext.start(options: try ExtensionOptions.parse(["--socket", socket, "--interval", "0.5", "--timeout", "30"]))
        #expect(await waitUntil(60) { Self.logged(dir).count == 3 }, "daemon: \(Self.daemonLog(dir))")
        served.withLock { $0 = 5 }
        #expect(await waitUntil(60) { Self.logged(dir).count == 5 }, "daemon: \(Self.daemonLog(dir))")
        // More runs with nothing new.
        let runs = await coreQuery(socket, "SELECT executions FROM osquery_schedule WHERE name = 'kmsg'")?.first?["executions"]
        #expect(await waitUntil(60) {
            let now = await coreQuery(socket, "SELECT executions FROM osquery_schedule WHERE name = 'kmsg'")?.first?["executions"]
            return (now.flatMap { Int($0) } ?? 0) >= (runs.flatMap { Int($0) } ?? 0) + 3
        })
        ext.stop()
        let logged = Self.logged(dir)
        #expect(logged == [1: 1, 2: 1, 3: 1, 4: 1, 5: 1])
    }
}
