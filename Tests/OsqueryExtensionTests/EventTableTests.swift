import Testing
import Foundation
import OsqueryExtension
import OsqueryExtensionTesting

/// Issue 17: event tables in the SDK, in process (the testing kit's EventTableTester).
@Suite struct EventTableTests {
    static func doors(_ options: EventTableOptions = EventTableOptions(stateDirectory: nil)) -> EventTable {
        EventTable("door_events", columns: [.text("door"), .integer("floor")], options: options)
    }

    static func stateDirectory(_ tag: String) throws -> String {
        let dir = NSTemporaryDirectory() + "sdkev-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func routeInfoMarksTheTableEventBasedWithTimeAndEid() async throws {
        let events = Self.doors()
        #expect(events.table.schema.attributes.contains(.eventBased))
        #expect(events.table.schema.columns.map(\.name) == ["door", "floor", "time", "eid"])
        #expect(events.routes.last?["attributes"] == "4")
        #expect(events.table.spec["attributes"] == .array([.string("event_based")]))
        // Validated like any table.
        let bad = EventTable("bad-name", columns: [.text("a")], options: EventTableOptions(stateDirectory: nil))
        #expect(throws: ExtensionError.self) { try EventTableTester(bad) }
        await #expect(throws: ExtensionError.self) {
            try await Extension("bad", plugins: [bad]).start(options: try ExtensionOptions.parse(["--socket", "/tmp/sdkev-none.em"]))
        }
        #expect(Extension("doors", plugins: [events]).specJSON.contains("\"door_events\""))
    }

    /// A state directory that cannot be made: the table says so and keeps its events in memory.
    @Test func anUnwritableStateDirectoryKeepsEventsInMemory() async throws {
        let log = LogLines()
        let events = Self.doors(EventTableOptions(stateDirectory: "/proc/sdkev-nowhere", logger: log.logger))
        #expect(log.all.contains { $0.contains("cannot create /proc/sdkev-nowhere") && $0.contains("in memory only") }, "\(log.all)")
        events.add(["door": "front"])
        #expect(try await EventTableTester(events).query("select door from door_events").map { $0["door"] } == ["front"])
    }

    @Test func scheduledQueriesReturnEachEventOnce() async throws {
        let events = Self.doors()
        let tester = try EventTableTester(events)
        events.add(["door": "front", "floor": 0])
        events.add(["door": "back", "floor": 1])
        let first = try await tester.scheduledQuery("select door, floor from door_events")
        #expect(first.map { $0["door"] } == ["front", "back"])
        #expect(tester.mark == 2)
        #expect(tester.lastContext?["eid"].list == [Constraint(.greaterThan, "0")])
        #expect(try await tester.scheduledQuery("select door from door_events").isEmpty)
        events.add(["door": "roof", "floor": 9])
        #expect(try await tester.scheduledQuery("select door from door_events").map { $0["door"] } == ["roof"])
        #expect(tester.lastContext?["eid"].list == [Constraint(.greaterThan, "2")])
        // A shell's query sees every buffered event.
        #expect(try await tester.query("select door from door_events").count == 3)
    }

    @Test func timeAndEidConstraintsArePushedDown() async throws {
        let events = Self.doors()
        let tester = try EventTableTester(events)
        let now = Int64(Date().timeIntervalSince1970)
        for i in 0..<10 { events.add(["door": "d\(i)", "floor": i], time: now - 100 + Int64(i) * 10) }
        let recent = try await tester.query("select door, time from door_events where time >= \(now - 50)")
        #expect(recent.map { $0["door"] } == ["d5", "d6", "d7", "d8", "d9"])
        #expect(tester.lastContext?["time"].list == [Constraint(.greaterThanOrEquals, String(now - 50))])
        let window = try await tester.query("select door, eid from door_events where eid > 3 and eid <= 5")
        #expect(window.map { $0["eid"] } == ["4", "5"])
        #expect(try await tester.query("select door from door_events where eid = 7").map { $0["door"] } == ["d6"])
        // A time constraint disables the schedule's optimization (osquery's rule): no mark is used.
        #expect(try await tester.scheduledQuery("select door from door_events where time > 0").count == 10)
        #expect(tester.mark == 0)
    }

    @Test func rowsFromAnAsyncSequence() async throws {
        let events = Self.doors()
        let tester = try EventTableTester(events)
        let (stream, continuation) = AsyncStream<Row>.makeStream()
        let task = events.consume(stream)
        for i in 0..<5 { continuation.yield(["door": "s\(i)", "floor": i]) }
        continuation.finish()
        await task.value
        #expect(try await tester.scheduledQuery("select floor from door_events").map { $0["floor"] } == ["0", "1", "2", "3", "4"])
    }

    @Test func expiredEventsAreNotReturned() async throws {
        let events = Self.doors(EventTableOptions(expiry: 60, stateDirectory: nil))
        let tester = try EventTableTester(events)
        let now = Int64(Date().timeIntervalSince1970)
        events.add(["door": "old"], time: now - 3600)
        events.add(["door": "new"])
        #expect(try await tester.query("select door from door_events").map { $0["door"] } == ["new"])
        #expect(events.bufferedCount == 1)
    }

    /// Hostile: a source that outruns the expiry. Past the cap the oldest events are dropped
    /// (osquery's events_max) and counted, with one warning per thousand, and the table keeps
    /// serving the newest.
    @Test func pushesBeyondTheCapAreDroppedCountedAndLogged() async throws {
        let log = LogLines()
        let events = Self.doors(EventTableOptions(maxEvents: 50, stateDirectory: nil, logger: log.logger))
        let tester = try EventTableTester(events)
        for i in 0..<3000 { events.add(["door": "d\(i)"]) }
        #expect(events.bufferedCount == 50)
        #expect(events.droppedCount == 2950)
        let warnings = log.all.filter { $0.contains("the oldest are dropped") }
        #expect(warnings.count == 3, "\(log.all)")
        #expect(warnings.first?.contains("door_events") == true)
        let rows = try await tester.scheduledQuery("select door from door_events")
        #expect(rows.count == 50)
        #expect(rows.first?["door"] == "d2950")
        #expect(rows.last?["door"] == "d2999")
        #expect(events.lastEID == 3000)
        // Eid constraints still find their place in what is left.
        #expect(try await tester.query("select door from door_events where eid > 2990").count == 10)
    }

    /// A restarted extension (a new table on the same state directory) continues the eids,
    /// keeps the buffered events and the cursor, and skips a line cut short by a kill.
    @Test func stateFileKeepsEidsEventsAndCursorAcrossARestart() async throws {
        let dir = try Self.stateDirectory("restart")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let before = Self.doors(EventTableOptions(stateDirectory: dir))
        for i in 0..<3 { before.add(["door": "d\(i)", "floor": i], cursor: "seq\(i)") }
        let marked = try EventTableTester(before)
        #expect(try await marked.scheduledQuery("select door from door_events").count == 3)
        before.add(["door": "unlogged", "floor": 7], cursor: "seq3")
        await before.shutdown()
        // A kill in the middle of a write leaves half a line.
        let handle = try #require(FileHandle(forWritingAtPath: dir + "/door_events.events"))
        handle.seekToEndOfFile()
        handle.write(Data("{\"eid\":5,\"time\":1,\"ro".utf8))
        try handle.close()

        let after = Self.doors(EventTableOptions(stateDirectory: dir))
        #expect(after.lastEID == 4)
        #expect(after.cursor == "seq3")
        after.add(["door": "new", "floor": 8])
        #expect(after.lastEID == 5)
        let tester = try EventTableTester(after)
        let rows = try await tester.query("select door, floor, eid from door_events")
        #expect(rows.map { $0["door"] } == ["d0", "d1", "d2", "unlogged", "new"])
        #expect(rows.map { $0["eid"] } == ["1", "2", "3", "4", "5"])
        #expect(rows.first?["floor"] == "0")
    }

    /// Hostile: a storm against a small cap keeps the state file bounded too (it is rewritten
    /// with the buffered events), and a restart still continues the eids.
    @Test func theStateFileStaysBoundedUnderAStorm() throws {
        let dir = try Self.stateDirectory("storm")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let events = Self.doors(EventTableOptions(maxEvents: 10, stateDirectory: dir, logger: LogLines().logger))
        for i in 0..<5000 { events.add(["door": "d\(i)"], cursor: String(i)) }
        let lines = try String(contentsOfFile: dir + "/door_events.events", encoding: .utf8).split(separator: "\n").count
        #expect(lines <= 2 * 10 + 1024 + 1)
        let after = Self.doors(EventTableOptions(maxEvents: 10, stateDirectory: dir))
        #expect(after.lastEID == 5000)
        #expect(after.bufferedCount == 10)
        #expect(after.cursor == "4999")
    }

    /// Hostile: the state file is lost between two runs. The eids start again at 1 in a new
    /// epoch (sent in the route info), and a schedule that had logged up to a higher eid reads
    /// every event of the new run instead of dropping them as already logged.
    @Test func aLostStateFileIsANewEpochAndTheScheduleReadsEveryNewEvent() async throws {
        let dir = try Self.stateDirectory("epoch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = Self.doors(EventTableOptions(stateDirectory: dir))
        let epoch = first.epoch
        #expect(first.routes.first { $0["id"] == "eventEpoch" }?["epoch"] == epoch)
        #expect(first.routes.last?["id"] == "attributes")
        let tester = try EventTableTester(first)
        for i in 0..<3 { first.add(["door": "d\(i)"]) }
        #expect(try await tester.scheduledQuery("select door from door_events").count == 3)
        await first.shutdown()

        // A restart with the state file: the same epoch, the eids go on, the mark stands.
        let second = Self.doors(EventTableOptions(stateDirectory: dir))
        #expect(second.epoch == epoch)
        let kept = try EventTableTester(second, continuing: tester)
        second.add(["door": "d3"])
        #expect(try await kept.scheduledQuery("select door from door_events").map { $0["door"] } == ["d3"])
        #expect(kept.lastContext?["eid"].list == [Constraint(.greaterThan, "3")])
        await second.shutdown()

        try FileManager.default.removeItem(atPath: dir + "/door_events.events")
        let third = Self.doors(EventTableOptions(stateDirectory: dir))
        #expect(third.epoch != epoch)
        #expect(third.lastEID == 0)
        let lost = try EventTableTester(third, continuing: kept)
        third.add(["door": "new0"])
        third.add(["door": "new1"])
        #expect(try await lost.scheduledQuery("select door from door_events").map { $0["door"] } == ["new0", "new1"])
        #expect(lost.lastContext?["eid"].list == [Constraint(.greaterThan, "0")])
        #expect(lost.mark == 2)
        #expect(try await lost.scheduledQuery("select door from door_events").isEmpty)
        // The new epoch is in the new state file: the next restart keeps it.
        await third.shutdown()
        let fourth = Self.doors(EventTableOptions(stateDirectory: dir))
        #expect(fourth.epoch == third.epoch)
        await fourth.shutdown()
        // Without a state file, every start is a new epoch.
        #expect(Self.doors().epoch != Self.doors().epoch)
    }

}
