import Foundation
import ProtocolFixture
import OsqueryEngine
import OsqueryExtension
import OsqueryManager
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

func resultFlags(_ settings: [String: String]) throws -> Flags {
    let flags = Flags()
    for (k, v) in settings { try flags.set(k, v) }
    return flags
}

@Suite struct LoggerTests {
    @Test func filesystemFilesModeAndDirectory() throws {
        let dir = ResultsTestDir("fs")
        defer { dir.remove() }
        let logger = FilesystemLogger(directory: dir.file("logs/"), mode: 0o600)
        #expect(try logger.prepare(.results) == 0)
        try logger.append(.results, "{\"a\":1}\n")
        #expect(try logger.prepare(.results) == 8)
        try logger.append(.results, "{\"a\":2}\n")
        try logger.append(.snapshot, "{\"s\":1}\n")
        #expect(dir.read("logs/osqueryd.results.log") == "{\"a\":1}\n{\"a\":2}\n")
        #expect(dir.read("logs/osqueryd.snapshots.log") == "{\"s\":1}\n")
        #expect(dir.mode("logs/osqueryd.results.log") == 0o600)
        #expect(dir.mode("logs/osqueryd.snapshots.log") == 0o600)
    }

    @Test func loggerModeIsOctal() {
        #expect(FilesystemLogger.parseMode("0640") == 0o640)
        #expect(FilesystemLogger.parseMode("600") == 0o600)
        #expect(FilesystemLogger.parseMode("0644") == 0o644)
        #expect(FilesystemLogger.parseMode("rw") == 0o640)
        #expect(FilesystemLogger.parseMode("99") == 0o640)
    }

    @Test func rotationShiftsAndKeepsMaxFiles() throws {
        let dir = ResultsTestDir("rotate")
        defer { dir.remove() }
        let logger = FilesystemLogger(directory: dir.path, mode: 0o640, rotate: true, rotateSize: 10, maxFiles: 3)
        for i in 1...6 {
            _ = try logger.prepare(.results)
            try logger.append(.results, "line-\(i)-xxxx\n")
        }
        // Each line is over 10 bytes, so every write after the first rotated.
        #expect(dir.read("osqueryd.results.log") == "line-6-xxxx\n")
        #expect(dir.read("osqueryd.results.log.1") == "line-5-xxxx\n")
        #expect(dir.read("osqueryd.results.log.2") == "line-4-xxxx\n")
        #expect(dir.read("osqueryd.results.log.3") == "line-3-xxxx\n")
        #expect(!FileManager.default.fileExists(atPath: dir.file("osqueryd.results.log.4")))
    }

    @Test func reconcileKeepsCompleteWritesAndRepairsTornOnes() throws {
        let dir = ResultsTestDir("reconcile")
        defer { dir.remove() }
        let logger = FilesystemLogger(directory: dir.path, mode: 0o640)
        try logger.append(.results, "first\n")
        try logger.append(.results, "second\n")
        try logger.reconcile(.results, offset: 6, "second\n")
        #expect(dir.read("osqueryd.results.log") == "first\nsecond\n")
        // A torn tail: cut back and written whole.
        try "first\nsec".write(toFile: dir.file("osqueryd.results.log"), atomically: false, encoding: .utf8)
        try logger.reconcile(.results, offset: 6, "second\n")
        #expect(dir.read("osqueryd.results.log") == "first\nsecond\n")
        // Nothing written yet at the offset.
        try "first\n".write(toFile: dir.file("osqueryd.results.log"), atomically: false, encoding: .utf8)
        try logger.reconcile(.results, offset: 6, "second\n")
        #expect(dir.read("osqueryd.results.log") == "first\nsecond\n")
    }

