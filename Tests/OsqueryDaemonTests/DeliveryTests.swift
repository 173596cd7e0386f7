import Foundation
import OsqueryEngine
import OsqueryExtension
import OsqueryManager
import ProtocolFixture
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

/// A logger plugin served by an SDK extension whose behaviour the test sets:
/// take every line, fail, take a few then fail, or hang until a gate opens.
final class ScriptedLogger: Sendable {
    enum Mode: Sendable {
        case take
        case fail
        case takeThenFail(Int)
        case hang(Gate)
    }

    struct Refused: Error {}

    let mode = Mutex<Mode>(.take)
    let received = Mutex<[LogRecord]>([])

    var plugin: OsqueryExtension.LoggerPlugin {
        OsqueryExtension.LoggerPlugin("test_logger", features: []) { [self] record in
            if case .initialize = record { return }
            let gate = try mode.withLock { m -> Gate? in
                switch m {
                case .take: return nil
                case .fail: throw Refused()
                case .takeThenFail(let n):
                    guard n > 0 else { throw Refused() }
                    m = .takeThenFail(n - 1)
                    return nil
                case .hang(let g): return g
                }
            }
            if let gate { await gate.wait() }
            received.withLock { $0.append(record) }
        }
    }

    var results: [String] {
        received.withLock { $0 }.compactMap {
            if case .result(let l) = $0 { return l }
            return nil
        }
    }

    var snapshots: [String] {
        received.withLock { $0 }.compactMap {
            if case .snapshot(let l) = $0 { return l }
            return nil
        }
    }
}

extension ExtensionConfiguration {
    /// An SDK extension served in the test process beside its core: both share the process's
    /// cooperative pool with every other suite, so a few liveness checks that time out while
    /// the pool is busy must not be taken for the core's death (these tests are not about it).
    static var inProcess: ExtensionConfiguration {
        var c = ExtensionConfiguration()
        c.strikeLimit = 1_000
        return c
    }
}

/// The core's extension manager and an extension serving `test_logger`, in
/// process, with a pipeline logging to `test_logger,filesystem`.
struct ExtensionLoggerRig {
    let dir: ResultsTestDir
    let manager: ExtensionManager
    let ext: Extension
    let logger: ScriptedLogger
    let pipeline: ResultPipeline

    static func start(_ tag: String, callTimeout: Duration) async throws -> ExtensionLoggerRig {
        let dir = ResultsTestDir(tag)
        // Short: the socket path must fit in sun_path.
        let socket = "/tmp/osq-dl-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).em"
        let flags = try resultFlags([
            "extensions_interval": "0.5", "extensions_timeout": "30", "logger_plugin": "test_logger,filesystem",
            "logger_path": dir.file("logs"), "logger_retry_max_seconds": "1",
        ])
        let registry = PluginRegistry()
        let manager = try await ExtensionManager.start(socketPath: socket, registry: registry, flags: flags, queryThreads: 1)
        let logger = ScriptedLogger()
        let ext = Extension("logger_ext", plugins: [logger.plugin], configuration: .inProcess)
        try await ext.start(options: try ExtensionOptions.parse(["--socket", socket, "--interval", "0.5", "--timeout", "30"]))
        let caller = ExtensionCaller(managerSocket: socket, timeout: callTimeout)
        let loggers = try LoggerSet.make(flags: flags, registry: registry, caller: caller)
        let store = try DaemonStore.open(path: dir.file("db/osquery.db"))
        let pipeline = ResultPipeline(store: store, loggers: loggers, flags: flags)
        return ExtensionLoggerRig(dir: dir, manager: manager, ext: ext, logger: logger, pipeline: pipeline)
    }

    func stop() async {
        pipeline.stop()
        ext.stop()
        _ = await ext.waitUntilStopped()
        await manager.stop()
        dir.remove()
    }

    func fileLines(_ name: String) -> [String] { dir.read("logs/" + name).split(separator: "\n").map(String.init) }
}

@Suite struct DeliveryTests {
    let q = ScheduledQuery(name: "q", sql: "select * from t", interval: 10)
    let s = ScheduledQuery(name: "s", sql: "select * from u", interval: 10, snapshot: true)

