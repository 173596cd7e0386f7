import OsqueryEngine
import Testing

@Suite struct QueryContextTests {
    @Test func contextJSONMatchesOsqueryShape() {
        let schema = TableSchema(
            name: "t",
            columns: [TableColumn("zeta", .text, .index), TableColumn("alpha", .integer, .index), TableColumn("mid", .double)],
            columnAliases: [(alias: "beta", target: "zeta")]
        )
        var ctx = QueryContext(columns: schema.virtualColumns.map(\.column), colsUsed: ["alpha", "zeta"], colsUsedBitset: 5)
        ctx.add(Constraint(op: .equals, expr: "1"), to: "alpha")
        ctx.add(Constraint(op: .equals, expr: "2"), to: "alpha")
        ctx.add(Constraint(op: .like, expr: "a\"b%"), to: "zeta")
        let expected = #"{"constraints":[{"name":"alpha","list":[{"op":2,"expr":"1"},{"op":2,"expr":"2"}],"affinity":"INTEGER"},"#
            + #"{"name":"beta","list":[],"affinity":"TEXT"},"#
            + #"{"name":"mid","list":[],"affinity":"DOUBLE"},"#
            + #"{"name":"zeta","list":[{"op":65,"expr":"a\"b%"}],"affinity":"TEXT"}],"#
            + #""colsUsed":["alpha","zeta"],"colsUsedBitset":5}"#
        #expect(ctx.toJSON() == expected)
    }

    @Test func contextFromAQuerySerializes() throws {
        let table = makeTestTable()
        let db = try makeDatabase([table])
        _ = try db.execute("SELECT name FROM test_table WHERE id = 3 AND num >= 5")
        let json = try #require(table.contexts.first).toJSON()
        #expect(json.hasPrefix(#"{"constraints":[{"name":"id","list":[{"op":2,"expr":"3"}],"affinity":"BIGINT"},"#))
        #expect(json.contains(#"{"name":"num","list":[{"op":32,"expr":"5"}],"affinity":"INTEGER"}"#))
        #expect(json.contains(#"{"name":"old_name","list":[],"affinity":"TEXT"}"#))
        // name (bit 1) plus id and num, which the WHERE clause reads.
        #expect(json.hasSuffix(#""colsUsed":["id","name","num"],"colsUsedBitset":35}"#))
    }

    @Test func equalitiesAreDistinctInOrder() {
        var ctx = QueryContext(columns: [TableColumn("a", .text)])
        for v in ["x", "y", "x"] { ctx.add(Constraint(op: .equals, expr: v), to: "a") }
        ctx.add(Constraint(op: .like, expr: "z%"), to: "a")
        #expect(ctx.equalities(for: "a") == ["x", "y"])
        #expect(ctx.hasConstraint("a", op: .like))
        #expect(!ctx.hasConstraint("b"))
    }
}

@Suite struct SchemaTests {
    @Test func createStatementUsesOsqueryForm() {
        let schema = TableSchema(
            name: "users",
            columns: [
                TableColumn("uid", .bigint, .index),
                TableColumn("username", .text, .additional),
                TableColumn("uuid", .text, [.index, .collateNocase]),
                TableColumn("pid_with_namespace", .integer, [.additional, .hidden]),
            ],
            columnAliases: [(alias: "login", target: "username")]
        )
        #expect(schema.createStatement == "CREATE TABLE users(`uid` BIGINT, `username` TEXT, `uuid` TEXT COLLATE NOCASE, `pid_with_namespace` INTEGER HIDDEN, PRIMARY KEY (`uid`, `username`, `uuid`, `pid_with_namespace`)) WITHOUT ROWID;")
        let noIndex = TableSchema(name: "t", columns: [TableColumn("a", .text, .additional), TableColumn("b", .unsignedBigint)])
        #expect(noIndex.createStatement == "CREATE TABLE t(`a` TEXT, `b` UNSIGNED BIGINT);")
        #expect(schema.columnDefinition(includeAliases: true, isExtension: true).hasSuffix("`login` TEXT HIDDEN, PRIMARY KEY (`uid`, `username`, `uuid`, `pid_with_namespace`))"))
    }

    @Test func routeInfoRoundTrips() throws {
        let schema = TableSchema(
            name: "ext",
            columns: [TableColumn("a", .text, [.index, .required]), TableColumn("b", .unsignedBigint, .hidden)],
            aliases: ["ext_alias"],
            columnAliases: [(alias: "c", target: "a")],
            attributes: [.cacheable, .userBased]
        )
        let info = schema.routeInfo
        #expect(info.first == ["id": "column", "name": "a", "type": "TEXT", "op": "3"])
        #expect(info.last == ["id": "attributes", "attributes": "10"])
        let parsed = try TableSchema(name: "ext", routeInfo: info + [["name": "ignored"]])
        #expect(parsed == schema)
        #expect(throws: EngineError(code: 1, message: "Invalid route info")) { try TableSchema(name: "x", routeInfo: []) }
        #expect(ColumnType(name: "weird") == .unknown)
    }

