import OsqueryVocabulary

// osquery's config JSON: strict JSON (as rapidjson's default mode) after
// osquery's pre-processing, parsed into values that remember where they were
// so that every complaint can name the source, the line and the key.

/// A JSON value of a config source, with the place it started at.
public struct ConfigValue: Sendable, Equatable {
    /// One member of an object, in source order (duplicates are kept, as rapidjson does).
    public struct Member: Sendable, Equatable {
        public var key: String
        public var value: ConfigValue
        public init(key: String, value: ConfigValue) {
            self.key = key
            self.value = value
        }
    }

    public enum Kind: Sendable, Equatable {
        case null
        case bool(Bool)
        /// Integers that fit in Int64.
        case int(Int64)
        /// Integers above Int64.max that fit in UInt64.
        case uint(UInt64)
        /// Numbers with a fraction or exponent, or integers beyond UInt64.
        case double(Double)
        case string(String)
        case array([ConfigValue])
        case object([Member])
    }

    public var kind: Kind
    /// 1-based line in the original text (comment lines and joined lines counted).
    public var line: Int
    /// 1-based column (in bytes) in the original line.
    public var column: Int

    public init(_ kind: Kind, line: Int = 0, column: Int = 0) {
        self.kind = kind
        self.line = line
        self.column = column
    }

    /// The first member named `key` (rapidjson's FindMember), or nil.
    public subscript(key: String) -> ConfigValue? {
        guard case .object(let members) = kind else { return nil }
        for m in members where m.key == key { return m.value }
        return nil
    }

    public var members: [Member]? {
        if case .object(let m) = kind { return m }
        return nil
    }

    public var elements: [ConfigValue]? {
        if case .array(let e) = kind { return e }
        return nil
    }

    public var string: String? {
        if case .string(let s) = kind { return s }
        return nil
    }

    public var isNull: Bool { kind == .null }

    public var isNumber: Bool {
        switch kind {
        case .int, .uint, .double: return true
        default: return false
        }
    }

    /// JSON type name for messages.
    public var typeName: String {
        switch kind {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .uint, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// osquery's `JSON::valueToSize`: a number, or a string holding a decimal
    /// unsigned number; nil for anything else (osquery reads those as 0).
    public var unsignedValue: UInt64? {
        switch kind {
        case .int(let v): return v >= 0 ? UInt64(v) : nil
        case .uint(let v): return v
        case .double(let d): return d >= 0 && d < 18_446_744_073_709_551_616.0 ? UInt64(d) : nil
        case .string(let s): return UInt64(s)
        default: return nil
        }
    }

    /// osquery's `JSON::valueToBool`: true/false, "true"/"t" (any case), a non-zero number.
    public var boolValue: Bool {
        switch kind {
        case .bool(let b): return b
        case .string(let s):
            let l = s.lowercased()
            return l == "true" || l == "t"
        case .int(let v): return v != 0
        case .uint(let v): return v != 0
        case .double(let d): return d != 0
        default: return false
        }
    }

    /// Compact JSON text of this value (keys in source order).
    public var jsonText: String { jsonValue.serialized }

    /// The value without its positions.
    var jsonValue: JSONValue {
        switch kind {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let v): .number(String(v))
        case .uint(let v): .number(String(v))
        case .double(let d): .number(ConfigValue.format(d))
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(\.jsonValue))
        case .object(let members): .object(members.map { ($0.key, $0.value.jsonValue) })
        }
    }

    /// Whole doubles print without a fraction (1e3 → "1000"), others in
    /// Swift's shortest round-trip form.
    static func format(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 9.0e15 { return String(Int64(d)) }
        return String(d)
    }
}

/// The config JSON reader: osquery's pre-processing, limits and strict JSON.
public enum ConfigJSON {
    /// osquery's limit on one source, counted after comment lines are removed.
    public static let maxSize = 4 * 1024 * 1024
    /// osquery's limit on nesting: the root object is level 1; any value
    /// (container or scalar) at a deeper level than this is refused.
    public static let maxDepth = 32

    /// The text osquery's parser sees, and for each of its lines the original
    /// line number and how many leading blanks were trimmed.
    public struct Preprocessed: Sendable {
        public var bytes: [UInt8]
        public var lines: [(line: Int, trimmed: Int)]
    }

