import NIOCore
import NIOPosix
package import ThriftCodec
import Synchronization

/// Why a call to a core or an extension failed.
package enum RPCClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What an error met while reading a reply becomes: itself, the peer's exception, or a
    /// protocol error (malformed bytes).
    init(readingReply error: any Error) {
        switch error {
        case let error as RPCClientError: self = error
        case let error as TApplicationException: self = .applicationException(error)
        default: self = .protocolError("\(error)")
        }
    }

    /// The socket path is unusable (empty or longer than `sun_path` allows).
    case badSocketPath(SocketPathError)
    /// Nothing exists at the socket path.
    case noSocket(path: String)
    /// A file exists, but nobody is listening on it.
    case connectionRefused(path: String)
    /// The socket exists but we may not write to it.
    case permissionDenied(path: String)
    /// Connecting took longer than allowed.
    case connectTimedOut(path: String, after: Duration)
    /// No reply within the call's deadline; the connection was closed, so a
    /// late reply can never be mistaken for the answer to another call.
    case timedOut(method: String, after: Duration)
    /// The peer closed the connection before replying.
    case peerClosed(path: String)
    /// Connecting failed for another reason.
    case connectFailed(path: String, reason: String)
    /// The peer's bytes were not a valid Thrift reply.
    case protocolError(String)
    /// The peer answered with a `TApplicationException` (unknown method, handler failure, …).
    case applicationException(TApplicationException)

    /// The failure as one line, naming the socket or method.
    package var description: String {
        switch self {
        case .badSocketPath(let e): "bad socket path: \(e)"
        case .noSocket(let path): "no socket at \(path)"
        case .connectionRefused(let path): "connection refused at \(path) (nothing is listening)"
        case .permissionDenied(let path): "permission denied connecting to \(path)"
        case .connectTimedOut(let path, let d): "timed out after \(d) connecting to \(path)"
        case .timedOut(let method, let d): "\(method) timed out after \(d)"
        case .peerClosed(let path): "the peer at \(path) closed the connection"
        case .connectFailed(let path, let reason): "could not connect to \(path): \(reason)"
        case .protocolError(let why): "protocol error: \(why)"
        case .applicationException(let e): "\(e)"
        }
    }
}

/// Options for ``RPCClient``.
package struct RPCClientOptions: Sendable {
    /// How long connecting may take.
    package var connectTimeout: Duration
    /// The deadline for one call. osquery's `--thrift_timeout` defaults to 300 s.
    package var callTimeout: Duration
    /// Limits on what a reply may contain.
    package var limits: ThriftLimits
    /// Idle connections kept for reuse; each in-flight call has its own connection.
    package var maxIdleConnections: Int
    /// How long a call made off the event loops waits for its reply on the caller's thread
    /// (``DirectConnection``; the kernel rounds it up to a clock tick) before an event loop
    /// takes the rest of the wait over. Zero: every call goes through an event loop.
    package var syncBudget: Duration

    package init(
        connectTimeout: Duration = .seconds(3),
        callTimeout: Duration = .seconds(300),
        limits: ThriftLimits = .default,
        maxIdleConnections: Int = 4,
        syncBudget: Duration = .milliseconds(1)
    ) {
        self.connectTimeout = connectTimeout
        self.callTimeout = callTimeout
        self.limits = limits
        self.maxIdleConnections = maxIdleConnections
        self.syncBudget = syncBudget
    }
}

