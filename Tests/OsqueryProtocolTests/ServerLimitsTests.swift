import Foundation
import OsqueryProtocol
import ProtocolFixture
import Synchronization
import Testing
import ThriftCodec

#if canImport(Glibc)
import Glibc
#endif

/// Hostile peers on a server's socket (issue 14, items 8-10): each scenario is bounded by a
/// ``ServerLimits`` bound, and the server keeps serving everyone else.
// Serialized: its floods load both cores, and the suite runs beside every other.
@Suite(.serialized) struct ServerLimitsTests {
    /// One slow call, then 30 000 calls answered at once (unknown methods): answering the
    /// queue used to recurse once per call and overflow the stack.
    @Test func thirtyThousandQueuedUnknownCallsAreAllAnswered() async throws {
        let path = tempSocketPath("deep")
        let gate = Gate()
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager(gate: gate)))
        let raw = try RawSocket(path: path)
        let count = 30_000
        var calls = request(.call(registry: "gate", item: "", request: [:]), seqid: 0)
        for i in 1...count { calls += message("nope", seqid: Int32(i)) }
        let bytes = calls
        let sent = Task { try await offPool { raw.send(bytes) } }
        // The calls queue behind the gated one, as many as the limit lets wait.
        #expect(await waitUntil(60) { server.queuedCalls == ServerLimits.default.maxPipelinedCalls })
        gate.open()
        let replies = try await offPool { try readReplies(raw.fd, count: count + 1) }
        try await sent.value
        #expect(replies.count == count + 1)
        #expect(replies.first?.name == "call")
        #expect(replies.dropFirst().allSatisfy { $0.type == .exception && $0.name == "nope" })
        #expect(replies.last?.sequenceID == Int32(count))
        // The same connection and new ones are still served.
        raw.send(message("ping", seqid: 7))
        #expect(try await offPool { try readReplies(raw.fd, count: 1) }.first?.type == .reply)
        #expect(try await ExtensionManagerClient(path: path).ping().message == "pong")
        await server.close()
    }

    /// A client that pipelines calls and never reads its replies: the server stops reading it
    /// (its sends block) once replies go unread and calls queue up to the limit, while other
    /// clients are served.
    @Test func pipeliningClientThatNeverReadsIsNotReadFurther() async throws {
        let path = tempSocketPath("flood")
        let limits = ServerLimits(maxPipelinedCalls: 4)
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()), limits: limits)
        let flooder = try RawSocket(path: path)
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(flooder.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // 2 KB calls with ~5 KB replies.
        let pad = ThriftString(String(repeating: "x", count: 2000))
        let one = request(.call(registry: "r", item: "i", request: ["rows": "50", "pad": pad]), seqid: 1)
        let calls = 4000
        let all = Array([[UInt8]](repeating: one, count: calls).joined())
        // Sends until the kernel's buffers are full and a write times out.
        let sent = try await offPool { sendAsMuchAsPossible(flooder.fd, all) }
        #expect(sent < all.count, "the server read every call without answering them")
        #expect(server.queuedCalls <= limits.maxPipelinedCalls)
        #expect(server.queuedCalls > 0)
        let client = ExtensionManagerClient(path: path)
        #expect(try await client.ping().message == "pong")
        #expect(try await client.query("rows:3").response.count == 3)
        // The queue never grows past the limit while the flooder stays.
        #expect(server.queuedCalls <= limits.maxPipelinedCalls)
        flooder.shutdownBoth()
        #expect(await waitUntil(60) { server.queuedCalls == 0 && server.heldBytes == 0 })
        #expect(try await client.ping().message == "pong")
        await server.close()
    }

    /// Many clients that pipeline calls with big replies and never read: each holds one unsent
    /// reply at most, and past the server's budget (half the message size) the connections that
    /// left theirs unread longest are closed, so unsent replies stay within the budget and a
    /// reply; a client that reads is served throughout.
    @Test func unsentRepliesOverTheBudgetCloseTheirConnections() async throws {
        let path = tempSocketPath("shed")
        let limits = ServerLimits(maxMessageSize: 1 << 20)
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()), limits: limits)
        // Calls whose replies are ~400 KB: two unread ones are over the budget.
        let one = request(.query(sql: "rows:4000"), seqid: 1)
        var flooders: [RawSocket] = []
        for _ in 0..<8 {
            let s = try RawSocket(path: path)
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let calls = Array([[UInt8]](repeating: one, count: 50).joined())
            _ = try await offPool { sendAsMuchAsPossible(s.fd, calls) }
            flooders.append(s)
        }
        let client = ExtensionManagerClient(path: path)
        #expect(try await client.query("rows:3").response.count == 3)
        // The first flooders were closed to make room for the later ones' replies.
        let (first, second) = (flooders[0], flooders[1])
        #expect(try await offPool { readsToEndOfFile(first.fd) || readsToEndOfFile(second.fd) })
        // Eight flooders would hold ~1.4 MB each (the channel's high-water mark and a reply); the
        // one left may hold that much past the budget.
        #expect(await waitUntil(60) { server.outboundBytes <= limits.unsentReplyBudget + 1_500_000 })
        for s in flooders { s.shutdownBoth() }
        #expect(await waitUntil(60) { server.outboundBytes == 0 && server.queuedCalls == 0 })
        #expect(try await client.ping().message == "pong")
        await server.close()
    }

    /// A reply over the message size is never sent: a method answering an `ExtensionResponse`
    /// gets status 1 saying why, any other an internal-error exception; the connection and the
    /// server keep serving.
    @Test func replyOverTheMessageSizeIsAnError() async throws {
        let path = tempSocketPath("big")
        let limits = ServerLimits(maxMessageSize: 64 * 1024)
        let bigOptions = InternalOptionList(
            uniqueKeysWithValues: (0..<2000).map { (ThriftString("option_\($0)"), InternalOptionInfo(value: "value-\($0)-xxxxxxxxxxxxxxxx")) })
        let fixture = FixtureManager()
        let service = ExtensionService(methods: Set(ExtensionMethod.allCases)) { request in
            if case .options = request { return .value(.options(bigOptions)) }
            return try await ExtensionService.manager(fixture).respond(request)
        }
        let server = try await RPCServer.start(path: path, service: service, limits: limits)
        let client = ExtensionManagerClient(path: path)
        let response = try await client.query("rows:2000")
        #expect(response.status.code == 1)
        #expect(response.status.message.lossyString.hasPrefix("query reply of "))
        #expect(response.status.message.lossyString.hasSuffix("exceeds the maximum message size of 65536 bytes"))
        #expect(response.response.isEmpty)
        let error = await #expect(throws: RPCClientError.self) { _ = try await client.options() }
        guard case .applicationException(let e)? = error else {
            Issue.record("expected an application exception, got \(String(describing: error))")
            return
        }
        #expect(e.kind == .internalError)
        #expect(e.message.lossyString.hasPrefix("options reply of "))
        #expect(try await client.query("rows:10").response.count == 10)
        #expect(try await client.ping().message == "pong")
        await server.close()
    }

    /// A message whose first bytes came and whose rest never does is dropped after the
    /// partial-message timeout; a connection with no call, after the idle timeout.
    @Test func stalledMessageAndIdleConnectionAreClosed() async throws {
        let path = tempSocketPath("stall")
        let limits = ServerLimits(idleTimeout: .milliseconds(500), partialMessageTimeout: .milliseconds(200))
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()), limits: limits)
        let partial = try RawSocket(path: path)
        // A 1 MB string announced, 9 KB of it sent.
        var head = ThriftWriter()
        head.writeMessageBegin(MessageHeader(name: "query", type: .call, sequenceID: 1))
        head.writeFieldBegin(.string, id: 1)
        head.writeI32(1_000_000)
        partial.send(head.bytes + [UInt8](repeating: 0x41, count: 9000))
        let idle = try RawSocket(path: path)
        #expect(try await offPool { partial.peerClosed() })
        #expect(try await offPool { idle.peerClosed() })
        #expect(await waitUntil(60) { server.connectionCount == 0 && server.heldBytes == 0 })
        // Still serving. Retried: under a loaded suite a fresh connection can sit past the 0.5 s
        // idle timeout before its first call arrives.
        #expect(await waitUntil(60) { (try? await ExtensionManagerClient(path: path).ping().message) == "pong" })
        await server.close()
    }

    /// Unfinished messages past each connection's allowance share one budget (the message
    /// size): a connection that would go over it is not read until the budget frees.
    @Test func unfinishedMessagesShareOneBudget() async throws {
        let path = tempSocketPath("budget")
        let limits = ServerLimits(maxMessageSize: 1 << 20)
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()), limits: limits)
        var stalled: [RawSocket] = []
        for _ in 0..<6 {
            let s = try RawSocket(path: path)
            var timeout = timeval(tv_sec: 0, tv_usec: 300_000)
            setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var head = ThriftWriter()
            head.writeMessageBegin(MessageHeader(name: "query", type: .call, sequenceID: 1))
            head.writeFieldBegin(.string, id: 1)
            head.writeI32(Int32((1 << 20) - 100))
            let bytes = head.bytes + [UInt8](repeating: 0x41, count: 900_000)
            _ = try await offPool { sendAsMuchAsPossible(s.fd, bytes) }
            stalled.append(s)
        }
        // Six connections would hold ~5 MB past their allowances; the budget is 1 MiB (and
        // one read past it each).
        #expect(server.heldBytes <= (1 << 20) + 6 * 256 * 1024)  // a read past the budget each
        #expect(server.heldBytes > 0)
        #expect(try await ExtensionManagerClient(path: path).query("rows:5").response.count == 5)
        for s in stalled { s.shutdownBoth() }
        #expect(await waitUntil(60) { server.heldBytes == 0 })
        await server.close()
    }

    /// Past the connection cap, new connections are closed at once; those served keep working,
    /// and once one leaves a new one is served.
    @Test func connectionsPastTheCapAreClosed() async throws {
        let path = tempSocketPath("cap")
        let server = try await RPCServer.start(
            path: path, service: .manager(FixtureManager()), limits: ServerLimits(maxConnections: 4))
        var kept: [RawSocket] = []
        for i in 0..<4 {
            let s = try RawSocket(path: path)
            s.send(message("ping", seqid: Int32(i)))
            #expect(try await offPool { try readReplies(s.fd, count: 1) }.first?.type == .reply)
            kept.append(s)
        }
        let extra = try RawSocket(path: path)
        #expect(try await offPool { extra.peerClosed() })
        #expect(server.refusedConnections >= 1)
        for (i, s) in kept.enumerated() {
            s.send(message("ping", seqid: Int32(10 + i)))
            #expect(try await offPool { try readReplies(s.fd, count: 1) }.first?.sequenceID == Int32(10 + i))
        }
        kept.removeLast().shutdownBoth()
        #expect(await waitUntil(60) { server.connectionCount == 3 })
        #expect(try await ExtensionManagerClient(path: path).ping().message == "pong")
        await server.close()
    }

    /// A call whose connection closes is cancelled: its handler sees cancellation.
    @Test func callIsCancelledWhenItsConnectionCloses() async throws {
        let path = tempSocketPath("cancel")
        let started = Gate()
        let cancelled = Flag()
        let service = ExtensionService(methods: [.ping, .call]) { request in
            if case .ping = request { return .value(.status(ExtensionStatus(code: 0, message: "pong"))) }
            started.open()
            do {
                try await Task.sleep(for: .seconds(3600))
            } catch {
                cancelled.value.store(true, ordering: .relaxed)
            }
            return .value(.response(ExtensionResponse()))
        }
        let server = try await RPCServer.start(path: path, service: service)
        let raw = try RawSocket(path: path)
        raw.send(request(.call(registry: "table", item: "t", request: [:]), seqid: 1))
        await started.wait()
        raw.shutdownBoth()
        #expect(await waitUntil(60) { cancelled.value.load(ordering: .relaxed) })
        #expect(try await ExtensionClient(path: path).ping().message == "pong")
        await server.close()
    }

    /// A server stops while a call runs on the global executor and outlives the stop (it ignores
    /// its cancellation): the connection's thread ends without it, the reply is dropped when the
    /// call finishes, the call is counted as done, and the process serves the path again.
    @Test func callOutlivingItsServersOwnLoopsIsDroppedCleanly() async throws {
        let path = tempSocketPath("stoprace")
        let started = Gate()
        let release = Gate()
        let service = ExtensionService(methods: [.ping, .call]) { request in
            if case .ping = request { return .value(.status(ExtensionStatus(code: 0, message: "pong"))) }
            started.open()
            // Detached: the connection's close cancels the call, and this wait must outlive it.
            await Task.detached { await release.wait() }.value
            return .value(.response(ExtensionResponse()))
        }
        let server = try await RPCServer.start(path: path, service: service)
        let raw = try RawSocket(path: path)
        raw.send(request(.call(registry: "table", item: "t", request: [:]), seqid: 1))
        await started.wait()
        #expect(server.runningCalls == 1)
        server.stop()
        await server.waitUntilStopped()
        #expect(server.connectionCount == 0)
        release.open()
        #expect(await waitUntil(60) { server.runningCalls == 0 })
        let again = try await RPCServer.start(path: path, service: service)
        #expect(try await ExtensionClient(path: path).ping().message == "pong")
        await again.close()
    }
}

