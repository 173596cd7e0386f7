import Foundation
import ProtocolFixture
import OsqueryProtocol
import ThriftCodec

#if canImport(Glibc)
import Glibc
#endif

/// A short, unique socket path (sun_path is only 108 bytes).
func tempSocketPath(_ tag: String = "t") -> String {
    "/tmp/osqt-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).em"
}


/// A blocking Unix-socket client speaking raw bytes, to send what no well-behaved
/// client would. Reads have a 10 s timeout so a broken server cannot hang a test.
final class RawSocket: @unchecked Sendable {  // used by one task at a time
    let fd: Int32

    init(path: String) throws { fd = try connectUnix(path) }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Reads one whole message, or nil if the peer closed (or the read timed out) first.
    var buffer: [UInt8] = []

    func receiveMessage() throws -> [UInt8]? {
        var framer = MessageFramer()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let length = try buffer.withUnsafeBytes({ try framer.scan($0) }) {
                defer { buffer.removeFirst(length) }  // keep any bytes of the next message
                return Array(buffer[0..<length])
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
    }

    /// True when the peer has closed the connection (read returns 0).
    func peerClosed() -> Bool {
        var byte: UInt8 = 0
        return read(fd, &byte, 1) == 0
    }
}

/// A Unix stream socket bound to `path` (not listening yet); the caller closes it.
func boundUnixSocket(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in path.utf8.enumerated() { raw[i] = b }
    }
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    return fd
}

/// Binds a Unix socket and closes it without unlinking, leaving a stale socket
/// file nobody listens on (what a crashed process leaves behind).
func makeStaleSocketFile(at path: String) {
    close(boundUnixSocket(path))
}

func fileMode(_ path: String) -> mode_t? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return st.st_mode & 0o7777
}

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// Reads the reply to a raw message and decodes its header and body.
func decodeRaw(_ bytes: [UInt8]) throws -> (MessageHeader, ThriftValue) {
    try ThriftReader.read(bytes) { r in (try r.readMessageBegin(), try r.readValue(.struct)) }
}

func message(_ name: ThriftString, _ type: TMessageType = .call, seqid: Int32 = 0, body: ThriftValue = .struct([]))
    -> [UInt8]
{
    var w = ThriftWriter()
    w.writeMessageBegin(MessageHeader(name: name, type: type, sequenceID: seqid))
    w.writeValue(body)
    return w.bytes
}

/// The repository root, found from this file's path.
let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