    /// osquery's `stripConfigComments`: backslash-newline joins lines, then
    /// every line is trimmed and lines starting with `#` or `//` are dropped.
    /// Unlike osquery, the original line numbers are remembered for errors.
    public static func preprocess(_ text: [UInt8]) -> Preprocessed {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var lines: [(line: Int, trimmed: Int)] = []
        var logical: [UInt8] = []
        var physical = 1
        var logicalStart = 1
        var i = 0
        let n = text.count
        func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0B || c == 0x0C }
        func flush() {
            var s = 0
            var e = logical.count
            while s < e, isBlank(logical[s]) { s += 1 }
            while e > s, isBlank(logical[e - 1]) { e -= 1 }
            let comment = s < e && (logical[s] == UInt8(ascii: "#") || (e - s > 1 && logical[s] == UInt8(ascii: "/") && logical[s + 1] == UInt8(ascii: "/")))
            if !comment {
                out.append(contentsOf: logical[s..<e])
                out.append(0x0A)
                lines.append((logicalStart, s))
            }
            logical.removeAll(keepingCapacity: true)
        }
        while i < n {
            let c = text[i]
            if c == UInt8(ascii: "\\"), i + 1 < n, text[i + 1] == 0x0A {
                // A joined line continues the logical line on the next physical one.
                i += 2
                physical += 1
                continue
            }
            if c == 0x0A {
                flush()
                physical += 1
                logicalStart = physical
                i += 1
                continue
            }
            logical.append(c)
            i += 1
        }
        // vsplit yields a last (possibly empty) piece; an empty one adds nothing but "\n".
        flush()
        return Preprocessed(bytes: out, lines: lines)
    }

    /// Parses one config source as osquery does. The root must be an object.
    /// - Parameter source: the source name used in error messages (a path for the filesystem plugin).
    public static func parse(_ text: String, source: String) throws(DaemonError) -> ConfigValue {
        try parse(bytes: Array(text.utf8), source: source)
    }

    public static func parse(bytes: [UInt8], source: String) throws(DaemonError) -> ConfigValue {
        let pre = preprocess(bytes)
        if pre.bytes.count > maxSize {
            throw DaemonError(
                "config \(source): Error parsing the config JSON: the config size exceeds the limit of \(maxSize) bytes")
        }
        let root = try document(pre, source: source)
        guard case .object = root.kind else {
            throw DaemonError("config \(source): Error parsing the config JSON: the root of the config JSON document has to be an object")
        }
        return root
    }

    /// Parses JSON that is not a config source (a pack resolved by a plugin, a
    /// multi-pack file): the same rules, any source label.
    static func parseAny(bytes: [UInt8], source: String) throws(DaemonError) -> ConfigValue {
        let pre = preprocess(bytes)
        if pre.bytes.count > maxSize {
            throw DaemonError("config \(source): the JSON exceeds the limit of \(maxSize) bytes")
        }
        return try document(pre, source: source)
    }

    /// The one JSON reader over the preprocessed text, its positions and messages mapped
    /// back to the original lines.
    static func document(_ pre: Preprocessed, source: String) throws(DaemonError) -> ConfigValue {
        var reader = JSONReader(bytes: pre.bytes, maxDepth: maxDepth)
        do {
            return try reader.document(Builder(lines: pre.lines))
        } catch {
            let (line, column) = Builder.place(error.position, pre.lines)
            let what = error.isDepthLimit
                ? "Error validating the config JSON: Configuration has too many nesting levels!"
                : "Error parsing the config JSON: \(error.reason)"
            throw DaemonError("config \(source) line \(line) column \(column): \(what)")
        }
    }

    /// Builds config values that remember their original line and column.
    struct Builder: JSONBuilder {
        let lines: [(line: Int, trimmed: Int)]

        /// 1-based original line and column of a place in the preprocessed text; past the
        /// end of input, the last line.
        static func place(_ p: JSONPosition, _ lines: [(line: Int, trimmed: Int)]) -> (line: Int, column: Int) {
            guard p.line < lines.count else { return (lines.last?.line ?? 1, 1) }
            return (lines[p.line].line, p.column + lines[p.line].trimmed + 1)
        }

        func make(_ kind: ConfigValue.Kind, _ p: JSONPosition) -> ConfigValue {
            let (line, column) = Builder.place(p, lines)
            return ConfigValue(kind, line: line, column: column)
        }

        func null(at p: JSONPosition) -> ConfigValue { make(.null, p) }
        func bool(_ value: Bool, at p: JSONPosition) -> ConfigValue { make(.bool(value), p) }
        func number(_ text: String, isIntegral: Bool, at p: JSONPosition) -> ConfigValue {
            if isIntegral {
                if let v = Int64(text) { return make(.int(v), p) }
                if let v = UInt64(text) { return make(.uint(v), p) }
            }
            return make(.double(Double(text) ?? 0), p)
        }
        func string(_ value: String, at p: JSONPosition) -> ConfigValue { make(.string(value), p) }
        func array(_ elements: [ConfigValue], at p: JSONPosition) -> ConfigValue { make(.array(elements), p) }
        func object(_ members: [(String, ConfigValue)], at p: JSONPosition) -> ConfigValue {
            make(.object(members.map { ConfigValue.Member(key: $0.0, value: $0.1) }), p)
        }
    }
}
