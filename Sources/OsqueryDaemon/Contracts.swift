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
