#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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

    package init(reservingCapacity capacity: Int = 256) {
        self.capacity = max(capacity, 64)
        // malloc/realloc rather than allocate/copy: glibc grows a large block in place (mremap)
        // instead of copying megabytes of rows each time the buffer doubles.
        guard let memory = malloc(self.capacity) else { fatalError("ThriftWriter: out of memory") }
        self.base = memory
        self.count = 0
    }

    deinit { free(base) }

    /// The encoded bytes so far (a copy).
    package var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: count)) }

    /// Hands the encoded bytes over without copying them; the writer is gone afterwards.
    package consuming func finish() -> ThriftBytes {
        let bytes = ThriftBytes(taking: base, count: count)
        discard self
        return bytes
    }

    /// The number of bytes written.
    @usableFromInline package var byteCount: Int { count }

    /// Calls `body` with the encoded bytes, without copying them.
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Makes room for at least `total` bytes in all, so a large message of known size is not
    /// grown (and copied) by doubling.
    package mutating func reserveCapacity(_ total: Int) {
        if total > capacity { grow(total &- count) }
    }

    @inlinable
    mutating func reserve(_ n: Int) {
        if _slowPath(count &+ n > capacity) { grow(n) }
    }

    @usableFromInline
    mutating func grow(_ n: Int) {
        let newCapacity = max(capacity &* 2, count &+ n)
        guard let newBase = realloc(base, newCapacity) else { fatalError("ThriftWriter: out of memory") }
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
        copyBytes(to: base + count, from: raw.baseAddress!, count: n)
        count &+= n
    }

    @inlinable
    package mutating func writeByte(_ value: UInt8) { store(value) }

    @inlinable
    package mutating func writeBool(_ value: Bool) { store(UInt8(value ? 1 : 0)) }

    @inlinable
    package mutating func writeI8(_ value: Int8) { store(value) }

    @inlinable
    package mutating func writeI16(_ value: Int16) { store(value) }

    @inlinable
    package mutating func writeI32(_ value: Int32) { store(value) }

    @inlinable
    package mutating func writeI64(_ value: Int64) { store(value) }

    @inlinable
    package mutating func writeDouble(_ value: Double) { store(value.bitPattern) }

    /// Writes `value` as a Thrift string (its length, then its bytes).
    /// - Parameter value: the string.
    @inlinable
    package mutating func writeString(_ value: ThriftString) {
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

    /// Writes `value`'s UTF-8 bytes as a Thrift string.
    /// - Parameter value: the string.
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
    package mutating func writeBinary(_ value: [UInt8]) {
        store(Int32(truncatingIfNeeded: value.count))
        value.withUnsafeBytes { append($0) }
    }

    /// Appends bytes that are already encoded.
    package mutating func writeRaw(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Appends bytes that are already encoded.
    @inlinable
    package mutating func writeRaw(bytes: UnsafeRawBufferPointer) { append(bytes) }

    /// Drops everything written after the first `byteCount` bytes.
    @inlinable
    package mutating func truncate(to byteCount: Int) {
        precondition(byteCount >= 0 && byteCount <= count, "truncate beyond the written bytes")
        count = byteCount
    }

    /// Overwrites the four bytes at `offset` (already written) with `value`: the count of a
    /// map or list whose size is known only after its entries are written.
    @inlinable
    package mutating func patchI32(_ value: Int32, at offset: Int) {
        precondition(offset >= 0 && offset &+ 4 <= count, "patchI32 outside the written bytes")
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: Int32.self)
    }

    /// Writes `value` in decimal as a Thrift string (what `writeString(String(value))` writes),
    /// without building a string.
    @inlinable
    package mutating func writeDecimalString(_ value: Int64) {
        writeDecimal(magnitude: value.magnitude, negative: value < 0)
    }

    /// Writes an unsigned `value` in decimal as a Thrift string.
    @inlinable
    package mutating func writeDecimalString(_ value: UInt64) {
        writeDecimal(magnitude: value, negative: false)
    }

    /// Writes [-]m·10⁻ˢᶜᵃˡᵉ in fixed notation as a Thrift string, the way both osquery's
    /// `%.15g` and Swift's `description` print such a double: the fraction's trailing zeros
    /// dropped, `.0` for a whole number (`12.0`, `0.05`, `-3.25`). `scale` is at most 17.
    package mutating func writeFixedPointString(_ m: UInt64, scale: Int, negative: Bool) {
        precondition(scale >= 0 && scale <= 17, "writeFixedPointString: scale out of range")
        // Trailing zeros of the fraction are not printed.
        var fraction = scale
        var mantissa = m
        while fraction > 0, mantissa % 10 == 0 {
            mantissa /= 10
            fraction &-= 1
        }
        let digits = Self.decimalDigits(mantissa)
        let wholeDigits = max(digits &- fraction, 1)
        let fractionDigits = fraction > 0 ? fraction : 1  // ".0"
        let length = (negative ? 1 : 0) &+ wholeDigits &+ 1 &+ fractionDigits
        reserve(4 &+ length)
        base.storeBytes(of: Int32(truncatingIfNeeded: length).bigEndian, toByteOffset: count, as: Int32.self)
        let start = base + (count &+ 4)
        var rest = mantissa
        // The fraction's digits (with its leading zeros), the point, then the whole part's.
        if fraction == 0 {
            start.storeBytes(of: UInt8(ascii: "0"), toByteOffset: length &- 1, as: UInt8.self)
        } else {
            rest = Self.writeDigits(rest, count: fraction, endingAt: start + length)
        }
        start.storeBytes(of: UInt8(ascii: "."), toByteOffset: length &- fractionDigits &- 1, as: UInt8.self)
        _ = Self.writeDigits(rest, count: wholeDigits, endingAt: start + (length &- fractionDigits &- 1))
        if negative { start.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self) }
        count &+= 4 &+ length
    }

    /// Writes the last `count` decimal digits of `value` (leading zeros included) to the bytes
    /// before `end`, two per division, and returns what is left of `value`.
    @inlinable
    @inline(__always)
    static func writeDigits(_ value: UInt64, count: Int, endingAt end: UnsafeMutableRawPointer) -> UInt64 {
        var rest = value
        var at = end
        var left = count
        while left >= 2 {
            let pair = UInt32(truncatingIfNeeded: rest % 100)
            rest /= 100
            let tens = pair / 10
            at -= 2
            at.storeBytes(of: UInt8(truncatingIfNeeded: tens) &+ 48, as: UInt8.self)
            at.storeBytes(of: UInt8(truncatingIfNeeded: pair &- tens &* 10) &+ 48, toByteOffset: 1, as: UInt8.self)
            left &-= 2
        }
        if left == 1 {
            (at - 1).storeBytes(of: UInt8(truncatingIfNeeded: rest % 10) &+ 48, as: UInt8.self)
            rest /= 10
        }
        return rest
    }

    /// How many decimal digits `value` has (1 for 0).
    @inlinable
    static func decimalDigits(_ value: UInt64) -> Int {
        var digits = 1
        var power: UInt64 = 10
        while value >= power {
            digits &+= 1
            if digits == 20 { break }  // 10^20 does not fit: every larger value has 20
            power &*= 10
        }
        return digits
    }

    @inlinable
    mutating func writeDecimal(magnitude: UInt64, negative: Bool) {
        let digits = Self.decimalDigits(magnitude)
        let length = negative ? digits &+ 1 : digits
        reserve(4 &+ length)
        base.storeBytes(of: Int32(truncatingIfNeeded: length).bigEndian, toByteOffset: count, as: Int32.self)
        let start = base + (count &+ 4)
        if negative { start.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self) }
        _ = Self.writeDigits(magnitude, count: digits, endingAt: start + length)
        count &+= 4 &+ length
    }

    /// Writes a strict message header: version 1 | type, name, sequence id.
    package mutating func writeMessageBegin(_ header: MessageHeader) {
        writeI32(Int32(bitPattern: 0x8001_0000 | UInt32(header.type.rawValue)))
        writeString(header.name)
        writeI32(header.sequenceID)
    }

    /// Writes the old, unversioned header (name, type, sequence id). Only for
    /// testing peers that must accept it; real writers use the strict form.
    package mutating func writeOldMessageBegin(_ header: MessageHeader) {
        writeString(header.name)
        writeByte(header.type.rawValue)
        writeI32(header.sequenceID)
    }

    @inlinable
    package mutating func writeFieldBegin(_ type: TType, id: Int16) {
        store(type.rawValue)
        store(id)
    }

    @inlinable
    package mutating func writeFieldStop() { store(TType.stop.rawValue) }

    @inlinable
    package mutating func writeMapBegin(key: TType, value: TType, count: Int) {
        reserve(6)
        base.storeBytes(of: key.rawValue, toByteOffset: self.count, as: UInt8.self)
        base.storeBytes(of: value.rawValue, toByteOffset: self.count &+ 1, as: UInt8.self)
        base.storeBytes(of: Int32(truncatingIfNeeded: count).bigEndian, toByteOffset: self.count &+ 2, as: Int32.self)
        self.count &+= 6
    }

    @inlinable
    package mutating func writeListBegin(element: TType, count: Int) {
        store(element.rawValue)
        store(Int32(truncatingIfNeeded: count))
    }

    @inlinable
    package mutating func writeSetBegin(element: TType, count: Int) {
        writeListBegin(element: element, count: count)
    }

    /// Writes a `map<string,string>`.
    @inlinable
    package mutating func writeStringMap(_ map: [ThriftString: ThriftString]) {
        writeMapBegin(key: .string, value: .string, count: map.count)
        for (k, v) in map {
            writeString(k)
            writeString(v)
        }
    }
}

