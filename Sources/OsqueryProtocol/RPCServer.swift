package import Logging
import CSystemHeaders
import Synchronization
import ThriftCodec

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Serves an ``ExtensionService`` over osquery's wire: Thrift binary protocol,
/// unframed, on a Unix domain socket.
///
/// Each connection is served by a thread of its own, as libthrift's `TThreadedServer` serves
/// osquery's: it reads a call with blocking reads, answers it, writes the reply and reads the
/// next, so a slow call on one connection never delays another, and calls on one connection
/// run in order. `ping` is answered on the connection's thread; every other method runs in a
/// task whose jobs that thread runs while it waits for it (``CallExecutor``). What a
/// peer can make the server hold is bounded by ``ServerLimits``. The socket file is created
/// with mode 0600, any stale file at the path is replaced, and the server removes its own file
/// when it stops.
package final class RPCServer: Sendable {
    /// The socket path being served.
    package var path: String { core.path.get() }
    let core: ServerCore

    /// Calls received and waiting for the call before them on their connection, over all
    /// connections (what ``ServerLimits/maxPipelinedCalls`` bounds per connection).
    package var queuedCalls: Int { core.queuedCalls.load(ordering: .relaxed) }
    /// Calls whose handler runs or whose reply is not yet written.
    package var runningCalls: Int { core.runningCalls.load(ordering: .relaxed) }
    /// Bytes of unfinished messages held past the per-connection allowance.
    package var heldBytes: Int { core.heldBytes.load(ordering: .relaxed) }
    /// Reply bytes the kernel has not taken yet because their peers do not read them.
    package var outboundBytes: Int { core.outboundBytes.load(ordering: .relaxed) }
    /// Connections being served.
    package var connectionCount: Int { core.state.withLock { $0.connections.count } }
    /// Connections closed at once because the server was at ``ServerLimits/maxConnections``.
    package var refusedConnections: Int { core.state.withLock { $0.refused } }

    /// Binds `path` and starts serving `service` in the background, within `limits`.
    package static func start(
        path: String,
        service: ExtensionService,
        limits: ServerLimits = .default,
        logger: Logger = Logger(label: "osquery.rpc.server")
    ) async throws -> RPCServer {
        try validateSocketPath(path)
        // Through the initializer again: values set on the properties are brought into range too.
        let limits = ServerLimits(
            maxMessageSize: limits.maxMessageSize, maxDepth: limits.maxDepth, maxPipelinedCalls: limits.maxPipelinedCalls,
            idleTimeout: limits.idleTimeout, partialMessageTimeout: limits.partialMessageTimeout,
            maxConnections: limits.maxConnections)
        let fd = try bindUnixSocket(path: path, mode: 0o600, backlog: 256)
        let identity = FileIdentity(path)
        func fail(_ what: String, _ code: Int32) -> SocketBindError {
            Glibc.close(fd)
            if let identity, FileIdentity(path) == identity { unlink(path) }
            return SocketBindError(path: path, reason: "\(what): \(String(cString: strerror(code)))")
        }
        // Non-blocking: a connection that went away between poll and accept never blocks the acceptor.
        guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 else { throw fail("fcntl", errno) }
        let wake = osq_eventfd_cloexec()
        guard wake >= 0 else { throw fail("eventfd", errno) }
        let core = ServerCore(
            processor: MessageProcessor(service: service, limits: limits.thrift), limits: limits, logger: logger,
            path: SharedPath(path, identity: identity), listener: fd, wake: wake)
        guard startThread(stackSize: ServerLimits.threadStackSize, { core.acceptLoop() }) else {
            let error = errno
            core.listenerClosed()
            throw SocketBindError(path: path, reason: "cannot start a thread: \(String(cString: strerror(error)))")
        }
        return RPCServer(core: core)
    }

    private init(core: ServerCore) {
        self.core = core
    }

    /// Moves the listening socket to `newPath` (rename(2): the listener keeps
    /// serving, and a stale file at `newPath` is replaced atomically). An
    /// extension binds before it registers and moves to `<socket>.<uuid>`
    /// once it knows its uuid, so the core can call it the moment it is registered.
    package func move(to newPath: String) throws(SocketBindError) {
        do {
            try validateSocketPath(newPath)
        } catch {
            throw SocketBindError(path: newPath, reason: "\(error)")
        }
        var st = stat()
        if lstat(newPath, &st) == 0, st.st_mode & S_IFMT != S_IFSOCK {
            throw SocketBindError(path: newPath, reason: "a file that is not a socket is in the way")
        }
        guard rename(core.path.get(), newPath) == 0 else {
            throw SocketBindError(path: newPath, reason: "rename: \(String(cString: strerror(errno)))")
        }
        core.path.set(newPath)
    }

    /// Stops accepting, closes every connection and removes the socket file, in the
    /// background. Safe to call from inside a handler (it does not wait).
    package func stop() {
        core.stop()
    }

    /// Waits until the server has stopped, its connections' threads have ended and its socket
    /// file is removed.
    package func waitUntilStopped() async {
        await core.waitUntilStopped()
    }

    /// Stops and waits. Calls already running get up to `grace` to write their replies
    /// first: a peer that asked the server to stop (an extension's `shutdown`) gets its answer.
    package func close(grace: Duration = .seconds(1)) async {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while clock.now < deadline,
            core.runningCalls.load(ordering: .relaxed) > 0 || core.outboundBytes.load(ordering: .relaxed) > 0
        {
            try? await Task.sleep(for: .milliseconds(5))
        }
        stop()
        await waitUntilStopped()
    }
}

