internal import CSQLite

/// One cell of a table row or a result row.
///
/// `.blob` carries raw bytes. In a column declared TEXT it is handed to SQLite
/// as text of exactly those bytes (file names and command lines need not be
/// UTF-8); in a BLOB column it is a blob.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])

    /// Text from bytes: a `String` when the bytes are valid UTF-8, the bytes
    /// themselves otherwise (so nothing is replaced by U+FFFD).
    public static func text<C: Collection>(bytes: C) -> SQLValue where C.Element == UInt8 {
        if let string = String(validating: bytes, as: UTF8.self) {
            return .text(string)
        }
        return .blob(Array(bytes))
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The value as osquery's query API renders it: integers in decimal,
    /// doubles with 15 significant digits and `.0` when there is no `.`,
    /// text as-is, NULL as nil.
    public var osqueryString: String? {
        switch self {
        case .null: return nil
        case .integer(let v): return String(v)
        case .double(let d): return SQLValue.osqueryDouble(d)
        case .text(let s): return s
        case .blob(let b): return String(decoding: b, as: UTF8.self)
        }
    }

    /// The value as SQLite's `sqlite3_column_text` renders it (what the shell prints).
    public var sqliteString: String? {
        switch self {
        case .null: return nil
        case .integer(let v): return String(v)
        case .double(let d): return SQLValue.sqliteDouble(d)
        case .text(let s): return s
        case .blob(let b): return String(decoding: b, as: UTF8.self)
        }
    }

    /// `%.15g` plus `.0` when the text has no `.` (osquery's castVariant).
    public static func osqueryDouble(_ d: Double) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            let n = Int(osq_format_double_15g(buffer.baseAddress, 64, d))
            var s = String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: max(0, min(n, 63))), as: UTF8.self)
            if !s.utf8.contains(UInt8(ascii: ".")) { s += ".0" }
            return s
        }
    }

    /// SQLite's own `%!.15g` rendering of a REAL.
    public static func sqliteDouble(_ d: Double) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            let n = Int(osq_sqlite_format_double(buffer.baseAddress, 64, d))
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: max(0, min(n, 63))), as: UTF8.self)
        }
    }

    /// Convert a string produced by an (extension) table into a typed value,
    /// following osquery's rules for each declared column type:
    /// empty string in a numeric column is NULL; INTEGER parses like
    /// `strtol(base 0)` (hex/octal prefixes, trailing junk ignored) into 32 bits;
    /// BIGINT/UNSIGNED BIGINT parse as signed 64-bit (overflow is NULL);
    /// DOUBLE needs a full parse.
    public static func converting(_ string: String, to type: ColumnType) -> SQLValue {
        switch type {
        case .text, .unknown:
            return .text(string)
        case .blob:
            return .blob(Array(string.utf8))
        case .integer:
            if string.isEmpty { return .null }
            guard let v = parseCInteger(string, allowTrailing: true) else { return .null }
            return .integer(Int64(Int32(truncatingIfNeeded: v)))
        case .bigint, .unsignedBigint:
            if string.isEmpty { return .null }
            guard let v = parseCInteger(string, allowTrailing: true) else { return .null }
            return .integer(v)
        case .double:
            if string.isEmpty { return .null }
            guard let d = Double(string.trimmingASCIIWhitespace()) else { return .null }
            return .double(d)
        }
    }

    /// strtol/strtoll-like parse with base 0. Returns nil when no digits were
    /// read or the value overflows 64 bits.
    static func parseCInteger(_ string: String, allowTrailing: Bool) -> Int64? {
        var bytes = string.utf8[...]
        while let f = bytes.first, f == 0x20 || (f >= 0x09 && f <= 0x0d) { bytes = bytes.dropFirst() }
        var negative = false
        if let f = bytes.first, f == UInt8(ascii: "-") || f == UInt8(ascii: "+") {
            negative = f == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        var base: UInt64 = 10
        if bytes.first == UInt8(ascii: "0") {
            let rest = bytes.dropFirst()
            if let x = rest.first, x == UInt8(ascii: "x") || x == UInt8(ascii: "X"),
               let d = rest.dropFirst().first, hexDigit(d) != nil {
                base = 16
                bytes = rest.dropFirst()
            } else if !rest.isEmpty {
                base = 8
            }
        }
        var magnitude: UInt64 = 0
        var digits = 0
        for b in bytes {
            guard let d = hexDigit(b), UInt64(d) < base else {
                if !allowTrailing { return nil }
                break
            }
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: base)
            let (m2, o2) = m1.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return nil }
            magnitude = m2
            digits += 1
        }
        if digits == 0 { return nil }
        if negative {
            if magnitude > UInt64(Int64.max) + 1 { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        if magnitude > UInt64(Int64.max) { return nil }
        return Int64(magnitude)
    }

    private static func hexDigit(_ b: UInt8) -> Int? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(b - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(b - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(b - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}

extension SQLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(nilLiteral: ()) { self = .null }
}

extension String {
    /// The string without leading and trailing ASCII whitespace.
    public func trimmingASCIIWhitespace() -> String {
        let u = self.utf8
        var start = u.startIndex
        var end = u.endIndex
        func ws(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0d) }
        while start < end, ws(u[start]) { start = u.index(after: start) }
        while end > start, ws(u[u.index(before: end)]) { end = u.index(before: end) }
        if start == u.startIndex && end == u.endIndex { return self }
        return String(self[start..<end])
    }
}
