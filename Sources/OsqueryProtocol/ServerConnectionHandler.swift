import Logging
import NIOCore
import ThriftCodec

#if canImport(Glibc)
import Glibc
#endif

/// Serves one connection: finds each whole request in the byte stream, runs it, and writes
/// the reply. Calls on a connection run one at a time, in order; calls that arrive meanwhile
/// wait in a queue. A call the service answers without waiting (`ping`) is answered on the
/// connection's event loop as it is read, with one write; any other runs in a task on the
/// global executor, and its reply comes back to the event loop to be written.
///
/// What a peer can make the server hold is bounded (``ServerLimits``): at most
/// `maxPipelinedCalls` calls wait, and past that, or while the peer leaves a reply unread
/// (the channel is not writable), the connection is not read at all, so the kernel's buffers
/// fill and the peer blocks. Unfinished messages beyond a small allowance draw on a budget
/// shared by the server's connections; replies not yet taken by the kernel share another (a quarter of
/// the message size), past which the connections whose peers have left replies unread longest are
/// closed. A message that stalls, a reply left unread and an idle
/// connection are closed after their timeouts; a call whose connection closes is cancelled.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let processor: MessageProcessor
    let limits: ServerLimits
    let shared: ServerShared
    let logger: Logger
    var peer: PeerCredentials?
    var framer: MessageFramer
    /// Received bytes not yet taken as a whole message; starts at a message's first byte.
    var inbound = ByteBuffer()
    /// Put in `inbound`'s place once it is read to the end, so that the channel's read buffer is
    /// no longer shared and NIO reads the next bytes into it again instead of a new one.
    let drained = ByteBuffer()
    /// Whole messages waiting for the call before them, and their bytes.
    var waiting = CircularBuffer<ByteBuffer>()
    var waitingBytes = 0
    /// Bytes drawn from the server's shared budget.
    var charged = 0
    /// Reply bytes written and not yet taken by the kernel.
    var unsent = 0
    /// Listed among the connections whose peer has replies to read (``ServerShared/stalledWriters``).
    var waitingOnPeer = false
    var busy = false
    var open = true
    /// The call in flight, cancelled if the connection closes under it.
    var running: Task<Void, Never>?
    /// Set while the queue is being worked through, so answering a call never re-enters it.
    var pumping = false
    /// A read the channel asked for and was held back.
    var readHeld = false
    var budgetRetry: Scheduled<Void>?
    /// The connection's one timer, and when it fires. It is not moved forward at every call:
    /// when it fires early it looks at `stall` and `stallSince` and sets itself again.
    var timer: Scheduled<Void>?
    var timerDeadline = NIODeadline.distantFuture
    /// What the connection waits on (nil: a call runs), since when.
    var stall: Stall?
    var stallSince = NIODeadline.uptimeNanoseconds(0)
    /// A message completed or a reply went out since `stallSince`.
    var progressed = false

    enum Stall: Equatable {
        case idle, partialMessage, unreadReply
    }

    init(processor: MessageProcessor, limits: ServerLimits, shared: ServerShared, logger: Logger) {
        self.processor = processor
        self.limits = limits
        self.shared = shared
        self.logger = logger
        self.framer = MessageFramer(limits: limits.thrift)
    }

    func channelActive(context: ChannelHandlerContext) {
        // SO_PEERCRED: the connecting process's pid/uid/gid, from the kernel.
        if let provider = context.channel as? any SocketOptionProvider {
            let future: EventLoopFuture<RawPeerCredentials> = provider.unsafeGetSocketOption(
                level: .socket, name: NIOBSDSocket.Option(rawValue: soPeerCred))
            future.assumeIsolated().whenSuccess { [self] cred in
                peer = PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
            }
        }
        armTimer(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard open else { return }
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            inbound.writeBuffer(&bytes)
        }
        pump(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { progressed = true }
        pump(context: context)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if mayRead(context: context) {
            context.read()
        } else {
            readHeld = true
        }
    }

    /// Takes whole messages off the stream into the queue while there is room, and runs the
    /// queue's calls in order while none is in flight and the peer reads its replies. A loop,
    /// not recursion: any number of calls answered at once (unknown methods, bad arguments)
    /// are worked through on a flat stack.
    func pump(context: ChannelHandlerContext) {
        guard !pumping else { return }
        pumping = true
        defer { pumping = false }
        while open {
            do {
                while waiting.count < limits.maxPipelinedCalls, let frame = try nextFrame() {
                    waiting.append(frame)
                    waitingBytes += frame.readableBytes
                    shared.queuedCalls.add(1, ordering: .relaxed)
                }
            } catch {
                // Malformed or oversized input: the stream cannot be resynchronised.
                close(context: context, because: "closing connection after a protocol error: \(error)")
                return
            }
            guard !busy, context.channel.isWritable, let next = waiting.popFirst() else { break }
            waitingBytes -= next.readableBytes
            shared.queuedCalls.subtract(1, ordering: .relaxed)
            handle(next, context: context)
        }
        guard open else { return }
        if inbound.readableBytes == 0 { inbound = drained }
        account()
        if readHeld, mayRead(context: context) {
            readHeld = false
            context.read()
        }
        if readHeld, overBudget, budgetRetry == nil {
            // Other connections free the budget; look again shortly.
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            budgetRetry = context.eventLoop.scheduleTask(in: TimeAmount(ServerLimits.budgetRetry)) {
                let (handler, context) = bound.value
                handler.budgetRetry = nil
                handler.pump(context: context)
            }
        }
        armTimer(context: context)
    }

    /// The next whole message in `inbound`, if all of it has arrived.
    func nextFrame() throws(ThriftError) -> ByteBuffer? {
        guard inbound.readableBytes > 0 else { return nil }
        let length = try inbound.withUnsafeReadableBytes { raw throws(ThriftError) in try framer.scan(raw) }
        guard let length else { return nil }
        progressed = true
        return inbound.readSlice(length: length)
    }

    var overBudget: Bool {
        charged > 0 && shared.heldBytes.load(ordering: .relaxed) > limits.maxMessageSize
    }

    func mayRead(context: ChannelHandlerContext) -> Bool {
        open && waiting.count < limits.maxPipelinedCalls && context.channel.isWritable && !overBudget
    }

    /// Draws on (or returns to) the shared budget what this connection holds past its allowance.
    func account() {
        let charge = max(0, inbound.readableBytes + waitingBytes - ServerLimits.perConnectionAllowance)
        guard charge != charged else { return }
        shared.heldBytes.add(charge - charged, ordering: .relaxed)
        charged = charge
    }

    func handle(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        switch frame.withUnsafeReadableBytes({ processor.decode($0) }) {
        case .answer(let outcome):
            send(outcome, context: context)
        case .run(let header, let request):
            if let outcome = processor.runNow(header, request) {
                send(outcome, context: context)
                return
            }
            busy = true
            let processor = self.processor
            let peer = self.peer
            let shared = self.shared
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            shared.runningCalls.add(1, ordering: .relaxed)
            // Straight onto the global executor (handlers may be slow), and back to the loop once.
            running = Task {
                let outcome = await PeerCredentials.$current.withValue(peer) {
                    await processor.run(header, request)
                }
                let delivered = shared.onLoop(loop) {
                    let (handler, context) = bound.value
                    handler.running = nil
                    handler.busy = false
                    handler.send(outcome, context: context)
                    shared.runningCalls.subtract(1, ordering: .relaxed)
                    handler.pump(context: context)
                }
                // The server stopped and its own loops are gone: nobody is left to answer.
                if !delivered { shared.runningCalls.subtract(1, ordering: .relaxed) }
            }
        }
    }

    func send(_ outcome: MessageProcessor.Outcome, context: ChannelHandlerContext) {
        guard open else { return }
        progressed = true
        switch outcome {
        case .reply(let buffer, let garbage):
            let promise = written(buffer.readableBytes, context: context)
            release(garbage, after: promise)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
        case .replyInParts(let parts, let garbage):
            // One flush: the parts go out together (writev), as one message.
            let size = parts.reduce(0) { $0 + $1.readableBytes }
            for part in parts.dropLast() { context.write(wrapOutboundOut(part), promise: nil) }
            if let last = parts.last {
                let promise = written(size, context: context)
                release(garbage, after: promise)
                context.write(wrapOutboundOut(last), promise: promise)
            }
            context.flush()
        case .none:
            return
        case .close(let why):
            close(context: context, because: "closing connection: \(why)")
            return
        }
        // A reply the kernel did not take whole waits for the peer to read: the server counts
        // how long, and past its budget closes the connections that have waited longest.
        if unsent > 0 {
            shared.stalled(context.channel, bytes: unsent)
            waitingOnPeer = true
            shared.shed(budget: limits.unsentReplyBudget, logger: logger)
        }
    }

    /// Frees `garbage` once the reply's bytes are with the kernel, on a pool thread, while the
    /// peer reads.
    func release(_ garbage: (any Sendable)?, after promise: EventLoopPromise<Void>) {
        guard let garbage else { return }
        promise.futureResult.whenComplete { _ in
            Task.detached(priority: .utility) { withExtendedLifetime(garbage) {} }
        }
    }

    /// Counts `size` reply bytes as unsent until the kernel has them (or the write fails).
    func written(_ size: Int, context: ChannelHandlerContext) -> EventLoopPromise<Void> {
        unsent += size
        shared.outboundBytes.add(size, ordering: .relaxed)
        let promise = context.eventLoop.makePromise(of: Void.self)
        let shared = self.shared
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in
            shared.outboundBytes.subtract(size, ordering: .relaxed)
            let (handler, context) = bound.value
            handler.unsent -= size
            if handler.unsent == 0, handler.waitingOnPeer {
                handler.waitingOnPeer = false
                shared.resumed(context.channel)
            }
        }
        return promise
    }

    /// Keeps the connection's timer for the state it is in: none while a call runs (calls have
    /// their own deadlines), the partial-message timeout while a reply waits for the peer to read
    /// it or a message has begun but not ended, the idle timeout otherwise. Each starts again
    /// when the state changes or a call makes progress.
    func armTimer(context: ChannelHandlerContext) {
        let want: Stall?
        if !open || busy {
            want = nil
        } else if !context.channel.isWritable {
            want = .unreadReply
        } else if inbound.readableBytes > 0 {
            want = .partialMessage
        } else {
            want = .idle
        }
        if want != stall || progressed {
            progressed = false
            stall = want
            stallSince = .now()
        }
        guard let want else { return }
        let deadline = stallSince + TimeAmount(delay(want))
        // A timer that fires no later than needed stays: it looks again when it fires.
        if timer != nil, timerDeadline <= deadline { return }
        schedule(at: deadline, context: context)
    }

    func delay(_ stall: Stall) -> Duration {
        stall == .idle ? limits.idleTimeout : limits.partialMessageTimeout
    }

    func schedule(at deadline: NIODeadline, context: ChannelHandlerContext) {
        timer?.cancel()
        timerDeadline = deadline
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.timer = nil
            handler.timerDeadline = .distantFuture
            handler.timerFired(context: context)
        }
    }

    func timerFired(context: ChannelHandlerContext) {
        guard open, let stall else { return }
        let delay = delay(stall)
        let deadline = stallSince + TimeAmount(delay)
        if deadline > .now() {
            schedule(at: deadline, context: context)
            return
        }
        let why =
            switch stall {
            case .idle: "no call for \(delay)"
            case .partialMessage: "a message was not completed within \(delay)"
            case .unreadReply: "the peer did not read its reply within \(delay)"
            }
        close(context: context, because: "closing connection: \(why)")
    }

    func close(context: ChannelHandlerContext, because why: String) {
        guard open else { return }
        logger.info("\(why)")
        release()
        context.close(promise: nil)
    }

    /// Gives back everything the connection held: the shared budget, its queue, its timers.
    func release() {
        open = false
        timer?.cancel()
        timer = nil
        timerDeadline = .distantFuture
        stall = nil
        budgetRetry?.cancel()
        budgetRetry = nil
        if !waiting.isEmpty { shared.queuedCalls.subtract(waiting.count, ordering: .relaxed) }
        waiting.removeAll()
        waitingBytes = 0
        inbound = drained
        if charged != 0 { shared.heldBytes.subtract(charged, ordering: .relaxed) }
        charged = 0
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The caller is gone: its call's work is wasted, so stop it.
        running?.cancel()
        shared.resumed(context.channel)
        release()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close(context: context, because: "closing connection after an error: \(error)")
    }
}

/// Linux's `struct ucred` (not exported to Swift without _GNU_SOURCE).
struct RawPeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Linux's SO_PEERCRED option number.
let soPeerCred: Int32 = 17
