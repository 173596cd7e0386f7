package import Logging
import NIOCore
import NIOPosix
import ThriftCodec
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Serves an ``ExtensionService`` over osquery's wire: Thrift binary protocol,
/// unframed, on a Unix domain socket.
///
/// Many connections are served at once, so a slow call on one connection never delays
/// another; calls on one connection run in order. A call the service answers without
/// waiting (``ExtensionService/respondNow``: `ping`) is answered on the connection's event
/// loop as soon as it is read; every other method runs on the global concurrent executor.
/// What a peer can make the server hold is bounded by ``ServerLimits``. The socket file is created with mode 0600,
/// any stale file at the path is replaced, and the server removes its own file
/// when it stops.
package final class RPCServer: Sendable {
    /// The socket path being served.
    package var path: String { currentPath.get() }
    let currentPath: SharedPath
    let serveTask: Mutex<Task<Void, Never>?>
    let finished: Task<Void, Never>
    let open: OpenConnections
    let shared: ServerShared

    /// Calls received and waiting for the call before them on their connection, over all
    /// connections (what ``ServerLimits/maxPipelinedCalls`` bounds per connection).
    package var queuedCalls: Int { shared.queuedCalls.load(ordering: .relaxed) }
    /// Calls whose handler runs or whose reply is not yet written.
    package var runningCalls: Int { shared.runningCalls.load(ordering: .relaxed) }
    /// Bytes of unfinished or waiting messages held past the per-connection allowance.
    package var heldBytes: Int { shared.heldBytes.load(ordering: .relaxed) }
    /// Reply bytes written and not yet taken by the kernel.
    package var outboundBytes: Int { shared.outboundBytes.load(ordering: .relaxed) }
    /// Connections being served.
    package var connectionCount: Int { open.count }
    /// Connections closed at once because the server was at ``ServerLimits/maxConnections``.
    package var refusedConnections: Int { open.refused }

    /// Binds `path` and starts serving `service` in the background, within `limits`.
    package static func start(
        path: String,
        service: ExtensionService,
        limits: ServerLimits = .default,
        logger: Logger = Logger(label: "osquery.rpc.server")
    ) async throws -> RPCServer {
        try await start(path: path, service: service, limits: limits, logger: logger, ownThreads: 0)
    }

    /// As `start`, on `ownThreads` event-loop threads of its own (0: the shared group), shut
    /// down with the server: tests that flood a server keep their load off everyone else's loops.
    package static func start(
        path: String,
        service: ExtensionService,
        limits: ServerLimits = .default,
        logger: Logger = Logger(label: "osquery.rpc.server"),
        ownThreads: Int
    ) async throws -> RPCServer {
        try validateSocketPath(path)
        let ownedGroup = ownThreads > 0 ? MultiThreadedEventLoopGroup(numberOfThreads: ownThreads) : nil
        // Through the initializer again: values set on the properties are brought into range too.
        let limits = ServerLimits(
            maxMessageSize: limits.maxMessageSize, maxDepth: limits.maxDepth, maxPipelinedCalls: limits.maxPipelinedCalls,
            idleTimeout: limits.idleTimeout, partialMessageTimeout: limits.partialMessageTimeout,
            maxConnections: limits.maxConnections)
        let processor = MessageProcessor(service: service, limits: limits.thrift)
        let fd = try bindUnixSocket(path: path, mode: 0o600, backlog: 256)
        let identity = FileIdentity(path)
        let open = OpenConnections(limit: limits.maxConnections, logger: logger)
        let shared = ServerShared()
        let channel: NIOAsyncChannel<any Channel, Never>
        do {
            // NIO's bootstrap backs off accepting on EMFILE/ENFILE and keeps the listener.
            channel = try await ServerBootstrap(group: ownedGroup ?? MultiThreadedEventLoopGroup.singleton)
                .childChannelOption(
                    .writeBufferWaterMark,
                    value: .init(low: ServerLimits.writeLowWater, high: ServerLimits.writeHighWater))
                // One read per wake-up: a connection told to stop reading stops after one buffer.
                .childChannelOption(.maxMessagesPerRead, value: 1)
                .bind(fd) { child in
                    // Tracked from the moment it is accepted: it is served from then on,
                    // so stop() must be able to close it even before the accept loop sees it.
                    // One past the cap is closed at once.
                    guard open.add(child) else { return child.eventLoop.makeSucceededFuture(child) }
                    return child.eventLoop.makeCompletedFuture {
                        try child.pipeline.syncOperations.addHandler(
                            ServerConnectionHandler(processor: processor, limits: limits, shared: shared, logger: logger))
                        return child
                    }
                }
        } catch {
            Glibc.close(fd)
            if let identity, FileIdentity(path) == identity { unlink(path) }
            try? await ownedGroup?.shutdownGracefully()
            throw error
        }
        return RPCServer(
            path: SharedPath(path, identity: identity), channel: channel, open: open, shared: shared, logger: logger,
            ownedGroup: ownedGroup)
    }

    private init(
        path currentPath: SharedPath,
        channel: NIOAsyncChannel<any Channel, Never>,
        open: OpenConnections,
        shared: ServerShared,
        logger: Logger,
        ownedGroup: MultiThreadedEventLoopGroup?
    ) {
        self.currentPath = currentPath
        self.open = open
        self.shared = shared
        let task = Task {
            do {
                // Connections are served by their handlers; the loop only drains accepts.
                try await channel.executeThenClose { connections in
                    for try await _ in connections {}
                }
            } catch is CancellationError {
            } catch {
                logger.debug("server on \(currentPath.get()) stopped: \(error)")
            }
            // Remove our own socket file, unless another server took the path since.
            currentPath.unlinkIfOurs()
            // Only this task closes connections, so nothing is scheduled on a loop of our own
            // group once it is shut down: the connections first, then the calls' way back.
            for connection in open.closeAll() { try? await connection.closeFuture.get() }
            if let ownedGroup {
                shared.closeLoops()
                try? await ownedGroup.shutdownGracefully()
            }
        }
        serveTask = Mutex(task)
        finished = task
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
        guard rename(currentPath.get(), newPath) == 0 else {
            throw SocketBindError(path: newPath, reason: "rename: \(String(cString: strerror(errno)))")
        }
        currentPath.set(newPath)
    }

    /// Stops accepting, closes every connection and removes the socket file, in the
    /// background. Safe to call from inside a handler (it does not wait).
    package func stop() {
        serveTask.withLock { $0?.cancel() }
    }

    /// Waits until the server has stopped and removed its socket file.
    package func waitUntilStopped() async {
        await finished.value
    }

    /// Stops and waits. Calls already running get up to `grace` to write their replies
    /// first: a peer that asked the server to stop (an extension's `shutdown`) gets its answer.
    package func close(grace: Duration = .seconds(1)) async {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while clock.now < deadline,
            shared.runningCalls.load(ordering: .relaxed) > 0 || shared.outboundBytes.load(ordering: .relaxed) > 0
        {
            try? await Task.sleep(for: .milliseconds(5))
        }
        stop()
        await waitUntilStopped()
    }
}

