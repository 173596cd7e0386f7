import Foundation
import OsqueryEngine
import OsqueryShell
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The real osqueryi on a pseudo-terminal, whose output is read byte for byte as expect and
/// pexpect read it.
final class PseudoTerminal: @unchecked Sendable {
    let master: Int32
    let pid: pid_t
    private var unread: [UInt8] = []

    /// Starts `path` with the terminal as its standard input, output and error; `environment`
    /// overrides entries of ours.
    init(_ path: String, _ args: [String], environment: [String], columns: UInt16 = 80) throws {
        var size = winsize(ws_row: 24, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        var master: Int32 = -1, slave: Int32 = -1
        guard openpty(&master, &slave, nil, nil, &size) == 0 else { throw POSIXError(.ENOTTY) }
        // Only the child's 0, 1 and 2 (dup2 clears the flag) keep the terminal open: its end of
        // file reaches us when the child exits.
        _ = fcntl(master, F_SETFD, FD_CLOEXEC)
        _ = fcntl(slave, F_SETFD, FD_CLOEXEC)
        self.master = master
        defer { close(slave) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        for fd: Int32 in 0...2 { posix_spawn_file_actions_adddup2(&actions, slave, fd) }
        // Other tests' sockets stay out of the child.
        Spawn.closeInheritedDescriptors(in: &actions)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let overridden = Set(environment.map { String($0.prefix { $0 != "=" }) })
        var env: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) }
        var i = 0
        while let e = environ[i] {
            if !overridden.contains(String(String(cString: e).prefix { $0 != "=" })) { env.append(strdup(e)) }
            i += 1
        }
        env.append(nil)
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, env)
        for p in argv { free(p) }
        for p in env { free(p) }
        posix_spawn_file_actions_destroy(&actions)
        guard rc == 0 else {
            close(master)
            throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL)
        }
        pid = child
    }

    func send(_ text: String) { ShellIO.writeAll(master, text) }

    /// Reads more output; false once the program has closed the terminal or 30 s (a bound, not
    /// a timing goal) brought nothing.
    private func fill() -> Bool {
        var fds = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
        guard poll(&fds, 1, 30_000) > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = chunk.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
        guard n > 0 else { return false }
        unread += chunk[0..<n]
        return true
    }

    /// The next `count` bytes written to the terminal (fewer only if the output stops).
    func next(_ count: Int) -> String {
        while unread.count < count && fill() {}
        let taken = unread.prefix(count)
        unread.removeFirst(taken.count)
        return String(decoding: taken, as: UTF8.self)
    }

    /// Everything written up to and including `marker` (all of it if the marker never comes).
    func through(_ marker: String) -> String {
        let bytes = Array(marker.utf8)
        while true {
            if let end = Self.find(bytes, in: unread) {
                let taken = unread.prefix(end)
                unread.removeFirst(end)
                return String(decoding: taken, as: UTF8.self)
            }
            if !fill() {
                defer { unread.removeAll() }
                return String(decoding: unread, as: UTF8.self)
            }
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start + needle.count
        }
        return nil
    }

    /// The rest of the output and the exit status, once the program exits.
    func finish() -> (output: String, status: Int32) {
        while fill() {}
        close(master)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return (String(decoding: unread, as: UTF8.self), status)
    }
}

/// Issue 15 item 1: osqueryi's line editor writes what linenoise-ng (osquery's) writes.
@Suite struct LineEditorTerminalTests {
    static let banner = "Using a virtual database. Need help, type '.help'\r\n"

