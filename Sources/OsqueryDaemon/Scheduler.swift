import Foundation
public import OsqueryEngine
import OsqueryEvents
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The little the scheduler keeps across restarts: splays, the query being
/// run (for crash denylisting) and the denylist. The daemon's store provides it.
public protocol ScheduleStateStore: Sendable {
    /// nil when missing; throws when the value cannot be read.
    func get(_ domain: String, _ key: String) throws(DaemonError) -> String?
    func put(_ domain: String, _ key: String, _ value: String) throws(DaemonError)
    func delete(_ domain: String, _ key: String) throws(DaemonError)
}

/// What the scheduler runs: the active queries and the decorator queries.
public struct ScheduleDefinition: Sendable, Equatable {
    public var queries: [ScheduledQuery]
    public var loadDecorators: [String]
    public var alwaysDecorators: [String]
    /// Seconds (multiples of 60) → queries.
    public var intervalDecorators: [UInt64: [String]]
    /// Config `views`: name → SELECT, created in the scheduler's database.
    public var views: [String: String]

    public init(
        queries: [ScheduledQuery] = [], loadDecorators: [String] = [], alwaysDecorators: [String] = [],
        intervalDecorators: [UInt64: [String]] = [:], views: [String: String] = [:]
    ) {
        self.queries = queries
        self.loadDecorators = loadDecorators
        self.alwaysDecorators = alwaysDecorators
        self.intervalDecorators = intervalDecorators
        self.views = views
    }
}

/// osquery's scheduler (core.md §2.5): one thread ticking once a second on
/// wall-clock seconds; a query runs when the tick is a multiple of its splayed
/// interval, so runs line up with Unix time, not with the daemon's start.
/// Queries run one after another on the scheduler's own database.
public final class Scheduler: ScheduleSnapshotProvider {
    /// Diffs, stores and logs one run; returns the bytes logged. A thrown
    /// error with exit code 78 stops the daemon (results cannot be written).
    public typealias Recorder = @Sendable (ScheduledQuery, QueryResults, LogContext) throws(DaemonError) -> Int
    /// The host identifier, time and calendar time for a line.
    public typealias ContextMaker = @Sendable (_ unixTime: UInt64, _ decorations: [String: String]) -> LogContext

    static let settings = "persistent_settings"
    static let denylistSeconds: UInt64 = 86400

    private struct State {
        var definition = ScheduleDefinition()
        var performance: [String: QueryPerformance] = [:]
        var splays: [String: UInt64] = [:]
        var denylist: [String: UInt64] = [:]  // name → expiry (unix seconds)
        var loadDecorations: [String: String] = [:]
        var intervalDecorations: [UInt64: [String: String]] = [:]
        var reloadPending = true
        var stopping = false
        var running: String?
    }

    private let state = Mutex(State())
    private let wake = NSCondition()
    private let finished = DispatchSemaphore(value: 0)
    let store: any ScheduleStateStore
    let registry: PluginRegistry
    private let flags: Flags
    private let record: Recorder
    private let makeContext: ContextMaker
    private let onFatal: @Sendable (DaemonError) -> Void
    private let interrupter = Mutex<Database.Interrupter?>(nil)

    public init(
        store: any ScheduleStateStore, registry: PluginRegistry, flags: Flags, record: @escaping Recorder,
        context: @escaping ContextMaker, onFatal: @escaping @Sendable (DaemonError) -> Void
    ) {
        self.store = store
        self.registry = registry
        self.flags = flags
        self.record = record
        self.makeContext = context
        self.onFatal = onFatal
    }

    // MARK: - Start-up denylisting

