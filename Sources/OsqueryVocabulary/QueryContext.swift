/// A constraint operator: SQLite's index-constraint codes, as osquery passes them.
public struct ConstraintOperator: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The raw value osquery uses.
    public let rawValue: Int
    /// The operator with SQLite's code `rawValue`.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// `=` (and each value of an `IN` list).
    public static let equals = ConstraintOperator(rawValue: 2)
    /// `>`
    public static let greaterThan = ConstraintOperator(rawValue: 4)
    /// `<=`
    public static let lessThanOrEquals = ConstraintOperator(rawValue: 8)
    /// `<`
    public static let lessThan = ConstraintOperator(rawValue: 16)
    /// `>=`
    public static let greaterThanOrEquals = ConstraintOperator(rawValue: 32)
    /// `MATCH`
    public static let match = ConstraintOperator(rawValue: 64)
    /// `LIKE`
    public static let like = ConstraintOperator(rawValue: 65)
    /// `GLOB`
    public static let glob = ConstraintOperator(rawValue: 66)
    /// `REGEXP`
    public static let regexp = ConstraintOperator(rawValue: 67)
    /// `!=` / `<>`
    public static let notEquals = ConstraintOperator(rawValue: 68)
    /// `IS NOT`
    public static let isNot = ConstraintOperator(rawValue: 69)
    /// `IS`
    public static let `is` = ConstraintOperator(rawValue: 72)

    /// The operator for an old-style string op (osquery before 3 sent `"="`, `">"`, …), or a number in text.
    package init?(text: String) {
        if let n = Int(text) { self.init(rawValue: n); return }
        let table: [String: Int] = [
            "=": 2, "==": 2, ">": 4, "<=": 8, "<": 16, ">=": 32, "MATCH": 64, "LIKE": 65, "GLOB": 66,
            "REGEXP": 67, "!=": 68, "<>": 68, "IS NOT": 69, "IS": 72,
        ]
        guard let n = table[text.uppercased()] else { return nil }
        self.init(rawValue: n)
    }

    /// Operators whose right-hand value is handed to tables.
    package var isPushable: Bool {
        switch rawValue {
        case 2, 4, 8, 16, 32, 64, 65, 66, 67, 68, 69, 72: return true
        default: return false
        }
    }

    /// Range comparisons, which osquery never pushes for TEXT columns.
    package var isRange: Bool {
        switch rawValue {
        case 4, 8, 16, 32: return true
        default: return false
        }
    }

    /// The operator as SQL writes it (`=`, `LIKE`, …), or `op<code>`.
    public var description: String {
        switch rawValue {
        case 2: "="
        case 4: ">"
        case 8: "<="
        case 16: "<"
        case 32: ">="
        case 64: "MATCH"
        case 65: "LIKE"
        case 66: "GLOB"
        case 67: "REGEXP"
        case 68: "!="
        case 69: "IS NOT"
        case 72: "IS"
        default: "op\(rawValue)"
        }
    }
}

/// One constraint on a column: `column <op> expr`.
public struct Constraint: Sendable, Hashable {
    /// The operator.
    public var op: ConstraintOperator
    /// The value as text (how osquery sends every value).
    public var expr: String

    /// A constraint `<column> op expr`.
    package init(_ op: ConstraintOperator, _ expr: String) {
        self.op = op
        self.expr = expr
    }

    /// The value converted to `T`, or nil when it does not parse.
    package func value<T: LosslessStringConvertible>(as type: T.Type) -> T? { T(expr) }
}

/// Bounds from `>`, `>=`, `<`, `<=` constraints, tightest first.
public struct ConstraintRange<T: Comparable & Sendable>: Sendable {
    /// The lower bound and whether it is included.
    public var lower: (value: T, inclusive: Bool)?
    /// The upper bound and whether it is included.
    public var upper: (value: T, inclusive: Bool)?

