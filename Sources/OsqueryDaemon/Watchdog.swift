import Foundation
import Synchronization
public import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// The watchdog's limits (core.md §2.11): a level's profile with the
/// `--watchdog_*` overrides applied.
public struct WatchdogLimits: Sendable, Equatable {
    /// Resident-memory growth over the worker's first measurement, in MB.
    public var memoryMB: UInt64
    /// CPU (user + system, all cores) per check window, in percent of one window × cores.
    public var utilizationPercent: UInt64
    /// Seconds over the CPU limit before the worker is stopped.
    public var latencySeconds: UInt64
    /// osquery's RESPAWN_LIMIT, used twice as osquery does: a worker that
    /// dies younger than this many seconds counts as a quick respawn, and
    /// the watcher gives up (exit 1) once that many quick respawns happened.
    public var minimumLifetime: UInt64
    /// The base of the pause before a quick respawn (2^n seconds are added).
    public var respawnDelay: UInt64
    public var maxRespawnDelay: UInt64
    /// Grace after a worker starts before limits are enforced (`--watchdog_delay`).
    public var enforcementDelay: UInt64
    /// Between the stop request (SIGUSR1) and SIGKILL.
    public var forcedShutdownDelay: UInt64
    public var checkInterval: UInt64 = 3

    public static func from(_ flags: Flags) -> WatchdogLimits {
        let level = flags[.watchdogLevel]
        var limits: WatchdogLimits
        switch level {
        case 1:
            limits = WatchdogLimits(
                memoryMB: 100, utilizationPercent: 5, latencySeconds: 6, minimumLifetime: 4, respawnDelay: 5,
                maxRespawnDelay: 600, enforcementDelay: 60, forcedShutdownDelay: 4)
        case -1:
            limits = WatchdogLimits(
                memoryMB: 10000, utilizationPercent: 100, latencySeconds: 1000, minimumLifetime: 1000, respawnDelay: 1,
                maxRespawnDelay: 600, enforcementDelay: 60, forcedShutdownDelay: 4)
        default:
            limits = WatchdogLimits(
                memoryMB: 200, utilizationPercent: 10, latencySeconds: 12, minimumLifetime: 4, respawnDelay: 5,
                maxRespawnDelay: 600, enforcementDelay: 60, forcedShutdownDelay: 4)
        }
        if flags[.watchdogMemoryLimit] > 0 { limits.memoryMB = flags[.watchdogMemoryLimit] }
        if flags[.watchdogUtilizationLimit] > 0 { limits.utilizationPercent = flags[.watchdogUtilizationLimit] }
        if flags[.watchdogLatencyLimit] > 0 { limits.latencySeconds = flags[.watchdogLatencyLimit] }
        limits.enforcementDelay = flags[.watchdogDelay]
        limits.forcedShutdownDelay = flags[.watchdogForcedShutdownDelay]
        limits.maxRespawnDelay = max(1, flags[.watchdogMaxDelay])
        return limits
    }
}

public enum Watchdog {
    /// The environment variable that marks the worker process.
    public static let workerVariable = "OSQUERY_WORKER"

    /// True in the worker the watcher started.
    public static var isWorker: Bool { getenv(workerVariable) != nil }

    /// In the worker: exits when the watcher is gone (the worker's parent
    /// changes), so a killed watcher never leaves an unsupervised worker.
    public static func exitWhenWatcherDies() {
        let watcher = getppid()
        let thread = Thread {
            while true {
                sleep(1)
                if getppid() != watcher {
                    StatusLog.warning("osqueryd watcher (pid \(watcher)) is gone; the worker exits")
                    _exit(1)
                }
            }
        }
        thread.name = "watcher-check"
        thread.start()
    }
}

/// The watcher: runs the daemon's work in a worker process (this program
/// again, with `OSQUERY_WORKER` set), restarts it when it dies, and stops it
/// when it exceeds the memory or CPU limits. SIGTERM/SIGINT stop both,
/// SIGHUP is passed on.
public final class Watcher: Sendable {
    let executable: String
    let arguments: [String]
    let limits: WatchdogLimits
    let alarmTimeout: UInt64
    let debug: Bool
    private let counters = Mutex<(pid: Int32, launches: Int)>((0, 0))
    /// The current worker's pid.
    public var workerPID: Int32 { counters.withLock { $0.pid } }
    /// How many workers were started.
    public var launches: Int { counters.withLock { $0.launches } }

