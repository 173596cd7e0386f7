import Foundation
import OsqueryDaemon
import OsqueryEngine
import OsqueryEvents
import ProtocolFixture
import Testing

@Suite struct EventsFrameworkTests {
    @Test func rowsGetIncreasingEidsAndTimeNarrowsTheScan() throws {
        let flags = try makeFlags(["disable_events": "false"])
        let core = try manualCore(name: "manual_events", flags: flags)
        for i in 0..<20 { core.subscriber.add([.text("v\(i)"), .integer(Int64(i))]) }
        let eids = try core.database.strings("SELECT eid FROM manual_events", "eid")
        #expect(eids == (1...20).map { EventID.index(UInt64($0)) })
        #expect(eids.first == "0000000001")
        let times = try core.database.strings("SELECT time FROM manual_events", "time").compactMap { UInt64($0) }
        #expect(times == times.sorted())
        #expect(core.subscriber.lastScanRows == 20)
        // A time constraint is pushed down: the scan reads nothing past the newest event.
        let future = (times.last ?? 0) + 1000
        #expect(try core.database.execute("SELECT * FROM manual_events WHERE time > \(future)").rowCount == 0)
        #expect(core.subscriber.lastScanRows == 0)
        #expect(try core.database.execute("SELECT * FROM manual_events WHERE time >= \(times[0])").rowCount == 20)
        #expect(try core.database.execute("SELECT value FROM manual_events WHERE n = 7").rowCount == 1)
    }

    @Test func rowsSurviveARestartOfTheStoreAndEidsContinue() throws {
        let dir = try scratchDirectory("events-store")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let flags = try makeFlags(["disable_events": "false"])
        do {
            let store = try DaemonStore.open(path: dir + "/osquery.db")
            let core = try manualCore(name: "kept_events", flags: flags, database: store, isDaemon: true)
            core.hub.start()
            for i in 0..<5 { core.subscriber.add([.text("before"), .integer(Int64(i))]) }
            core.hub.stop()
        }
        let store = try DaemonStore.open(path: dir + "/osquery.db")
        let core = try manualCore(name: "kept_events", flags: flags, database: store, isDaemon: true)
        core.subscriber.add([.text("after"), .integer(5)])
        let values = try core.database.strings("SELECT value FROM kept_events", "value")
        #expect(values == Array(repeating: "before", count: 5) + ["after"])
        #expect(try core.database.strings("SELECT eid FROM kept_events WHERE value = 'after'", "eid") == ["0000000006"])
    }

    @Test func eventsMaxKeepsTheNewestRows() throws {
        let flags = try makeFlags(["disable_events": "false", "events_max": "10"])
        let core = try manualCore(name: "capped_events", flags: flags)
        for i in 0..<300 { core.subscriber.add([.text("v"), .integer(Int64(i))]) }
        #expect(core.subscriber.bufferedCount() == 10)
        #expect(try core.database.strings("SELECT n FROM capped_events", "n") == (290..<300).map(String.init))
        let expired = try core.database.strings("SELECT events FROM osquery_events WHERE name = 'capped_events.expired'", "events")
        #expect(expired == ["290"])
    }

    @Test func expiredRowsGoWhenQueried() async throws {
        let flags = try makeFlags(["disable_events": "false", "events_expiry": "1"])
        let core = try manualCore(name: "expiring_events", flags: flags)
        for i in 0..<3 { core.subscriber.add([.text("old"), .integer(Int64(i))]) }
        #expect(try core.database.execute("SELECT * FROM expiring_events").rowCount == 3)
        let database = core.database
        // osquery keeps the newest event (its id must survive); the older ones expire.
        #expect(await eventually { ((try? database.execute("SELECT * FROM expiring_events").rowCount) ?? -1) == 1 })
    }