    /// Sends each step's keys and reads exactly as many bytes as its expected answer has.
    static func drive(columns: UInt16, _ steps: [(keys: String, answer: String)], tag: String) async throws -> (answers: [String], rest: String, status: Int32) {
        let home = try scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: home) }
        return try await offPool {
            let terminal = try PseudoTerminal(builtBinary(), ["--disable_extensions"], environment: ["TERM=xterm", "HOME=" + home], columns: columns)
            var answers = [terminal.through("osquery> ")]
            for step in steps {
                terminal.send(step.keys)
                answers.append(terminal.next(step.answer.utf8.count))
            }
            let (rest, status) = terminal.finish()
            return (answers, rest, status)
        }
    }

    /// Typing at the end echoes the characters alone; a cursor move or a deletion redraws only
    /// the input after the prompt; Enter leaves the line as typed and the query's table follows.
    @Test func typingEchoesAndRefreshesNeverRedrawThePrompt() async throws {
        let steps: [(keys: String, answer: String)] = [
            ("SELECT 7 AS nn;", "SELECT 7 AS nn;"),
            ("\u{1b}[D", "\u{1b}[10G\u{1b}[JSELECT 7 AS nn;\u{1b}[24G"),  // Left
            ("\u{7f}", "\u{1b}[10G\u{1b}[JSELECT 7 AS n;\u{1b}[23G"),  // Backspace
            ("\u{5}", "\u{1b}[10G\u{1b}[JSELECT 7 AS n;\u{1b}[24G"),  // Ctrl-E
            ("\r", "\u{1b}[10G\u{1b}[JSELECT 7 AS n;\u{1b}[24G\r\n+---+\r\n| n |\r\n+---+\r\n| 7 |\r\n+---+\r\nosquery> "),
        ]
        let run = try await Self.drive(columns: 80, steps + [("\u{4}", "")], tag: "pty-edit")  // Ctrl-D on an empty line
        #expect(run.answers == [Self.banner + "osquery> "] + steps.map(\.answer) + [""])
        #expect(run.rest == "\r\n\r\n")
        #expect(run.status == 0)
    }

    /// Filling the screen's last column ends the fast path: a refresh moves the cursor to the
    /// next row, and the next refresh starts by moving back up to the prompt's row.
    @Test func aLineThatDoesNotFitIsRefreshed() async throws {
        let steps: [(keys: String, answer: String)] = [
            ("ab", "ab"),
            ("c", "\u{1b}[10G\u{1b}[Jabc\r\n\u{1b}[1G"),
            ("\u{2}", "\u{1b}[1A\u{1b}[10G\u{1b}[Jabc\r\n\u{1b}[1A\u{1b}[12G"),  // Ctrl-B
        ]
        // Ctrl-C ends the session, as in osquery's shell.
        let run = try await Self.drive(columns: 12, steps + [("\u{3}", "")], tag: "pty-wrap")
        #expect(run.answers == [Self.banner + "osquery> "] + steps.map(\.answer) + [""])
        #expect(run.rest == "\u{1b}[10G\u{1b}[Jabc\r\n\u{1b}[1G^C\r\n\r\n")
        #expect(run.status == 0)
    }

    /// Ctrl-R searches the history backwards under osquery's `(reverse-i-search)` prompt; Enter
    /// puts the prompt back with the line found and runs it.
    @Test func ctrlRSearchesTheHistory() async throws {
        let table = { (c: String, v: String) in "+---+\r\n| \(c) |\r\n+---+\r\n| \(v) |\r\n+---+\r\nosquery> " }
        let steps: [(keys: String, answer: String)] = [
            ("SELECT 1 AS a;", "SELECT 1 AS a;"),
            ("\r", "\u{1b}[10G\u{1b}[JSELECT 1 AS a;\u{1b}[24G\r\n" + table("a", "1")),
            ("SELECT 2 AS b;", "SELECT 2 AS b;"),
            ("\r", "\u{1b}[10G\u{1b}[JSELECT 2 AS b;\u{1b}[24G\r\n" + table("b", "2")),
            ("\u{12}", "\u{1b}[10G\u{1b}[J\u{1b}[10G\u{1b}[1G\u{1b}[J(reverse-i-search)`': \u{1b}[23G"),  // Ctrl-R
            ("1", "\u{1b}[1G\u{1b}[J(reverse-i-search)`1': SELECT 1 AS a;\u{1b}[31G"),
            ("\r", "\u{1b}[1G\u{1b}[Josquery> SELECT 1 AS a;\u{1b}[17G\u{1b}[10G\u{1b}[JSELECT 1 AS a;\u{1b}[24G\r\n" + table("a", "1")),
        ]
        let run = try await Self.drive(columns: 80, steps + [("\u{4}", "")], tag: "pty-search")
        #expect(run.answers == [Self.banner + "osquery> "] + steps.map(\.answer) + [""])
        #expect(run.rest == "\r\n\r\n")
        #expect(run.status == 0)
    }

    /// TAB completes a table name the prefix names alone; Ctrl-U kills the line and Ctrl-Y yanks it back.
    @Test func tabCompletesAndKilledTextComesBack() async throws {
        let line = "\u{1b}[10G\u{1b}[JSELECT * FROM osquery_flags\u{1b}[37G"
        let steps: [(keys: String, answer: String)] = [
            ("SELECT * FROM osquery_fl", "SELECT * FROM osquery_fl"),
            ("\t", line),
            ("\u{15}", "\u{1b}[10G\u{1b}[J\u{1b}[10G"),  // Ctrl-U
            ("\u{19}", line),  // Ctrl-Y
        ]
        let run = try await Self.drive(columns: 80, steps + [("\u{3}", "")], tag: "pty-tab")
        #expect(run.answers == [Self.banner + "osquery> "] + steps.map(\.answer) + [""])
        #expect(run.rest == line + "^C\r\n\r\n")
        #expect(run.status == 0)
    }

    /// TERM=dumb: the prompt and plain lines, which the terminal itself echoes; no escape codes.
    @Test func aDumbTerminalGetsPlainLines() async throws {
        let home = try scratchDirectory("pty-dumb")
        defer { try? FileManager.default.removeItem(atPath: home) }
        let transcript = try await offPool { () -> [String] in
            let terminal = try PseudoTerminal(builtBinary(), ["--disable_extensions"], environment: ["TERM=dumb", "HOME=" + home])
            var seen = [terminal.through("osquery> ")]
            terminal.send("SELECT 7 AS n;\r")
            seen.append(terminal.through("osquery> "))
            terminal.send("\u{4}")
            let (rest, status) = terminal.finish()
            return seen + [rest, "\(status)"]
        }
        #expect(transcript[0] == Self.banner + "osquery> ")
        #expect(transcript[1] == "SELECT 7 AS n;\r\n+---+\r\n| n |\r\n+---+\r\n| 7 |\r\n+---+\r\nosquery> ")
        #expect(transcript[2] == "\r\n")
        #expect(transcript[3] == "0")
        #expect(!transcript.joined().contains("\u{1b}"))
    }

    /// Standard input not a terminal: statements are read as they come, no prompt, no escape codes.
    @Test func aPipeGetsNoEscapeCodes() async throws {
        let run = try await offPool { spawn(builtBinary(), ["--disable_extensions"], stdin: "SELECT 7 AS n;\n") }
        #expect(run.rc == 0)
        #expect(run.out == "+---+\n| n |\n+---+\n| 7 |\n+---+\n")
    }
}
