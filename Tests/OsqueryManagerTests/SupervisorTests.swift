import Foundation
import Logging
import OsqueryManager
import OsqueryProtocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Real files and real processes: autoload checks on files with real owners and modes, and the
// supervisor launching shell-script extensions under short temp dirs in /tmp (not sticky: mkdtemp
// makes them 0700).

/// A fresh private directory under /tmp, removed by `remove()`.
struct TempDir {
    let path: String

    init() {
        var template = Array("/tmp/osqsup.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    @discardableResult
    func write(_ name: String, _ text: String, mode: mode_t) -> String {
        let p = file(name)
        let parent = (p as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        // O_CLOEXEC: a child another test forks meanwhile must not keep this file open for
        // writing, or executing it fails with ETXTBSY until that child exits.
        let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        if fd >= 0 {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        chmod(p, mode)
        return p
    }

    @discardableResult
    func mkdir(_ name: String, mode: mode_t) -> String {
        let p = file(name)
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        chmod(p, mode)
        return p
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
func eventually(_ timeout: Duration = .seconds(60), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

/// Runs `body`, then stops `supervisor` even when `body` throws, so a failing test leaves no
/// processes behind (`stop` is idempotent, so the body may stop it too).
func alwaysStopping(_ supervisor: ExtensionSupervisor, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        await supervisor.stop(grace: .seconds(2))
        throw error
    }
    await supervisor.stop(grace: .seconds(2))
}

func processExists(_ pid: Int32) -> Bool {
    kill(pid, 0) == 0 || errno != ESRCH
}

let quietLogger = Logger(label: "test.supervisor") { _ in SwiftLogNoOpLogHandler() }

// MARK: - Autoload

@Suite("Autoload")
struct AutoloadTests {
    @Test func linesAreTrimmedAndCommentsSkipped() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let good = dir.write("good.ext", "#!/bin/sh\n", mode: 0o755)
        let other = dir.write("other.ext", "#!/bin/sh\n", mode: 0o750)
        let list = dir.write(
            "extensions.load",
            "# a comment\n; another comment\n\n   \n\t\(good)  \r\n  # \(other)\n;\(other)\n\(other)\n",
            mode: 0o644)
        let result = try Autoload.load(file: list, logger: quietLogger)
        #expect(result.accepted == [good, other])
        #expect(result.refused.isEmpty)
    }

    @Test func missingAutoloadFileThrows() {
        #expect(throws: AutoloadError.self) {
            try Autoload.load(file: "/tmp/osqsup-definitely-missing/extensions.load", logger: quietLogger)
        }
    }

    @Test func eachCheckRefusesWithItsReason() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let good = dir.write("good.ext", "x", mode: 0o755)
        let groupWritable = dir.write("gw.ext", "x", mode: 0o775)
        let worldWritable = dir.write("ww.ext", "x", mode: 0o757)
        let noExec = dir.write("noexec.ext", "x", mode: 0o644)
        let wrongSuffix = dir.write("wrong.sh", "x", mode: 0o755)
        let missing = dir.file("missing.ext")
        dir.mkdir("sticky", mode: 0o1777)
        let inSticky = dir.write("sticky/s.ext", "x", mode: 0o755)
        // Order: the owner-execute check comes before world-writable.
        let noExecWorldWritable = dir.write("both.ext", "x", mode: 0o646)
        // A sticky parent wins over everything after it, even a bad suffix.
        let stickyWrongSuffix = dir.write("sticky/s.txt", "x", mode: 0o644)

        let lines = [good, groupWritable, worldWritable, noExec, wrongSuffix, missing, inSticky,
                     noExecWorldWritable, stickyWrongSuffix]
        let result = Autoload.parse(contents: lines.joined(separator: "\n"), logger: quietLogger)
        #expect(result.accepted == [good])
        #expect(result.refused == [
            AutoloadRejection(path: groupWritable, reason: .groupWritable),
            AutoloadRejection(path: worldWritable, reason: .worldWritable),
            AutoloadRejection(path: noExec, reason: .notExecutable),
            AutoloadRejection(path: wrongSuffix, reason: .badSuffix),
            AutoloadRejection(path: missing, reason: .missing),
            AutoloadRejection(path: inSticky, reason: .stickyParentDirectory),
            AutoloadRejection(path: noExecWorldWritable, reason: .notExecutable),
            AutoloadRejection(path: stickyWrongSuffix, reason: .stickyParentDirectory),
        ])
    }

    // Only root can give a file away (CI runs as root).
    @Test(.enabled(if: getuid() == 0)) func fileOwnedByAnotherUserIsRefused() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let owned = dir.write("nobody.ext", "x", mode: 0o755)
        try #require(chown(owned, 65534, 65534) == 0)
        let result = Autoload.parse(contents: owned, logger: quietLogger)
        #expect(result.accepted.isEmpty)
        #expect(result.refused == [AutoloadRejection(path: owned, reason: .unsafeOwner(uid: 65534))])
        #expect(Autoload.launchRefusal(path: owned, allowUnsafe: false) == .unsafeOwner(uid: 65534))
        #expect(Autoload.safeToLaunch(path: owned, allowUnsafe: true))
    }

