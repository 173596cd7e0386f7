import Foundation
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

@Suite struct SwiftToSwiftTests {
    @Test func everyFixtureCheckPasses() async throws {
        let path = tempSocketPath("s2s")
        let fixture = FixtureManager()
        let server = try await RPCServer.start(path: path, service: .manager(fixture))
        let client = ExtensionManagerClient(path: path)
        let (failures, ran) = await runFixtureChecks(client)
        #expect(failures.isEmpty, "\(failures)")
        #expect(ran == 21)
        #expect(fixture.shutdowns.load(ordering: .relaxed) == 1)
        client.close()
        await server.close()
    }

    @Test func extensionServiceAnswersOnlyItsThreeMethods() async throws {
        let path = tempSocketPath("ext")
        let server = try await RPCServer.start(path: path, service: .extension(FixtureManager()))
        let ext = ExtensionClient(path: path)
        #expect(try await ext.ping().message == "pong")
        #expect(try await ext.call(registry: "a", item: "b", request: ["rows": "3"]).response.count == 3)
        try await ext.shutdown()
        let manager = ExtensionManagerClient(path: path)
        await #expect(throws: RPCClientError.applicationException(
            TApplicationException(.unknownMethod, "Invalid method name: 'extensions'"))) {
            _ = try await manager.extensions()
        }
        // The connection survives the unknown method.
        #expect(try await manager.ping().message == "pong")
        await server.close()
    }
}

@Suite struct ServerBehaviourTests {
    @Test func socketIsMode0600AndRemovedOnStop() async throws {
        let path = tempSocketPath("mode")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        #expect(fileMode(path) == 0o600)
        await server.close()
        #expect(!fileExists(path))
    }

    /// An extension listens before it registers, then moves to `<socket>.<uuid>`:
    /// the listener keeps serving at the new path, and stopping removes that file.
    @Test func aListeningServerMovesToANewPath() async throws {
        let staging = tempSocketPath("stage")
        let final = tempSocketPath("final")
        makeStaleSocketFile(at: final)
        let server = try await RPCServer.start(path: staging, service: .manager(FixtureManager()))
        try server.move(to: final)
        #expect(!fileExists(staging))
        #expect(server.path == final)
        #expect(fileMode(final) == 0o600)
        #expect(try await ExtensionManagerClient(path: final).ping().message == "pong")
        #expect(throws: SocketBindError.self) { try server.move(to: "") }
        await server.close()
        #expect(!fileExists(final))
    }

