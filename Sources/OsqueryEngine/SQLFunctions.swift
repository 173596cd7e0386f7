internal import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// Arguments of one SQL function call.
struct FunctionArgs {
    let count: Int
    let argv: UnsafeMutablePointer<OpaquePointer?>?
    /// The call's context, for the connection's limits.
    var context: OpaquePointer? = nil

    /// Throws SQLite's own error when `bytes` would pass the connection's `SQLITE_LIMIT_LENGTH`:
    /// checked before a result is built, so an oversized one is never allocated.
    func checkLength(_ bytes: Int) throws(FunctionError) {
        let limit = context.flatMap { sqlite3_context_db_handle($0) }.map { Int(sqlite3_limit($0, SQLITE_LIMIT_LENGTH, -1)) }
        if bytes > (limit ?? Int(Int32.max)) { throw FunctionError("string or blob too big") }
    }

    /// The bytes of argument `i` as text (0 for NULL), without converting it: SQLite knows a
    /// zeroblob's or a number's size without materializing it.
    func byteCount(_ i: Int) -> Int { isNull(i) ? 0 : Int(sqlite3_value_bytes(argv?[i])) }

    func value(_ i: Int) -> SQLValue { i < count ? sqlValue(argv?[i]) : .null }
    func isNull(_ i: Int) -> Bool { i >= count || sqlite3_value_type(argv?[i]) == SQLITE_NULL }

    /// Text of an argument (numbers rendered by SQLite), nil for NULL.
    func text(_ i: Int) -> String? {
        guard !isNull(i) else { return nil }
        let v = argv?[i]
        let n = Int(sqlite3_value_bytes(v))
        guard let p = sqlite3_value_text(v) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }

    /// Raw bytes of an argument (blob bytes or the text's bytes), nil for NULL.
    func bytes(_ i: Int) -> [UInt8]? {
        guard !isNull(i) else { return nil }
        let v = argv?[i]
        if sqlite3_value_type(v) == SQLITE_BLOB {
            let n = Int(sqlite3_value_bytes(v))
            guard n > 0, let p = sqlite3_value_blob(v) else { return [] }
            return Array(UnsafeRawBufferPointer(start: p, count: n))
        }
        let n = Int(sqlite3_value_bytes(v))
        guard let p = sqlite3_value_text(v) else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    func int(_ i: Int) -> Int64? { isNull(i) ? nil : sqlite3_value_int64(argv?[i]) }
    func double(_ i: Int) -> Double? { isNull(i) ? nil : sqlite3_value_double(argv?[i]) }
}

struct FunctionError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

typealias SQLFunctionBody = @Sendable (FunctionArgs) throws(FunctionError) -> SQLValue

/// osquery's added SQL functions and collations.
enum SQLFunctions {
    struct Definition: Sendable {
        var name: String
        var arity: Int32  // -1 = variadic
        var body: SQLFunctionBody
    }