    @Test func directoryExpandsRecursively() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let a = dir.write("exts/a.ext", "x", mode: 0o755)
        let b = dir.write("exts/nested/deeper/b.ext", "x", mode: 0o755)
        let c = dir.write("exts/nested/c.txt", "x", mode: 0o755)
        let d = dir.write("exts/nested/d.ext", "x", mode: 0o644)
        let result = Autoload.parse(contents: "  \(dir.file("exts"))/  \n", logger: quietLogger)
        #expect(result.accepted == [a, b])
        #expect(Set(result.refused) == [
            AutoloadRejection(path: c, reason: .badSuffix),
            AutoloadRejection(path: d, reason: .notExecutable),
        ])
    }

    @Test func allowUnsafeSkipsOnlyThePermissionChecks() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let worldWritable = dir.write("ww.ext", "x", mode: 0o757)
        let noExec = dir.write("noexec.ext", "x", mode: 0o644)
        dir.mkdir("sticky", mode: 0o1777)
        let inSticky = dir.write("sticky/s.ext", "x", mode: 0o755)
        let wrongSuffix = dir.write("wrong.sh", "x", mode: 0o755)
        let missing = dir.file("missing.ext")
        var lines = [worldWritable, noExec, inSticky, wrongSuffix, missing]
        var other: String?
        if getuid() == 0 {
            let o = dir.write("nobody.ext", "x", mode: 0o755)
            #expect(chown(o, 65534, 65534) == 0)
            lines.append(o)
            other = o
        }
        let result = Autoload.parse(contents: lines.joined(separator: "\n"), allowUnsafe: true, logger: quietLogger)
        #expect(result.accepted == [worldWritable, noExec, inSticky] + (other.map { [$0] } ?? []))
        #expect(result.refused == [
            AutoloadRejection(path: wrongSuffix, reason: .badSuffix),
            AutoloadRejection(path: missing, reason: .missing),
        ])
    }

    @Test func launchCheckIgnoresSuffixButRefusesDirectories() {
        let dir = TempDir()
        defer { dir.remove() }
        let script = dir.write("tool", "x", mode: 0o755)
        let sub = dir.mkdir("sub.ext", mode: 0o755)
        #expect(Autoload.safeToLaunch(path: script, allowUnsafe: false))
        #expect(Autoload.launchRefusal(path: sub, allowUnsafe: false) == .isDirectory)
        #expect(Autoload.launchRefusal(path: dir.file("nope"), allowUnsafe: true) == .missing)
    }

    @Test func refusalsAreLogged() {
        let dir = TempDir()
        defer { dir.remove() }
        let bad = dir.write("bad.ext", "x", mode: 0o644)
        let sink = LogSink()
        let logger = Logger(label: "test") { _ in sink }
        _ = Autoload.parse(contents: bad, logger: logger)
        let lines = sink.lines
        #expect(lines.count == 1)
        #expect(lines.first?.contains(bad) == true)
        #expect(lines.first?.contains("not executable") == true)
    }
}

/// Collects log messages (warning and above) for assertions.
final class LogSink: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    var lines: [String] { lock.withLock { stored } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= .warning else { return }
        lock.withLock { stored.append("\(event.message)") }
    }
}

