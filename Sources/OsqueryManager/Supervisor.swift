#if canImport(Glibc)
import Glibc
#endif
public import Logging
import OsqueryEngine
import Synchronization

/// How a supervised extension process ended.
public enum ExtensionExit: Sendable, Hashable, CustomStringConvertible {
    /// It exited with this status.
    case exited(Int32)
    /// It was killed by this signal.
    case signaled(Int32)
    /// The spawn itself failed with this errno (no process ran).
    case spawnFailed(Int32)
    /// The process vanished without us reaping it (someone else waited for it).
    case lost

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let sig): "killed by signal \(sig)"
        case .spawnFailed(let e): "could not be spawned: \(String(cString: strerror(e)))"
        case .lost: "was reaped elsewhere"
        }
    }
}

/// A snapshot of one supervised extension, for tests, the `osquery_extensions` table and the
/// watcher.
public struct SupervisedExtension: Sendable, Hashable {
    /// The path as given (autoload entry or `--extension`).
    public let path: String
    /// The running process, or nil between a death and the next launch (or after `stop`).
    public let pid: Int32?
    /// How many times a process was started for this path (successful spawns).
    public let launchCount: Int
    /// How the previous process ended, if one did.
    public let lastExit: ExtensionExit?
    /// Set while the last (re)launch attempt was refused by `Autoload.launchRefusal`.
    public let refusal: AutoloadRefusal?
}

/// Starts autoloaded extensions the way osquery's watcher does and keeps them running.
///
/// - Launch: `posix_spawn` of `/bin/sh -c 'OSQUERY_EXTENSION=$$; export OSQUERY_EXTENSION; exec "$0" "$@"'
///   <path> [--verbose] --socket S --timeout T --interval I`. The shell execs the extension in
///   place, so the extension keeps the shell's pid, sees exactly its own argv (`argv[0]` is the
///   path) and finds `OSQUERY_EXTENSION=<its own pid>` in an environment otherwise inherited from
///   this process. All signal dispositions are reset to default and the signal mask is cleared
///   (as osquery's fork/exec does); stdin is `/dev/null`; file descriptors above 2 are closed.
/// - Supervision: children are reaped by a task polling `waitpid(pid, WNOHANG)` with `Task.sleep`
///   between rounds (never a blocking wait on the cooperative pool, and never `waitpid(-1)`, so
///   other children of this process are left alone). A dead extension is relaunched after an
///   exponential back-off (`initialBackoff`, doubling up to `maximumBackoff`; reset when a process
///   stayed up `stableAfter`), where osquery relaunches at once forever. Every relaunch is logged
///   and preceded by `Autoload.launchRefusal`; a refused launch is retried on the same back-off.
/// - `stop(grace:)`: SIGTERM to every child, wait up to `grace`, SIGKILL what is left, reap.
public final class ExtensionSupervisor: Sendable {
    public struct Configuration: Sendable {
        /// `--socket` passed to every extension (the manager socket).
        public var socket: String
        /// `--timeout` and `--interval`, passed as given (osquery's flags are strings, default "3").
        public var timeout: String
        public var interval: String
        /// Adds `--verbose` before `--socket`.
        public var verbose: Bool
        /// `--allow_unsafe`: skip the permission checks at launch.
        public var allowUnsafe: Bool
        /// Extra environment for the children, on top of this process's environment.
        public var environment: [String: String]
        /// First relaunch delay after a death, doubled for each quick death up to `maximumBackoff`.
        public var initialBackoff: Duration
        public var maximumBackoff: Duration
        /// A process that stayed up this long resets the back-off to `initialBackoff`.
        public var stableAfter: Duration
        /// How often children are polled for exit.
        public var pollInterval: Duration

        public init(
            socket: String,
            timeout: String = "3",
            interval: String = "3",
            verbose: Bool = false,
            allowUnsafe: Bool = false,
            environment: [String: String] = [:],
            initialBackoff: Duration = .seconds(1),
            maximumBackoff: Duration = .seconds(60),
            stableAfter: Duration = .seconds(30),
            pollInterval: Duration = .milliseconds(100)
        ) {
            self.socket = socket
            self.timeout = timeout
            self.interval = interval
            self.verbose = verbose
            self.allowUnsafe = allowUnsafe
            self.environment = environment
            self.initialBackoff = initialBackoff
            self.maximumBackoff = maximumBackoff
            self.stableAfter = stableAfter
            self.pollInterval = pollInterval
        }

        /// The argv after the path: `[--verbose] --socket S --timeout T --interval I`.
        public var arguments: [String] {
            (verbose ? ["--verbose"] : []) + ["--socket", socket, "--timeout", timeout, "--interval", interval]
        }
    }

    struct SpawnError: Error {
        let errno: Int32
    }

