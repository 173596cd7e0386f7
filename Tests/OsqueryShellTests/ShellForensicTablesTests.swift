import Foundation
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 18: the tables osquery's shell has beside the built-in ones (osquery_events, yara_file,
/// carves), answered by the built osqueryi as osquery's does.
@Suite struct ShellForensicTablesTests {
    func rows(_ run: ShellRun) -> [[String: String]] {
        (try? JSONSerialization.jsonObject(with: Data(run.out.utf8)) as? [[String: String]]) ?? []
    }

    func osqueryiProcess(_ args: [String], stdin: String = "") async -> ShellRun {
        let osqueryi = builtBinary()
        return await onOwnThread { spawn("/usr/bin/timeout", ["-s", "KILL", "60", osqueryi, "--disable_extensions"] + args, stdin: stdin) }
    }

    /// Events are off in the shell: every publisher and subscriber is listed, none active.
    @Test func osqueryEventsListsPublishersAndSubscribersWhileEventsAreOff() async {
        let run = await osqueryiProcess(["--json", "SELECT name, publisher, type, active FROM osquery_events WHERE type != 'counter'"])
        #expect(run.rc == 0, "\(run.err)")
        let found = rows(run)
        let publishers = Set(found.filter { $0["type"] == "publisher" }.compactMap { $0["name"] })
        let subscribers = Dictionary(found.filter { $0["type"] == "subscriber" }.map { ($0["name"] ?? "", $0["publisher"] ?? "") }) { a, _ in a }
        #expect(publishers.isSuperset(of: ["inotify", "auditeventpublisher", "udev", "syslog"]))
        #expect(subscribers["file_events"] == "inotify")
        #expect(subscribers["process_events"] == "auditeventpublisher")
        #expect(subscribers["hardware_events"] == "udev")
        #expect(found.allSatisfy { $0["active"] == "0" }, "nothing runs with --disable_events")
    }

    /// yara_file scans the file named with a rule from the query, as the `yara` CLI would.
    @Test func yaraFileScansWithAQueryRule() async throws {
        let dir = try scratchDirectory("shell-yara")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "hello marker-7731 world".write(toFile: dir + "/hit.txt", atomically: false, encoding: .utf8)
        try "nothing here".write(toFile: dir + "/miss.txt", atomically: false, encoding: .utf8)
        let rule = "rule seven { strings: $a = \"marker-7731\" condition: $a }"
        let run = await osqueryiProcess([
            "--json",
            "SELECT path, matches, count FROM yara_file WHERE path LIKE '\(dir)/%.txt' AND sigrule = '\(rule)' ORDER BY path",
        ])
        #expect(run.rc == 0, "\(run.err)")
        #expect(rows(run) == [
            ["path": dir + "/hit.txt", "matches": "seven", "count": "1"],
            ["path": dir + "/miss.txt", "matches": "", "count": "0"],
        ])
        // Without a rule osquery's error is logged and there are no rows.
        let bare = await osqueryiProcess(["--json", "SELECT * FROM yara_file WHERE path = '\(dir)/hit.txt'"])
        #expect(bare.rc == 0)
        #expect(rows(bare).isEmpty)
        #expect(bare.err.contains("Query must specify sig_group, sigfile, sigrule, or sigurl for scan"))
    }

    /// The shell's store is ephemeral: no carves; a carve request cannot be sent from here, says
    /// so once, and the shell goes on answering.
    @Test func carvesListsNoneAndRefusesRequestsInTheShell() async throws {
        let dir = try scratchDirectory("shell-carves")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "data".write(toFile: dir + "/f", atomically: false, encoding: .utf8)
        let listed = await osqueryiProcess(["--json", "SELECT * FROM carves"])
        #expect(listed.rc == 0, "\(listed.err)")
        #expect(listed.out == "[\n\n]\n")
        let script = """
            SELECT count(*) AS n FROM carves WHERE path = '\(dir)/f' AND carve = 1;
            SELECT count(*) AS n FROM carves WHERE path = '\(dir)/f' AND carve = 1;
            SELECT 'still-serving' AS done;

            """
        let requested = await osqueryiProcess(["--disable_carver=false", "--list", "--header=false"], stdin: script)
        #expect(requested.rc == 0, "\(requested.err)")
        #expect(requested.out == "0\n0\nstill-serving\n")
        let refusals = requested.err.components(separatedBy: "Carving needs osqueryd").count - 1
        #expect(refusals == 1, "\(requested.err)")
    }
}