// MARK: - Supervisor

/// A script's own path: the core runs it through a descriptor, so `$0` is `/dev/fd/N`, which
/// the shell holds open.
let scriptPath = #"self=$0; case $self in /dev/fd/*) self=$(readlink "/proc/$$/fd/${self#/dev/fd/}");; esac"#

/// Records argv (one `ARG=` line each, the script's path first), OSQUERY_EXTENSION, `$$` and two
/// inherited variables into `record` next to itself, atomically, then becomes `sleep`.
let recordingScript = """
    #!/bin/sh
    \(scriptPath)
    d=$(dirname "$self")
    {
      for a in "$self" "$@"; do printf 'ARG=%s\\n' "$a"; done
      printf 'ENV=%s\\n' "$OSQUERY_EXTENSION"
      printf 'PID=%s\\n' "$$"
      printf 'PATHV=%s\\n' "$PATH"
      printf 'EXTRA=%s\\n' "$OSQ_SUP_EXTRA"
    } > "$d/record.tmp.$$"
    mv "$d/record.tmp.$$" "$d/record"
    exec sleep 1000
    """

struct Record: Equatable {
    var args: [String] = []
    var env = ""
    var pid = ""
    var path = ""
    var extra = ""

    init?(file: String) {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("ARG=") { args.append(String(line.dropFirst(4))) }
            if line.hasPrefix("ENV=") { env = String(line.dropFirst(4)) }
            if line.hasPrefix("PID=") { pid = String(line.dropFirst(4)) }
            if line.hasPrefix("PATHV=") { path = String(line.dropFirst(6)) }
            if line.hasPrefix("EXTRA=") { extra = String(line.dropFirst(6)) }
        }
    }
}

@Suite("ExtensionSupervisor")
struct SupervisorTests {
    @Test func argumentsAreSeparateTokens() {
        let quiet = ExtensionSupervisor.Configuration(socket: "/tmp/x.em", timeout: "3", interval: "5")
        #expect(quiet.arguments == ["--socket", "/tmp/x.em", "--timeout", "3", "--interval", "5"])
        var verbose = quiet
        verbose.verbose = true
        #expect(verbose.arguments == ["--verbose", "--socket", "/tmp/x.em", "--timeout", "3", "--interval", "5"])
    }

    @Test func launchesWithExactArgvAndOwnPidThenRelaunchesAfterKill() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let script = dir.write("rec.ext", recordingScript, mode: 0o755)
        let record = dir.file("record")
        let socket = dir.file("osquery.em")
        let config = ExtensionSupervisor.Configuration(
            socket: socket, timeout: "4", interval: "2", verbose: true,
            environment: ["OSQUERY_EXTENSION": "stale", "OSQ_SUP_EXTRA": "extra value"])
        let supervisor = ExtensionSupervisor(paths: [script], configuration: config, logger: quietLogger)
        supervisor.start()
        try await alwaysStopping(supervisor) {
            var seen: [Int32] = []

            let first = try #require(supervisor.children.first?.pid)
            seen.append(first)
            #expect(await eventually { Record(file: record)?.pid == String(first) })
            let r = try #require(Record(file: record))
            #expect(r.args == [script, "--verbose", "--socket", socket, "--timeout", "4", "--interval", "2"])
            #expect(r.env == String(first))
            #expect(r.extra == "extra value")
            #expect(r.path == (ProcessInfo.processInfo.environment["PATH"] ?? ""))
            #expect(supervisor.children.first?.launchCount == 1)

            // kill -9: reaped, relaunched (after the 1 s initial back-off) and recorded again.
            #expect(kill(first, SIGKILL) == 0)
            #expect(await eventually { supervisor.children.first?.launchCount == 2 })
            let child = try #require(supervisor.children.first)
            #expect(child.lastExit == .signaled(SIGKILL))
            let second = try #require(child.pid)
            seen.append(second)
            #expect(second != first)
            #expect(!processExists(first))
            #expect(await eventually { Record(file: record)?.pid == String(second) })
            let r2 = try #require(Record(file: record))
            #expect(r2.env == String(second))
            #expect(r2.args == r.args)

            await supervisor.stop(grace: .seconds(5))
            #expect(supervisor.children.first?.pid == nil)
            #expect(supervisor.children.first?.lastExit == .signaled(SIGTERM))
            for pid in seen { #expect(!processExists(pid)) }
        }
    }

