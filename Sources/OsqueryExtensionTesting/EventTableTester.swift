public import OsqueryExtension
import OsqueryEngine
import Synchronization

/// Runs real SQL against an `EventTable` in process, as ``TableTester`` does,
/// and also as an osquery daemon's schedule runs it (``scheduledQuery(_:)``).
///
/// ```swift
/// let events = EventTable("door_events", columns: [.text("door")], options: .init(stateDirectory: nil))
/// let tester = try EventTableTester(events)
/// events.add(["door": "front"])
/// #expect(try await tester.scheduledQuery("select door from door_events").count == 1)
/// #expect(try await tester.scheduledQuery("select door from door_events").isEmpty)   // logged once
/// #expect(try await tester.query("select door from door_events where time > 0").count == 1)
/// ```
public final class EventTableTester: Sendable {
    /// The event table under test.
    package let events: EventTable
    let engine: EngineBox
    let marks: ScheduleMarks

    /// A tester for `events`, attached the way the core attaches an extension table.
    /// - Parameter events: the event table to query.
    /// - Throws: `ExtensionError.invalidTable` when the core would refuse the table; the core
    ///   engine's error when its in-memory database cannot be opened.
    public convenience init(_ events: EventTable) throws {
        try self.init(events, marks: ScheduleMarks())
    }

    /// A tester for `events` that goes on from `previous`'s schedule, as a daemon keeps its
    /// marks when an extension restarts: `events` is the restarted extension's table (a new
    /// `EventTable` of the same name). If its `epoch` differs from the one the
    /// marks were taken in (it lost its state file), the next scheduled query reads every
    /// event, as the daemon does.
    /// - Parameters:
    ///   - events: the event table to query.
    ///   - previous: the tester whose marks carry over.
    /// - Throws: what ``init(_:)`` throws.
    public convenience init(_ events: EventTable, continuing previous: EventTableTester) throws {
        let marks = ScheduleMarks()
        marks.state.withLock { s in
            let old = previous.marks.state.withLock { $0 }
            s.mark = old.mark
            s.epoch = old.epoch
        }
        try self.init(events, marks: marks)
    }

    init(_ events: EventTable, marks: ScheduleMarks) throws {
        let table = events.table
        if let problem = table.schema.problem { throw ExtensionError.invalidTable(problem) }
        self.events = events
        let recorder = Recorder()
        let bridged = BridgedTable(schema: engineSchema(table.schema)) { request in
            recorder.append(request)
            return try await table.wireResponse(PluginRequest(raw: request))
        }
        engine = try EngineBox(tables: [ScheduledEventTable(bridged: bridged, marks: marks, epoch: events.epoch)])
        engine.recorder = recorder
        self.marks = marks
    }

    /// Runs `sql` as a shell would (no mark: every buffered event matching it).
    /// - Parameter sql: the statement to run.
    /// - Returns: the rows, each a column name → value dictionary (NULL as "").
    /// - Throws: an error whose description is SQLite's (or the table's) message on failure.
    public func query(_ sql: String) async throws -> [[String: String]] {
        try await engine.run(sql)
    }

    /// Runs `sql` as osqueryd's schedule does with `--events_optimize` (its default): without a
    /// `time` constraint, the table is asked only for events above the newest `eid` an earlier
    /// scheduled query returned, so each event comes back once.
    /// - Parameter sql: the scheduled query.
    /// - Returns: the rows the daemon would log.
    /// - Throws: an error whose description is SQLite's (or the table's) message on failure; the mark then
    ///   stays where it was (the daemon logs nothing and asks again).
    public func scheduledQuery(_ sql: String) async throws -> [[String: String]] {
        marks.state.withLock { s in
            s.scheduled = true
            s.pending = nil
            s.runEpoch = nil
            s.reset = false
        }
        defer { marks.state.withLock { $0.scheduled = false } }
        let rows = try await engine.run(sql)
        marks.state.withLock { s in
            if s.reset {
                s.mark = s.pending ?? 0
            } else if let pending = s.pending {
                s.mark = max(s.mark, pending)
            }
            if let epoch = s.runEpoch { s.epoch = epoch }
        }
        return rows
    }

    /// The newest `eid` the scheduled queries returned (what the daemon stores after logging).
    package var mark: Int64 { marks.state.withLock { $0.mark } }

    /// Every request the table received, oldest first.
    package var requests: [PluginRequest] { engine.recorder?.all() ?? [] }

    /// The context of the last `generate` call.
    public var lastContext: OsqueryExtension.QueryContext? {
        requests.last(where: { $0.action == "generate" }).flatMap { try? OsqueryExtension.QueryContext(json: $0["context"] ?? "") }
    }
}

final class ScheduleMarks: Sendable {
    struct State {
        var scheduled = false
        var mark: Int64 = 0
        var pending: Int64?
        /// The table's epoch the mark belongs to; the one a run saw; whether that run found it changed.
        var epoch: String?
        var runEpoch: String?
        var reset = false
    }
    let state = Mutex(State())
}

/// The core's side of a scheduled event query: an `eid > mark` constraint (with `eid` and
/// `time` among the used columns) and the newest `eid` returned noted as the next mark; a
/// table whose epoch changed since the mark is asked for every event.
struct ScheduledEventTable: OsqueryEngine.TablePlugin {
    let bridged: BridgedTable
    let marks: ScheduleMarks
    let epoch: String
    var schema: OsqueryEngine.TableSchema { bridged.schema }
    var isExtension: Bool { true }

    func generate(_ context: OsqueryEngine.QueryContext) throws -> TableRows {
        let scheduled = marks.state.withLock { $0.scheduled }
        let columns = schema.columns
        guard scheduled, context.constraints(for: "time").isEmpty,
            let eidIndex = columns.firstIndex(where: { $0.name == "eid" })
        else { return try bridged.generate(context) }
        let mark = marks.state.withLock { s -> Int64 in
            s.runEpoch = epoch
            guard let stored = s.epoch, stored != epoch else { return s.mark }
            s.reset = true
            return 0
        }
        var context = context
        context.add(OsqueryEngine.Constraint(op: .greaterThan, expr: String(mark), value: .integer(mark)), to: "eid")
        context.colsUsed?.formUnion(["eid", "time"])
        context.colsUsedBitset = nil
        let rows = try bridged.generate(context)
        var newest: Int64?
        for r in 0..<rows.count {
            if case .integer(let eid) = rows[r, eidIndex], eid > (newest ?? mark) { newest = eid }
        }
        if let newest { marks.state.withLock { $0.pending = max($0.pending ?? 0, newest) } }
        return rows
    }
}
