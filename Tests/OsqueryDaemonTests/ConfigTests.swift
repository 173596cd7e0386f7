import Foundation
import OsqueryEngine
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

/// A fresh directory under /tmp, removed by `cleanup()`.
struct ConfigDir {
    let path: String

    init() {
        var template = Array("/tmp/osq-conf-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let file = path + "/" + name
        try? FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
        return file
    }

    func remove(_ name: String) { try? FileManager.default.removeItem(atPath: path + "/" + name) }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Collects what a loader logs.
final class LogLines: Sendable {
    let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    var sink: @Sendable (StatusLog.Severity, String) -> Void {
        { [self] _, line in lines.withLock { $0.append(line) } }
    }
}

func loader(_ dir: ConfigDir, main: String = "osquery.conf", flags: Flags = Flags(), log: LogLines = LogLines()) -> ConfigLoader {
    ConfigLoader(source: FilesystemConfigSource(path: dir.path + "/" + main), flags: flags, log: log.sink)
}

let linuxHost = HostFacts(hostname: "host-a", osqueryVersion: "5.23.1")
let noDiscovery = PackDiscovery(refreshInterval: { 3600 }) { _ in true }

@Suite struct ConfigTests {
    @Test func scheduleBecomesPackMainWithEveryKey() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write(
            "osquery.conf",
            """
            {
              "schedule": {
                "b_procs": {"query": "SELECT * FROM processes", "interval": 60, "snapshot": true,
                            "removed": false, "denylist": false, "startup_priority": 2,
                            "platform": "linux", "version": "5.0.0", "shard": 100,
                            "description": "all processes", "value": "inventory"},
                "a_default": {"query": "SELECT 1"},
                "c_strings": {"query": "SELECT 2", "interval": "120", "snapshot": "true", "removed": "false",
                              "startup_priority": "1"}
              }
            }
            """)
        let config = try loader(dir).load()
        #expect(config.packs.count == 1)
        let main = try #require(config.packs.first)
        #expect(main.name == "main" && main.source == dir.path + "/osquery.conf")
        // Order: startup_priority (unset = 0), then name.
        #expect(main.queries.map(\.name) == ["a_default", "c_strings", "b_procs"])
        let b = main.queries[2]
        #expect(b == ScheduledQuery(
            name: "b_procs", pack: "main", queryName: "b_procs", sql: "SELECT * FROM processes", interval: 60,
            snapshot: true, removed: false, denylist: false, startupPriority: 2, platform: "linux", version: "5.0.0",
            shard: 100, description: "all processes", value: "inventory"))
        let a = main.queries[0]
        #expect(a.interval == 3600 && !a.snapshot && a.removed && a.denylist && a.startupPriority == nil)
        let c = main.queries[1]
        #expect(c.interval == 120 && c.snapshot && !c.removed && c.startupPriority == 1)
        #expect(config.warnings.isEmpty, "\(config.warnings)")
    }

    @Test func defaultIntervalComesFromTheFlag() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write("osquery.conf", #"{"schedule": {"q": {"query": "SELECT 1"}}}"#)
        let flags = Flags()
        try flags.set("schedule_default_interval", "900")
        #expect(try loader(dir, flags: flags).load().packs[0].queries[0].interval == 900)
        // A config option sets it before the schedule is read.
        dir.write("osquery.conf", #"{"options": {"schedule_default_interval": 30}, "schedule": {"q": {"query": "SELECT 1"}}}"#)
        #expect(try loader(dir).load().packs[0].queries[0].interval == 30)
    }

    @Test func badIntervalsAndNamesAreSkippedWithFileLineAndKey() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let file = dir.write(
            "osquery.conf",
            """
            {
              "schedule": {
                "ok": {"query": "SELECT 1", "interval": 604800},
                "zero": {"query": "SELECT 1", "interval": 0},
                "too_long": {"query": "SELECT 1", "interval": 604801},
                "words": {"query": "SELECT 1", "interval": "hourly"},
                "object": {"query": "SELECT 1", "interval": {}},
                "negative": {"query": "SELECT 1", "interval": -60},
                "no_query": {"interval": 60},
                "empty_query": {"query": "", "interval": 60},
                "query.x": {"query": "SELECT 1"},
                "cache.x": {"query": "SELECT 1"},
                "config_views.x": {"query": "SELECT 1"},
                "my_epoch": {"query": "SELECT 1"},
                "my_counter": {"query": "SELECT 1"},
                "not_an_object": "SELECT 1"
              }
            }
            """)
        let log = LogLines()
        let config = try loader(dir, log: log).load()
        #expect(config.packs[0].queries.map(\.name) == ["ok"])
        #expect(config.warnings.count == 13, "\(config.warnings)")
        #expect(log.all == config.warnings)
        func warning(_ line: Int) -> String? { config.warnings.first { $0.hasPrefix("config \(file) line \(line):") } }
        #expect(warning(4)?.contains("Query has invalid interval: zero: 0") == true)
        #expect(warning(5)?.contains("Query has invalid interval: too_long: 604801") == true)
        #expect(warning(6)?.contains(#"schedule "words": "interval" must be a number of seconds (1...604800), not "hourly"; skipped"#) == true)
        #expect(warning(7)?.contains("\"interval\" must be a number") == true)
        #expect(warning(9)?.contains(#"schedule "no_query": "query" must be a string"#) == true)
        #expect(warning(10)?.contains("\"query\" is empty") == true)
        #expect(warning(11)?.contains("Invalid query name: query.x starts with one of the reserved prefixes: query., cache., config_views.") == true)
        #expect(warning(15)?.contains("Invalid query name: my_counter ends with one of the reserved suffixes: epoch, counter") == true)
        #expect(warning(16)?.contains(#"schedule "not_an_object" must be an object"#) == true)
    }

    @Test func inlinePacksPathPacksAndTheDelimiter() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let packFile = dir.write(
            "packs/ir.conf",
            """
            // an osquery pack file with comments
            {
              "platform": "linux", "version": "1.0.0", "shard": "100",
              "discovery": ["SELECT 1"],
              "queries": {
                "crontab": {"query": "SELECT * FROM crontab", "interval": "3600"},
                "crontab": {"query": "SELECT 'duplicate'", "interval": 10}
              }
            }
            """)
        dir.write(
            "osquery.conf",
            """
            {
              "packs": {
                "inline": {"queries": {"q": {"query": "SELECT 1", "interval": 60}}},
                "incident-response": "\(packFile)",
                "missing": "\(dir.path)/packs/nope.conf"
              }
            }
            """)
        let log = LogLines()
        let config = try loader(dir, log: log).load()
        #expect(config.packs.map(\.name) == ["inline", "incident-response"])
        let ir = config.packs[1]
        #expect(ir.platform == "linux" && ir.version == "1.0.0" && ir.shard == 100 && ir.discovery == ["SELECT 1"])
        let scheduled = config.scheduledQueries(host: linuxHost, discovery: noDiscovery)
        // The duplicate name inside the pack is dropped: the first one stays.
        #expect(scheduled.map(\.name) == ["pack_inline_q", "pack_incident-response_crontab"])
        #expect(scheduled[1].sql == "SELECT * FROM crontab" && scheduled[1].interval == 3600)
        #expect(scheduled[1].pack == "incident-response" && scheduled[1].queryName == "crontab")
        #expect(config.warnings.contains { $0.contains("pack \"missing\"") && $0.contains("is not a valid path") && $0.contains("line 5") })

        // --pack_delimiter (here from the config's own options).
        dir.write(
            "osquery.conf", #"{"options": {"pack_delimiter": "/"}, "packs": {"inline": {"queries": {"q": {"query": "SELECT 1"}}}}}"#)
        let flags = Flags()
        let slashed = try loader(dir, flags: flags).load()
        #expect(slashed.scheduledQueries(host: linuxHost, discovery: noDiscovery).map(\.name) == ["pack/inline/q"])
        #expect(flags.value(named: "pack_delimiter") == "/")
    }

    @Test func multiPackGlobNamesPacksByFileStem() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write("packs/alpha.conf", #"{"queries": {"one": {"query": "SELECT 1", "interval": 60}}}"#)
        dir.write("packs/beta.json", "# comment\n{\"queries\": {\"two\": {\"query\": \"SELECT 2\", \"interval\": \"30\"}}}")
        dir.write("packs/broken.conf", "{ not json")
        try FileManager.default.createDirectory(atPath: dir.path + "/packs/subdir", withIntermediateDirectories: true)
        dir.write("osquery.conf", "{\"packs\": {\"*\": \"\(dir.path)/packs/*\"}}")
        let config = try loader(dir).load()
        #expect(config.packs.map(\.name) == ["alpha", "beta"])
        #expect(config.scheduledQueries(host: linuxHost, discovery: noDiscovery).map(\.name) == ["pack_alpha_one", "pack_beta_two"])
        // osquery's '%' wildcard works too.
        dir.write("osquery.conf", "{\"packs\": {\"*\": \"\(dir.path)/packs/%.conf\"}}")
        #expect(try loader(dir).load().packs.map(\.name) == ["alpha"])
    }

    @Test func dotDFilesMergeAfterTheMainFileInLexicalOrder() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write("osquery.conf", #"{"options": {"custom_a": "main", "custom_b": "main"}, "schedule": {"m": {"query": "SELECT 1"}}}"#)
        dir.write("osquery.conf.d/20-b.conf", #"{"options": {"custom_b": "20"}, "schedule": {"x": {"query": "SELECT 20"}}}"#)
        dir.write("osquery.conf.d/10-a.conf", #"{"options": {"custom_a": "10", "custom_b": "10"}, "schedule": {"y": {"query": "SELECT 10"}}}"#)
        dir.write("osquery.conf.d/30-c.txt", #"{"options": {"custom_a": "ignored"}}"#)
        let flags = Flags()
        let config = try loader(dir, flags: flags).load()
        let main = dir.path + "/osquery.conf"
        #expect(config.sourceOrder == [main, main + ".d/10-a.conf", main + ".d/20-b.conf"])
        #expect(config.options["custom_a"] == "10" && config.options["custom_b"] == "20")
        #expect(flags.value(named: "custom_a") == "10" && flags.value(named: "custom_b") == "20")
        #expect(config.packs.map(\.source) == config.sourceOrder)
        #expect(config.scheduledQueries(host: linuxHost, discovery: noDiscovery).map(\.name) == ["m", "y", "x"])
        #expect(Set(config.sources.keys) == Set(config.sourceOrder))
        #expect(config.hashes[main]?.count == 40)
    }

    @Test func missingMainFileIsAClearError() {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write("osquery.conf.d/a.conf", "{}")
        #expect(throws: DaemonError("config file does not exist: \(dir.path)/osquery.conf")) { try loader(dir).load() }
    }

    @Test func decoratorsAndViews() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let file = dir.write(
            "osquery.conf",
            """
            {
              "decorators": {
                "load": ["SELECT uuid AS host_uuid FROM system_info", 7],
                "always": ["SELECT user AS username FROM logged_in_users LIMIT 1"],
                "interval": {
                  "3600": ["SELECT total_seconds AS uptime FROM uptime"],
                  "90": ["SELECT 1"],
                  "abc": ["SELECT 2"],
                  "120": "SELECT 3"
                }
              },
              "views": {"kernel": "SELECT * FROM kernel_info", "empty": "", "bad": 1}
            }
            """)
        dir.write("osquery.conf.d/x.conf", #"{"decorators": {"interval": {"3600": ["SELECT 9"]}}, "views": {"kernel": "SELECT 2"}}"#)
        let config = try loader(dir).load()
        #expect(config.decorators == Decorators(
            load: ["SELECT uuid AS host_uuid FROM system_info"],
            always: ["SELECT user AS username FROM logged_in_users LIMIT 1"],
            interval: [3600: ["SELECT total_seconds AS uptime FROM uptime", "SELECT 9"]]))
        #expect(config.warnings.contains { $0.hasPrefix("config \(file) line 7:") && $0.contains("Invalid decorator interval rate 90") })
        #expect(config.warnings.contains { $0.hasPrefix("config \(file) line 8:") && $0.contains("Invalid decorator interval rate abc") })
        #expect(config.warnings.contains { $0.hasPrefix("config \(file) line 9:") && $0.contains("Invalid decorator interval rate 120 configuration") })
        // A later source's view of the same name wins; empty and non-string views are skipped.
        #expect(config.views == ["kernel": "SELECT 2"])
        #expect(config.warnings.contains { $0.contains("line 12") && $0.contains("view \"bad\"") })
    }

    @Test func filePathsAndEventsAreKept() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write(
            "osquery.conf",
            """
            {"file_paths": {"etc": ["/etc/%%", ""], "ssh": ["/home/%/.ssh/%%"]},
             "file_paths_query": {"tmp": ["SELECT '/tmp' AS path"]},
             "exclude_paths": {"etc": ["/etc/mtab"]},
             "file_accesses": ["ssh", "etc"],
             "events": {"disable_subscribers": ["yara_events"]}}
            """)
        dir.write("osquery.conf.d/a.conf", #"{"file_paths": {"etc": ["/usr/local/etc/%%"]}, "file_accesses": ["etc"]}"#)
        let config = try loader(dir).load()
        #expect(config.filePaths == ["etc": ["/etc/%%", "/usr/local/etc/%%"], "ssh": ["/home/%/.ssh/%%"]])
        #expect(config.filePathsQuery == ["tmp": ["SELECT '/tmp' AS path"]])
        #expect(config.excludePaths == ["etc": ["/etc/mtab"]])
        #expect(config.fileAccesses == ["etc", "ssh"])
        #expect(config.events == ["disable_subscribers": ["yara_events"]])

        // A pack may carry its own file paths; they stay with the pack.
        dir.write("osquery.conf.d/a.conf", #"{"packs": {"fim": {"file_paths": {"bin": ["/usr/bin/%%"]}, "file_accesses": ["bin"], "exclude_paths": {"bin": 1}}}}"#)
        let withPack = try loader(dir).load()
        let fim = try #require(withPack.packs.first { $0.name == "fim" })
        #expect(fim.filePaths == ["bin": ["/usr/bin/%%"]] && fim.fileAccesses == ["bin"] && fim.excludePaths.isEmpty)
        #expect(withPack.warnings.contains { $0.contains("pack \"fim\": exclude_paths category \"bin\" must be an array of strings") })
        #expect(withPack.filePaths["bin"] == nil)
    }

    @Test func syntaxErrorsNameTheFileAndLineAndKeepTheLastGoodConfig() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let file = dir.write("osquery.conf", #"{"schedule": {"q": {"query": "SELECT 1", "interval": 60}}}"#)
        let l = loader(dir)
        let first = try l.load()
        dir.write("osquery.conf", "{\n  \"schedule\": {\n    \"q\": {\"query\": \"SELECT 2\" \"interval\": 60}\n  }\n}\n")
        do {
            _ = try l.refresh()
            Issue.record("a broken config loaded")
        } catch {
            #expect(error.message.hasPrefix("config \(file) line 3 column "), "\(error.message)")
            #expect(error.message.contains("expected ',' or '}' after the member \"query\""))
            #expect(error.exitCode == 1)
        }
        #expect(l.current?.packs == first.packs)
        do {
            _ = try l.load()
            Issue.record("a broken config loaded")
        } catch {}
        #expect(l.current?.packs == first.packs)
    }

    @Test func refreshSkipsUnchangedSourcesAndReplacesAChangedSourcesPacks() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let pack = dir.write("p.conf", #"{"queries": {"a": {"query": "SELECT 1"}}}"#)
        dir.write("osquery.conf", "{\"packs\": {\"p\": \"\(pack)\"}, \"schedule\": {\"m\": {\"query\": \"SELECT 1\"}}}")
        dir.write("osquery.conf.d/x.conf", #"{"packs": {"x": {"queries": {"old": {"query": "SELECT 1"}}}}}"#)
        let l = loader(dir)
        let first = try l.load()
        #expect(try l.refresh() == nil)
        // The pack file changed but its source text did not: osquery does not re-read it.
        dir.write("p.conf", #"{"queries": {"b": {"query": "SELECT 1"}}}"#)
        #expect(try l.refresh() == nil)
        // A changed .d file replaces its packs; the main file's packs are kept as they were.
        dir.write("osquery.conf.d/x.conf", #"{"packs": {"x": {"queries": {"new": {"query": "SELECT 1"}}}}}"#)
        let second = try #require(try l.refresh())
        #expect(second.scheduledQueries(host: linuxHost, discovery: noDiscovery).map(\.name) == ["m", "pack_p_a", "pack_x_new"])
        #expect(second.bySource[dir.path + "/osquery.conf"] == first.bySource[dir.path + "/osquery.conf"])
        // A vanished source takes its packs with it.
        dir.remove("osquery.conf.d/x.conf")
        let third = try #require(try l.refresh())
        #expect(third.packs.map(\.name) == ["main", "p"])
        #expect(l.current?.packs.map(\.name) == ["main", "p"])
    }

    @Test func optionsAreAppliedAsOsqueryDoes() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write(
            "osquery.conf",
            """
            {"options": {
              "host_identifier": "uuid",
              "logger_event_type": false,
              "schedule_splay_percent": 50,
              "distributed_interval": "15",
              "config_path": "/elsewhere.conf",
              "no_such_flag": 1,
              "custom_team": "blue",
              "custom_list": ["a", 1],
              "custom_null": null,
              "custom_empty": "",
              "schedule_default_interval": "not a number"
            }}
            """)
        let flags = Flags()
        try flags.parse(["--host_identifier=hostname", "--distributed_interval=99"])
        let log = LogLines()
        let config = try loader(dir, flags: flags, log: log).load()
        // A config option overrides command-line values of non-CLI flags (osquery's documented precedence).
        #expect(flags.value(named: "host_identifier") == "uuid")
        #expect(flags.value(named: "distributed_interval") == "15")
        #expect(flags.value(named: "logger_event_type") == "false")
        #expect(flags.value(named: "schedule_splay_percent") == "50")
        // CLI-only flags are ignored with a warning.
        #expect(flags.value(named: "config_path") == "/etc/osquery/osquery.conf")
        #expect(log.all.contains { $0.contains("The CLI only flag --config_path set via config file will be ignored") })
        #expect(log.all.contains { $0.contains("Cannot set unknown or invalid flag: no_such_flag") })
        #expect(flags.definition("no_such_flag") == nil)
        // custom_ options become string flags (osquery_flags shows them).
        #expect(flags.definition("custom_team")?.type == .string)
        #expect(flags.value(named: "custom_team") == "blue")
        #expect(flags.value(named: "custom_list") == #"["a",1]"#)
        #expect(log.all.contains { $0.contains("Cannot parse unknown value type for option: custom_null") })
        #expect(flags.definition("custom_empty") == nil)
        #expect(flags.value(named: "schedule_default_interval") == "3600")
        #expect(log.all.contains { $0.contains("schedule_default_interval") })
        #expect(config.options["host_identifier"] == "uuid" && config.options["logger_event_type"] == "false")
    }

    @Test func aRepeatedPackNameInOneSourceReplacesTheEarlierPack() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write(
            "osquery.conf",
            #"{"packs": {"p": {"queries": {"old": {"query": "SELECT 1"}}}, "q": {}, "p": {"queries": {"new": {"query": "SELECT 2"}}}}}"#)
        let config = try loader(dir).load()
        #expect(config.packs.map(\.name) == ["q", "p"])
        #expect(config.packs[1].queries.map(\.queryName) == ["new"])
    }

    @Test func refreshDelayFollowsTheRefreshFlags() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let flags = Flags()
        let l = loader(dir, flags: flags)
        #expect(l.refreshDelay(lastAttemptFailed: false) == 0)
        #expect(l.refreshDelay(lastAttemptFailed: true) == 0)
        try flags.set("config_refresh", "60")
        #expect(l.refreshDelay(lastAttemptFailed: false) == 60)
        #expect(l.refreshDelay(lastAttemptFailed: true) == 300)
        try flags.set("config_accelerated_refresh", "5")
        #expect(l.refreshDelay(lastAttemptFailed: true) == 5)
    }

    @Test func thisHostsFacts() {
        let host = HostFacts.current()
        #expect(!host.hostname.isEmpty)
        #expect(host.osqueryVersion == OsqueryVersion.sdkVersion)
        #expect(host.shard == HostFacts.shard(of: host.hostname))
    }

    @Test func optionValueConversions() {
        #expect(ConfigOptions.text(of: .bool(true)) == "true")
        #expect(ConfigOptions.text(of: .int(-3)) == "-3")
        #expect(ConfigOptions.text(of: .uint(UInt64.max)) == "18446744073709551615")
        #expect(ConfigOptions.text(of: .double(2.0)) == "2")
        #expect(ConfigOptions.text(of: .double(0.5)) == "0.5")
        #expect(ConfigOptions.text(of: .json("{}")) == "{}")
        #expect(ConfigOptions.text(of: .null) == nil)
    }
}