    @Test func quietConfigurationHasNoVerboseFlag() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let script = dir.write("rec.ext", recordingScript, mode: 0o755)
        let supervisor = ExtensionSupervisor(
            paths: [script], configuration: .init(socket: "/tmp/q.em"), logger: quietLogger)
        supervisor.start()
        try await alwaysStopping(supervisor) {
            let pid = try #require(supervisor.children.first?.pid)
            #expect(await eventually { Record(file: dir.file("record"))?.pid == String(pid) })
            #expect(Record(file: dir.file("record"))?.args
                == [script, "--socket", "/tmp/q.em", "--timeout", "3", "--interval", "3"])
            await supervisor.stop(grace: .seconds(5))
            #expect(!processExists(pid))
        }
    }

    @Test func crashLoopIsBackedOff() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let script = dir.write("crash.ext", "#!/bin/sh\nexit 3\n", mode: 0o755)
        let supervisor = ExtensionSupervisor(
            paths: [script], configuration: .init(socket: "/tmp/c.em"), logger: quietLogger)
        supervisor.start()
        try await alwaysStopping(supervisor) {
            // Relaunched at all: wait for the second launch (bounded, not timed).
            #expect(await eventually(.seconds(60)) { (supervisor.children.first?.launchCount ?? 0) >= 2 })
            try await Task.sleep(for: .seconds(2))
            let child = try #require(supervisor.children.first)
            // Back-off 1 s, 2 s, 4 s, 8 s…: at most a handful of launches in these
            // seconds, however loaded the machine; a 100 ms retry loop would make dozens.
            #expect(child.launchCount >= 2)
            #expect(child.launchCount <= 6)
            #expect(child.lastExit == .exited(3))
            await supervisor.stop(grace: .seconds(1))
        }
    }

    @Test func ignoringSigtermEndsWithSigkillAfterGrace() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let script = dir.write("stubborn.ext", "#!/bin/sh\ntrap '' TERM\n\(scriptPath)\necho up > \"$(dirname \"$self\")/up\"\nexec sleep 1000\n", mode: 0o755)
        let supervisor = ExtensionSupervisor(
            paths: [script], configuration: .init(socket: "/tmp/s.em"), logger: quietLogger)
        supervisor.start()
        try await alwaysStopping(supervisor) {
            let pid = try #require(supervisor.children.first?.pid)
            #expect(await eventually { FileManager.default.fileExists(atPath: dir.file("up")) })
            let started = ContinuousClock.now
            await supervisor.stop(grace: .milliseconds(500))
            let took = ContinuousClock.now - started
            #expect(took >= .milliseconds(500))
            #expect(supervisor.children.first?.lastExit == .signaled(SIGKILL))
            #expect(supervisor.children.first?.pid == nil)
            #expect(!processExists(pid))
        }
    }

    @Test func unsafeFileIsNotLaunchedAndIsRetried() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let script = dir.write("rec.ext", recordingScript, mode: 0o757)  // world-writable
        let supervisor = ExtensionSupervisor(
            paths: [script],
            configuration: .init(socket: "/tmp/u.em", initialBackoff: .milliseconds(200)),
            logger: quietLogger)
        supervisor.start()
        try await alwaysStopping(supervisor) {
            #expect(supervisor.children.first?.refusal == .worldWritable)
            #expect(supervisor.children.first?.launchCount == 0)
            // Fixed: the next (backed-off) attempt launches it.
            chmod(script, 0o755)
            #expect(await eventually { supervisor.children.first?.launchCount == 1 })
            #expect(supervisor.children.first?.refusal == nil)
            let pid = try #require(supervisor.children.first?.pid)
            await supervisor.stop(grace: .seconds(5))
            #expect(!processExists(pid))
        }
    }

    @Test func addedPathIsLaunchedAndStopIsIdempotent() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let script = dir.write("late.ext", recordingScript, mode: 0o755)
        let supervisor = ExtensionSupervisor(paths: [], configuration: .init(socket: "/tmp/a.em"), logger: quietLogger)
        supervisor.start()
        try await alwaysStopping(supervisor) {
            #expect(supervisor.add(path: script))
            #expect(!supervisor.add(path: script))
            #expect(await eventually { supervisor.children.first?.pid != nil })
            let pid = try #require(supervisor.children.first?.pid)
            await supervisor.stop(grace: .seconds(5))
            await supervisor.stop(grace: .seconds(5))
            #expect(!processExists(pid))
            #expect(!supervisor.add(path: dir.file("other.ext")))
        }
    }
}

