import Testing
import ThriftCodec

/// A ping CALL with seqid 0, exactly as libthrift writes it (strict header).
let pingCallBytes: [UInt8] = [
    0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4, 0x70, 0x69, 0x6E, 0x67, 0, 0, 0, 0, 0,
]

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format2($0)) }.joined() }
func format2(_ b: UInt8) -> String { (b < 16 ? "0" : "") + String(b, radix: 16) }

/// A message exercising every type: header, then a struct with one field of each.
func everyTypeMessage(seqid: Int32 = 7) -> [UInt8] {
    var w = ThriftWriter()
    w.writeMessageBegin(MessageHeader(name: "allTypes", type: .call, sequenceID: seqid))
    w.writeValue(everyTypeStruct)
    return w.bytes
}

let everyTypeStruct: ThriftValue = .struct([
    .init(id: 1, value: .bool(true)),
    .init(id: 2, value: .byte(-128)),
    .init(id: 3, value: .i16(-32768)),
    .init(id: 4, value: .i32(Int32.min)),
    .init(id: 5, value: .i64(Int64.max)),
    .init(id: 6, value: .double(-1.5e300)),
    .init(id: 7, value: .string("ünïcødé ✓")),
    .init(id: 8, value: .string(ThriftString(bytes: [0xFF, 0xFE, 0x80, 0x61]))),
    .init(id: 9, value: .map(key: .string, value: .list, [
        (.string("k"), .list(element: .i64, [.i64(1), .i64(Int64.min)])),
        (.string(""), .list(element: .i64, [])),
    ])),
    .init(id: 10, value: .set(element: .i32, [.i32(1), .i32(2)])),
    .init(id: 11, value: .list(element: .struct, [.struct([.init(id: 1, value: .string("nested"))]), .struct([])])),
    .init(id: 12, value: .map(key: .i64, value: .string, [])),
    .init(id: -1, value: .bool(false)),
])

func decodeMessage(_ bytes: [UInt8], limits: ThriftLimits = .default) throws -> (MessageHeader, ThriftValue) {
    try ThriftReader.read(bytes, limits: limits) { r in
        let h = try r.readMessageBegin()
        let v = try r.readValue(.struct)
        return (h, v)
    }
}

@Suite struct EncodingTests {
    @Test func pingCallMatchesLibthriftBytes() {
        var w = ThriftWriter()
        w.writeMessageBegin(MessageHeader(name: "ping", type: .call, sequenceID: 0))
        w.writeFieldStop()
        #expect(w.bytes == pingCallBytes)
    }

    @Test func integersAreBigEndian() {
        var w = ThriftWriter()
        w.writeI16(0x0102)
        w.writeI32(0x0304_0506)
        w.writeI64(0x0708_090A_0B0C_0D0E)
        w.writeDouble(1.0)
        #expect(hex(w.bytes) == "0102" + "03040506" + "0708090a0b0c0d0e" + "3ff0000000000000")
    }

    @Test func containerHeaders() {
        var w = ThriftWriter()
        w.writeMapBegin(key: .string, value: .string, count: 2)
        w.writeListBegin(element: .map, count: 3)
        w.writeFieldBegin(.i64, id: 3)
        #expect(hex(w.bytes) == "0b0b00000002" + "0d00000003" + "0a0003")
    }

    @Test func everyTypeRoundTrips() throws {
        let (header, value) = try decodeMessage(everyTypeMessage())
        #expect(header == MessageHeader(name: "allTypes", type: .call, sequenceID: 7))
        #expect(value == everyTypeStruct)
    }

    @Test func oldUnversionedHeaderIsRead() throws {
        var w = ThriftWriter()
        w.writeOldMessageBegin(MessageHeader(name: "ping", type: .call, sequenceID: 42))
        w.writeFieldStop()
        #expect(hex(w.bytes) == "0000000470696e67010000002a00")
        let (header, value) = try decodeMessage(w.bytes)
        #expect(header == MessageHeader(name: "ping", type: .call, sequenceID: 42))
        #expect(value == .struct([]))
    }

    @Test func unknownFieldsAreSkipped() throws {
        var w = ThriftWriter()
        w.writeValue(.struct([.init(id: 99, value: everyTypeStruct), .init(id: 1, value: .string("kept"))]))
        let kept = try ThriftReader.read(w.bytes) { r -> ThriftString? in
            var found: ThriftString?
            while let f = try r.readFieldBegin() {
                if f.id == 1, f.type == .string { found = try r.readString() } else { try r.skip(f.type) }
            }
            #expect(r.remaining == 0)
            return found
        }
        #expect(kept == "kept")
    }

