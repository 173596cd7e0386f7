package import NIOCore
package import ThriftCodec

/// What an extension serves: osquery's `Extension` service.
///
/// Implementations must be safe to call concurrently: the server runs calls
/// from different connections at the same time (calls on one connection run
/// in order). Throwing from a method sends the caller a `TApplicationException`
/// carrying the error's description, as libthrift does for a C++ exception.
package protocol ExtensionHandler: Sendable {
    /// Liveness check, answered by the server on the thread that read it, never queued behind
    /// other work: it must not block. osquery's core answers `{0, "pong", 0}` (the default).
    func ping() -> ExtensionStatus
    /// Runs the registry plugin `item` of `registry` with `request`.
    func call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ServerResponse
    /// Asks the extension to stop. Not oneway: the caller waits for the reply.
    func shutdown() async throws
}

extension ExtensionHandler {
    package func ping() -> ExtensionStatus { ExtensionStatus(code: 0, message: "pong") }
}

/// What the core serves on its extensions socket: osquery's `ExtensionManager`.
package protocol ExtensionManagerHandler: ExtensionHandler {
    /// The registered extensions by uuid (the core itself is not listed).
    func extensions() async throws -> InternalExtensionList
    /// Every flag with its value, default and gflags type name.
    func options() async throws -> InternalOptionList
    /// Adds an extension and its plugins; the status carries the new uuid.
    func registerExtension(info: InternalExtensionInfo, registry: ExtensionRegistry) async throws
        -> ExtensionStatus
    func deregisterExtension(uuid: ExtensionRouteUUID) async throws -> ExtensionStatus
    /// Runs SQL; rows come back as strings.
    func query(sql: ThriftString) async throws -> ServerResponse
    /// The result columns of SQL, one `{name: TYPE}` map per column.
    func getQueryColumns(sql: ThriftString) async throws -> ExtensionResponse
}

/// A set of methods and the function that answers them; what an ``RPCServer`` serves.
package struct ExtensionService: Sendable {
    /// The methods this service answers; others get `Invalid method name`.
    package let methods: Set<ExtensionMethod>
    package let respond: @Sendable (ExtensionRequest) async throws -> ServerReply
    /// The answer to `ping`: the server gives it on the thread that read the call, before and
    /// instead of `respond`, so it must never block.
    package let ping: @Sendable () -> ExtensionStatus

    package init(
        methods: Set<ExtensionMethod>,
        ping: @escaping @Sendable () -> ExtensionStatus = { ExtensionStatus(code: 0, message: "pong") },
        respond: @escaping @Sendable (ExtensionRequest) async throws -> ServerReply
    ) {
        self.methods = methods
        self.ping = ping
        self.respond = respond
    }

    /// Serves the `Extension` service (ping, call, shutdown).
    package static func `extension`(_ handler: some ExtensionHandler) -> ExtensionService {
        ExtensionService(methods: [.ping, .call, .shutdown], ping: { handler.ping() }) { request in
            switch request {
            case .ping: return .value(.status(handler.ping()))
            case .call(let registry, let item, let req):
                return .response(try await handler.call(registry: registry, item: item, request: req))
            case .shutdown:
                try await handler.shutdown()
                return .value(.void)
            default:
                throw TApplicationException(.unknownMethod, "Invalid method name: '\(request.method.rawValue)'".thrift)
            }
        }
    }

    /// Serves the `ExtensionManager` service (all nine methods).
    package static func manager(_ handler: some ExtensionManagerHandler) -> ExtensionService {
        let base = ExtensionService.extension(handler)
        return ExtensionService(methods: Set(ExtensionMethod.allCases), ping: { handler.ping() }) { request in
            switch request {
            case .ping, .call, .shutdown: return try await base.respond(request)
            case .extensions: return .value(.extensions(try await handler.extensions()))
            case .options: return .value(.options(try await handler.options()))
            case .registerExtension(let info, let registry):
                return .value(.status(try await handler.registerExtension(info: info, registry: registry)))
            case .deregisterExtension(let uuid):
                return .value(.status(try await handler.deregisterExtension(uuid: uuid)))
            case .query(let sql): return .response(try await handler.query(sql: sql))
            case .getQueryColumns(let sql): return .value(.response(try await handler.getQueryColumns(sql: sql)))
            }
        }
    }
}

