import OsqueryProtocol
import Testing
import ThriftCodec

/// `StringMapRowsReader` decodes a big list in two halves at once: it must give exactly what
/// `readStringMapList` gives, leave the reader after the list, and reject what it rejects.
@Suite struct RowsReaderTests {
    func list(_ count: Int) -> [StringMap] {
        (0..<count).map { i -> StringMap in
            switch i % 5 {
            case 0: return ["a": ThriftString("row\(i)"), "b": ThriftString(String(i))]
            case 1: return [:]
            case 2: return ["b": "reordered", "a": ThriftString(bytes: [0xFF, UInt8(i & 0x7F)])]
            case 3: return ["ünï": ThriftString(String(repeating: "v", count: i % 40))]
            default: return ["a": "", "c": "third"]
            }
        }
    }

    func encode(_ rows: [StringMap]) -> [UInt8] {
        var w = ThriftWriter()
        w.writeStringMapList(rows)
        w.writeI32(0x1234_5678)  // what follows the list must still be read
        return w.bytes
    }

    @Test func sameRowsWholeOrInHalves() throws {
        for count in [0, 1, 100, 16_383, 16_384, 20_001] {
            let rows = list(count)
            let bytes = encode(rows)
            let (got, after) = try ThriftReader.read(bytes) { r -> ([StringMap], Int32) in
                var reader = StringMapRowsReader()
                try reader.readRows(from: &r)
                return (reader.rows, try r.readI32())
            }
            #expect(got == rows, "\(count) rows")
            #expect(after == 0x1234_5678)
        }
    }

    @Test func aBadRowInEitherHalfIsAnError() throws {
        for bad in [3, 15_000] {
            var rows = list(20_000)
            rows[bad] = ["x": "y"]
            var bytes = encode(rows)
            // Make that row's map a map<string,i32>: find its "x" key and retype the map header.
            var w = ThriftWriter()
            w.writeStringMapList(Array(rows[..<bad]))
            let at = w.byteCount  // the bad row's header starts here (same list header size)
            bytes[at + 1] = TType.i32.rawValue
            #expect(throws: ThriftError.self) {
                try ThriftReader.read(bytes) { r in
                    var reader = StringMapRowsReader()
                    try reader.readRows(from: &r)
                }
            }
            let truncated = Array(bytes[..<(bytes.count - 2_000)])
            #expect(throws: ThriftError.self) {
                try ThriftReader.read(truncated) { r in
                    var reader = StringMapRowsReader()
                    try reader.readRows(from: &r)
                }
            }
        }
    }
}
