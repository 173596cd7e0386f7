import CSQLite
import Foundation
import OsqueryDaemon
import OsqueryEngine
import ProtocolFixture
import Synchronization
import Testing

/// Two config sources given as text.
struct TextConfigSource: ConfigSource {
    var name: String { "text" }
    let texts: [(name: String, text: String)]
    func genConfig() throws(DaemonError) -> [(name: String, text: String)] { texts }
    func genPack(name: String, value: String) throws(DaemonError) -> String { "" }
}

/// How `auto_table_construction` is read from the config's sources.
@Suite struct AutoTableConfigTests {
    @Test func entriesAreReadAsOsqueryReadsThemAndALaterSourceWins() throws {
        let first = """
            {"auto_table_construction": {
              "a_atc": {"query": "SELECT 1", "path": "/x.db", "columns": ["one", 2, "three"]},
              "b_atc": {"query": "SELECT 1", "path": "/x.db", "columns": ["one"], "platform": "darwin"},
              "c_atc": {"path": "/x.db", "columns": "one"},
              "not_an_object": 5
            }}
            """
        let second = #"{"auto_table_construction": {"a_atc": {"query": "SELECT 2", "path": "/y.db", "columns": ["two"], "platform": "posix"}}}"#
        let warnings = Mutex<[String]>([])
        let loader = ConfigLoader(source: TextConfigSource(texts: [("1", first), ("2", second)]), flags: Flags()) { _, message in
            warnings.withLock { $0.append(message) }
        }
        let config = try loader.load()
        #expect(config.autoTables == [
            AutoTableDefinition(name: "a_atc", query: "SELECT 2", path: "/y.db", columns: ["two"], platform: "posix"),
            AutoTableDefinition(name: "b_atc", query: "SELECT 1", path: "/x.db", columns: ["one"], platform: "darwin"),
            AutoTableDefinition(name: "c_atc", query: "", path: "/x.db", columns: nil),
        ])
        #expect(config.bySource["1"]?.autoTables.first?.columns == ["one", "three"])
        #expect(warnings.withLock { $0 }.contains { $0.contains("ATC Table: a_atc is misconfigured. (non-string column)") })
        #expect(config.hostAutoTables.map(\.name) == ["a_atc", "c_atc"])
    }
}

/// `auto_table_construction` in the real osqueryd: scheduled queries read the tables, and a
/// reloaded config replaces and removes them.
@Suite struct AutoTableDaemonTests {
    static func makeDatabase(_ path: String, _ sql: String) throws {
        var db: OpaquePointer?
        defer { sqlite3_close_v2(db) }
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK,
            sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK
        else { throw DaemonTestError("cannot make \(path)") }
    }

    static func config(_ tables: String) -> String {
        #"{"schedule": {"atc": {"query": "SELECT a_number, path FROM test_atc", "interval": 1, "snapshot": true}}, "auto_table_construction": {"# + tables + "}}"
    }

    @Test func scheduledQueriesReadThemAndAReloadReplacesThem() async throws {
        let dir = try scratchDirectory("atcd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        let db = dir + "/data/app.db"
        try Self.makeDatabase(db, "CREATE TABLE t(a_number INTEGER); INSERT INTO t VALUES (4), (5);")
        let before = try Data(contentsOf: URL(fileURLWithPath: db))
        let modified = try FileManager.default.attributesOfItem(atPath: db)[.modificationDate] as? Date
        try Self.config("""
            "test_atc": {"query": "SELECT a_number FROM t", "path": "\(db)", "columns": ["a_number"]},
            "gone_atc": {"query": "SELECT a_number FROM t", "path": "\(db)", "columns": ["a_number"]}
            """).write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--disable_watchdog"], stderr: dir + "/stderr")
        let stderr = { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }
        let snapshots = {
            let text = (try? String(contentsOfFile: dir + "/logs/osqueryd.snapshots.log", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["snapshot"] as? [[String: String]]
            }
        }
        #expect(await waitUntil(30) { snapshots().contains { $0.count == 2 } }, "\(stderr())")
        #expect(snapshots().first { $0.count == 2 } == [["a_number": "4", "path": db], ["a_number": "5", "path": db]])
        let socket = dir + "/osquery.em"
        #expect(await coreQuery(socket, "SELECT count(*) AS n FROM gone_atc") == [["n": "2"]])

        try Self.config("""
            "test_atc": {"query": "SELECT a_number * 10 AS a_number FROM t", "path": "\(db)", "columns": ["a_number"]}
            """).write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        Daemond.signal(daemon, SIGHUP)
        #expect(await waitUntil(30) { snapshots().contains { $0.first?["a_number"] == "40" } }, "\(stderr())")
        #expect(await coreQuery(socket, "SELECT a_number FROM test_atc ORDER BY a_number") == [["a_number": "40"], ["a_number": "50"]])
        #expect(await coreQuery(socket, "SELECT count(*) FROM gone_atc") == nil)
        await Daemond.stop(daemon)

        #expect(try Data(contentsOf: URL(fileURLWithPath: db)) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: db)[.modificationDate] as? Date == modified)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/data") == ["app.db"])
    }
}