    static let definitions: [Definition] = {
        var d: [Definition] = []
        func add(_ name: String, _ arity: Int32, _ body: @escaping SQLFunctionBody) {
            d.append(Definition(name: name, arity: arity, body: body))
        }
        // Strings.
        add("concat", -1) { a throws(FunctionError) in
            try a.checkLength((0..<a.count).reduce(0) { $0 &+ a.byteCount($1) })
            var out = ""
            for i in 0..<a.count { if let s = a.text(i) { out += s } }
            return .text(out)
        }
        add("concat_ws", -1) { a throws(FunctionError) in
            guard a.count >= 1 else { throw FunctionError("concat_ws requires a separator") }
            let parts = (1..<max(1, a.count)).filter { !a.isNull($0) }
            try a.checkLength(parts.reduce(0) { $0 &+ a.byteCount($1) } &+ a.byteCount(0) &* max(parts.count - 1, 0))
            let sep = a.text(0) ?? ""
            return .text(parts.compactMap { a.text($0) }.joined(separator: sep))
        }
        add("split", 3) { a in
            guard let s = a.text(0), let tokens = a.text(1), let idx = a.int(2) else { return .null }
            let delims = Set(tokens.unicodeScalars)
            let pieces = s.unicodeScalars.split(whereSeparator: { delims.contains($0) }).map { String(String.UnicodeScalarView($0)) }
            guard idx >= 0, idx < pieces.count else { return .null }
            return .text(pieces[Int(idx)])
        }
        add("regex_split", 3) { a throws(FunctionError) in
            guard let s = a.text(0), let pattern = a.text(1), let idx = a.int(2) else { return .null }
            let re = try compileRegex(pattern)
            var pieces: [Substring] = []
            var start = s.startIndex
            for m in s.matches(of: re) {
                if m.range.isEmpty { continue }
                pieces.append(s[start..<m.range.lowerBound])
                start = m.range.upperBound
            }
            if start < s.endIndex { pieces.append(s[start...]) }
            guard idx >= 0, idx < pieces.count else { return .null }
            return .text(String(pieces[Int(idx)]))
        }
        add("regex_match", 3) { a throws(FunctionError) in
            guard let s = a.text(0), let pattern = a.text(1), let idx = a.int(2) else { return .null }
            let re = try compileRegex(pattern)
            guard let m = try? re.firstMatch(in: s) else { return .null }
            guard idx >= 0, idx < m.output.count, let sub = m.output[Int(idx)].substring else { return .null }
            return .text(String(sub))
        }
        add("regexp", 2) { a throws(FunctionError) in
            guard let pattern = a.text(0), let s = a.text(1) else { return .null }
            let re = try compileRegex(pattern)
            return .integer((try? re.firstMatch(in: s)) != nil ? 1 : 0)
        }
        // Network.
        add("inet_aton", 1) { a in
            guard let s = a.text(0), let v = parseIPv4(s) else { return .null }
            return .integer(Int64(v))
        }
        add("in_cidr_block", 2) { a throws(FunctionError) in
            guard let cidr = a.text(0), let ip = a.text(1) else { return .null }
            guard let result = inCIDRBlock(cidr, ip) else { return .null }
            return .integer(result ? 1 : 0)
        }
        // Hashes and encodings.
        add("md5", 1) { a in
            guard let b = a.bytes(0) else { return .null }
            return .text(Hex.lowercase(Digest.md5(b)))
        }
        add("sha1", 1) { a in
            guard let b = a.bytes(0) else { return .null }
            return .text(Hex.lowercase(Digest.sha1(b)))
        }
        add("sha256", 1) { a in
            guard let b = a.bytes(0) else { return .null }
            return .text(Hex.lowercase(Digest.sha256(b)))
        }
        add("to_base64", 1) { a throws(FunctionError) in
            guard !a.isNull(0) else { return .null }
            try a.checkLength((a.byteCount(0) &+ 2) / 3 &* 4)
            guard let b = a.bytes(0) else { return .null }
            return .text(Base64.encode(b))
        }
        add("from_base64", 1) { a in
            guard let s = a.text(0) else { return .null }
            guard let b = Base64.decode(s) else { return .text("") }
            return .text(bytes: b)
        }
        add("conditional_to_base64", 1) { a throws(FunctionError) in
            guard let b = a.bytes(0) else { return .null }
            if b.allSatisfy({ $0 >= 0x20 && $0 <= 0x7e }) { return .text(bytes: b) }
            try a.checkLength((b.count &+ 2) / 3 &* 4)
            return .text(Base64.encode(b))
        }
        // Versions.
        add("version_compare", -1) { a throws(FunctionError) in
            guard a.count == 2 || a.count == 3 else { throw FunctionError("version_compare requires 2 or 3 arguments") }
            guard let l = a.text(0), let r = a.text(1) else { return .null }
            let flavour = a.count == 3 ? (a.text(2) ?? "") : ""
            guard let kind = VersionCompare.Kind(flavour) else {
                throw FunctionError("Unknown version comparison type: \(flavour)")
            }
            return .integer(Int64(VersionCompare.compare(l, r, kind)))
        }
        // Math (C library wrappers; NULL in, NULL out).
        func math(_ name: String, _ f: @escaping @Sendable (Double) -> Double) {
            add(name, 1) { a in
                guard let x = a.double(0) else { return .null }
                let y = f(x)
                return y.isNaN ? .null : .double(y)
            }
        }
        math("sqrt") { Glibc.sqrt($0) }
        math("log") { Glibc.log($0) }
        math("log10") { Glibc.log10($0) }
        math("exp") { Glibc.exp($0) }
        math("sin") { Glibc.sin($0) }
        math("cos") { Glibc.cos($0) }
        math("tan") { Glibc.tan($0) }
        math("cot") { 1 / Glibc.tan($0) }
        math("asin") { Glibc.asin($0) }
        math("acos") { Glibc.acos($0) }
        math("atan") { Glibc.atan($0) }
        math("degrees") { $0 * 180 / Double.pi }
        math("radians") { $0 * Double.pi / 180 }
        add("power", 2) { a in
            guard let x = a.double(0), let y = a.double(1) else { return .null }
            return .double(Glibc.pow(x, y))
        }
        add("pi", 0) { _ in .double(Double.pi) }
        add("ceil", 1) { a in
            switch a.value(0) {
            case .null: return .null
            case .integer(let i): return .integer(i)
            default: return .integer(Int64(Glibc.ceil(a.double(0) ?? 0)))
            }
        }
        add("floor", 1) { a in
            switch a.value(0) {
            case .null: return .null
            case .integer(let i): return .integer(i)
            default: return .integer(Int64(Glibc.floor(a.double(0) ?? 0)))
            }
        }
        return d
    }()