    /// Denylists the query that was running when the previous worker died
    /// (its name is still in `executing_query`), and loads the denylist.
    /// Call before `start`.
    public func loadCrashState(knownQueries: [ScheduledQuery]) {
        let now = Self.unixNow()
        var denylist: [String: UInt64] = [:]
        for query in knownQueries {
            if let raw = read("denylist.\(query.name)"), let expiry = UInt64(raw), expiry > now {
                denylist[query.name] = expiry
            }
        }
        if let crashed = read("executing_query"), !crashed.isEmpty {
            let query = knownQueries.first { $0.name == crashed }
            // events (issue 17): a query over event tables only is denylisted with --events_enforce_denylist alone.
            if query?.denylist ?? true, flags[.eventsEnforceDenylist] || !Self.readsOnlyEventTables(query?.sql ?? "", registry: registry) {
                let expiry = now + Self.denylistSeconds
                denylist[crashed] = expiry
                try? store.put(Self.settings, "denylist.\(crashed)", String(expiry))
                StatusLog.warning("Scheduled query may have failed: \(crashed)")
            }
            try? store.delete(Self.settings, "executing_query")
        }
        state.withLock { $0.denylist.merge(denylist) { $1 } }
    }

    /// A setting, nil when missing. A read error is reported and taken as
    /// missing: at worst a splay is drawn again or a crash goes undenylisted.
    private func read(_ key: String) -> String? {
        do {
            return try store.get(Self.settings, key)
        } catch {
            StatusLog.warning("Cannot read \(key) from the store: \(error.message)")
            return nil
        }
    }

    /// Replaces the schedule (config load or refresh). Performance figures of
    /// queries whose SQL changed are reset, as osquery does.
    public func update(_ definition: ScheduleDefinition) {
        state.withLock { s in
            let old = Dictionary(s.definition.queries.map { ($0.name, $0.sql) }, uniquingKeysWith: { a, _ in a })
            for q in definition.queries where old[q.name] != nil && old[q.name] != q.sql {
                s.performance[q.name] = nil
                StatusLog.info("Scheduled query has been updated: \(q.name)")
            }
            s.definition = definition
            s.reloadPending = true
        }
    }

    // MARK: - Running

