import OsqueryEngine
import OsqueryShell
import OsqueryTables
import ProtocolFixture
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

final class Capture: Sendable {
    let out = Mutex("")
    let err = Mutex("")
    var io: ShellIO {
        ShellIO(out: { s in self.out.withLock { $0 += s } }, err: { s in self.err.withLock { $0 += s } })
    }
}

struct ShellRun {
    var rc: Int32
    var out: String
    var err: String
}

/// Run osqueryi in-process with private flags and registry.
func osqueryi(_ args: [String], stdin: String? = nil) -> ShellRun {
    StatusLog.setSink { _, _ in }
    let capture = Capture()
    let rc = OsqueryShellMain.run(
        ["osqueryi"] + args, io: capture.io, registry: PluginRegistry(), flags: Flags(),
        readStandardInput: { stdin }, standardInputIsTerminal: false
    )
    return ShellRun(rc: rc, out: capture.out.withLock { $0 }, err: capture.err.withLock { $0 })
}

/// The built osqueryi next to this test binary.
func builtBinary() -> String {
    let exe = FileIO.readLink("/proc/self/exe").map { String(decoding: $0, as: UTF8.self) } ?? ""
    var dir = exe
    while !dir.isEmpty && !FileIO.exists(dir + "/osqueryi") {
        guard let slash = dir.lastIndex(of: "/") else { break }
        dir = String(dir[..<slash])
    }
    return dir + "/osqueryi"
}

/// Run a real process; returns exit code, stdout, stderr.
func spawn(_ path: String, _ args: [String], stdin: String = "", environment: [String] = []) -> ShellRun {
    var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0], inPipe: [Int32] = [0, 0]
    pipe(&outPipe); pipe(&errPipe); pipe(&inPipe)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    for fd in inPipe + outPipe + errPipe { posix_spawn_file_actions_addclose(&actions, fd) }
    // Other tests' sockets stay out of the child (a held connection never reads as closed).
    Spawn.closeInheritedDescriptors(in: &actions)
    let argv = ([path] + args).map { strdup($0) } + [nil]
    var pid: pid_t = 0
    var env: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) }
    let overridden = Set(environment.map { String($0.prefix { $0 != "=" }) })
    var i = 0
    while let e = environ[i] {
        let name = String(String(cString: e).prefix { $0 != "=" })
        if !overridden.contains(name) { env.append(e) }
        i += 1
    }
    env.append(nil)
    let rc = posix_spawn(&pid, path, &actions, nil, argv, env)
    for p in argv { free(p) }
    for p in env.prefix(environment.count) { free(p) }
    posix_spawn_file_actions_destroy(&actions)
    close(inPipe[0]); close(outPipe[1]); close(errPipe[1])
    guard rc == 0 else { return ShellRun(rc: -1, out: "", err: "spawn failed \(rc)") }
    ShellIO.writeAll(inPipe[1], stdin)
    close(inPipe[1])
    func drain(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        close(fd)
        return String(decoding: bytes, as: UTF8.self)
    }
    let out = drain(outPipe[0])
    let err = drain(errPipe[0])
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return ShellRun(rc: (status >> 8) & 0xff, out: out, err: err)
}

@Suite(.serialized, .ownThread) struct OneShotTests {
    let sql = "SELECT 1 AS a, 'x y' AS b, NULL AS c UNION ALL SELECT 22, '', 2.5"

