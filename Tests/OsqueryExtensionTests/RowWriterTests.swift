@_spi(FastPath) @testable import OsqueryExtension
import OsqueryProtocol
import OsqueryExtensionTesting
import Synchronization
import Testing
import ThriftCodec

/// Tables whose generate writes rows into a `RowWriter`: the same rows, columns, NULLs, budgets
/// and errors as a table returning `[Row]`, on both of a table's paths (maps for `handle`, wire
/// bytes for the extension's server).
@Suite struct RowWriterTests {
    static let columns: [Column] = [.text("a"), .bigint("b"), .double("c"), .text("d")]

    /// The same table twice: positional rows into a writer, and the `[Row]` it stands for.
    static func twins(_ count: Int, limits: TableLimits = .default) -> (writer: Table, rows: Table) {
        let writer = Table("t", columns: columns, limits: limits) { _, rows in
            for i in 0..<count {
                switch i % 4 {
                case 0: rows.add("row\(i)", i, Double(i) * 0.5, "x")
                case 1: rows.add("row\(i)", Int64(-i), Double.nan, String?.none)  // NaN and nil are NULL
                case 2: rows.add([UInt8]([0xff, 0x41]), UInt8(7))  // fewer values: the rest NULL
                default: rows.add(["d": "by name", "b": i, "not_a_column": 1])
                }
            }
        }
        let rows = Table("t", columns: columns, limits: limits) { _ in
            (0..<count).map { i -> Row in
                switch i % 4 {
                case 0: ["a": "row\(i)", "b": i, "c": Double(i) * 0.5, "d": "x"]
                case 1: ["a": "row\(i)", "b": Int64(-i), "c": Double.nan, "d": String?.none]
                case 2: ["a": [UInt8]([0xff, 0x41]), "b": UInt8(7)]
                default: ["d": "by name", "b": i, "not_a_column": 1]
                }
            }
        }
        return (writer, rows)
    }

    static let contexts: [String?] = [
        nil, #"{"constraints":[],"colsUsed":["a","c"],"colsUsedBitset":5}"#, #"{"constraints":[],"colsUsed":[]}"#,
    ]

    @Test func sameRowsAsAGenerateReturningRows() async throws {
        let (writer, listed) = Self.twins(300)
        for ctx in Self.contexts {
            let a = try await writer.wireResponse(generate(ctx))
            let b = try await listed.wireResponse(generate(ctx))
            #expect(a.status.code == 0 && a.response.count == 300)
            #expect(a == b, "context \(ctx ?? "none")")
            #expect(a.response.map { $0.entries.map(\.key) } == b.response.map { $0.entries.map(\.key) })
            // The server's path: the same bytes the [Row] encoder writes.
            let wa = try await writer.reply(to: generate(ctx)).response
            let wb = try await listed.reply(to: generate(ctx)).response
            #expect(wa.encodedRows != nil && wa.encodedRows == wb.encodedRows)
        }
        let sample = try await writer.wireResponse(generate(nil))
        #expect(rows(sample)[1] == ["a": "row1", "b": "-1"])
        #expect(sample.response[2].entries.map(\.key) == ["a", "b"])
    }

    /// Past ``RowWriter/spillSize`` bytes the rows move to the reply's buffer as they are written:
    /// the same bytes, and the byte budget still counts every row.
    @Test func bigRepliesMoveToTheBufferUnchanged() async throws {
        let (writer, listed) = Self.twins(12_000)
        let a = try await writer.reply(to: generate(nil)).response
        let b = try await listed.reply(to: generate(nil)).response
        let size = try #require(a.encodedRows).byteCount
        #expect(size > 2 * RowWriter.spillSize, "the test must spill more than once")
        #expect(a.encodedRows == b.encodedRows)
        #expect(try await writer.wireResponse(generate(nil)) == listed.wireResponse(generate(nil)))
        for maxBytes in [RowWriter.spillSize - 100, RowWriter.spillSize + 5_000, size + 2 * 12_000 - 1, size + 2 * 12_000] {
            let limits = TableLimits(maxBytes: maxBytes)
            let x = try await Table(schema: writer.schema, limits: limits, generate: Self.generator(writer)).reply(to: generate(nil)).response
            let y = try await Table(schema: listed.schema, limits: limits, generate: Self.rowGenerator(listed)).reply(to: generate(nil)).response
            #expect(x.status == y.status && x.encodedRows == y.encodedRows, "budget \(maxBytes): \(x.status) vs \(y.status)")
        }
    }

