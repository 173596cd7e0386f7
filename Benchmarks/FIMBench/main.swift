// fim-bench (issue 17): the FIM rows of Benchmarks/run.sh, one JSON line each.
//   fim-bench hash DIR          md5+sha1+sha256 of every file in DIR in one read each (FileHasher)
//   fim-bench storm DIR N       N files written under a watched DIR (the daemon's store, FIM on):
//                               events/s, events lost, RSS idle and peak
//   fim-bench select DIR N      N buffered file_events rows: SELECT * through the engine vs a plain
//                               SQLite scan of the same rows
//   fim-bench exec DIR RATE SECONDS  (audit events, issue 19; root) a child execs /bin/true RATE
//                               times a second for SECONDS while the audit publisher (the daemon's
//                               store) records them: share captured, this process's CPU per event
//                               (the bench's own count queries excluded), RSS
//   fim-bench exec-auditd DIR RATE SECONDS  the same storm with Debian's auditd as the audit
//                               daemon (an execve/execveat rule like ours, its log in DIR): auditd's
//                               share captured, CPU per event and RSS; the kernel's audit settings
//                               and rules are put back as they were
internal import CSQLite
import Foundation
import OsqueryDaemon
import OsqueryEngine
import OsqueryEvents
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func status(_ key: String, pid: String = "self") -> Int {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }
    return 0
}

/// VmRSS in KiB from /proc/PID/statm (resident pages): the storms sample it every 100 ms, and
/// this read costs the measured process a tenth of parsing /proc/self/status.
func residentKiB(pid: String = "self") -> Int {
    let fd = open("/proc/\(pid)/statm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return 0 }
    let fields = buffer[0..<n].split(separator: UInt8(ascii: " "))
    guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
    return pages * sysconf(Int32(_SC_PAGESIZE)) / 1024
}

/// This thread's CPU seconds so far.
func threadCPU() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The storm: a perl child forks and execs `/bin/true storm N` RATE times a second for SECONDS,
/// paced by the clock (its own CPU is nobody's measure). Returns the running child.
func startStorm(rate: Int, seconds: Int) -> (Process, Pipe) {
    let generator = Process()
    generator.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
    generator.arguments = [
        "-MTime::HiRes=time,sleep", "-e",
        "my ($r, $s) = @ARGV; my $t0 = time; my $n = 0; while (time - $t0 < $s) { my $p = fork; "
            + "if (!$p) { exec '/bin/true', 'storm', $n; exit 1 } waitpid($p, 0); $n++; my $ahead = $t0 + $n / $r - time; "
            + "sleep($ahead) if $ahead > 0 } print $n",
        String(rate), String(seconds),
    ]
    let pipe = Pipe()
    generator.standardOutput = pipe
    do { try generator.run() } catch { fail("cannot run perl: \(error)") }
    return (generator, pipe)
}

func run(_ path: String, _ arguments: [String]) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    do { try p.run() } catch { return (-1, "\(error)") }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The first executable named `name` in the usual system directories.
func which(_ name: String) -> String? {
    ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + name }.first { access($0, X_OK) == 0 }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("fim-bench: \(message)\n".utf8))
    exit(1)
}

func flags(_ values: [String: String]) -> Flags {
    let f = Flags()
    for (k, v) in values {
        do { try f.set(k, v) } catch { fail("flag \(k): \(error)") }
    }
    return f
}

let args = CommandLine.arguments
guard args.count >= 3 else { fail("usage: fim-bench hash DIR | storm DIR N | select DIR N") }
let dir = args[2]
StatusLog.setSink { _, _ in }