/// The server's current socket path, shared with its acceptor thread.
/// It also remembers the socket file's identity (device and inode): on stop the
/// server removes the file only if it is still the one it bound, so a newer
/// server that took the path keeps its file. (Asking whether anything still
/// listens there raced with our own listener's close.)
final class SharedPath: Sendable {
    private let value: Mutex<(path: String, identity: FileIdentity?)>
    init(_ path: String, identity: FileIdentity?) { value = Mutex((path, identity)) }
    func get() -> String { value.withLock { $0.path } }
    func set(_ path: String) { value.withLock { $0.path = path } }

    func unlinkIfOurs() {
        value.withLock { state in
            if let ours = state.identity, FileIdentity(state.path) == ours { unlink(state.path) }
        }
    }
}

struct FileIdentity: Equatable, Sendable {
    let device: UInt64
    let inode: UInt64

    init?(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }
}


/// What the server's threads share: the listener, the connections, and the counts its limits
/// are checked against.
final class ServerCore: Sendable {
    let processor: MessageProcessor
    let limits: ServerLimits
    let logger: Logger
    let path: SharedPath
    /// The listening socket; closed by the acceptor thread as it ends.
    let listener: Int32
    /// An eventfd that wakes the acceptor thread to stop.
    let wake: Int32

    /// Calls taken off their connection's stream and waiting for the call before them.
    let queuedCalls = Atomic<Int>(0)
    /// Calls whose handler runs or whose reply is not yet written.
    let runningCalls = Atomic<Int>(0)
    /// Bytes held past each connection's allowance (the budget bounded by the message size).
    let heldBytes = Atomic<Int>(0)
    /// Reply bytes the kernel has not taken yet, over all connections.
    let outboundBytes = Atomic<Int>(0)
    /// Unsent reply bytes of connections chosen to be closed and not closed yet.
    let shedding = Atomic<Int>(0)
    let nextID = Atomic<Int>(0)
    let state = Mutex(State())
    /// Connections whose peer has not taken a reply yet, since when.
    let stalledWriters = Mutex<[Int: StalledWriter]>([:])

    struct State {
        var connections: [Int: ServerConnection] = [:]
        var stopping = false
        /// The acceptor and the connections' threads still running.
        var threads = 1
        var stopped = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var refused = 0
        var refusedSinceLog = 0
        var lastLog: ContinuousClock.Instant?
    }

    struct StalledWriter {
        let connection: ServerConnection
        let since: ContinuousClock.Instant
        var bytes: Int
    }

    init(processor: MessageProcessor, limits: ServerLimits, logger: Logger, path: SharedPath, listener: Int32, wake: Int32) {
        self.processor = processor
        self.limits = limits
        self.logger = logger
        self.path = path
        self.listener = listener
        self.wake = wake
    }

    deinit {
        Glibc.close(wake)
    }

