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
/// - Launch: the file is opened and checked once (`Autoload.open`), then that descriptor is
///   executed (`fexecve`) with argv `<path> [--verbose] --socket S --timeout T --interval I` and
///   `OSQUERY_EXTENSION=<its own pid>` in an environment otherwise inherited from this process:
///   replacing the file after the check cannot change what runs. A script's interpreter gets
///   `/dev/fd/N` as the script's name (the descriptor stays open for it). All signal dispositions
///   are reset to default and the signal mask is cleared (as osquery's fork/exec does); stdin is
///   `/dev/null`; inheritable file descriptors above 2 are closed.
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
        var refusal: AutoloadRefusal?
        let outcome: Result<Int32, SpawnError>
        switch Autoload.open(path: path, allowUnsafe: configuration.allowUnsafe) {
        case .success(let opened):
            outcome = Self.spawn(opened, path: path, configuration: configuration)
        case .failure(let reason):
            refusal = reason
            outcome = .failure(SpawnError(errno: 0))
        }
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

    /// Starts the extension checked and opened as `opened` (what runs is that descriptor, never
    /// the path looked up again); returns its pid, or the errno of the fork or the exec. `path`
    /// is only its `argv[0]`.
    ///
    /// fork and `fexecve`, not posix_spawn, which can only run a path. Everything the child needs
    /// is prepared here, so the child makes only async-signal-safe calls: no allocation, no lock.
    /// The child sets `OSQUERY_EXTENSION` to its own pid (it keeps that pid through the exec).
    static func spawn(_ opened: OpenedExtension, path: String, configuration: Configuration) -> Result<Int32, SpawnError> {
        let argv = [path] + configuration.arguments
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

        // The child writes its pid's digits after the prefix.
        let prefix = Array("OSQUERY_EXTENSION=".utf8CString.dropLast())
        let pidSlot = UnsafeMutablePointer<CChar>.allocate(capacity: prefix.count + 24)
        pidSlot.initialize(repeating: 0, count: prefix.count + 24)
        pidSlot.update(from: prefix, count: prefix.count)
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [pidSlot, nil]
        let devNull = strdup("/dev/null")
        defer {
            for p in cArgv { free(p) }
            for p in cEnv.dropLast(2) { free(p) }
            pidSlot.deallocate()
            free(devNull)
        }
        // Descriptors this process left inheritable (no FD_CLOEXEC) are closed in the child.
        // SwiftNIO accepts connections without FD_CLOEXEC: a child holding one would keep it open.
        var inherited: [Int32] = []
        for name in FileIO.listDirectoryNames("/proc/self/fd") ?? [] {
            guard let fd = Int32(name), fd > 2, fd != opened.descriptor else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0, flags & FD_CLOEXEC == 0 { inherited.append(fd) }
        }
        // The exec's errno comes back on this pair (close-on-exec from the start: no other
        // child may inherit it); a successful exec closes it empty.
        var report: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &report) == 0 else {
            return .failure(SpawnError(errno: errno))
        }
        let execFD = opened.descriptor
        let defaultAction = SIG_DFL
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        var previous = sigset_t()
        // No handler of this process may run in the child before the dispositions are reset.
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        let pid = inherited.withUnsafeBufferPointer { inherited in
            cArgv.withUnsafeBufferPointer { argvPointer in
                cEnv.withUnsafeBufferPointer { envPointer in
                    let pid = fork()
                    guard pid == 0 else { return pid }
                    // The child: async-signal-safe calls only, then exec or _exit.
                    for signal in 1..<Int32(65) where signal != SIGKILL && signal != SIGSTOP {
                        Glibc.signal(signal, defaultAction)
                    }
                    pthread_sigmask(SIG_SETMASK, &none, nil)
                    let input = Glibc.open(devNull!, O_RDONLY)
                    if input > 0 {
                        dup2(input, 0)
                        close(input)
                    }
                    for fd in inherited { close(fd) }
                    var digits = getpid()
                    var length = 0
                    repeat {
                        length += 1
                        digits /= 10
                    } while digits > 0
                    digits = getpid()
                    for i in stride(from: prefix.count + length - 1, through: prefix.count, by: -1) {
                        pidSlot[i] = CChar(48 + digits % 10)
                        digits /= 10
                    }
                    let args = UnsafeMutablePointer(mutating: argvPointer.baseAddress!)
                    let environment = UnsafeMutablePointer(mutating: envPointer.baseAddress!)
                    fexecve(execFD, args, environment)
                    if errno == ENOENT {
                        // A script: its interpreter reads it as /dev/fd/N, so N must stay open.
                        _ = fcntl(execFD, F_SETFD, 0)
                        fexecve(execFD, args, environment)
                    }
                    var failure = errno
                    _ = write(report[1], &failure, 4)
                    _exit(127)
                }
            }
        }
        let forkErrno = errno
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        close(report[1])
        defer { close(report[0]) }
        guard pid > 0 else { return .failure(SpawnError(errno: forkErrno)) }
        var failure: Int32 = 0
        var got = 0
        repeat {
            got = read(report[0], &failure, 4)
        } while got < 0 && errno == EINTR
        guard got == 4 else { return .success(pid) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return .failure(SpawnError(errno: failure))
    }
}
