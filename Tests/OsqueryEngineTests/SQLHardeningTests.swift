import Foundation
import OsqueryEngine
import Testing

/// What a caller's SQL may do to the process (issue 14, items 1, 2 and 6): osquery's
/// authorizer allowlist, SQLite's defensive settings and limits, and alias views that are
/// plain names owned by their table.
@Suite struct SQLHardeningTests {
    func expectRefused(_ db: Database, _ sql: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let result = try db.execute(sql)
            Issue.record("\(sql) ran: \(result.rows)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.message.contains(message), "\(sql): \(error.message)", sourceLocation: sourceLocation)
        }
    }

    /// fts3_tokenizer leaks a pointer with one argument and installs one with two (a call to an
    /// attacker's address); both are refused, and the connection keeps serving.
    @Test func fts3TokenizerIsRefused() throws {
        let db = try makeDatabase([makeTestTable()])
        expectRefused(db, "SELECT hex(fts3_tokenizer('simple'))", "not authorized")
        expectRefused(db, "SELECT fts3_tokenizer('simple', x'4141414141414141')", "not authorized")
        expectRefused(db, "SELECT load_extension('/tmp/nothing.so')", "not authorized")
        #expect(try db.execute("SELECT count(*) FROM test_table").rows == [[.integer(4)]])
    }

    /// ATTACH and VACUUM INTO would write files as root: denied with SQLite's words, nothing
    /// is created, and a table in the would-be database cannot be made either.
    @Test func attachAndVacuumIntoCreateNoFile() throws {
        let dir = NSTemporaryDirectory() + "osq-attach-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try makeDatabase([makeTestTable()])
        expectRefused(db, "ATTACH DATABASE '\(dir)/a.db' AS x", "not authorized")
        expectRefused(db, "ATTACH DATABASE '\(dir)/b.db' AS x; CREATE TABLE x.t(a)", "not authorized")
        expectRefused(db, "CREATE TABLE x.t(a)", "unknown database x")
        expectRefused(db, "VACUUM INTO '\(dir)/v.db'", "authorization denied")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        #expect(try db.execute("SELECT name FROM test_table WHERE id = 1").rows == [[.text("alpha")]])
    }