    /// Item 11: runs recorded while an extension logger fails all reach the
    /// results file at once, and the logger gets every line exactly once
    /// after it recovers: it stopped in the middle of a run, and resumes there.
    @Test func aFailingExtensionLoggerGetsEveryLineOnceAfterItRecovers() async throws {
        let rig = try await ExtensionLoggerRig.start("failing", callTimeout: .seconds(10))
        // The first run (2 lines), its snapshot (1) and one line of the second
        // run are taken, then failures: the logger stops inside an entry.
        rig.logger.mode.withLock { $0 = .takeThenFail(4) }
        let (q, s, pipeline) = (q, s, rig.pipeline)
        for i in 0..<5 {
            let filed = try await offPool { () -> Bool in
                _ = try pipeline.record(q, QueryResults(rows: [["a": "\(i)"], ["a": "\(i + 100)"]]), context: context(UInt64(100 + i)))
                _ = try pipeline.record(s, QueryResults(rows: [["b": "\(i)"]]), context: context(UInt64(100 + i)))
                return try pipeline.drain(only: ["filesystem"])
            }
            #expect(filed, "run \(i)")
        }
        // 2 lines for the first run, 2 removed and 2 added for each of the others.
        #expect(rig.fileLines("osqueryd.results.log").count == 18)
        #expect(rig.fileLines("osqueryd.snapshots.log").count == 5)
        #expect(await waitUntil(60) { pipeline.failure(of: "test_logger") != nil })
        #expect(try pipeline.pendingCount() > 0)

        rig.logger.mode.withLock { $0 = .take }
        #expect(try await offPool { try pipeline.drain() })
        #expect(pipeline.failure(of: "test_logger") == nil)
        #expect(rig.logger.results == rig.fileLines("osqueryd.results.log"))
        #expect(rig.logger.snapshots == rig.fileLines("osqueryd.snapshots.log"))
        #expect(try pipeline.pendingCount() == 0)
        await rig.stop()
    }

    /// Item 11: a logger that never answers holds back only itself: `record`
    /// returns (the scheduler's next run is not delayed) and the results file
    /// gets every run; once the logger answers it gets each line once.
    @Test func aHungLoggerDelaysNeitherTheFilesystemLoggerNorTheNextRun() async throws {
        let rig = try await ExtensionLoggerRig.start("hung", callTimeout: .seconds(120))
        let gate = Gate()
        rig.logger.mode.withLock { $0 = .hang(gate) }
        let (q, pipeline) = (q, rig.pipeline)
        for i in 0..<3 {
            _ = try await offPool {
                try pipeline.record(q, QueryResults(rows: [["a": "\(i)"]]), context: context(UInt64(100 + i)))
            }
        }
        // First run 1 line, then 1 removed and 1 added per run.
        #expect(await waitUntil(60) { rig.fileLines("osqueryd.results.log").count == 5 })
        #expect(rig.logger.results.isEmpty)
        gate.open()
        #expect(try await offPool { try pipeline.drain() })
        #expect(rig.logger.results == rig.fileLines("osqueryd.results.log"))
        await rig.stop()
    }

    /// Item 12: a store read error is reported and nothing is delivered on a
    /// guess. Here the recorded offset of an entry already appended cannot be
    /// read; taking it for "not written yet" would append the lines again.
    @Test func aStoreReadErrorIsReportedAndNothingIsAppendedTwice() throws {
        let rig = try PipelineRig("readerror", ["logger_retry_max_seconds": "1"])
        defer { rig.dir.remove() }
        var pipeline: ResultPipeline? = try rig.open()
        pipeline!.setFaultHook { (at: ResultPipeline.Step) throws(DaemonError) in
            if at == .afterAppend { throw DaemonError("killed after the append") }
        }
        _ = try pipeline!.record(q, QueryResults(rows: [["a": "1"], ["a": "2"]]), context: context(100))
        #expect(throws: DaemonError.self) { try pipeline!.drain() }
        pipeline = nil
        let written = rig.results
        #expect(written.split(separator: "\n").count == 2)

        // The offset, zero-padded: the same number, longer than the entry.
        var entryBytes = 0
        do {
            let store = try DaemonStore.open(path: rig.dir.file("db/osquery.db"))
            let offsetKey = ResultPipeline.key(ResultPipeline.offsetPrefix, 1)
            let offset = try #require(try store.get("logs", offsetKey))
            let entry = try #require(try store.get("logs", ResultPipeline.key(ResultPipeline.outboxPrefix, 1)))
            entryBytes = entry.utf8.count
            try store.put("logs", offsetKey, String(repeating: "0", count: entryBytes + 100) + offset)
        }
        pipeline = try rig.open()
        pipeline!.store.limitValueLength(Int32(entryBytes + 50))
        pipeline!.recover()
        let deadline = Date().addingTimeInterval(60)
        while pipeline!.failure(of: "filesystem") == nil, Date() < deadline { usleep(20_000) }
        let failure = pipeline!.failure(of: "filesystem") ?? ""
        #expect(failure.contains("too big"), "\(failure)")
        #expect(rig.results == written)
        #expect(try pipeline!.pendingCount() == 1)

        // Readable again: the entry is found complete in the file, kept once.
        pipeline!.store.limitValueLength(1_000_000_000)
        #expect(try pipeline!.drain())
        #expect(rig.results == written)
        #expect(try pipeline!.pendingCount() == 0)
    }
}

