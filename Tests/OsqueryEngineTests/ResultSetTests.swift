import OsqueryEngine
import Testing

/// ResultSet keeps cells as bytes in chunks and makes values when asked: what a caller reads
/// is what SQLite gave, across chunk boundaries and statements.
@Suite struct ResultSetTests {
    @Test func aResultOfManyChunksReadsBackCellByCell() throws {
        let db = try makeDatabase([])
        // Three columns of varying text, NULLs and blobs: 30 000 rows span several chunks.
        let rows = 30_000
        let r = try db.execute("""
            WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < \(rows - 1))
            SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE printf('t%d-%.*c', i, i % 40, 'x') END AS t,
                   CASE WHEN i % 5 = 0 THEN x'00ff' ELSE i * 0.5 END AS b FROM n
            """)
        #expect(r.rowCount == rows)
        #expect(r.columns == ["i", "t", "b"])
        for i in [0, 1, 5, 7, 5460, 5461, 5462, 16_383, 16_384, 21_845, rows - 1] {
            #expect(r[i, 0] == .integer(Int64(i)))
            let text: SQLValue = i % 7 == 0 ? .null : .text("t\(i)-" + String(repeating: "x", count: i % 40))
            #expect(r[i, "t"] == text)
            #expect(r[i, 2] == (i % 5 == 0 ? .blob([0, 0xff]) : .double(Double(i) * 0.5)))
        }
        #expect(r.rows.count == rows)
        #expect(r.values.count == rows * 3)
        #expect(ResultSet(columns: r.columns, declaredTypes: r.declaredTypes, values: r.values) == r)
    }

    @Test func statementsWithTheSameColumnsAreConcatenated() throws {
        let db = try makeDatabase([])
        let r = try db.execute("SELECT 'a' AS x, 1 AS y; SELECT 2 AS z; SELECT 'bb' AS x, NULL AS y")
        #expect(r.columns == ["x", "y"])
        #expect(r.rows == [[.text("a"), .integer(1)], [.text("bb"), .null]])
    }

    @Test func textThatIsNotUTF8IsItsBytesAndPrintsRepaired() throws {
        let db = try makeDatabase([])
        let r = try db.execute("SELECT CAST(x'61ff62' AS TEXT) AS t, '' AS e")
        #expect(r[0, 0] == .blob([0x61, 0xff, 0x62]))
        #expect(r[0, 1] == .text(""))
        #expect(ResultFormatter.render(r, OutputSettings(mode: .json)) == "[\n  {\"e\":\"\",\"t\":\"a\u{FFFD}b\"}\n]\n")
        #expect(ResultFormatter.render(r, OutputSettings(mode: .list, headers: false)) == "a\u{FFFD}b|\n")
    }

    @Test func jsonEscapesCellBytesAsTheJSONWriterDoes() throws {
        let db = try makeDatabase([])
        let r = try db.execute("SELECT char(1) || 'a' || char(9) || '\"' || char(10) || '\\' || char(31) || 'é' AS \"k\"\"\", -5 AS n")
        #expect(ResultFormatter.render(r, OutputSettings(mode: .json)) == "[\n  {\"k\\\"\":\"\\u0001a\\t\\\"\\n\\\\\\u001Fé\",\"n\":\"-5\"}\n]\n")
        #expect(ResultFormatter.render(r, OutputSettings(mode: .jsonPretty)) == "[\n  {\n    \"k\\\"\": \"\\u0001a\\t\\\"\\n\\\\\\u001Fé\",\n    \"n\": \"-5\"\n  }\n]\n")
    }

    @Test func valuesSetAndCompared() {
        var r = ResultSet(columns: ["a", "b"], values: [.text("x"), .integer(Int64.min), .double(1.5), .blob([])])
        #expect(r.rowCount == 2)
        #expect(r[0, 1] == .integer(Int64.min))
        #expect(ResultFormatter.render(r, OutputSettings(mode: .list, headers: false)) == "x|-9223372036854775808\n1.5|\n")
        #expect(ResultFormatter.render(r, OutputSettings(mode: .pretty)).contains("| x   | -9223372036854775808 |"))
        r.values = [.null, .text("y")]
        #expect(r.rows == [[.null, .text("y")]])
        #expect(r != ResultSet(columns: ["a", "b"], values: [.null, .text("z")]))
        #expect(r == ResultSet(columns: ["a", "b"], values: [.null, .text("y")]))
    }
}
