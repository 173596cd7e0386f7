import Foundation
import OsqueryEngine
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

/// Lines written by a command.
final class Output: Sendable {
    let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }
}

@Suite struct ConfigCommandsTests {
    @Test func checkPassesAValidConfigAndReportsItsWarnings() {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let file = dir.write("osquery.conf", "{\n\"schedule\": {\"q\": {\"query\": \"SELECT 1\", \"interval\": 0}}}")
        let err = Output()
        let code = ConfigCommands.check(flags: Flags(), source: FilesystemConfigSource(path: file)) { err.append($0) }
        #expect(code == 0)
        #expect(err.all.count == 1)
        #expect(err.all.first?.hasPrefix("config \(file) line 2: Query has invalid interval: q: 0") == true)
    }

    @Test func checkFailsWithOsquerysMessageAndExitCode() {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let file = dir.write("osquery.conf", "{\n  \"options\": {\n    \"verbose\": true,\n  }\n}\n")
        let err = Output()
        let code = ConfigCommands.check(flags: Flags(), source: FilesystemConfigSource(path: file)) { err.append($0) }
        #expect(code == 1)
        let line = err.all.joined()
        #expect(line.hasPrefix("Error reading config: config \(file) line 4 column "), "\(line)")

        let missing = Output()
        let status = ConfigCommands.check(flags: Flags(), source: FilesystemConfigSource(path: dir.path + "/none.conf")) {
            missing.append($0)
        }
        #expect(status == 1)
        #expect(missing.all == ["Error reading config: config file does not exist: \(dir.path)/none.conf"])
    }

    @Test func checkDoesNotTouchFlagsWhenTheConfigIsBroken() {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write("osquery.conf", #"{"options": {"host_identifier": "uuid"}}"#)
        dir.write("osquery.conf.d/bad.conf", #"{"options": {"#)
        let flags = Flags()
        let code = ConfigCommands.check(flags: flags, source: FilesystemConfigSource(path: dir.path + "/osquery.conf")) { _ in }
        #expect(code == 1)
        #expect(flags.value(named: "host_identifier") == "hostname")
    }

    @Test func dumpPrintsEverySourceRawInOsquerysShape() {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        let main = dir.write("osquery.conf", "# comment kept\n{\"options\": {}}\n")
        let extra = dir.write("osquery.conf.d/a.conf", "{ not even json")
        let out = Output()
        let code = ConfigCommands.dump(flags: Flags(), source: FilesystemConfigSource(path: main), out: { out.append($0) }) { _ in }
        #expect(code == 0)
        #expect(out.all == [
            "{\"\(main)\": # comment kept\n{\"options\": {}}\n}\n",
            "{\"\(extra)\": { not even json}\n",
        ])

        let err = Output()
        let failed = ConfigCommands.dump(
            flags: Flags(), source: FilesystemConfigSource(path: dir.path + "/x.conf"), out: { out.append($0) }
        ) { err.append($0) }
        #expect(failed == 1)
        #expect(err.all == ["Error reading config: config file does not exist: \(dir.path)/x.conf"])
    }
}
