/// Encodes Thrift binary-protocol values, big-endian, into a growing byte array.
///
/// Writers always emit the strict (versioned) message header, like libthrift.
public struct ThriftWriter: Sendable {
    /// The encoded bytes so far.
    public var bytes: [UInt8]

    public init(reservingCapacity capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inlinable
    public mutating func writeByte(_ value: UInt8) { bytes.append(value) }

    @inlinable
    public mutating func writeBool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    @inlinable
    public mutating func writeI8(_ value: Int8) { bytes.append(UInt8(bitPattern: value)) }

    // Fixed-width values are appended byte by byte: for 2 to 8 bytes this is
    // cheaper than a bulk append through a raw buffer.
    @inlinable
    public mutating func writeI16(_ value: Int16) {
        let v = UInt16(bitPattern: value)
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    @inlinable
    public mutating func writeI32(_ value: Int32) {
        let v = UInt32(bitPattern: value)
        bytes.append(UInt8(truncatingIfNeeded: v >> 24))
        bytes.append(UInt8(truncatingIfNeeded: v >> 16))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    @inlinable
    public mutating func writeI64(_ value: Int64) {
        writeI32(Int32(truncatingIfNeeded: value >> 32))
        writeI32(Int32(truncatingIfNeeded: value))
    }

    @inlinable
    public mutating func writeDouble(_ value: Double) {
        writeI64(Int64(bitPattern: value.bitPattern))
    }

    @inlinable
    public mutating func writeString(_ value: ThriftString) {
        value.withUnsafeBytes { raw in
            writeI32(Int32(truncatingIfNeeded: raw.count))
            bytes.append(contentsOf: raw)
        }
    }

    @inlinable
    public mutating func writeString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            writeI32(Int32(truncatingIfNeeded: utf8.count))
            bytes.append(contentsOf: UnsafeRawBufferPointer(utf8))
        }
    }

    @inlinable
    public mutating func writeBinary(_ value: [UInt8]) {
        writeI32(Int32(truncatingIfNeeded: value.count))
        bytes.append(contentsOf: value)
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
        bytes.append(type.rawValue)
        writeI16(id)
    }

    @inlinable
    public mutating func writeFieldStop() { bytes.append(TType.stop.rawValue) }

    @inlinable
    public mutating func writeMapBegin(key: TType, value: TType, count: Int) {
        bytes.append(key.rawValue)
        bytes.append(value.rawValue)
        writeI32(Int32(truncatingIfNeeded: count))
    }

    @inlinable
    public mutating func writeListBegin(element: TType, count: Int) {
        bytes.append(element.rawValue)
        writeI32(Int32(truncatingIfNeeded: count))
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

    /// Writes a `list<map<string,string>>`.
    @inlinable
    public mutating func writeStringMapList(_ rows: [[ThriftString: ThriftString]]) {
        writeListBegin(element: .map, count: rows.count)
        for row in rows { writeStringMap(row) }
    }
}
