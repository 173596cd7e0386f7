import OsqueryEngine
@testable import OsqueryManager
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// The core converts an extension's rows while decoding them (`RowConverter`); it must give
/// the same values and rowids as converting decoded `StringMap`s (`ExtensionTable.rows`).
@Suite struct RowConverterTests {
    let schema = TableSchema(
        name: "t",
        columns: [
            TableColumn("a", .text), TableColumn("b", .bigint), TableColumn("c", .double), TableColumn("d", .integer),
            TableColumn("e", .blob), TableColumn("f", .unsignedBigint),
        ])

    func both(_ rows: [StringMap]) throws -> (fast: Result<TableRows, EngineError>, slow: Result<TableRows, EngineError>) {
        let keys = schema.columns.map { ThriftString($0.name) }
        var w = ThriftWriter()
        w.writeStringMapList(rows)
        let bytes = w.bytes
        var converter = RowConverter(schema: schema, columnKeys: keys)
        // The converted rows point into the bytes read: keep them (pinned) and drop the array.
        let pinned = ThriftBytes(bytes)
        try read(pinned) { r in try converter.readRows(from: &r) }
        let fast = Result { () throws(EngineError) in try converter.finish(owner: pinned, base: pinned.unsafeBaseAddress) }
        let slow: Result<TableRows, EngineError>
        do {
            slow = .success(try ExtensionTable.rows(from: rows, schema: schema, columnKeys: keys))
        } catch let error as EngineError {
            slow = .failure(error)
        }
        return (fast, slow)
    }

    /// Reads `bytes` in place, as the core reads a reply it keeps.
    func read(_ bytes: ThriftBytes, _ body: (inout ThriftReader) throws -> Void) throws {
        try bytes.withUnsafeBytes { raw in
            var r = ThriftReader(raw)
            try body(&r)
        }
    }

    func expectSame(_ rows: [StringMap], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (fast, slow) = try both(rows)
        switch (fast, slow) {
        case (.success(let f), .success(let s)):
            // Compared value by value (NaN equal to itself) without printing huge rows.
            let same = f.values.count == s.values.count && zip(f.values, s.values).allSatisfy { a, b in
                if case .double(let x) = a, case .double(let y) = b { return x.bitPattern == y.bitPattern }
                return a == b
            }
            #expect(same, sourceLocation: sourceLocation)
            #expect(f.rowids == s.rowids, sourceLocation: sourceLocation)
            #expect(f.count == rows.count, sourceLocation: sourceLocation)
        case (.failure(let f), .failure(let s)):
            #expect(f.message == s.message, sourceLocation: sourceLocation)
            #expect(f.code == s.code, sourceLocation: sourceLocation)
        default:
            Issue.record("fast \(fast) vs slow \(slow)", sourceLocation: sourceLocation)
        }
    }

    @Test func ordinaryRowsInColumnOrder() throws {
        var rows: [StringMap] = []
        for i in 0..<50 {
            rows.append(["a": ThriftString("row\(i)"), "b": ThriftString(String(i)), "c": ThriftString(String(Double(i) * 0.5)),
                         "d": ThriftString(String(i * 3)), "e": "blob", "f": "18"])
        }
        try expectSame(rows)
        let (fast, _) = try both(rows)
        #expect(try fast.get()[7, 0] == .text("row7"))
        #expect(try fast.get()[7, 2] == .double(3.5))
    }

    @Test func missingExtraReorderedDuplicateAndEmptyKeys() throws {
        let invalid = ThriftString(bytes: [0x61, 0xff, 0x62])
        let huge = ThriftString(String(repeating: "x", count: 1 << 20))
        try expectSame([
            ["b": "1"],
            [:],
            ["zz": "extra", "a": "", "b": "", "c": "", "d": "", "e": "", "f": ""],
            ["f": "0x10", "e": invalid, "d": "077", "c": " 2.5 ", "b": "-9223372036854775809", "a": invalid],
            StringMap(),
            ["a": huge, "b": "12abc", "c": "1e400", "d": "4294967297", "": "empty key"],
            ["a": "first", "b": "1", "c": "nan", "d": "x", "e": "\u{0}", "f": "-1"],
            ["a": "again", "c": "inf"],
        ])
        var duplicated = StringMap()
        duplicated.append("a", "one")
        duplicated.append("b", "1")
        duplicated.append("a", "two")
        try expectSame([duplicated, duplicated, ["a": "x"], duplicated])
        // The last of a repeated key, in every row (osquery's decoded map keeps the last).
        let (fast, _) = try both([duplicated, ["a": "x"], duplicated])
        #expect(try fast.get()[0, 0] == .text("two") && fast.get()[2, 0] == .text("two"))
    }