    @Test func budgetsStopTheRowsWithTheSameErrors() async throws {
        let (writer, rows) = Self.twins(50)
        // Every byte budget from nothing to more than the reply: the same error at the same row.
        for limits in stride(from: 0, through: 2_500, by: 7).map({ TableLimits(maxBytes: $0) }) + [TableLimits(maxBytes: 1_000_000)] {
            let a = try await Table(schema: writer.schema, limits: limits, generate: Self.generator(writer)).wireResponse(generate(nil))
            let b = try await Table(schema: rows.schema, limits: limits, generate: Self.rowGenerator(rows)).wireResponse(generate(nil))
            #expect(a == b, "\(limits)")
        }
        // Past the row budget add() refuses, so a loop can stop; the reply is the budget's error.
        let calls = Mutex(0)
        let limited = Table("big", columns: [.text("a")], limits: TableLimits(maxRows: 10)) { _, rows in
            for i in 0..<1_000 {
                calls.withLock { $0 += 1 }
                guard rows.add("\(i)") else {
                    let (full, count) = (rows.isFull, rows.count)
                    #expect(full && count == 10)
                    break
                }
            }
        }
        let r = try await limited.wireResponse(generate(nil))
        #expect(calls.withLock { $0 } == 11)
        #expect(r.status.code == 1)
        #expect(r.status.message == "table big: result exceeds budget (more than 10 rows): select fewer columns or add a WHERE")
        let wire = try await limited.reply(to: generate(nil)).response
        #expect(try wire.status.code == 1 && wire.encodedRows == nil && wire.value.response.isEmpty)
        // Exactly at the budget is fine.
        let exact = Table("exact", columns: [.text("a")], limits: TableLimits(maxRows: 10)) { _, rows in
            for i in 0..<10 {
                let taken = rows.add("\(i)")
                #expect(taken)
            }
        }
        #expect(try await exact.wireResponse(generate(nil)).response.count == 10)
    }

    /// The generate of `table` (a writer table) run again under other limits.
    static func generator(_ table: Table) -> @Sendable (QueryContext, inout RowWriter) async throws -> Void {
        guard case .write(let f) = table.source else { fatalError("not a writer table") }
        return f
    }

    static func rowGenerator(_ table: Table) -> @Sendable (QueryContext) async throws -> [Row] {
        guard case .generate(let f) = table.source else { fatalError("not a [Row] table") }
        return f
    }

    @Test func moreValuesThanColumnsIsAnError() async throws {
        let t = Table("two", columns: [.text("a"), .integer("b")]) { _, rows in
            rows.add("ok", 1)
            let taken = rows.add("x", 2, "one too many")
            let full = rows.isFull
            #expect(!taken && full)
            let after = rows.add("after", 3)
            #expect(!after)
        }
        let r = try await t.wireResponse(generate(nil))
        #expect(r.status.code == 1)
        #expect(r.status.message == "table two: row 1 has 3 values but the table has 2 columns")
    }

    /// Past 16 values `add` takes a parameter pack: the same row as the spelled-out ones give.
    @Test func wideRowsThroughTheParameterPack() async throws {
        let columns = (0..<18).map { Column.text("c\($0)") }
        let wide = Table("wide", columns: columns) { _, rows in
            rows.add("0", 1, 2.5, "3", Int?.none, "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", [UInt8]([0x41]))
            rows.add("a", "b")  // the spelled-out form, for comparison
            let extra = rows.add("0", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
            #expect(!extra)
        }
        let r = try await wide.wireResponse(generate(nil))
        #expect(r.status.message == "table wide: row 2 has 19 values but the table has 18 columns")
        let ok = Table("wide", columns: columns) { _, rows in
            rows.add("0", 1, 2.5, "3", Int?.none, "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", [UInt8]([0x41]))
        }
        let row = try await ok.wireResponse(generate(#"{"constraints":[],"colsUsed":["c0","c2","c4","c17"]}"#))
        #expect(rows(row) == [["c0": "0", "c2": "2.5", "c17": "A"]])
        #expect(row.response.first?.entries.map(\.key) == ["c0", "c2", "c17"])
    }

    @Test func deadlinesAndThrownErrors() async throws {
        let slow = Table("slow", columns: [.text("a")], limits: TableLimits(deadline: .milliseconds(100))) { _, rows in
            rows.add("before")
            try await Task.sleep(for: .seconds(30))
        }
        let r = try await slow.wireResponse(generate(nil))
        #expect(r.status.code == 1 && r.status.message.lossyString.contains("exceeded its deadline"))
        let failing = Table("err", columns: [.text("path", .required)]) { ctx, rows in
            rows.add("written before the error")
            guard !ctx["path"].equals.isEmpty else { throw PluginError("err requires a path = constraint") }
        }
        let e = try await failing.reply(to: generate(nil)).response
        #expect(e.status.code == 1 && e.status.message == "err requires a path = constraint" && e.encodedRows == nil)
    }

    /// Real SQL through the testing kit's bridge (the core's engine): constraints reach the
    /// generate and only used columns come back.
    @Test func sqlThroughTheBridge() async throws {
        let t = Table("numbers", columns: [.bigint("n"), .text("square"), .double("half")]) { ctx, rows in
            let only = ctx["n"].equals.compactMap { Int($0) }
            for n in only.isEmpty ? Array(0..<100) : only {
                rows.add(n, ctx.isUsed("square") ? String(n * n) : nil, Double(n) / 2)
            }
        }
        let tester = try TableTester(t)
        #expect(try await tester.query("select square, half from numbers where n = 12") == [["square": "144", "half": "6.0"]])
        #expect(tester.lastContext?.usedColumns == ["n", "square", "half"])
        #expect(try await tester.query("select count(*) as c, sum(n) as s from numbers") == [["c": "100", "s": "4950"]])
        #expect(tester.lastContext?.usedColumns == ["n"])
    }
}

extension ServerResponse {
    /// The rows when they went out encoded.
    var encodedRows: EncodedRows? {
        if case .encoded(_, let rows, _) = self { rows } else { nil }
    }
}
