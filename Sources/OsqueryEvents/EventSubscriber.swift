import Foundation
package import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A scheduled query while it runs on the scheduler's thread: event tables read their
/// `events_optimize` mark from it and leave the new one there, and note that the query read an
/// event table (its results are then not diffed). The scheduler commits the new mark with the
/// query's logged results, so a crash in between neither loses nor repeats an event.
package final class EventQueryScope: Sendable {
    package let query: String
    /// The (time, eid) of the last event this query logged (osquery's `optimize.<query>` and
    /// `optimize_eid.<query>`).
    package let mark: (time: UInt64, eid: UInt64)
    /// Whether `--events_optimize` is on: an extension's event table is then asked only for
    /// events above ``mark``.
    package let optimize: Bool
    /// The epochs of the extension event tables the mark belongs to (table → epoch), as stored
    /// with it.
    package let epochs: [String: String]
    private struct State {
        var eventBased = false
        var newMark: (time: UInt64, eid: UInt64)?
        var seenEpochs: [String: String] = [:]
    }
    private let state = Mutex(State())

    package init(query: String, mark: (time: UInt64, eid: UInt64), optimize: Bool = true, epochs: [String: String] = [:]) {
        self.query = query
        self.mark = mark
        self.optimize = optimize
        self.epochs = epochs
    }

    /// Whether the query scanned an event table.
    package var eventBased: Bool { state.withLock { $0.eventBased } }
    /// The mark to store once the results are recorded; nil when no new event was read.
    package var newMark: (time: UInt64, eid: UInt64)? { state.withLock { $0.newMark } }

    /// Records that the query read events through `last` (its new mark); an event table served
    /// elsewhere (an extension's) calls it with the newest (time, eid) it returned.
    package func readEvents(through last: (time: UInt64, eid: UInt64)?) {
        state.withLock { s in
            s.eventBased = true
            if let last, last.eid > (s.newMark?.eid ?? 0) { s.newMark = last }
        }
    }

    /// Records that the query read an event table without the optimization (a `time` constraint).
    package func noteEventBased() { state.withLock { $0.eventBased = true } }

    /// The mark's eid for an extension's event table whose `eid`s belong to `epoch` (nil: the
    /// table sends none). When the epoch differs from the one stored with the mark, the table's
    /// `eid`s started again at 1 (it lost its state): the mark is from the old numbering, so
    /// this run reads every event (0) and the new mark replaces the old one. A mark stored
    /// without an epoch (the table's first run, or a store from before epochs) stands.
    package func markEID(table: String, epoch: String?) -> UInt64 {
        guard let epoch else { return mark.eid }
        return state.withLock { s in
            s.seenEpochs[table] = epoch
            guard let stored = epochs[table], stored != epoch else { return mark.eid }
            if s.newMark == nil { s.newMark = (0, 0) }
            return 0
        }
    }

    /// What to store with the query's results: the new mark, and the epochs when they changed.
    package var keysToStore: [String: String] {
        state.withLock { s in
            var keys: [String: String] = [:]
            if let mark = s.newMark {
                keys[Self.timeKey(query)] = String(mark.time)
                keys[Self.eidKey(query)] = EventID.index(mark.eid)
            }
            let merged = epochs.merging(s.seenEpochs) { $1 }
            if merged != epochs { keys[Self.epochKey(query)] = Self.encodeEpochs(merged) }
            return keys
        }
    }

    private static let scopes = Mutex<[pthread_t: EventQueryScope]>([:])

    /// Runs `body` (a query on this thread) inside `scope`.
    package static func run<T>(_ scope: EventQueryScope, _ body: () throws -> T) rethrows -> T {
        let thread = pthread_self()
        scopes.withLock { $0[thread] = scope }
        defer { _ = scopes.withLock { $0.removeValue(forKey: thread) } }
        return try body()
    }

    /// The scope of the query running on this thread, if it is a scheduled one.
    package static var current: EventQueryScope? {
        let thread = pthread_self()
        return scopes.withLock { $0[thread] }
    }

    /// osquery's keys in the store's `events` domain.
    package static func timeKey(_ query: String) -> String { "optimize." + query }
    package static func eidKey(_ query: String) -> String { "optimize_eid." + query }
    /// Ours: the epochs of the query's extension event tables, `table=epoch` joined by `,`
    /// (both are names of letters, digits, `-` and `_`).
    package static func epochKey(_ query: String) -> String { "optimize_epoch." + query }

    package static func encodeEpochs(_ epochs: [String: String]) -> String {
        epochs.sorted { $0.key < $1.key }.map { $0.key + "=" + $0.value }.joined(separator: ",")
    }

    package static func decodeEpochs(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = String(parts[1]) }
        }
        return out
    }
}