    struct Child {
        let path: String
        var pid: Int32?
        var launchCount = 0
        var launchedAt: ContinuousClock.Instant?
        var nextLaunch: ContinuousClock.Instant
        var backoff: Duration
        var lastExit: ExtensionExit?
        var refusal: AutoloadRefusal?
        /// Launch attempts (spawned or refused), for the log.
        var attempts = 0
    }

    struct State {
        var children: [Child] = []
        var started = false
        var stopping = false
        var monitor: Task<Void, Never>?
    }

    public let configuration: Configuration
    let logger: Logger
    let state = Mutex(State())
    let clock = ContinuousClock()

    public init(
        paths: [String],
        configuration: Configuration,
        logger: Logger = Logger(label: "osquery.extensions.supervisor")
    ) {
        self.configuration = configuration
        self.logger = logger
        let now = clock.now
        let children = paths.map { Child(path: $0, nextLaunch: now, backoff: configuration.initialBackoff) }
        state.withLock { $0.children = children }
    }

    /// Current children, in the order they were added.
    public var children: [SupervisedExtension] {
        state.withLock { s in
            s.children.map {
                SupervisedExtension(
                    path: $0.path, pid: $0.pid, launchCount: $0.launchCount, lastExit: $0.lastExit,
                    refusal: $0.refusal)
            }
        }
    }