    /// Everything osquery's allowlist lets through still works: reads, functions, recursive
    /// CTEs, tables and views (main and temp) with their writes, transactions and the six pragmas.
    @Test func everyAllowlistedActionWorks() throws {
        let db = try makeDatabase([makeTestTable()])
        let statements = [
            "SELECT upper(name), regex_match(name, 'a', 0) FROM test_table",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) SELECT count(*) FROM c",
            "CREATE TABLE t(a)", "INSERT INTO t VALUES (1), (2)", "UPDATE t SET a = 3 WHERE a = 2", "DELETE FROM t WHERE a = 1",
            "CREATE TEMP TABLE tt(b)", "INSERT INTO tt SELECT a FROM t",
            "CREATE VIEW v AS SELECT name FROM test_table", "CREATE TEMP VIEW tv AS SELECT split(name, 'l', 0) FROM test_alias",
            "BEGIN", "INSERT INTO t VALUES (9)", "ROLLBACK", "BEGIN", "COMMIT",
            "PRAGMA table_info(test_table)", "PRAGMA table_xinfo(test_table)", "PRAGMA function_list",
            "PRAGMA collation_list", "PRAGMA case_sensitive_like = 0", "PRAGMA journal_mode",
            "DROP VIEW v", "DROP VIEW tv", "DROP TABLE tt", "DROP TABLE t",
        ]
        for sql in statements {
            do {
                _ = try db.execute(sql)
            } catch {
                Issue.record("\(sql): \(error.message)")
            }
        }
        #expect(try db.execute("PRAGMA table_info(test_table)").rowCount == 5)
        // And what it does not: denied, with SQLite's "not authorized".
        _ = try db.execute("CREATE TEMP TABLE u(a)")
        for sql in [
            "CREATE INDEX i ON u(a)", "CREATE TEMP TRIGGER g AFTER INSERT ON u BEGIN SELECT 1; END", "ALTER TABLE u ADD COLUMN b",
            "PRAGMA writable_schema = 1", "PRAGMA temp_store_directory = '/tmp'", "DETACH DATABASE temp", "ANALYZE temp.u",
        ] {
            expectRefused(db, sql, "not authorized")
        }
    }

    /// Limits: a string or blob bigger than a wire message fails at once, before any allocation.
    @Test func lengthsAreBoundedByTheWireLimit() throws {
        let db = try makeDatabase([])
        expectRefused(db, "SELECT length(zeroblob(200000000))", "string or blob too big")
        #expect(try db.execute("SELECT length(zeroblob(1000000))").rows == [[.integer(1_000_000)]])
    }

    /// An alias from route info is a name or nothing: SQL smuggled in one is never run.
    @Test func anAliasCannotSmuggleSQL() throws {
        let dir = NSTemporaryDirectory() + "osq-alias-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let hostile = "v1 AS SELECT 1; ATTACH DATABASE '\(dir)/ai.db' AS ai; CREATE TABLE ai.t(a); CREATE TEMP VIEW v2"
        let table = RecordingTable(
            schema: TableSchema(name: "guarded", columns: [TableColumn("a", .text)], aliases: [hostile, "guarded_alias"]),
            rows: [["x"]])
        let db = try makeDatabase([table])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        let views = try db.execute("SELECT name FROM temp.sqlite_schema ORDER BY name").rows
        #expect(views == [[.text("guarded_alias")]])
        #expect(try db.execute("SELECT a FROM guarded_alias").rows == [[.text("x")]])
    }

    /// A table's alias views go with it: once its extension is gone, the name is free again
    /// for a table of that name, on every connection.
    @Test func aliasViewsAreDroppedWithTheirTable() throws {
        let registry = PluginRegistry()
        let owned = RecordingTable(
            schema: TableSchema(name: "ext_table", columns: [TableColumn("a", .text)], aliases: ["ext_alias"]), rows: [["old"]])
        #expect(registry.addTable(owned, owner: 7))
        let db = try Database(registry: registry, flags: Flags())
        #expect(try db.execute("SELECT a FROM ext_alias").rows == [[.text("old")]])
        _ = registry.removeAll(owner: 7)
        let replacement = RecordingTable(schema: TableSchema(name: "ext_alias", columns: [TableColumn("b", .text)]), rows: [["new"]])
        #expect(registry.addTable(replacement, owner: 8))
        db.refreshTables()
        #expect(try db.execute("SELECT count(*) FROM temp.sqlite_schema").rows == [[.integer(0)]])
        #expect(try db.execute("SELECT * FROM ext_alias").rows == [[.text("new")]])
    }

    /// The registry refuses a table whose name or alias names a table or alias it has (in any
    /// case): a temp view named like a table would shadow it.
    @Test func aTakenNameIsRefusedByTheRegistry() throws {
        let registry = PluginRegistry()
        #expect(registry.addTable(makeTestTable()))
        let shadow = { (name: String, aliases: [String]) in
            RecordingTable(schema: TableSchema(name: name, columns: [TableColumn("a", .text)], aliases: aliases), rows: [])
        }
        #expect(registry.takenTableName(shadow("other", ["Test_Table"]).schema) == "Test_Table")
        #expect(!registry.addTable(shadow("other", ["test_table"])))
        #expect(!registry.addTable(shadow("other", ["test_alias"])))
        #expect(!registry.addTable(shadow("TEST_ALIAS", [])))
        #expect(!registry.addTable(shadow("other", ["twice", "TWICE"])))
        #expect(registry.addTable(shadow("other", ["other_alias"])))
        // A removed table's names are free again, by either way of removing it.
        #expect(registry.remove(registry: "table", name: "other") != nil)
        #expect(registry.addTable(shadow("Other_Alias", ["OTHER"])))
        #expect(registry.addTable(shadow("owned", ["owned_alias"]), owner: 9))
        #expect(!registry.addTable(shadow("owned_alias", [])))
        _ = registry.removeAll(owner: 9)
        #expect(registry.addTable(shadow("owned_alias", ["owned"])))
        #expect(!TableSchema.isValidName("v1 AS SELECT 1; --") && !TableSchema.isValidName("sqlite_master"))
        #expect(!TableSchema.isValidName("1abc") && !TableSchema.isValidName("a`b") && TableSchema.isValidName("_a1"))
    }

    /// A statement past its deadline stops with an error saying so; the connection keeps serving.
    @Test func aStatementStopsAtItsDeadline() throws {
        let db = try makeDatabase([])
        db.setDeadline(seconds: 0.2)
        expectRefused(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", "deadline of 0.2 s")
        db.setDeadline(seconds: 0)
        #expect(try db.execute("SELECT 1").rows == [[.integer(1)]])
    }

    /// What a caller leaves on a connection (views shadowing tables, tables, an open
    /// transaction, a pragma) is gone after `resetCallerState`; the alias views are back.
    @Test func resetTakesTheConnectionBackToTheEngines() throws {
        let db = try makeDatabase([makeTestTable()])
        #expect(!db.hasCallerState)
        _ = try db.execute("CREATE TEMP VIEW test_table AS SELECT 1 AS id")
        _ = try db.execute("DROP VIEW test_alias")
        _ = try db.execute("CREATE TEMP VIEW test_alias AS SELECT 2 AS id")
        _ = try db.execute("CREATE TABLE kept(a); CREATE TEMP TABLE t(b); CREATE VIEW kept_view AS SELECT 1; PRAGMA case_sensitive_like = 1; BEGIN")
        #expect(db.hasCallerState)
        try db.resetCallerState()
        #expect(!db.hasCallerState)
        #expect(try db.execute("SELECT count(*) FROM test_table").rows == [[.integer(4)]])
        #expect(try db.execute("SELECT count(*) FROM test_alias").rows == [[.integer(4)]])
        #expect(try db.execute("SELECT count(*) FROM sqlite_schema").rows == [[.integer(0)]])
        #expect(try db.execute("SELECT name FROM temp.sqlite_schema").rows == [[.text("test_alias")]])
        #expect(try db.execute("SELECT 'a' LIKE 'A'").rows == [[.integer(1)]])
        _ = try db.execute("BEGIN; COMMIT")
    }
}
