import Foundation
import OsqueryEngine
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

/// What a scheduler under test recorded.
final class Recorded: Sendable {
    let runs = Mutex<[(query: ScheduledQuery, results: QueryResults, context: LogContext)]>([])
    let fatal = Mutex<DaemonError?>(nil)

    var names: [String] { runs.withLock { $0.map(\.query.name) } }

    /// Polls without holding a thread of the cooperative pool (other suites' servers need it).
    func waitFor(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }
}

/// A registry with the scheduler's test table: one BIGINT and one TEXT column.
func schedulerRegistry(rows: @escaping @Sendable () -> [(Int64, String)] = { [(1, "a"), (2, "b")] }) -> PluginRegistry {
    let registry = PluginRegistry()
    let schema = TableSchema(name: "numbers", columns: [TableColumn("n", .bigint), TableColumn("label", .text)])
    registry.addTable(
        FunctionTable(schema) { _ in
            var out = TableRows(schema: schema)
            for (n, label) in rows() {
                out.append(n)
                out.append(label)
            }
            return out
        })
    return registry
}

func makeScheduler(
    registry: PluginRegistry, store: DaemonStore = .inMemory(), flags: Flags = Flags(), recorded: Recorded,
    fail: DaemonError? = nil
) -> Scheduler {
    Scheduler(
        store: store, registry: registry, flags: flags,
        record: { query, results, context throws(DaemonError) in
            if let fail { throw fail }
            recorded.runs.withLock { $0.append((query, results, context)) }
            return results.rows.count * 10
        },
        context: { unixTime, decorations in
            LogContext(hostIdentifier: "test-host", unixTime: unixTime, calendarTime: "", decorations: decorations)
        },
        onFatal: { error in recorded.fatal.withLock { $0 = error } })
}

@Suite struct SchedulerTests {
    @Test func splayStaysWithinThePercentAndSmallPercentsMeanTen() {
        for _ in 0..<200 {
            #expect((90...110).contains(Scheduler.splay(100, percent: 10)))
            #expect((50...150).contains(Scheduler.splay(100, percent: 50)))
            #expect((90...110).contains(Scheduler.splay(100, percent: 1)))
        }
        #expect(Scheduler.splay(1, percent: 10) == 1)
        #expect(Scheduler.splay(5, percent: 10) == 5)
    }

    @Test func splayIsPersistedAndReusedWhileTheIntervalIsUnchanged() throws {
        let store = DaemonStore.inMemory()
        let recorded = Recorded()
        let q = ScheduledQuery(name: "q", sql: "select 1", interval: 3600)
        let first = makeScheduler(registry: PluginRegistry(), store: store, recorded: recorded).splayedInterval(q)
        #expect((3240...3960).contains(first))
        #expect(try store.get("persistent_settings", "interval.q") == "3600:\(first)")
        // A new scheduler (a restart) reuses it.
        #expect(makeScheduler(registry: PluginRegistry(), store: store, recorded: recorded).splayedInterval(q) == first)
        // A changed interval picks a new one.
        var changed = q
        changed.interval = 60
        let second = makeScheduler(registry: PluginRegistry(), store: store, recorded: recorded).splayedInterval(changed)
        #expect((54...66).contains(second))
    }

    @Test func runsEverySecondWithTypedRowsAndDecorations() async {
        let recorded = Recorded()
        let scheduler = makeScheduler(registry: schedulerRegistry(), recorded: recorded)
        scheduler.update(
            ScheduleDefinition(
                queries: [ScheduledQuery(name: "numbers", sql: "select n, label, n * 2 as doubled from numbers", interval: 1)],
                loadDecorators: ["select 'loaded' as stage"], alwaysDecorators: ["select 'always' as kind"]))
        scheduler.start()
        defer { scheduler.stop() }
        #expect(await recorded.waitFor(10) { recorded.names.count >= 2 })
        let run = recorded.runs.withLock { $0[0] }
        #expect(run.results.rows == [["n": "1", "label": "a", "doubled": "2"], ["n": "2", "label": "b", "doubled": "4"]])
        // Only declared numeric columns count as numbers (`doubled` is an expression).
        #expect(run.results.numericColumns == ["n"])
        #expect(run.context.decorations == ["stage": "loaded", "kind": "always"])
        #expect(run.context.hostIdentifier == "test-host")
        // Wall-clock aligned: an interval-1 query runs on consecutive seconds.
        let times = recorded.runs.withLock { $0.prefix(2).map(\.context.unixTime) }
        #expect(times[1] > times[0])
    }