    @Test func stdoutFormats() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let logger = StdoutLogger(fd: fds[1])
        try logger.logResult(#"{"name":"q"}"#)
        try logger.logSnapshot(#"{"snapshot":[]}"#)
        logger.logStatus(.warning, "disk almost full", file: "scheduler.swift", line: 42)
        close(fds[1])
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        #expect(String(decoding: out, as: UTF8.self) == """
            {"name":"q"}
            {"snapshot":[]}
            severity=1 location=scheduler.swift:42 message=disk almost full

            """)
    }

    @Test func unknownPluginIsCatastrophic() throws {
        for name in ["nonesuch", "filesystem,nonesuch", "tls"] {
            let flags = try resultFlags(["logger_plugin": name])
            let error = #expect(throws: DaemonError.self) {
                _ = try LoggerSet.make(flags: flags, registry: PluginRegistry(), caller: nil)
            }
            #expect(error?.exitCode == 78)
            #expect(error?.message.contains(name.split(separator: ",").last.map(String.init) ?? name) == true)
        }
        let set = try LoggerSet.make(
            flags: try resultFlags(["logger_plugin": " filesystem , stdout,filesystem"]), registry: PluginRegistry(), caller: nil)
        #expect(set.names == ["filesystem", "stdout"])
        #expect(set.filesystem != nil && set.others.count == 1)
    }

    @Test func statusRoutingToGlogFiles() throws {
        let dir = ResultsTestDir("glog")
        defer { dir.remove() }
        let files = StatusLogFiles(directory: dir.path, mode: 0o640)
        defer { files.close() }
        let routing = StatusRouting(files: files, minStatus: 0, stderrMin: nil, plugins: [], hostIdentifier: "h")
        routing.route(.info, "an info line", file: "a.swift", line: 1)
        routing.route(.warning, "a warning line", file: "b.swift", line: 2)
        routing.route(.error, "an error line", file: "c.swift", line: 3)
        let pid = getpid()
        for (severity, expected) in [("INFO", 3), ("WARNING", 2), ("ERROR", 1)] {
            let link = dir.file("osqueryd.\(severity)")
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: link)
            #expect(target.hasPrefix("osqueryd.\(severity).") && target.hasSuffix(".\(pid)"), "\(target)")
            // osqueryd.INFO.YYYYMMDD-HHMMSS.pid
            let stamp = target.split(separator: ".")[2]
            #expect(stamp.count == 15 && stamp.dropFirst(8).first == "-", "\(target)")
            let text = dir.read("osqueryd.\(severity)")
            let lines = text.split(separator: "\n")
            #expect(lines.first?.hasPrefix("Log file created at: ") == true)
            #expect(lines.count == 3 + expected, "\(text)")
        }
        let info = dir.read("osqueryd.INFO").split(separator: "\n").dropFirst(3).map(String.init)
        #expect(info[0].hasPrefix("I") && info[0].hasSuffix(" \(pid) a.swift:1] an info line"), "\(info[0])")
        #expect(info[1].hasPrefix("W") && info[1].hasSuffix(" b.swift:2] a warning line"))
        #expect(info[2].hasPrefix("E") && info[2].hasSuffix(" c.swift:3] an error line"))
        #expect(dir.read("osqueryd.ERROR").contains("an error line") && !dir.read("osqueryd.ERROR").contains("warning"))
        let infoTarget = try FileManager.default.destinationOfSymbolicLink(atPath: dir.file("osqueryd.INFO"))
        #expect(dir.mode(infoTarget) == 0o640)
    }

    @Test func minStatusFiltersFilesAndPlugins() throws {
        let dir = ResultsTestDir("minstatus")
        defer { dir.remove() }
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let files = StatusLogFiles(directory: dir.path, mode: 0o640)
        defer { files.close() }
        let routing = StatusRouting(
            files: files, minStatus: 1, stderrMin: nil, plugins: [StdoutLogger(fd: fds[1])], hostIdentifier: "h")
        routing.route(.info, "hidden", file: "a.swift", line: 1)
        routing.route(.error, "shown", file: "a.swift", line: 2)
        close(fds[1])
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fds[0], &buf, buf.count)
        #expect(String(decoding: buf[0..<max(0, n)], as: UTF8.self) == "severity=2 location=a.swift:2 message=shown\n")
        #expect(!dir.read("osqueryd.INFO").contains("hidden"))
        #expect(dir.read("osqueryd.INFO").contains("shown"))
    }

    @Test func extensionLoggerOverARealManager() async throws {
        var template = Array("/tmp/osq-logx-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let flags = try resultFlags([
            "extensions_interval": "0.5", "extensions_timeout": "30", "logger_plugin": "test_logger,filesystem",
            "logger_path": dir + "/logs",
        ])
        let registry = PluginRegistry()
        let manager = try await ExtensionManager.start(socketPath: socket, registry: registry, flags: flags, queryThreads: 1)
        let received = Mutex<[LogRecord]>([])
        let plugin = OsqueryExtension.LoggerPlugin("test_logger", features: []) { record in
            received.withLock { $0.append(record) }
        }
        let ext = Extension("logger_ext", plugins: [plugin], configuration: .inProcess)
        try await ext.start(options: try ExtensionOptions.parse(["--socket", socket, "--interval", "0.5", "--timeout", "30"]))

        let caller = ExtensionCaller(managerSocket: socket, timeout: .seconds(10))
        let loggers = try LoggerSet.make(flags: flags, registry: registry, caller: caller)
        let pipeline = ResultPipeline(store: DaemonStore.inMemory(), loggers: loggers, flags: flags)
        let context = LogContext(hostIdentifier: "h", unixTime: 100, calendarTime: CalendarTime.string(unixTime: 100))
        let query = ScheduledQuery(name: "q", sql: "select", interval: 10)
        let snap = ScheduledQuery(name: "s", sql: "select", interval: 10, snapshot: true)
        defer { pipeline.stop() }
        let outcome = try await offPool {
            let o = try pipeline.recordDelivered(query, QueryResults(rows: [["a": "1"], ["a": "2"]]), context: context)
            _ = try pipeline.recordDelivered(snap, QueryResults(rows: [["b": "3"]]), context: context)
            return o
        }
        #expect(outcome.added == 2 && outcome.counter == 0)
        let fileLines = try String(contentsOfFile: dir + "/logs/osqueryd.results.log", encoding: .utf8).split(separator: "\n")
        let snapLines = try String(contentsOfFile: dir + "/logs/osqueryd.snapshots.log", encoding: .utf8).split(separator: "\n")
        #expect(fileLines.count == 2 && snapLines.count == 1)
        let records = received.withLock { $0 }.filter {
            if case .initialize = $0 { return false }
            return true
        }
        #expect(records == [.result(String(fileLines[0])), .result(String(fileLines[1])), .snapshot(String(snapLines[0]))])

        // The extension gone: not an error of the run (the supervisor relaunches
        // extensions; the daemon keeps running). The file has the run, and it
        // stays in the outbox for the extension logger.
        ext.stop()
        _ = await ext.waitUntilStopped()
        _ = try await offPool { try pipeline.record(query, QueryResults(rows: [["a": "9"]]), context: context) }
        #expect(try await offPool { try pipeline.drain(only: ["filesystem"]) })
        let fileText = try String(contentsOfFile: dir + "/logs/osqueryd.results.log", encoding: .utf8)
        #expect(fileText.split(separator: "\n").count == 5)
        #expect(try pipeline.pendingCount() == 1)
        await manager.stop()
    }
}

/// /dev/log served by the test: this machine runs no syslog daemon, so the
/// test binds the socket syslog(3) writes to and reads the datagrams.
final class DevLog: Sendable {
    let fd: Int32

    init?() {
        guard !FileManager.default.fileExists(atPath: "/dev/log") else { return nil }
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in "/dev/log".utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return nil
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram (blocks up to 10 s: call off the pool).
    func receive() -> String? {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    func remove() {
        close(fd)
        unlink("/dev/log")
    }
}

/// Tests of process-wide state (syslog(3), StatusLog's line sink), one at a time.
@Suite(.serialized) struct ProcessWideLoggingTests {
    @Test func unwritableLoggerPathFallsBackToStderr() throws {
        let flags = try resultFlags(["logger_plugin": "filesystem", "logger_path": "/proc/self/no-such-dir"])
        let set = try LoggerSet.make(flags: flags, registry: PluginRegistry(), caller: nil)
        set.installStatusLogging(flags: flags, hostIdentifier: "h")
        defer { set.stop() }
        #expect(set.statusFiles == nil)
    }

    @Test func stderrThresholds() throws {
        let dir = ResultsTestDir("stderr")
        defer { dir.remove() }
        func routing(_ settings: [String: String]) throws -> (stderr: Int?, min: Int, files: Bool) {
            var all = ["logger_plugin": "filesystem", "logger_path": dir.path]
            for (k, v) in settings { all[k] = v }
            let flags = try resultFlags(all)
            let set = try LoggerSet.make(flags: flags, registry: PluginRegistry(), caller: nil)
            set.installStatusLogging(flags: flags, hostIdentifier: "h")
            defer { set.stop() }
            let r = try #require(set.statusRouting)
            return (r.stderrMin, r.minStatus, r.files != nil)
        }
        // The daemon's default: INFO and up to the files and to stderr.
        var r = try routing([:])
        #expect(r.stderr == 0 && r.min == 0 && r.files)
        r = try routing(["logger_min_stderr": "1", "logger_min_status": "2"])
        #expect(r.stderr == 1 && r.min == 2)
        r = try routing(["logger_stderr": "false"])
        #expect(r.stderr == nil && r.files)
        r = try routing(["logger_min_stderr": "2", "logger_min_status": "1", "verbose": "true"])
        #expect(r.stderr == 0 && r.min == 0)
        // The stdout logger takes statuses itself (osquery turns glog's stderr off).
        r = try routing(["logger_plugin": "filesystem,stdout"])
        #expect(r.stderr == nil && r.files)
        // No status files: everything from --logger_min_status goes to stderr.
        r = try routing(["logger_plugin": "syslog", "logger_min_stderr": "2", "logger_min_status": "1"])
        #expect(r.stderr == 1 && !r.files)
        r = try routing(["logger_path": "/proc/self/no-such-dir"])
        #expect(r.stderr == 0 && !r.files)
        // --disable_logging: nothing to the plugins, statuses still on stderr.
        r = try routing(["disable_logging": "true"])
        #expect(r.stderr == 0 && !r.files)
    }

    @Test func statusLinesReachGlogFilesThroughStatusLog() throws {
        let dir = ResultsTestDir("statuslog")
        defer { dir.remove() }
        let flags = try resultFlags(["logger_plugin": "filesystem", "logger_path": dir.path, "logger_stderr": "false"])
        let set = try LoggerSet.make(flags: flags, registry: PluginRegistry(), caller: nil)
        set.installStatusLogging(flags: flags, hostIdentifier: "h")
        let marker = "status-marker-\(UInt32.random(in: 0...UInt32.max))"
        StatusLog.warning(marker)
        set.stop()
        StatusLog.warning(marker + "-after-stop")
        let info = dir.read("osqueryd.INFO")
        #expect(info.contains("LoggerTests.swift:") && info.contains("] " + marker + "\n"), "\(info)")
        #expect(!info.contains("after-stop"))
        #expect(dir.read("osqueryd.WARNING").contains(marker))
    }


    @Test(.enabled(if: !FileManager.default.fileExists(atPath: "/dev/log"), "a syslog daemon owns /dev/log"))
    func resultsAndStatusesReachSyslog() async throws {
        let devlog = try #require(DevLog())
        defer { devlog.remove() }
        let pid = getpid()

        let logger = SyslogLogger(facility: 19, prependCEE: false)
        try logger.logResult(#"{"name":"q"}"#)
        var got = try await offPool { devlog.receive() }
        // local3 (19 << 3) | LOG_INFO (6) = 158
        #expect(got?.hasPrefix("<158>") == true, "\(got ?? "nil")")
        #expect(got?.hasSuffix("osqueryd[\(pid)]: {\"name\":\"q\"}") == true, "\(got ?? "nil")")

        logger.logStatus(.warning, "careful", file: "x.swift", line: 7)
        got = try await offPool { devlog.receive() }
        #expect(got?.hasPrefix("<156>") == true, "\(got ?? "nil")")  // WARNING = 4
        #expect(got?.hasSuffix("osqueryd[\(pid)]: severity=1 location=x.swift:7 message=careful") == true, "\(got ?? "nil")")
        logger.logStatus(.info, "fyi", file: "x.swift", line: 8)
        got = try await offPool { devlog.receive() }
        #expect(got?.hasPrefix("<157>") == true, "\(got ?? "nil")")  // NOTICE = 5
        logger.logStatus(.error, "bad", file: "x.swift", line: 9)
        got = try await offPool { devlog.receive() }
        #expect(got?.hasPrefix("<155>") == true, "\(got ?? "nil")")  // ERR = 3
        logger.stop()

        // Another facility, @cee: prefix, and snapshots at LOG_INFO too.
        let cee = SyslogLogger(facility: 1, prependCEE: true)
        try cee.logSnapshot(#"{"snapshot":[]}"#)
        got = try await offPool { devlog.receive() }
        #expect(got?.hasPrefix("<14>") == true, "\(got ?? "nil")")  // user (1 << 3) | 6
        #expect(got?.hasSuffix("osqueryd[\(pid)]: @cee:{\"snapshot\":[]}") == true, "\(got ?? "nil")")
        cee.stop()

        // Out of range: back to local3.
        let fallback = SyslogLogger(facility: 99, prependCEE: false)
        #expect(fallback.facility == 19)
        fallback.stop()
    }
}
