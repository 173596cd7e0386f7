/// Encodes Thrift binary-protocol values, big-endian, into a growing buffer.
///
/// The buffer is raw memory owned by the writer (it is freed when the writer
/// goes away), so each value costs one capacity check and a store. The writer
/// cannot be copied, only passed `inout`. Writers always emit the strict
/// (versioned) message header, like libthrift.
public struct ThriftWriter: ~Copyable, @unchecked Sendable {
    @usableFromInline var base: UnsafeMutableRawPointer
    @usableFromInline var count: Int
    @usableFromInline var capacity: Int

    public init(reservingCapacity capacity: Int = 256) {
        self.capacity = max(capacity, 64)
        self.base = .allocate(byteCount: self.capacity, alignment: 8)
        self.count = 0
    }

    deinit { base.deallocate() }

    /// The encoded bytes so far (a copy).
    public var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: count)) }

    /// The number of bytes written.
    public var byteCount: Int { count }

    /// Calls `body` with the encoded bytes, without copying them.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Makes room for at least `total` bytes in all, so a large message of known size is not
    /// grown (and copied) by doubling.
    public mutating func reserveCapacity(_ total: Int) {
        if total > capacity { grow(total &- count) }
    }

    @inlinable
    mutating func reserve(_ n: Int) {
        if _slowPath(count &+ n > capacity) { grow(n) }
    }

    @usableFromInline
    mutating func grow(_ n: Int) {
        let newCapacity = max(capacity &* 2, count &+ n)
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        newBase.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inlinable
    mutating func store<T: FixedWidthInteger>(_ value: T) {
        reserve(MemoryLayout<T>.size)
        base.storeBytes(of: value.bigEndian, toByteOffset: count, as: T.self)
        count &+= MemoryLayout<T>.size
    }

    @inlinable
    mutating func append(_ raw: UnsafeRawBufferPointer) {
        let n = raw.count
        guard n > 0 else { return }
        reserve(n)
        (base + count).copyMemory(from: raw.baseAddress!, byteCount: n)
        count &+= n
    }

    @inlinable
    public mutating func writeByte(_ value: UInt8) { store(value) }

    @inlinable
    public mutating func writeBool(_ value: Bool) { store(UInt8(value ? 1 : 0)) }

    @inlinable
    public mutating func writeI8(_ value: Int8) { store(value) }

    @inlinable
    public mutating func writeI16(_ value: Int16) { store(value) }

    @inlinable
    public mutating func writeI32(_ value: Int32) { store(value) }

    @inlinable
    public mutating func writeI64(_ value: Int64) { store(value) }

    @inlinable
    public mutating func writeDouble(_ value: Double) { store(value.bitPattern) }

    @inlinable
    public mutating func writeString(_ value: ThriftString) {
        switch value.storage {
        case .text(let s):
            // Contiguous UTF-8 is read in place (a small string from its inline bytes).
            if let done: Void = s.utf8.withContiguousStorageIfAvailable({ utf8 in
                reserve(4 &+ utf8.count)
                store(Int32(truncatingIfNeeded: utf8.count))
                append(UnsafeRawBufferPointer(utf8))
            }) {
                return done
            }
            var copy = s
            copy.withUTF8 { utf8 in
                reserve(4 &+ utf8.count)
                store(Int32(truncatingIfNeeded: utf8.count))
                append(UnsafeRawBufferPointer(utf8))
            }
        case .bytes(let b):
            b.withUnsafeBytes { raw in
                reserve(4 &+ raw.count)
                store(Int32(truncatingIfNeeded: raw.count))
                append(raw)
            }
        }
    }

    @inlinable
    public mutating func writeString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            store(Int32(truncatingIfNeeded: utf8.count))
            append(UnsafeRawBufferPointer(utf8))
        }
    }

    /// Writes a string given as raw bytes.
    @inlinable
    public mutating func writeString(bytes: UnsafeRawBufferPointer) {
        reserve(4 &+ bytes.count)
        store(Int32(truncatingIfNeeded: bytes.count))
        append(bytes)
    }

    @inlinable
    public mutating func writeBinary(_ value: [UInt8]) {
        store(Int32(truncatingIfNeeded: value.count))
        value.withUnsafeBytes { append($0) }
    }

    /// Appends bytes that are already encoded.
    public mutating func writeRaw(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Writes a strict message header: version 1 | type, name, sequence id.
    public mutating func writeMessageBegin(_ header: MessageHeader) {
        writeI32(Int32(bitPattern: 0x8001_0000 | UInt32(header.type.rawValue)))
        writeString(header.name)
        writeI32(header.sequenceID)
    }

    /// Writes the old, unversioned header (name, type, sequence id). Only for
    /// testing peers that must accept it; real writers use the strict form.
    public mutating func writeOldMessageBegin(_ header: MessageHeader) {
        writeString(header.name)
        writeByte(header.type.rawValue)
        writeI32(header.sequenceID)
    }

    @inlinable
    public mutating func writeFieldBegin(_ type: TType, id: Int16) {
        store(type.rawValue)
        store(id)
    }

    @inlinable
    public mutating func writeFieldStop() { store(TType.stop.rawValue) }

    @inlinable
    public mutating func writeMapBegin(key: TType, value: TType, count: Int) {
        store(key.rawValue)
        store(value.rawValue)
        store(Int32(truncatingIfNeeded: count))
    }

    @inlinable
    public mutating func writeListBegin(element: TType, count: Int) {
        store(element.rawValue)
        store(Int32(truncatingIfNeeded: count))
    }

    @inlinable
    public mutating func writeSetBegin(element: TType, count: Int) {
        writeListBegin(element: element, count: count)
    }

    /// Writes a `map<string,string>`.
    @inlinable
    public mutating func writeStringMap(_ map: [ThriftString: ThriftString]) {
        writeMapBegin(key: .string, value: .string, count: map.count)
        for (k, v) in map {
            writeString(k)
            writeString(v)
        }
    }
}
