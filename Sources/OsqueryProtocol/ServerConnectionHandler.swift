import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Serves one connection: decodes each framed request in place, runs it, and
/// writes the reply. Calls on a connection run one at a time, in order; frames
/// that arrive meanwhile wait in a queue. The call itself runs in a task whose
/// executor is this connection's event loop, so a `ping` is answered on the
/// thread that read it; other methods hop to the global executor inside
/// `MessageProcessor.run`.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ReceivedFrame
    typealias OutboundOut = ByteBuffer

    let processor: MessageProcessor
    let logger: Logger
    var executor: EventLoopTaskExecutor?
    var peer: PeerCredentials?
    var waiting = CircularBuffer<ByteBuffer>()
    var busy = false
    var open = true

    init(processor: MessageProcessor, logger: Logger) {
        self.processor = processor
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        executor = EventLoopTaskExecutor(context.eventLoop)
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
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data).bytes
        if busy {
            waiting.append(frame)
        } else {
            handle(frame, context: context)
        }
    }

    func handle(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        switch frame.withUnsafeReadableBytes({ processor.decode($0) }) {
        case .answer(let outcome):
            finish(outcome, context: context)
        case .run(let header, let request):
            busy = true
            let processor = self.processor
            let peer = self.peer
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            Task(executorPreference: executor) {
                let outcome = await PeerCredentials.$current.withValue(peer) {
                    await processor.run(header, request)
                }
                // The task's executor is the event loop, so this resumes on it.
                let (handler, context) = bound.value
                handler.busy = false
                handler.finish(outcome, context: context)
            }
        }
    }

    func finish(_ outcome: MessageProcessor.Outcome, context: ChannelHandlerContext) {
        guard open else { return }
        switch outcome {
        case .reply(let buffer):
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .replyThenRelease(let buffer, let garbage):
            // Freed once the bytes are with the kernel, on a pool thread, while the peer reads.
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in
                Task.detached(priority: .utility) { withExtendedLifetime(garbage) {} }
            }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: written)
        case .replyInParts(let parts):
            // One flush: the parts go out together (writev), as one message.
            for part in parts { context.write(wrapOutboundOut(part), promise: nil) }
            context.flush()
        case .none:
            break
        case .close(let why):
            logger.info("closing connection: \(why)")
            open = false
            context.close(promise: nil)
            return
        }
        while !busy, open, let next = waiting.popFirst() {
            handle(next, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        open = false
        waiting.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Malformed or oversized input: a typed error and a closed connection.
        logger.info("closing connection after a protocol error: \(error)")
        open = false
        context.close(promise: nil)
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