/// A client for osquery's services on a Unix socket.
///
/// Each in-flight call uses its own connection: calls never wait on each other
/// and there is no shared lock held across a call. Finished connections are
/// kept for reuse. A call that times out or fails closes its connection.
///
/// A call made off the event loops runs on the caller's thread (``DirectConnection``) as long
/// as its reply comes within ``RPCClientOptions/syncBudget``; an event loop finishes the rest.
package final class RPCClient: Sendable {
    package let path: String
    package let options: RPCClientOptions
    let idle: Mutex<IdleConnections>

    struct IdleConnections: ~Copyable {
        var direct: [DirectConnection] = []
        var onLoop: [Connection] = []
    }

    package init(path: String, options: RPCClientOptions = RPCClientOptions()) {
        self.path = path
        self.options = options
        self.idle = Mutex(IdleConnections())
    }

    deinit { close() }

    /// Sends `request` and returns the reply.
    nonisolated(nonsending) package func invoke(_ request: ExtensionRequest, timeout: Duration? = nil)
        async throws(RPCClientError) -> ExtensionReply
    {
        try await invokeRaw(request, timeout: timeout).decode()
    }

    /// Sends `request` and returns the reply undecoded (its header checked), so that a caller
    /// can decode it later, on its own thread, straight into its own representation
    /// (``RawReply/decodeResponse(rows:)``) instead of building every row as a ``StringMap``.
    nonisolated(nonsending) package func invokeRaw(_ request: ExtensionRequest, timeout: Duration? = nil)
        async throws(RPCClientError) -> RawReply
    {
        let timeout = timeout ?? options.callTimeout
        // On an event loop, waiting on this thread would stall every channel of that loop.
        if options.syncBudget > .zero, MultiThreadedEventLoopGroup.currentEventLoop == nil {
            while let connection = try checkOutDirect() {
                switch connection.exchange(request, timeout: timeout) {
                case .reply(let reply, let keep):
                    if keep { checkIn(connection) } else { connection.close() }
                    return reply
                case .failed(let error, let keep):
                    if keep { checkIn(connection) } else { connection.close() }
                    throw error
                case .stale:
                    connection.close()
                case .slow(let handoff):
                    return try await DirectConnection.finishOnEventLoop(
                        fd: connection.fd, handoff, method: request.method, timeout: timeout, path: path,
                        limits: options.limits)
                }
            }
        }
        let connection = try await checkOut()
        do {
            let reply = try await connection.invokeRaw(request, timeout: timeout)
            checkIn(connection)
            return reply
        } catch {
            // An exception reply leaves the stream in a clean state; anything else may not.
            if case .applicationException = error { checkIn(connection) } else { connection.close() }
            throw error
        }
    }

    /// Closes the idle connections.
    package func close() {
        let (direct, onLoop) = idle.withLock { pool in
            defer {
                pool.direct.removeAll()
                pool.onLoop.removeAll()
            }
            return (pool.direct, pool.onLoop)
        }
        for connection in direct { connection.close() }
        for connection in onLoop { connection.close() }
    }

    /// An idle direct connection or a new one; nil when connecting needs the event loop.
    func checkOutDirect() throws(RPCClientError) -> DirectConnection? {
        if let connection = idle.withLock({ $0.direct.popLast() }) { return connection }
        switch DirectConnection.connect(path: path, options: options) {
        case .connected(let connection): return connection
        case .failed(let error): throw error
        case .useEventLoop: return nil
        }
    }

    func checkIn(_ connection: DirectConnection) {
        let kept = idle.withLock { pool in
            guard pool.direct.count < options.maxIdleConnections else { return false }
            pool.direct.append(connection)
            return true
        }
        if !kept { connection.close() }
    }

    func checkOut() async throws(RPCClientError) -> Connection {
        while let connection = idle.withLock({ $0.onLoop.popLast() }) {
            if connection.isActive { return connection }
            connection.close()
        }
        return try await Connection.connect(path: path, options: options)
    }

    func checkIn(_ connection: Connection) {
        let kept = idle.withLock { pool in
            guard pool.onLoop.count < options.maxIdleConnections, connection.isActive else { return false }
            pool.onLoop.append(connection)
            return true
        }
        if !kept { connection.close() }
    }
}

