import Foundation
import OsqueryEngine
import OsqueryEvents
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

let yaraRuleText = """
    rule osq_marker : tagA tagB {
      strings:
        $a = "osquery-yara-marker"
      condition:
        $a
    }
    rule never_matches {
      condition:
        false
    }

    """

/// A FIM core whose `tmp` category (the test's directory) is scanned with group `g1`; the
/// rules live beside the watched directory, not in it.
func yaraCore(_ tag: String, flags: [String: String] = [:], extraGroups: [String: [String]] = [:]) throws -> (FIMCore, rules: String) {
    let rulesDir = try scratchDirectory("yara-rules-" + tag)
    let rules = rulesDir + "/rules.yar"
    write(rules, yaraRuleText)
    let core = try FIMCore("yara-" + tag, flags: ["yara_delay": "0"].merging(flags) { $1 }) { dir in
        var c = config(["tmp": [dir + "/%"]])
        c.yaraSignatures = ["g1": [rules]].merging(extraGroups) { $1 }
        c.yaraFilePaths = ["tmp": ["g1"] + extraGroups.keys.sorted()]
        return c
    }
    return (core, rules)
}

extension FIMCore {
    func yaraRows(_ filter: String = "1") -> [[String: String]] {
        (try? database.execute("SELECT * FROM yara_events WHERE \(filter)").rowMaps(nullValue: "NULL")) ?? []
    }
}

@Suite struct YaraEventsTests {
    @Test func aFileMatchingARuleAppearsInYaraEventsThroughFIM() async throws {
        let (core, rules) = try yaraCore("events")
        let clean = core.dir + "/clean.txt"
        let infected = core.dir + "/infected.txt"
        write(clean, "nothing to see here")
        write(infected, "prefix osquery-yara-marker suffix")
        #expect(await eventually { !core.yaraRows("target_path = '\(infected)'").isEmpty })
        let row = try #require(core.yaraRows("target_path = '\(infected)'").first)
        #expect(row["category"] == "tmp")
        #expect(["CREATED", "UPDATED"].contains(row["action"] ?? ""))
        #expect(row["matches"] == "osq_marker")
        #expect(row["count"] == "1")
        #expect(row["tags"] == "tagA,tagB")
        #expect(row["strings"] == "$a:7")
        // The yara tool (Debian's yara, from scripts/install-test-deps.sh) reports the same match
        // at the same offset.
        if access("/usr/bin/yara", X_OK) == 0 {
            let cli = try run("yara", ["-s", rules, infected])
            #expect(cli.contains("osq_marker \(infected)"))
            #expect(cli.contains("0x7:$a: osquery-yara-marker"))
        }
        // The clean file was scanned (file_events saw it first) and gave no row, as in osquery.
        #expect(await eventually { !core.rows("target_path = '\(clean)'").isEmpty })
        #expect(core.yaraRows("target_path = '\(clean)'").isEmpty)
        let columns = try core.database.execute("SELECT *, eid FROM yara_events LIMIT 1").columns
        #expect(columns == ["target_path", "category", "action", "matches", "count", "strings", "tags", "time", "eid"])
        let subscriber = try core.database.execute("SELECT publisher, active FROM osquery_events WHERE name = 'yara_events'").rowMaps()
        #expect(subscriber.first?["publisher"] == "inotify")
        #expect(subscriber.first?["active"] == "1")
    }

