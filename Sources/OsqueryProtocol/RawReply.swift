import Dispatch
import NIOCore
package import ThriftCodec

/// Consumes the rows of an ``ExtensionResponse`` as they are read off the wire.
///
/// The core turns an extension's rows into typed SQL values; going through ``StringMap`` first
/// costs a string per key and value and an array per row. A reader gets the `ThriftReader`
/// positioned at the rows' `list<map<string,string>>` and must consume it whole.
package protocol ResponseRowsReader: ~Copyable {
    /// Reads one `list<map<string,string>>` whole.
    mutating func readRows(from reader: inout ThriftReader) throws(ThriftError)
    /// Forgets the rows read so far: a reply that repeats its rows field (or its result) means
    /// the last one, as a decoder into ``ExtensionResponse`` would keep it.
    mutating func discardRows()
    /// ``readRows(from:)`` when the framer already walked the list at the reader's offset, if
    /// `checked` starts there: every element a `map<string,string>`, every length within the
    /// reply, so a reader may skip to `checked.end` and read the rows without checking them
    /// again. The default reads them as ``readRows(from:)`` does.
    mutating func readRows(from reader: inout ThriftReader, checked: MessageFramer.StringMapList?) throws(ThriftError)
}

extension ResponseRowsReader where Self: ~Copyable {
    package mutating func readRows(from reader: inout ThriftReader, checked: MessageFramer.StringMapList?) throws(ThriftError) {
        try readRows(from: &reader)
    }
}

/// A reply whose header has been checked and whose body is still bytes; decode it on the
/// thread that needs the result.
package struct RawReply: Sendable {
    let frame: ByteBuffer
    let bodyStart: Int
    /// The method this is the reply of.
    package let method: ExtensionMethod
    let limits: ThriftLimits
    /// The rows' list, as the framer found and checked it.
    var rows: MessageFramer.StringMapList? = nil

    /// A reply as ``RPCClient`` takes it off the wire: `bytes` are one whole message as
    /// ``MessageFramer`` delimited it and `rows` the list it checked there. Nil when the header
    /// names no method of the protocol. For the fuzz harness, which feeds clients' decoding
    /// paths hostile replies without a socket.
    package static func received(_ bytes: [UInt8], rows: MessageFramer.StringMapList?, limits: ThriftLimits)
        throws(RPCClientError) -> RawReply?
    {
        let frame = ByteBuffer(bytes: bytes)
        let header: MessageHeader
        do {
            header = try frame.withUnsafeReadableBytes { raw throws(ThriftError) in
                var reader = ThriftReader(raw, limits: limits)
                return try reader.readMessageBegin()
            }
        } catch {
            throw .protocolError("\(error)")
        }
        guard let method = ExtensionMethod(name: header.name) else { return nil }
        let bodyStart = try frame.withUnsafeReadableBytes { raw throws(RPCClientError) in
            try Connection.checkReplyHeader(raw, method: method, sequenceID: header.sequenceID, limits: limits)
        }
        return RawReply(frame: frame, bodyStart: bodyStart, method: method, limits: limits, rows: rows)
    }

    /// The reply's size in bytes, header included.
    package var byteCount: Int { frame.readableBytes }

    /// The reply's bytes (those ``decodeResponse(rows:)`` reads, at the same offsets) and an
    /// owner that keeps them where they are while it lives: rows can point into the reply
    /// instead of being copied out of it.
    package func pinnedBytes() -> (owner: any AnyObject & Sendable, bytes: UnsafeRawBufferPointer) {
        let pin = PinnedFrame(frame)
        // The frame is never written again (the pin holds an immutable copy of the ByteBuffer),
        // and NIO moves a buffer's storage only to write to it, so the address stays valid.
        let bytes = pin.frame.withUnsafeReadableBytes { $0 }
        return (pin, bytes)
    }

    /// Decodes the whole reply, as ``RPCClient/invoke(_:timeout:)`` does.
    package func decode() throws(RPCClientError) -> ExtensionReply {
        let (method, limits, bodyStart) = (self.method, self.limits, self.bodyStart)
        return try frame.withUnsafeReadableBytes { raw throws(RPCClientError) in
            try Self.decodeBody(raw, from: bodyStart, method: method, limits: limits)
        }
    }

    /// Decodes a `call`, `query` or `getQueryColumns` reply: the status is returned, the rows go
    /// to `rows` (never when the reply has none). The reply's struct is walked as
    /// ``ExtensionReply/readResult(of:from:)`` walks it: unknown fields are skipped, and a reply
    /// without a result is a `TApplicationException` (MISSING_RESULT).
    package func decodeResponse<Rows: ResponseRowsReader & ~Copyable>(rows: inout Rows) throws(RPCClientError)
        -> ExtensionStatus
    {
        guard method == .call || method == .query || method == .getQueryColumns else {
            throw .protocolError("\(method.rawValue) replies carry no rows")
        }
        let (method, limits, bodyStart, checked) = (self.method, self.limits, self.bodyStart, self.rows)
        return try frame.withUnsafeReadableBytes { raw throws(RPCClientError) in
            var r = ThriftReader(raw, limits: limits)
            r.offset = bodyStart
            do {
                var status: ExtensionStatus?
                var readAny = false
                try r.enter()
                while let f = try r.readFieldBegin() {
                    guard f.id == 0, f.type == .struct else {
                        try r.skip(f.type)
                        continue
                    }
                    // ExtensionResponse: 1 status, 2 rows; either may be missing or repeated.
                    var fieldStatus = ExtensionStatus()
                    if readAny { rows.discardRows() }
                    try r.enter()
                    while let g = try r.readFieldBegin() {
                        switch (g.id, g.type) {
                        case (1, .struct): fieldStatus = try ExtensionStatus(from: &r)
                        case (2, .list):
                            if readAny { rows.discardRows() }
                            readAny = true
                            try rows.readRows(from: &r, checked: checked)
                        default: try r.skip(g.type)
                        }
                    }
                    r.leave()
                    status = fieldStatus
                }
                r.leave()
                guard let status else {
                    throw RPCClientError.applicationException(
                        TApplicationException(.missingResult, ThriftString("\(method.rawValue) failed: unknown result")))
                }
                return status
            } catch let error as RPCClientError {
                throw error
            } catch {
                throw .protocolError("\(error)")
            }
        }
    }

    static func decodeBody(
        _ raw: UnsafeRawBufferPointer, from bodyStart: Int, method: ExtensionMethod, limits: ThriftLimits
    ) throws(RPCClientError) -> ExtensionReply {
        var reader = ThriftReader(raw, limits: limits)
        reader.offset = bodyStart
        do {
            return try ExtensionReply.readResult(of: method, from: &reader)
        } catch {
            throw RPCClientError(readingReply: error)
        }
    }
}

