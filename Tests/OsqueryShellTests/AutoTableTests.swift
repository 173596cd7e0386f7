import CSQLite
import Foundation
import OsqueryEngine
import Testing

/// A SQLite file made with SQLite itself (as an application would leave it).
func makeSQLiteFile(_ path: String, _ sql: String) throws {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK, let db else {
        sqlite3_close_v2(db)
        throw AutoTableTestError("cannot create \(path)")
    }
    defer { sqlite3_close_v2(db) }
    guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
        throw AutoTableTestError("\(path): \(String(cString: sqlite3_errmsg(db)))")
    }
}

struct AutoTableTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What a directory holds: each entry's name, size, mtime and content, to show nothing was
/// created, written or touched.
func snapshot(_ dir: String) -> [String: String] {
    var out: [String: String] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
        var st = stat()
        guard stat(dir + "/" + name, &st) == 0 else { continue }
        let bytes = FileManager.default.contents(atPath: dir + "/" + name) ?? Data()
        out[name] = "\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(bytes.hashValue)"
    }
    return out
}

/// `auto_table_construction` on the real osqueryi (`--config_path`), as osquery documents it.
@Suite struct AutoTableShellTests {
    /// Rows of osqueryi's `--json` output.
    func rows(_ run: ShellRun) -> [[String: String]] {
        (try? JSONSerialization.jsonObject(with: Data(run.out.utf8)) as? [[String: String]]) ?? []
    }

