/// JSON text writing, byte for byte as osquery's rapidjson writer: `"` and `\` are escaped,
/// backspace, tab, newline, form feed and carriage return get their short escapes (`\b`,
/// `\t`, `\n`, `\f`, `\r`), every other control character is `\u00XX` with upper-case hex,
/// and `/`, DEL and non-ASCII text are written as they are.
package enum JSON {
    /// Appends `s` as a JSON string literal (quotes included).
    /// - Parameters:
    ///   - s: the text to quote.
    ///   - out: the string to append to.
    package static func appendString(_ s: String, to out: inout String) {
        out.append("\"")
        var needsEscape = false
        for b in s.utf8 where b < 0x20 || b == 0x22 || b == 0x5c {
            needsEscape = true
            break
        }
        if !needsEscape {
            out.append(s)
            out.append("\"")
            return
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count + 8)
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            switch b {
            case 0x22: bytes += [0x5c, 0x22]
            case 0x5c: bytes += [0x5c, 0x5c]
            case 0x08: bytes += [0x5c, UInt8(ascii: "b")]
            case 0x0c: bytes += [0x5c, UInt8(ascii: "f")]
            case 0x0a: bytes += [0x5c, UInt8(ascii: "n")]
            case 0x0d: bytes += [0x5c, UInt8(ascii: "r")]
            case 0x09: bytes += [0x5c, UInt8(ascii: "t")]
            case 0..<0x20:
                bytes += [0x5c, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xf)]]
            default: bytes.append(b)
            }
        }
        out.append(String(decoding: bytes, as: UTF8.self))
        out.append("\"")
    }

    /// `s` as a JSON string literal (quotes included).
    /// - Parameter s: the text to quote.
    /// - Returns: the literal.
    package static func quoted(_ s: String) -> String {
        var out = ""
        appendString(s, to: &out)
        return out
    }
}

/// A parsed JSON value. Numbers keep their source text, so 64-bit integers
/// (`colsUsedBitset`) and int-vs-double distinctions survive exactly.
package enum JSONValue: Sendable, Equatable {
    /// `null`
    case null
    /// `true` or `false`
    case bool(Bool)
    /// A number, as written.
    case number(String)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// Members in source order.
    case object([(String, JSONValue)])

    package static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x), .number(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: false
        }
    }

    /// Parses a JSON document (strict JSON, as osquery's rapidjson reads it; at most 128 levels deep).
    /// - Parameter text: the document.
    /// - Returns: its value.
    /// - Throws: `JSONError` naming the byte offset of the first problem.
    package static func parse(_ text: String) throws(JSONError) -> JSONValue {
        var reader = JSONReader(bytes: Array(text.utf8), maxDepth: 128)
        return try reader.document(JSONValueBuilder())
    }

    /// The member named `key` of an object.
    package subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.0 == key })?.1
    }

    /// A string, or a number's text.
    package var text: String? {
        switch self {
        case .string(let s), .number(let s): s
        case .bool(let b): b ? "true" : "false"
        default: nil
        }
    }

    /// An integer from a number or a numeric string (osquery sends both).
    package var int64: Int64? {
        guard let t = text else { return nil }
        if let v = Int64(t) { return v }
        if let d = Double(t), d == d.rounded(), abs(d) < 9.2e18 { return Int64(d) }
        return nil
    }

    /// An unsigned integer from a number or a numeric string.
    package var uint64: UInt64? {
        guard let t = text else { return nil }
        if let v = UInt64(t) { return v }
        if let v = Int64(t) { return UInt64(bitPattern: v) }
        return nil
    }

    /// A double from a number or a numeric string.
    package var double: Double? { text.flatMap(Double.init) }

    /// The elements, when this is an array.
    package var array: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    /// The members in order, when this is an object.
    package var members: [(String, JSONValue)]? { if case .object(let m) = self { m } else { nil } }

    /// Compact JSON text.
    package var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): JSON.appendString(s, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let m):
            out += "{"
            for (i, (k, v)) in m.enumerated() {
                if i > 0 { out += "," }
                JSON.appendString(k, to: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal, escaped as osquery's rapidjson writer does.
    /// - Parameters:
    ///   - s: the text to quote.
    ///   - out: the string to append to.
    package static func appendQuoted(_ s: String, to out: inout String) { JSON.appendString(s, to: &out) }

    /// An object from string pairs.
    /// - Parameter pairs: member names and string values, in order.
    /// - Returns: the object.
    package static func stringObject(_ pairs: [(String, String)]) -> JSONValue {
        .object(pairs.map { ($0.0, .string($0.1)) })
    }
}

/// Builds `JSONValue`s (numbers keep their text; positions are not kept).
struct JSONValueBuilder: JSONBuilder {
    func null(at: JSONPosition) -> JSONValue { .null }
    func bool(_ value: Bool, at: JSONPosition) -> JSONValue { .bool(value) }
    func number(_ text: String, isIntegral: Bool, at: JSONPosition) -> JSONValue { .number(text) }
    func string(_ value: String, at: JSONPosition) -> JSONValue { .string(value) }
    func array(_ elements: [JSONValue], at: JSONPosition) -> JSONValue { .array(elements) }
    func object(_ members: [(String, JSONValue)], at: JSONPosition) -> JSONValue { .object(members) }
}

/// A JSON syntax error.
package struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The byte offset of the problem.
    package var offset: Int
    /// What was wrong.
    package var reason: String
    /// Where the problem is: 0-based line and byte column of `offset`.
    package var position: JSONPosition
    /// The document nests deeper than the reader's limit (a limit, not a syntax error).
    package var isDepthLimit: Bool

    package init(at position: JSONPosition, reason: String, isDepthLimit: Bool = false) {
        self.offset = position.offset
        self.reason = reason
        self.position = position
        self.isDepthLimit = isDepthLimit
    }

    package var description: String { "invalid JSON at offset \(offset): \(reason)" }
}
