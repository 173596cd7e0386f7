import Foundation
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// The independent peers built by scripts/build-peers.sh from idl/osquery.thrift.
enum Peer: String, CaseIterable, CustomStringConvertible {
    case python, cpp

    var description: String { rawValue }

    static let directory = ProcessInfo.processInfo.environment["OSQ_PEERS_DIR"]
        .map { URL(fileURLWithPath: $0) } ?? repoRoot.appendingPathComponent(".build-peers")

    var command: (executable: URL, prefix: [String]) {
        switch self {
        case .python:
            (repoRoot.appendingPathComponent(".venv/bin/python3"),
             [repoRoot.appendingPathComponent("Tests/Peers/python/fixture_peer.py").path])
        case .cpp:
            (Peer.directory.appendingPathComponent("cpp/fixture_peer"), [])
        }
    }

    /// Fails with the fix when the peer has not been built.
    func requireBuilt() throws {
        let needed = self == .python
            ? [command.executable.path, Peer.directory.appendingPathComponent("gen-py").path]
            : [command.executable.path]
        for path in needed where !FileManager.default.fileExists(atPath: path) {
            throw PeerError.notBuilt("\(path) is missing: run scripts/install-test-deps.sh && scripts/build-peers.sh "
                + "(the README's test command does both)")
        }
    }

    func process(_ arguments: [String]) -> Process {
        let p = Process()
        p.executableURL = command.executable
        p.arguments = command.prefix + arguments
        return p
    }
}

enum PeerError: Error, CustomStringConvertible {
    case notBuilt(String)
    case notReady(String)
    var description: String {
        switch self {
        case .notBuilt(let s): s
        case .notReady(let s): "peer server did not become ready: \(s)"
        }
    }
}

/// A peer's fixture server, started and waited on until it prints READY.
final class PeerServer: @unchecked Sendable {  // touched by one test task at a time
    let process: Process
    let path: String

    init(_ peer: Peer) async throws {
        try peer.requireBuilt()
        path = tempSocketPath(peer.rawValue)
        process = peer.process(["server", path])
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let handle = out.fileHandleForReading
        let ready = try await offPool { () -> String in
            var seen = Data()
            while !(String(decoding: seen, as: UTF8.self).contains("READY")) {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                seen += chunk
            }
            return String(decoding: seen, as: UTF8.self)
        }
        guard ready.contains("READY") else { throw PeerError.notReady(ready) }
    }

    /// Waits for the server to exit (it does after `shutdown`), killing it after 10 s.
    func exitStatus() async throws -> Int32 {
        let process = self.process
        return try await offPool {
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    deinit {
        if process.isRunning { process.terminate() }
    }
}

/// Runs a peer's client mode against `path`; returns its exit status and output.
func runPeerClient(_ peer: Peer, path: String) async throws -> (status: Int32, output: String) {
    try peer.requireBuilt()
    let process = peer.process(["client", path])
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    let handle = out.fileHandleForReading
    return try await offPool {
        let data = handle.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

@Suite(.serialized) struct CrossLanguageTests {
    @Test(arguments: Peer.allCases)
    func swiftClientToPeerServer(_ peer: Peer) async throws {
        let server = try await PeerServer(peer)
        let client = ExtensionManagerClient(path: server.path)
        let (failures, ran) = await runFixtureChecks(client)
        #expect(ran == 21)
        #expect(failures.isEmpty, "Swift client → \(peer) server: \(failures)")
        client.close()
        // The peer exits 0 once it has answered shutdown: the void reply worked both ways.
        #expect(try await server.exitStatus() == 0)
    }

    @Test(arguments: Peer.allCases)
    func peerClientToSwiftServer(_ peer: Peer) async throws {
        let path = tempSocketPath("to-swift-\(peer)")
        let fixture = FixtureManager()
        let server = try await RPCServer.start(path: path, service: .manager(fixture))
        let (status, output) = try await runPeerClient(peer, path: path)
        #expect(status == 0, "\(peer) client → Swift server:\n\(output)")
        #expect(output.contains("21 passed, 0 failed"), "\(output)")
        #expect(!output.contains("FAIL"), "\(output)")
        #expect(fixture.shutdowns.load(ordering: .relaxed) == 1)
        await server.close()
    }

    /// Python peers leave unset fields off the wire; our client reads the defaults.
    @Test func pythonSparseStatusDecodesToDefaults() async throws {
        let server = try await PeerServer(.python)
        let client = ExtensionManagerClient(path: server.path)
        let r = try await client.call(registry: "sparse", item: "s", request: [:])
        #expect(r == ExtensionResponse(status: ExtensionStatus(code: 0, message: "", uuid: 0), response: []))
        try await client.shutdown()
        client.close()
        #expect(try await server.exitStatus() == 0)
    }
}