    @Test func tablesFromTheConfigReadTheFilesAndLeaveThemAlone() throws {
        let dir = NSTemporaryDirectory() + "osqi-atc-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let data = dir + "/data"
        try FileManager.default.createDirectory(atPath: data + "/sub.db", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeSQLiteFile(data + "/one.db", """
            CREATE TABLE t(a_number INTEGER, label TEXT, ratio REAL, raw BLOB);
            INSERT INTO t VALUES (1, 'first', 0.5, x'41004243'), (2, NULL, 2, NULL);
            """)
        // A WAL database: a read that honoured WAL would create its -shm file next to it.
        try makeSQLiteFile(data + "/two.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(a_number INTEGER, label TEXT); INSERT INTO t VALUES (3, 'third');")
        try "not a database".write(toFile: data + "/three.db", atomically: false, encoding: .utf8)
        let config = """
            {"auto_table_construction": {
              "test_atc": {"query": "SELECT a_number, label, ratio, raw FROM t;", "path": "\(data)/one.db",
                           "columns": ["a_number", "label", "ratio", "raw"], "platform": "linux"},
              "test_glob": {"query": "SELECT a_number, label FROM t", "path": "\(data)/%.db", "columns": ["a_number", "label"]},
              "test_missing": {"query": "SELECT a_number FROM t", "path": "\(data)/none.db", "columns": ["a_number"]},
              "test_darwin": {"query": "SELECT a_number FROM t", "path": "\(data)/one.db", "columns": ["a_number"], "platform": "darwin"}
            }}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let before = snapshot(data)
        let osqueryi = builtBinary()
        let conf = ["--config_path", dir + "/osquery.conf", "--json"]

        let one = spawn(osqueryi, conf + ["SELECT a_number, label, ratio, raw, path FROM test_atc ORDER BY a_number"])
        #expect(one.rc == 0, "\(one)")
        #expect(rows(one) == [
            ["a_number": "1", "label": "first", "ratio": "0.500000", "raw": "A", "path": data + "/one.db"],
            ["a_number": "2", "label": "", "ratio": "2.000000", "raw": "", "path": data + "/one.db"],
        ], "\(one)")
        // Every column is TEXT, the path one included; the table is internal, as osquery registers it.
        let schema = spawn(osqueryi, conf + ["SELECT name, type FROM pragma_table_info('test_atc') ORDER BY cid"])
        #expect(rows(schema).map { $0["name"]! + " " + $0["type"]! } == ["a_number TEXT", "label TEXT", "ratio TEXT", "raw TEXT", "path TEXT"])
        let registry = spawn(osqueryi, conf + ["SELECT name, internal FROM osquery_registry WHERE name LIKE 'test_%' ORDER BY name"])
        #expect(rows(registry) == [
            ["name": "test_atc", "internal": "1"], ["name": "test_glob", "internal": "1"], ["name": "test_missing", "internal": "1"],
        ], "\(registry)")

        // The glob reads each database it matches (a file that is not one only warns) and names it in `path`.
        let glob = spawn(osqueryi, conf + ["SELECT a_number, path FROM test_glob ORDER BY a_number"])
        #expect(glob.rc == 0, "\(glob)")
        #expect(rows(glob) == [
            ["a_number": "1", "path": data + "/one.db"], ["a_number": "2", "path": data + "/one.db"],
            ["a_number": "3", "path": data + "/two.db"],
        ], "\(glob)")
        #expect(glob.err.contains("Could not prepare database for path \(data)/three.db"), "\(glob.err)")

        // A missing file is no rows, not an error; another platform's table is not registered.
        let missing = spawn(osqueryi, conf + ["SELECT count(*) AS n FROM test_missing"])
        #expect(missing.rc == 0 && rows(missing) == [["n": "0"]], "\(missing)")
        let darwin = spawn(osqueryi, conf + ["SELECT * FROM test_darwin"])
        #expect(darwin.rc != 0 && darwin.err.contains("no such table: test_darwin"), "\(darwin)")

        // Nothing was created (no -shm, -wal or -journal), written or touched.
        #expect(snapshot(data) == before)
    }

    @Test func hostileDefinitionsAreRefusedAndTheShellKeepsServing() throws {
        let dir = NSTemporaryDirectory() + "osqi-atc-bad-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let data = dir + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeSQLiteFile(data + "/app.db", "CREATE TABLE t(a_number INTEGER); INSERT INTO t VALUES (7);")
        let db = data + "/app.db"
        func entry(_ query: String, columns: String = #"["a_number"]"#) -> String {
            #"{"query": "\#(query)", "path": "\#(db)", "columns": \#(columns)}"#
        }
        let config = """
            {"auto_table_construction": {
              "bad\\"name": \(entry("SELECT a_number FROM t")),
              "x; DROP TABLE y": \(entry("SELECT a_number FROM t")),
              "bad_column": \(entry("SELECT a_number FROM t", columns: #"["a`b"]"#)),
              "atc_attach": \(entry("ATTACH DATABASE '\(data)/new.db' AS other")),
              "atc_vacuum": \(entry("VACUUM INTO '\(data)/copy.db'")),
              "atc_delete": \(entry("DELETE FROM t")),
              "atc_two": \(entry("SELECT a_number FROM t; DELETE FROM t")),
              "atc_function": \(entry("SELECT load_extension('\(data)/lib.so') AS a_number FROM t")),
              "processes": \(entry("SELECT a_number FROM t")),
              "good_atc": \(entry("SELECT a_number FROM t"))
            }}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let before = snapshot(data)
        let script = """
            SELECT count(*) AS n FROM atc_delete;
            SELECT count(*) AS n FROM atc_two;
            SELECT count(*) AS n FROM atc_function;
            SELECT count(*) > 0 AS n FROM processes;
            SELECT a_number AS n FROM good_atc;

            """
        let run = spawn(builtBinary(), ["--config_path", dir + "/osquery.conf", "--list", "--header=false"], stdin: script)
        // Refused when the config loads.
        #expect(run.err.contains(#"ATC Table: Skipping "bad\"name" because its name is not a plain identifier"#), "\(run.err)")
        #expect(run.err.contains(#"ATC Table: Skipping "x; DROP TABLE y" because its name is not a plain identifier"#), "\(run.err)")
        #expect(run.err.contains(#"ATC Table: Skipping bad_column because its column "a`b" is not a plain identifier"#), "\(run.err)")
        #expect(run.err.contains("ATC Table: Skipping atc_attach because its query is refused: not authorized"), "\(run.err)")
        #expect(run.err.contains("ATC Table: Skipping atc_vacuum because its query is refused: it is not a read-only statement"), "\(run.err)")
        #expect(run.err.contains("ATC Table: processes overrides core table; Refusing registration"), "\(run.err)")
        // Refused when read (the query names a table of the file).
        #expect(run.err.contains("ATC table atc_delete: query refused: it is not a read-only statement returning columns"), "\(run.err)")
        #expect(run.err.contains("ATC table atc_two: query refused: it is more than one statement"), "\(run.err)")
        #expect(run.err.contains("ATC table atc_function: query refused: not authorized"), "\(run.err)")
        // The built-in table is still the built-in one, and the shell kept serving.
        #expect(run.out == "1\n7\n", "\(run)")
        #expect(snapshot(data) == before)
    }

    /// A query that would run forever, or return without end, is stopped by the scan's bounds.
    @Test func boundsStopARunawayQuery() throws {
        let dir = NSTemporaryDirectory() + "osqi-atc-bound-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeSQLiteFile(dir + "/app.db", "CREATE TABLE t(a_number INTEGER);")
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
        let config = """
            {"auto_table_construction": {
              "atc_many": {"query": "\(endless) SELECT x AS a_number FROM c", "path": "\(dir)/app.db", "columns": ["a_number"]},
              "atc_wide": {"query": "\(endless) SELECT hex(zeroblob(500)) || x AS a_number FROM c", "path": "\(dir)/app.db", "columns": ["a_number"]},
              "atc_spin": {"query": "\(endless) SELECT x AS a_number FROM c WHERE x < 0", "path": "\(dir)/app.db", "columns": ["a_number"]}
            }}
            """
        try config.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let script = "SELECT count(*) FROM atc_many;\nSELECT count(*) FROM atc_wide;\nSELECT count(*) FROM atc_spin;\nSELECT 'alive';\n"
        let run = spawn(builtBinary(), [
            "--config_path", dir + "/osquery.conf", "--list", "--header=false",
            "--atc_max_rows", "5", "--atc_max_bytes", "4000", "--atc_timeout", "1",
        ], stdin: script)
        #expect(run.err.contains("ATC table atc_many: more than 5 rows (--atc_max_rows)"), "\(run.err)")
        #expect(run.err.contains("ATC table atc_wide: more than 4000 bytes (--atc_max_bytes)"), "\(run.err)")
        #expect(run.err.contains("ATC table atc_spin: the scan ran past 1 s (--atc_timeout)"), "\(run.err)")
        #expect(run.out == "alive\n", "\(run)")
    }
}
