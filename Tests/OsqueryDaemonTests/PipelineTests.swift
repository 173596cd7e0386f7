import Foundation
import OsqueryEngine
import OsqueryManager
import ProtocolFixture
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

/// A daemon's result path on disk: store at `<dir>/db/osquery.db`, filesystem
/// logger at `<dir>/logs`.
struct PipelineRig {
    let dir: ResultsTestDir
    let flags: Flags

    init(_ tag: String, _ settings: [String: String] = [:]) throws {
        dir = ResultsTestDir(tag)
        var all = ["logger_plugin": "filesystem", "logger_path": dir.file("logs")]
        for (k, v) in settings { all[k] = v }
        flags = try resultFlags(all)
    }

    /// A pipeline over the store as it is on disk (as a restarted daemon sees it).
    func open() throws -> ResultPipeline {
        let store = try DaemonStore.open(path: dir.file("db/osquery.db"))
        let loggers = try LoggerSet.make(flags: flags, registry: PluginRegistry(), caller: nil)
        return ResultPipeline(store: store, loggers: loggers, flags: flags)
    }

    var results: String { dir.read("logs/osqueryd.results.log") }
    var snapshots: String { dir.read("logs/osqueryd.snapshots.log") }
}

extension ResultPipeline {
    /// `record`, then waits (bounded) until every logger has taken the run.
    func recordDelivered(_ query: ScheduledQuery, _ results: QueryResults, context: LogContext) throws -> RecordOutcome {
        let outcome = try record(query, results, context: context)
        guard try drain() else { throw DaemonError("the loggers did not take the run") }
        return outcome
    }
}

func context(_ t: UInt64, _ decorations: [String: String] = [:]) -> LogContext {
    LogContext(hostIdentifier: "host", unixTime: t, calendarTime: CalendarTime.string(unixTime: t), decorations: decorations)
}

@Suite(.ownThread) struct PipelineTests {
    let q = ScheduledQuery(name: "q", sql: "select * from t", interval: 10)
    let s = ScheduledQuery(name: "s", sql: "select * from u", interval: 10, snapshot: true)

