import OsqueryEngine
import Synchronization
import Testing

@Suite struct VirtualTableTests {
    @Test func selectStarReturnsRowsAndLeavesOutHiddenColumns() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT * FROM test_table")
        #expect(r.columns == ["id", "name", "score", "plain", "num"])
        #expect(r.rowCount == 4)
        #expect(r[0, 1] == .text("alpha"))
        #expect(r[3, 2] == .null)
        #expect(r[3, 4] == .integer(40))
    }

    /// As in osquery, a TEXT cell a row lacks reads as '' and a numeric one as NULL, so
    /// `plain <> 'x'` keeps the row (Fleet's `type <> 'special'` on users relies on it).
    @Test func aMissingTextCellIsEmptyAndAMissingNumberIsNull() throws {
        let db = try makeDatabase([makeTestTable()])
        let r = try db.execute("SELECT plain, typeof(plain), typeof(score) FROM test_table WHERE id = 4")
        #expect(r.rows == [[.text(""), .text("text"), .text("null")]])
        #expect(try db.execute("SELECT id FROM test_table WHERE plain <> 'x' ORDER BY id").rows.count == 4)
    }

    @Test func hiddenAndAliasColumnsCanBeNamed() throws {
        let db = try makeDatabase([makeTestTable()])
        let r = try db.execute("SELECT secret, old_name FROM test_table WHERE id = 2")
        #expect(r.rows == [[.text("s2"), .text("beta")]])
        let v = try db.execute("SELECT name FROM test_alias ORDER BY id DESC LIMIT 1")
        #expect(v.rows == [[.text("delta")]])
    }

    /// Each operator on an index column reaches generate with its osquery code.
    @Test(arguments: [
        ("id = 2", "id", 2, "2"),
        ("id > 2", "id", 4, "2"),
        ("id <= 2", "id", 8, "2"),
        ("id < 2", "id", 16, "2"),
        ("id >= 2", "id", 32, "2"),
        ("name LIKE 'al%'", "name", 65, "al%"),
        ("name GLOB 'al*'", "name", 66, "al*"),
        ("name REGEXP '^al'", "name", 67, "^al"),
        ("id != 2", "id", 68, "2"),
        ("id IS NOT 2", "id", 69, "2"),
        ("id IS 2", "id", 72, "2"),
        ("score > 1.5", "score", 4, "1.5"),
    ] as [(String, String, Int, String)])
    func operatorIsPushedDown(whereClause: String, column: String, op: Int, expr: String) throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        _ = try db.execute("SELECT id FROM test_table WHERE \(whereClause)")
        let contexts = table.contexts
        #expect(contexts.count == 1)
        let constraints = try #require(contexts.first).constraints(for: column)
        #expect(constraints.map { Int($0.op.rawValue) } == [op])
        #expect(constraints.map(\.expr) == [expr])
    }

    @Test func matchOperatorIsPushedDown() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        // SQLite has no MATCH function of its own, so the re-check fails after
        // the table has been asked; what matters is the context it got.
        _ = try? db.execute("SELECT id FROM test_table WHERE name MATCH 'beta'")
        let pushed = table.contexts.flatMap { $0.constraints(for: "name") }
        #expect(pushed.map(\.op) == [.match])
    }

    @Test func sqliteRechecksEveryConstraint() throws {
        let table = makeTestTable()  // ignores constraints, returns all rows
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT id FROM test_table WHERE id >= 2 AND name LIKE '%a' AND plain = 'p3'")
        #expect(r.rows == [[.integer(3)]])
    }

    @Test func textRangeComparisonsAreNotPushed() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        _ = try db.execute("SELECT id FROM test_table WHERE name > 'b'")
        #expect(table.contexts.first?.constraints(for: "name").isEmpty == true)
    }

    @Test func unindexedColumnsAreNotPushed() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT id FROM test_table WHERE plain = 'p1'")
        #expect(r.rows == [[.integer(1)]])
        #expect(table.contexts.first?.constraints(for: "plain").isEmpty == true)
    }

    @Test func optimizedColumnGetsWholeInListInOneCall() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT id FROM test_table WHERE id IN (1, 3, 4) ORDER BY id")
        #expect(r.rows == [[1], [3], [4]])
        #expect(table.contexts.count == 1)
        let c = try #require(table.contexts.first).constraints(for: "id")
        #expect(c.map(\.op) == [.equals, .equals, .equals])
        #expect(Set(c.map(\.expr)) == ["1", "3", "4"])
    }

    @Test func nonOptimizedInListCallsOncePerValue() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT id FROM test_table WHERE num IN (10, 30) ORDER BY id")
        #expect(r.rows == [[1], [3]])
        let exprs = table.contexts.map { $0.constraints(for: "num").map(\.expr) }
        #expect(exprs.count == 2)
        #expect(Set(exprs.flatMap { $0 }) == ["10", "30"])
    }

    @Test func joinFeedsConstraintsFromTheOuterTable() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        let r = try db.execute("""
            WITH wanted(v) AS (VALUES (2), (3))
            SELECT t.name FROM wanted CROSS JOIN test_table t WHERE t.id = wanted.v ORDER BY t.name
            """)
        #expect(r.rows == [["beta"], ["gamma"]])
        let values = table.contexts.map { $0.equalities(for: "id") }
        #expect(values.sorted { $0.joined() < $1.joined() } == [["2"], ["3"]])
    }

    @Test func requiredColumnMissingFailsWithConstraint() throws {
        let table = makeRequiredTable()
        let db = try makeDatabase([table])
        do {
            _ = try db.execute("SELECT * FROM needs_path")
            Issue.record("query without the required column succeeded")
        } catch {
            #expect(error.code == 19)
            #expect(error.message == "Table needs_path was queried without a required column in the WHERE clause")
        }
        #expect(table.contexts.isEmpty)
        // Either required column satisfies the requirement.
        let byPath = try db.execute("SELECT size FROM needs_path WHERE path = '/b'")
        #expect(byPath.rows == [[2]])
        let byDirectory = try db.execute("SELECT count(*) FROM needs_path WHERE directory = '/'")
        #expect(byDirectory.rows == [[2]])
    }

    @Test func requiredColumnCanComeFromAJoin() throws {
        let table = makeRequiredTable()
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT n.size FROM (SELECT '/a' AS p UNION SELECT '/b') AS x JOIN needs_path n ON n.path = x.p ORDER BY 1")
        #expect(r.rows == [[1], [2]])
        #expect(table.contexts.count == 2)
    }

    @Test func colsUsedNamesAndBitset() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        _ = try db.execute("SELECT name, num, old_name FROM test_table")
        let ctx = try #require(table.contexts.first)
        #expect(ctx.colsUsed == ["name", "num"])
        // Columns: id 0, name 1, score 2, plain 3, secret 4, num 5, old_name 6.
        #expect(ctx.colsUsedBitset == (1 << 1) | (1 << 5) | (1 << 6))
        #expect(ctx.isColumnUsed("num"))
        #expect(!ctx.isColumnUsed("score"))
    }

    @Test func nonUTF8TextReachesSQLiteUnchanged() throws {
        let table = RecordingTable(
            schema: TableSchema(name: "bytes_table", columns: [TableColumn("name", .text), TableColumn("data", .blob)]),
            rows: [[.blob([0x66, 0xff, 0x6f]), .blob([0x00, 0x01])]]
        )
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT hex(name), typeof(name), length(CAST(name AS BLOB)), hex(data), typeof(data) FROM bytes_table")
        #expect(r.rows == [["66FF6F", "text", 3, "0001", "blob"]])
    }

    @Test func stringValuesInNumericColumnsAreConverted() throws {
        let table = RecordingTable(
            schema: TableSchema(name: "conv", columns: [TableColumn("a", .integer), TableColumn("b", .bigint), TableColumn("c", .double)]),
            rows: [["0x10", "", "2.5"], ["12abc", "9223372036854775808", "x"]]
        )
        let db = try makeDatabase([table])
        let r = try db.execute("SELECT a, b, c, typeof(a) FROM conv")
        #expect(r.rows == [[16, nil, 2.5, "integer"], [12, nil, nil, "integer"]])
    }

    @Test func fullSQLWorksOverVirtualTables() throws {
        let db = try makeDatabase([makeTestTable(), makeRequiredTable()])
        let r = try db.execute("""
            CREATE TEMP VIEW big AS SELECT * FROM test_table WHERE num > 15;
            WITH s AS (SELECT count(*) AS n, sum(num) AS total FROM big)
            SELECT n, total, (SELECT max(id) FROM test_table WHERE id IN (SELECT id FROM big)) FROM s;
            """)
        #expect(r.rows == [[3, 90, 4]])
    }

    @Test func generateErrorsBecomeStatementErrors() throws {
        struct Failing: TablePlugin {
            var schema: TableSchema { TableSchema(name: "failing", columns: [TableColumn("x", .text)]) }
            func generate(_ context: QueryContext) throws -> TableRows {
                throw EngineError(code: 1, message: "cannot read the thing")
            }
        }
        let db = try makeDatabase([Failing()])
        #expect(throws: EngineError(code: 1, message: "cannot read the thing")) {
            try db.execute("SELECT * FROM failing")
        }
    }

    @Test func builtInTablesAreReadOnly() throws {
        let db = try makeDatabase([makeTestTable()])
        #expect(throws: EngineError.self) {
            try db.execute("INSERT INTO test_table (id) VALUES (9)")
        }
    }

    @Test func writableTableReceivesInsertUpdateDelete() throws {
        final class Writable: TablePlugin {
            let schema = TableSchema(name: "kv", columns: [TableColumn("k", .text), TableColumn("v", .integer)])
            let store = Mutex<[Int64: [SQLValue]]>([:])
            var isExtension: Bool { true }
            func generate(_ context: QueryContext) throws -> TableRows {
                var rows = TableRows(schema: schema)
                let snapshot = store.withLock { $0 }.sorted { $0.key < $1.key }
                rows.rowids = snapshot.map { $0.key }
                for (_, v) in snapshot { rows.appendRow(v) }
                return rows
            }
            func insert(_ values: [SQLValue], rowid: Int64?, context: QueryContext) throws -> Int64? {
                store.withLock { s in
                    let id = rowid ?? ((s.keys.max() ?? 0) + 1)
                    s[id] = values
                    return id
                }
            }
            func update(rowid: Int64, newRowid: Int64?, values: [SQLValue], context: QueryContext) throws {
                store.withLock { $0[newRowid ?? rowid] = values }
            }
            func delete(rowid: Int64, context: QueryContext) throws {
                _ = store.withLock { $0.removeValue(forKey: rowid) }
            }
        }
        let table = Writable()
        let db = try makeDatabase([table])
        try db.execute("INSERT INTO kv (k, v) VALUES ('a', 1), ('b', 2)")
        try db.execute("UPDATE kv SET v = 5 WHERE k = 'b'")
        try db.execute("DELETE FROM kv WHERE k = 'a'")
        #expect(try db.execute("SELECT k, v FROM kv").rows == [["b", 5]])
    }

    @Test func queryColumnsReportDeclaredTypes() throws {
        let db = try makeDatabase([makeTestTable()])
        let cols = try db.queryColumns("SELECT id AS i, name, score, num, 1 + 1 AS two FROM test_table")
        #expect(cols == [
            QueryColumn(name: "i", type: "BIGINT"),
            QueryColumn(name: "name", type: "TEXT"),
            QueryColumn(name: "score", type: "DOUBLE"),
            QueryColumn(name: "num", type: "INTEGER"),
            QueryColumn(name: "two", type: "UNKNOWN"),
        ])
    }

    @Test func severalStatementsConcatenateAndNullStaysDistinct() throws {
        let db = try makeDatabase([])
        let r = try db.execute("SELECT 1 AS a, NULL AS b; SELECT 2 AS a, '' AS b; ")
        #expect(r.columns == ["a", "b"])
        #expect(r.rows == [[1, nil], [2, ""]])
        #expect(try db.execute("   ").rowCount == 0)
        let each = try db.executeStatements("CREATE TEMP TABLE t(x); INSERT INTO t VALUES (1); SELECT x FROM t; SELECT 'a' AS y, 2.5 AS z")
        #expect(each.map(\.columns) == [[], [], ["x"], ["y", "z"]])
        let maps = try db.queryMaps("SELECT x FROM t; SELECT NULL AS y, 2.0 AS z")
        let expected: [[String: String?]] = [["x": "1"], ["y": String?.none, "z": "2.0"]]
        #expect(maps == expected)
        #expect(throws: EngineError(code: 1, message: "no such table: foo")) { try db.execute("SELECT * FROM foo") }
        #expect(throws: EngineError(code: 1, message: "near \"selectx\": syntax error")) { try db.execute("selectx 1") }
    }

    @Test func tablesCanBeDetached() throws {
        let db = try makeDatabase([makeTestTable(), makeRequiredTable()])
        db.detach("test_table")
        #expect(throws: EngineError.self) { try db.execute("SELECT * FROM test_table") }
        #expect(try db.execute("SELECT count(*) FROM needs_path WHERE path = '/a'").rows == [[1]])
    }
}
