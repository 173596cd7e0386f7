import Foundation
import OsqueryEngine
import OsqueryEvents
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Why the audit tests cannot run here, or nil: they need root, the kernel's audit netlink, and
/// no other audit daemon (auditd) holding it.
let auditUnavailable: String? = {
    guard getuid() == 0 else { return "needs root (NETLINK_AUDIT)" }
    guard let socket = try? AuditSocket() else { return "the kernel has no audit netlink (CONFIG_AUDIT)" }
    guard case .success(let status) = socket.status() else { return "the kernel does not answer AUDIT_GET" }
    if status.pid != 0, kill(pid_t(status.pid), 0) == 0 { return "another audit daemon (pid \(status.pid)) holds the audit netlink" }
    return nil
}()

/// The kernel's audit state and the rules that carry this core's key.
func auditState() -> (status: AuditStatus, ourRules: Int)? {
    guard let socket = try? AuditSocket(), case .success(let status) = socket.status(),
        case .success(let rules) = socket.request(1013, [], expecting: 1013, dump: true)
    else { return nil }
    return (status, rules.filter { AuditRule.key(of: $0)?.hasPrefix("osquery-swift ") == true }.count)
}

/// An in-process core with the audit publisher configuring the kernel.
final class AuditCore: @unchecked Sendable {  // used by one test at a time
    let hub: EventHub
    let database: Database
    let publisher: AuditPublisher

    init(_ extra: [String: String] = [:]) throws {
        var values = [
            "disable_events": "false", "disable_audit": "false", "audit_allow_config": "true", "audit_allow_sockets": "true",
        ]
        values.merge(extra) { $1 }
        let flags = try makeFlags(values)
        let registry = PluginRegistry()
        hub = EventsRuntime.make(flags: flags, registry: registry, database: InMemoryEventDatabase(), isDaemon: false)
        publisher = hub.publishers.compactMap { $0 as? AuditPublisher }.first!
        database = try Database(registry: registry, flags: flags)
    }

    func rows(_ sql: String) -> [[String: String]] { (try? database.execute(sql).rowMaps()) ?? [] }

    func counter(_ name: String) -> Int {
        Int(rows("SELECT events FROM osquery_events WHERE name = 'auditeventpublisher.\(name)'").first?["events"] ?? "") ?? -1
    }

    /// Runs `action` until `arrived` holds, up to `attempts` times with `seconds` each; a failure
    /// names the publisher's loss counters, the likely reason.
    func probe(
        _ what: String, attempts: Int = 5, seconds: Double = 12, _ action: () async throws -> Void, until arrived: () -> Bool
    ) async throws -> Bool {
        for _ in 0..<attempts {
            try await action()
            if await eventually(seconds, arrived) { return true }
        }
        let losses = ["kernel_lost", "socket_overflows", "partial_events_dropped", "incomplete_events", "malformed_records"]
        Issue.record("\(what) never arrived: \(losses.map { "\($0)=\(counter($0))" }.joined(separator: " "))")
        return false
    }
}

