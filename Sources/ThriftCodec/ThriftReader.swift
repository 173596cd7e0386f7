/// Decodes Thrift binary-protocol values from a complete buffer.
///
/// Every length and count is checked against the bytes that are actually left
/// and against ``ThriftLimits`` before anything is allocated, so a declared
/// 2 GiB string or a billion-element list costs nothing but an error.
package struct ThriftReader {
    package let buffer: UnsafeRawBufferPointer
    /// The read position in `buffer`.
    package var offset: Int
    package let limits: ThriftLimits
    @usableFromInline var depth = 0

    package init(_ buffer: UnsafeRawBufferPointer, limits: ThriftLimits = .default) {
        self.buffer = buffer
        self.offset = 0
        self.limits = limits
    }

    /// Bytes not yet read.
    @inlinable
    package var remaining: Int { buffer.count &- offset }

    @inlinable
    mutating func take(_ n: Int) throws(ThriftError) -> Int {
        guard n <= remaining else { throw .truncated }
        let at = offset
        offset = at &+ n
        return at
    }

    @inlinable
    mutating func loadBigEndian<T: FixedWidthInteger>(_: T.Type) throws(ThriftError) -> T {
        let at = try take(MemoryLayout<T>.size)
        return T(bigEndian: buffer.loadUnaligned(fromByteOffset: at, as: T.self))
    }

    @inlinable
    package mutating func readByte() throws(ThriftError) -> UInt8 {
        let at = try take(1)
        return buffer[at]
    }

    @inlinable
    package mutating func readBool() throws(ThriftError) -> Bool { try readByte() != 0 }

    @inlinable
    package mutating func readI8() throws(ThriftError) -> Int8 { Int8(bitPattern: try readByte()) }

    @inlinable
    package mutating func readI16() throws(ThriftError) -> Int16 { try loadBigEndian(Int16.self) }

    @inlinable
    package mutating func readI32() throws(ThriftError) -> Int32 { try loadBigEndian(Int32.self) }

    @inlinable
    package mutating func readI64() throws(ThriftError) -> Int64 { try loadBigEndian(Int64.self) }

    @inlinable
    package mutating func readDouble() throws(ThriftError) -> Double {
        Double(bitPattern: UInt64(bitPattern: try readI64()))
    }

    /// Reads a length prefix and checks it against the buffer and the limits.
    @inlinable
    mutating func readLength() throws(ThriftError) -> Int {
        let n = Int(try readI32())
        guard n >= 0 else { throw .negativeSize(Int64(n)) }
        guard n <= limits.maxMessageSize else {
            throw .sizeLimit(declared: Int64(n), limit: Int64(limits.maxMessageSize))
        }
        guard n <= remaining else { throw .truncated }
        return n
    }

    @inlinable
    package mutating func readString() throws(ThriftError) -> ThriftString {
        let n = try readLength()
        let at = offset
        offset = at &+ n
        return ThriftString(decoding: UnsafeRawBufferPointer(rebasing: buffer[at..<(at &+ n)]))
    }

    /// Reads a string's bytes in place, without building a value: the buffer stays valid as
    /// long as the reader's.
    @inlinable
    package mutating func readStringBytes() throws(ThriftError) -> UnsafeRawBufferPointer {
        let n = try readLength()
        let at = offset
        offset = at &+ n
        return UnsafeRawBufferPointer(rebasing: buffer[at..<(at &+ n)])
    }

    @inlinable
    package mutating func readBinary() throws(ThriftError) -> [UInt8] {
        let n = try readLength()
        let at = offset
        offset = at &+ n
        return Array(buffer[at..<(at &+ n)])
    }

    /// Reads either header form: strict (`0x8001 0000 | type`, name, seqid) or
    /// the old unversioned one (name, type byte, seqid).
    package mutating func readMessageBegin() throws(ThriftError) -> MessageHeader {
        let first = try readI32()
        let name: ThriftString
        let rawType: UInt8
        if first < 0 {
            let word = UInt32(bitPattern: first)
            guard word & 0xFFFF_0000 == 0x8001_0000 else { throw .badVersion(word & 0xFFFF_0000) }
            rawType = UInt8(truncatingIfNeeded: word & 0xFF)
            name = try readString()
        } else {
            guard Int(first) <= limits.maxMessageSize else {
                throw .sizeLimit(declared: Int64(first), limit: Int64(limits.maxMessageSize))
            }
            let at = try take(Int(first))
            name = ThriftString(decoding: UnsafeRawBufferPointer(rebasing: buffer[at..<(at + Int(first))]))
            rawType = try readByte()
        }
        guard let type = TMessageType(rawValue: rawType) else { throw .invalidMessageType(rawType) }
        let seqid = try readI32()
        return MessageHeader(name: name, type: type, sequenceID: seqid)
    }

    /// Reads a field header; returns nil at the struct's STOP.
    @inlinable
    package mutating func readFieldBegin() throws(ThriftError) -> (type: TType, id: Int16)? {
        let raw = try readByte()
        if raw == 0 { return nil }
        guard let type = TType(rawValue: raw), type.isValueType else { throw .invalidType(raw) }
        return (type, try readI16())
    }

    @inlinable
    mutating func checkCount(_ n: Int32, elementSize: Int) throws(ThriftError) -> Int {
        guard n >= 0 else { throw .negativeSize(Int64(n)) }
        let count = Int(n)
        // Each element takes at least `elementSize` bytes, so a count that cannot
        // fit in what is left is refused before any storage is reserved.
        let (need, overflow) = count.multipliedReportingOverflow(by: max(elementSize, 1))
        guard !overflow, need <= limits.maxMessageSize else {
            throw .sizeLimit(declared: Int64(count), limit: Int64(limits.maxMessageSize))
        }
        guard need <= remaining else { throw .truncated }
        return count
    }

    @inlinable
    package mutating func readMapBegin() throws(ThriftError) -> (key: TType, value: TType, count: Int) {
        let k = try readByte(), v = try readByte()
        let n = try readI32()
        if n == 0 { return (TType(rawValue: k) ?? .stop, TType(rawValue: v) ?? .stop, 0) }
        guard let key = TType(rawValue: k), key.isValueType else { throw .invalidType(k) }
        guard let value = TType(rawValue: v), value.isValueType else { throw .invalidType(v) }
        let count = try checkCount(n, elementSize: key.minimumEncodedSize + value.minimumEncodedSize)
        return (key, value, count)
    }

    @inlinable
    package mutating func readListBegin() throws(ThriftError) -> (element: TType, count: Int) {
        let e = try readByte()
        let n = try readI32()
        if n == 0 { return (TType(rawValue: e) ?? .stop, 0) }
        guard let element = TType(rawValue: e), element.isValueType else { throw .invalidType(e) }
        return (element, try checkCount(n, elementSize: element.minimumEncodedSize))
    }

    @inlinable
    package mutating func readSetBegin() throws(ThriftError) -> (element: TType, count: Int) {
        try readListBegin()
    }

    /// Enters a nested struct or container, enforcing the depth limit.
    @inlinable
    package mutating func enter() throws(ThriftError) {
        depth &+= 1
        guard depth <= limits.maxDepth else { throw .depthLimit(limits.maxDepth) }
    }

    @inlinable
    package mutating func leave() { depth &-= 1 }

    /// Skips one value of `type`, however deeply nested, within the limits.
    package mutating func skip(_ type: TType) throws(ThriftError) {
        switch type {
        case .stop, .void: throw .invalidType(type.rawValue)
        case .bool, .byte: _ = try take(1)
        case .i16: _ = try take(2)
        case .i32: _ = try take(4)
        case .i64, .double: _ = try take(8)
        case .string: _ = try take(try readLength())
        case .struct:
            try enter()
            while let field = try readFieldBegin() { try skip(field.type) }
            leave()
        case .map:
            try enter()
            let header = try readMapBegin()
            for _ in 0..<header.count {
                try skip(header.key)
                try skip(header.value)
            }
            leave()
        case .set, .list:
            try enter()
            let header = try readListBegin()
            for _ in 0..<header.count { try skip(header.element) }
            leave()
        }
    }

    /// Reads a `map<string,string>`; entries of other types are refused.
    @inlinable
    package mutating func readStringMap() throws(ThriftError) -> [ThriftString: ThriftString] {
        let header = try readMapBegin()
        guard header.count == 0 || (header.key == .string && header.value == .string) else {
            throw .invalidData("expected map<string,string>")
        }
        var map = [ThriftString: ThriftString](minimumCapacity: header.count)
        for _ in 0..<header.count {
            let k = try readString()
            map[k] = try readString()
        }
        return map
    }
}

extension ThriftReader {
    /// Runs `body` with a reader over `bytes`.
    package static func read<R>(
        _ bytes: [UInt8], limits: ThriftLimits = .default,
        _ body: (inout ThriftReader) throws -> R
    ) throws -> R {
        try bytes.withUnsafeBytes { raw in
            var reader = ThriftReader(raw, limits: limits)
            return try body(&reader)
        }
    }
}
