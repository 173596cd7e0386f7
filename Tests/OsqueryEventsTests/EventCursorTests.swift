import Foundation
import OsqueryEngine
import OsqueryEvents
import Testing

/// Issue 17: SQLite reads an event table through a cursor over the store, the scan's bounds in
/// the store's WHERE clause (`lastScanRows` counts the rows that query returned).
@Suite struct EventCursorTests {
    /// A second a little in the past (older events would expire at the end of a scan).
    static let base = UInt64(Date().timeIntervalSince1970) - 100

    /// `count` events straight into the store of subscriber `name` (columns `value`, `n`):
    /// eid i+1, n = i, time base + i / 100 (a hundred events a second).
    static func fill(_ database: any EventDatabase, _ name: String, count: Int) {
        let store = EventTableStore(subscriber: name, valueCount: 2)
        var events: [BufferedEvent] = []
        for i in 0..<count {
            let values: [SQLValue] = [.text("v\(i)"), .integer(Int64(i))]
            let time = base + UInt64(i / 100)
            events.append(BufferedEvent(eid: UInt64(i + 1), time: time, values: values))
        }
        let error = database.withHandle { db in store.append(db, events) }
        #expect(error == nil)
    }

    static func numbers(_ r: ResultSet) -> [Int] {
        var out: [Int] = []
        for i in 0..<r.rowCount {
            if case .integer(let n)? = r[i, "n"] { out.append(Int(n)) }
        }
        return out
    }

    @Test func timeBoundsNarrowTheStoreQuery() throws {
        let database = InMemoryEventDatabase()
        let core = try manualCore(name: "streamed_events", flags: try makeFlags(["disable_events": "false"]), database: database)
        Self.fill(database, "streamed_events", count: 1500)
        // More rows than one batch: every one, in eid order.
        #expect(Self.numbers(try core.database.execute("SELECT n FROM streamed_events")) == Array(0..<1500))
        #expect(core.subscriber.lastScanRows == 1500)
        let b = Self.base
        for (clause, expected) in [
            ("time >= \(b + 5) AND time < \(b + 8)", Array(500..<800)), ("time = \(b + 10)", Array(1000..<1100)),
            ("time > \(b + 13)", Array(1400..<1500)), ("time <= \(b)", Array(0..<100)), ("\(b + 3) >= time AND time > \(b + 2)", Array(300..<400)),
        ] {
            #expect(Self.numbers(try core.database.execute("SELECT n FROM streamed_events WHERE \(clause)")) == expected, "\(clause)")
            // Only the matching rows were read from the store: no bound was left to SQLite alone.
            #expect(core.subscriber.lastScanRows == expected.count, "\(clause)")
        }
        let r = try core.database.execute("SELECT value, eid, time FROM streamed_events WHERE n = 1499")
        #expect(r.rowMaps() == [["value": "v1499", "eid": "0000001500", "time": String(b + 14)]])
    }

    /// A scheduled query reads only the events above its mark (the mark's eid and time in the
    /// store's WHERE clause), and one that stops early still moves its mark past every event it
    /// matched, as the rows `generate` gave did.
    @Test func theEventsOptimizeMarkNarrowsTheStoreQuery() throws {
        let database = InMemoryEventDatabase()
        let core = try manualCore(
            name: "marked_events", flags: try makeFlags(["disable_events": "false"]), database: database, isDaemon: true)
        Self.fill(database, "marked_events", count: 1500)
        let b = Self.base
        let scope = EventQueryScope(query: "q", mark: (b + 10, 1200))
        let rows = try EventQueryScope.run(scope) { try core.database.execute("SELECT n FROM marked_events") }
        #expect(Self.numbers(rows) == Array(1200..<1500))
        #expect(core.subscriber.lastScanRows == 300)
        #expect(scope.newMark?.eid == 1500)
        #expect(scope.newMark?.time == b + 14)
        // The mark's time bounds the scan too (osquery reads from the second before it).
        let timed = EventQueryScope(query: "q", mark: (b + 14, 0))
        #expect(Self.numbers(try EventQueryScope.run(timed) { try core.database.execute("SELECT n FROM marked_events") }) == Array(1300..<1500))
        #expect(core.subscriber.lastScanRows == 200)

        let limited = EventQueryScope(query: "q", mark: (0, 0))
        let few = try EventQueryScope.run(limited) { try core.database.execute("SELECT n FROM marked_events LIMIT 10") }
        #expect(Self.numbers(few) == Array(0..<10))
        #expect(core.subscriber.lastScanRows < 1500)
        #expect(limited.newMark?.eid == 1500)
    }

