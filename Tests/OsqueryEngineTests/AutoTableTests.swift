import CSQLite
import Foundation
import OsqueryEngine
import Testing

/// ATC's path globs and its registry changes on config updates, on real files and SQLite.
@Suite struct AutoTableEngineTests {
    func scratch(_ tag: String) throws -> String {
        let dir = NSTemporaryDirectory() + "osq-atc-\(tag)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func database(_ path: String, _ sql: String) throws {
        var db: OpaquePointer?
        defer { sqlite3_close_v2(db) }
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK,
            sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK
        else { throw EngineError(code: 1, message: "cannot make \(path)") }
    }

    func names(_ paths: [[UInt8]]) -> [String] { paths.map { String(decoding: $0, as: UTF8.self) } }

    /// `%` is one level, a trailing `%%` everything below, the part before the first wildcard is
    /// resolved through symlinks, and only regular files are kept (a FIFO would block the open).
    @Test func pathPatternsFollowOsquerysGlob() throws {
        let dir = try scratch("glob")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let d = dir + "/d"
        try FileManager.default.createDirectory(atPath: d + "/x/y", withIntermediateDirectories: true)
        for file in ["/a.db", "/b.db", "/x/c.db", "/x/y/e.db"] {
            _ = FileManager.default.createFile(atPath: d + file, contents: Data("x".utf8))
        }
        #expect(mkfifo(d + "/f.db", 0o600) == 0)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: d)

        #expect(names(AutoTables.resolvePaths(d + "/%.db")) == [d + "/a.db", d + "/b.db"])
        #expect(names(AutoTables.resolvePaths(d + "/%%")) == [d + "/a.db", d + "/b.db", d + "/x/c.db", d + "/x/y/e.db"])
        #expect(names(AutoTables.resolvePaths(d + "/%/%.db")) == [d + "/x/c.db"])
        #expect(names(AutoTables.resolvePaths(dir + "/link/%.db")) == [d + "/a.db", d + "/b.db"])
        #expect(names(AutoTables.resolvePaths(dir + "/link/a.db")) == [d + "/a.db"])
        #expect(AutoTables.resolvePaths(d + "/none.db").isEmpty)
        #expect(AutoTables.resolvePaths(d + "/f.db").isEmpty)
        #expect(AutoTables.resolvePaths(d + "/x").isEmpty)
    }

    /// A config update keeps an unchanged table (the same instance), replaces a changed one
    /// (an open connection then reads the new one), removes one no longer named, and never
    /// takes a name a table already has, in any case.
    @Test func configUpdatesReplaceAndRemoveTables() throws {
        let dir = try scratch("update")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try database(dir + "/app.db", "CREATE TABLE t(n INTEGER, s TEXT); INSERT INTO t VALUES (1, 'one'), (2, 'two');")
        let registry = PluginRegistry()
        let flags = Flags()
        registry.addTable(FunctionTable(TableSchema(name: "builtin", columns: [TableColumn("x", .integer)])) { _ in TableRows(columnCount: 1) })
        let first = AutoTableDefinition(name: "atc_one", query: "SELECT n FROM t", path: dir + "/app.db", columns: ["n"])
        let second = AutoTableDefinition(name: "atc_two", query: "SELECT s FROM t", path: dir + "/app.db", columns: ["s"])
        AutoTables.apply([first, second], registry: registry, flags: flags)
        let db = try Database(registry: registry, flags: flags)
        #expect(try db.execute("SELECT n, path FROM atc_one ORDER BY n").rows == [[.text("1"), .text(dir + "/app.db")], [.text("2"), .text(dir + "/app.db")]])
        #expect(try db.execute("SELECT s FROM atc_two ORDER BY s").rows == [[.text("one")], [.text("two")]])
        let kept = registry.table(named: "atc_one") as? AutoTable

        AutoTables.apply([first, second], registry: registry, flags: flags)
        #expect(registry.table(named: "atc_one") as? AutoTable === kept)

        let changed = AutoTableDefinition(name: "atc_one", query: "SELECT n * 10 AS n, s AS label FROM t", path: dir + "/app.db", columns: ["n", "label"])
        let clash = AutoTableDefinition(name: "BUILTIN", query: "SELECT n FROM t", path: dir + "/app.db", columns: ["n"])
        AutoTables.apply([changed, clash], registry: registry, flags: flags)
        db.refreshTables()
        #expect(try db.execute("SELECT n, label FROM atc_one ORDER BY n").rows == [[.text("10"), .text("one")], [.text("20"), .text("two")]])
        #expect(throws: EngineError.self) { try db.execute("SELECT * FROM atc_two") }
        #expect(registry.table(named: "builtin") is FunctionTable)
        #expect(registry.table(named: "BUILTIN") == nil)

        AutoTables.apply([], registry: registry, flags: flags)
        db.refreshTables()
        #expect(throws: EngineError.self) { try db.execute("SELECT * FROM atc_one") }
        #expect(registry.tableNames() == ["builtin"])
    }

    /// osquery's row: text and blobs up to their first NUL, reals as `%f`, a query's own
    /// `path` kept in place of the implicit one.
    @Test func valuesAreOsquerysText() throws {
        let dir = try scratch("values")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try database(dir + "/app.db", "CREATE TABLE t(a, b, c, d); INSERT INTO t VALUES (-5, 1.25, 'x' || char(0) || 'y', 1e20);")
        let registry = PluginRegistry()
        let flags = Flags()
        AutoTables.apply([
            AutoTableDefinition(name: "atc_values", query: "SELECT a, b, c, d, 'elsewhere' AS path FROM t", path: dir + "/app.db", columns: ["a", "b", "c", "d", "path"]),
        ], registry: registry, flags: flags)
        let db = try Database(registry: registry, flags: flags)
        #expect(try db.execute("SELECT * FROM atc_values").rows == [[.text("-5"), .text("1.250000"), .text("x"), .text("100000000000000000000.000000"), .text("elsewhere")]])
    }
}
