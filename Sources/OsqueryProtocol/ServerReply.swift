package import NIOCore
package import ThriftCodec

// What a server sends back, as opposed to the IDL's values (Types.swift): rows may already be
// encoded by their producer, and memory may be freed only once the reply is on the wire.

/// A `call` or `query` answer as the server sends it.
package enum ServerResponse: Sendable {
    /// A status and rows as values: the IDL's ``ExtensionResponse``.
    case rows(ExtensionResponse)
    /// A status and rows their producer already encoded (a table's generate, the core's query
    /// results written straight from SQLite): they go on the wire as they are, without a map per
    /// row. `releaseAfterSending` is memory the server frees once the reply is on the wire rather
    /// than before sending it (the rows a table generated: freeing 100 000 of them takes
    /// milliseconds).
    case encoded(ExtensionStatus, EncodedRows, releaseAfterSending: (any Sendable)? = nil)

    /// The answer's status.
    package var status: ExtensionStatus {
        get {
            switch self {
            case .rows(let response): response.status
            case .encoded(let status, _, _): status
            }
        }
        set {
            switch self {
            case .rows(var response):
                response.status = newValue
                self = .rows(response)
            case .encoded(_, let rows, let release):
                self = .encoded(newValue, rows, releaseAfterSending: release)
            }
        }
    }

    /// The answer as the IDL's value (encoded rows are decoded: for tests and in-process callers).
    package var value: ExtensionResponse {
        get throws(ThriftError) {
            switch self {
            case .rows(let response): return response
            case .encoded(let status, let rows, _):
                return ExtensionResponse(status: status, response: try rows.decoded())
            }
        }
    }
}

/// A method's result as the server sends it: what an ``ExtensionService`` answers.
package enum ServerReply: Sendable {
    /// Any method's result as the IDL's value.
    case value(ExtensionReply)
    /// A `call` or `query` answer, which may carry encoded rows.
    case response(ServerResponse)
}

/// The rows of a `list<map<string,string>>` as encoded bytes: each row a map header and its
/// key/value strings, back to back, without the list header (written with ``count``).
package struct EncodedRows: Sendable, Hashable {
    /// The number of rows.
    package var count: Int
    /// Where the maps are: as an encoder handed them over, or already in a buffer the server
    /// can send as it is (the core's big results, copied batch by batch while SQLite scans).
    let storage: Storage

    enum Storage: Sendable {
        case thrift(ThriftBytes)
        case buffer(ByteBuffer)
    }

    /// The encoded maps (a copy when they are in a ``ByteBuffer``).
    package var encoded: ThriftBytes {
        switch storage {
        case .thrift(let bytes): bytes
        case .buffer(let buffer): ThriftBytes(Array(buffer.readableBytesView))
        }
    }

    /// The encoded maps as an array (a copy).
    package var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The number of bytes of the encoded maps.
    package var byteCount: Int {
        switch storage {
        case .thrift(let bytes): bytes.count
        case .buffer(let buffer): buffer.readableBytes
        }
    }

    /// Calls `body` with the encoded maps, without copying them.
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .thrift(let bytes): try bytes.withUnsafeBytes(body)
        case .buffer(let buffer): try buffer.withUnsafeReadableBytes(body)
        }
    }

    /// The rows as maps.
    package func decoded() throws(ThriftError) -> [StringMap] {
        let count = count
        let result = withUnsafeBytes { raw in
            Result { () throws(ThriftError) in
                var reader = ThriftReader(raw, limits: ThriftLimits(maxMessageSize: Int.max))
                return try reader.readStringMaps(count)
            }
        }
        return try result.get()
    }

    package init(count: Int, encoded: ThriftBytes) {
        self.count = count
        self.storage = .thrift(encoded)
    }

    /// Rows already in a buffer (its readable bytes), sent without another copy.
    package init(count: Int, buffer: ByteBuffer) {
        self.count = count
        self.storage = .buffer(buffer)
    }

    /// Rows from their encoded maps, back to back without the list header.
    /// - Parameters:
    ///   - count: the number of maps in `bytes`.
    ///   - bytes: the encoded maps.
    package init(count: Int, bytes: [UInt8]) {
        self.init(count: count, encoded: ThriftBytes(bytes))
    }

    /// Same count and same bytes.
    package static func == (a: EncodedRows, b: EncodedRows) -> Bool {
        a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.elementsEqual(y) } }
    }

    /// Hashes the count and the bytes.
    package func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}
