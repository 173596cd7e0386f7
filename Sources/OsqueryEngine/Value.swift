internal import CSQLite
#if canImport(Glibc)
import Glibc
#endif

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
        if let plain = plainDescription(d) { return plain }
        var s = shortDouble15g(d) ?? printfDouble15g(d)
        if !s.utf8.contains(UInt8(ascii: ".")) { s += ".0" }
        return s
    }

    /// |d| as m·10⁻ᵏ when osquery's text for `d` (`%.15g`) is exactly that decimal in fixed
    /// notation: m < 10¹⁵, k ≤ 17, |d| ≥ 10⁻⁴; nil otherwise. Query replies write it without
    /// printf (`ThriftWriter.writeFixedPointString`), for the doubles tables are full of.
    ///
    /// Why the digits are right: if `|d|·10ᵏ` rounds (in binary) to the whole number m < 10¹⁵,
    /// then |d| is within one part in 2⁵³ of m·10⁻ᵏ, a point of the 15-digit grid at |d|'s
    /// exponent; half a step of that grid is at least 5·10⁻¹⁶ of |d|, more than 2⁻⁵³, so
    /// `%.15g` rounds |d| to exactly m·10⁻ᵏ (never a tie), and prints it in fixed notation.
    @inline(__always)
    public static func osqueryDecimal(_ d: Double) -> (m: UInt64, scale: Int)? {
        let a = d.magnitude
        guard a >= 1e-4, a < 1e15 else { return nil }
        var k = 0
        while k <= 17 {
            let t = a * exactPowersOfTen[k]
            if t >= 1e15 { return nil }
            // A whole number? (Through an integer: `rounded` is a library call here.)
            let whole = UInt64(t)
            if Double(whole) == t { return (whole, k) }
            k &+= 1
        }
        return nil
    }

    /// C's `%.15g`.
    static func printfDouble15g(_ d: Double) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            let n = Int(osq_format_double_15g(buffer.baseAddress, 64, d))
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: max(0, min(n, 63))), as: UTF8.self)
        }
    }

    /// Swift's `description` when it already is osquery's text: fixed notation (no exponent),
    /// at most 15 significant digits, first digit at 10^-4 ... 10^14 — exactly where `%.15g`
    /// prints the same digits in fixed notation; a whole number's `.0` is what osquery appends.
    @inline(__always)
    static func plainDescription(_ d: Double) -> String? {
        guard d.isNormal || d == 0 else { return nil }
        var text = d.description
        let ok = text.withUTF8 { u -> Bool in
            var i = u.count > 0 && u[0] == UInt8(ascii: "-") ? 1 : 0
            var position = 0  // digits seen, the point not counted
            var firstNonZero = -1
            var lastNonZero = -1
            var intDigits = 0
            var point = false
            while i < u.count {
                let b = u[i]
                if b == UInt8(ascii: ".") {
                    if point { return false }
                    point = true
                } else if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                    if b != UInt8(ascii: "0") {
                        if firstNonZero < 0 { firstNonZero = position }
                        lastNonZero = position
                    }
                    if !point { intDigits += 1 }
                    position += 1
                } else {
                    return false  // an exponent, inf, nan
                }
                i += 1
            }
            guard point else { return false }
            if firstNonZero < 0 { return true }  // "0.0", "-0.0": %.15g "0"/"-0" plus ".0"
            guard lastNonZero - firstNonZero + 1 <= 15 else { return false }
            let sci = intDigits - 1 - firstNonZero
            return sci >= -4 && sci < 15
        }
        return ok ? text : nil
    }

    /// `%.15g` of `d` without printf, when its shortest round-trip form (Swift's
    /// `description`) has at most 15 significant digits: a decimal of at most 15 digits
    /// survives the round trip through a double (DBL_DIG), so rounding `d` to 15 digits gives
    /// back exactly those digits, and only the layout remains. nil otherwise (printf decides).
    static func shortDouble15g(_ d: Double) -> String? {
        // Subnormals carry fewer than 15 significant digits of precision: printf decides.
        guard d.isNormal || d == 0 else { return nil }
        var text = d.description
        return text.withUTF8 { (u: UnsafeBufferPointer<UInt8>) -> String? in
            // Swift writes [-]digits[.digits][e[+-]digits].
            var digits: (UInt64, UInt64) = (0, 0)  // up to 16 ASCII digits, packed
            var count = 0  // significant digits kept (leading zeros skipped)
            var pointAt = -1  // significant digits seen before the point
            var leadingZerosAfterPoint = 0
            var i = 0
            let negative = u.count > 0 && u[0] == UInt8(ascii: "-")
            if negative { i = 1 }
            var exponent = 0
            var sawDigit = false
            while i < u.count {
                let b = u[i]
                if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                    sawDigit = true
                    if count == 0 && b == UInt8(ascii: "0") {
                        if pointAt >= 0 { leadingZerosAfterPoint += 1 }
                    } else {
                        guard count < 16 else { return nil }
                        if count < 8 { digits.0 |= UInt64(b) << (8 * UInt64(count)) } else { digits.1 |= UInt64(b) << (8 * UInt64(count - 8)) }
                        count += 1
                    }
                } else if b == UInt8(ascii: ".") {
                    pointAt = count
                } else if b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
                    guard let e = Int(String(decoding: UnsafeBufferPointer(rebasing: u[(i + 1)...]), as: UTF8.self)) else { return nil }
                    exponent = e
                    break
                } else {
                    return nil
                }
                i += 1
            }
            guard sawDigit else { return nil }
            if pointAt < 0 { pointAt = count }
            func digit(_ k: Int) -> UInt8 {
                k < 8 ? UInt8(truncatingIfNeeded: digits.0 >> (8 * UInt64(k))) : UInt8(truncatingIfNeeded: digits.1 >> (8 * UInt64(k - 8)))
            }
            // Trailing zeros are not significant.
            while count > 0 && digit(count - 1) == UInt8(ascii: "0") { count -= 1 }
            if count == 0 { return negative ? "-0" : "0" }
            guard count <= 15 else { return nil }
            // Scientific exponent of the first significant digit.
            let sci: Int
            if pointAt > 0 && leadingZerosAfterPoint == 0 && pointAt <= count + 16 {
                sci = pointAt - 1 + exponent
            } else {
                sci = -leadingZerosAfterPoint - 1 + exponent
            }
            var out = [UInt8]()
            out.reserveCapacity(24)
            if negative { out.append(UInt8(ascii: "-")) }
            if sci < -4 || sci >= 15 {
                out.append(digit(0))
                if count > 1 {
                    out.append(UInt8(ascii: "."))
                    for k in 1..<count { out.append(digit(k)) }
                }
                out.append(UInt8(ascii: "e"))
                out.append(sci < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
                let magnitude = abs(sci)
                if magnitude < 10 { out.append(UInt8(ascii: "0")) }
                out.append(contentsOf: String(magnitude).utf8)
            } else if sci < 0 {
                out.append(UInt8(ascii: "0"))
                out.append(UInt8(ascii: "."))
                for _ in 0..<(-sci - 1) { out.append(UInt8(ascii: "0")) }
                for k in 0..<count { out.append(digit(k)) }
            } else {
                for k in 0...sci { out.append(k < count ? digit(k) : UInt8(ascii: "0")) }
                if count > sci + 1 {
                    out.append(UInt8(ascii: "."))
                    for k in (sci + 1)..<count { out.append(digit(k)) }
                }
            }
            return String(decoding: out, as: UTF8.self)
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

    /// ``converting(_:to:)`` for text given as bytes (an extension's value straight off the
    /// wire): the same rules, and the same values, without a `String` for numbers. Valid UTF-8
    /// in a text column is text; anything else is kept as bytes (`.blob`), unchanged.
    public static func converting(utf8 bytes: UnsafeRawBufferPointer, to type: ColumnType) -> SQLValue {
        switch type {
        case .text, .unknown:
            if let s = validUTF8String(bytes) { return .text(s) }
            return .blob(Array(bytes))
        case .blob:
            return .blob(Array(bytes))
        case .integer:
            if bytes.isEmpty { return .null }
            guard let v = parseCInteger(bytes, allowTrailing: true) else { return .null }
            return .integer(Int64(Int32(truncatingIfNeeded: v)))
        case .bigint, .unsignedBigint:
            if bytes.isEmpty { return .null }
            guard let v = parseCInteger(bytes, allowTrailing: true) else { return .null }
            return .integer(v)
        case .double:
            if bytes.isEmpty { return .null }
            guard let d = parseDouble(bytes) else { return .null }
            return .double(d)
        }
    }

    /// A String of `bytes` when they are valid UTF-8, else nil.
    @inline(__always)
    static func validUTF8String(_ bytes: UnsafeRawBufferPointer) -> String? {
        let utf8 = bytes.bindMemory(to: UInt8.self)
        // A concrete initializer (the generic `String(validating:)` pays a runtime metadata
        // lookup per call); it repairs invalid UTF-8, so the input was valid exactly when it
        // is ASCII or the result has the same bytes.
        let text = String(unsafeUninitializedCapacity: utf8.count) { target in
            _ = target.initialize(fromContentsOf: utf8)
            return utf8.count
        }
        if isASCII(bytes) { return text }
        var copy = text
        let same = copy.withUTF8 { out in
            out.count == bytes.count && (bytes.count == 0 || memcmp(out.baseAddress!, bytes.baseAddress!, bytes.count) == 0)
        }
        return same ? text : nil
    }

    /// Powers of ten that are exact doubles.
    static let exactPowersOfTen: [Double] = (0...22).map { e in
        var p = 1.0
        for _ in 0..<e { p *= 10 }
        return p
    }

    /// `Double(text.trimmingASCIIWhitespace())` over bytes. Plain decimals of at most 15
    /// digits (what tables send) are computed directly: the digits and the power of ten are
    /// both exact doubles, so one division gives the correctly rounded value, as strtod does.
    /// Everything else (exponents, hex, inf/nan, more digits) goes through `Double(String)`.
    static func parseDouble(_ raw: UnsafeRawBufferPointer) -> Double? {
        var start = 0
        var end = raw.count
        @inline(__always) func ws(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0d) }
        while start < end, ws(raw[start]) { start &+= 1 }
        while end > start, ws(raw[end &- 1]) { end &-= 1 }
        let bytes = UnsafeRawBufferPointer(rebasing: raw[start..<end])
        var i = 0
        let n = bytes.count
        let negative = n > 0 && bytes[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        var mantissa: UInt64 = 0
        var digits = 0
        var intDigits = 0
        var fraction = -1  // digits after the point; -1 while there is no point
        var simple = i < n
        while i < n {
            let b = bytes[i]
            if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                mantissa = mantissa &* 10 &+ UInt64(b &- UInt8(ascii: "0"))
                digits &+= 1
                if fraction >= 0 { fraction &+= 1 } else { intDigits &+= 1 }
            } else if b == UInt8(ascii: "."), fraction < 0 {
                fraction = 0
            } else {
                simple = false
                break
            }
            i &+= 1
        }
        if simple, digits <= 15, intDigits > 0, fraction != 0 {
            var value = Double(mantissa)
            if fraction > 0 { value /= exactPowersOfTen[fraction] }
            return negative ? -value : value
        }
        return Double(String(decoding: bytes, as: UTF8.self))
    }

    /// strtol/strtoll-like parse with base 0. Returns nil when no digits were
    /// read or the value overflows 64 bits.
    static func parseCInteger(_ string: String, allowTrailing: Bool) -> Int64? {
        var string = string
        return string.withUTF8 { parseCInteger(UnsafeRawBufferPointer($0), allowTrailing: allowTrailing) }
    }

    /// The same parse over bytes (no String needed). Bytes that are not ASCII are never
    /// whitespace, signs or digits, so invalid UTF-8 parses as its U+FFFD repair would.
    static func parseCInteger(_ bytes: UnsafeRawBufferPointer, allowTrailing: Bool) -> Int64? {
        var i = 0
        let n = bytes.count
        while i < n, bytes[i] == 0x20 || (bytes[i] >= 0x09 && bytes[i] <= 0x0d) { i &+= 1 }
        var negative = false
        if i < n, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            negative = bytes[i] == UInt8(ascii: "-")
            i &+= 1
        }
        var base: UInt64 = 10
        if i < n, bytes[i] == UInt8(ascii: "0") {
            if i + 1 < n, bytes[i + 1] == UInt8(ascii: "x") || bytes[i + 1] == UInt8(ascii: "X"),
               i + 2 < n, hexDigit(bytes[i + 2]) != nil {
                base = 16
                i &+= 2
            } else if i + 1 < n {
                base = 8  // the leading 0 is read as an octal digit
            }
        }
        var magnitude: UInt64 = 0
        var digits = 0
        while i < n {
            guard let d = hexDigit(bytes[i]), UInt64(d) < base else {
                if !allowTrailing { return nil }
                break
            }
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: base)
            let (m2, o2) = m1.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return nil }
            magnitude = m2
            digits += 1
            i &+= 1
        }
        if digits == 0 { return nil }
        if negative {
            if magnitude > UInt64(Int64.max) + 1 { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        if magnitude > UInt64(Int64.max) { return nil }
        return Int64(magnitude)
    }

    @inline(__always)
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