    @Test func applicationExceptionRoundTrips() throws {
        var w = ThriftWriter()
        TApplicationException(.unknownMethod, "Invalid method name: 'foo'").write(to: &w)
        #expect(hex(w.bytes) == "0b0001" + "0000001a" + hex(Array("Invalid method name: 'foo'".utf8)) + "080002" + "00000001" + "00")
        let e = try ThriftReader.read(w.bytes) { try TApplicationException(from: &$0) }
        #expect(e.kind == .unknownMethod)
        #expect(e.message == "Invalid method name: 'foo'")
    }
}

@Suite struct ThriftStringTests {
    @Test func invalidUTF8IsCarriedByteForByte() throws {
        let raw: [UInt8] = [0xFF, 0xFE, 0x80, 0x61, 0xC3, 0x28]
        let s = ThriftString(bytes: raw)
        #expect(!s.isValidUTF8)
        #expect(s.bytes == raw)
        #expect(s.byteCount == 6)
        var w = ThriftWriter()
        w.writeString(s)
        let back = try ThriftReader.read(w.bytes) { try $0.readString() }
        #expect(back.bytes == raw)
        #expect(back == s)
    }

    @Test func decodingKeepsEveryInvalidSequenceAsBytes() throws {
        let invalid: [[UInt8]] = [
            [0xF0, 0x9F, 0x98],  // truncated 4-byte sequence: repair would give 3 bytes, the same count
            [0xED, 0xA0, 0x80],  // a UTF-16 surrogate encoded in UTF-8
            [0xC0, 0xAF],  // overlong "/"
            [0x61, 0x80],  // stray continuation byte
            [0xEF, 0xBF, 0xBD, 0xFF],  // a real U+FFFD followed by an invalid byte
        ]
        for raw in invalid {
            let s = raw.withUnsafeBytes { ThriftString(decoding: $0) }
            #expect(!s.isValidUTF8, "\(raw)")
            #expect(s.bytes == raw)
        }
        for valid in ["ünïcødé-✓", "😀", "\u{FFFD}", ""] {
            let s = Array(valid.utf8).withUnsafeBytes { ThriftString(decoding: $0) }
            #expect(s.string == valid)
        }
    }

    @Test func validUTF8StaysAString() {
        let s = ThriftString(bytes: Array("héllo".utf8))
        #expect(s.string == "héllo")
        #expect(s == "héllo")
    }

    @Test func equalityIsByBytesNotUnicodeEquivalence() {
        let composed = ThriftString("\u{E9}")
        let decomposed = ThriftString("e\u{301}")
        #expect("\u{E9}" == "e\u{301}")  // Swift's String says equal...
        #expect(composed != decomposed)  // ...the wire does not.
        var set = Set<ThriftString>()
        set.insert(composed)
        set.insert(decomposed)
        #expect(set.count == 2)
    }

    @Test func orderIsUnsignedBytewise() {
        let values: [ThriftString] = [ThriftString(bytes: [0xFF]), "b", "a", "", "ab", ThriftString(bytes: [0x80, 0x00])]
        #expect(values.sorted().map(\.bytes) == [[], [0x61], [0x61, 0x62], [0x62], [0x80, 0x00], [0xFF]])
    }
}

/// The writer's helpers for encoders that write numbers in place or fill in a count afterwards.
@Suite struct WriterHelperTests {
    @Test func decimalStringsMatchSwiftsText() throws {
        var signed: [Int64] = [0, 1, -1, 9, 10, -10, 99, 100, Int64.max, Int64.min, Int64.max - 1, Int64.min + 1]
        var p: Int64 = 1
        for _ in 0..<18 {
            p *= 10
            signed += [p, p - 1, -p, -(p - 1)]
        }
        for v in signed {
            var w = ThriftWriter()
            w.writeDecimalString(v)
            #expect(try ThriftReader.read(w.bytes) { r in try r.readString() } == ThriftString(String(v)))
        }
        let unsigned: [UInt64] = [0, 7, UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max, 10_000_000_000_000_000_000,
                                  10_000_000_000_000_000_001, 9_999_999_999_999_999_999]
        for v in unsigned {
            var w = ThriftWriter()
            w.writeDecimalString(v)
            #expect(try ThriftReader.read(w.bytes) { r in try r.readString() } == ThriftString(String(v)))
        }
    }

    @Test func patchedCountAndTruncation() throws {
        var w = ThriftWriter(reservingCapacity: 64)
        w.writeMapBegin(key: .string, value: .string, count: 0)
        for i in 0..<100 {
            let mark = w.byteCount
            w.writeString("key\(i)")
            w.writeString(String(repeating: "v", count: i))
            if i % 2 == 1 { w.truncate(to: mark) }  // dropped entries, as a NULL value is
        }
        w.patchI32(50, at: 2)
        let map = try ThriftReader.read(w.bytes) { r in try r.readStringMap() }
        #expect(map.count == 50)
        #expect(map["key98"] == ThriftString(String(repeating: "v", count: 98)))
        #expect(map["key99"] == nil)
    }
}