// MARK: - The PyPI-osquery extension, autoloaded and supervised against the Python reference manager

/// The repository root, from this file's path.
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

let pythonPeersReady =
    FileManager.default.isExecutableFile(atPath: repoRoot + "/.venv/bin/python3")
    && FileManager.default.fileExists(atPath: repoRoot + "/Tests/Peers/python/reference_manager.py")

@Suite("Python extension under the supervisor")
struct PythonExtensionTests {
    @Test(.enabled(if: pythonPeersReady, "needs .venv (scripts/install-test-deps.sh) and reference_manager.py"))
    func autoloadedPythonExtensionRegistersAndServesItsTable() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let socket = dir.file("em")
        let recordFile = dir.file("py.jsonl")
        let wrapper = repoRoot + "/Tests/Peers/python/osquery_extension.ext"

        let manager = Process()
        manager.executableURL = URL(fileURLWithPath: repoRoot + "/.venv/bin/python3")
        manager.arguments = [repoRoot + "/Tests/Peers/python/reference_manager.py", socket]
        manager.standardOutput = FileHandle.nullDevice
        try manager.run()
        // SIGKILL, not terminate(): Foundation's Process starts the child with this thread's signal
        // mask, in which SIGTERM may be blocked, and waitUntilExit would then spin forever.
        defer {
            kill(manager.processIdentifier, SIGKILL)
            manager.waitUntilExit()
        }
        #expect(await eventually { access(socket, F_OK) == 0 })

        let list = dir.write("extensions.load", "# the PyPI osquery extension\n\(wrapper)\n", mode: 0o644)
        let autoload = try Autoload.load(file: list, logger: quietLogger)
        #expect(autoload.accepted == [wrapper])
        let sink = LogSink()
        let supervisor = ExtensionSupervisor(
            paths: autoload.accepted,
            configuration: .init(socket: socket, timeout: "3", interval: "1", environment: ["OSQ_PY_EXT_RECORD": recordFile]),
            logger: Logger(label: "test.python") { _ in sink })
        supervisor.start()
        try await alwaysStopping(supervisor) {

            let client = ExtensionManagerClient(path: socket)
            defer { client.close() }
            var registered = false
            let deadline = ContinuousClock.now + .seconds(60)
            while !registered, ContinuousClock.now < deadline {
                if let list = try? await client.extensions(timeout: .seconds(5)) {
                    registered = list.values.contains { $0.name == "py_ext" && $0.version == "1.0.0" }
                }
                if !registered { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(registered)
            let reply = try await client.query("SELECT name, value, big, ratio FROM py_table WHERE name = 'gamma'", timeout: .seconds(10))
            #expect(reply.status.code == 0)
            #expect(reply.response.map { $0.dictionary } == [
                ["name": "gamma", "value": "2147483647", "big": "9223372036854775807", "ratio": "-3.0"],
            ])
            let recorded = (try? String(contentsOfFile: recordFile, encoding: .utf8)) ?? ""
            #expect(recorded.contains(#""plugin": "py_table""#))
            #expect(recorded.contains(#""action": "generate""#))

            let pid = try #require(supervisor.children.first?.pid, "\(supervisor.children) \(sink.lines)")
            #expect(supervisor.children.first?.launchCount == 1, "\(sink.lines)")
            await supervisor.stop(grace: .seconds(5))
            #expect(supervisor.children.first?.lastExit != nil)
            #expect(!processExists(pid))
        }
    }
}
