/// Constraint operators; numbers are SQLite's index constraint codes, which
/// osquery passes through (EQ 2 … REGEXP 67, plus NE/IS NOT/IS).
public struct ConstraintOperator: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let equals = ConstraintOperator(rawValue: 2)
    public static let greaterThan = ConstraintOperator(rawValue: 4)
    public static let lessThanOrEquals = ConstraintOperator(rawValue: 8)
    public static let lessThan = ConstraintOperator(rawValue: 16)
    public static let greaterThanOrEquals = ConstraintOperator(rawValue: 32)
    public static let match = ConstraintOperator(rawValue: 64)
    public static let like = ConstraintOperator(rawValue: 65)
    public static let glob = ConstraintOperator(rawValue: 66)
    public static let regexp = ConstraintOperator(rawValue: 67)
    public static let notEquals = ConstraintOperator(rawValue: 68)
    public static let isNot = ConstraintOperator(rawValue: 69)
    public static let `is` = ConstraintOperator(rawValue: 72)

    /// Operators whose right-hand value is handed to tables.
    public var isPushable: Bool {
        switch rawValue {
        case 2, 4, 8, 16, 32, 64, 65, 66, 67, 68, 69, 72: return true
        default: return false
        }
    }

    /// Range comparisons, which osquery never pushes for TEXT columns.
    public var isRange: Bool {
        switch rawValue {
        case 4, 8, 16, 32: return true
        default: return false
        }
    }

    public var description: String {
        switch rawValue {
        case 2: return "="
        case 4: return ">"
        case 8: return "<="
        case 16: return "<"
        case 32: return ">="
        case 64: return "MATCH"
        case 65: return "LIKE"
        case 66: return "GLOB"
        case 67: return "REGEXP"
        case 68: return "!="
        case 69: return "IS NOT"
        case 72: return "IS"
        default: return "op\(rawValue)"
        }
    }
}

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
        var out = "{\"constraints\":["
        let order = columns.indices.sorted { columns[$0].name.utf8.lexicographicallyPrecedes(columns[$1].name.utf8) }
        var seen = Set<String>()
        var first = true
        for i in order where seen.insert(columns[i].name).inserted {
            if !first { out += "," }
            first = false
            out += "{\"name\":"
            JSON.appendString(columns[i].name, to: &out)
            out += ",\"list\":["
            for (j, c) in constraintLists[i].enumerated() {
                if j > 0 { out += "," }
                out += "{\"op\":\(c.op.rawValue),\"expr\":"
                JSON.appendString(c.expr, to: &out)
                out += "}"
            }
            out += "],\"affinity\":"
            JSON.appendString(columns[i].type.rawValue, to: &out)
            out += "}"
        }
        out += "]"
        if let used = colsUsed {
            out += ",\"colsUsed\":["
            for (j, name) in used.sorted().enumerated() {
                if j > 0 { out += "," }
                JSON.appendString(name, to: &out)
            }
            out += "]"
        }
        if let bits = colsUsedBitset {
            out += ",\"colsUsedBitset\":\(bits)"
        }
        out += "}"
        return out
    }
}
