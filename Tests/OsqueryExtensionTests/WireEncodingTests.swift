@testable import OsqueryExtension
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// A table's rows sent over the socket are encoded straight to bytes (`encodeWire`); the
/// result must decode to exactly the maps `encode` builds, and the budgets must fail alike.
@Suite struct WireEncodingTests {
    let layout = RowLayout(
        TableSchema(
            name: "t", columns: [.text("a"), .bigint("b"), .double("c"), .text("d")],
            columnAliases: [.init("alias_a", target: "a")]))

    func decoded(_ rows: EncodedRows) throws -> [StringMap] {
        var w = ThriftWriter()
        w.writeListBegin(element: .map, count: rows.count)
        w.writeRaw(rows.bytes)
        return try ThriftReader.read(w.bytes) { r in try r.readStringMapList() }
    }

    func compare(_ rows: [Row], used: Set<String>? = nil, limits: TableLimits = .default) throws {
        var context = QueryContext()
        context.usedColumns = used
        let maps: Result<[StringMap], PluginError> = Result { () throws(PluginError) in
            try layout.encode(rows, context: context, limits: limits, table: "t")
        }
        let wire: Result<EncodedRows, PluginError> = Result { () throws(PluginError) in
            try layout.encodeWire(rows, context: context, limits: limits, table: "t")
        }
        switch (maps, wire) {
        case (.success(let m), .success(let w)):
            let got = try decoded(w)
            #expect(got == m)
            #expect(got.map(\.keys) == m.map(\.keys))
        case (.failure(let a), .failure(let b)):
            #expect(a.message == b.message)
        default:
            Issue.record("encode \(maps) vs encodeWire \(wire)")
        }
    }

    @Test func sameRowsAsTheMapEncoding() throws {
        var rows: [Row] = []
        for i in 0..<300 {
            rows.append(["a": "row\(i)", "b": i, "c": Double(i) * 0.5, "d": i % 3 == 0 ? nil : "x" as String?])
        }
        rows.append(["d": "reordered", "c": Double.nan, "a": [UInt8]([0xff, 0x41]), "b": Int64.min])
        rows.append(["not_a_column": 1, "alias_a": "via alias", "rowid": 7])
        rows.append([:])
        rows.append(["a": String(repeating: "y", count: 100_000), "a": "twice"])
        try compare(rows)
        try compare(rows, used: ["a", "c"])
        try compare(rows, used: [])
        try compare([])
    }

    /// Big replies are encoded in two halves at once: the same bytes, the same budget errors
    /// (at the same row, whichever half passes the budget).
    @Test func bigRepliesEncodeTheSameInHalves() async throws {
        let rows: [Row] = (0..<20_000).map { i in
            ["a": "row\(i)", "b": i, "c": Double(i) * 0.25, "d": i % 7 == 0 ? nil : "x" as String?]
        }
        let context = QueryContext()
        let sequential = try layout.encodeWire(rows, context: context, limits: .default, table: "t")
        let halves = try await layout.encodeWireConcurrently(rows, context: context, limits: .default, table: "t")
        #expect(halves == sequential)
        #expect(try decoded(halves) == layout.encode(rows, context: context, limits: .default, table: "t"))
        let total = sequential.encoded.count + 2 * rows.count  // the budget counts 8 per row, not 6
        for maxBytes in [100, total / 4, total * 3 / 4, total - 1] {
            let limits = TableLimits(maxBytes: maxBytes)
            var expected = ""
            do { _ = try layout.encodeWire(rows, context: context, limits: limits, table: "t") } catch { expected = error.message }
            var got = ""
            do { _ = try await layout.encodeWireConcurrently(rows, context: context, limits: limits, table: "t") } catch {
                got = error.message
            }
            #expect(!expected.isEmpty && got == expected, "budget \(maxBytes)")
        }
        let fits = try await layout.encodeWireConcurrently(rows, context: context, limits: TableLimits(maxBytes: total), table: "t")
        #expect(fits == sequential)
    }

    @Test func budgetsFailTheSameWay() throws {
        let rows: [Row] = (0..<50).map { ["a": "value \($0)", "b": $0] }
        try compare(rows, limits: TableLimits(maxRows: 10))
        try compare(rows, limits: TableLimits(maxBytes: 500))
        try compare(rows, limits: TableLimits(maxBytes: 0))
        try compare(rows, limits: TableLimits(maxRows: 50, maxBytes: nil))
    }

    /// Doubles are written without formatting when they are short decimals: the text must be
    /// `description`'s, for those and for every other double.
    @Test func doublesWriteTheirDescription() throws {
        let values = sampleDoubles([
            1e-4, 1e-4.nextDown, 1e15.nextDown, 999999999999999, 0.1, 0.2, 0.3, 1.0 / 3, 2.5, 100, 1e14, 123456.789,
            0.000123, .leastNonzeroMagnitude, .pi, -6172.5, 4503599627370497,
        ])
        for d in values where d.isFinite {
            var w = ThriftWriter()
            let wrote = d.writeColumnText(to: &w)
            #expect(wrote)
            let text = try ThriftReader.read(w.bytes) { r in try r.readString() }
            #expect(text == ThriftString(d.description), "\(d)")
        }
    }

    /// Every value type writes exactly its text as the wire carries it (or nothing, for NULL).
    @Test func eachValueWritesItsColumnText() throws {
        let values: [any ColumnValue] = [
            "", "text", "ünïcödé and a longer string than fits inline", Substring("sub"), ThriftString(bytes: [0xff, 0x00]),
            0, 1, -1, Int.max, Int.min, Int8.min, Int8.max, Int16.min, Int32.min, Int32.max, Int64.min, Int64.max,
            UInt.max, UInt8.max, UInt16.max, UInt32.max, UInt64.max, UInt64(Int64.max) + 1, UInt64(10_000_000_000_000_000_000),
            0.0, -0.0, 0.5, 1e300, -2.5e-10, Double.nan, Double.infinity, Float(1.25), Float.nan,
            true, false, [UInt8](), [UInt8]([1, 2, 3]), Int?.none, Int?.some(42), String?.some("opt"),
        ]
        for value in values {
            var w = ThriftWriter()
            let wrote = value.writeColumnText(to: &w)
            if let text = value.wireText {
                #expect(wrote, "\(value)")
                let back = try ThriftReader.read(w.bytes) { r in try r.readString() }
                #expect(back == text, "\(value): \(back) vs \(text)")
            } else {
                #expect(!wrote && w.byteCount == 0, "\(value) is NULL but wrote \(w.byteCount) bytes")
            }
        }
    }
}