    @Test func startupPriorityQueriesRunAtOnceInPriorityOrder() async {
        let recorded = Recorded()
        let scheduler = makeScheduler(registry: schedulerRegistry(), recorded: recorded)
        scheduler.update(
            ScheduleDefinition(queries: [
                ScheduledQuery(name: "late", sql: "select 1 as x", interval: 86400, startupPriority: 5),
                ScheduledQuery(name: "never", sql: "select 2 as x", interval: 604800),
                ScheduledQuery(name: "early", sql: "select 3 as x", interval: 86400, startupPriority: 1),
            ]))
        scheduler.start()
        defer { scheduler.stop() }
        #expect(await recorded.waitFor(10) { recorded.names.count >= 2 })
        #expect(Array(recorded.names.prefix(2)) == ["early", "late"])
    }

    @Test func aQueryRunningWhenTheWorkerDiedIsDenylistedUnlessItOptedOut() async throws {
        let store = DaemonStore.inMemory()
        try store.put("persistent_settings", "executing_query", "crasher")
        let recorded = Recorded()
        let scheduler = makeScheduler(registry: schedulerRegistry(), store: store, recorded: recorded)
        let queries = [
            ScheduledQuery(name: "crasher", sql: "select 1 as x", interval: 1),
            ScheduledQuery(name: "fine", sql: "select 2 as x", interval: 1),
        ]
        scheduler.loadCrashState(knownQueries: queries)
        #expect(try store.get("persistent_settings", "executing_query") == nil)
        let expiry = try #require(store.get("persistent_settings", "denylist.crasher").flatMap(UInt64.init))
        #expect(expiry > UInt64(Date().timeIntervalSince1970) + 86000)
        scheduler.update(ScheduleDefinition(queries: queries))
        scheduler.start()
        #expect(await recorded.waitFor(10) { recorded.names.count >= 2 })
        scheduler.stop()
        #expect(Set(recorded.names) == ["fine"])
        let snapshot = Dictionary(uniqueKeysWithValues: scheduler.scheduleSnapshot().map { ($0.query.name, $0.denylisted) })
        #expect(snapshot == ["crasher": true, "fine": false])

        // The denylist survives a restart; `denylist: false` exempts a query.
        let again = makeScheduler(registry: schedulerRegistry(), store: store, recorded: recorded)
        again.loadCrashState(knownQueries: queries)
        #expect(again.scheduleSnapshot().isEmpty)
        again.update(ScheduleDefinition(queries: queries))
        #expect(again.scheduleSnapshot().first { $0.query.name == "crasher" }?.denylisted == true)

        let exemptStore = DaemonStore.inMemory()
        try exemptStore.put("persistent_settings", "executing_query", "keep")
        let exempt = makeScheduler(registry: schedulerRegistry(), store: exemptStore, recorded: recorded)
        exempt.loadCrashState(knownQueries: [ScheduledQuery(name: "keep", sql: "select 1", interval: 1, denylist: false)])
        #expect(try exemptStore.get("persistent_settings", "denylist.keep") == nil)
    }

    @Test func aFailingQueryIsLoggedAndTheOthersStillRun() async {
        let recorded = Recorded()
        let scheduler = makeScheduler(registry: schedulerRegistry(), recorded: recorded)
        scheduler.update(
            ScheduleDefinition(queries: [
                ScheduledQuery(name: "broken", sql: "select * from no_such_table", interval: 1),
                ScheduledQuery(name: "ok", sql: "select 1 as x", interval: 1),
            ]))
        scheduler.start()
        defer { scheduler.stop() }
        #expect(await recorded.waitFor(10) { recorded.names.count >= 2 })
        #expect(Set(recorded.names) == ["ok"])
        let broken = scheduler.scheduleSnapshot().first { $0.query.name == "broken" }
        #expect(broken?.performance.executions ?? 0 >= 1)
        #expect(broken?.performance.outputSize == 0)
    }