/// osqueryd with audit on and `SELECT … FROM process_events` scheduled.
enum AuditDaemon {
    static func setUp(_ tag: String) throws -> String {
        let dir = try scratchDirectory("auditd-" + tag)
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let config = """
            {"schedule": {"procs": {"query": "SELECT * FROM process_events WHERE path LIKE '%/true'", "interval": 1}}}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        return dir
    }

    static func start(_ dir: String) throws -> Process {
        try FIMDaemon.start(dir, arguments: FIMDaemon.flags(dir).filter { $0 != "--enable_file_events" } + [
            "--disable_audit=false", "--audit_allow_config=true", "--audit_allow_sockets=true",
        ])
    }

    static func waitActive(_ dir: String) async -> Bool {
        await waitUntil(60) {
            (await coreQuery(dir + "/osquery.em", "SELECT active FROM osquery_events WHERE name = 'auditeventpublisher'"))?.first?["active"]
                == "1"
        }
    }

    /// cmdline → how many times the scheduled query logged it.
    static func logged(_ dir: String) -> [String: Int] {
        loggedAdded(dir) { name, columns in name == "procs" ? columns["cmdline"] : nil }
    }
}

/// Runs `/bin/true` with `arguments` in `cwd`; returns its pid.
@discardableResult
func runTrue(_ arguments: [String], in cwd: String) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/true")
    p.arguments = arguments
    p.currentDirectoryURL = URL(fileURLWithPath: cwd)
    try p.run()
    p.waitUntilExit()
    return p.processIdentifier
}

/// A child (perl, Essential on Debian) binds a TCP socket on loopback and connects to it: this
/// process's own sockets are not reported (osquery leaves its own activity out). Returns
/// (child pid, port).
func bindAndConnectOnLoopback() throws -> (pid: Int32, port: Int)? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
    p.arguments = [
        "-MIO::Socket::INET", "-e",
        // A port of its own choosing (bind records show the address given, and port 0 is not one).
        "my $s; for (1..100) { $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 20000 + int(rand(30000)), "
            + "Listen => 1, Proto => 'tcp') and last } $s or die; "
            + "my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $s->sockport, Proto => 'tcp') or die; print $s->sockport;",
    ]
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0, let port = Int(String(decoding: out, as: UTF8.self)) else { return nil }
    return (p.processIdentifier, port)
}

/// Every test here uses the kernel's one audit pid: they run one at a time, and each leaves the
/// kernel's audit state as it found it.
@Suite(.serialized, .enabled(if: auditUnavailable == nil, "\(auditUnavailable ?? "")"))
struct AuditKernelTests {
    @Test func execAndSocketsArriveFromTheKernelAndTheRulesGoAtStop() async throws {
        let before = try #require(auditState())
        let dir = try scratchDirectory("audit-cwd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let core = try AuditCore()
        try await offPool { core.hub.start() }
        let during = try #require(auditState())
        #expect(during.status.pid == UInt32(getpid()) && during.status.enabled == 1 && during.ourRules == 1)
        #expect(during.status.backlogLimit == 4096)
        #expect(core.rows("SELECT active FROM osquery_events WHERE name = 'auditeventpublisher'").first?["active"] == "1")

        // Every probe is repeated: while the whole suite runs, its sockets and execs can fill the
        // kernel's backlog, which then drops records (counted as kernel_lost, as in osquery).
        var tag = ""
        var child: Int32 = 0
        let found = try await core.probe("exec") {
            tag = "tag\(UInt32.random(in: 0...UInt32.max))"
            let t = tag
            child = try await offPool { try runTrue(["hello", t, "with space"], in: dir) }
        } until: {
            !core.rows("SELECT pid FROM process_events WHERE cmdline = '/bin/true hello \(tag) with space'").isEmpty
        }
        #expect(found)
        let row = try #require(core.rows("SELECT * FROM process_events WHERE cmdline LIKE '%\(tag)%'").first)
        let loginUID = (try? String(contentsOfFile: "/proc/self/loginuid", encoding: .utf8)) ?? ""
        #expect(row["pid"] == String(child) && row["parent"] == String(getpid()))
        #expect(row["path"] == URL(fileURLWithPath: "/bin/true").resolvingSymlinksInPath().path)
        #expect(row["cwd"] == dir && row["uid"] == "0" && row["euid"] == "0" && row["auid"] == loginUID)
        #expect(row["syscall"] == "execve" && row["mode"] == "0100755")

        var perl: Int32 = 0
        var port = 0
        let sockets = try await core.probe("bind and connect") {
            (perl, port) = try #require(try await offPool { try bindAndConnectOnLoopback() })
        } until: {
            core.rows("SELECT action FROM socket_events WHERE pid = \(perl) AND (local_port = \(port) OR remote_port = \(port))").count >= 2
        }
        #expect(sockets)
        let bind = core.rows("SELECT * FROM socket_events WHERE action = 'bind' AND local_port = \(port)").first
        #expect(bind?["local_address"] == "127.0.0.1" && bind?["family"] == "2" && bind?["status"] == "succeeded")
        let connect = core.rows("SELECT * FROM socket_events WHERE action = 'connect' AND remote_port = \(port)").first
        #expect(connect?["remote_address"] == "127.0.0.1" && connect?["pid"] == String(perl) && connect?["path"] == "/usr/bin/perl")

        // A user message (what PAM's login writes) reaches user_events through the kernel.
        let user = try AuditSocket()
        let text = "op=login acct=\"\(tag)\" exe=\"/usr/bin/login\" hostname=? addr=? terminal=tty9 res=success"
        let logins = try await core.probe("user message") {
            _ = user.send(1112, Array(text.utf8) + [0])
        } until: {
            !core.rows("SELECT pid FROM user_events WHERE message LIKE '%\(tag)%'").isEmpty
        }
        #expect(logins)
        let login = core.rows("SELECT * FROM user_events WHERE message LIKE '%\(tag)%'").first
        #expect(login?["type"] == "1112" && login?["pid"] == String(getpid()) && login?["terminal"] == "tty9")

        try await offPool { core.hub.stop() }
        let after = try #require(auditState())
        #expect(after.ourRules == 0 && after.status.pid == 0)
        #expect(after.status.enabled == before.status.enabled && after.status.backlogLimit == before.status.backlogLimit)
    }

    /// A daemon killed with SIGKILL leaves its rule, the audit pid and audit enabled; the next
    /// start removes the rule (recognised by its key) and restores what the killed one found.
    @Test func rulesLeftByAKilledDaemonAreRemovedAtTheNextStart() async throws {
        let before = try #require(auditState())
        let dir = try AuditDaemon.setUp("killed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try AuditDaemon.start(dir)
        #expect(await AuditDaemon.waitActive(dir))
        FIMDaemon.signal(daemon, SIGKILL)
        try await offPool { daemon.waitUntilExit() }
        let left = try #require(auditState())
        #expect(left.ourRules == 1 && left.status.enabled == 1)

        let core = try AuditCore()
        try await offPool { core.hub.start() }
        #expect(core.counter("recovered_rules") == 1)
        #expect(auditState()?.ourRules == 1)
        try await offPool { core.hub.stop() }
        let after = try #require(auditState())
        #expect(after.ourRules == 0 && after.status.pid == 0)
        #expect(after.status.enabled == before.status.enabled && after.status.backlogLimit == before.status.backlogLimit)
    }

    /// While another process is the audit daemon, starting says who holds it; once it exits
    /// cleanly, the kernel is as it was.
    @Test func anotherAuditDaemonHoldingTheNetlinkIsNamed() async throws {
        let before = try #require(auditState())
        let dir = try AuditDaemon.setUp("held")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try AuditDaemon.start(dir)
        #expect(await AuditDaemon.waitActive(dir))
        let core = try AuditCore()
        let message = try await offPool { () -> String in
            do throws(EventError) {
                try core.publisher.start()
                core.publisher.stop()
                return ""
            } catch {
                return error.message
            }
        }
        #expect(message.contains("held by pid \(daemon.processIdentifier) (osqueryd)"), "\(message)")
        // The daemon kept the audit pid and still serves.
        #expect(auditState()?.status.pid == UInt32(daemon.processIdentifier))
        #expect(await coreQuery(dir + "/osquery.em", "SELECT 1") != nil)
        FIMDaemon.signal(daemon, SIGTERM)
        try await offPool { daemon.waitUntilExit() }
        let after = try #require(auditState())
        #expect(after.ourRules == 0 && after.status.pid == 0 && after.status.enabled == before.status.enabled)
    }

    /// osqueryd logs each exec once with `SELECT * FROM process_events` scheduled, across a
    /// SIGKILL and a clean restart (events_optimize).
    @Test func scheduledProcessEventsAreLoggedOnceAcrossARestart() async throws {
        let dir = try AuditDaemon.setUp("once")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let work = try scratchDirectory("audit-once-cwd")
        defer { try? FileManager.default.removeItem(atPath: work) }
        var all: [String] = []
        for round in 0..<3 {
            let daemon = try AuditDaemon.start(dir)
            #expect(await AuditDaemon.waitActive(dir))
            if round == 0 {
                let tables = await coreQuery(
                    dir + "/osquery.em", "SELECT name FROM osquery_registry WHERE registry = 'table' AND name LIKE '%_events'")
                let names = Set((tables ?? []).compactMap { $0["name"] })
                let audit: Set = [
                    "process_events", "socket_events", "user_events", "process_file_events", "selinux_events", "apparmor_events", "seccomp_events",
                ]
                #expect(audit.isSubset(of: names), "\(names.sorted())")
            }
            let tag = "round\(round)-\(UInt32.random(in: 0...UInt32.max))"
            for i in 0..<5 {
                try await offPool { _ = try runTrue([tag, String(i)], in: work) }
                all.append("/bin/true \(tag) \(i)")
            }
            let names = all
            #expect(await waitUntil(60) { names.suffix(5).allSatisfy { AuditDaemon.logged(dir)[$0] != nil } })
            FIMDaemon.signal(daemon, round == 0 ? SIGKILL : SIGTERM)
            try await offPool { daemon.waitUntilExit() }
        }
        let logged = AuditDaemon.logged(dir)
        #expect(all.allSatisfy { logged[$0] == 1 }, "\(logged.filter { all.contains($0.key) })")
        #expect(auditState()?.ourRules == 0)
    }
}
