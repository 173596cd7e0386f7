import Logging
import NIOCore

/// Serves one connection: decodes each framed request in place, runs it, and
/// writes the reply. Calls on a connection run one at a time, in order; frames
/// that arrive meanwhile wait in a queue. The call itself runs in a task whose
/// executor is this connection's event loop, so a `ping` is answered on the
/// thread that read it; other methods hop to the global executor inside
/// `MessageProcessor.run`.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let processor: MessageProcessor
    let logger: Logger
    var executor: EventLoopTaskExecutor?
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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
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
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            Task(executorPreference: executor) {
                let outcome = await processor.run(header, request)
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
        case .reply(let bytes):
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
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