    @Test func theYaraTableScansWithAGroupAFileOrARule() async throws {
        let (core, rules) = try yaraCore("table")
        let infected = core.dir + "/infected.bin"
        write(infected, "xx osquery-yara-marker")
        write(core.dir + "/other.bin", "no marker")
        let byFile = try core.database.execute("SELECT * FROM yara WHERE path = '\(infected)' AND sigfile = '\(rules)'").rowMaps()
        #expect(byFile.count == 1)
        #expect(byFile.first?["matches"] == "osq_marker")
        #expect(byFile.first?["sigfile"] == rules)
        #expect(byFile.first?["strings"] == "$a:3")
        let byGroup = try core.database.execute("SELECT path, matches, sig_group FROM yara_file WHERE path = '\(infected)' AND sig_group = 'g1'")
            .rowMaps()
        #expect(byGroup.first?["sig_group"] == "g1" && byGroup.first?["matches"] == "osq_marker")
        // A rule from the query: its strings stay hidden (--enable_yara_string is off). The alias
        // view, as osquery's (`SELECT *`), has no hidden columns: sigrule goes to yara_file.
        let byRule = try core.database.execute(
            "SELECT matches, count, strings, sigrule FROM yara_file WHERE path = '\(infected)' AND sigrule = 'rule from_query { strings: $m = \"marker\" condition: $m }'"
        ).rowMaps()
        #expect(byRule.first?["matches"] == "from_query")
        #expect(byRule.first?["strings"] == "")
        #expect(byRule.first?["sigrule"]?.hasPrefix("rule from_query") == true)
        // LIKE: every file of the directory, each with its own result.
        let like = try core.database.execute("SELECT path, count FROM yara WHERE path LIKE '\(core.dir)/%' AND sigfile = '\(rules)' ORDER BY path")
            .rowMaps()
        #expect(like.map { $0["path"] ?? "" } == [infected, core.dir + "/other.bin"])
        #expect(like.map { $0["count"] ?? "" } == ["1", "0"])
        // A rule with 1 200 strings that all match (fast mode reports each string once): the
        // strings column keeps the first 1 000.
        let many = core.dir + "/many.bin"
        write(many, (0..<1200).map { "k\($0);" }.joined())
        let manyRules = "rule many { strings: " + (0..<1200).map { "$s\($0) = \"k\($0);\" " }.joined() + "condition: all of them }"
        write(core.dir + ".many.yar", manyRules)
        defer { unlink(core.dir + ".many.yar") }
        let manyRow = try core.database.execute("SELECT count, strings FROM yara WHERE path = '\(many)' AND sigfile = '\(core.dir).many.yar'")
            .rowMaps()
        #expect(manyRow.first?["count"] == "1")
        #expect(manyRow.first?["strings"]?.split(separator: ",").count == 1000)
        #expect(manyRow.first?["strings"]?.hasPrefix("$s0:0,$s1:3,") == true)
        // No signature: osquery's error in the log and no rows, the query itself succeeds.
        #expect(try core.database.execute("SELECT * FROM yara WHERE path = '\(infected)'").rowCount == 0)
    }

    @Test func hostileRuleFilesGiveAClearErrorAndTheCoreKeepsScanning() async throws {
        let (core, rules) = try yaraCore("hostile", flags: ["read_max": "65536"], extraGroups: ["broken": ["/nonexistent/rules.yar"]])
        let dir = core.dir + ".bad"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        write(dir + "/syntax.yar", "rule broken { condition: $undefined }")
        write(dir + "/huge.yar", String(repeating: "// padding\n", count: 10_000))
        mkfifo(dir + "/fifo.yar", 0o600)
        // A compiled rule file: yarac's output when Debian's yara is there, else its magic.
        let compiled = dir + "/compiled.yarc"
        if access("/usr/bin/yarac", X_OK) == 0 {
            _ = try run("yarac", [rules, compiled])
        } else {
            write(compiled, "YARA\u{1}\u{2}")
        }
        #expect(FileManager.default.fileExists(atPath: compiled))
        let target = core.dir + "/t.txt"
        write(target, "osquery-yara-marker")
        for bad in ["syntax.yar", "huge.yar", "fifo.yar", "compiled.yarc", "missing.yar", ""] {
            let r = try core.database.execute("SELECT * FROM yara WHERE path = '\(target)' AND sigfile = '\(dir)/\(bad)'")
            #expect(r.rowCount == 0, "\(bad)")
        }
        #expect(throws: Never.self) { try core.database.execute("SELECT * FROM yara_file WHERE path = '\(target)' AND sigrule = 'rule {'") }
        #expect(Yara.compile(files: [dir + "/syntax.yar"], maxBytes: 1 << 20).failureMessage?.contains("syntax.yar(1): error: undefined string") == true)
        #expect(Yara.compile(files: [dir + "/huge.yar"], maxBytes: 65536).failureMessage?.contains("larger than --read_max") == true)
        #expect(Yara.compile(files: [dir + "/fifo.yar"], maxBytes: 65536).failureMessage?.contains("not a regular file") == true)
        #expect(Yara.compile(files: [compiled], maxBytes: 1 << 20).failureMessage?.contains("compiled rules are not loaded") == true)
        // The good group still scans (through FIM too), and the broken group is counted.
        #expect(try core.database.execute("SELECT * FROM yara WHERE path = '\(target)' AND sigfile = '\(rules)'").rowCount == 1)
        #expect(await eventually { !core.yaraRows("target_path = '\(target)'").isEmpty })
        #expect(try core.database.strings("SELECT events FROM osquery_events WHERE name = 'yara.compile_errors'", "events").first.map { Int($0) ?? 0 } ?? 0 >= 1)
    }
}