    @Test func prettyIsTheDefault() {
        let r = osqueryi([sql])
        #expect(r.rc == 0)
        #expect(r.out == """
            +----+-----+-----+
            | a  | b   | c   |
            +----+-----+-----+
            | 1  | x y |     |
            | 22 |     | 2.5 |
            +----+-----+-----+

            """)
        #expect(r.err == "")
    }

    @Test func outputModeFlags() {
        #expect(osqueryi(["--json", "select 0"]).out == "[\n  {\"0\":\"0\"}\n]\n")
        #expect(osqueryi(["--json", sql]).out == "[\n  {\"a\":\"1\",\"b\":\"x y\",\"c\":\"\"},\n  {\"a\":\"22\",\"b\":\"\",\"c\":\"2.5\"}\n]\n")
        #expect(osqueryi(["--json_pretty", "select 0"]).out == "[\n  {\n    \"0\": \"0\"\n  }\n]\n")
        #expect(osqueryi(["--line", sql]).out == "    a = 1\n    b = x y\n    c = \n\n    a = 22\n    b = \n    c = 2.5\n")
        #expect(osqueryi(["--list", sql]).out == "a|b|c\n1|x y|\n22||2.5\n")
        #expect(osqueryi(["--list", "--header=false", "--separator", ";", "--nullvalue", "NULL", sql]).out == "1;x y;NULL\n22;;2.5\n")
        // --csv keeps the default '|' separator: osquery's quirk, reproduced.
        #expect(osqueryi(["--csv", sql]).out == "a|b|c\n1|\"x y\"|\n22|\"\"|2.5\n")
        #expect(osqueryi(["--csv", "--separator=,", sql]).out == "a,b,c\n1,\"x y\",\n22,\"\",2.5\n")
        #expect(osqueryi(["--json", "select 1 where 0"]).out == "[\n\n]\n")
        #expect(osqueryi(["select 1 where 0"]).out == "")
    }

    @Test func errorsAndExitCodes() {
        let syntax = osqueryi(["selec 1"])
        #expect(syntax.rc == 1)
        #expect(syntax.err == "Error: near \"selec\": syntax error\n")
        let missing = osqueryi(["SELECT * FROM foo"])
        #expect(missing.rc == 1)
        #expect(missing.err == "Error: no such table: foo\n")
        let required = osqueryi(["SELECT * FROM file"])
        #expect(required.rc == 19)
        #expect(required.err == "Error: Table file was queried without a required column in the WHERE clause\n")
        let unknownFlag = osqueryi(["--bogus_flag", "select 1"])
        #expect(unknownFlag.rc == 1)
        #expect(unknownFlag.err == "ERROR: unknown command line flag 'bogus_flag'\n")
    }

    @Test func queryAndQueryFileAndOutput() {
        #expect(osqueryi(["--list", "--query", "select 1 as x; select 2 as y"]).out == "x\n1\ny\n2\n")
        let path = "/tmp/osq-shell-test-\(getpid()).sql"
        let outPath = "/tmp/osq-shell-test-\(getpid()).out"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        ShellIO.writeAll(fd, "select 'from file' as src;\n")
        close(fd)
        defer { unlink(path); unlink(outPath) }
        #expect(osqueryi(["--list", "--query_file", path]).out == "src\nfrom file\n")
        let unreadable = osqueryi(["--query_file", "/nonexistent.sql"])
        #expect(unreadable.rc == 1)
        let written = osqueryi(["--list", "--output", outPath, "select 7 as n"])
        #expect(written.out == "")
        #expect(FileIO.readString(outPath) == "n\n7\n")
    }

    @Test func allTablesAndMetaArgument() {
        let tables = osqueryi(["-L"])
        #expect(tables.out.hasPrefix("  => acpi_tables\n  => apparmor_events\n  => apparmor_profiles\n  => apt_sources\n"))
        #expect(tables.out.contains("  => processes\n"))
        let all = osqueryi(["--list", "-A", "load_average"])
        #expect(all.out.hasPrefix("period|average\n1m|"))
        let bad = osqueryi(["-A", "nope"])
        #expect(bad.rc == 1)
        #expect(bad.err == "Error querying table: nope\n")
        #expect(osqueryi([".tables user"]).out == "  => user_events\n  => user_groups\n  => user_ssh_keys\n  => users\n")
    }

    @Test func helpAndVersion() {
        let help = osqueryi(["--help"])
        #expect(help.rc == 0)
        #expect(help.out.hasPrefix("osquery \(OsqueryVersion.version), your OS as a high-performance relational database\nUsage: osqueryi [OPTION]... [SQL STATEMENT]\n"))
        #expect(help.out.contains("osquery shell-only CLI flags:"))
        #expect(help.out.contains("    --json  "))
        #expect(osqueryi(["--version"]).out == "osqueryi version \(OsqueryVersion.version)\n")
        // -D picks the daemon (in the program's entry, not the shell), which parses its flags
        // first: an unknown one ends it at once.
        let daemon = spawn(builtBinary(), ["-D", "--no_such_flag"])
        #expect(daemon.rc == 1)
        #expect(daemon.err.contains("no_such_flag"))
    }

    @Test func flagfileSetsOutputMode() {
        let path = "/tmp/osq-shell-flags-\(getpid())"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        ShellIO.writeAll(fd, "# shell flags\n--json\n")
        close(fd)
        defer { unlink(path) }
        #expect(osqueryi(["--flagfile=\(path)", "select 0"]).out == "[\n  {\"0\":\"0\"}\n]\n")
    }
}

@Suite(.serialized, .ownThread) struct ScriptAndMetaCommandTests {
    @Test func pipedScriptContinuesAfterErrorsAndExitsOne() {
        let r = osqueryi(["--list"], stdin: "select 1 as a;\nselec 2;\n\nselect\n  3 as b")
        #expect(r.out == "a\n1\nb\n3\n")
        #expect(r.err == "Error: near line 2: near \"selec\": syntax error\n")
        #expect(r.rc == 1)
        #expect(osqueryi(["--list"], stdin: "select 1;\n").rc == 0)
    }

    @Test func bailStopsTheScript() {
        let r = osqueryi(["--list"], stdin: ".bail on\nselect * from nope;\nselect 2;\n")
        #expect(r.out == "")
        #expect(r.rc == 1)
    }

    @Test func modeHeadersNullvalueSeparatorPrint() {
        let script = """
            .mode csv
            select 'a b' as x, null as y;
            .headers off
            .nullvalue NIL
            select 'a b' as x, null as y;
            .mode list
            .separator ::
            select 1 as p, 2 as q;
            .print hello   world
            .mode column
            .headers on
            select 1 as p;
            .mode line
            select 1 as p;
            .mode pretty
            select 1 as p;
            """
        let r = osqueryi([], stdin: script)
        #expect(r.out == """
            x,y
            "a b",
            "a b",NIL
            1::2
            hello world
            p         
            ----------
            1         
                p = 1
            +---+
            | p |
            +---+
            | 1 |
            +---+

            """)
        #expect(r.rc == 0)
    }

    @Test func abbreviationsAndErrors() {
        let r = osqueryi([], stdin: ".m csv\n.he off\nselect 1, 2;\n.mode json\n.nosuchthing\n")
        #expect(r.out == "1,2\n")
        #expect(r.err == "Error: mode should be one of: column csv line list pretty\nError: unknown command or invalid arguments:  \"nosuchthing\". Enter \".help\" for help\n")
        #expect(r.rc == 1)
    }

    @Test func schemaAllVersionFeaturesTypesShowHelp() {
        let r = osqueryi([], stdin: ".schema uptime\n")
        #expect(r.out == "CREATE TABLE uptime(`days` INTEGER, `hours` INTEGER, `minutes` INTEGER, `seconds` INTEGER, `total_seconds` BIGINT);\n")
        let v = osqueryi([".version"])
        #expect(v.out == "osquery \(OsqueryVersion.version)\nusing SQLite \(Database.sqliteVersion)\n")
        let features = osqueryi([".features"]).out
        #expect(features.contains("disable_events: true\n"), "the shell disables events by default")
        #expect(features.split(separator: "\n").allSatisfy { $0.hasPrefix("disable_") || $0.hasPrefix("enable_") })
        let types = osqueryi([], stdin: ".types select seconds as s, 1 as one from time\n")
        #expect(types.out == "+------+---------+\n| name | type    |\n+------+---------+\n| s    | INTEGER |\n| one  | UNKNOWN |\n+------+---------+\n")
        let all = osqueryi([], stdin: ".all osquery_extensions\n")
        #expect(all.out.contains("| 0    | core | \(OsqueryVersion.version)  | 0.0.0       | /var/osquery/osquery.em | core |\n"))
        #expect(osqueryi([".show"]).out.contains("Shell settings:\n"))
        let help = osqueryi([".help"])
        #expect(help.out == "")
        #expect(help.err.contains(".schema [TABLE]"))
    }

    @Test func exitEchoTimerWidth() {
        let exit = osqueryi([], stdin: "select 1;\n.exit 3\nselect 2;\n")
        #expect(exit.rc == 3)
        #expect(!exit.out.contains("| 2 |"))
        let echo = osqueryi(["--list", "--header=false"], stdin: ".echo on\nselect 5;\n")
        #expect(echo.out == "select 5;\n5\n")
        let timer = osqueryi(["--list", "--header=false"], stdin: ".timer on\nselect 5;\n")
        #expect(timer.out.hasPrefix("5\nRun Time: real "))
        let fields = timer.out.split(separator: "\n")[1].split(separator: " ")
        #expect(fields.count == 8 && fields[4] == "user" && fields[6] == "sys")
        #expect(fields[3].split(separator: ".").last?.count == 3 && fields[5].split(separator: ".").last?.count == 6)
        let width = osqueryi([], stdin: ".mode column\n.width 2 4\nselect 'abc' as a, 'b' as bb;\n")
        #expect(width.out == "a   bb  \n--  ----\nab  b   \n")
    }
}

@Suite(.serialized, .ownThread) struct BuiltBinaryTests {
    /// The REPL on a real pseudo-terminal (util-linux `script` allocates it):
    /// prompts, a multi-line statement, history written to ~/.osquery/.history,
    /// `.exit N` as the exit code.
    @Test func replOnAPseudoTerminal() throws {
        let binary = builtBinary()
        try #require(FileIO.exists(binary), "build osqueryi first: \(binary)")
        try #require(FileIO.exists("/usr/bin/script"), "util-linux script(1) is needed for a pty")
        var template = Array("/tmp/osq-home-XXXXXX".utf8CString)
        let home = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        defer {
            unlink(home + "/.osquery/.history")
            rmdir(home + "/.osquery")
            rmdir(home)
        }
        let r = spawn("/usr/bin/script", ["-qec", binary, "/dev/null"], stdin: "select 40 +\n 2 as answer;\n.exit 5\n", environment: ["HOME=" + home])
        #expect(r.rc == 5)
        #expect(r.out.contains("Using a virtual database. Need help, type '.help'"))
        #expect(r.out.contains("osquery> "))
        #expect(r.out.contains("    ...> "))
        #expect(r.out.contains("| answer |"))
        #expect(r.out.contains("| 42     |"))
        #expect(FileIO.readString(home + "/.osquery/.history") == "select 40 +\n 2 as answer;\n.exit 5\n")
    }

    @Test func exitCodesOfTheRealExecutable() throws {
        let binary = builtBinary()
        try #require(FileIO.exists(binary), "build osqueryi first: \(binary)")
        let ok = spawn(binary, ["SELECT cpu_brand, physical_memory FROM system_info;"])
        #expect(ok.rc == 0)
        #expect(ok.out.hasPrefix("+-"))
        #expect(ok.out.contains("| cpu_brand "))
        let constraint = spawn(binary, ["select * from file"])
        #expect(constraint.rc == 19)
        #expect(constraint.err.contains("Error: Table file was queried without a required column in the WHERE clause\n"))
        #expect(constraint.err.contains("Please see the table documentation: https://osquery.io/schema/#file"))
        let syntax = spawn(binary, ["selec 1"])
        #expect(syntax.rc == 1)
        let piped = spawn(binary, ["--json"], stdin: "select 1 as one;\n")
        #expect(piped.rc == 0)
        #expect(piped.out == "[\n  {\"one\":\"1\"}\n]\n")
        let script = spawn(binary, [], stdin: "select 1;\nselect * from nope;\n")
        #expect(script.rc == 1)
        let viaName = spawn(binary, ["-S", "--list", "--header=false", "select 2"])
        #expect(viaName.out == "2\n")
    }
}

