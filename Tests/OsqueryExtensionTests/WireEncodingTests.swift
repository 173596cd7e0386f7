@testable import OsqueryExtension
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

    @Test func budgetsFailTheSameWay() throws {
        let rows: [Row] = (0..<50).map { ["a": "value \($0)", "b": $0] }
        try compare(rows, limits: TableLimits(maxRows: 10))
        try compare(rows, limits: TableLimits(maxBytes: 500))
        try compare(rows, limits: TableLimits(maxBytes: 0))
        try compare(rows, limits: TableLimits(maxRows: 50, maxBytes: nil))
    }
}
