import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

#if canImport(Glibc)
import Glibc
#endif

/// A listening Unix socket a test drives by hand: it accepts one connection and then reads and
/// writes what the test says, to be a peer no well-behaved server would be.
final class RawListener: @unchecked Sendable {  // the fd is only closed after every use
    let path: String
    let fd: Int32

    init(path: String) {
        self.path = path
        fd = boundUnixSocket(path)
        listen(fd, 16)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Accepts one connection and reads one whole call off it (blocking: run it `offPool`).
    func acceptCall() throws -> (fd: Int32, call: [UInt8]) {
        let conn = accept(fd, nil, nil)
        var framer = MessageFramer()
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let length = try buffer.withUnsafeBytes({ try framer.scan($0) }) {
                return (conn, Array(buffer[0..<length]))
            }
            let n = chunk.withUnsafeMutableBytes { read(conn, $0.baseAddress, $0.count) }
            if n <= 0 { return (conn, buffer) }
            buffer += chunk[0..<n]
        }
    }

    static func write(_ fd: Int32, _ bytes: ArraySlice<UInt8>) {
        var sent = bytes.startIndex
        while sent < bytes.endIndex {
            let n = bytes[sent...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            sent += n
        }
    }
}

/// The fixture's real answer to `call`, encoded as our server sends it.
func fixtureReply(to call: [UInt8]) async -> [UInt8] {
    let processor = MessageProcessor(service: .manager(FixtureManager()))
    guard case .reply(let buffer, _) = await processor.process(call) else { return [] }
    return Array(buffer.readableBytesView)
}

/// Calls made off the event loops are written and read on the caller's thread for a short budget
/// (`DirectConnection`); an event loop takes over a reply that is late. These check that the
/// deadline, the size limit, a peer closing and concurrent calls behave on that path as on the
/// event loop's.
@Suite struct DirectClientTests {
    @Test func aServerThatNeverAnswersTimesOutAtTheDeadline() async throws {
        let path = tempSocketPath("mute")
        let listener = RawListener(path: path)  // listening, never accepting, never answering
        let client = ExtensionManagerClient(path: path)
        // Past the budget: the event loop waits out the deadline.
        await #expect(throws: RPCClientError.timedOut(method: "ping", after: .milliseconds(150))) {
            _ = try await client.ping(timeout: .milliseconds(150))
        }
        // Within the budget: the deadline passes on the caller's thread.
        await #expect(throws: RPCClientError.timedOut(method: "ping", after: .microseconds(300))) {
            _ = try await client.ping(timeout: .microseconds(300))
        }
        withExtendedLifetime(listener) {}
    }

    @Test func aTimedOutCallLeavesTheClientServing() async throws {
        let path = tempSocketPath("dgate")
        let gate = Gate()
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager(gate: gate)))
        let client = ExtensionManagerClient(path: path, options: RPCClientOptions(maxIdleConnections: 1))
        #expect(try await client.ping().message == "pong")
        await #expect(throws: RPCClientError.timedOut(method: "call", after: .microseconds(500))) {
            _ = try await client.call(registry: "gate", item: "", request: [:], timeout: .microseconds(500))
        }
        gate.open()
        #expect(try await client.query("rows:3").response == fixtureRows(3))
        #expect(try await client.ping().message == "pong")
        await server.close()
    }

    @Test func anOversizedReplyIsRefusedAndTheClientKeepsServing() async throws {
        let path = tempSocketPath("big")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let client = ExtensionManagerClient(
            path: path, options: RPCClientOptions(limits: ThriftLimits(maxMessageSize: 16 * 1024)))
        let error = await #expect(throws: RPCClientError.self) { _ = try await client.query("rows:2000") }
        guard case .protocolError(let why) = error else {
            Issue.record("expected a protocol error, got \(String(describing: error))")
            return
        }
        #expect(why.contains("exceeds the limit of 16384 bytes"), "\(why)")
        #expect(try await client.query("rows:5").response == fixtureRows(5))
        #expect(try await client.ping().message == "pong")
        await server.close()
    }

    @Test func aServerClosingMidReplyIsReported() async throws {
        let path = tempSocketPath("half")
        let listener = RawListener(path: path)
        let client = ExtensionManagerClient(path: path)
        let served = Task {
            try await offPool {
                let (conn, _) = try listener.acceptCall()
                RawListener.write(conn, [0x80, 0x01, 0x00, 0x02, 0, 0, 0, 4, 0x70, 0x69][...])  // half a header
                close(conn)
            }
        }
        await #expect(throws: RPCClientError.peerClosed(path: path)) { _ = try await client.ping() }
        try await served.value
    }

    @Test func aServerClosingMidReplyAfterTheBudgetIsReported() async throws {
        let path = tempSocketPath("halflate")
        let listener = RawListener(path: path)
        let client = ExtensionManagerClient(path: path)
        let served = Task {
            try await offPool {
                let (conn, _) = try listener.acceptCall()
                RawListener.write(conn, [0x80, 0x01, 0x00, 0x02, 0, 0, 0, 4, 0x70, 0x69][...])
                usleep(100_000)  // past the budget: the event loop has the rest of the call
                close(conn)
            }
        }
        await #expect(throws: RPCClientError.peerClosed(path: path)) { _ = try await client.ping() }
        try await served.value
    }

    @Test func aReplySplitAcrossTheBudgetArrivesWhole() async throws {
        let path = tempSocketPath("split")
        let listener = RawListener(path: path)
        let client = ExtensionManagerClient(path: path)
        let served = Task {
            let (conn, call) = try await offPool { try listener.acceptCall() }
            let reply = await fixtureReply(to: call)
            try await offPool {
                // The first half is read on the caller's thread, the rest by the event loop.
                RawListener.write(conn, reply[..<(reply.count / 2)])
                usleep(100_000)
                RawListener.write(conn, reply[(reply.count / 2)...])
                close(conn)
            }
        }
        let status = try await client.ping()
        #expect(status == ExtensionStatus(code: 0, message: "pong", uuid: i64max))
        try await served.value
    }

    @Test func aConnectionTheServerClosedWhileIdleIsReplacedUnseen() async throws {
        let path = tempSocketPath("idle")
        let server = try await RPCServer.start(
            path: path, service: .manager(FixtureManager()), limits: ServerLimits(idleTimeout: .milliseconds(100)))
        let client = ExtensionManagerClient(path: path)
        #expect(try await client.ping().message == "pong")
        #expect(await waitUntil(60) { server.connectionCount == 0 })
        // The pooled connection is dead; the call goes out on a new one.
        #expect(try await client.ping().message == "pong")
        #expect(try await client.query("rows:2").response == fixtureRows(2))
        await server.close()
    }

    @Test func concurrentFastAndSlowCallsOnOneClient() async throws {
        let path = tempSocketPath("mix")
        let gate = Gate()
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager(gate: gate)))
        let client = ExtensionManagerClient(path: path)
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Calls left waiting past the budget: each is handed to an event loop.
            for i in 0..<8 {
                group.addTask {
                    let r = try await client.call(registry: "gate", item: ThriftString("g\(i)"), request: [:])
                    #expect(r.status.code == 0)
                }
            }
            // The others are answered meanwhile.
            try await withThrowingTaskGroup(of: Void.self) { fast in
                for i in 0..<48 {
                    fast.addTask { () async throws in
                        if i % 2 == 0 {
                            #expect(try await client.ping().message == "pong")
                        } else {
                            #expect(try await client.query(ThriftString("rows:\(i)")).response == fixtureRows(i))
                        }
                    }
                }
                try await fast.waitForAll()
            }
            gate.open()
            try await group.waitForAll()
        }
        #expect(try await client.ping().message == "pong")
        await server.close()
    }
}
