import Foundation
import OsqueryEngine
import OsqueryEvents
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A core with the syslog publisher reading a pipe in a directory of the test's own.
final class SyslogCore: @unchecked Sendable {  // used by one test at a time
    let dir: String
    let pipePath: String
    let hub: EventHub
    let database: Database

    init(_ tag: String, flags extra: [String: String] = [:], dir existing: String? = nil) throws {
        dir = try existing ?? scratchDirectory("syslog-" + tag)
        pipePath = dir + "/syslog_pipe"
        let core = try startEventsCore(["disable_events": "false", "enable_syslog": "true", "syslog_pipe_path": pipePath], extra)
        hub = core.hub
        database = core.database
    }

    deinit {
        hub.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func rows(_ filter: String = "1") -> [[String: String]] {
        (try? database.execute("SELECT * FROM syslog_events WHERE \(filter)").rowMaps(nullValue: "NULL")) ?? []
    }

    func counter(_ name: String) -> Int {
        Int((try? database.strings("SELECT events FROM osquery_events WHERE name = 'syslog.\(name)'", "events").first) ?? nil ?? "") ?? -1
    }

    var active: Bool {
        (try? database.strings("SELECT active FROM osquery_events WHERE name = 'syslog'", "active").first) == "1"
    }
}

/// Writes what the pipe takes now (never blocks); returns the bytes written.
@discardableResult
func writeToPipe(_ path: String, _ text: String) -> Int {
    let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    return text.withCString { Glibc.write(fd, $0, strlen($0)) }
}

/// Writes all of `pieces` in order, waiting for the reader when the pipe is full.
func writeAllToPipe(_ path: String, _ pieces: [String]) async throws {
    try await offPool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        for piece in pieces {
            let bytes = Array(piece.utf8)
            var done = 0
            while done < bytes.count {
                let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n <= 0 { return }
                done += n
            }
        }
    }
}

func csvLine(_ tag: String, _ message: String) -> String {
    "2026-12-05T18:00:00.000000+00:00,testhost,5,user,\(tag):,\(message)\n"
}

@Suite struct SyslogEventsTests {
    @Test func linesSplitAsOsquerysRsyslogTokenizer() throws {
        func parse(_ s: String) -> Result<RsyslogCSV.Line, EventError> { RsyslogCSV.parse(ArraySlice(Array(s.utf8))) }
        func error(_ s: String) -> String? {
            if case .failure(let e) = parse(s) { return e.message }
            return nil
        }
        let plain = try parse("2026-12-05T18:00:00+00:00, host ,5,user,osqtest:,hello world").get()
        #expect(
            [plain.datetime, plain.host, plain.severity, plain.facility, plain.tag, plain.message] == [
                "2026-12-05T18:00:00+00:00", "host", "5", "user", "osqtest", "hello world",
            ])
        let quoted = try parse(#""t","h","3","daemon","sshd[12]:","a, ""b"" c""#).get()
        #expect(quoted.message == #"a, "b" c"#)
        #expect(quoted.tag == "sshd[12]")
        #expect(try parse("t,h,5,user,tag,").get().message == "")
        #expect(error("t,h,5") == RsyslogCSV.fewerFields)
        #expect(error("t,h,5,u,tag,m,extra") == RsyslogCSV.moreFields)
        #expect(error("") == RsyslogCSV.fewerFields)
        #expect(try parse(#"t,h,5,u,tag,"unterminated, quote"#).get().message == "unterminated, quote")
    }

