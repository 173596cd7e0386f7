import NIOCore
import ThriftCodec

/// One whole message off the stream, and what the framer learned walking it.
struct ReceivedFrame {
    var bytes: ByteBuffer
    /// Its rows' list, checked whole (``MessageFramer/lastStringMapList``).
    var rows: MessageFramer.StringMapList?
}

/// Splits an unframed byte stream into whole Thrift messages.
struct ThriftFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ReceivedFrame

    var framer: MessageFramer

    init(limits: ThriftLimits) { framer = MessageFramer(limits: limits) }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let length = try buffer.withUnsafeReadableBytes { raw throws(ThriftError) in try framer.scan(raw) }
        guard let length, let frame = buffer.readSlice(length: length) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(ReceivedFrame(bytes: frame, rows: framer.lastStringMapList)))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// The longest path a Unix socket can bind or connect to: `sun_path` holds 108
/// bytes on Linux, one of them the terminating NUL.
package let maxUnixSocketPathLength = 107

/// The longest manager socket path: room is left for the `.<uuid>` suffix
/// (a dot and up to five digits) that names each extension's socket.
package let maxManagerSocketPathLength = maxUnixSocketPathLength - 6

/// Checks a socket path up front so an over-long one gets a clear error rather
/// than a failure deep inside bind or connect.
package func validateSocketPath(_ path: String, leavingRoomForUUID: Bool = false) throws(SocketPathError) {
    let limit = leavingRoomForUUID ? maxManagerSocketPathLength : maxUnixSocketPathLength
    if path.isEmpty { throw .empty }
    if path.utf8.count > limit { throw .tooLong(path: path, length: path.utf8.count, limit: limit) }
}

/// Why a Unix socket path cannot be used.
package enum SocketPathError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path is empty.
    case empty
    /// The path is longer than `sun_path` holds: the path, its length in bytes and the limit.
    case tooLong(path: String, length: Int, limit: Int)

    /// The problem as one line.
    package var description: String {
        switch self {
        case .empty: "the socket path is empty"
        case .tooLong(let path, let length, let limit):
            "socket path is \(length) bytes, over the limit of \(limit): \(path)"
        }
    }
}
