import Foundation
import Glibc
import ThriftCodec

/// A blocking Unix-socket connection used to look at raw bytes: old headers,
/// framed messages, unknown methods. Always used off the cooperative pool.
final class RawConnection: @unchecked Sendable {
    let fd: Int32
    var buffer: [UInt8] = []

    /// Connects to `path`; each read waits at most `timeout` seconds.
    init(path: String, timeout: Double = 5) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw WireError("socket(): errno \(errno)") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            Glibc.close(fd)
            throw WireError("socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw WireError("connect(\(path)): \(String(cString: strerror(e)))")
        }
    }

    deinit { Glibc.close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw WireError("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// Reads one whole unframed Thrift message (found with MessageFramer).
    /// Returns nil when the peer closed the connection or the read timed out.
    func receiveMessage() throws -> [UInt8]? {
        var framer = MessageFramer()
        while true {
            if !buffer.isEmpty, let n = try buffer.withUnsafeBytes({ raw throws(ThriftError) in try framer.scan(raw) }) {
                let message = Array(buffer[..<n])
                buffer.removeFirst(n)
                return message
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer += chunk[..<n]
        }
    }
}

struct WireError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A decoded reply: header and the result struct, without a schema.
struct RawReply: CustomStringConvertible {
    var header: MessageHeader
    var body: ThriftValue

    var description: String { "\(header.type) \(header.name.lossyString)#\(header.sequenceID) \(render(body))" }

    /// Field 0 of the result struct.
    var success: ThriftValue? { body[field: 0] }

    static func decode(_ bytes: [UInt8]) throws -> RawReply {
        try ThriftReader.read(bytes) { r in
            let header = try r.readMessageBegin()
            let body = try r.readValue(.struct)
            return RawReply(header: header, body: body)
        }
    }
}

enum Raw {
    /// A message with no arguments (an empty args struct).
    static func call(_ name: String, seqid: Int32, strict: Bool = true, args: (inout ThriftWriter) -> Void = { _ in }) -> [UInt8] {
        var w = ThriftWriter()
        let header = MessageHeader(name: ThriftString(name), type: .call, sequenceID: seqid)
        if strict { w.writeMessageBegin(header) } else { w.writeOldMessageBegin(header) }
        args(&w)
        w.writeFieldStop()
        return w.bytes
    }

    /// Sends `request` on a fresh connection and decodes the reply, off the pool.
    static func exchange(_ path: String, _ requests: [[UInt8]], timeout: Double = 5) async throws -> [RawReply?] {
        try await offPool {
            let c = try RawConnection(path: path, timeout: timeout)
            var replies: [RawReply?] = []
            for r in requests {
                try c.send(r)
                replies.append(try c.receiveMessage().map(RawReply.decode))
            }
            return replies
        }
    }
}

/// Renders a schema-free value compactly, for failure messages.
func render(_ v: ThriftValue) -> String {
    switch v {
    case .bool(let b): return "\(b)"
    case .byte(let b): return "i8:\(b)"
    case .i16(let x): return "i16:\(x)"
    case .i32(let x): return "i32:\(x)"
    case .i64(let x): return "i64:\(x)"
    case .double(let d): return "\(d)"
    case .string(let s): return s.debugDescription
    case .struct(let fields): return "{" + fields.map { "\($0.id):\(render($0.value))" }.joined(separator: ", ") + "}"
    case .map(_, _, let pairs): return "map{" + pairs.prefix(8).map { "\(render($0.0)): \(render($0.1))" }.joined(separator: ", ") + (pairs.count > 8 ? ", …" : "") + "}"
    case .set(_, let xs): return "set[" + xs.prefix(8).map(render).joined(separator: ", ") + "]"
    case .list(_, let xs): return "[" + xs.prefix(8).map(render).joined(separator: ", ") + (xs.count > 8 ? ", …" : "") + "]"
    }
}

/// Runs blocking work on its own thread so the cooperative pool keeps serving.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Polls `condition` every 100 ms for up to `seconds`.
func eventually(_ seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return await condition()
}