    /// Launches every extension now and starts supervising them. Calling it twice does nothing.
    public func start() {
        let first = state.withLock { s -> Bool in
            if s.started || s.stopping { return false }
            s.started = true
            return true
        }
        guard first else { return }
        tick()
        let poll = configuration.pollInterval
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: poll)
                if Task.isCancelled { break }
                guard let self else { return }
                self.tick()
            }
        }
        state.withLock { $0.monitor = task }
    }

    /// Supervises one more extension (e.g. osqueryi's `--extension`); it is launched on the next
    /// poll if the supervisor is running. Returns false if the path is already supervised or the
    /// supervisor is stopping.
    @discardableResult
    public func add(path: String) -> Bool {
        state.withLock { s in
            if s.stopping || s.children.contains(where: { $0.path == path }) { return false }
            s.children.append(Child(path: path, nextLaunch: clock.now, backoff: configuration.initialBackoff))
            return true
        }
    }

    /// Stops supervising: no more relaunches; SIGTERM to every child, up to `grace` for them to
    /// exit, then SIGKILL and reap (up to 2 s more). Idempotent. Honours `grace` even when the
    /// calling task is cancelled.
    public func stop(grace: Duration = .seconds(11)) async {
        let task = state.withLock { s -> Task<Void, Never>? in
            s.stopping = true
            defer { s.monitor = nil }
            return s.monitor
        }
        if let task {
            task.cancel()
            await task.value
        }
        let running = state.withLock { s in s.children.compactMap { c in c.pid.map { (c.path, $0) } } }
        if running.isEmpty { return }
        for (path, pid) in running {
            logger.info("Stopping extension \(path) (\(pid)) with SIGTERM", metadata: ["path": "\(path)", "pid": "\(pid)"])
            kill(pid, SIGTERM)
        }
        let deadline = clock.now + grace
        while reap() > 0, clock.now < deadline {
            await Self.sleep(.milliseconds(20))
        }
        let left = state.withLock { s in s.children.compactMap { c in c.pid.map { (c.path, $0) } } }
        for (path, pid) in left {
            logger.warning(
                "Extension \(path) (\(pid)) did not exit within \(grace); sending SIGKILL",
                metadata: ["path": "\(path)", "pid": "\(pid)"])
            kill(pid, SIGKILL)
        }
        let killDeadline = clock.now + .seconds(2)
        while reap() > 0, clock.now < killDeadline {
            await Self.sleep(.milliseconds(10))
        }
        for (path, pid) in state.withLock({ s in s.children.compactMap { c in c.pid.map { (c.path, $0) } } }) {
            logger.error("Extension \(path) (\(pid)) could not be reaped", metadata: ["path": "\(path)", "pid": "\(pid)"])
        }
    }

    // MARK: - Supervision

    /// Sleeps in a fresh task so that a cancelled caller still waits (stop must honour its grace).
    static func sleep(_ d: Duration) async {
        await Task.detached { try? await Task.sleep(for: d) }.value
    }

    /// Reaps exited children (non-blocking); returns how many are still running. Only the monitor
    /// task (or `stop`, after the monitor ended) calls it.
    @discardableResult
    func reap() -> Int {
        var events: [(String, Int32, ExtensionExit, Duration?)] = []
        let stillRunning = state.withLock { s -> Int in
            let now = clock.now
            var running = 0
            for i in s.children.indices {
                guard let pid = s.children[i].pid else { continue }
                var status: Int32 = 0
                let r = waitpid(pid, &status, WNOHANG)
                if r == 0 || (r < 0 && errno == EINTR) {
                    running += 1
                    continue
                }
                let exit: ExtensionExit = r < 0 ? .lost : Self.decode(status)
                let c = s.children[i]
                let uptime = c.launchedAt.map { now - $0 } ?? .zero
                var backoff = c.backoff
                if uptime >= configuration.stableAfter { backoff = configuration.initialBackoff }
                s.children[i].pid = nil
                s.children[i].lastExit = exit
                s.children[i].nextLaunch = now + backoff
                s.children[i].backoff = min(backoff * 2, configuration.maximumBackoff)
                events.append((c.path, pid, exit, s.stopping ? nil : backoff))
            }
            return running
        }
        for (path, pid, exit, delay) in events {
            let meta: Logger.Metadata = ["path": "\(path)", "pid": "\(pid)", "exit": "\(exit)"]
            if let delay {
                logger.warning("Extension \(path) (\(pid)) \(exit); relaunching in \(delay)", metadata: meta)
            } else {
                logger.info("Extension \(path) (\(pid)) \(exit)", metadata: meta)
            }
        }
        return stillRunning
    }

    /// One supervision round: reap, then launch whatever is due.
    func tick() {
        reap()
        let due = state.withLock { s -> [String] in
            if s.stopping { return [] }
            let now = clock.now
            return s.children.filter { $0.pid == nil && $0.nextLaunch <= now }.map(\.path)
        }
        for path in due { launch(path) }
    }

    func launch(_ path: String) {
        let refusal = Autoload.launchRefusal(path: path, allowUnsafe: configuration.allowUnsafe)
        let outcome: Result<Int32, SpawnError> =
            refusal == nil ? Self.spawn(path: path, configuration: configuration) : .failure(SpawnError(errno: 0))
        var delay: Duration = .zero
        var launchNumber = 0
        var relaunch = false
        state.withLock { s in
            guard let i = s.children.firstIndex(where: { $0.path == path }) else { return }
            let now = clock.now
            s.children[i].attempts += 1
            relaunch = s.children[i].launchCount > 0
            switch outcome {
            case .success(let pid):
                s.children[i].pid = pid
                s.children[i].launchCount += 1
                s.children[i].launchedAt = now
                s.children[i].refusal = nil
                launchNumber = s.children[i].launchCount
            case .failure(let e):
                delay = s.children[i].backoff
                s.children[i].refusal = refusal
                if refusal == nil { s.children[i].lastExit = .spawnFailed(e.errno) }
                s.children[i].nextLaunch = now + delay
                s.children[i].backoff = min(delay * 2, configuration.maximumBackoff)
            }
        }
        switch outcome {
        case .success(let pid):
            let meta: Logger.Metadata = ["path": "\(path)", "pid": "\(pid)", "launch": "\(launchNumber)"]
            if relaunch {
                logger.warning("Relaunched extension \(path) (\(pid)), launch \(launchNumber)", metadata: meta)
            } else {
                logger.info("Launched extension \(path) (\(pid))", metadata: meta)
            }
        case .failure(let e):
            if let refusal {
                logger.warning(
                    "Will not launch extension \(path): \(refusal); retrying in \(delay)",
                    metadata: ["path": "\(path)", "reason": "\(refusal)"])
            } else {
                logger.error(
                    "Cannot launch extension \(path): \(String(cString: strerror(e.errno))); retrying in \(delay)",
                    metadata: ["path": "\(path)", "errno": "\(e.errno)"])
            }
        }
    }

    static func decode(_ status: Int32) -> ExtensionExit {
        let sig = status & 0x7f
        if sig == 0 { return .exited((status >> 8) & 0xff) }
        return .signaled(sig)
    }

    /// The script the shell runs: record its own pid, then become the extension.
    static let shellScript = #"OSQUERY_EXTENSION=$$; export OSQUERY_EXTENSION; exec "$0" "$@""#

    /// Spawns one extension; returns its pid or the errno of posix_spawn.
    static func spawn(path: String, configuration: Configuration) -> Result<Int32, SpawnError> {
        // A bare name would make the shell search PATH: anchor relative paths.
        let execPath = path.contains("/") ? path : "./" + path
        let argv = ["/bin/sh", "-c", shellScript, execPath] + configuration.arguments

        var env: [String] = []
        var overridden = Set(configuration.environment.keys)
        overridden.insert("OSQUERY_EXTENSION")
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            let key = s.split(separator: "=", maxSplits: 1).first.map(String.init) ?? s
            if !overridden.contains(key) { env.append(s) }
            p += 1
        }
        for (k, v) in configuration.environment.sorted(by: { $0.key < $1.key }) { env.append("\(k)=\(v)") }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Descriptors this process left inheritable (no FD_CLOEXEC) are closed in the child.
        Spawn.closeInheritedDescriptors(in: &actions)

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer {
            for p in cArgv { free(p) }
            for p in cEnv { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, cArgv, cEnv)
        return rc == 0 ? .success(pid) : .failure(SpawnError(errno: rc))
    }
}