/// The server's current socket path, shared with its serving task.
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

/// What a server's connections share: the counts its limits are checked against.
final class ServerShared: Sendable {
    /// Calls waiting on their connection's queue.
    let queuedCalls = Atomic<Int>(0)
    /// Calls whose handler runs or whose reply is not yet written.
    let runningCalls = Atomic<Int>(0)
    /// Bytes held past each connection's allowance (the budget bounded by the message size).
    let heldBytes = Atomic<Int>(0)
    /// Reply bytes written and not yet taken by the kernel, over all connections.
    let outboundBytes = Atomic<Int>(0)
    /// Unsent reply bytes of connections chosen to be closed and not closed yet.
    let shedding = Atomic<Int>(0)
    /// False once the server's own event loops are shutting down.
    let loopsOpen = Mutex(true)
    /// Connections with reply bytes the kernel has not taken yet, since when.
    let stalledWriters = Mutex<[ObjectIdentifier: StalledWriter]>([:])

    struct StalledWriter {
        let channel: any Channel
        let since: ContinuousClock.Instant
        var bytes: Int
    }

    /// Runs `body` on `loop` (a call's reply on its way back from the global executor), unless
    /// the server's own loops are shutting down: false then, and `body` is dropped.
    func onLoop(_ loop: any EventLoop, _ body: @escaping @Sendable () -> Void) -> Bool {
        loopsOpen.withLock { open in
            if open { loop.execute(body) }
            return open
        }
    }