    @Test func osqueryEventsListsPublishersAndSubscribers() throws {
        let flags = try makeFlags(["disable_events": "false"])
        let core = try manualCore(name: "listed_events", flags: flags)
        core.hub.start()
        defer { core.hub.stop() }
        core.subscriber.add([.text("x"), .integer(1)])
        let r = try core.database.execute("SELECT * FROM osquery_events WHERE type != 'counter'")
        #expect(r.columns == ["name", "publisher", "type", "subscriptions", "events", "refreshes", "active"])
        #expect(r.rowMaps() == [
            ["name": "listed_events_pub", "publisher": "listed_events_pub", "type": "publisher", "subscriptions": "1",
             "events": "0", "refreshes": "0", "active": "1"],
            ["name": "listed_events", "publisher": "listed_events_pub", "type": "subscriber", "subscriptions": "0",
             "events": "1", "refreshes": "0", "active": "1"],
        ])
    }

    @Test func disabledSubscribersAreInactiveAndGetNoRows() throws {
        let flags = try makeFlags(["disable_events": "false"])
        let core = try manualCore(name: "denied_events", flags: flags)
        var config = EventsConfiguration()
        config.disableSubscribers = ["denied_events"]
        core.hub.configure(config)
        core.subscriber.add([.text("x"), .integer(1)])
        #expect(try core.database.execute("SELECT * FROM denied_events").rowCount == 0)
        #expect(try core.database.strings("SELECT active FROM osquery_events WHERE name = 'denied_events'", "active") == ["0"])
    }

    @Test func withEventsDisabledAnEventTableHasNoRows() throws {
        let flags = try makeFlags(["disable_events": "true"])
        let core = try manualCore(name: "off_events", flags: flags)
        core.subscriber.add([.text("x"), .integer(1)])
        #expect(try core.database.execute("SELECT * FROM off_events").rowCount == 0)
    }
}

@Suite struct EventQueryRulesTests {
    /// osquery's enforceEventsDenylist: a query over event tables only is spared crash denylisting.
    @Test func queriesOverEventTablesOnlyAreRecognised() throws {
        let flags = try makeFlags(["disable_events": "false"])
        let registry = PluginRegistry()
        _ = EventsRuntime.make(flags: flags, registry: registry, database: InMemoryEventDatabase(), isDaemon: true)
        _ = registry.addTable(FunctionTable(TableSchema(name: "plain", columns: [TableColumn("x", .text)])) { _ in TableRows(columnCount: 1) })
        #expect(Scheduler.readsOnlyEventTables("SELECT * FROM file_events", registry: registry))
        #expect(Scheduler.readsOnlyEventTables("select target_path from FILE_EVENTS where action = 'CREATED'", registry: registry))
        #expect(!Scheduler.readsOnlyEventTables("SELECT * FROM file_events JOIN plain", registry: registry))
        #expect(!Scheduler.readsOnlyEventTables("SELECT * FROM plain", registry: registry))
        #expect(!Scheduler.readsOnlyEventTables("SELECT 1", registry: registry))
    }
}

@Suite struct EventsOptimizeTests {
    /// A scheduled query (its scope) reads only events past its mark; a `time` constraint turns
    /// the optimization off; outside the daemon there is none.
    @Test func aScheduledQueryReadsEachEventOnceUnlessItConstrainsTime() throws {
        let flags = try makeFlags(["disable_events": "false"])
        let core = try manualCore(name: "optimized_events", flags: flags, isDaemon: true)
        for i in 0..<5 { core.subscriber.add([.text("a"), .integer(Int64(i))]) }
        let first = EventQueryScope(query: "q", mark: (0, 0))
        let all = try EventQueryScope.run(first) { try core.database.execute("SELECT n FROM optimized_events").rowCount }
        #expect(all == 5)
        #expect(first.eventBased)
        let mark = try #require(first.newMark)
        #expect(mark.eid == 5)
        for i in 5..<8 { core.subscriber.add([.text("b"), .integer(Int64(i))]) }
        let second = EventQueryScope(query: "q", mark: mark)
        let newer = try EventQueryScope.run(second) { try core.database.strings("SELECT n FROM optimized_events", "n") }
        #expect(newer == ["5", "6", "7"])
        #expect(second.newMark?.eid == 8)
        // Nothing new: nothing read, the mark stays.
        let third = EventQueryScope(query: "q", mark: second.newMark!)
        #expect(try EventQueryScope.run(third) { try core.database.execute("SELECT n FROM optimized_events").rowCount } == 0)
        #expect(third.newMark == nil)
        // A time constraint: every matching event, no mark.
        let timed = EventQueryScope(query: "q", mark: second.newMark!)
        #expect(try EventQueryScope.run(timed) { try core.database.execute("SELECT n FROM optimized_events WHERE time >= 0").rowCount } == 8)
        #expect(timed.newMark == nil)
        #expect(timed.eventBased)
    }

    @Test func theShellNeverOptimizes() throws {
        let flags = try makeFlags(["disable_events": "false"])
        let core = try manualCore(name: "shell_events", flags: flags, isDaemon: false)
        for i in 0..<3 { core.subscriber.add([.text("a"), .integer(Int64(i))]) }
        let scope = EventQueryScope(query: "q", mark: (UInt64.max / 2, 2))
        #expect(try EventQueryScope.run(scope) { try core.database.execute("SELECT n FROM shell_events").rowCount } == 3)
    }
}