    @Test func rowidsAndBadRowids() throws {
        try expectSame([["a": "x"], ["a": "y", "rowid": "7"], ["a": "z"], ["rowid": "-3"]])
        try expectSame([["a": "x", "rowid": "12"], ["a": "y", "rowid": "13"]])
        try expectSame([["a": "x"], ["a": "y", "rowid": "seven"]])
        try expectSame([["rowid": ThriftString(bytes: [0x31, 0xff])]])
        try expectSame([["rowid": " 1"], ["rowid": "1"]])
    }

    /// Long lists with keys in and out of the usual order, rowids starting anywhere, bad ones.
    @Test func longListsMatchTheReferencePath() async throws {
        try await onOwnThread {
            let n = 17_385  // past RowConverter.backgroundFrom
            func rows(rowidAt: (Int) -> ThriftString?) -> [StringMap] {
                (0..<n).map { i -> StringMap in
                    var row: StringMap = i % 7 == 3
                        ? ["b": ThriftString(String(i)), "a": ThriftString("r\(i)"), "zz": "extra"]
                        : ["a": ThriftString("r\(i)"), "b": ThriftString(String(i)), "c": "0.5", "d": "x"]
                    if let id = rowidAt(i) { row.append("rowid", id) }
                    return row
                }
            }
            let middle = n / 2
            try expectSame(rows { _ in nil })
            try expectSame(rows { $0 == middle + 5 || $0 == n - 1 ? ThriftString(String($0 * 10)) : nil })
            try expectSame(rows { $0 == 17 ? "170" : nil })
            try expectSame(rows { $0 == 17 || $0 == middle + 100 ? ThriftString(String($0 * 10)) : nil })
            try expectSame(rows { $0 == middle ? "1" : nil })
            try expectSame(rows { $0 % 2 == 0 ? ThriftString(String(-$0)) : nil })
            // The first bad rowid in row order is the error.
            try expectSame(rows { $0 == 40 ? "bad-first" : $0 == middle + 40 ? "bad-second" : nil })
            try expectSame(rows { $0 == middle + 40 ? "bad-second" : nil })
            let (fast, _) = try both(rows { $0 == 40 ? "bad-first" : $0 == middle + 40 ? "bad-second" : nil })
            #expect(throws: EngineError.self) { try fast.get() }
            // A list shorter than its count, and a bad map late in it, are protocol errors.
            for bad in [n - 1, middle + 3] {
                var w = ThriftWriter()
                w.writeListBegin(element: .map, count: n)
                for i in 0..<bad { w.writeStringMap(["a": ThriftString("r\(i)")]) }
                if bad != n - 1 { w.writeMapBegin(key: .string, value: .i32, count: 1) }
                let bytes = w.bytes
                var converter = RowConverter(schema: schema, columnKeys: schema.columns.map { ThriftString($0.name) })
                #expect(throws: ThriftError.self) { try ThriftReader.read(bytes) { r in try converter.readRows(from: &r) } }
                // A list long enough to be converted in the background is checked whole first.
                var reader = ExtensionRowsReader(converter: converter)
                #expect(throws: ThriftError.self) { try ThriftReader.read(bytes) { r in try reader.readRows(from: &r) } }
            }
        }
    }

    @Test func aRepeatedRowsFieldKeepsTheLastList() throws {
        var w = ThriftWriter()
        w.writeFieldBegin(.struct, id: 0)
        w.writeFieldBegin(.list, id: 2)
        w.writeStringMapList([["a": "old"], ["a": "older"]])
        w.writeFieldBegin(.struct, id: 1)
        ExtensionStatus(code: 0, message: "OK").write(to: &w)
        w.writeFieldBegin(.list, id: 2)
        w.writeStringMapList([["a": "new"]])
        w.writeFieldStop()
        w.writeFieldStop()
        let body = w.bytes
        var converter = RowConverter(schema: schema, columnKeys: schema.columns.map { ThriftString($0.name) })
        let pinned = ThriftBytes(body)
        try read(pinned) { r in
            try r.enter()
            while let f = try r.readFieldBegin() {
                #expect(f.id == 0)
                try r.enter()
                while let g = try r.readFieldBegin() {
                    if g.id == 2 {
                        converter.discardRows()
                        try converter.readRows(from: &r)
                    } else {
                        try r.skip(g.type)
                    }
                }
                r.leave()
            }
            r.leave()
        }
        let rows = try converter.finish(owner: pinned, base: pinned.unsafeBaseAddress)
        #expect(rows.count == 1)
        #expect(rows[0, 0] == .text("new"))
    }

    @Test func malformedRowsAreProtocolErrors() throws {
        var w = ThriftWriter()
        w.writeListBegin(element: .map, count: 1)
        w.writeMapBegin(key: .string, value: .i32, count: 1)
        w.writeString("a")
        w.writeI32(5)
        let bytes = w.bytes
        var converter = RowConverter(schema: schema, columnKeys: schema.columns.map { ThriftString($0.name) })
        #expect(throws: ThriftError.self) { try ThriftReader.read(bytes) { r in try converter.readRows(from: &r) } }
        var truncated = ThriftWriter()
        truncated.writeListBegin(element: .map, count: 3)
        truncated.writeStringMap(["a": "x"])
        let short = truncated.bytes
        #expect(throws: ThriftError.self) { try ThriftReader.read(short) { r in try converter.readRows(from: &r) } }
    }
}

