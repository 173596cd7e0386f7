/// Where a value starts in a document: byte offset, 0-based line (newlines before it) and
/// 0-based byte column in that line.
package struct JSONPosition: Sendable, Hashable {
    package var offset: Int
    package var line: Int
    package var column: Int

    package init(offset: Int, line: Int, column: Int) {
        self.offset = offset
        self.line = line
        self.column = column
    }
}

/// Builds the values the reader finds: the one parser serves `JSONValue` and the daemon's
/// config values (which keep positions for their messages).
package protocol JSONBuilder {
    associatedtype Value
    func null(at: JSONPosition) -> Value
    func bool(_ value: Bool, at: JSONPosition) -> Value
    /// `text` is valid JSON number syntax; when it is not integral, or is an integer beyond
    /// both Int64 and UInt64, `Double(text)` is finite.
    func number(_ text: String, isIntegral: Bool, at: JSONPosition) -> Value
    func string(_ value: String, at: JSONPosition) -> Value
    func array(_ elements: [Value], at: JSONPosition) -> Value
    func object(_ members: [(String, Value)], at: JSONPosition) -> Value
}

/// The JSON parser: strict JSON as rapidjson's default mode reads it (no comments, no trailing
/// commas, no control characters in strings, paired surrogates), with rapidjson's messages.
/// Duplicate keys are kept in order. String bytes pass through without UTF-8 validation (invalid
/// sequences become U+FFFD in Swift strings). Recursion is bounded by `maxDepth`, so hostile
/// nesting ends in an error, never in a stack overflow.
package struct JSONReader {
    let bytes: [UInt8]
    /// The root is level 1; a value deeper than this is refused (`JSONError.isDepthLimit`).
    let maxDepth: Int
    var pos = 0
    var line = 0
    var lineStart = 0
    var scratch: [UInt8] = []

    package init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    var here: JSONPosition { JSONPosition(offset: pos, line: line, column: pos - lineStart) }

    func fail(_ reason: String) -> JSONError { JSONError(at: here, reason: reason) }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0D: pos += 1
            case 0x0A:
                pos += 1
                line += 1
                lineStart = pos
            default: return
            }
        }
    }

    /// One whole document: a value with only whitespace around it.
    package mutating func document<B: JSONBuilder>(_ builder: B) throws(JSONError) -> B.Value {
        skipWhitespace()
        if pos >= bytes.count { throw fail("the document is empty") }
        let v = try value(depth: 1, builder)
        skipWhitespace()
        if pos < bytes.count { throw fail("the document root must not be followed by other values") }
        return v
    }

    /// A whole document that is one object whose values are all strings (a stored result
    /// row), its pairs in order without building a tree; nil for any other document.
    package mutating func flatStringObject() -> [(String, String)]? {
        skipWhitespace()
        guard pos < bytes.count, bytes[pos] == UInt8(ascii: "{") else { return nil }
        pos += 1
        var pairs: [(String, String)] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
            pos += 1
        } else {
            while true {
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\""), let key = try? string() else { return nil }
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { return nil }
                pos += 1
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\""), let value = try? string() else { return nil }
                pairs.append((key, value))
                skipWhitespace()
                guard pos < bytes.count else { return nil }
                pos += 1
                if bytes[pos - 1] == UInt8(ascii: ",") { continue }
                if bytes[pos - 1] == UInt8(ascii: "}") { break }
                return nil
            }
        }
        skipWhitespace()
        return pos == bytes.count ? pairs : nil
    }

    mutating func value<B: JSONBuilder>(depth: Int, _ builder: B) throws(JSONError) -> B.Value {
        let at = here
        if depth > maxDepth { throw JSONError(at: at, reason: "nested too deeply", isDepthLimit: true) }
        guard pos < bytes.count else { throw fail("unexpected end of input, a value is missing") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var members: [(String, B.Value)] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
                pos += 1
                return builder.object(members, at: at)
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
                let v = try value(depth: depth + 1, builder)
                members.append((key, v))
                skipWhitespace()
                guard pos < bytes.count else { throw fail("unexpected end of input inside an object") }
                if bytes[pos] == UInt8(ascii: ",") {
                    pos += 1
                    continue
                }
                if bytes[pos] == UInt8(ascii: "}") {
                    pos += 1
                    return builder.object(members, at: at)
                }
                throw fail("expected ',' or '}' after the member \"\(key)\"")
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [B.Value] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
                pos += 1
                return builder.array(items, at: at)
            }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1, builder))
                skipWhitespace()
                guard pos < bytes.count else { throw fail("unexpected end of input inside an array") }
                if bytes[pos] == UInt8(ascii: ",") {
                    pos += 1
                    continue
                }
                if bytes[pos] == UInt8(ascii: "]") {
                    pos += 1
                    return builder.array(items, at: at)
                }
                throw fail("expected ',' or ']' after an array element")
            }
        case UInt8(ascii: "\""):
            return builder.string(try string(), at: at)
        case UInt8(ascii: "t"):
            try literal("true")
            return builder.bool(true, at: at)
        case UInt8(ascii: "f"):
            try literal("false")
            return builder.bool(false, at: at)
        case UInt8(ascii: "n"):
            try literal("null")
            return builder.null(at: at)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try number(at: at, builder)
        default:
            throw fail("invalid value")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONError) {
        let count = word.utf8CodeUnitCount
        let ok = word.withUTF8Buffer { w in
            pos + count <= bytes.count && bytes[pos..<(pos + count)].elementsEqual(w)
        }
        guard ok else { throw fail("invalid value") }
        pos += count
    }

    mutating func number<B: JSONBuilder>(at: JSONPosition, _ builder: B) throws(JSONError) -> B.Value {
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
        // Up to 18 digits always fit Int64; longer integers and other numbers must fit a double.
        if !integral || pos - start > 18, !(integral && (Int64(text) != nil || UInt64(text) != nil)) {
            guard let d = Double(text), d.isFinite else {
                pos = start
                throw fail("number too big to be stored in double")
            }
        }
        return builder.number(text, isIntegral: integral, at: at)
    }

    mutating func hex4() throws(JSONError) -> UInt32 {
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

    /// A string starting at its opening quote.
    mutating func string() throws(JSONError) -> String {
        pos += 1
        // Most strings have no escape: take their bytes in one piece.
        let start = pos
        while pos < bytes.count, bytes[pos] != UInt8(ascii: "\""), bytes[pos] != UInt8(ascii: "\\"), bytes[pos] >= 0x20 {
            pos += 1
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") {
            pos += 1
            return String(decoding: bytes[start..<(pos - 1)], as: UTF8.self)
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: bytes[start..<pos])
        while true {
            guard pos < bytes.count, bytes[pos] != 0x0A else { throw fail("missing a closing quotation mark in string") }
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                pos += 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if c < 0x20 { throw fail("invalid control character in string") }
            if c != UInt8(ascii: "\\") {
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