    /// True when `v` is within the bounds.
    public func contains(_ v: T) -> Bool {
        if let l = lower, l.inclusive ? v < l.value : v <= l.value { return false }
        if let u = upper, u.inclusive ? v > u.value : v >= u.value { return false }
        return true
    }

    /// True when neither bound is set.
    package var isUnbounded: Bool { lower == nil && upper == nil }
}

/// The constraints a query put on one column.
public struct ColumnConstraints: Sendable, Hashable {
    /// The column's type as osquery reports it.
    package var affinity: ColumnType
    /// Every constraint, in the order received.
    public var list: [Constraint]

    /// Constraints of a column with `affinity`.
    package init(affinity: ColumnType = .unknown, list: [Constraint] = []) {
        self.affinity = affinity
        self.list = list
    }

    /// True when the column is unconstrained.
    package var isEmpty: Bool { list.isEmpty }

    /// True when some constraint uses `op`.
    package func exists(_ op: ConstraintOperator) -> Bool { list.contains { $0.op == op } }

    /// The distinct `=` values, first-seen order. An `IN (…)` list arrives as several `=`.
    public var equals: [String] {
        var seen = Set<String>()
        return list.compactMap { $0.op == .equals && seen.insert($0.expr).inserted ? $0.expr : nil }
    }

    /// The `=` / `IN` values converted to `T`; values that do not parse are skipped.
    public func equals<T: LosslessStringConvertible>(as type: T.Type) -> [T] {
        equals.compactMap { T($0) }
    }

    /// The bounds given by range operators, converted to `T` (unparsable values are ignored).
    public func range<T: Comparable & Sendable & LosslessStringConvertible>(as type: T.Type) -> ConstraintRange<T> {
        var r = ConstraintRange<T>()
        for c in list {
            guard let v = T(c.expr) else { continue }
            switch c.op {
            case .greaterThan, .greaterThanOrEquals:
                let inc = c.op == .greaterThanOrEquals
                if let l = r.lower, l.value > v || (l.value == v && !l.inclusive) { continue }
                r.lower = (v, inc)
            case .lessThan, .lessThanOrEquals:
                let inc = c.op == .lessThanOrEquals
                if let u = r.upper, u.value < v || (u.value == v && !u.inclusive) { continue }
                r.upper = (v, inc)
            default: continue
            }
        }
        return r
    }

    /// `LIKE` patterns as matchers.
    public var likePatterns: [TextPattern] { list.filter { $0.op == .like }.map { TextPattern(like: $0.expr) } }
    /// `GLOB` patterns as matchers.
    public var globPatterns: [TextPattern] { list.filter { $0.op == .glob }.map { TextPattern(glob: $0.expr) } }

    /// True when `value` satisfies every `=`, `!=`, `LIKE`, `GLOB` and (numerically
    /// for numeric affinities) range constraint. Other operators are not checked
    /// (SQLite re-checks every constraint anyway).
    public func matches(_ value: String) -> Bool {
        let numeric = affinity == .integer || affinity == .bigint || affinity == .unsignedBigint || affinity == .double
        let eq = list.filter { $0.op == .equals }
        if !eq.isEmpty && !eq.contains(where: { numeric ? Double($0.expr) == Double(value) : $0.expr == value }) {
            return false
        }
        for c in list {
            switch c.op {
            case .notEquals: if c.expr == value { return false }
            case .like: if !TextPattern(like: c.expr).matches(value) { return false }
            case .glob: if !TextPattern(glob: c.expr).matches(value) { return false }
            case .greaterThan, .greaterThanOrEquals, .lessThan, .lessThanOrEquals:
                if numeric, let v = Double(value), let b = Double(c.expr) {
                    let ok =
                        switch c.op {
                        case .greaterThan: v > b
                        case .greaterThanOrEquals: v >= b
                        case .lessThan: v < b
                        default: v <= b
                        }
                    if !ok { return false }
                }
            default: continue
            }
        }
        return true
    }
}