    public init(executable: String, arguments: [String], limits: WatchdogLimits, alarmTimeout: UInt64, debug: Bool = false) {
        self.executable = executable
        self.arguments = arguments
        self.limits = limits
        self.alarmTimeout = max(10, alarmTimeout)
        self.debug = debug
    }

    static var signals: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        // Not SIGCHLD: a worker's exit is found by polling, and taking SIGCHLD
        // here would steal it from anyone else in the process waiting on children.
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
        return set
    }

    /// Supervises workers until a stop signal or a worker's final exit;
    /// returns the daemon's exit code. Call on the main thread before any
    /// other thread starts (the signals are taken synchronously).
    ///
    /// As osquery's watcher: every worker exit starts a new worker (a clean
    /// exit and a signal included) except 78 (EX_CONFIG: the worker cannot
    /// run), which ends the watcher with 78. A worker that lived less than
    /// `minimumLifetime` seconds is respawned after `respawnDelay + 2^n`
    /// seconds (n quick respawns so far, at most `maxRespawnDelay`); once n
    /// reaches `minimumLifetime` the next exit ends the watcher with 1.
    public func run() -> Int32 {
        var set = Self.signals
        pthread_sigmask(SIG_BLOCK, &set, nil)
        var quickRespawns: UInt64 = 0
        var lastStart: Double?
        while true {
            if let lastStart, Scheduler.realNow() - lastStart < Double(limits.minimumLifetime) {
                quickRespawns += 1
                StatusLog.warning("osqueryd worker respawning too quickly: \(quickRespawns) times")
                if let code = pause(seconds: respawnPause(after: quickRespawns)) { return code }
            }
            // A Ctrl-C reaches the worker and the watcher together: no new
            // worker when the watcher's own stop signal is already waiting.
            if let code = pause(seconds: 0) { return code }
            let started = Scheduler.realNow()
            lastStart = started
            guard let pid = spawnWorker() else {
                StatusLog.error("osqueryd could not create a worker process: \(String(cString: strerror(errno)))")
                return 1
            }
            counters.withLock { $0 = (pid, $0.launches + 1) }
            switch supervise(pid, started: started) {
            case .stopped(let code):
                return code
            case .ended(let code, let description):
                if code == 78 {
                    StatusLog.error("osqueryd worker (\(pid)) returned exit status 78; the watcher stops")
                    return 78
                }
                if quickRespawns >= limits.minimumLifetime {
                    StatusLog.error("osqueryd worker (\(pid)) \(description): too many worker restarts")
                    return 1
                }
                StatusLog.warning("osqueryd worker (\(pid)) \(description); starting a new worker")
            }
        }
    }

    /// osquery's back-off: the configured delay plus 2^n, capped by `--watchdog_max_delay`.
    func respawnPause(after quickRespawns: UInt64) -> UInt64 {
        guard quickRespawns < 32 else { return limits.maxRespawnDelay }
        return min(limits.maxRespawnDelay, limits.respawnDelay + (1 << quickRespawns))
    }

    enum Outcome {
        /// The watcher was told to stop; the daemon's exit code.
        case stopped(Int32)
        /// The worker ended: its exit code (nil when a signal ended it, or
        /// the watcher stopped it over its limits) and what happened.
        case ended(exitCode: Int32?, String)
    }

    private func supervise(_ pid: pid_t, started: Double) -> Outcome {
        var initialRSS: UInt64?
        var lastTicks = Self.cpuTicks(pid)
        var lastCheck = Scheduler.realNow()
        var overLimit: UInt64 = 0
        var set = Self.signals
        var wait = timespec(tv_sec: 1, tv_nsec: 0)
        while true {
            let signo = sigtimedwait(&set, nil, &wait)
            if signo == SIGTERM || signo == SIGINT {
                return .stopped(stopWorker(pid, signal: SIGTERM, grace: alarmTimeout, reason: "stopping"))
            }
            if signo == SIGHUP { kill(pid, SIGHUP) }
            if let status = reap(pid) {
                return .ended(exitCode: exitCode(status), describe(status))
            }
            let now = Scheduler.realNow()
            if initialRSS == nil { initialRSS = Self.residentBytes(pid) }
            guard now - lastCheck >= Double(limits.checkInterval) else { continue }
            let window = now - lastCheck
            lastCheck = now
            let ticks = Self.cpuTicks(pid)
            defer { lastTicks = ticks }
            guard now - started >= Double(limits.enforcementDelay) else { continue }

            let rss = Self.residentBytes(pid)
            let growth = rss > (initialRSS ?? 0) ? rss - (initialRSS ?? 0) : 0
            if debug { StatusLog.info("watchdog: worker \(pid) rss \(rss) growth \(growth) cpu ticks \(ticks &- lastTicks)") }
            if growth > limits.memoryMB * 1024 * 1024 {
                StatusLog.warning("osqueryd worker (\(pid)) system performance limits exceeded: memory \(growth / 1024 / 1024) MB over its start (limit \(limits.memoryMB) MB)")
                _ = stopWorker(pid, signal: SIGUSR1, grace: limits.forcedShutdownDelay, reason: "memory")
                return .ended(exitCode: nil, "was stopped for using too much memory")
            }
            let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
            let cores = Double(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            let usedSeconds = Double(ticks &- lastTicks) / hz
            if usedSeconds > cores * window * Double(limits.utilizationPercent) / 100 {
                overLimit += UInt64(window.rounded())
                if overLimit >= limits.latencySeconds {
                    StatusLog.warning("osqueryd worker (\(pid)) system performance limits exceeded: CPU over \(limits.utilizationPercent)% for \(overLimit) s")
                    _ = stopWorker(pid, signal: SIGUSR1, grace: limits.forcedShutdownDelay, reason: "cpu")
                    return .ended(exitCode: nil, "was stopped for using too much CPU")
                }
            } else {
                overLimit = 0
            }
        }
    }

    /// Sends `signal`, waits up to `grace` seconds, then SIGKILL; returns the
    /// worker's exit code (0 when it ended by the signal we sent).
    private func stopWorker(_ pid: pid_t, signal: Int32, grace: UInt64, reason: String) -> Int32 {
        kill(pid, signal)
        let deadline = Scheduler.realNow() + Double(grace)
        while Scheduler.realNow() < deadline {
            if let status = reap(pid) { return exitCode(status) ?? 0 }
            usleep(20_000)
        }
        StatusLog.warning("osqueryd worker (\(pid)) did not stop within \(grace) s (\(reason)); killing it")
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return 0
    }

    /// Sleeps `seconds` (0: only looks), returning an exit code when a stop signal arrives.
    private func pause(seconds: UInt64) -> Int32? {
        var set = Self.signals
        let end = Scheduler.realNow() + Double(seconds)
        repeat {
            var wait = timespec(tv_sec: 0, tv_nsec: seconds == 0 ? 0 : 200_000_000)
            let signo = sigtimedwait(&set, nil, &wait)
            if signo == SIGTERM || signo == SIGINT { return 0 }
        } while Scheduler.realNow() < end
        return nil
    }

    private func reap(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        return r == pid ? status : nil
    }

    private func exitCode(_ status: Int32) -> Int32? {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : nil
    }

    private func describe(_ status: Int32) -> String {
        if let code = exitCode(status) { return "exited with code \(code)" }
        return "was killed by signal \(status & 0x7f)"
    }

    private func spawnWorker() -> pid_t? {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The worker starts with no signals blocked and default handlers,
        // whatever the watcher blocked to take them synchronously.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = Self.signals
        sigaddset(&defaults, SIGUSR1)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var environment = ProcessInfo.processInfo.environment
        environment[Watchdog.workerVariable] = "1"
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // The worker inherits no descriptor the watcher left open by accident.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        Spawn.closeInheritedDescriptors(in: &actions)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else {
            errno = rc
            return nil
        }
        return pid
    }

    /// Resident set size of a process in bytes (from /proc/<pid>/statm); the
    /// scheduler uses it for its own figures too.
    static func residentBytes(_ pid: pid_t) -> UInt64 {
        guard let text = FileIO.readString("/proc/\(pid)/statm") else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// utime + stime of a process, in clock ticks.
    static func cpuTicks(_ pid: pid_t) -> UInt64 {
        guard let text = FileIO.readString("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After "pid (comm)": state is field 3, utime 14 and stime 15.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return 0 }
        return user + system
    }
}
