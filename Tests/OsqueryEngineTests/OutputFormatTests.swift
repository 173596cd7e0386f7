import OsqueryEngine
import Testing

@Suite struct OutputFormatTests {
    /// Two rows, a NULL, a double, a value needing CSV quotes, non-ASCII text.
    func sample() throws -> ResultSet {
        let db = try makeDatabase([])
        return try db.execute("SELECT 1 AS name, 'héllo' AS b, NULL AS a UNION ALL SELECT 22, 'x y', 2.5")
    }

    @Test func pretty() throws {
        let out = ResultFormatter.render(try sample(), OutputSettings(mode: .pretty))
        #expect(out == """
            +------+-------+-----+
            | name | b     | a   |
            +------+-------+-----+
            | 1    | héllo |     |
            | 22   | x y   | 2.5 |
            +------+-------+-----+

            """)
        #expect(ResultFormatter.render(ResultSet(columns: ["a"]), OutputSettings()) == "")
    }

    @Test func json() throws {
        let out = ResultFormatter.render(try sample(), OutputSettings(mode: .json))
        #expect(out == "[\n  {\"a\":\"\",\"b\":\"héllo\",\"name\":\"1\"},\n  {\"a\":\"2.5\",\"b\":\"x y\",\"name\":\"22\"}\n]\n")
        let db = try makeDatabase([])
        #expect(ResultFormatter.render(try db.execute("select 0"), OutputSettings(mode: .json)) == "[\n  {\"0\":\"0\"}\n]\n")
        #expect(ResultFormatter.render(ResultSet(columns: ["a"]), OutputSettings(mode: .json)) == "[\n\n]\n")
        #expect(ResultFormatter.render(try db.execute("select 'a\"\\\n' as q"), OutputSettings(mode: .json)) == "[\n  {\"q\":\"a\\\"\\\\\\n\"}\n]\n")
    }

    @Test func jsonPretty() throws {
        let out = ResultFormatter.render(try sample(), OutputSettings(mode: .jsonPretty))
        #expect(out == """
            [
              {
                "a": "",
                "b": "héllo",
                "name": "1"
              },
              {
                "a": "2.5",
                "b": "x y",
                "name": "22"
              }
            ]

            """)
    }

    @Test func line() throws {
        let out = ResultFormatter.render(try sample(), OutputSettings(mode: .line, nullValue: "NULL"))
        #expect(out == " name = 1\n    b = héllo\n    a = NULL\n\n name = 22\n    b = x y\n    a = 2.5\n")
    }

    @Test func list() throws {
        #expect(ResultFormatter.render(try sample(), OutputSettings(mode: .list)) == "name|b|a\n1|héllo|\n22|x y|2.5\n")
        #expect(ResultFormatter.render(try sample(), OutputSettings(mode: .list, headers: false, separator: "\t")) == "1\théllo\t\n22\tx y\t2.5\n")
    }

    @Test func csv() throws {
        // Non-ASCII, spaces and empty strings are quoted; NULL prints the nullvalue bare.
        #expect(ResultFormatter.render(try sample(), OutputSettings(mode: .csv, separator: ",")) == "name,b,a\n1,\"héllo\",\n22,\"x y\",2.5\n")
        let db = try makeDatabase([])
        let r = try db.execute("SELECT 'a,b' AS x, '' AS y, 'say \"hi\"' AS z, 'a|b' AS w")
        #expect(ResultFormatter.render(r, OutputSettings(mode: .csv, separator: ",")) == "x,y,z,w\n\"a,b\",\"\",\"say \"\"hi\"\"\",a|b\n")
        // osqueryi --csv keeps the default '|' separator (osquery's quirk).
        #expect(ResultFormatter.render(r, OutputSettings(mode: .csv, separator: "|")) == "x|y|z|w\na,b|\"\"|\"say \"\"hi\"\"\"|\"a|b\"\n")
    }

    @Test func column() throws {
        #expect(ResultFormatter.render(try sample(), OutputSettings(mode: .column)) == """
            name        b           a         
            ----------  ----------  ----------
            1           héllo                 
            22          x y         2.5       

            """)
        #expect(ResultFormatter.render(try sample(), OutputSettings(mode: .column, headers: false, widths: [3, 2])) == "1    hé            \n22   x   2.5       \n")
    }
}