extension ExtensionServiceClient {
    /// `call`, with the reply left undecoded (see ``RPCClient/invokeRaw(_:timeout:)``).
    package func callRaw(
        registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest, timeout: Duration? = nil
    ) async throws(RPCClientError) -> RawReply {
        try await rpc.invokeRaw(.call(registry: registry, item: item, request: request), timeout: timeout)
    }
}

/// Keeps a reply's bytes alive (see ``RawReply/pinnedBytes()``).
final class PinnedFrame: Sendable {
    let frame: ByteBuffer
    init(_ frame: ByteBuffer) { self.frame = frame }
}

/// Reads a reply's rows as ``StringMap``s, as ``ExtensionResponse`` decoding does; a big list
/// (16 384 rows or more) is decoded in two halves on two threads, the same maps in the same order.
package struct StringMapRowsReader: ResponseRowsReader {
    /// The rows read.
    package var rows: [StringMap] = []

    package init() {}

    package mutating func discardRows() { rows = [] }

    package mutating func readRows(from r: inout ThriftReader) throws(ThriftError) {
        let start = r.offset
        let header = try r.readListBegin()
        guard header.count >= 16_384, header.element == .map else {
            r.offset = start
            rows = try r.readStringMapList()
            return
        }
        try r.enter()
        defer { r.leave() }
        // Where the second half starts: a walk over the first half's lengths, no strings built.
        let firstCount = header.count / 2
        var probe = r
        try probe.skipStringMaps(firstCount)
        // The readers point into the reply, which stays put and unchanged until both halves are done.
        nonisolated(unsafe) let halves = [(r, firstCount), (probe, header.count - firstCount)]
        nonisolated(unsafe) let results = UnsafeMutablePointer<(Result<[StringMap], ThriftError>, Int)>.allocate(capacity: 2)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            var reader = halves[i].0
            let result = Result { () throws(ThriftError) in try reader.readStringMaps(halves[i].1) }
            (results + i).initialize(to: (result, reader.offset))
        }
        defer { results.deinitialize(count: 2) }
        var first = try results[0].0.get()
        let second = try results[1].0.get()
        first.append(contentsOf: second)
        rows = first
        r.offset = results[1].1
    }
}