    /// Starts the scheduler thread. `timeout` > 0 stops it after that many
    /// seconds (`--schedule_timeout`), calling `onFinished`.
    public func start(onFinished: @escaping @Sendable () -> Void = {}) {
        let thread = Thread { [self] in
            run()
            finished.signal()
            onFinished()
        }
        thread.name = "scheduler"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Stops after the running query; a query still running after `grace`
    /// is interrupted. Returns false when the thread did not end in time.
    @discardableResult
    public func stop(grace: Duration = .seconds(10)) -> Bool {
        state.withLock { $0.stopping = true }
        wake.lock()
        wake.broadcast()
        wake.unlock()
        let seconds = Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18
        if finished.wait(timeout: .now() + seconds) == .success { return true }
        interrupter.withLock { $0?.interrupt() }
        return finished.wait(timeout: .now() + 2) == .success
    }

    /// Name of the query running now, if any.
    public var runningQuery: String? { state.withLock { $0.running } }

    /// Rows of osquery_schedule: every scheduled query with its figures.
    public func scheduleSnapshot() -> [(query: ScheduledQuery, performance: QueryPerformance, denylisted: Bool, splayed: UInt64)] {
        let now = Self.unixNow()
        return state.withLock { s in
            s.definition.queries.map { q in
                (q, s.performance[q.name] ?? QueryPerformance(), (s.denylist[q.name] ?? 0) > now, s.splays[q.name] ?? q.interval)
            }
        }
    }

    private var isStopping: Bool { state.withLock { $0.stopping } }

    private func run() {
        let database: Database
        do {
            database = try Database(registry: registry, flags: flags)
        } catch {
            onFatal(DaemonError("scheduler cannot open its database: \(error)", exitCode: 78))
            return
        }
        interrupter.withLock { $0 = database.interrupter }
        let timeout = flags[.scheduleTimeout]
        let startedAt = Self.unixNow()
        let maxDrift = max(1, flags[.scheduleMaxDrift])

        // Queries with startup_priority run once right away, in priority order.
        var views: [String] = []
        prepare(database, views: &views)
        let startup = state.withLock { $0.definition.queries }
            .filter { $0.startupPriority != nil }
            .sorted { ($0.startupPriority!, $0.name) < ($1.startupPriority!, $1.name) }
        for query in startup where !isStopping {
            execute(query, database: database)
        }

        var tick = Self.unixNow()
        while !isStopping {
            prepare(database, views: &views)
            runDue(tick: tick, database: database)
            if timeout > 0, Self.unixNow() >= startedAt + timeout { break }
            tick += 1
            // Sleep until the wall clock reaches the next tick; if the queries
            // took longer than the allowed drift, skip ahead instead of running
            // a burst of stale ticks.
            var now = Self.realNow()
            if now - Double(tick) > Double(maxDrift) {
                StatusLog.warning("Scheduler drifted \(Int(now - Double(tick))) s; skipping to the current time")
                tick = UInt64(now)
            }
            wake.lock()
            while !isStopping, now < Double(tick) {
                _ = wake.wait(until: Date(timeIntervalSince1970: Double(tick)))
                now = Self.realNow()
            }
            wake.unlock()
        }
        interrupter.withLock { $0 = nil }
    }

    /// Keeps the database's tables in step with the registry; after a
    /// (re)load, creates the config's views and runs the `load` decorators.
    private func prepare(_ database: Database, views created: inout [String]) {
        let pending = state.withLock { s -> ScheduleDefinition? in
            guard s.reloadPending else { return nil }
            s.reloadPending = false
            return s.definition
        }
        database.refreshTables()
        guard let definition = pending else { return }
        for name in created { _ = try? database.execute("DROP VIEW IF EXISTS \"\(name.replacingOccurrences(of: "\"", with: "\"\""))\"") }
        created = []
        for (name, sql) in definition.views.sorted(by: { $0.key < $1.key }) {
            let quoted = "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            do {
                try database.execute("CREATE VIEW \(quoted) AS \(sql)")
                created.append(name)
            } catch {
                StatusLog.warning("Cannot create config view \(name): \(error.message)")
            }
        }
        let decorations = runDecorators(definition.loadDecorators, database: database)
        state.withLock { $0.loadDecorations = decorations }
    }

    private func runDue(tick: UInt64, database: Database) {
        let (definition, denylist) = state.withLock { ($0.definition, $0.denylist) }
        if tick % 60 == 0 {
            for (seconds, queries) in definition.intervalDecorators where seconds > 0 && tick % seconds == 0 {
                let decorations = runDecorators(queries, database: database)
                state.withLock { $0.intervalDecorations[seconds] = decorations }
            }
        }
        let now = Self.unixNow()
        for query in definition.queries where !isStopping {
            if let expiry = denylist[query.name], expiry > now { continue }
            let splayed = splayedInterval(query)
            guard splayed > 0, tick % splayed == 0 else { continue }
            execute(query, database: database)
        }
    }

    /// The splayed interval, chosen once per (query, interval) and kept in the
    /// store so restarts keep the same cadence.
    func splayedInterval(_ query: ScheduledQuery) -> UInt64 {
        if let known = state.withLock({ $0.splays[query.name] }) { return known }
        let key = "interval.\(query.name)"
        var splayed: UInt64?
        if let saved = read(key) {
            let parts = saved.split(separator: ":")
            if parts.count == 2, UInt64(parts[0]) == query.interval, let s = UInt64(parts[1]), s > 0 { splayed = s }
        }
        if splayed == nil {
            splayed = Self.splay(query.interval, percent: flags[.scheduleSplayPercent])
            try? store.put(Self.settings, key, "\(query.interval):\(splayed!)")
        }
        let value = splayed!
        state.withLock { $0.splays[query.name] = value }
        return value
    }

    /// A random interval within ±percent of `interval` (≤ 1 % means 10 %).
    static func splay(_ interval: UInt64, percent: UInt64) -> UInt64 {
        let p = percent <= 1 ? 10 : min(percent, 100)
        let spread = interval * p / 100
        guard spread > 0 else { return max(1, interval) }
        let low = interval > spread ? interval - spread : 1
        return UInt64.random(in: low...(interval + spread))
    }

    private func execute(_ query: ScheduledQuery, database: Database) {
        // Decorations: load, then interval, then always (the latest wins).
        var decorations = state.withLock { s in
            var d = s.loadDecorations
            for key in s.intervalDecorations.keys.sorted() { d.merge(s.intervalDecorations[key]!) { $1 } }
            return d
        }
        let always = state.withLock { $0.definition.alwaysDecorators }
        if !always.isEmpty { decorations.merge(runDecorators(always, database: database)) { $1 } }
        if flags[.disableDecorators] { decorations = [:] }

        // The name stays in the store while the query runs: if the worker dies
        // now, the next worker denylists it.
        try? store.put(Self.settings, "executing_query", query.name)
        state.withLock { $0.running = query.name }
        if flags[.scheduleLognames] { StatusLog.info("Executing scheduled query \(query.name): \(query.sql)") }

        let wallStart = Self.realNow()
        let usageStart = Self.usage()
        var results: QueryResults?
        // events (issue 17): event tables read this query's events_optimize mark from the scope.
        let scope = EventQueryScope(
            query: query.name, mark: eventsMark(query.name), optimize: flags[.eventsOptimize], epochs: eventsEpochs(query.name))
        EventQueryScope.run(scope) {
            do throws(EngineError) {
                results = ResultEscaping.results(try database.execute(query.sql))
            } catch {
                StatusLog.error("Error executing scheduled query \(query.name): \(error.message)")
            }
        }
        let wallMs = UInt64(max(0, (Self.realNow() - wallStart) * 1000))
        let usageEnd = Self.usage()
        try? store.delete(Self.settings, "executing_query")
        state.withLock { $0.running = nil }

        var bytes = 0
        let now = Self.unixNow()
        if let results {
            do {
                var context = makeContext(now, decorations)
                context.eventBased = scope.eventBased
                context.eventMarks = scope.keysToStore
                bytes = try record(query, results, context)
            } catch {
                StatusLog.error("Error logging the results of scheduled query \(query.name): \(error.message)")
                if error.exitCode == 78 {
                    state.withLock { $0.stopping = true }
                    onFatal(error)
                }
            }
        }
        let memory = Watcher.residentBytes(getpid())
        state.withLock { s in
            var p = s.performance[query.name] ?? QueryPerformance()
            p.executions += 1
            p.lastExecuted = now
            p.outputSize += UInt64(bytes)
            p.lastWallTimeMs = wallMs
            p.wallTimeMs += wallMs
            p.lastUserTimeMs = usageEnd.user &- usageStart.user
            p.userTimeMs += p.lastUserTimeMs
            p.lastSystemTimeMs = usageEnd.system &- usageStart.system
            p.systemTimeMs += p.lastSystemTimeMs
            p.lastMemory = memory
            p.averageMemory = (p.averageMemory * (p.executions - 1) + memory) / p.executions
            s.performance[query.name] = p
        }
    }

    /// Runs decorator queries; the first row of each becomes decorations.
    func runDecorators(_ queries: [String], database: Database) -> [String: String] {
        var out: [String: String] = [:]
        for sql in queries {
            do {
                let set = try database.execute(sql)
                guard set.rowCount > 0 else { continue }
                if set.rowCount > 1 { StatusLog.warning("Decorator query returned more than one row: \(sql)") }
                for (c, name) in set.columns.enumerated() { out[name] = ResultEscaping.escape(set[0, c]) }
            } catch {
                StatusLog.warning("Decorator query failed: \(sql): \(error.message)")
            }
        }
        return out
    }

    // MARK: - Clocks and usage

    /// From CLOCK_REALTIME, like `realNow`: time(2) reads a coarse clock that
    /// can lag a few milliseconds behind, so a tick could see the previous second.
    static func unixNow() -> UInt64 { UInt64(realNow()) }

    static func realNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// User and system CPU time of this process, in milliseconds.
    static func usage() -> (user: UInt64, system: UInt64) {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        let user = UInt64(u.ru_utime.tv_sec) * 1000 + UInt64(u.ru_utime.tv_usec) / 1000
        let system = UInt64(u.ru_stime.tv_sec) * 1000 + UInt64(u.ru_stime.tv_usec) / 1000
        return (user, system)
    }

}

extension DaemonStore: ScheduleStateStore {}