    @Test func eventLinesAcrossRuns() throws {
        let rig = try PipelineRig("events")
        defer { rig.dir.remove() }
        let p = try rig.open()
        var o = try p.recordDelivered(q, QueryResults(rows: [["a": "1"], ["a": "2"]]), context: context(100))
        #expect(o == RecordOutcome(added: 2, removed: 0, counter: 0, outputBytes: rig.results.utf8.count))
        o = try p.recordDelivered(q, QueryResults(rows: [["a": "1"], ["a": "2"]]), context: context(110))
        #expect(o.added == 0 && o.removed == 0 && o.outputBytes == 0 && o.counter == 0)
        o = try p.recordDelivered(q, QueryResults(rows: [["a": "2"], ["a": "3"]]), context: context(120, ["d": "x"]))
        #expect(o.added == 1 && o.removed == 1 && o.counter == 1)
        let c100 = CalendarTime.string(unixTime: 100)
        let c120 = CalendarTime.string(unixTime: 120)
        #expect(rig.results == """
            {"name":"q","hostIdentifier":"host","calendarTime":"\(c100)","unixTime":100,"epoch":0,"counter":0,"numerics":false,"columns":{"a":"1"},"action":"added"}
            {"name":"q","hostIdentifier":"host","calendarTime":"\(c100)","unixTime":100,"epoch":0,"counter":0,"numerics":false,"columns":{"a":"2"},"action":"added"}
            {"name":"q","hostIdentifier":"host","calendarTime":"\(c120)","unixTime":120,"epoch":0,"counter":1,"numerics":false,"decorations":{"d":"x"},"columns":{"a":"1"},"action":"removed"}
            {"name":"q","hostIdentifier":"host","calendarTime":"\(c120)","unixTime":120,"epoch":0,"counter":1,"numerics":false,"decorations":{"d":"x"},"columns":{"a":"3"},"action":"added"}

            """)
        #expect(try p.pendingCount() == 0)
    }

    @Test func batchModeLogsAnEmptyFirstRunOnly() throws {
        let rig = try PipelineRig("batch", ["logger_event_type": "false"])
        defer { rig.dir.remove() }
        let p = try rig.open()
        _ = try p.recordDelivered(q, QueryResults(), context: context(100))
        _ = try p.recordDelivered(q, QueryResults(), context: context(110))
        _ = try p.recordDelivered(q, QueryResults(rows: [["a": "1"]]), context: context(120))
        let lines = rig.results.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].hasPrefix(#"{"diffResults":{"removed":[],"added":[]},"name":"q","#) && lines[0].contains(#""counter":0,"#))
        #expect(lines[1].hasPrefix(#"{"diffResults":{"removed":[],"added":[{"a":"1"}]},"name":"q","#) && lines[1].contains(#""counter":1,"#))
    }

    @Test func removedFalseAndNumericsAndEpoch() throws {
        let rig = try PipelineRig("options", ["logger_numerics": "true"])
        defer { rig.dir.remove() }
        var noRemoved = q
        noRemoved.removed = false
        let p = try rig.open()
        let results = { (rows: [ResultRow]) in QueryResults(rows: rows, numericColumns: ["n"]) }
        _ = try p.recordDelivered(noRemoved, results([["n": "1", "t": "x"]]), context: context(100))
        // Only a removal: stored and counted, nothing logged.
        var o = try p.recordDelivered(noRemoved, results([]), context: context(110))
        #expect(o.removed == 0 && o.counter == 1 && o.outputBytes == 0)
        o = try p.recordDelivered(noRemoved, results([["n": "2", "t": "y"]]), context: context(120))
        #expect(o.counter == 2)
        try rig.flags.set("schedule_epoch", "5")
        o = try p.recordDelivered(noRemoved, results([["n": "2", "t": "y"]]), context: context(130))
        #expect(o.counter == 0 && o.added == 1)
        let lines = rig.results.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { !$0.contains("\"removed\"") && $0.contains("\"numerics\":true") })
        #expect(lines[1].contains(#""epoch":0,"counter":2,"#) && lines[1].contains(#""columns":{"n":2,"t":"y"}"#))
        #expect(lines[2].contains(#""epoch":5,"counter":0,"#))
    }

    @Test func removedRowsKeepNumerics() throws {
        let rig = try PipelineRig("numremoved", ["logger_numerics": "true"])
        defer { rig.dir.remove() }
        let p = try rig.open()
        _ = try p.recordDelivered(q, QueryResults(rows: [["n": "7"]], numericColumns: ["n"]), context: context(100))
        _ = try p.recordDelivered(q, QueryResults(rows: [], numericColumns: ["n"]), context: context(110))
        let last = rig.results.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasSuffix(#""columns":{"n":7},"action":"removed"}"#), "\(last)")
    }

    @Test func snapshotsGoToTheirOwnFileAndStoreNothing() throws {
        let rig = try PipelineRig("snap")
        defer { rig.dir.remove() }
        let p = try rig.open()
        let o = try p.recordDelivered(s, QueryResults(rows: [["b": "1"], ["b": "1"]]), context: context(100))
        #expect(o.added == 2 && o.counter == 0)
        _ = try p.recordDelivered(s, QueryResults(rows: [["b": "1"], ["b": "1"]]), context: context(110))
        let lines = rig.snapshots.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].hasPrefix(#"{"snapshot":[{"b":"1"},{"b":"1"}],"action":"snapshot","name":"s","#))
        #expect(rig.results.isEmpty)
        #expect(try p.store.keys("queries").isEmpty)
    }

    @Test func resultsFileExistsFromTheStartAndOutputSize() throws {
        let rig = try PipelineRig("start")
        defer { rig.dir.remove() }
        _ = try rig.open()
        #expect(FileManager.default.fileExists(atPath: rig.dir.file("logs/osqueryd.results.log")))
        #expect(rig.dir.mode("logs/osqueryd.results.log") == 0o640)
        #expect(ResultPipeline.outputSize(QueryResults(rows: [["ab": "123", "c": ""], ["ab": "é"]])) == 2 + 3 + 1 + 0 + 2 + 2)
    }

    @Test func disableLoggingStoresButLogsNothing() throws {
        let rig = try PipelineRig("disabled", ["disable_logging": "true"])
        defer { rig.dir.remove() }
        let p = try rig.open()
        let o = try p.recordDelivered(q, QueryResults(rows: [["a": "1"]]), context: context(100))
        #expect(o.added == 1)
        #expect(rig.results.isEmpty)
        #expect(try p.store.get("queries", "q") == #"[{"a":"1"}]"#)
        #expect(try p.pendingCount() == 0)
    }

    /// An unwritable results file is not fatal: the run is stored, the lines
    /// wait in the outbox, and the error is there to report.
    @Test func unwritableResultsAreKeptAndRetried() throws {
        let rig = try PipelineRig("unwritable", ["logger_path": "/proc/self/no-such/logs"])
        defer { rig.dir.remove() }
        let p = try rig.open()
        defer { p.stop() }
        let o = try p.record(q, QueryResults(rows: [["a": "1"]]), context: context(100))
        #expect(o.added == 1)
        #expect(try p.drain(timeout: 1) == false)
        #expect(try p.pendingCount() == 1)
        #expect(p.failure(of: "filesystem")?.contains("/proc/self/no-such/logs") == true, "\(p.failure(of: "filesystem") ?? "nil")")
    }

    /// The runs the crash test replays: adds, removes, duplicates, a snapshot.
    static let runs: [(ScheduledQuery, [ResultRow])] = {
        let q = ScheduledQuery(name: "q", sql: "select * from t", interval: 10)
        let s = ScheduledQuery(name: "s", sql: "select * from u", interval: 10, snapshot: true)
        return [
            (q, [["a": "1"], ["a": "2"]]),
            (s, [["b": "1"]]),
            (q, [["a": "2"], ["a": "2"], ["a": "3"]]),
            (q, [["a": "3"]]),
            (s, [["b": "2"], ["b": "3"]]),
            (q, [["a": "4"], ["a": "5"], ["a": "6"]]),
        ]
    }()

    @Test(arguments: ResultPipeline.Step.allCases)
    func crashAtAnyStepNeitherLosesNorDuplicates(step: ResultPipeline.Step) throws {
        let reference = try PipelineRig("ref")
        defer { reference.dir.remove() }
        do {
            let p = try reference.open()
            for (i, run) in Self.runs.enumerated() {
                _ = try p.recordDelivered(run.0, QueryResults(rows: run.1), context: context(UInt64(100 + i)))
            }
        }
        #expect(!reference.results.isEmpty && !reference.snapshots.isEmpty)

        for crashing in Self.runs.indices {
            let rig = try PipelineRig("crash")
            defer { rig.dir.remove() }
            let armed = Mutex(false)
            let crashes = Mutex(0)
            var pipeline: ResultPipeline? = try rig.open()
            for (i, run) in Self.runs.enumerated() {
                let results = QueryResults(rows: run.1)
                armed.withLock { $0 = i == crashing }
                pipeline!.setFaultHook { (at: ResultPipeline.Step) throws(DaemonError) in
                    let fire = armed.withLock { a -> Bool in
                        guard a, at == step else { return false }
                        a = false
                        return true
                    }
                    if fire {
                        crashes.withLock { $0 += 1 }
                        throw DaemonError("crash at \(at)")
                    }
                }
                do {
                    _ = try pipeline!.record(run.0, results, context: context(UInt64(100 + i)))
                    // A fault in a courier stops the pipeline: drain throws it.
                    #expect(try pipeline!.drain())
                } catch {
                    // The process dies: everything in memory is gone; a new one
                    // opens the store from disk, recovers, and runs the query again.
                    pipeline = nil
                    pipeline = try rig.open()
                    pipeline!.recover()
                    #expect(try pipeline!.drain())
                    // The scheduler runs the query again. A differential query
                    // whose run was committed then finds nothing new; a snapshot
                    // run was committed (and delivered by recover) unless the
                    // crash came before the commit, so only then is it redone.
                    if !run.0.snapshot || step == .beforeCommit {
                        _ = try pipeline!.recordDelivered(run.0, results, context: context(UInt64(100 + i)))
                    }
                }
            }
            #expect(try pipeline!.pendingCount() == 0)
            pipeline = nil
            let crashed = crashes.withLock { $0 }
            // Every run logs something, so every step is reached: the crash happened.
            #expect(crashed == 1, "step \(step), run \(crashing)")
            #expect(rig.results == reference.results, "step \(step), run \(crashing)")
            #expect(rig.snapshots == reference.snapshots, "step \(step), run \(crashing)")
        }
    }

    @Test func recoverRepairsATornTail() throws {
        let rig = try PipelineRig("torn")
        defer { rig.dir.remove() }
        var pipeline: ResultPipeline? = try rig.open()
        pipeline!.setFaultHook { (at: ResultPipeline.Step) throws(DaemonError) in
            if at == .midAppend { throw DaemonError("killed mid-write") }
        }
        _ = try pipeline!.record(q, QueryResults(rows: [["a": "1"], ["a": "2"], ["a": "3"]]), context: context(100))
        #expect(throws: DaemonError.self) { try pipeline!.drain() }
        pipeline = nil
        let torn = rig.results
        #expect(!torn.isEmpty && !torn.hasSuffix("\n"))
        pipeline = try rig.open()
        pipeline!.recover()
        #expect(try pipeline!.drain())
        let lines = rig.results.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 4 && lines[3].isEmpty)
        #expect(lines[0].hasSuffix(#""columns":{"a":"1"},"action":"added"}"#))
        #expect(torn.count < rig.results.count && rig.results.hasPrefix(torn))
    }
}
