public import OsqueryEngine

/// osquery's escaping of scheduled-query result strings, applied before
/// diffing and logging: control bytes (< 0x20) and bytes that are not part of
/// a valid UTF-8 sequence become `\xHH` (upper-case hex); printable ASCII and
/// valid multi-byte UTF-8 pass through.
public enum ResultEscaping {
    public static func escape(_ value: SQLValue) -> String {
        switch value {
        case .null: return ""
        case .integer(let v): return String(v)
        case .double(let d): return SQLValue.osqueryDouble(d)
        case .text(let s):
            // Fast path: nothing to escape in most values.
            if !s.utf8.contains(where: { $0 < 0x20 }) { return s }
            return escape(bytes: Array(s.utf8))
        case .blob(let b): return escape(bytes: b)
        }
    }

    public static func escape(bytes: [UInt8]) -> String {
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 8)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b >= 0x20 && b < 0x80 {
                out.append(b)
                i += 1
                continue
            }
            if b >= 0x80, let n = validSequenceLength(bytes, at: i) {
                out.append(contentsOf: bytes[i..<(i + n)])
                i += n
                continue
            }
            out.append(UInt8(ascii: "\\"))
            out.append(UInt8(ascii: "x"))
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0x0F)])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Length of the valid UTF-8 sequence starting at `i` (RFC 3629: no
    /// overlongs, no surrogates, nothing above U+10FFFF), or nil.
    static func validSequenceLength(_ bytes: [UInt8], at i: Int) -> Int? {
        let lead = bytes[i]
        let n: Int
        switch lead {
        case 0xC2...0xDF: n = 2
        case 0xE0...0xEF: n = 3
        case 0xF0...0xF4: n = 4
        default: return nil
        }
        guard i + n <= bytes.count else { return nil }
        for j in 1..<n where bytes[i + j] & 0xC0 != 0x80 { return nil }
        let second = bytes[i + 1]
        if lead == 0xE0 && second < 0xA0 { return nil }
        if lead == 0xED && second >= 0xA0 { return nil }
        if lead == 0xF0 && second < 0x90 { return nil }
        if lead == 0xF4 && second >= 0x90 { return nil }
        return n
    }

    /// A result set as scheduled-query rows plus its numeric columns.
    public static func results(_ set: ResultSet) -> QueryResults {
        var numeric: Set<String> = []
        for (i, name) in set.columns.enumerated() {
            if let declared = i < set.declaredTypes.count ? set.declaredTypes[i] : nil,
                ColumnType(name: declared).isNumeric
            {
                numeric.insert(name)
            }
        }
        var rows: [ResultRow] = []
        rows.reserveCapacity(set.rowCount)
        for r in 0..<set.rowCount {
            var row = ResultRow(minimumCapacity: set.columns.count)
            for (c, name) in set.columns.enumerated() { row[name] = escape(set[r, c]) }
            rows.append(row)
        }
        return QueryResults(rows: rows, numericColumns: numeric)
    }
}
