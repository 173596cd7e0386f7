import Foundation
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

#if canImport(Glibc)
import Glibc
#endif

/// The extensions socket of a real osqueryd against connection floods (issue 14, item 10).
@Suite struct SocketLimitsProcessTests {
    /// osqueryd with few file descriptors (`ulimit -n 64`) and its connection cap above that:
    /// a flood of connections runs it out of descriptors (accept fails with EMFILE), and once
    /// the flood is gone it serves again. Before, the accept loop ended on the error.
    @Test func acceptLoopSurvivesRunningOutOfDescriptors() async throws {
        let dir = try scratchDirectory("emfile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let daemon = try startDaemon(
            dir: dir, shellPrefix: "ulimit -n 64; ", ["--extensions_socket", socket, "--extensions_max_connections", "1000"])
        defer { stop(daemon) }
        let client = ExtensionManagerClient(path: socket)
        #expect(await waitUntil(60) { (try? await client.ping().code) == 0 })
        client.close()
        // More connections than the daemon has descriptors: some wait in the backlog, the
        // daemon's accept fails with EMFILE.
        let flood = try await offPool { try (0..<150).map { _ in try connectUnix(socket) } }
        #expect(daemon.isRunning)
        for fd in flood { close(fd) }
        #expect(await waitUntil(30) { (try? await ExtensionManagerClient(path: socket).query("select 1 as one").response.first?["one"]) == "1" })
        #expect(daemon.isRunning)
    }

    /// The connection cap of `--extensions_max_connections`: past it connections are closed at
    /// once, those served keep working.
    @Test func connectionsPastTheFlagsCapAreClosed() async throws {
        let dir = try scratchDirectory("maxconn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let daemon = try startDaemon(dir: dir, ["--extensions_socket", socket, "--extensions_max_connections", "3"])
        defer { stop(daemon) }
        // The first connection that answers a ping is kept, so no probe connection the daemon
        // has not yet seen closed counts against the cap.
        var held: [Int32] = []
        #expect(await waitUntil(60) {
            guard let fd = try? connectUnix(socket) else { return false }
            if (try? await offPool { pingRaw(fd) }) == true {
                held.append(fd)
                return true
            }
            close(fd)
            return false
        })
        // Three held open (each answered a ping, so each is being served), a fourth refused.
        for _ in 0..<2 {
            let fd = try connectUnix(socket)
            held.append(fd)
            #expect(try await offPool { pingRaw(fd) })
        }
        let extra = try connectUnix(socket)
        #expect(try await offPool { readEOF(extra) })
        close(extra)
        for fd in held { #expect(try await offPool { pingRaw(fd) }) }
        for fd in held { close(fd) }
        #expect(await waitUntil(60) { (try? await ExtensionManagerClient(path: socket).ping().code) == 0 })
        #expect(daemon.isRunning)
    }

    /// `query` on a real osqueryd whose result is over `--extensions_max_message_size`: the
    /// reply is never sent (nor, past a batch of rows, built), the caller gets status 1 saying
    /// why, and the daemon keeps serving.
    /// A message begun and never finished is dropped after `--extensions_partial_message_timeout`.
    @Test func overSizeQueryAndStalledMessageOnTheDaemon() async throws {
        let dir = try scratchDirectory("bigreply")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let daemon = try startDaemon(
            dir: dir,
            [
                "--extensions_socket", socket, "--extensions_max_message_size", "65536",
                "--extensions_partial_message_timeout", "1",
            ])
        defer { stop(daemon) }
        let client = ExtensionManagerClient(path: socket)
        #expect(await waitUntil(60) { (try? await client.ping().code) == 0 })
        let big = try await client.query("SELECT hex(zeroblob(40000)) AS h")
        #expect(big.status.code == 1)
        #expect(big.status.message.lossyString.hasPrefix("query reply of "))
        #expect(big.status.message.lossyString.hasSuffix(" bytes exceeds the maximum message size of 65536 bytes"))
        #expect(big.response.isEmpty)
        // An endless result stops once its rows pass the size: it is never built whole.
        let endless = try await client.query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x, hex(randomblob(500)) AS b FROM c")
        #expect(endless.status.code == 1)
        #expect(endless.status.message == "query result exceeds the maximum message size of 65536 bytes")
        // A query message announcing 30 000 bytes of SQL (within the size), 1 KB of it sent, then nothing.
        let stalled = try connectUnix(socket)
        var head = ThriftWriter()
        head.writeMessageBegin(MessageHeader(name: "query", type: .call, sequenceID: 1))
        head.writeFieldBegin(.string, id: 1)
        head.writeI32(30_000)
        let bytes = head.bytes + [UInt8](repeating: 0x20, count: 1024)
        _ = bytes.withUnsafeBytes { write(stalled, $0.baseAddress, $0.count) }
        #expect(try await offPool { readEOF(stalled) })
        close(stalled)
        #expect(try await client.query("SELECT 1 AS one").response.first?["one"] == "1")
        #expect(daemon.isRunning)
    }

    func startDaemon(dir: String, shellPrefix: String = "", _ args: [String]) throws -> Process {
        let osqueryd = try BuiltProducts.path("osqueryd")
        let all = [osqueryd] + args + [
            "--disable_watchdog", "--ephemeral", "--logger_path", dir + "/logs", "--config_path", dir + "/osquery.conf",
        ]
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: "/bin/sh")
        daemon.arguments = ["-c", shellPrefix + "exec \"$@\"", "sh"] + all
        daemon.standardError = FileHandle(forWritingAtPath: "/dev/null")
        daemon.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try daemon.run()
        return daemon
    }

    func stop(_ daemon: Process) {
        if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) }
        daemon.waitUntilExit()
    }
}

/// True when the peer closed `fd` (a read returns end of file).
func readEOF(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    return read(fd, &byte, 1) == 0
}

/// Sends a `ping` on `fd` and reads the start of its reply.
func pingRaw(_ fd: Int32) -> Bool {
    let ping = encodeMessage(MessageHeader(name: "ping", type: .call, sequenceID: 1)) { $0.writeFieldStop() }
    guard ping.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == ping.count else { return false }
    var reply = [UInt8](repeating: 0, count: 256)
    return reply.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } > 0
}