/// A SQL `LIKE` (ASCII case-insensitive, `%` and `_`) or `GLOB` (case-sensitive,
/// `*`, `?`, `[…]`) pattern, with SQLite's semantics.
///
/// Matching takes time proportional to the pattern's length times the text's at worst (never
/// exponential), so a pattern from a query cannot stall a table.
public struct TextPattern: Sendable, Hashable {
    /// LIKE or GLOB semantics.
    package enum Kind: Sendable, Hashable { case like, glob }
    /// The pattern text.
    public let pattern: String
    /// How the pattern is matched.
    package let kind: Kind
    /// Decoded once: a pattern is matched against every row.
    private let scalars: [Unicode.Scalar]

    /// A SQL `LIKE` pattern.
    package init(like pattern: String) {
        self.init(pattern, .like)
    }
    /// A SQL `GLOB` pattern.
    package init(glob pattern: String) {
        self.init(pattern, .glob)
    }

    private init(_ pattern: String, _ kind: Kind) {
        self.pattern = pattern
        self.kind = kind
        self.scalars = Array(pattern.unicodeScalars)
    }

    /// The text before the first wildcard (useful to narrow a directory walk).
    public var literalPrefix: String {
        let wild: Set<Character> = kind == .like ? ["%", "_"] : ["*", "?", "["]
        return String(pattern.prefix { !wild.contains($0) })
    }

    /// True when `text` matches the whole pattern.
    public func matches(_ text: String) -> Bool {
        let p = scalars
        let star: Unicode.Scalar = kind == .like ? "%" : "*"
        let t = text.unicodeScalars
        var pi = 0
        var ti = t.startIndex
        // Every token but the star takes exactly one character, so on a mismatch only the latest
        // star needs to take one more character (earlier stars never need to): greedy, no
        // recursion, at most pattern × text steps.
        var resumePattern = -1
        var resumeText = ti
        while ti < t.endIndex {
            if pi < p.count {
                if p[pi] == star {
                    repeat { pi += 1 } while pi < p.count && p[pi] == star
                    if pi == p.count { return true }
                    resumePattern = pi
                    resumeText = ti
                    continue
                }
                if let next = matchOne(p, pi, t[ti]) {
                    pi = next
                    ti = t.index(after: ti)
                    continue
                }
            }
            guard resumePattern >= 0 else { return false }
            resumeText = t.index(after: resumeText)
            ti = resumeText
            pi = resumePattern
        }
        while pi < p.count && p[pi] == star { pi += 1 }
        return pi == p.count
    }

    /// The pattern index after the token at `pi` when that token matches `c`, else nil.
    private func matchOne(_ p: [Unicode.Scalar], _ pi: Int, _ c: Unicode.Scalar) -> Int? {
        let token = p[pi]
        switch kind {
        case .like:
            return token == "_" || Self.fold(token) == Self.fold(c) ? pi + 1 : nil
        case .glob:
            if token == "?" || token == c && token != "[" { return pi + 1 }
            return token == "[" ? Self.matchClass(p, pi, c) : nil
        }
    }

    /// A GLOB class at `p[open]` (`[`) as SQLite reads it: `^` first inverts, `]` first is a
    /// member, `a-z` is a range unless `-` comes first or last; unterminated matches nothing.
    private static func matchClass(_ p: [Unicode.Scalar], _ open: Int, _ c: Unicode.Scalar) -> Int? {
        var j = open + 1
        var invert = false
        var seen = false
        if j < p.count, p[j] == "^" {
            invert = true
            j += 1
        }
        if j < p.count, p[j] == "]" {
            seen = c == "]"
            j += 1
        }
        var prior: Unicode.Scalar?
        while j < p.count, p[j] != "]" {
            if p[j] == "-", let low = prior, j + 1 < p.count, p[j + 1] != "]" {
                if low.value <= c.value && c.value <= p[j + 1].value { seen = true }
                prior = nil
                j += 2
            } else {
                if p[j] == c { seen = true }
                prior = p[j]
                j += 1
            }
        }
        guard j < p.count, seen != invert else { return nil }
        return j + 1
    }

