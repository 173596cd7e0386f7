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
    public var jsonText: String {
        var out = ""
        appendJSON(to: &out)
        return out
    }

    func appendJSON(to out: inout String) {
        switch kind {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let v): out += String(v)
        case .uint(let v): out += String(v)
        case .double(let d): out += ConfigValue.format(d)
        case .string(let s): ConfigJSON.appendQuoted(s, to: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.appendJSON(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, m) in members.enumerated() {
                if i > 0 { out += "," }
                ConfigJSON.appendQuoted(m.key, to: &out)
                out += ":"
                m.value.appendJSON(to: &out)
            }
            out += "}"
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
        var parser = Parser(bytes: pre.bytes, lines: pre.lines, source: source)
        let root = try parser.document()
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
        var parser = Parser(bytes: pre.bytes, lines: pre.lines, source: source)
        return try parser.document()
    }

    static func appendQuoted(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// Recursive descent bounded by `maxDepth` (at most 33 frames deep), so
    /// hostile nesting ends in an error, never in a stack overflow.
    struct Parser {
        let bytes: [UInt8]
        let lines: [(line: Int, trimmed: Int)]
        let source: String
        var pos = 0
        /// Index of the current preprocessed line and the offset it starts at.
        var lineIndex = 0
        var lineStart = 0
        var scratch: [UInt8] = []

        init(bytes: [UInt8], lines: [(line: Int, trimmed: Int)], source: String) {
            self.bytes = bytes
            self.lines = lines
            self.source = source
        }

        var here: (line: Int, column: Int) {
            // At the end of input: the last line.
            guard lineIndex < lines.count else { return (lines.last?.line ?? 1, 1) }
            let l = lines[lineIndex]
            return (l.line, pos - lineStart + l.trimmed + 1)
        }

        func fail(_ message: String) -> DaemonError {
            let (line, column) = here
            return DaemonError("config \(source) line \(line) column \(column): Error parsing the config JSON: \(message)")
        }

        mutating func skipWhitespace() {
            while pos < bytes.count {
                switch bytes[pos] {
                case 0x20, 0x09, 0x0D: pos += 1
                case 0x0A:
                    pos += 1
                    lineIndex += 1
                    lineStart = pos
                default: return
                }
            }
        }

        mutating func document() throws(DaemonError) -> ConfigValue {
            skipWhitespace()
            if pos >= bytes.count { throw fail("the document is empty") }
            let v = try value(depth: 1)
            skipWhitespace()
            if pos < bytes.count { throw fail("the document root must not be followed by other values") }
            return v
        }

        mutating func value(depth: Int) throws(DaemonError) -> ConfigValue {
            let (line, column) = here
            if depth > ConfigJSON.maxDepth {
                throw DaemonError(
                    "config \(source) line \(line) column \(column): Error validating the config JSON: Configuration has too many nesting levels!")
            }
            guard pos < bytes.count else { throw fail("unexpected end of input, a value is missing") }
            switch bytes[pos] {
            case UInt8(ascii: "{"):
                pos += 1
                var members: [ConfigValue.Member] = []
                skipWhitespace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
                    pos += 1
                    return ConfigValue(.object(members), line: line, column: column)
                }
                while true {
                    skipWhitespace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
                        throw fail(pos < bytes.count ? "expected a quoted member name" : "unexpected end of input inside an object")
                    }
                    let key = try string()
                    skipWhitespace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else {
                        throw fail("expected ':' after the member name \"\(key)\"")
                    }
                    pos += 1
                    skipWhitespace()
                    let v = try value(depth: depth + 1)
                    members.append(ConfigValue.Member(key: key, value: v))
                    skipWhitespace()
                    guard pos < bytes.count else { throw fail("unexpected end of input inside an object") }
                    if bytes[pos] == UInt8(ascii: ",") {
                        pos += 1
                        continue
                    }
                    if bytes[pos] == UInt8(ascii: "}") {
                        pos += 1
                        return ConfigValue(.object(members), line: line, column: column)
                    }
                    throw fail("expected ',' or '}' after the member \"\(key)\"")
                }
            case UInt8(ascii: "["):
                pos += 1
                var items: [ConfigValue] = []
                skipWhitespace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
                    pos += 1
                    return ConfigValue(.array(items), line: line, column: column)
                }
                while true {
                    skipWhitespace()
                    items.append(try value(depth: depth + 1))
                    skipWhitespace()
                    guard pos < bytes.count else { throw fail("unexpected end of input inside an array") }
                    if bytes[pos] == UInt8(ascii: ",") {
                        pos += 1
                        continue
                    }
                    if bytes[pos] == UInt8(ascii: "]") {
                        pos += 1
                        return ConfigValue(.array(items), line: line, column: column)
                    }
                    throw fail("expected ',' or ']' after an array element")
                }
            case UInt8(ascii: "\""):
                return ConfigValue(.string(try string()), line: line, column: column)
            case UInt8(ascii: "t"):
                try literal("true")
                return ConfigValue(.bool(true), line: line, column: column)
            case UInt8(ascii: "f"):
                try literal("false")
                return ConfigValue(.bool(false), line: line, column: column)
            case UInt8(ascii: "n"):
                try literal("null")
                return ConfigValue(.null, line: line, column: column)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return ConfigValue(try number(), line: line, column: column)
            default:
                throw fail("invalid value")
            }
        }

        mutating func literal(_ word: StaticString) throws(DaemonError) {
            let count = word.utf8CodeUnitCount
            let ok = word.withUTF8Buffer { w in
                pos + count <= bytes.count && bytes[pos..<(pos + count)].elementsEqual(w)
            }
            guard ok else { throw fail("invalid value") }
            pos += count
        }

        mutating func number() throws(DaemonError) -> ConfigValue.Kind {
            let start = pos
            var integral = true
            if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            func digit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
            guard digit(pos) else { throw fail("a number needs digits after '-'") }
            if bytes[pos] == 0x30 {
                pos += 1
            } else {
                while digit(pos) { pos += 1 }
            }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
                integral = false
                pos += 1
                guard digit(pos) else { throw fail("a number needs digits after the decimal point") }
                while digit(pos) { pos += 1 }
            }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
                integral = false
                pos += 1
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
                guard digit(pos) else { throw fail("a number needs digits in its exponent") }
                while digit(pos) { pos += 1 }
            }
            let text = String(decoding: bytes[start..<pos], as: UTF8.self)
            if integral {
                if let v = Int64(text) { return .int(v) }
                if let v = UInt64(text) { return .uint(v) }
            }
            guard let d = Double(text), d.isFinite else {
                pos = start
                throw fail("number too big to be stored in double")
            }
            return .double(d)
        }

        mutating func hex4() throws(DaemonError) -> UInt32 {
            guard pos + 4 <= bytes.count else { throw fail("incorrect hex digit after \\u escape in string") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[pos]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw fail("incorrect hex digit after \\u escape in string")
                }
                v = v << 4 | d
                pos += 1
            }
            return v
        }

        /// A string starting at the opening quote; bytes pass through as
        /// rapidjson does (without encoding validation).
        mutating func string() throws(DaemonError) -> String {
            pos += 1
            scratch.removeAll(keepingCapacity: true)
            while true {
                guard pos < bytes.count, bytes[pos] != 0x0A else { throw fail("missing a closing quotation mark in string") }
                let c = bytes[pos]
                if c == UInt8(ascii: "\"") {
                    pos += 1
                    return String(decoding: scratch, as: UTF8.self)
                }
                if c < 0x20 { throw fail("invalid control character in string") }
                if c != UInt8(ascii: "\\") {
                    // Copy a run of plain bytes at once.
                    let runStart = pos
                    while pos < bytes.count, bytes[pos] != UInt8(ascii: "\""), bytes[pos] != UInt8(ascii: "\\"), bytes[pos] >= 0x20 {
                        pos += 1
                    }
                    scratch.append(contentsOf: bytes[runStart..<pos])
                    continue
                }
                pos += 1
                guard pos < bytes.count else { throw fail("missing a closing quotation mark in string") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): scratch.append(0x22)
                case UInt8(ascii: "\\"): scratch.append(0x5C)
                case UInt8(ascii: "/"): scratch.append(0x2F)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if code >= 0xD800 && code <= 0xDBFF {
                        guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                            throw fail("the surrogate pair in string is invalid")
                        }
                        pos += 2
                        let low = try hex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else { throw fail("the surrogate pair in string is invalid") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if code >= 0xDC00 && code <= 0xDFFF {
                        throw fail("the surrogate pair in string is invalid")
                    }
                    appendUTF8(code)
                default:
                    pos -= 1
                    throw fail("invalid escape character in string")
                }
            }
        }

        mutating func appendUTF8(_ c: UInt32) {
            switch c {
            case 0..<0x80:
                scratch.append(UInt8(c))
            case 0x80..<0x800:
                scratch.append(UInt8(0xC0 | (c >> 6)))
                scratch.append(UInt8(0x80 | (c & 0x3F)))
            case 0x800..<0x10000:
                scratch.append(UInt8(0xE0 | (c >> 12)))
                scratch.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
                scratch.append(UInt8(0x80 | (c & 0x3F)))
            default:
                scratch.append(UInt8(0xF0 | (c >> 18)))
                scratch.append(UInt8(0x80 | ((c >> 12) & 0x3F)))
                scratch.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
                scratch.append(UInt8(0x80 | (c & 0x3F)))
            }
        }
    }
}
