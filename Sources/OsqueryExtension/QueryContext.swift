/// What a table's `generate` (or a write) receives: the query's constraints per
/// column and the columns it uses.
public struct QueryContext: Sendable {
    /// Constraints by column name (every column osquery listed, constrained or not).
    package var constraints: [String: ColumnConstraints]
    /// The columns the statement uses; nil when the core did not say (then all are used).
    package var usedColumns: Set<String>?
    /// SQLite's used-column mask: bit i is column i, bit 63 means "some column ≥ 63".
    package var usedColumnsBitset: UInt64?
    /// A client for the core that made the call, for queries from inside a table
    /// (re-entrant: each call has its own connection). Nil when not running under a core.
    public var core: OsqueryClient?
    /// The context JSON as received ("" when the request had none).
    package var json: String

    /// An empty context: no constraints, every column used.
    package init(core: OsqueryClient? = nil) {
        constraints = [:]
        usedColumns = nil
        usedColumnsBitset = nil
        self.core = core
        json = ""
    }

    /// Parses osquery's context JSON. Tolerates the old forms (string ops, `""`
    /// for an empty list, numbers as strings). An empty string is an empty context.
    package init(json: String, core: OsqueryClient? = nil) throws(JSONError) {
        self.init(core: core)
        self.json = json
        if json.allSatisfy({ $0 == " " || $0 == "\n" }) { return }
        let parsed = try QueryContextJSON.parse(json)
        constraints = parsed.constraints
        usedColumns = parsed.usedColumns
        usedColumnsBitset = parsed.usedColumnsBitset
    }

    /// The constraints on `column` (empty when it has none).
    public subscript(column: String) -> ColumnConstraints { constraints[column] ?? ColumnConstraints() }

    /// True when the statement uses `column` (always true when the core did not say).
    public func isUsed(_ column: String) -> Bool { usedColumns?.contains(column) ?? true }

    /// True when the statement uses any of `columns`.
    package func isAnyUsed(_ columns: [String]) -> Bool { columns.contains { isUsed($0) } }

    /// The distinct `=` / `IN` values of `column`.
    package func equals(_ column: String) -> [String] { self[column].equals }
}