    /// The acceptor thread: accepts until stopped, then closes the listener and removes the
    /// socket file.
    func acceptLoop() {
        var fds = [
            pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0),
        ]
        accepting: while true {
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("server on \(path.get()) stopped accepting: poll: \(String(cString: strerror(errno)))")
                break accepting
            }
            if fds[1].revents != 0 { break accepting }
            let fd = osq_accept_cloexec(listener)
            if fd >= 0 {
                admit(fd)
                continue
            }
            switch errno {
            case EINTR, EAGAIN, EWOULDBLOCK, ECONNABORTED, EPROTO:
                continue
            default:
                // Out of descriptors or memory: the listener stays, and accepting resumes shortly.
                logger.warning("server on \(path.get()) cannot accept: \(String(cString: strerror(errno)))")
                var waker = pollfd(fd: wake, events: Int16(POLLIN), revents: 0)
                if poll(&waker, 1, 100) > 0 { break accepting }
            }
        }
        listenerClosed()
        threadEnded()
    }

    /// Closes the listener and removes our own socket file, unless another server took the path since.
    func listenerClosed() {
        Glibc.close(listener)
        path.unlinkIfOurs()
    }

    /// Serves `fd` on a thread of its own, or closes it at once when stopped or at the limit.
    func admit(_ fd: Int32) {
        enum Verdict { case accepted(ServerConnection), stopped, full(log: Int?) }
        let verdict = state.withLock { s -> Verdict in
            guard !s.stopping else { return .stopped }
            guard s.connections.count < limits.maxConnections else {
                s.refused += 1
                s.refusedSinceLog += 1
                // One line per interval, however fast connections come.
                let now = ContinuousClock.now
                if let last = s.lastLog, now - last < .seconds(10) { return .full(log: nil) }
                s.lastLog = now
                defer { s.refusedSinceLog = 0 }
                return .full(log: s.refusedSinceLog)
            }
            let connection = ServerConnection(id: nextID.add(1, ordering: .relaxed).newValue, fd: fd, core: self)
            s.connections[connection.id] = connection
            s.threads += 1
            return .accepted(connection)
        }
        switch verdict {
        case .accepted(let connection):
            if !startThread(stackSize: ServerLimits.threadStackSize, { connection.run() }) {
                logger.warning("closing connection: cannot start a thread for it: \(String(cString: strerror(errno)))")
                connection.ended()
            }
        case .stopped:
            Glibc.close(fd)
        case .full(let log):
            Glibc.close(fd)
            if let log {
                logger.warning("at the limit of \(limits.maxConnections) connections: closed \(log) new connection(s)")
            }
        }
    }

    /// Forgets a connection whose thread is ending.
    func remove(_ connection: ServerConnection) {
        _ = state.withLock { $0.connections.removeValue(forKey: connection.id) }
    }

    func threadEnded() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.threads -= 1
            guard s.threads == 0, s.stopping else { return [] }
            s.stopped = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Stops accepting and shuts every connection down: each thread, blocked in a read, a write
    /// or waiting for its call, wakes and ends.
    func stop() {
        let connections = state.withLock { s -> [ServerConnection]? in
            guard !s.stopping else { return nil }
            s.stopping = true
            return Array(s.connections.values)
        }
        guard let connections else { return }
        var one: UInt64 = 1
        _ = Glibc.write(wake, &one, 8)
        for connection in connections { connection.shutDown() }
    }

    func waitUntilStopped() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                if s.stopped { return true }
                s.waiters.append(waiter)
                return false
            }
            if done { waiter.resume() }
        }
    }

    func stalled(_ connection: ServerConnection, bytes: Int) {
        stalledWriters.withLock { all in
            if all[connection.id] == nil {
                all[connection.id] = StalledWriter(connection: connection, since: .now, bytes: bytes)
            } else {
                all[connection.id]!.bytes = bytes
            }
        }
    }

    /// The connection's reply is with the kernel, or it is closing: what shedding counted for
    /// it is freed.
    func resumed(_ connection: ServerConnection) {
        stalledWriters.withLock { all in
            all.removeValue(forKey: connection.id)
            let shed = connection.shedBytes.exchange(0, ordering: .relaxed)
            if shed != 0 { shedding.subtract(shed, ordering: .relaxed) }
        }
    }

    /// Unsent replies over `budget`: closes the connections whose peers have left theirs
    /// unread longest, until what they hold covers the excess or one is left. Replies are built before their
    /// size is known, so this is where many peers that never read are kept from holding one
    /// reply each.
    func shed(budget: Int) {
        let total = outboundBytes.load(ordering: .relaxed)
        guard total > budget else { return }
        let victims = stalledWriters.withLock { all -> [StalledWriter] in
            // Replies of connections already being closed are as good as freed: connections
            // stalling at the same moment must not close more.
            var excess = total - shedding.load(ordering: .relaxed) - budget
            var chosen: [StalledWriter] = []
            // One peer alone may always hold a reply up to the message size.
            for writer in all.values.sorted(by: { $0.since < $1.since }) where excess > 0 && all.count > 1 {
                chosen.append(writer)
                excess -= writer.bytes
                shedding.add(writer.bytes, ordering: .relaxed)
                writer.connection.shedBytes.add(writer.bytes, ordering: .relaxed)
                all.removeValue(forKey: writer.connection.id)
            }
            return chosen
        }
        for victim in victims {
            logger.info(
                "closing connection: its peer left \(victim.bytes) bytes of replies unread while the server holds \(total) bytes of unsent replies, over the budget of \(budget)")
            // Its blocked write fails, and its thread ends.
            victim.connection.shutDown()
        }
    }
}