    @Test func staleSocketFileIsReplaced() async throws {
        let path = tempSocketPath("stale")
        makeStaleSocketFile(at: path)
        #expect(fileExists(path))
        await #expect(throws: RPCClientError.connectionRefused(path: path)) {
            _ = try await ExtensionManagerClient(path: path).ping()
        }
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        #expect(try await ExtensionManagerClient(path: path).ping().message == "pong")
        await server.close()
    }

    @Test func stoppingAnOldServerLeavesTheNewOnesFile() async throws {
        let path = tempSocketPath("steal")
        let old = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let new = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        #expect(fileExists(path))
        #expect(try await ExtensionManagerClient(path: path).ping().message == "pong")
        await old.close()
        #expect(fileExists(path))
        #expect(try await ExtensionManagerClient(path: path).ping().message == "pong")
        await new.close()
        #expect(!fileExists(path))
    }

    @Test func slowCallOnOneConnectionDoesNotDelayAnother() async throws {
        let path = tempSocketPath("slow")
        let gate = Gate()
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager(gate: gate)))
        let client = ExtensionManagerClient(path: path)
        let blocked = Task { try await client.call(registry: "gate", item: "", request: [:]) }
        // While the gated call holds its connection, pings and queries on others are answered.
        for _ in 0..<20 { #expect(try await client.ping().message == "pong") }
        #expect(try await client.query("rows:10").response.count == 10)
        gate.open()
        #expect(try await blocked.value.status.message == "opened")
        await server.close()
    }

    @Test func idleConnectionDoesNotBlockOthers() async throws {
        let path = tempSocketPath("idle")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let idle = try RawSocket(path: path)
        let partial = try RawSocket(path: path)
        partial.send(Array(message("ping").prefix(9)))  // half a message, never finished
        #expect(try await ExtensionManagerClient(path: path).ping().message == "pong")
        // The idle connection is still usable afterwards.
        idle.send(message("ping", seqid: 5))
        let (header, _) = try decodeRaw(try #require(try await offPool { try idle.receiveMessage() }))
        #expect(header == MessageHeader(name: "ping", type: .reply, sequenceID: 5))
        await server.close()
    }

    @Test func unknownMethodGetsApplicationException() async throws {
        let path = tempSocketPath("unk")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let raw = try RawSocket(path: path)
        raw.send(message("foo", seqid: 9))
        let (header, body) = try decodeRaw(try #require(try await offPool { try raw.receiveMessage() }))
        #expect(header == MessageHeader(name: "foo", type: .exception, sequenceID: 9))
        #expect(body[field: 1] == .string("Invalid method name: 'foo'"))
        #expect(body[field: 2] == .i32(1))
        // Same connection, next call works.
        raw.send(message("ping", seqid: 10))
        #expect(try decodeRaw(try #require(try await offPool { try raw.receiveMessage() })).0.type == .reply)
        await server.close()
    }

    @Test func oldHeaderOnewayAndPipelinedCalls() async throws {
        let path = tempSocketPath("old")
        let fixture = FixtureManager()
        let server = try await RPCServer.start(path: path, service: .manager(fixture))
        let raw = try RawSocket(path: path)
        var old = ThriftWriter()
        old.writeOldMessageBegin(MessageHeader(name: "ping", type: .call, sequenceID: 3))
        old.writeFieldStop()
        // Three messages in one write: an old-header ping, a oneway shutdown (no
        // reply), and an extensions call. Replies come back in order.
        raw.send(old.bytes + message("shutdown", .oneway, seqid: 4) + message("extensions", seqid: 5))
        let first = try decodeRaw(try #require(try await offPool { try raw.receiveMessage() }))
        #expect(first.0 == MessageHeader(name: "ping", type: .reply, sequenceID: 3))
        #expect(first.1[field: 0]?[field: 2] == .string("pong"))
        let second = try decodeRaw(try #require(try await offPool { try raw.receiveMessage() }))
        #expect(second.0 == MessageHeader(name: "extensions", type: .reply, sequenceID: 5))
        #expect(fixture.shutdowns.load(ordering: .relaxed) == 1)
        await server.close()
    }

    @Test func handlerErrorBecomesApplicationException() async throws {
        let path = tempSocketPath("throw")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let client = ExtensionManagerClient(path: path)
        await #expect(throws: RPCClientError.applicationException(TApplicationException(.unknown, "boom from the handler"))) {
            _ = try await client.call(registry: "throw", item: "", request: [:])
        }
        await server.close()
    }

    @Test func malformedBytesCloseOnlyThatConnection() async throws {
        let path = tempSocketPath("bad")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let garbage: [[UInt8]] = [
            [0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0],  // bad version
            Array(message("ping").dropLast()) + [0x0B, 0, 1, 0x7F, 0xFF, 0xFF, 0xFF],  // 2 GiB string
            Array(message("ping").dropLast()) + [0x63, 0, 1],  // unknown type id
            message("ping", .reply),  // a reply sent to a server
        ]
        for bytes in garbage {
            let raw = try RawSocket(path: path)
            raw.send(bytes)
            #expect(try await offPool { raw.peerClosed() }, "server must close after \(bytes)")
        }
        // Arguments of the wrong shape (framed fine) get a protocol error, and the connection lives on.
        let raw = try RawSocket(path: path)
        raw.send(message("query", body: .struct([.init(id: 1, value: .list(element: .i32, [.i32(1)]))])))
        let reply = try decodeRaw(try #require(try await offPool { try raw.receiveMessage() }))
        #expect(reply.0.type == .reply)  // field of the wrong type is skipped: sql defaults to ""
        #expect(try await ExtensionManagerClient(path: path).ping().message == "pong")
        await server.close()
    }

    @Test func tooLongPathIsRefusedUpFront() async throws {
        let long = "/tmp/" + String(repeating: "x", count: 120)
        await #expect(throws: SocketPathError.tooLong(path: long, length: long.utf8.count, limit: 107)) {
            _ = try await RPCServer.start(path: long, service: .manager(FixtureManager()))
        }
        await #expect(throws: RPCClientError.badSocketPath(.tooLong(path: long, length: long.utf8.count, limit: 107))) {
            _ = try await ExtensionManagerClient(path: long).ping()
        }
        #expect(throws: SocketPathError.self) { try validateSocketPath(String(repeating: "y", count: 102), leavingRoomForUUID: true) }
        try validateSocketPath(String(repeating: "y", count: 101), leavingRoomForUUID: true)
    }
}

@Suite struct ClientBehaviourTests {
    @Test func noSocket() async {
        let path = tempSocketPath("none")
        await #expect(throws: RPCClientError.noSocket(path: path)) { _ = try await ExtensionClient(path: path).ping() }
    }

    @Test func timeoutClosesTheConnectionSoALateReplyIsNeverMisread() async throws {
        let path = tempSocketPath("late")
        let gate = Gate()
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager(gate: gate)))
        let client = ExtensionManagerClient(path: path, options: RPCClientOptions(maxIdleConnections: 1))
        #expect(try await client.ping().message == "pong")  // one idle connection in the pool
        await #expect(throws: RPCClientError.timedOut(method: "call", after: .milliseconds(200))) {
            _ = try await client.call(registry: "gate", item: "", request: [:], timeout: .milliseconds(200))
        }
        gate.open()  // the late reply is written to a closed connection
        // The next calls get their own answers.
        #expect(try await client.query("rows:2").response == fixtureRows(2))
        #expect(try await client.ping().message == "pong")
        await server.close()
    }

    @Test func peerClosingMidCallIsReported() async throws {
        let path = tempSocketPath("close")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let client = ExtensionManagerClient(path: path)
        let gate = Task { try await client.call(registry: "gate", item: "", request: [:]) }
        try await Task.sleep(for: .milliseconds(100))
        await server.close()  // closes every connection, including the one waiting
        await #expect(throws: RPCClientError.peerClosed(path: path)) { _ = try await gate.value }
    }

    @Test func concurrentCallsEachGetTheirOwnAnswer() async throws {
        let path = tempSocketPath("conc")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let client = ExtensionManagerClient(path: path)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<64 {
                group.addTask {
                    let r = try await client.query(ThriftString("rows:\(i)"))
                    #expect(r.response == fixtureRows(i))
                }
            }
            try await group.waitForAll()
        }
        await server.close()
    }
}