    @Test func linesFromThePipeAppearAndHostileOnesAreCountedAndSkipped() async throws {
        let core = try SyslogCore("lines", flags: ["syslog_max_line": "4096"])
        var st = stat()
        #expect(lstat(core.pipePath, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFIFO)
        #expect(st.st_mode & 0o777 == 0o460)
        #expect(core.active)
        // A line longer than --syslog_max_line, written in pieces, is skipped up to its newline.
        let long = String(repeating: "x", count: 16 * 1024)
        try await writeAllToPipe(
            core.pipePath,
            [csvLine("first", "one"), "garbage without commas\n", "a,b,c,d,e,f,g,h\n"] + Array(repeating: long, count: 6) + [
                "tail of the long line\n", csvLine("second", #""quoted, with comma""#),
            ])
        #expect(await eventually { core.rows("tag = 'second'").count == 1 })
        let first = try #require(core.rows("tag = 'first'").first)
        #expect(first["host"] == "testhost" && first["severity"] == "5" && first["facility"] == "user" && first["message"] == "one")
        #expect(first["datetime"] == "2026-12-05T18:00:00.000000+00:00")
        #expect(core.rows("tag = 'second'").first?["message"] == "quoted, with comma")
        #expect(core.rows().count == 2)
        #expect(core.counter("malformed_lines") == 2)
        #expect(core.counter("overlong_lines") == 1)
        // The alias and osquery's column order (time first).
        let columns = try core.database.execute("SELECT * FROM syslog LIMIT 1").columns
        #expect(columns == ["time", "datetime", "host", "severity", "facility", "tag", "message"])
    }

    @Test func aFloodingWriterIsThrottledAndCountedAndNothingIsLost() async throws {
        let core = try SyslogCore("flood", flags: ["syslog_rate_limit": "20"])
        var sent = 0
        // The writer keeps offering lines; the pipe (64 KiB) holds what the reader has not taken.
        for i in 0..<200 {
            if writeToPipe(core.pipePath, csvLine("flood", "line \(i)")) > 0 { sent += 1 }
        }
        #expect(sent == 200)
        #expect(await eventually { core.counter("rate_limited") >= 1 })
        #expect(await eventually { core.rows("tag = 'flood'").count == 200 })
        #expect(core.rows("message = 'line 199'").count == 1)
    }

    @Test func aPathThatIsNotAFIFOOrIsLockedIsRefused() async throws {
        let dir = try scratchDirectory("syslog-refuse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let flags = try makeFlags(["disable_events": "false", "enable_syslog": "true", "syslog_pipe_path": dir + "/pipe"])
        let hub = EventHub(flags: flags, database: InMemoryEventDatabase(), isDaemon: false)
        func startError() -> String? {
            let publisher = SyslogPublisher(subscriber: SyslogPublisher.makeSubscriber(hub: hub), flags: flags)
            defer { publisher.stop() }
            do throws(EventError) {
                try publisher.start()
                return nil
            } catch {
                return error.message
            }
        }
        write(dir + "/pipe", "a regular file")
        #expect(startError() == "Not a FIFO file: \(dir)/pipe")
        #expect(try String(contentsOfFile: dir + "/pipe", encoding: .utf8) == "a regular file")
        unlink(dir + "/pipe")
        mkfifo(dir + "/real", 0o600)
        symlink(dir + "/real", dir + "/pipe")
        #expect(startError() == "Not a FIFO file: \(dir)/pipe")
        unlink(dir + "/pipe")
        // A second reader of the same pipe is refused while the first holds it.
        let holder = SyslogPublisher(subscriber: SyslogPublisher.makeSubscriber(hub: hub), flags: flags)
        try holder.start()
        defer { holder.stop() }
        #expect(startError()?.hasPrefix("Unable to acquire pipe lock: ") == true)
        #expect(holder.status.active)
    }

    static let rsyslogd: String? = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].first { (path: String) in access(path, X_OK) == 0 }

    /// The rsyslog configuration of the README, run by a private rsyslogd: a line logged
    /// with `logger` reaches syslog_events.
    @Test(.enabled(if: rsyslogd != nil && access("/usr/bin/logger", X_OK) == 0, "needs rsyslogd (Debian's rsyslog) and logger"))
    func aLineLoggedThroughRsyslogReachesSyslogEvents() async throws {
        let core = try SyslogCore("rsyslog")
        let socket = core.dir + "/log.sock"
        try FileManager.default.createDirectory(atPath: core.dir + "/work", withIntermediateDirectories: true)
        let conf = """
            global(workDirectory="\(core.dir)/work")
            module(load="imuxsock" SysSock.Use="off")
            input(type="imuxsock" Socket="\(socket)" CreatePath="on")
            template(
              name="OsqueryCsvFormat"
              type="string"
              string="%timestamp:::date-rfc3339,csv%,%hostname:::csv%,%syslogseverity:::csv%,%syslogfacility-text:::csv%,%syslogtag:::csv%,%msg:::csv%\\n"
            )
            *.* action(type="ompipe" Pipe="\(core.pipePath)" template="OsqueryCsvFormat")

            """
        try conf.write(toFile: core.dir + "/rsyslog.conf", atomically: true, encoding: .utf8)
        let rsyslog = Process()
        rsyslog.executableURL = URL(fileURLWithPath: try #require(Self.rsyslogd))
        rsyslog.arguments = ["-n", "-f", "\(core.dir)/rsyslog.conf", "-i", "\(core.dir)/rsyslogd.pid"]
        rsyslog.standardOutput = FileHandle.nullDevice
        rsyslog.standardError = FileHandle.nullDevice
        try rsyslog.run()
        let pid = rsyslog.processIdentifier
        defer {
            // SIGKILL: rsyslogd inherits the test process's blocked SIGTERM.
            signalOurChild(pid, named: "rsyslogd", SIGKILL)
            rsyslog.waitUntilExit()
        }
        let marker = "osquery-swift \(UInt32.random(in: 0...UInt32.max)), with a comma and \"quotes\""
        #expect(await eventually { access(socket, F_OK) == 0 })
        let (status, _, err) = try await runToCompletion("/usr/bin/logger", ["-u", socket, "-t", "osqtest", "-p", "user.warning", marker])
        #expect(status == 0, "logger: \(err)")
        #expect(await eventually { !core.rows("tag = 'osqtest'").isEmpty })
        let row = try #require(core.rows("tag = 'osqtest'").first)
        #expect(row["message"] == marker)
        #expect(row["severity"] == "4")
        #expect(row["facility"] == "user")
        #expect(row["datetime"]?.isEmpty == false)
        #expect(core.counter("malformed_lines") == 0)
    }
}