/// Starts `body` on a detached thread of its own with a stack of `stackSize` bytes; false (and
/// errno set) when the thread could not be made.
func startThread(stackSize: Int, _ body: @escaping @Sendable () -> Void) -> Bool {
    final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, stackSize)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    let context = Unmanaged.passRetained(Body(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, &attributes,
        { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
    guard rc == 0 else {
        Unmanaged<Body>.fromOpaque(context).release()
        errno = rc
        return false
    }
    return true
}

/// Why a server could not take its socket path.
package struct SocketBindError: Error, Sendable, Equatable, CustomStringConvertible {
    package let path: String
    package let reason: String
    package var description: String { "cannot serve on \(path): \(reason)" }
}

/// Binds and listens on a Unix socket at `path` with `mode`, replacing a stale
/// socket file there. The socket is bound under a temporary name in the same
/// directory, given its mode, then renamed over `path`: there is no moment when
/// the path is missing or reachable with the umask's looser mode.
func bindUnixSocket(path: String, mode: mode_t, backlog: Int32) throws(SocketBindError) -> Int32 {
    func fail(_ what: String, _ code: Int32 = errno) -> SocketBindError {
        SocketBindError(path: path, reason: "\(what): \(String(cString: strerror(code)))")
    }
    var st = stat()
    if lstat(path, &st) == 0, st.st_mode & S_IFMT != S_IFSOCK {
        throw SocketBindError(path: path, reason: "a file that is not a socket is in the way")
    }
    let directory = path.lastIndex(of: "/").map { String(path[...$0]) } ?? ""
    var staging = directory + ".osq-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    if staging.utf8.count > maxUnixSocketPathLength { staging = path }  // no room: bind in place
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw fail("socket") }
    // Linux creates the socket's file with the socket's own mode (less the umask): set on the
    // descriptor before bind, the file never exists with a wider mode, and no path is chmod'ed
    // (a path could be swapped for a link to another file meanwhile).
    guard fchmod(fd, mode) == 0 else {
        let error = fail("fchmod", errno)
        close(fd)
        throw error
    }
    if staging == path, unixSocketIsLive(path) == false { unlink(path) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in staging.utf8.enumerated() { raw[i] = b }
    }
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard bound == 0 else {
        let error = fail("bind", errno)
        close(fd)
        throw error
    }
    guard listen(fd, backlog) == 0 else {
        let error = fail("listen", errno)
        close(fd)
        unlink(staging)
        throw error
    }
    if staging != path, rename(staging, path) != 0 {
        let error = fail("rename into place", errno)
        close(fd)
        unlink(staging)
        throw error
    }
    return fd
}

/// True when something accepts connections at `path`. After our own listener
/// has closed, a live socket there belongs to a newer server that took the path,
/// and must not be unlinked. (Inode numbers and coarse timestamps are reused too
/// quickly to tell two socket files apart by identity.)
package func unixSocketIsLive(_ path: String) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
    }
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    // A full backlog (EAGAIN) still means a live listener.
    return rc == 0 || errno == EAGAIN || errno == EINPROGRESS
}