    static func fold(_ u: Unicode.Scalar) -> Unicode.Scalar {
        (u.value >= 65 && u.value <= 90) ? Unicode.Scalar(u.value + 32)! : u
    }
}


/// osquery's generate-context JSON (`setRequestFromContext` writes it, `getQueryContextFromRequest`
/// reads it): `{"constraints":[{"name":…,"list":[{"op":2,"expr":"…"}],"affinity":"TEXT"}],
/// "colsUsed":[…],"colsUsedBitset":N}`. The core writes it per query and extensions read it.
package enum QueryContextJSON {
    /// Writes one context: call `column` per column (lexical name order, as osquery), then
    /// `finish`.
    package struct Writer {
        var out = "{\"constraints\":["
        var first = true

        package init() {}

        /// Starts a column's entry; follow with its `constraint`s and `endColumn`.
        package mutating func beginColumn(_ name: String) {
            if !first { out += "," }
            first = false
            out += "{\"name\":"
            JSON.appendString(name, to: &out)
            out += ",\"list\":["
        }

        /// One constraint of the current column; `index` is its place in the column's list.
        package mutating func constraint(_ op: ConstraintOperator, _ expr: String, index: Int) {
            if index > 0 { out += "," }
            out += "{\"op\":\(op.rawValue),\"expr\":"
            JSON.appendString(expr, to: &out)
            out += "}"
        }

        /// Ends the current column's entry with its affinity.
        package mutating func endColumn(affinity: ColumnType) {
            out += "],\"affinity\":"
            JSON.appendString(affinity.rawValue, to: &out)
            out += "}"
        }

        /// The finished JSON: `usedColumns` (already sorted) and the bitset when known.
        package mutating func finish(usedColumns: [String]?, bitset: UInt64?) -> String {
            out += "]"
            if let used = usedColumns {
                out += ",\"colsUsed\":["
                for (j, name) in used.enumerated() {
                    if j > 0 { out += "," }
                    JSON.appendString(name, to: &out)
                }
                out += "]"
            }
            if let bits = bitset {
                out += ",\"colsUsedBitset\":\(bits)"
            }
            out += "}"
            return out
        }
    }

    /// What a context says.
    package struct Parsed {
        /// Constraints by column name (every column listed, constrained or not).
        package var constraints: [String: ColumnConstraints] = [:]
        /// The columns the statement uses; nil when the context did not say.
        package var usedColumns: Set<String>?
        /// SQLite's used-column mask, when the context has it.
        package var usedColumnsBitset: UInt64?
    }

    /// Reads a context. Tolerates the old forms (string ops, `""` for an empty list,
    /// numbers as strings); entries of a repeated column name are merged.
    /// - Throws: `JSONError` when `json` is not JSON.
    package static func parse(_ json: String) throws(JSONError) -> Parsed {
        var parsed = Parsed()
        let doc = try JSONValue.parse(json)
        if let list = doc["constraints"]?.array {
            for entry in list {
                guard let name = entry["name"]?.text else { continue }
                var cc = ColumnConstraints(affinity: ColumnType(name: entry["affinity"]?.text ?? ""))
                for item in entry["list"]?.array ?? [] {
                    guard let opText = item["op"]?.text, let op = ConstraintOperator(text: opText) else { continue }
                    cc.list.append(Constraint(op, item["expr"]?.text ?? ""))
                }
                if var existing = parsed.constraints[name] {
                    existing.list += cc.list
                    parsed.constraints[name] = existing
                } else {
                    parsed.constraints[name] = cc
                }
            }
        }
        if let used = doc["colsUsed"]?.array { parsed.usedColumns = Set(used.compactMap(\.text)) }
        parsed.usedColumnsBitset = doc["colsUsedBitset"]?.uint64
        return parsed
    }
}
