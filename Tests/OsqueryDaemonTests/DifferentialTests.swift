import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

@Suite struct DifferentialTests {
    func run(_ store: DaemonStore, _ name: String, _ rows: [ResultRow], epoch: UInt64 = 0, sql: String = "select 1")
        throws -> Differential.Diff
    {
        let current = Differential.canonical(rows)
        return try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> Differential.Diff in
            try Differential.apply(name: name, sql: sql, current: current, epoch: epoch, in: &t)
        }
    }

    @Test func multisetWithDuplicatesCounted() {
        let previous: [Substring] = ["a", "a", "b", "c"]
        let (added, removed) = Differential.diff(previous: previous, current: ["a", "b", "b", "d"])
        #expect(added == ["b", "d"])
        #expect(removed == ["a", "c"])
        let same = Differential.diff(previous: ["x", "x"], current: ["x", "x"])
        #expect(same.added.isEmpty && same.removed.isEmpty)
    }

    @Test func firstRunThenChangesThenNothing() throws {
        let store = DaemonStore.inMemory()
        let a: ResultRow = ["path": "/a", "size": "1"]
        let b: ResultRow = ["path": "/b", "size": "2"]
        let first = try run(store, "files", [a, b])
        #expect(first.newBaseline && first.counter == 0 && first.added.count == 2 && first.removed.isEmpty)
        #expect(try store.get("queries", "files") == #"[{"path":"/a","size":"1"},{"path":"/b","size":"2"}]"#)
        #expect(try store.get("queries", "filesepoch") == "0")
        #expect(try store.get("queries", "filescounter") == "0")
        #expect(try store.get("queries", "query.files") == "select 1")

        let second = try run(store, "files", [b, a, a])
        #expect(second.added == [#"{"path":"/a","size":"1"}"#])
        #expect(second.removed.isEmpty)
        #expect(second.counter == 1 && second.stored && !second.newBaseline)

        let third = try run(store, "files", [a])
        #expect(third.added.isEmpty)
        #expect(third.removed == [#"{"path":"/b","size":"2"}"#, #"{"path":"/a","size":"1"}"#])
        #expect(third.counter == 2)

        // Unchanged: nothing stored, counter kept.
        let fourth = try run(store, "files", [a])
        #expect(fourth.added.isEmpty && fourth.removed.isEmpty && !fourth.stored && fourth.counter == 2)
        #expect(try store.get("queries", "filescounter") == "2")
    }

    @Test func newEpochIsANewBaseline() throws {
        let store = DaemonStore.inMemory()
        let a: ResultRow = ["x": "1"]
        _ = try run(store, "q", [a])
        _ = try run(store, "q", [a, a])
        let again = try run(store, "q", [a], epoch: 7)
        #expect(again.newBaseline && again.counter == 0 && again.added.count == 1 && again.removed.isEmpty)
        #expect(try store.get("queries", "qepoch") == "7")
        let next = try run(store, "q", [a], epoch: 7)
        #expect(!next.stored && next.added.isEmpty)
    }

    @Test func changedSQLKeepsTheBaseline() throws {
        let store = DaemonStore.inMemory()
        _ = try run(store, "q", [["x": "1"]], sql: "select 1 as x")
        let changed = try run(store, "q", [["x": "1"], ["x": "2"]], sql: "select * from t")
        #expect(!changed.newBaseline && changed.added == [#"{"x":"2"}"#] && changed.counter == 1)
        #expect(try store.get("queries", "query.q") == "select * from t")
    }

    @Test func damagedBaselineStartsAgain() throws {
        let store = DaemonStore.inMemory()
        _ = try run(store, "q", [["x": "1"]])
        try store.put("queries", "q", "not json")
        let d = try run(store, "q", [["x": "1"]])
        #expect(d.newBaseline && d.counter == 0 && d.added.count == 1)
    }

    @Test func valuesNeedingEscapesRoundTrip() throws {
        let store = DaemonStore.inMemory()
        let tricky: ResultRow = ["a\"b": "quote \" back \\ nl \n tab \t ctl \u{1} } { , ]", "é": "ü"]
        _ = try run(store, "q", [tricky])
        let same = try run(store, "q", [tricky])
        #expect(!same.stored)
        let parsed = CanonicalRow.row(Differential.canonical([tricky])[0])
        #expect(parsed == tricky)
    }

    @Test func purgeStaleAfterAWeekAway() throws {
        let store = DaemonStore.inMemory()
        _ = try run(store, "kept", [["x": "1"]])
        _ = try run(store, "gone", [["x": "1"]])
        var purged = try Differential.purgeStale(store: store, keeping: ["kept"], now: 1000)
        #expect(purged.isEmpty)
        #expect(try store.get("persistent_settings", "timestamp.gone") == "1000")
        purged = try Differential.purgeStale(store: store, keeping: ["kept"], now: 1000 + 592_200)
        #expect(purged.isEmpty)
        purged = try Differential.purgeStale(store: store, keeping: ["kept"], now: 1001 + 592_200)
        #expect(purged == ["gone"])
        #expect(try store.keys("queries") == ["kept", "keptcounter", "keptepoch", "query.kept"])
        #expect(try store.get("persistent_settings", "timestamp.gone") == nil)
    }
}