    /// Two scans of the store at once (a self-join: nested cursors on one connection), and
    /// cells of every kind.
    @Test func nestedScansAndEveryKindOfCell() throws {
        let database = InMemoryEventDatabase()
        let core = try manualCore(name: "joined_events", flags: try makeFlags(["disable_events": "false"]), database: database)
        Self.fill(database, "joined_events", count: 1200)
        let joined = try core.database.execute(
            "SELECT count(*) AS c FROM joined_events a JOIN joined_events b ON b.n = a.n + 1 WHERE a.time = \(Self.base)")
        #expect(joined.rowMaps() == [["c": "100"]])
        let odd = EventTableStore(subscriber: "odd_events", valueCount: 2)
        let kinds = try manualCore(name: "odd_events", flags: try makeFlags(["disable_events": "false"]), database: database)
        let stored = database.withHandle { db in
            odd.append(db, [
                BufferedEvent(eid: 1, time: Self.base, values: [.blob([0x41, 0xFF]), .null]),
                BufferedEvent(eid: 2, time: Self.base, values: [.null, .text("12abc")]),
                BufferedEvent(eid: 3, time: Self.base, values: [.double(1.5), .double(2.5)]),
            ])
        }
        #expect(stored == nil)
        let r = try kinds.database.execute("SELECT value, n, typeof(value) AS tv, typeof(n) AS tn FROM odd_events")
        #expect(r.rowCount == 3)
        #expect(r[0, "value"] == .blob([0x41, 0xFF]))  // not UTF-8: the bytes, as text
        #expect(r[0, "tn"] == .text("null"))
        #expect(r[1, "value"] == .text(""))  // a missing TEXT cell is ''
        #expect(r[1, "n"] == .integer(12))  // text in an INTEGER column is converted
        #expect(r[2, "value"] == .double(1.5))
        #expect(r[2, "n"] == .double(2.5))
        // generate (the registry's other callers) gives the same rows.
        let table = try #require(kinds.database.registry.table(named: "odd_events"))
        let rows = try table.generate(QueryContext(schema: table.schema))
        #expect(rows.count == 3)
        #expect(rows[1, 1] == .text("12abc"))
    }

    /// Cells are read from the store and handed to SQLite by length: text with a NUL inside
    /// and multi-byte UTF-8 keep every byte, NULLs stay NULL (or '' in a TEXT column), and a
    /// result larger than one chunk of the result reader (and many cursor batches) keeps every
    /// row in order.
    @Test func textBytesNullsAndLargeResultsThroughTheCursor() throws {
        let database = InMemoryEventDatabase()
        let core = try manualCore(name: "bytes_events", flags: try makeFlags(["disable_events": "false"]), database: database)
        let store = EventTableStore(subscriber: "bytes_events", valueCount: 2)
        let odd: [SQLValue] = [.text("a\u{0}b"), .text("héllo ✓ 𝄞"), .null, .text("")]
        var events: [BufferedEvent] = []
        for (i, v) in odd.enumerated() {
            events.append(BufferedEvent(eid: UInt64(i + 1), time: Self.base, values: [v, i == 2 ? .null : .integer(Int64(i))]))
        }
        let count = Database.resultChunkValues / 2 + 700
        for i in odd.count..<count {
            events.append(BufferedEvent(eid: UInt64(i + 1), time: Self.base + 1, values: [.text("row \(i) " + String(repeating: "é", count: i % 40)), .integer(Int64(i))]))
        }
        #expect(database.withHandle { db in store.append(db, events) } == nil)
        let r = try core.database.execute("SELECT value, n, hex(value) AS h, length(CAST(value AS BLOB)) AS b, typeof(n) AS tn FROM bytes_events")
        #expect(r.rowCount == count)
        #expect(r[0, "h"] == .text("610062"))
        #expect(r[0, "b"] == .integer(3))
        #expect(r[1, "value"] == .text("héllo ✓ 𝄞"))
        #expect(r[1, "b"] == .integer(Int64("héllo ✓ 𝄞".utf8.count)))
        #expect(r[2, "value"] == .text(""))
        #expect(r[2, "n"] == .null)
        #expect(r[2, "tn"] == .text("null"))
        #expect(r[3, "value"] == .text(""))
        for i in odd.count..<count {
            guard r[i, "n"] == .integer(Int64(i)), r[i, "value"] == .text("row \(i) " + String(repeating: "é", count: i % 40)) else {
                Issue.record("row \(i): \(String(describing: r[i, "n"])) \(String(describing: r[i, "value"]))")
                break
            }
        }
        // The same rows under a time bound and an eid comparison, through the same reader.
        let bounded = try core.database.execute("SELECT n FROM bytes_events WHERE time > \(Self.base) AND eid > '0000000100'")
        #expect(Self.numbers(bounded) == Array(100..<count))
        #expect(core.subscriber.lastScanRows == count - odd.count)
    }
}

/// Issue 17: an extension's event table whose epoch changed (its eids started again) is read
/// from the start; the new mark and epoch replace the old ones.
@Suite struct EventEpochTests {
    @Test func aNewEpochResetsTheMark() {
        let none = EventQueryScope(query: "q", mark: (10, 50))
        #expect(none.markEID(table: "t_events", epoch: nil) == 50)
        #expect(none.keysToStore.isEmpty)

        // First seen (or a mark from before epochs): the mark stands, the epoch is stored.
        let first = EventQueryScope(query: "q", mark: (10, 50))
        #expect(first.markEID(table: "t_events", epoch: "a1") == 50)
        #expect(first.keysToStore == [EventQueryScope.epochKey("q"): "t_events=a1"])

        let same = EventQueryScope(query: "q", mark: (10, 50), epochs: ["t_events": "a1"])
        #expect(same.markEID(table: "t_events", epoch: "a1") == 50)
        #expect(same.keysToStore.isEmpty)

        let changed = EventQueryScope(query: "q", mark: (10, 50), epochs: ["t_events": "a1", "u_events": "c3"])
        #expect(changed.markEID(table: "t_events", epoch: "b2") == 0)
        // Nothing read yet: the mark still goes back to 0 with the new epoch.
        #expect(changed.keysToStore == [
            EventQueryScope.timeKey("q"): "0", EventQueryScope.eidKey("q"): "0000000000",
            EventQueryScope.epochKey("q"): "t_events=b2,u_events=c3",
        ])
        changed.readEvents(through: (20, 3))
        #expect(changed.newMark?.eid == 3)
        #expect(EventQueryScope.decodeEpochs("t_events=b2,u_events=c3") == ["t_events": "b2", "u_events": "c3"])
    }
}