extension ProcessWideLoggingTests {
    /// Item 11: past --logger_outbox_max_bytes the oldest run is dropped, with
    /// a warning naming the query and the lines lost; the newer runs are kept
    /// and delivered once the logger works again.
    @Test func theOutboxCapDropsTheOldestRunWithAWarning() throws {
        let dir = ResultsTestDir("cap")
        defer { dir.remove() }
        // A file where the log directory should be: the filesystem logger fails until it goes.
        #expect(FileManager.default.createFile(atPath: dir.file("logs"), contents: Data("x".utf8)))
        let flags = try resultFlags([
            "logger_plugin": "filesystem", "logger_path": dir.file("logs"), "logger_outbox_max_bytes": "1200",
            "logger_retry_max_seconds": "1",
        ])
        let warnings = Mutex<[String]>([])
        StatusLog.setLineSink { severity, message, _, _ in
            if severity == .warning, message.contains("query capped") { warnings.withLock { $0.append(message) } }
        }
        defer { StatusLog.setLineSink(nil) }
        let store = try DaemonStore.open(path: dir.file("db/osquery.db"))
        let pipeline = ResultPipeline(store: store, loggers: try LoggerSet.make(flags: flags, registry: PluginRegistry(), caller: nil), flags: flags)
        defer { pipeline.stop() }
        let capped = ScheduledQuery(name: "capped", sql: "select", interval: 10, snapshot: true)
        // Each entry is about 450 bytes: two fit under the cap.
        for i in 0..<6 {
            _ = try pipeline.record(capped, QueryResults(rows: [["b": String(repeating: "\(i)", count: 300)]]), context: context(UInt64(100 + i)))
        }
        #expect(try pipeline.pendingCount() == 2)
        let seen = warnings.withLock { $0 }
        #expect(seen.count == 4, "\(seen)")
        #expect(seen.allSatisfy { $0.contains("dropped the oldest entry, 1 result lines of query capped") && $0.contains("filesystem") }, "\(seen)")

        try FileManager.default.removeItem(atPath: dir.file("logs"))
        #expect(try pipeline.drain())
        let lines = dir.read("logs/osqueryd.snapshots.log").split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.contains(String(repeating: "4", count: 300)) == true)
        #expect(lines.last?.contains(String(repeating: "5", count: 300)) == true)
    }
}

/// A tmpfs of a given size (root only): a file system that really fills up.
enum Tmpfs {
    static func mount(_ path: String, size: String) -> Bool {
        Glibc.mount("tmpfs", path, "tmpfs", 0, "size=\(size)") == 0
    }

    static func unmount(_ path: String) {
        _ = umount2(path, Int32(MNT_DETACH))
    }

    /// Whether this process may mount one (tests that need it are skipped otherwise).
    static let usable: Bool = {
        let dir = NSTemporaryDirectory() + "osq-tmpfs-probe-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard mount(dir, size: "64k") else { return false }
        unmount(dir)
        return true
    }()
}

extension DaemonProcessTests {
    /// Item 12: a full --logger_path keeps the daemon running: the error is a
    /// status line, the results wait, and once space is freed they appear,
    /// each line once.
    @Test(.enabled(if: Tmpfs.usable, "mounting a tmpfs needs root (CI runs as root)"))
    func aFullLoggerPathHoldsResultsUntilSpaceReturns() async throws {
        let dir = try setUp("diskfull", config: Self.filesConfig)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logs = dir + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try #require(Tmpfs.mount(logs, size: "256k"), "mount -t tmpfs on \(logs): \(String(cString: strerror(errno)))")
        defer { Tmpfs.unmount(logs) }
        for i in 0..<5 { touch(dir, "f\(i)") }
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--logger_retry_max_seconds", "1"], stderr: dir + "/stderr")
        defer { Daemond.signal(daemon, SIGKILL) }
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        #expect(await waitUntil(60) { Daemond.lines(dir).count >= 5 }, "\(stderr())")

        // Fill it: every free page goes to a filler file.
        let filler = logs + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        let chunk = [UInt8](repeating: 0x2E, count: 4096)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)
        // Many new rows: their lines need more than the last page the results file has.
        for i in 5..<60 { touch(dir, "f\(i)") }
        #expect(await waitUntil(30) { stderr().contains("No space left on device") }, "\(stderr())")
        // Still monitoring: the worker answers, the watcher is there.
        #expect(await coreQuery(dir + "/osquery.em", "SELECT 1 AS one") == [["one": "1"]])
        #expect(daemon.isRunning)

        // Space returns: the held lines arrive, once.
        unlink(filler)
        let expected = Dictionary(uniqueKeysWithValues: (0..<60).map { ("f\($0)", 1) })
        let settled = await waitUntil(30) { replay(Daemond.lines(dir), name: "files") == expected }
        #expect(settled, "\(stderr().suffix(3000))")
        let raw = try String(contentsOfFile: logs + "/osqueryd.results.log", encoding: .utf8).split(separator: "\n")
        #expect(Set(raw).count == raw.count)
        await Daemond.stop(daemon)
        #expect(daemon.terminationStatus == 0)
    }
}