/// Bytes a ``ThriftWriter`` encoded, handed over whole (``ThriftWriter/finish()``): immutable,
/// shared by reference, so megabytes of rows travel from encoder to socket without a copy.
package final class ThriftBytes: @unchecked Sendable, Hashable {
    // Never written after init; freed with the object.
    let base: UnsafeMutableRawPointer
    /// The number of bytes.
    package let count: Int

    init(taking base: UnsafeMutableRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    /// A copy of `bytes`.
    package convenience init(_ bytes: [UInt8]) {
        guard let base = malloc(max(bytes.count, 1)) else { fatalError("ThriftBytes: out of memory") }
        bytes.withUnsafeBytes { raw in
            if let from = raw.baseAddress { base.copyMemory(from: from, byteCount: raw.count) }
        }
        self.init(taking: base, count: bytes.count)
    }

    deinit { free(base) }

    /// Calls `body` with the bytes, without copying them.
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Where the bytes start; valid as long as this object lives (the memory never moves).
    package var unsafeBaseAddress: UnsafeRawPointer { UnsafeRawPointer(base) }

    /// The bytes as an array (a copy).
    package var array: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: count)) }

    package static func == (a: ThriftBytes, b: ThriftBytes) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.base, b.base, a.count) == 0)
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(bytes: UnsafeRawBufferPointer(start: base, count: count))
    }
}

