import NIOCore
import NIOPosix
import ThriftCodec

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A connection whose calls the calling thread writes and reads itself.
///
/// Through an event loop a call costs two thread hops (the caller wakes the loop to write, the
/// loop wakes the caller with the reply) on top of the socket I/O; here a call is one `send` and
/// usually one `recv` on the caller's thread. The wait is bounded by the client's `syncBudget`
/// (the socket's send and receive timeouts): a reply still incomplete after it is handed to an
/// event loop, which adopts the socket, so a slow call never holds the caller's thread longer.
///
/// One call at a time: `RPCClient` hands a connection to one caller, and its lock orders the
/// hand-offs, so the mutable state below is never touched by two threads at once.
final class DirectConnection: @unchecked Sendable {
    let fd: CInt
    let path: String
    let limits: ThriftLimits
    /// Longest a call waits on this thread before the event loop takes over.
    let budget: Int64
    /// The socket's send/receive timeout now set, in ns (the budget, or a shorter call timeout).
    var socketTimeout: Int64 = 0
    var nextSequenceID: Int32 = 1
    /// Whether a call has used it: only then can its peer have gone away while it sat idle.
    var used = false
    /// Reused from call to call; a reply handed to the caller is a slice of it, so the next
    /// call writes into fresh storage only while that reply is still alive.
    var inbound: ByteBuffer
    var framer: MessageFramer

    /// Replies bigger than this do not keep their buffer for the next call.
    static let keptBufferCapacity = 256 * 1024

    private init(fd: CInt, path: String, limits: ThriftLimits, budget: Int64) {
        self.fd = fd
        self.path = path
        self.limits = limits
        self.budget = budget
        self.inbound = ByteBufferAllocator().buffer(capacity: 4096)
        self.framer = MessageFramer(limits: limits)
    }

    enum Connected {
        case connected(DirectConnection)
        case failed(RPCClientError)
        /// Connecting needs waiting (a full backlog) or failed in a way the event loop's connect
        /// reports with its own text: connect there instead.
        case useEventLoop
    }

    /// Connects on this thread; a full backlog is not waited for here (see ``Connected``).
    static func connect(path: String, options: RPCClientOptions) -> Connected {
        do { try validateSocketPath(path) } catch { return .failed(.badSocketPath(error)) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .useEventLoop }
        let connection = DirectConnection(fd: fd, path: path, limits: options.limits, budget: options.syncBudget.nanoseconds)
        // Bounds a connect to a full backlog too (Unix sockets wait for room with the send timeout).
        connection.setSocketTimeout(connection.budget)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc == 0 { return .connected(connection) }
        let error = errno
        Glibc.close(fd)
        switch error {
        case ENOENT: return .failed(.noSocket(path: path))
        case ECONNREFUSED: return .failed(.connectionRefused(path: path))
        case EACCES, EPERM: return .failed(.permissionDenied(path: path))
        default: return .useEventLoop
        }
    }

    func close() { Glibc.close(fd) }