/// Turns one complete request message into the bytes to send back. Kept apart
/// from the sockets so it can be tested on bytes alone.
package struct MessageProcessor: Sendable {
    package let service: ExtensionService
    package let limits: ThriftLimits

    package init(service: ExtensionService, limits: ThriftLimits = .default) {
        self.service = service
        self.limits = limits
    }

    /// What to do after a message.
    package enum Outcome: Sendable {
        /// Send these bytes (a REPLY or an EXCEPTION message), then free `releaseAfterSending`
        /// off the connection's thread.
        case reply(ByteBuffer, releaseAfterSending: (any Sendable)? = nil)
        /// Send these buffers, in order, as one reply (rows already in a buffer are not copied
        /// into another), then free `releaseAfterSending` off the connection's thread.
        case replyInParts([ByteBuffer], releaseAfterSending: (any Sendable)? = nil)
        /// Nothing to send (a oneway call).
        case none
        /// The peer broke the protocol in a way that makes the stream unusable.
        case close(String)
    }

    enum Decoded {
        case run(MessageHeader, ExtensionRequest)
        case answer(Outcome)
    }

    /// Answers one message. `frame` must hold exactly one whole message, as
    /// ``MessageFramer`` delimits it.
    package func process(_ frame: [UInt8]) async -> Outcome {
        let decoded = frame.withUnsafeBytes { decode($0) }
        switch decoded {
        case .answer(let outcome):
            return outcome
        case .run(let header, let request):
            return await run(header, request)
        }
    }

    /// Same as ``process(_:)`` for a frame in a buffer the caller owns.
    package func process(_ frame: UnsafeRawBufferPointer) async -> Outcome {
        // Decode before the first suspension: the buffer is only valid now.
        switch decode(frame) {
        case .answer(let outcome): return outcome
        case .run(let header, let request): return await run(header, request)
        }
    }

    func decode(_ frame: UnsafeRawBufferPointer) -> Decoded {
        var reader = ThriftReader(frame, limits: limits)
        let header: MessageHeader
        do {
            header = try reader.readMessageBegin()
        } catch {
            return .answer(.close("bad message header: \(error)"))
        }
        guard header.type == .call || header.type == .oneway else {
            return .answer(.close("unexpected message type \(header.type) from a client"))
        }
        guard let method = ExtensionMethod(name: header.name), service.methods.contains(method) else {
            let name = header.name.lossyString
            return .answer(
                exception(header, TApplicationException(.unknownMethod, "Invalid method name: '\(name)'".thrift)))
        }
        do {
            return .run(header, try ExtensionRequest.readArguments(of: method, from: &reader))
        } catch {
            return .answer(exception(header, TApplicationException(.protocolError, "\(error)".thrift)))
        }
    }

    /// The outcome of a request the server answers without waiting (`ping`), or nil when it must
    /// be run with ``run(_:_:)``.
    func runNow(_ header: MessageHeader, _ request: ExtensionRequest) -> Outcome? {
        guard case .ping = request else { return nil }
        return outcome(header, request, .value(.status(service.ping())))
    }

    func run(_ header: MessageHeader, _ request: ExtensionRequest) async -> Outcome {
        if let outcome = runNow(header, request) { return outcome }
        do {
            return outcome(header, request, try await service.respond(request))
        } catch let error as TApplicationException {
            return exception(header, error)
        } catch {
            return exception(header, TApplicationException(.unknown, "\(error)".thrift))
        }
    }

    /// The message that carries `reply`.
    func outcome(_ header: MessageHeader, _ request: ExtensionRequest, _ reply: ServerReply) -> Outcome {
        if header.type == .oneway { return .none }
        let out = MessageHeader(name: header.name, type: .reply, sequenceID: header.sequenceID)
        // The one place a reply is written: rows already encoded go out as they are.
        switch reply {
        case .response(.encoded(let status, let rows, let release)):
            if case .buffer(let buffer) = rows.storage {
                let parts = Self.encodeReplyParts(out, status, rows: buffer, count: rows.count)
                let size = parts.reduce(0) { $0 + $1.readableBytes }
                if size > limits.maxMessageSize { return tooLarge(header, request, size: size) }
                return .replyInParts(parts, releaseAfterSending: release)
            }
            return sized(Self.encodeReply(out, status, rows: rows), header, request, releaseAfterSending: release)
        case .response(.rows(let response)):
            return sized(Self.encodeReply(out, .response(response)), header, request)
        case .value(let value):
            return sized(Self.encodeReply(out, value), header, request)
        }
    }

    /// `bytes` as the reply, unless they pass the message size limit.
    func sized(
        _ bytes: ByteBuffer, _ header: MessageHeader, _ request: ExtensionRequest,
        releaseAfterSending release: (any Sendable)? = nil
    ) -> Outcome {
        if bytes.readableBytes > limits.maxMessageSize { return tooLarge(header, request, size: bytes.readableBytes) }
        return .reply(bytes, releaseAfterSending: release)
    }

    /// A reply over the message size limit is never sent: peers refuse it (libthrift's limit),
    /// and a peer that accepted it could be made to hold anything. A method answering with an
    /// `ExtensionResponse` gets one with status code 1 saying why; any other method, an
    /// internal-error exception.
    func tooLarge(_ header: MessageHeader, _ request: ExtensionRequest, size: Int) -> Outcome {
        let why = "\(request.method.rawValue) reply of \(size) bytes exceeds the maximum message size of \(limits.maxMessageSize) bytes"
        switch request.method {
        case .call, .query, .getQueryColumns:
            let response = ExtensionResponse(status: ExtensionStatus(code: 1, message: ThriftString(why)))
            let out = MessageHeader(name: header.name, type: .reply, sequenceID: header.sequenceID)
            return .reply(Self.encodeReply(out, .response(response)))
        default:
            return exception(header, TApplicationException(.internalError, ThriftString(why)))
        }
    }

    func exception(_ header: MessageHeader, _ error: TApplicationException) -> Outcome {
        if header.type == .oneway { return .none }
        let out = MessageHeader(name: header.name, type: .exception, sequenceID: header.sequenceID)
        return .reply(ByteBuffer(bytes: encodeMessage(out) { error.write(to: &$0) }))
    }

    /// The reply around rows that are already in a buffer: the message up to the rows' list
    /// header, the rows' buffer as it is, and the two field stops that end the message.
    static func encodeReplyParts(_ header: MessageHeader, _ status: ExtensionStatus, rows: ByteBuffer, count: Int)
        -> [ByteBuffer]
    {
        let head = replyHead(header, status, count: count)
        let tail = ByteBuffer(bytes: [TType.stop.rawValue, TType.stop.rawValue])  // ExtensionResponse, result
        return [head.withUnsafeBytes { ByteBuffer(bytes: $0) }, rows, tail]
    }

    /// A reply with encoded rows up to their list header: the message header, the result
    /// field, the `ExtensionResponse`'s status and the rows' list header. The maps and two field
    /// stops (the response's, the result's) follow.
    static func replyHead(_ header: MessageHeader, _ status: ExtensionStatus, count: Int) -> ThriftWriter {
        var head = ThriftWriter(reservingCapacity: 256)
        head.writeMessageBegin(header)
        head.writeFieldBegin(.struct, id: 0)
        head.writeFieldBegin(.struct, id: 1)
        status.write(to: &head)
        head.writeFieldBegin(.list, id: 2)
        head.writeListBegin(element: .map, count: count)
        return head
    }

    /// The reply message around rows the handler already encoded, as one buffer: the rows are
    /// copied once, from the encoder's memory into the buffer.
    static func encodeReply(_ header: MessageHeader, _ status: ExtensionStatus, rows: EncodedRows) -> ByteBuffer {
        let head = replyHead(header, status, count: rows.count)
        var buffer = ByteBufferAllocator().buffer(capacity: head.byteCount + rows.byteCount + 2)
        head.withUnsafeBytes { _ = buffer.writeBytes($0) }
        rows.withUnsafeBytes { _ = buffer.writeBytes($0) }
        buffer.writeInteger(TType.stop.rawValue)  // ends ExtensionResponse
        buffer.writeInteger(TType.stop.rawValue)  // ends the result struct
        return buffer
    }

    /// The reply message as one buffer.
    static func encodeReply(_ header: MessageHeader, _ reply: ExtensionReply) -> ByteBuffer {
        var w = ThriftWriter(reservingCapacity: reply.estimatedSize)
        w.writeMessageBegin(header)
        reply.writeResult(to: &w)
        return w.withUnsafeBytes { ByteBuffer(bytes: $0) }
    }
}

extension ExtensionReply {
    /// A cheap guess at the encoded size, so big replies are not grown by doubling.
    var estimatedSize: Int {
        guard case .response(let r) = self, let first = r.response.first else { return 256 }
        var rowBytes = 8
        for e in first.entries { rowBytes += 8 + e.key.byteCount + e.value.byteCount }
        return 256 + rowBytes * r.response.count
    }
}