/// Strings encoded once (length and bytes) to be written many times: the keys of a table's
/// rows, which every row repeats.
package struct EncodedStrings: Sendable {
    /// The encoded strings back to back; string `i` is `bytes[starts[i]..<starts[i + 1]]`.
    @usableFromInline let bytes: [UInt8]
    @usableFromInline let starts: [Int]

    package init(_ strings: [ThriftString]) {
        var writer = ThriftWriter(reservingCapacity: 256)
        var starts = [0]
        for string in strings {
            writer.writeString(string)
            starts.append(writer.byteCount)
        }
        self.bytes = writer.bytes
        self.starts = starts
    }

    /// Writes string `i` as `writeString` would.
    @inlinable
    package func write(_ i: Int, to writer: inout ThriftWriter) {
        bytes.withUnsafeBytes { writer.writeRaw(bytes: UnsafeRawBufferPointer(rebasing: $0[starts[i]..<starts[i &+ 1]])) }
    }

    /// Calls `body` with a view that writes the strings without touching the arrays' reference
    /// counts: for loops over many rows, where ``write(_:to:)`` would retain and release both
    /// arrays per string.
    @inlinable
    package func withView<R>(_ body: (View) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { b in
            try starts.withUnsafeBufferPointer { s in try body(View(bytes: b, starts: s)) }
        }
    }

    /// Plain pointers to the encoded strings, valid inside ``withView(_:)``.
    package struct View {
        @usableFromInline let bytes: UnsafeRawBufferPointer
        @usableFromInline let starts: UnsafeBufferPointer<Int>

        @inlinable
        init(bytes: UnsafeRawBufferPointer, starts: UnsafeBufferPointer<Int>) {
            self.bytes = bytes
            self.starts = starts
        }

        /// Writes string `i` as `writeString` would.
        @inlinable
        package func write(_ i: Int, to writer: inout ThriftWriter) {
            writer.writeRaw(bytes: UnsafeRawBufferPointer(rebasing: bytes[starts[i]..<starts[i &+ 1]]))
        }
    }
}

/// Copies `count` bytes (the regions must not overlap). Keys and most cells are a few bytes:
/// two overlapping word copies then, where a call to memmove costs more than the copy.
@inlinable
@inline(__always)
package func copyBytes(to: UnsafeMutableRawPointer, from: UnsafeRawPointer, count n: Int) {
    if n >= 8, n <= 16 {
        let head = from.loadUnaligned(as: UInt64.self)
        let tail = from.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self)
        to.storeBytes(of: head, as: UInt64.self)
        to.storeBytes(of: tail, toByteOffset: n &- 8, as: UInt64.self)
    } else if n >= 4, n < 8 {
        let head = from.loadUnaligned(as: UInt32.self)
        let tail = from.loadUnaligned(fromByteOffset: n &- 4, as: UInt32.self)
        to.storeBytes(of: head, as: UInt32.self)
        to.storeBytes(of: tail, toByteOffset: n &- 4, as: UInt32.self)
    } else if n < 4 {
        for i in 0..<n { to.storeBytes(of: from.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self) }
    } else {
        to.copyMemory(from: from, byteCount: n)
    }
}