extension YaraEventsTests {
    /// A rule that would run for hours on a 100 KB file is stopped by --yara_scan_timeout, in
    /// yara_events (counted) and in the yara table; smaller files are still scanned.
    @Test func aRuleThatRunsTooLongIsStoppedByTheScanTimeout() async throws {
        let slowDir = try scratchDirectory("yara-slow")
        defer { try? FileManager.default.removeItem(atPath: slowDir) }
        let slow = slowDir + "/slow.yar"
        write(slow, "rule slow { condition: for all i in (0..filesize) : ( for all j in (0..filesize) : ( uint8(i) == uint8(j) ) ) }\n")
        let (core, _) = try yaraCore("timeout", flags: ["yara_scan_timeout": "1"], extraGroups: ["slow": [slow]])
        let big = core.dir + "/big.bin"
        write(big, String(repeating: "a", count: 100_000))
        #expect(await eventually { core.yaraCounter("scan_timeouts") >= 1 })
        #expect(core.yaraRows("target_path = '\(big)'").isEmpty)
        #expect(try core.database.execute("SELECT * FROM yara WHERE path = '\(big)' AND sigfile = '\(slow)'").rowCount == 0)
        let small = core.dir + "/small.txt"
        write(small, "osquery-yara-marker")
        #expect(await eventually { core.yaraRows("target_path = '\(small)'").first?["matches"] == "osq_marker" })
    }
}

extension FIMCore {
    func yaraCounter(_ name: String) -> Int {
        Int((try? database.strings("SELECT events FROM osquery_events WHERE name = 'yara.\(name)'", "events").first) ?? nil ?? "") ?? -1
    }
}

extension Result where Failure == Yara.Failure {
    var failureMessage: String? {
        if case .failure(let e) = self { return e.message }
        return nil
    }
}

