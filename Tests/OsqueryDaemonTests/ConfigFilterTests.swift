import Foundation
import OsqueryEngine
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

/// A clock tests move by hand.
final class ManualClock: Sendable {
    let now = Mutex<UInt64>(1_000_000)
    func advance(_ seconds: UInt64) { now.withLock { $0 += seconds } }
    var read: @Sendable () -> UInt64 { { [self] in now.withLock { $0 } } }
}

/// Discovery queries answered from a table of SQL → "has rows", counting runs.
final class DiscoveryAnswers: Sendable {
    let answers: Mutex<[String: Bool]>
    let runs = Mutex<[String]>([])
    init(_ answers: [String: Bool]) { self.answers = Mutex(answers) }
    func set(_ sql: String, _ value: Bool) { answers.withLock { $0[sql] = value } }
    var run: @Sendable (String) -> Bool {
        { [self] sql in
            runs.withLock { $0.append(sql) }
            return answers.withLock { $0[sql] ?? false }
        }
    }
}

@Suite struct ConfigFilterTests {
    @Test func platformRulesAreSubstrings() {
        for p in ["", "null", "linux", "ubuntu", "centos", "posix", "any", "all", "darwin,linux", "freebsd-linux"] {
            #expect(PackFilters.platformMatches(p), "\(p)")
        }
        for p in ["darwin", "windows", "freebsd", "Linux"] {
            #expect(!PackFilters.platformMatches(p), "\(p)")
        }
    }

    @Test func versionIsAtLeastAsOsqueryCompares() {
        let ours = "5.23.1"
        for v in ["", "null", "0.0.0", "5.23.1", "5.23", "5", "5.22.9", "4.99.99", "1.0.0", "5.23.0.9"] {
            #expect(PackFilters.versionAtLeast(v, ours), "\(v)")
        }
        for v in ["5.23.2", "5.24", "6", "6.0.0", "10.0.0"] {
            #expect(!PackFilters.versionAtLeast(v, ours), "\(v)")
        }
        #expect(PackFilters.versionAtLeast("5.2.0", "0.0.0"))
    }

    @Test func machineShardIsTheFirstSHA1ByteScaled() {
        // SHA1("localhost") = 334389048b872a533002b34d73f8c29fd09efc50 → 0x33 = 51 → 51 * 100 / 255 = 20.
        #expect(HostFacts.shard(of: "localhost") == 20)
        // SHA1("") = da39a3ee… → 0xda = 218 → 85.
        #expect(HostFacts.shard(of: "") == 85)
        let host = HostFacts(hostname: "localhost")
        #expect(PackFilters.shardMatches(0, host: host))
        #expect(PackFilters.shardMatches(20, host: host))
        #expect(PackFilters.shardMatches(100, host: host))
        #expect(!PackFilters.shardMatches(19, host: host))
    }

    @Test func packAndQueryRestrictionsAllApply() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write(
            "osquery.conf",
            """
            {
              "schedule": {
                "mac_only": {"query": "SELECT 1", "platform": "darwin"},
                "linux_q": {"query": "SELECT 1", "platform": "linux"},
                "future": {"query": "SELECT 1", "version": "9.0.0"},
                "shard_low": {"query": "SELECT 1", "shard": 19},
                "shard_ok": {"query": "SELECT 1", "shard": "20"},
                "same": {"query": "SELECT 'mac'", "platform": "darwin"},
                "same": {"query": "SELECT 'linux'", "platform": "posix"}
              },
              "packs": {
                "windows": {"platform": "windows", "queries": {"w": {"query": "SELECT 1"}}},
                "newer": {"version": "6.0.0", "queries": {"n": {"query": "SELECT 1"}}},
                "sharded_out": {"shard": 10, "queries": {"s": {"query": "SELECT 1"}}},
                "sharded_in": {"shard": 25, "platform": "any", "version": "5.0", "queries": {"s": {"query": "SELECT 1"}}}
              }
            }
            """)
        let config = try loader(dir).load()
        let host = HostFacts(hostname: "localhost", osqueryVersion: "5.23.1")
        let scheduled = config.scheduledQueries(host: host, discovery: noDiscovery)
        #expect(scheduled.map(\.name) == ["linux_q", "same", "shard_ok", "pack_sharded_in_s"])
        // The duplicate name that applies here wins over the earlier one that does not.
        #expect(scheduled[1].sql == "SELECT 'linux'")
        #expect(config.activePacks(host: host, discovery: noDiscovery).map(\.name) == ["main", "sharded_in"])
    }

    @Test func discoveryIsAnANDThatStopsEarlyAndIsCached() throws {
        let dir = ConfigDir()
        defer { dir.cleanup() }
        dir.write(
            "osquery.conf",
            """
            {"packs": {
              "both": {"discovery": ["SELECT yes1", "SELECT yes2"], "queries": {"q": {"query": "SELECT 1"}}},
              "gated": {"discovery": ["SELECT no", "SELECT never"], "queries": {"q": {"query": "SELECT 1"}}},
              "free": {"queries": {"q": {"query": "SELECT 1"}}}
            }}
            """)
        let config = try loader(dir).load()
        let answers = DiscoveryAnswers(["SELECT yes1": true, "SELECT yes2": true, "SELECT no": false, "SELECT never": true])
        let clock = ManualClock()
        let interval = Mutex<UInt64>(60)
        let discovery = PackDiscovery(refreshInterval: { interval.withLock { $0 } }, clock: clock.read, run: answers.run)
        #expect(config.scheduledQueries(host: linuxHost, discovery: discovery).map(\.name) == ["pack_both_q", "pack_free_q"])
        // "SELECT never" was not run: the first failing query decides.
        #expect(answers.runs.withLock { $0 } == ["SELECT yes1", "SELECT yes2", "SELECT no"])

        // Within the refresh interval the answers are reused, even if the host changed.
        answers.set("SELECT no", true)
        clock.advance(59)
        #expect(config.scheduledQueries(host: linuxHost, discovery: discovery).map(\.name) == ["pack_both_q", "pack_free_q"])
        #expect(answers.runs.withLock { $0 }.count == 3)
        let source = dir.path + "/osquery.conf"
        #expect(discovery.stats(pack: "gated", source: source) == PackDiscovery.Stats(total: 2, hits: 1, executions: 1, active: false))

        // Once stale, discovery runs again.
        clock.advance(1)
        #expect(config.scheduledQueries(host: linuxHost, discovery: discovery).map(\.name) == ["pack_both_q", "pack_gated_q", "pack_free_q"])
        #expect(answers.runs.withLock { $0 }.count == 7)
        #expect(discovery.stats(pack: "gated", source: source)?.active == true)

        // A pack without discovery queries never runs any.
        #expect(discovery.stats(pack: "free", source: source)?.executions == 2)
        discovery.reset()
        #expect(discovery.stats(pack: "free", source: source) == nil)
    }
}
