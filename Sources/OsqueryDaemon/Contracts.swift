// The vocabulary shared by the daemon's parts: the config produces scheduled
// queries, the scheduler runs them into QueryResults, and the result pipeline
// diffs, stores and logs them.

/// One row of a scheduled query's results: column name → value, already
/// escaped as osquery escapes result strings (non-printable bytes as `\xHH`).
public typealias ResultRow = [String: String]

/// What one run of a scheduled query returned.
public struct QueryResults: Sendable, Equatable {
    public var rows: [ResultRow]
    /// Columns whose declared type is INTEGER, BIGINT, UNSIGNED BIGINT or
    /// DOUBLE: `--logger_numerics` writes them as JSON numbers.
    public var numericColumns: Set<String>

    public init(rows: [ResultRow] = [], numericColumns: Set<String> = []) {
        self.rows = rows
        self.numericColumns = numericColumns
    }
}

/// A query of the top-level `schedule` or of a pack, as the scheduler runs it.
public struct ScheduledQuery: Sendable, Equatable, Hashable {
    /// The name results are logged and stored under: the plain name for the
    /// top-level schedule, `pack<delim><pack><delim><query>` for pack queries.
    public var name: String
    /// The pack it belongs to; "main" for the top-level schedule (osquery's name for it).
    public var pack: String
    /// The name inside its pack (the key in `queries` / `schedule`).
    public var queryName: String
    public var sql: String
    /// Seconds, 1...604800 (missing → `--schedule_default_interval`).
    public var interval: UInt64
    public var snapshot: Bool
    /// `removed: false` drops removed rows from the log.
    public var removed: Bool
    /// `denylist: false` exempts the query from crash denylisting.
    public var denylist: Bool
    /// Runs once right at start, ordered by this value, when set.
    public var startupPriority: UInt64?
    public var platform: String?
    public var version: String?
    public var shard: UInt64?
    public var description: String
    public var value: String

    public init(
        name: String, pack: String = "main", queryName: String? = nil, sql: String, interval: UInt64,
        snapshot: Bool = false, removed: Bool = true, denylist: Bool = true, startupPriority: UInt64? = nil,
        platform: String? = nil, version: String? = nil, shard: UInt64? = nil, description: String = "",
        value: String = ""
    ) {
        self.name = name
        self.pack = pack
        self.queryName = queryName ?? name
        self.sql = sql
        self.interval = interval
        self.snapshot = snapshot
        self.removed = removed
        self.denylist = denylist
        self.startupPriority = startupPriority
        self.platform = platform
        self.version = version
        self.shard = shard
        self.description = description
        self.value = value
    }
}

/// Everything a result line carries besides the rows (core.md §2.7).
public struct LogContext: Sendable, Equatable {
    public var hostIdentifier: String
    public var unixTime: UInt64
    /// `asctime` of the UTC time plus ` UTC`, e.g. `Tue Sep 30 17:37:30 2014 UTC`.
    public var calendarTime: String
    /// Decorator columns; omitted from lines when empty.
    public var decorations: [String: String]
    /// events (issue 17): the query read an event table (its rows are not diffed when
    /// `--events_optimize`), and the `events_optimize` marks to commit with its lines.
    package var eventBased = false
    package var eventMarks: [String: String] = [:]

    public init(hostIdentifier: String, unixTime: UInt64, calendarTime: String, decorations: [String: String] = [:]) {
        self.hostIdentifier = hostIdentifier
        self.unixTime = unixTime
        self.calendarTime = calendarTime
        self.decorations = decorations
    }
}