    @Test func extensionPlainColumnsGetConstraintsByDefault() throws {
        struct Ext: TablePlugin {
            let schema = TableSchema(name: "ext_t", columns: [TableColumn("a", .text), TableColumn("h", .text, .hidden)])
            let seen: RecordingTable
            var isExtension: Bool { true }
            func generate(_ context: QueryContext) throws -> TableRows { try seen.generate(context) }
        }
        let recorder = RecordingTable(schema: TableSchema(name: "ext_t", columns: [TableColumn("a", .text), TableColumn("h", .text, .hidden)]), rows: [["x", "y"]])
        let db = try makeDatabase([Ext(seen: recorder)])
        _ = try db.execute("SELECT a FROM ext_t WHERE a = 'x' AND h = 'y'")
        let ctx = try #require(recorder.contexts.first)
        #expect(ctx.equalities(for: "a") == ["x"])
        #expect(ctx.constraints(for: "h").isEmpty)
    }
}

@Suite struct RegistryTests {
    @Test func pluginsByRegistryWithOwnersAndActive() {
        let registry = PluginRegistry()
        #expect(registry.addTable(makeTestTable()))
        #expect(!registry.addTable(makeTestTable()), "duplicate names are refused")
        registry.add(RegistryItem(registry: "config", name: "filesystem"))
        registry.add(RegistryItem(registry: "config", name: "tls"))
        registry.add(RegistryItem(registry: "table", name: "ext_table", ownerUUID: 42))
        registry.add(RegistryItem(registry: "logger", name: "ext_logger", ownerUUID: 42))
        registry.setActive(registry: "config", name: "filesystem")
        #expect(registry.isActive(registry: "config", name: "filesystem"))
        #expect(!registry.isActive(registry: "config", name: "tls"))
        #expect(registry.isActive(registry: "logger", name: "ext_logger"), "no active plugin means active")
        #expect(registry.tableNames() == ["ext_table", "test_table"])
        #expect(registry.table(named: "test_table") != nil)
        let before = registry.generation
        let removed = registry.removeAll(owner: 42)
        #expect(Set(removed.map(\.name)) == ["ext_table", "ext_logger"])
        #expect(registry.generation != before)
        #expect(registry.tableNames() == ["test_table"])
        #expect(registry.remove(registry: "config", name: "filesystem") != nil)
        #expect(registry.active(registry: "config") == nil)
        #expect(registry.registryNames().contains("distributed"))
    }
}

@Suite struct ValueTests {
    @Test func doublesFormatLikeOsquery() {
        #expect(SQLValue.osqueryDouble(1) == "1.0")
        #expect(SQLValue.osqueryDouble(0.1) == "0.1")
        #expect(SQLValue.osqueryDouble(1e20) == "1e+20.0")
        #expect(SQLValue.osqueryDouble(3.14159265358979) == "3.14159265358979")
        #expect(SQLValue.sqliteDouble(2) == "2.0")
        #expect(SQLValue.sqliteDouble(1e20) == "1.0e+20")
    }

    @Test func stringConversionFollowsOsqueryRules() {
        #expect(SQLValue.converting("", to: .integer) == .null)
        #expect(SQLValue.converting("0x1f", to: .integer) == .integer(31))
        #expect(SQLValue.converting("010", to: .integer) == .integer(8))
        #expect(SQLValue.converting("42 apples", to: .integer) == .integer(42))
        #expect(SQLValue.converting("4294967297", to: .integer) == .integer(1), "INTEGER is 32-bit")
        #expect(SQLValue.converting("-9223372036854775808", to: .bigint) == .integer(Int64.min))
        #expect(SQLValue.converting("9223372036854775808", to: .unsignedBigint) == .null)
        #expect(SQLValue.converting("1.5", to: .double) == .double(1.5))
        #expect(SQLValue.converting("1.5x", to: .double) == .null)
        #expect(SQLValue.converting("", to: .text) == .text(""))
        #expect(SQLValue.text(bytes: [0x61, 0xff]) == .blob([0x61, 0xff]))
        #expect(SQLValue.text(bytes: Array("é".utf8)) == .text("é"))
    }

    @Test func rowMapsUseOsqueryStrings() throws {
        let db = try makeDatabase([])
        let r = try db.execute("SELECT 1 AS i, 2.0 AS d, NULL AS n, 'x' AS t")
        #expect(r.rowMaps() == [["i": "1", "d": "2.0", "n": "", "t": "x"]])
    }
}
