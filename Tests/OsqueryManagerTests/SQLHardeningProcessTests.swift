import Foundation
import ProtocolFixture
import Testing

/// Issue 14's SQL scenarios against the real binaries: osqueryd answering osquery's own C++
/// client on its socket, and osqueryi.
@Suite(.serialized) struct SQLHardeningProcessTests {
    static func query(_ socket: String, _ sql: String) async throws -> (code: Int, message: String, rows: [[String: String]]) {
        let reply = try #require(try await Real.cpp(["query", socket, sql]) as? [String: Any])
        return (reply["code"] as? Int ?? -1, reply["message"] as? String ?? "", reply["rows"] as? [[String: String]] ?? [])
    }

    @Test(.timeLimit(.minutes(1))) func osquerydRefusesHostileSQLAndStopsRunawayQueries() async throws {
        try Peers.require()
        let dir = try scratchDirectory("sqlguard")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/osquery.em"
        let (daemon, log) = try Real.startDaemon(dir: dir, ["--extensions_socket", socket, "--query_timeout", "1"])
        defer { if daemon.isRunning { daemon.terminate() } }
        #expect(await waitUntil(60) { (try? await Real.cpp(["extensions", socket])) != nil })

        // The pointer leak and the pointer set: refused, and the worker is still there.
        let leak = try await Self.query(socket, "select hex(fts3_tokenizer('simple')) as p")
        #expect(leak.code == 1 && leak.message == "not authorized to use function: fts3_tokenizer" && leak.rows.isEmpty)
        let set = try await Self.query(socket, "select fts3_tokenizer('simple', x'4141414141414141')")
        #expect(set.code == 1 && set.message.contains("not authorized"))
        // Files as root: none.
        let attach = try await Self.query(socket, "ATTACH DATABASE '\(dir)/a.db' AS x; CREATE TABLE x.t(a)")
        #expect(attach.code == 1 && attach.message == "not authorized")
        let vacuum = try await Self.query(socket, "VACUUM INTO '\(dir)/v.db'")
        #expect(vacuum.code == 1 && vacuum.message == "authorization denied")
        #expect(!FileManager.default.fileExists(atPath: dir + "/a.db") && !FileManager.default.fileExists(atPath: dir + "/v.db"))
        #expect(await waitUntil(60) {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("Authorizer denied action 24 \(dir)/a.db")
        })

        // A temp view shadowing a table is not seen by later callers.
        #expect(try await Self.query(socket, "CREATE TEMP VIEW processes AS SELECT 1 AS pid").code == 0)
        for _ in 0..<6 {
            let rows = try await Self.query(socket, "select count(*) as n from processes where pid = \(daemon.processIdentifier)").rows
            #expect(rows == [["n": "1"]])
            #expect(try await Self.query(socket, "select name from processes where pid = 1 and name is not null").rows.count == 1)
        }

        // Four runaway clients each get the deadline's error; a fifth is answered.
        try await withThrowingTaskGroup(of: (code: Int, message: String, rows: [[String: String]]).self) { group in
            for _ in 0..<4 { group.addTask { try await Self.query(socket, infiniteCTE) } }
            #expect(try await Self.query(socket, "select 1 as one").rows == [["one": "1"]])
            for try await reply in group {
                #expect(reply.code == 1 && reply.message.contains("deadline of 1 s"), "\(reply)")
            }
        }
        #expect(try await Self.query(socket, "select 2 as two").rows == [["two": "2"]])
        #expect(daemon.isRunning)
        daemon.terminate()
        _ = try await offPool { daemon.waitUntilExit() }
    }

    /// osqueryi: a denied statement shows SQLite's error and osquery's log line, creates no
    /// file; the shell's own introspection (pragmas osqueryi issues, .schema, .tables) works.
    @Test func osqueryiRefusesAttachAndKeepsItsIntrospection() async throws {
        let dir = try scratchDirectory("sqlguard-i")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shell = try BuiltProducts.path("osqueryi")
        let (status, out, err) = try await Real.run(shell, ["--json", "ATTACH DATABASE '\(dir)/a.db' AS x"])
        #expect(status != 0)
        #expect(err.contains("Authorizer denied action 24 \(dir)/a.db null null null"), "\(err)")
        #expect(err.contains("not authorized"), "\(err)")
        #expect(out.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir + "/a.db"))
        let (ok, info, infoErr) = try await Real.run(shell, ["--json", "pragma table_info(time)"])
        #expect(ok == 0 && info.contains("\"name\":\"unix_time\""), "\(infoErr)")
        let (schemaStatus, schema, _) = try await Real.run(shell, [".schema time"])
        #expect(schemaStatus == 0 && schema.hasPrefix("CREATE TABLE time("))
    }
}