    static func register(on db: OpaquePointer) {
        for (i, def) in definitions.enumerated() {
            // Pure functions: innocuous, so views may use them with trusted_schema off.
            let flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS
            sqlite3_create_function_v2(db, def.name, def.arity, flags, UnsafeMutableRawPointer(bitPattern: i + 1), trampoline, nil, nil, nil)
        }
        for kind in VersionCompare.Kind.allCases {
            sqlite3_create_collation_v2(db, kind.collationName, SQLITE_UTF8, UnsafeMutableRawPointer(bitPattern: kind.rawValue + 1), collationTrampoline, nil)
        }
    }

    private static let trampoline: @convention(c) (OpaquePointer?, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Void = { ctx, argc, argv in
        let index = Int(bitPattern: sqlite3_user_data(ctx)) - 1
        let def = SQLFunctions.definitions[index]
        do {
            let value = try def.body(FunctionArgs(count: Int(argc), argv: argv, context: ctx))
            if case .blob = value {
                setResult(ctx, value, type: .blob)
            } else {
                setResult(ctx, value, type: .text)
            }
        } catch let error as FunctionError {
            sqlite3_result_error(ctx, error.message, -1)
        } catch {
            sqlite3_result_error(ctx, "\(error)", -1)
        }
    }

    private static let collationTrampoline: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafeRawPointer?, Int32, UnsafeRawPointer?) -> Int32 = { arg, n1, p1, n2, p2 in
        let kind = VersionCompare.Kind(rawValue: Int(bitPattern: arg) - 1) ?? .semver
        let a = p1.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(n1)), as: UTF8.self) } ?? ""
        let b = p2.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(n2)), as: UTF8.self) } ?? ""
        return Int32(VersionCompare.compare(a, b, kind))
    }

    static func compileRegex(_ pattern: String) throws(FunctionError) -> Regex<AnyRegexOutput> {
        let maxSize = Int(Flags.shared[.regexMaxSize])
        if maxSize > 0 && pattern.utf8.count > maxSize {
            throw FunctionError("Invalid regex: pattern exceeds \(maxSize) bytes")
        }
        do {
            return try Regex(pattern)
        } catch {
            throw FunctionError("Invalid regex: \(pattern)")
        }
    }


    static func parseIPv4(_ s: String) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(p), n <= 255 else { return nil }
            v = v << 8 | n
        }
        return v
    }

    /// 16 bytes of an IPv6 (or IPv4-mapped) address, via inet_pton.
    static func parseIP(_ s: String) -> [UInt8]? {
        if let v4 = parseIPv4(s) {
            return [UInt8(v4 >> 24), UInt8((v4 >> 16) & 0xff), UInt8((v4 >> 8) & 0xff), UInt8(v4 & 0xff)]
        }
        var addr = in6_addr()
        guard inet_pton(AF_INET6, s, &addr) == 1 else { return nil }
        return withUnsafeBytes(of: addr) { Array($0) }
    }

    /// nil when either argument is invalid; false for mismatched families.
    static func inCIDRBlock(_ cidr: String, _ ip: String) -> Bool? {
        let parts = cidr.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let network = parseIP(String(parts[0])), let bits = Int(parts[1]),
              let address = parseIP(ip.trimmingASCIIWhitespace()) else { return nil }
        guard bits >= 0, bits <= network.count * 8 else { return nil }
        guard network.count == address.count else { return false }
        var remaining = bits
        for i in 0..<network.count where remaining > 0 {
            let take = min(8, remaining)
            let mask: UInt8 = take == 8 ? 0xff : UInt8(0xff << (8 - take) & 0xff)
            if network[i] & mask != address[i] & mask { return false }
            remaining -= take
        }
        return true
    }
}

/// Base64 (RFC 4648, with padding) without Foundation.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(v >> 18)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], alphabet[Int(v & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let v = UInt32(bytes[i]) << 16
            out += [alphabet[Int(v >> 18)], alphabet[Int(v >> 12 & 63)], 61, 61]
        } else if rest == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(v >> 18)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], 61]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decode; whitespace is skipped, missing padding tolerated, anything else invalid → nil.
    public static func decode(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        var padding = 0
        for c in s.utf8 {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - 65)
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - 97 + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - 48 + 52)
            case UInt8(ascii: "+"), UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "/"), UInt8(ascii: "_"): v = 63
            case UInt8(ascii: "="): padding += 1; continue
            case 0x20, 0x0a, 0x0d, 0x09: continue
            default: return nil
            }
            if padding > 0 { return nil }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(acc >> UInt32(bits) & 0xff))
            }
        }
        if padding > 2 { return nil }
        return out
    }
}