switch args[1] {
case "hash":
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    var bytes = 0
    let start = now()
    for name in names {
        switch FileHasher.hash(path: dir + "/" + name, limit: UInt64.max) {
        case .success: break
        case .failure: fail("cannot hash \(name)")
        }
    }
    let seconds = now() - start
    for name in names {
        var st = stat()
        if stat(dir + "/" + name, &st) == 0 { bytes += Int(st.st_size) }
    }
    print("{\"files\": \(names.count), \"bytes\": \(bytes), \"seconds\": \(seconds), \"mb_per_s\": \(Double(bytes) / 1e6 / seconds)}")

case "storm":
    let count = Int(args.count > 3 ? args[3] : "100000") ?? 100_000
    let watched = dir + "/watched"
    try? FileManager.default.createDirectory(atPath: watched, withIntermediateDirectories: true)
    let store: DaemonStore
    do { store = try DaemonStore.open(path: dir + "/osquery.db") } catch { fail(error.message) }
    // events_max above the storm: every event stays buffered, so none counts as lost.
    let f = flags(["disable_events": "false", "enable_file_events": "true", "events_max": String(count * 4)])
    let registry = PluginRegistry()
    let hub = EventsRuntime.make(flags: f, registry: registry, database: store, isDaemon: true)
    var config = EventsConfiguration()
    config.filePaths = ["storm": [watched + "/"]]
    hub.configure(config)
    hub.start()
    usleep(200_000)
    let idle = status("VmRSS")
    let subscriber = hub.subscribers[0]
    let start = now()
    var peak = idle
    let payload = "storm\n"
    for i in 0..<count {
        // One open/write/close: CREATED, UPDATED (modify), UPDATED (close_write).
        let fd = open(watched + "/f\(i)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { fail("cannot create file \(i)") }
        _ = payload.withCString { write(fd, $0, 6) }
        close(fd)
        if i % 4096 == 0 { peak = max(peak, status("VmRSS")) }
    }
    let expected = count * 3
    // Until every event is buffered, or the count has stopped growing for 2 s (events the kernel
    // dropped in a queue overflow never come): the rate is taken up to the last one buffered.
    var got = 0
    var lastGrowth = now()
    let deadline = now() + 120
    while now() < deadline {
        let buffered = subscriber.bufferedCount()
        if buffered > got {
            got = buffered
            lastGrowth = now()
        }
        peak = max(peak, status("VmRSS"))
        if got >= expected || now() - lastGrowth > 2 { break }
        usleep(50_000)
    }
    let seconds = lastGrowth - start
    let overflows = hub.publishers[0].status.counters.first { $0.name == "queue_overflows" }?.value ?? 0
    hub.stop()
    print(
        "{\"files\": \(count), \"events\": \(got), \"expected\": \(expected), \"lost\": \(max(0, expected - got)), \"queue_overflows\": \(overflows), \"seconds\": \(seconds), \"events_per_s\": \(Double(got) / seconds), \"rss_idle_kib\": \(idle), \"rss_peak_kib\": \(peak)}"
    )

case "select":
    let count = Int(args.count > 3 ? args[3] : "50000") ?? 50_000
    let store: DaemonStore
    do { store = try DaemonStore.open(path: dir + "/osquery.db") } catch { fail(error.message) }
    let f = flags(["disable_events": "false", "events_max": String(count * 2)])
    let registry = PluginRegistry()
    let hub = EventsRuntime.make(flags: f, registry: registry, database: store, isDaemon: true)
    let subscriber = hub.subscribers[0]
    for i in 0..<count {
        subscriber.add([
            .text("/etc/some/file\(i)"), "etc", "UPDATED", 0, .integer(Int64(i)), 0, 0, "0644", 4096, 1_700_000_000, 1_700_000_000,
            1_700_000_000, .text(String(repeating: "a", count: 32)), .text(String(repeating: "b", count: 40)),
            .text(String(repeating: "c", count: 64)), 1,
        ])
    }
    _ = subscriber.bufferedCount()
    let database: Database
    do { database = try Database(registry: registry, flags: f) } catch { fail(error.message) }
    func ours() -> Double {
        let start = now()
        var rows = 0
        do {
            try database.execute("SELECT * FROM file_events") { set in rows += set.rowCount }
        } catch { fail(error.message) }
        if rows != count { fail("SELECT gave \(rows) rows, expected \(count)") }
        return now() - start
    }
    // The same rows read straight from the store's table, every column into a value.
    func plain() -> Double {
        store.withHandle { db -> Double in
            let start = now()
            var s: OpaquePointer?
            guard sqlite3_prepare_v2(db, "SELECT * FROM \"events.file_events\"", -1, &s, nil) == SQLITE_OK, let s else { return 0 }
            defer { sqlite3_finalize(s) }
            var rows = 0
            var values: [SQLValue] = []
            values.reserveCapacity(18)
            while sqlite3_step(s) == SQLITE_ROW {
                values.removeAll(keepingCapacity: true)
                for c in 0..<sqlite3_column_count(s) {
                    switch sqlite3_column_type(s, c) {
                    case SQLITE_INTEGER: values.append(.integer(sqlite3_column_int64(s, c)))
                    case SQLITE_TEXT: values.append(.text(String(cString: sqlite3_column_text(s, c))))
                    default: values.append(.null)
                    }
                }
                rows += 1
            }
            if rows != count { fail("plain scan gave \(rows) rows") }
            return now() - start
        }
    }
    _ = ours()
    _ = plain()
    var a: [Double] = [], b: [Double] = []
    for _ in 0..<5 {
        a.append(ours())
        b.append(plain())
    }
    a.sort()
    b.sort()
    print("{\"rows\": \(count), \"ours_ms\": \(a[2] * 1000), \"plain_ms\": \(b[2] * 1000)}")

case "exec":
    let rate = Int(args.count > 3 ? args[3] : "1000") ?? 1000
    let seconds = Int(args.count > 4 ? args[4] : "10") ?? 10
    let store: DaemonStore
    do { store = try DaemonStore.open(path: dir + "/osquery.db") } catch { fail(error.message) }
    let f = flags([
        "disable_events": "false", "disable_audit": "false", "audit_allow_config": "true", "events_max": String(rate * seconds * 4),
    ])
    let registry = PluginRegistry()
    let hub = EventsRuntime.make(flags: f, registry: registry, database: store, isDaemon: true)
    hub.start()
    guard let audit = hub.publishers.first(where: { $0.name == "auditeventpublisher" }), audit.status.active else {
        fail("the audit publisher did not start (root, no auditd?)")
    }
    let database: Database
    do { database = try Database(registry: registry, flags: f) } catch { fail(error.message) }
    usleep(200_000)
    let idle = residentKiB()
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpuStart = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    let start = now()
    let (generator, pipe) = startStorm(rate: rate, seconds: seconds)
    var peak = idle
    while generator.isRunning {
        peak = max(peak, residentKiB())
        usleep(100_000)
    }
    let execs = Int(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)) ?? 0
    let processEvents = hub.subscribers.first { $0.name == "process_events" }
    // The bench's count queries are its instrument, not the daemon's work: their CPU (this
    // thread's, after the rows were written to the store, which counts) is taken out.
    var queryCPU = 0.0
    func captured() -> Int {
        processEvents?.flush()
        let before = threadCPU()
        defer { queryCPU += threadCPU() - before }
        let r = try? database.execute("SELECT count(*) AS n FROM process_events WHERE parent = \(generator.processIdentifier) AND cmdline LIKE '/bin/true storm %'")
        return Int(r?.rowMaps().first?["n"] ?? "") ?? 0
    }
    var got = 0
    let deadline = now() + 30
    while now() < deadline {
        got = captured()
        peak = max(peak, residentKiB())
        if got >= execs { break }
        usleep(250_000)
    }
    let elapsed = now() - start
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6 - cpuStart - queryCPU
    let lost = audit.status.counters.first { $0.name == "kernel_lost" }?.value ?? 0
    hub.stop()
    print(
        "{\"execs\": \(execs), \"captured\": \(got), \"share\": \(execs > 0 ? Double(got) / Double(execs) : 0), \"kernel_lost\": \(lost), \"seconds\": \(elapsed), \"cpu_s\": \(cpu), \"query_cpu_s\": \(queryCPU), \"cpu_us_per_event\": \(got > 0 ? cpu * 1e6 / Double(got) : 0), \"rss_idle_kib\": \(idle), \"rss_peak_kib\": \(peak)}"
    )

case "exec-auditd":
    // auditd and our publisher cannot both be the audit daemon: this one runs alone.
    let rate = Int(args.count > 3 ? args[3] : "1000") ?? 1000
    let seconds = Int(args.count > 4 ? args[4] : "10") ?? 10
    guard let auditd = which("auditd"), let auditctl = which("auditctl") else { fail("auditd is not installed (apt-get install auditd)") }
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let socket: AuditSocket
    do { socket = try AuditSocket() } catch { fail(error.message) }
    guard case .success(let original) = socket.status() else { fail("cannot read the kernel's audit status") }
    if original.pid != 0, kill(pid_t(original.pid), 0) == 0 { fail("the audit netlink is held by pid \(original.pid)") }
    // Debian's auditd.conf as shipped, but for its log: in DIR, large enough for the whole storm.
    guard let shipped = try? String(contentsOfFile: "/etc/audit/auditd.conf", encoding: .utf8) else { fail("no /etc/audit/auditd.conf") }
    let log = dir + "/audit.log"
    let conf = shipped.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
        if line.hasPrefix("log_file ") || line.hasPrefix("log_file=") { return "log_file = \(log)" }
        if line.hasPrefix("max_log_file ") || line.hasPrefix("max_log_file=") { return "max_log_file = 1024" }
        return String(line)
    }.joined(separator: "\n")
    unlink(log)
    guard FileManager.default.createFile(atPath: dir + "/auditd.conf", contents: Data(conf.utf8), attributes: [.posixPermissions: 0o600]) else {
        fail("cannot write \(dir)/auditd.conf")
    }
    let key = "fim-bench-auditd-peer"
    let rule = ["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat", "-k", key]
    let daemon = Process()
    // setpriv's parent-death signal: auditd does not outlive a killed bench.
    daemon.executableURL = URL(fileURLWithPath: which("setpriv") ?? auditd)
    daemon.arguments = (which("setpriv") != nil ? ["--pdeathsig", "TERM", "--", auditd] : []) + ["-n", "-c", dir]
    daemon.standardOutput = FileHandle.nullDevice
    daemon.standardError = FileHandle.nullDevice
    /// Stops auditd and puts back the kernel's settings and rules as they were.
    func restore() {
        if daemon.isRunning {
            daemon.terminate()
            let until = now() + 10
            while daemon.isRunning && now() < until { usleep(20_000) }
        }
        _ = run(auditctl, ["-d", "always,exit", "-F", "arch=b64", "-S", "execve,execveat", "-k", key])
        _ = run(auditctl, [
            "-e", String(original.enabled), "-b", String(original.backlogLimit), "--backlog_wait_time", String(original.backlogWaitTime),
            "-f", String(original.failure),
        ])
        if case .success(let s) = socket.status(), s.pid != original.pid || s.enabled != original.enabled || s.backlogLimit != original.backlogLimit {
            FileHandle.standardError.write(Data("fim-bench: the kernel's audit state was not restored: pid \(s.pid) enabled \(s.enabled) backlog_limit \(s.backlogLimit)\n".utf8))
        }
    }
    func bail(_ message: String) -> Never {
        restore()
        fail(message)
    }
    do { try daemon.run() } catch { bail("cannot run auditd: \(error)") }
    // auditd is the audit daemon once the kernel names it.
    var auditdPID: UInt32 = 0
    let ready = now() + 10
    while now() < ready {
        if case .success(let s) = socket.status(), s.pid != 0, s.pid != original.pid { auditdPID = s.pid; break }
        if !daemon.isRunning { bail("auditd exited at start") }
        usleep(50_000)
    }
    if auditdPID == 0 { bail("auditd did not become the audit daemon") }
    // Our settings for the same storm: backlog 4096, no wait, the exec syscalls.
    let added = run(auditctl, ["-b", "4096", "--backlog_wait_time", "0"] + rule)
    if added.status != 0 { bail("auditctl: \(added.output)") }
    var lostStart: UInt32 = 0
    if case .success(let s) = socket.status() { lostStart = s.lost }
    func cpu(_ pid: UInt32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let paren = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: paren)...].split(separator: " ")
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
    usleep(200_000)
    let idle = residentKiB(pid: String(auditdPID))
    let cpuStart = cpu(auditdPID)
    let start = now()
    let (generator, pipe) = startStorm(rate: rate, seconds: seconds)
    var peak = idle
    while generator.isRunning {
        peak = max(peak, residentKiB(pid: String(auditdPID)))
        usleep(100_000)
    }
    let execs = Int(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)) ?? 0
    // Captured: the storm's EXECVE records in auditd's log.
    let marker = Array(" a0=\"/bin/true\" a1=\"storm\" ".utf8)
    func captured() -> Int {
        guard let data = FileManager.default.contents(atPath: log) else { return 0 }
        return data.withUnsafeBytes { raw -> Int in
            let b = raw.bindMemory(to: UInt8.self)
            var n = 0
            var i = 0
            while i + marker.count <= b.count {
                if b[i] == marker[0], memcmp(b.baseAddress! + i, marker, marker.count) == 0 {
                    n += 1
                    i += marker.count
                } else {
                    i += 1
                }
            }
            return n
        }
    }
    var got = 0
    let deadline = now() + 30
    var lastGrowth = now()
    while now() < deadline {
        let c = captured()
        if c > got { (got, lastGrowth) = (c, now()) }
        peak = max(peak, residentKiB(pid: String(auditdPID)))
        if got >= execs || now() - lastGrowth > 5 { break }
        usleep(250_000)
    }
    let elapsed = now() - start
    let used = cpu(auditdPID) - cpuStart
    var lost: UInt32 = 0
    if case .success(let s) = socket.status() { lost = s.lost &- lostStart }
    restore()
    print(
        "{\"execs\": \(execs), \"captured\": \(got), \"share\": \(execs > 0 ? Double(got) / Double(execs) : 0), \"kernel_lost\": \(lost), \"seconds\": \(elapsed), \"cpu_s\": \(used), \"cpu_us_per_event\": \(got > 0 ? used * 1e6 / Double(got) : 0), \"rss_idle_kib\": \(idle), \"rss_peak_kib\": \(peak)}"
    )

default:
    fail("unknown mode \(args[1])")
}