extension YaraEventsTests {
    /// yara_process scans a child's memory (a marker only in its arguments) with a rule from
    /// the query, a rule file and the config's group; a pid
    /// that does not exist, a kernel thread and this process give no rows, and the core keeps
    /// answering. The schema is osquery's (specs/yara_process.table).
    @Test(.enabled(if: access("/usr/bin/python3", X_OK) == 0))
    func yaraProcessScansAProcessMemory() async throws {
        let (core, _) = try yaraCore("process")
        let marker = "osq-proc-marker-\(UInt32.random(in: 1...UInt32.max))"
        // Started with posix_spawn and reaped by its pid (not through Foundation's Process,
        // whose exit watch this test's process may not have set up); the marker is only in its
        // arguments.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        Spawn.closeInheritedDescriptors(in: &actions)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        let argv = ["/usr/bin/python3", "-c", "import time; time.sleep(1000)", marker]
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid: pid_t = 0
        #expect(posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ) == 0)
        defer {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        // Python has started (and holds its arguments) once /proc shows them.
        #expect(await eventually { ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").contains(marker) })
        let rule = "rule proc_marker : tagP { strings: $m = \"\(marker)\" condition: $m }"
        let byRule = try core.database.execute(
            "SELECT pid, matches, count, tags, strings, sigrule, sig_group, sigfile FROM yara_process WHERE pid = \(pid) AND sigrule = '\(rule)'"
        ).rowMaps()
        #expect(byRule.count == 1)
        #expect(byRule.first?["pid"] == String(pid))
        #expect(byRule.first?["matches"] == "proc_marker")
        #expect(byRule.first?["count"] == "1")
        #expect(byRule.first?["tags"] == "tagP")
        #expect(byRule.first?["strings"] == "")
        #expect(byRule.first?["sigrule"] == rule)
        #expect(byRule.first?["sig_group"] == "" && byRule.first?["sigfile"] == "")
        let ruleFile = core.dir + ".proc.yar"
        write(ruleFile, rule)
        defer { unlink(ruleFile) }
        // The same rule through sigfile: strings show (as for yara_file).
        let byFile = try core.database.execute("SELECT matches, strings FROM yara_process WHERE pid = \(pid) AND sigfile = '\(ruleFile)'").rowMaps()
        #expect(byFile.first?["matches"] == "proc_marker")
        #expect(byFile.first?["strings"]?.hasPrefix("$m:") == true)
        // The config's group scans it too and finds nothing: a row with count 0, as osquery.
        let byGroup = try core.database.execute("SELECT count, matches, sig_group FROM yara_process WHERE pid = \(pid) AND sig_group = 'g1'").rowMaps()
        #expect(byGroup.map { [$0["count"] ?? "", $0["matches"] ?? "", $0["sig_group"] ?? ""] } == [["0", "", "g1"]])
        // No such process, a kernel thread (kthreadd), this process, 0 and a negative pid: no rows.
        let pidMax = Int((try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 4_194_304
        let kthreadd = (try? String(contentsOfFile: "/proc/2/comm", encoding: .utf8)) == "kthreadd\n"
        for other in [pidMax + 1, getpid(), 0, -5] + (kthreadd ? [2] : []) {
            #expect(try core.database.execute("SELECT * FROM yara_process WHERE pid = \(other) AND sigrule = '\(rule)'").rowCount == 0, "pid \(other)")
        }
        // pid is required; a rule is required (osquery's error logged, no rows).
        #expect(throws: (any Error).self) { try core.database.execute("SELECT * FROM yara_process WHERE sigrule = '\(rule)'") }
        #expect(try core.database.execute("SELECT * FROM yara_process WHERE pid = \(pid)").rowCount == 0)
        #expect(try core.database.execute("SELECT count FROM yara_process WHERE pid = \(pid) AND sigrule = '\(rule)'").rowMaps().first?["count"] == "1")
        let columns = try core.database.execute("SELECT * FROM yara_process WHERE pid = \(pid) AND sig_group = 'g1'").columns
        #expect(columns == ["pid", "matches", "count", "sig_group", "sigfile", "strings", "tags"])
        // osquery's spec: yara_file's columns with `pid` (index, required) for `path`, no alias.
        let schema = YaraTable.processSchema
        #expect(schema.columns.first.map { $0.name == "pid" && $0.type == .integer && $0.options == [.index, .required] } == true)
        #expect(schema.columns.dropFirst().map(\.name) == YaraTable.schema.columns.dropFirst().map(\.name))
        #expect(schema.columns.dropFirst().map(\.options) == YaraTable.schema.columns.dropFirst().map(\.options))
        #expect(schema.aliases.isEmpty && schema.attributes == [])
    }
}