/// One connection: one call at a time.
final class Connection: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<ReplyHandler>
    let path: String
    let limits: ThriftLimits
    let nextSequenceID = Atomic<Int32>(1)

    init(channel: any Channel, handler: NIOLoopBound<ReplyHandler>, path: String, limits: ThriftLimits) {
        self.channel = channel
        self.handler = handler
        self.path = path
        self.limits = limits
    }

    var isActive: Bool { channel.isActive }

    static func connect(path: String, options: RPCClientOptions) async throws(RPCClientError) -> Connection {
        do {
            try validateSocketPath(path)
        } catch {
            throw .badSocketPath(error)
        }
        let timeout = options.connectTimeout
        let limits = options.limits
        do {
            let (channel, handler) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.nanoseconds(Int64(timeout.nanoseconds)))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(ThriftFrameDecoder(limits: limits)))
                        try channel.pipeline.syncOperations.addHandler(ReplyHandler(path: path))
                    }
                }
                .connect(unixDomainSocketPath: path)
                .flatMap { channel in
                    channel.pipeline.handler(type: ReplyHandler.self).map { handler in
                        (channel, NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    }
                }
                .get()
            return Connection(channel: channel, handler: handler, path: path, limits: limits)
        } catch let error as IOError {
            switch error.errnoCode {
            case ENOENT: throw .noSocket(path: path)
            case ECONNREFUSED: throw .connectionRefused(path: path)
            case EACCES, EPERM: throw .permissionDenied(path: path)
            default: throw .connectFailed(path: path, reason: "\(error)")
            }
        } catch ChannelError.connectTimeout {
            throw .connectTimedOut(path: path, after: timeout)
        } catch {
            throw .connectFailed(path: path, reason: "\(error)")
        }
    }

    func invoke(_ request: ExtensionRequest, timeout: Duration) async throws(RPCClientError) -> ExtensionReply {
        try await invokeRaw(request, timeout: timeout).decode()
    }

    /// Sends and waits for the reply frame; checks its header (name, sequence id, type) so the
    /// connection is known to be in step before it goes back to the pool. An exception reply
    /// is decoded and thrown here.
    func invokeRaw(_ request: ExtensionRequest, timeout: Duration) async throws(RPCClientError) -> RawReply {
        let method = request.method
        let sequenceID = nextSequenceID.add(1, ordering: .relaxed).oldValue
        let header = MessageHeader(name: ThriftString(method.rawValue), type: .call, sequenceID: sequenceID)
        let bytes = encodeMessage(header) { request.writeArguments(to: &$0) }
        let promise = channel.eventLoop.makePromise(of: ReceivedFrame.self)
        let handler = self.handler
        let name = method.rawValue
        channel.eventLoop.execute {
            handler.value.send(bytes, promise: promise, timeout: timeout, method: name)
        }
        return try await Self.reply(promise.futureResult, method: method, sequenceID: sequenceID, limits: limits)
    }

    /// Waits for the reply frame an event loop reads and checks its header.
    static func reply(
        _ future: EventLoopFuture<ReceivedFrame>, method: ExtensionMethod, sequenceID: Int32, limits: ThriftLimits
    ) async throws(RPCClientError) -> RawReply {
        let received: ReceivedFrame
        do {
            received = try await future.get()
        } catch let error as RPCClientError {
            throw error
        } catch {
            throw .protocolError("\(error)")
        }
        let frame = received.bytes
        let bodyStart = try frame.withUnsafeReadableBytes { raw throws(RPCClientError) in
            try checkReplyHeader(raw, method: method, sequenceID: sequenceID, limits: limits)
        }
        return RawReply(frame: frame, bodyStart: bodyStart, method: method, limits: limits, rows: received.rows)
    }

    /// Reads the reply's header; returns where its body starts. An exception reply is thrown.
    static func checkReplyHeader(
        _ raw: UnsafeRawBufferPointer, method: ExtensionMethod, sequenceID: Int32, limits: ThriftLimits
    ) throws(RPCClientError) -> Int {
        var reader = ThriftReader(raw, limits: limits)
        do {
            let header = try reader.readMessageBegin()
            guard header.name == ThriftString(method.rawValue) else {
                throw RPCClientError.protocolError(
                    "reply names \(header.name.debugDescription), expected \(method.rawValue)")
            }
            guard header.sequenceID == sequenceID else {
                throw RPCClientError.protocolError("reply sequence id \(header.sequenceID), expected \(sequenceID)")
            }
            switch header.type {
            case .reply:
                return reader.offset
            case .exception:
                throw RPCClientError.applicationException(try TApplicationException(from: &reader))
            case .call, .oneway:
                throw RPCClientError.protocolError("peer sent a \(header.type) message instead of a reply")
            }
        } catch {
            throw RPCClientError(readingReply: error)
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Matches the one outstanding request with its reply and enforces the deadline.
final class ReplyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ReceivedFrame
    typealias OutboundOut = ByteBuffer

    let path: String
    var context: ChannelHandlerContext?
    var pending: EventLoopPromise<ReceivedFrame>?
    var deadline: Scheduled<Void>?
    var closedError: RPCClientError?

    /// A call already written (or partly written) on the caller's thread, whose reply this
    /// handler now waits for: see ``DirectConnection``.
    var handedOff: (promise: EventLoopPromise<ReceivedFrame>, unsent: [UInt8], within: Int64, timeout: Duration, method: String)?

    init(path: String) { self.path = path }

    init(
        path: String, awaiting promise: EventLoopPromise<ReceivedFrame>, unsent: [UInt8], within remaining: Int64,
        timeout: Duration, method: String
    ) {
        self.path = path
        self.handedOff = (promise, unsent, remaining, timeout, method)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let call = handedOff {
            // Pending before the channel is active, so the first bytes read find their call.
            wait(for: call.promise, within: call.within, timeout: call.timeout, method: call.method)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        if let call = handedOff {
            handedOff = nil
            if !call.unsent.isEmpty {
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: call.unsent)), promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        fail(.peerClosed(path: path))
        self.context = nil
    }

    func send(_ bytes: [UInt8], promise: EventLoopPromise<ReceivedFrame>, timeout: Duration, method: String) {
        guard let context, closedError == nil else {
            promise.fail(closedError ?? .peerClosed(path: path))
            return
        }
        guard pending == nil else {
            promise.fail(RPCClientError.protocolError("a call is already in flight on this connection"))
            return
        }
        wait(for: promise, within: timeout.nanoseconds, timeout: timeout, method: method)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    /// Makes `promise` the call in flight, failed with `timedOut(after: timeout)` unless its reply
    /// arrives within `remaining` ns.
    func wait(for promise: EventLoopPromise<ReceivedFrame>, within remaining: Int64, timeout: Duration, method: String) {
        guard let context else { return }
        pending = promise
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(remaining)) { [weak self] in
            guard let self else { return }
            self.fail(.timedOut(method: method, after: timeout))
            self.context?.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let promise = pending else {
            // A reply nobody asked for: the stream cannot be trusted any more.
            closedError = .protocolError("unexpected message with no call in flight")
            context.close(promise: nil)
            return
        }
        pending = nil
        deadline?.cancel()
        deadline = nil
        promise.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.peerClosed(path: path))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let io = error as? IOError, [ECONNRESET, EPIPE].contains(io.errnoCode) {
            fail(.peerClosed(path: path))
        } else {
            fail(.protocolError("\(error)"))
        }
        context.close(promise: nil)
    }

    func fail(_ error: RPCClientError) {
        if closedError == nil { closedError = error }
        deadline?.cancel()
        deadline = nil
        if let promise = pending {
            pending = nil
            promise.fail(error)
        }
    }
}

extension Duration {
    /// The whole duration in nanoseconds, saturating.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (ns, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : ns &+ attoseconds / 1_000_000_000
    }
}
