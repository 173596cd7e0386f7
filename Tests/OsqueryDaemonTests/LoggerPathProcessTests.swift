import Foundation
import ProtocolFixture
import Testing

/// Issue 15 item 5: `logger_path` is an ordinary flag in osquery, so a config's options set it,
/// and osquery reads the config before it sets up its loggers.
@Suite struct LoggerPathProcessTests {
    /// The option overrides `--logger_path` (osquery's precedence): results and status logs go to
    /// the config's directory, the status lines logged while the config was read included.
    @Test func aConfigOptionChoosesTheLogDirectory() async throws {
        let dir = try scratchDirectory("loggerpath")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let chosen = dir + "/chosen"
        try """
            {"options": {"logger_path": "\(chosen)", "no_such_flag": 1},
             "schedule": {"one": {"query": "SELECT 1 AS one", "interval": 1}}}
            """.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let daemon = try Daemond.start(Daemond.baseFlags(dir) + ["--disable_watchdog"], stderr: dir + "/stderr")
        func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let logged = await waitUntil(60) {
            read(chosen + "/osqueryd.results.log").contains(#""columns":{"one":"1"}"#)
                && read(chosen + "/osqueryd.INFO").contains("osqueryd started")
        }
        await Daemond.stop(daemon)
        #expect(logged, "\(read(dir + "/stderr"))")
        #expect(daemon.terminationStatus == 0)
        #expect(read(chosen + "/osqueryd.INFO").contains("Cannot set unknown or invalid flag: no_such_flag"))
        #expect(!read(dir + "/stderr").contains("CLI only flag"))
        let elsewhere = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/logs")) ?? []
        #expect(elsewhere.isEmpty, "\(elsewhere)")
    }
}
