public struct Constraint: Sendable, Hashable {
    public var op: ConstraintOperator
    /// The text form of the right-hand value (what osquery's context JSON carries).
    public var expr: String
    /// The right-hand value as SQLite gave it.
    public var value: SQLValue

    public init(op: ConstraintOperator, expr: String, value: SQLValue? = nil) {
        self.op = op
        self.expr = expr
        self.value = value ?? .text(expr)
    }
}

/// What a table's generate receives: per-column constraints and the columns
/// the statement uses.
public struct QueryContext: Sendable {
    /// The columns of the table as SQLite sees them (real columns then alias columns).
    public let columns: [TableColumn]
    /// Constraints, one list per entry of `columns`.
    public private(set) var constraintLists: [[Constraint]]
    /// Names of used columns (aliases mapped to their targets); nil = unknown (all).
    public var colsUsed: Set<String>?
    /// SQLite's colUsed mask: bit i is column i, bit 63 is "some column >= 63".
    public var colsUsedBitset: UInt64?

    public init(columns: [TableColumn], colsUsed: Set<String>? = nil, colsUsedBitset: UInt64? = nil) {
        self.columns = columns
        self.constraintLists = Array(repeating: [], count: columns.count)
        self.colsUsed = colsUsed
        self.colsUsedBitset = colsUsedBitset
    }

    /// A context for a table with no constraints (every column used).
    public init(schema: TableSchema) {
        self.init(columns: schema.virtualColumns.map(\.column))
    }

    public mutating func add(_ constraint: Constraint, toColumn index: Int) {
        constraintLists[index].append(constraint)
    }

    public mutating func add(_ constraint: Constraint, to column: String) {
        guard let i = columns.firstIndex(where: { $0.name == column }) else { return }
        constraintLists[i].append(constraint)
    }

    public func constraints(for column: String) -> [Constraint] {
        guard let i = columns.firstIndex(where: { $0.name == column }) else { return [] }
        return constraintLists[i]
    }

    public func hasConstraint(_ column: String, op: ConstraintOperator? = nil) -> Bool {
        constraints(for: column).contains { op == nil || $0.op == op }
    }

    /// The distinct `=` values for a column, in first-seen order.
    public func equalities(for column: String) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for c in constraints(for: column) where c.op == .equals {
            if seen.insert(c.expr).inserted { out.append(c.expr) }
        }
        return out
    }

    /// Whether a column is used by the statement (true when unknown).
    public func isColumnUsed(_ column: String) -> Bool {
        guard let used = colsUsed else { return true }
        return used.contains(column)
    }

    public func isAnyColumnUsed(_ names: [String]) -> Bool {
        names.contains { isColumnUsed($0) }
    }

    /// osquery's generate-context JSON (`setRequestFromContext`): one entry per
    /// column (aliases included) in lexical name order, op numbers, text exprs,
    /// the column type as affinity, then colsUsed and colsUsedBitset.
    public func toJSON() -> String {
        var writer = QueryContextJSON.Writer()
        let order = columns.indices.sorted { columns[$0].name.utf8.lexicographicallyPrecedes(columns[$1].name.utf8) }
        var seen = Set<String>()
        for i in order where seen.insert(columns[i].name).inserted {
            writer.beginColumn(columns[i].name)
            for (j, c) in constraintLists[i].enumerated() { writer.constraint(c.op, c.expr, index: j) }
            writer.endColumn(affinity: columns[i].type)
        }
        return writer.finish(usedColumns: colsUsed?.sorted(), bitset: colsUsedBitset)
    }
}