    @Test func resultsThatCannotBeWrittenStopTheSchedulerWith78() async {
        let recorded = Recorded()
        let scheduler = makeScheduler(
            registry: schedulerRegistry(), recorded: recorded, fail: DaemonError("results cannot be written", exitCode: 78))
        let finished = Mutex(false)
        scheduler.update(ScheduleDefinition(queries: [ScheduledQuery(name: "q", sql: "select 1 as x", interval: 1)]))
        scheduler.start(onFinished: { finished.withLock { $0 = true } })
        #expect(await recorded.waitFor(10) { finished.withLock { $0 } })
        #expect(recorded.fatal.withLock { $0?.exitCode } == 78)
    }

    @Test func osquerySchedulePerformanceFigures() async throws {
        let recorded = Recorded()
        let registry = schedulerRegistry()
        let scheduler = makeScheduler(registry: registry, recorded: recorded)
        ScheduleTables.register(
            into: registry, scheduler: { scheduler },
            packs: { [PackStatus(name: "main", active: true), PackStatus(name: "hw", platform: "linux", shard: 5, active: false)] })
        scheduler.update(ScheduleDefinition(queries: [ScheduledQuery(name: "numbers", sql: "select * from numbers", interval: 1)]))
        scheduler.start()
        #expect(await recorded.waitFor(10) { recorded.names.count >= 2 })
        scheduler.stop()
        let db = try Database(registry: registry, flags: Flags())
        let rows = try db.queryMaps(
            "select name, query, interval, executions, denylisted, blacklisted, output_size, last_executed > 0 as ran, "
                + "last_memory > 0 as mem from osquery_schedule")
        #expect(rows.count == 1)
        let row = rows[0]
        #expect(row["name"] == "numbers" && row["query"] == "select * from numbers" && row["interval"] == "1")
        let executions = Int(row["executions"]!!) ?? 0
        #expect(executions >= 2)
        // 10 bytes per row from the test recorder, 2 rows a run.
        #expect(row["output_size"] == .some(String(executions * 20)))
        #expect(row["denylisted"] == "0" && row["blacklisted"] == "0" && row["ran"] == "1" && row["mem"] == "1")
        let packs = try db.queryMaps("select name, platform, shard, active from osquery_packs order by name")
        #expect(packs == [
            ["name": "hw", "platform": "linux", "shard": "5", "active": "0"],
            ["name": "main", "platform": "", "shard": "0", "active": "1"],
        ])
    }
}

@Suite struct EscapingTests {
    @Test func controlAndInvalidBytesAreEscapedValidUTF8PassesThrough() {
        #expect(ResultEscaping.escape(.text("plain")) == "plain")
        #expect(ResultEscaping.escape(.text("tab\there\n")) == "tab\\x09here\\x0A")
        #expect(ResultEscaping.escape(.text("héllo ✓ 𝄞")) == "héllo ✓ 𝄞")
        #expect(ResultEscaping.escape(.blob([0x61, 0xFF, 0x62, 0xC3])) == "a\\xFFb\\xC3")
        // Overlong, surrogate and above-U+10FFFF sequences are not valid UTF-8.
        #expect(ResultEscaping.escape(bytes: [0xC0, 0xAF]) == "\\xC0\\xAF")
        #expect(ResultEscaping.escape(bytes: [0xED, 0xA0, 0x80]) == "\\xED\\xA0\\x80")
        #expect(ResultEscaping.escape(bytes: [0xF4, 0x90, 0x80, 0x80]) == "\\xF4\\x90\\x80\\x80")
        #expect(ResultEscaping.escape(.null) == "")
        #expect(ResultEscaping.escape(.integer(-5)) == "-5")
        #expect(ResultEscaping.escape(.double(1)) == "1.0")
    }
}