/// A subscriber: turns a publisher's events into rows (`add`), gives each a monotonically
/// increasing `eid` and a non-decreasing `time`, buffers them in the event database, and is the
/// table that reads them back. Its schema ends with osquery's `time` (additional) and `eid`
/// (hidden) columns.
package final class EventSubscriber: Sendable {
    package let name: String
    package let publisher: String
    package let schema: TableSchema
    let store: EventTableStore
    let database: any EventDatabase
    let flags: Flags
    let isDaemon: Bool

    private struct State {
        var pending: [BufferedEvent] = []
        var lastEID: UInt64 = 0
        var lastTime: UInt64 = 0
        var sinceCheckpoint = 0
        var storeError: String?
    }
    private let state = Mutex(State())
    /// Serializes writers of the table (flushes from the publisher, the flusher and queries).
    private let writing = Mutex<Void>(())

    private struct Counters {
        var events = 0
        var subscriptions = 0
        var enabled = true
        var expired = 0
        var dropped = 0
        var lastScanRows = 0
    }
    private let counters = Mutex(Counters())

    /// Where a table puts `time`, its aliases and the flags that bound it (osquery's
    /// `getEventsExpiry`/`getEventBatchesMax` overrides, e.g. syslog_events').
    package struct Layout: Sendable {
        package var timeFirst = false
        package var timeOptions: ColumnOptions = .additional
        package var aliases: [String] = []
        package var expiry: UIntFlag = .eventsExpiry
        package var max: UIntFlag = .eventsMax
        package init() {}
    }
    let layout: Layout

    /// `columns` are the subscriber's own; `time` and `eid` are appended (`time` goes first
    /// with `layout.timeFirst`, as in syslog_events).
    package convenience init(
        name: String, publisher: String, columns: [TableColumn], database: any EventDatabase, flags: Flags, isDaemon: Bool,
        layout: Layout = Layout()
    ) {
        let time = TableColumn("time", .bigint, layout.timeOptions)
        self.init(
            name: name, publisher: publisher,
            schemaColumns: (layout.timeFirst ? [time] + columns : columns + [time]) + [TableColumn("eid", .text, .hidden)],
            columnAliases: [], database: database, flags: flags, isDaemon: isDaemon, layout: layout)
    }

    /// `schemaColumns` are the table's columns in osquery's order, `time` (and, but for
    /// seccomp_events, `eid`) among them; `add` takes the others, in that order. Of `layout`,
    /// the aliases and the expiry and cap flags count here.
    package init(
        name: String, publisher: String, schemaColumns: [TableColumn], columnAliases: [(alias: String, target: String)],
        database: any EventDatabase, flags: Flags, isDaemon: Bool, layout: Layout = Layout()
    ) {
        self.name = name
        self.publisher = publisher
        self.layout = layout
        self.schema = TableSchema(
            name: name, columns: schemaColumns, aliases: layout.aliases, columnAliases: columnAliases, attributes: .eventBased)
        let eidAt = schemaColumns.firstIndex { $0.name == "eid" }
        self.store = EventTableStore(
            subscriber: name, valueCount: schemaColumns.count - (eidAt == nil ? 1 : 2), timeAt: schemaColumns.firstIndex { $0.name == "time" },
            eidAt: eidAt, hasEID: eidAt != nil)
        self.database = database
        self.flags = flags
        self.isDaemon = isDaemon
        let opened = database.withHandle { store.open($0) }
        state.withLock { s in
            switch opened {
            case .success(let last): s.lastEID = last
            case .failure(let e):
                s.storeError = e.message
                StatusLog.error(e.message)
            }
        }
    }

    package var isEnabled: Bool { counters.withLock { $0.enabled } }

    /// Rows the last scan read from the store (a `time` constraint narrows it).
    package var lastScanRows: Int { counters.withLock { $0.lastScanRows } }

    package func setEnabled(_ enabled: Bool) { counters.withLock { $0.enabled = enabled } }

    package func setSubscriptions(_ count: Int) { counters.withLock { $0.subscriptions = count } }

    package var status: (subscriptions: Int, events: Int, active: Bool, expired: Int, dropped: Int) {
        counters.withLock { ($0.subscriptions, $0.events, $0.enabled, $0.expired, $0.dropped) }
    }

    static func unixNow() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970)) }

    /// Wakes the hub's flusher (set by the hub).
    private let wakeFlusher = Mutex<(@Sendable () -> Void)?>(nil)

    func setFlusher(_ wake: (@Sendable () -> Void)?) { wakeFlusher.withLock { $0 = wake } }

    /// Adds one event's row (the subscriber's columns, in order). At `events_flush_rows` waiting
    /// rows the flusher is woken; at eight times that the caller writes them itself: a publisher
    /// that outruns the store slows down (its kernel queue then overflows, which it reports)
    /// instead of growing memory.
    package func add(_ values: [SQLValue]) {
        guard isEnabled else { return }
        let now = Self.unixNow()
        let batch = max(1, flags[.eventsFlushRows])
        let waiting = state.withLock { s -> UInt64 in
            s.lastEID += 1
            s.lastTime = max(s.lastTime, now)
            s.pending.append(BufferedEvent(eid: s.lastEID, time: s.lastTime, values: values))
            return UInt64(s.pending.count)
        }
        counters.withLock { $0.events += 1 }
        if waiting >= batch &* 8 {
            flush()
        } else if waiting == batch {
            if let wake = wakeFlusher.withLock({ $0 }) { wake() } else { flush() }
        }
    }

    /// Adds several events' rows as `add` does each, with one lock, one clock reading and one
    /// flag lookup for all (a publisher's batch).
    package func add(rows: [[SQLValue]]) {
        guard !rows.isEmpty, isEnabled else { return }
        let now = Self.unixNow()
        let batch = UInt64(max(1, flags[.eventsFlushRows]))
        let (before, after) = state.withLock { s -> (UInt64, UInt64) in
            let before = UInt64(s.pending.count)
            s.lastTime = max(s.lastTime, now)
            for values in rows {
                s.lastEID += 1
                s.pending.append(BufferedEvent(eid: s.lastEID, time: s.lastTime, values: values))
            }
            return (before, UInt64(s.pending.count))
        }
        counters.withLock { $0.events += rows.count }
        if after >= batch &* 8 {
            flush()
        } else if before < batch, after >= batch {
            if let wake = wakeFlusher.withLock({ $0 }) { wake() } else { flush() }
        }
    }

    /// Writes the rows waiting in memory; every 256 rows written, expires old rows and trims
    /// to `events_max` (osquery's checkpoint).
    package func flush() {
        writing.withLock { _ in
            let (batch, checkpoint) = state.withLock { s -> ([BufferedEvent], Bool) in
                let batch = s.pending
                s.pending = []
                s.pending.reserveCapacity(min(batch.count, 1024))
                s.sinceCheckpoint += batch.count
                let checkpoint = s.sinceCheckpoint >= 256
                if checkpoint { s.sinceCheckpoint = 0 }
                return (batch, checkpoint)
            }
            guard !batch.isEmpty else { return }
            let (error, trimmed) = database.withHandle { db -> (EventError?, Int) in
                let error = store.append(db, batch)
                return (error, checkpoint ? enforceLimits(db) : 0)
            }
            reportTrimmed(trimmed)
            if let error {
                counters.withLock { $0.dropped += batch.count }
                StatusLog.error("\(error.message); \(batch.count) events were not buffered")
            }
        }
    }

    /// Status lines are written once the database is released (a log sink may be slow).
    private func reportTrimmed(_ trimmed: Int) {
        guard trimmed > 0 else { return }
        StatusLog.warning("Removed \(trimmed) events for subscriber: \(publisher).\(name) (limit: \(flags[layout.max]))")
    }

    /// Called with the database held; returns how many rows `events_max` removed.
    func enforceLimits(_ db: OpaquePointer) -> Int {
        let expiry = flags[layout.expiry]
        var expired = 0
        if expiry > 0 {
            let now = Self.unixNow()
            if now > expiry { expired += store.expire(db, before: now - expiry) }
        }
        let max = flags[layout.max]
        let trimmed = max > 0 ? store.trim(db, keep: max) : 0
        if expired + trimmed > 0 { counters.withLock { $0.expired += expired + trimmed } }
        return trimmed
    }

    /// How many rows the store holds (tests, benchmarks).
    package func bufferedCount() -> Int {
        flush()
        return database.withHandle { store.count($0) }
    }

    /// A scan of the table: osquery's `genTable` (time constraints narrow the scan; a scheduled
    /// query without one reads only what it has not logged yet); nil with events disabled
    /// (osquery's warning, no rows).
    func openCursor(_ context: QueryContext, eventsDisabled: Bool, shell: Bool) -> EventCursor? {
        let scope = EventQueryScope.current
        if eventsDisabled {
            StatusLog.warning("Table \(name) is event-based but events are disabled")
            if shell { StatusLog.warning("Please see the table documentation: https://osquery.io/schema/#\(name)") }
            scope?.noteEventBased()
            return nil
        }
        flush()
        var bounds = EventScanBounds()
        let timeConstraints = context.constraints(for: "time")
        for c in timeConstraints {
            guard let v = Int64(c.expr) ?? Double(c.expr).map({ Int64(clamping: Int64($0.rounded(.down))) }) else { continue }
            let t = UInt64(max(0, v))
            switch c.op {
            case .equals: (bounds.start, bounds.stop) = (t, t)
            case .greaterThan: bounds.start = max(bounds.start, t &+ 1)
            case .greaterThanOrEquals: bounds.start = max(bounds.start, t)
            case .lessThan: bounds.stop = min(bounds.stop, t == 0 ? 0 : t - 1)
            case .lessThanOrEquals: bounds.stop = min(bounds.stop, t)
            default: break
            }
        }
        let optimize = scope != nil && timeConstraints.isEmpty && isDaemon && flags[.eventsOptimize]
        if optimize, let scope {
            bounds.start = scope.mark.time == 0 ? 0 : scope.mark.time - 1
            bounds.afterEID = scope.mark.eid
        }
        return EventCursor(subscriber: self, bounds: bounds, scope: scope, optimize: optimize)
    }

    /// A scan read `rows` rows from the store and `events_max` removed `trimmed`.
    func scanEnded(rows: Int, trimmed: Int) {
        reportTrimmed(trimmed)
        counters.withLock { $0.lastScanRows = rows }
    }

    /// The table's rows, all at once (what `generate` answers; SQLite reads them through the cursor).
    func generate(_ context: QueryContext, eventsDisabled: Bool, shell: Bool) throws -> TableRows {
        var rows = TableRows(schema: schema)
        guard let cursor = openCursor(context, eventsDisabled: eventsDisabled, shell: shell) else { return rows }
        defer { cursor.close() }
        let columns = schema.columns.count
        while try cursor.advance() {
            for c in 0..<columns { rows.append(cursor.cell(c).value) }
        }
        return rows
    }
}

/// A subscriber as a table; SQLite reads its rows through a cursor over the store.
struct EventTable: CursorTable {
    let subscriber: EventSubscriber
    let flags: Flags
    let shell: Bool
    var schema: TableSchema { subscriber.schema }

    func generate(_ context: QueryContext) throws -> TableRows {
        try subscriber.generate(context, eventsDisabled: flags[.disableEvents], shell: shell)
    }

    func openCursor(_ context: QueryContext) throws -> (any RowCursor)? {
        if let cursor = subscriber.openCursor(context, eventsDisabled: flags[.disableEvents], shell: shell) { return cursor }
        return NoEvents()
    }
}

/// The rows of an event table queried with events disabled.
private final class NoEvents: RowCursor {
    func advance() throws(EngineError) -> Bool { false }
    func cell(_ column: Int) -> StoredCell { .null }
    func close() {}
}