/// The core's `query` encodes rows straight from SQLite (`QueryRowsEncoder`); the rows must be
/// those of the reference path (typed result sets turned into maps with `wireString`).
@Suite struct QueryRowsEncoderTests {
    /// Doubles go out as osquery prints them, through the fixed-point writer where it applies.
    @Test func doublesAreOsquerysText() throws {
        let values = sampleDoubles([1e-4, 1e-4.nextDown, 1e15.nextDown, 1e15, 0.1, 1.0 / 3, 2.5, 100, -0.0, 0, 1e300, -6172.5])
        for d in values where d.isFinite {
            var writer = ThriftWriter()
            QueryRowsEncoder.writeDouble(d, to: &writer)
            let bytes = writer.bytes
            let text = try ThriftReader.read(bytes) { r in try r.readString() }
            #expect(text == ThriftString(SQLValue.osqueryDouble(d)), "\(d)")
        }
    }

    func reference(_ db: Database, _ sql: String, nullValue: ThriftString) throws -> [StringMap] {
        var rows: [StringMap] = []
        for result in try db.executeStatements(sql) {
            let keys = result.columns.map { ThriftString($0) }
            for r in 0..<result.rowCount {
                var row = StringMap()
                for (c, key) in keys.enumerated() { row[key] = ManagerService.wireString(result[r, c]) ?? nullValue }
                rows.append(row)
            }
        }
        return rows
    }

    func encoded(_ db: Database, _ sql: String, nullValue: ThriftString) throws -> [StringMap] {
        var encoder = QueryRowsEncoder(nullValue: nullValue)
        try db.execute(sql, columns: { encoder.begin(columns: $0) }, row: { encoder.add($0) })
        let rows = encoder.finish()
        var w = ThriftWriter()
        w.writeListBegin(element: .map, count: rows.count)
        w.writeRaw(rows.bytes)
        return try ThriftReader.read(w.bytes) { r in try r.readStringMapList() }
    }

    @Test(arguments: [
        "SELECT 1 AS a, 2 AS a, NULL AS n, 1.5 AS d, 1e20 AS e, 0.1 + 0.2 AS f, -0.0 AS z, 5e-324 AS sub",
        "SELECT x'ff00' AS b, CAST(x'ff41' AS TEXT) AS t, '' AS s, -9223372036854775808 AS m, 9223372036854775807 AS x",
        "SELECT 'one' AS v; SELECT 'two' AS w, 3 AS w; SELECT 0 WHERE 0; SELECT 4 AS v",
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 500) SELECT i, i * 0.25 AS q, printf('%08d', i) AS s, CASE WHEN i % 7 = 0 THEN NULL ELSE i END AS n FROM c",
        "SELECT 1 WHERE 0",
        // Past one batch (``CellBatch/rowLimit``, ``CellBatch/textLimit``): the encoder thread's rows.
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 9000) SELECT i, i * 0.25 AS q, printf('%08d', i) AS s, CASE WHEN i % 7 = 0 THEN NULL ELSE i END AS n, x'00ff' || i AS b, i AS i FROM c",
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5000) SELECT i FROM c; SELECT 'two' AS w, 3 AS w; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3000) SELECT i * 1.5 AS d, 'x' AS t FROM c",
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1200) SELECT i, printf('%.*c', 3000, 'x') AS big FROM c",
    ])
    func sameRowsAsTheReferencePath(_ sql: String) throws {
        let flags = Flags()
        let db = try Database(registry: PluginRegistry(), flags: flags)
        for null in ["", "NULL"] {
            let expected = try reference(db, sql, nullValue: ThriftString(null))
            let got = try encoded(db, sql, nullValue: ThriftString(null))
            // Key order too (a map compares equal in any order); only the first difference is shown.
            let differs = { (i: Int) in got[i] != expected[i] || got[i].keys != expected[i].keys }
            let first = (0..<min(got.count, expected.count)).first(where: differs)
            #expect(got.count == expected.count && first == nil,
                    "\(got.count) rows, expected \(expected.count); first difference at \(first.map { "row \($0): \(got[$0]) vs \(expected[$0])" } ?? "-")")
        }
    }

    @Test func aFailingStatementThrows() throws {
        let db = try Database(registry: PluginRegistry(), flags: Flags())
        var encoder = QueryRowsEncoder(nullValue: "")
        #expect(throws: EngineError.self) {
            try db.execute("SELECT 1; SELECT * FROM no_such_table", columns: { encoder.begin(columns: $0) }, row: { encoder.add($0) })
        }
    }
}
