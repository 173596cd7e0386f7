public import OsqueryEngine

/// Performance figures of one scheduled query (the osquery_schedule columns).
public struct QueryPerformance: Sendable, Equatable {
    public var executions: UInt64 = 0
    public var lastExecuted: UInt64 = 0
    public var outputSize: UInt64 = 0
    public var wallTimeMs: UInt64 = 0
    public var lastWallTimeMs: UInt64 = 0
    public var userTimeMs: UInt64 = 0
    public var lastUserTimeMs: UInt64 = 0
    public var systemTimeMs: UInt64 = 0
    public var lastSystemTimeMs: UInt64 = 0
    public var averageMemory: UInt64 = 0
    public var lastMemory: UInt64 = 0
    public init() {}
}

/// What osquery_schedule shows: the running scheduler's queries with their figures.
public protocol ScheduleSnapshotProvider: Sendable {
    /// Each scheduled query, its performance so far, whether it is denylisted now, and its
    /// splayed interval.
    func scheduleSnapshot() -> [(query: ScheduledQuery, performance: QueryPerformance, denylisted: Bool, splayed: UInt64)]
}

/// One row of osquery_packs.
public struct PackStatus: Sendable, Equatable {
    public var name: String
    public var platform: String
    public var version: String
    public var shard: UInt64
    public var discoveryCacheHits: UInt64
    public var discoveryExecutions: UInt64
    public var active: Bool

    public init(
        name: String, platform: String = "", version: String = "", shard: UInt64 = 0, discoveryCacheHits: UInt64 = 0,
        discoveryExecutions: UInt64 = 0, active: Bool
    ) {
        self.name = name
        self.platform = platform
        self.version = version
        self.shard = shard
        self.discoveryCacheHits = discoveryCacheHits
        self.discoveryExecutions = discoveryExecutions
        self.active = active
    }
}

/// osquery_schedule and osquery_packs, answered from the running scheduler
/// and config (osquery's specs/utility/*.table columns).
public enum ScheduleTables {
    public static let scheduleSchema = TableSchema(
        name: "osquery_schedule",
        columns: [
            TableColumn("name", .text), TableColumn("query", .text), TableColumn("interval", .integer),
            TableColumn("executions", .bigint), TableColumn("last_executed", .bigint),
            TableColumn("denylisted", .integer), TableColumn("output_size", .bigint),
            TableColumn("wall_time", .bigint), TableColumn("wall_time_ms", .bigint),
            TableColumn("last_wall_time_ms", .bigint), TableColumn("user_time", .bigint),
            TableColumn("last_user_time", .bigint), TableColumn("system_time", .bigint),
            TableColumn("last_system_time", .bigint), TableColumn("average_memory", .bigint),
            TableColumn("last_memory", .bigint),
        ],
        columnAliases: [(alias: "blacklisted", target: "denylisted")],
        attributes: .utility)

    public static let packsSchema = TableSchema(
        name: "osquery_packs",
        columns: [
            TableColumn("name", .text), TableColumn("platform", .text), TableColumn("version", .text, .collateVersion),
            TableColumn("shard", .integer), TableColumn("discovery_cache_hits", .integer),
            TableColumn("discovery_executions", .integer), TableColumn("active", .integer),
        ],
        attributes: .utility)

    /// Registers both tables, replacing earlier ones (osqueryi registers empty ones).
    public static func register(
        into registry: PluginRegistry, scheduler: (@Sendable () -> (any ScheduleSnapshotProvider)?)?, packs: (@Sendable () -> [PackStatus])?
    ) {
        _ = registry.remove(registry: "table", name: scheduleSchema.name)
        _ = registry.remove(registry: "table", name: packsSchema.name)
        registry.addTable(
            FunctionTable(scheduleSchema) { _ in
                let snapshot = scheduler?()?.scheduleSnapshot() ?? []
                var rows = TableRows(schema: scheduleSchema, reservingRows: snapshot.count)
                for (q, p, denylisted, _) in snapshot {
                    rows.append(q.name)
                    rows.append(q.sql)
                    rows.append(Int64(clamping: q.interval))
                    for v in [p.executions, p.lastExecuted] { rows.append(Int64(clamping: v)) }
                    rows.append(denylisted ? 1 : 0)
                    for v in [
                        p.outputSize, p.wallTimeMs / 1000, p.wallTimeMs, p.lastWallTimeMs, p.userTimeMs, p.lastUserTimeMs,
                        p.systemTimeMs, p.lastSystemTimeMs, p.averageMemory, p.lastMemory,
                    ] {
                        rows.append(Int64(clamping: v))
                    }
                }
                return rows
            })
        registry.addTable(
            FunctionTable(packsSchema) { _ in
                let list = packs?() ?? []
                var rows = TableRows(schema: packsSchema, reservingRows: list.count)
                for p in list {
                    rows.append(p.name)
                    rows.append(p.platform)
                    rows.append(p.version)
                    rows.append(Int64(clamping: p.shard))
                    rows.append(Int64(clamping: p.discoveryCacheHits))
                    rows.append(Int64(clamping: p.discoveryExecutions))
                    rows.append(p.active ? 1 : 0)
                }
                return rows
            })
    }
}