    func setSocketTimeout(_ ns: Int64) {
        // 0 would mean "no timeout" to the kernel.
        let ns = max(ns, 1_000)
        var tv = timeval(tv_sec: Int(ns / 1_000_000_000), tv_usec: Int(ns % 1_000_000_000 / 1_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        socketTimeout = ns
    }

    /// What is left of a call once the budget is spent: the event loop finishes it.
    struct Handoff: Sendable {
        var unsent: [UInt8]
        var received: ByteBuffer
        var sequenceID: Int32
        var remaining: Int64
    }

    enum Outcome {
        /// The reply; `keep`: the stream is in step, the connection may serve the next call.
        case reply(RawReply, keep: Bool)
        case failed(RPCClientError, keep: Bool)
        /// The peer closed this idle connection before the call; nothing was sent.
        case stale
        case slow(Handoff)
    }

    /// Writes the call and reads its reply on this thread, within the budget.
    func exchange(_ request: ExtensionRequest, timeout: Duration) -> Outcome {
        let wasUsed = used
        used = true
        let method = request.method
        let sequenceID = nextSequenceID
        nextSequenceID &+= 1
        let timeoutNs = timeout.nanoseconds
        let start = monotonicNanoseconds()
        let callEnd = timeoutNs > Int64.max - start ? Int64.max : start + timeoutNs
        let syncEnd = min(callEnd, start &+ budget)
        let wait = min(budget, timeoutNs)
        if wait != socketTimeout { setSocketTimeout(wait) }

        var writer = ThriftWriter(reservingCapacity: 256)
        writer.writeMessageBegin(MessageHeader(name: ThriftString(method.rawValue), type: .call, sequenceID: sequenceID))
        request.writeArguments(to: &writer)
        var sent = 0
        var writeError: Int32 = 0
        let total = writer.byteCount
        writer.withUnsafeBytes { raw in
            while sent < raw.count {
                let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    sent += n
                    continue
                }
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK, monotonicNanoseconds() < syncEnd { continue }
                writeError = e
                return
            }
        }
        if sent < total {
            switch writeError {
            case EPIPE, ECONNRESET:
                return sent == 0 && wasUsed ? .stale : .failed(.peerClosed(path: path), keep: false)
            case EAGAIN, EWOULDBLOCK:
                let unsent = writer.withUnsafeBytes { Array($0[sent...]) }
                return spent(method: method, timeout: timeout, callEnd: callEnd, unsent: unsent, sequenceID: sequenceID)
            default:
                return .failed(.protocolError("write: \(String(cString: strerror(writeError)))"), keep: false)
            }
        }

        if inbound.capacity > Self.keptBufferCapacity {
            inbound = ByteBufferAllocator().buffer(capacity: 4096)
        } else {
            inbound.clear()
        }
        framer.reset()
        while true {
            var readError: Int32 = 0
            let want = max(4096, inbound.readableBytes)
            let n = inbound.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { buffer in
                let n = recv(fd, buffer.baseAddress, buffer.count, 0)
                if n < 0 { readError = errno }
                return max(n, 0)
            }
            if n > 0 {
                let length: Int?
                do {
                    length = try inbound.withUnsafeReadableBytes { raw throws(ThriftError) in try framer.scan(raw) }
                } catch {
                    return .failed(.protocolError("\(error)"), keep: false)
                }
                guard let length else {
                    if monotonicNanoseconds() >= syncEnd {
                        return spent(method: method, timeout: timeout, callEnd: callEnd, unsent: [], sequenceID: sequenceID)
                    }
                    continue
                }
                let frame = inbound.readSlice(length: length)!
                // Bytes past the reply were never asked for: the stream cannot be trusted.
                let inStep = inbound.readableBytes == 0
                let rows = framer.lastStringMapList
                do {
                    let bodyStart = try frame.withUnsafeReadableBytes { raw throws(RPCClientError) in
                        try Connection.checkReplyHeader(raw, method: method, sequenceID: sequenceID, limits: limits)
                    }
                    return .reply(
                        RawReply(frame: frame, bodyStart: bodyStart, method: method, limits: limits, rows: rows), keep: inStep)
                } catch {
                    // An exception reply leaves the stream in a clean state; anything else may not.
                    if case .applicationException = error { return .failed(error, keep: inStep) }
                    return .failed(error, keep: false)
                }
            }
            switch readError {
            case 0: return .failed(.peerClosed(path: path), keep: false)
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                if monotonicNanoseconds() >= syncEnd {
                    return spent(method: method, timeout: timeout, callEnd: callEnd, unsent: [], sequenceID: sequenceID)
                }
            case ECONNRESET: return .failed(.peerClosed(path: path), keep: false)
            default: return .failed(.protocolError("read: \(String(cString: strerror(readError)))"), keep: false)
            }
        }
    }

    /// The budget is spent: the call's own deadline has passed, or the event loop takes over.
    func spent(method: ExtensionMethod, timeout: Duration, callEnd: Int64, unsent: [UInt8], sequenceID: Int32) -> Outcome {
        let now = monotonicNanoseconds()
        if now >= callEnd { return .failed(.timedOut(method: method.rawValue, after: timeout), keep: false) }
        return .slow(Handoff(unsent: unsent, received: inbound, sequenceID: sequenceID, remaining: callEnd - now))
    }

    /// Hands the socket to an event loop, which sends what is unsent and waits out the rest of the
    /// deadline for the reply. The connection is closed afterwards, not reused.
    static func finishOnEventLoop(
        fd: CInt, _ handoff: Handoff, method: ExtensionMethod, timeout: Duration, path: String, limits: ThriftLimits
    ) async throws(RPCClientError) -> RawReply {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let promise = loop.makePromise(of: ReceivedFrame.self)
        let name = method.rawValue
        let adopted = ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(ReceivedBytesHandler(handoff.received))
                    try ops.addHandler(ByteToMessageHandler(ThriftFrameDecoder(limits: limits)))
                    try ops.addHandler(
                        ReplyHandler(
                            path: path,
                            awaiting: promise,
                            unsent: handoff.unsent,
                            within: handoff.remaining,
                            timeout: timeout,
                            method: name))
                }
            }
            .withConnectedSocket(fd)
        adopted.whenFailure { error in promise.fail(RPCClientError.protocolError("\(error)")) }
        promise.futureResult.whenComplete { _ in adopted.whenSuccess { $0.close(promise: nil) } }
        return try await Connection.reply(promise.futureResult, method: method, sequenceID: handoff.sequenceID, limits: limits)
    }
}

/// Replays the bytes read on the caller's thread before the event loop took the socket over.
final class ReceivedBytesHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    var received: ByteBuffer?

    init(_ received: ByteBuffer) { self.received = received.readableBytes > 0 ? received : nil }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if let received {
            self.received = nil
            context.fireChannelRead(wrapInboundOut(received))
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no syscall).
@inline(__always)
func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
}