func request(_ request: ExtensionRequest, seqid: Int32) -> [UInt8] {
    encodeMessage(MessageHeader(name: ThriftString(request.method.rawValue), type: .call, sequenceID: seqid)) {
        request.writeArguments(to: &$0)
    }
}

/// Reads `count` whole messages from `fd` and returns their headers (throws if the peer
/// closes or a read times out first). Walks one growing buffer by offset: no copying per message.
func readReplies(_ fd: Int32, count: Int) throws -> [MessageHeader] {
    var buffer: [UInt8] = []
    var at = 0
    var headers: [MessageHeader] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    var framer = MessageFramer()
    while headers.count < count {
        let length = try buffer.withUnsafeBytes { raw in
            try framer.scan(UnsafeRawBufferPointer(rebasing: raw[at...]))
        }
        if let length {
            let header = try buffer.withUnsafeBytes { raw in
                var reader = ThriftReader(UnsafeRawBufferPointer(rebasing: raw[at..<(at + length)]))
                return try reader.readMessageBegin()
            }
            headers.append(header)
            at += length
            continue
        }
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw POSIXError(.ECONNRESET) }
        buffer += chunk[0..<n]
    }
    return headers
}

/// Writes as much of `bytes` as the peer takes before a write times out (SO_SNDTIMEO);
/// returns how many went.
func sendAsMuchAsPossible(_ fd: Int32, _ bytes: [UInt8]) -> Int {
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        sent += n
    }
    return sent
}

extension RawSocket {
    /// Closes both directions now (the fd stays allocated until the socket is released).
    func shutdownBoth() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
}

final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}

/// Reads `fd` until the peer closes it (true) or a read fails or times out (false).
func readsToEndOfFile(_ fd: Int32) -> Bool {
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n == 0 { return true }
        if n < 0 { return false }
    }
}