    /// Called before the server's own group shuts down: from then on ``onLoop(_:_:)`` schedules nothing.
    func closeLoops() {
        loopsOpen.withLock { $0 = false }
    }

    func stalled(_ channel: any Channel, bytes: Int) {
        stalledWriters.withLock { all in
            let key = ObjectIdentifier(channel)
            if all[key] == nil {
                all[key] = StalledWriter(channel: channel, since: .now, bytes: bytes)
            } else {
                all[key]!.bytes = bytes
            }
        }
    }

    func resumed(_ channel: any Channel) {
        _ = stalledWriters.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Unsent replies over `budget`: closes the connections whose peers have left theirs
    /// unread longest, until what they hold covers the excess or one is left. Replies are built before their
    /// size is known, so this is where many peers that never read are kept from holding one
    /// reply each.
    func shed(budget: Int, logger: Logger) {
        let total = outboundBytes.load(ordering: .relaxed)
        guard total > budget else { return }
        let victims = stalledWriters.withLock { all -> [StalledWriter] in
            // Replies of connections already being closed are as good as freed: connections
            // on other event loops shedding at the same moment must not close more.
            var excess = total - shedding.load(ordering: .relaxed) - budget
            var chosen: [StalledWriter] = []
            // One peer alone may always hold a reply up to the message size.
            for writer in all.values.sorted(by: { $0.since < $1.since }) where excess > 0 && all.count > 1 {
                chosen.append(writer)
                excess -= writer.bytes
                shedding.add(writer.bytes, ordering: .relaxed)
                all.removeValue(forKey: ObjectIdentifier(writer.channel))
            }
            return chosen
        }
        for victim in victims {
            logger.info(
                "closing connection: its peer left \(victim.bytes) bytes of replies unread while the server holds \(total) bytes of unsent replies, over the budget of \(budget)")
            let bytes = victim.bytes
            victim.channel.close(promise: nil)
            victim.channel.closeFuture.whenComplete { [self] _ in shedding.subtract(bytes, ordering: .relaxed) }
        }
    }
}

/// Every accepted connection until it closes, so stopping a server closes them all; at most
/// `limit` at once.
final class OpenConnections: Sendable {
    struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var closed = false
        var refused = 0
        var refusedSinceLog = 0
        var lastLog: ContinuousClock.Instant?
    }
    let state = Mutex(State())
    let limit: Int
    let logger: Logger

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    var count: Int { state.withLock { $0.channels.count } }
    var refused: Int { state.withLock { $0.refused } }

    /// Tracks `channel`; false (and the channel closed) when stopped or at the limit.
    func add(_ channel: any Channel) -> Bool {
        enum Verdict { case accepted, stopped, full(log: Int?) }
        let verdict = state.withLock { s -> Verdict in
            guard !s.closed else { return .stopped }
            guard s.channels.count < limit else {
                s.refused += 1
                s.refusedSinceLog += 1
                // One line per interval, however fast connections come.
                let now = ContinuousClock.now
                if let last = s.lastLog, now - last < .seconds(10) { return .full(log: nil) }
                s.lastLog = now
                defer { s.refusedSinceLog = 0 }
                return .full(log: s.refusedSinceLog)
            }
            s.channels[ObjectIdentifier(channel)] = channel
            return .accepted
        }
        switch verdict {
        case .accepted:
            break
        case .stopped:
            channel.close(promise: nil)
            return false
        case .full(let log):
            channel.close(promise: nil)
            if let log {
                logger.warning("at the limit of \(limit) connections: closed \(log) new connection(s)")
            }
            return false
        }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        return true
    }

    /// Closes every connection and refuses new ones; returns the connections it closed.
    func closeAll() -> [any Channel] {
        let all = state.withLock { s -> [any Channel] in
            s.closed = true
            return Array(s.channels.values)
        }
        for channel in all { channel.close(promise: nil) }
        return all
    }
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
