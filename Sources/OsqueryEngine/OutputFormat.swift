/// osqueryi's output modes.
public enum OutputMode: String, Sendable, CaseIterable {
    case pretty, json, jsonPretty = "json_pretty", line, list, csv, column
}

public struct OutputSettings: Sendable, Equatable {
    public var mode: OutputMode
    public var headers: Bool
    public var separator: String
    public var nullValue: String
    /// `.width` values for column mode (0 = automatic).
    public var widths: [Int]

    public init(mode: OutputMode = .pretty, headers: Bool = true, separator: String = "|", nullValue: String = "", widths: [Int] = []) {
        self.mode = mode
        self.headers = headers
        self.separator = separator
        self.nullValue = nullValue
        self.widths = widths
    }
}

/// Renders result sets byte-for-byte like osqueryi.
public enum ResultFormatter {
    /// Cells as the shell prints them (SQLite's text forms, NULL → nullvalue).
    static func cells(_ result: ResultSet, nullValue: String) -> [String] {
        (0..<result.cellCount).map { result.cell($0).sqliteString ?? nullValue }
    }

    /// Number of Unicode scalars (osquery's utf8StringSize).
    @inline(__always)
    static func displayWidth(_ s: String) -> Int {
        s.unicodeScalars.count
    }

    public static func render(_ result: ResultSet, _ settings: OutputSettings) -> String {
        switch settings.mode {
        case .pretty: return pretty(result, settings)
        case .json: return json(result, settings)
        case .jsonPretty: return jsonPretty(result, settings)
        case .line: return line(result, settings)
        case .list: return list(result, settings)
        case .csv: return csv(result, settings)
        case .column: return column(result, settings)
        }
    }

    /// Code points in UTF-8 bytes (osquery's utf8StringSize).
    @inline(__always)
    static func utf8Width(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var n = 0
        for b in bytes where b & 0xC0 != 0x80 { n += 1 }
        return n
    }

    public static func pretty(_ result: ResultSet, _ settings: OutputSettings) -> String {
        String(decoding: prettyBytes(result, settings), as: UTF8.self)
    }

    /// The pretty table as UTF-8 bytes, for a caller that writes them out as they are (the shell's
    /// stdout): no copy into a `String`, which for a wide result is a large allocation and copy.
    public static func prettyBytes(_ result: ResultSet, _ settings: OutputSettings) -> [UInt8] {
        let rows = result.rowCount
        guard rows > 0 else { return [] }
        let n = result.columns.count
        // Render every cell once, as UTF-8 bytes in one buffer.
        var bytes: [UInt8] = []
        var ends: [Int] = []
        ends.reserveCapacity(rows * n)
        var widths = [Int](repeating: 0, count: n)
        for (c, name) in result.columns.enumerated() { widths[c] = displayWidth(name) }
        for r in 0..<rows {
            for c in 0..<n {
                let start = bytes.count
                appendCell(result.cell(r * n + c), nullValue: settings.nullValue, to: &bytes)
                ends.append(bytes.count)
                let w = bytes.withUnsafeBufferPointer { utf8Width(UnsafeBufferPointer(rebasing: $0[start..<bytes.count])) }
                if w > widths[c] { widths[c] = w }
            }
        }
        var out: [UInt8] = []
        let lineWidth = widths.reduce(1) { $0 + $1 + 3 } + 1
        out.reserveCapacity(lineWidth * (rows + 4))
        var rule: [UInt8] = [UInt8(ascii: "+")]
        for w in widths {
            rule.append(contentsOf: repeatElement(UInt8(ascii: "-"), count: w + 2))
            rule.append(UInt8(ascii: "+"))
        }
        rule.append(10)
        out += rule
        out.append(UInt8(ascii: "|"))
        for (c, name) in result.columns.enumerated() {
            out.append(32)
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: repeatElement(32, count: widths[c] - displayWidth(name) + 1))
            out.append(UInt8(ascii: "|"))
        }
        out.append(10)
        out += rule
        bytes.withUnsafeBufferPointer { cells in
            var start = 0
            var k = 0
            for _ in 0..<rows {
                for c in 0..<n {
                    let end = ends[k]
                    let cell = UnsafeBufferPointer(rebasing: cells[start..<end])
                    out.append(UInt8(ascii: "|"))
                    out.append(32)
                    out.append(contentsOf: cell)
                    out.append(contentsOf: repeatElement(32, count: widths[c] - utf8Width(cell) + 1))
                    start = end
                    k += 1
                }
                out.append(UInt8(ascii: "|"))
                out.append(10)
            }
        }
        out += rule
        return out
    }

    /// A cell's text as the shell prints it, appended as bytes.
    @inline(__always)
    static func appendCell(_ cell: StoredCell, nullValue: String, to bytes: inout [UInt8]) {
        cell.withShellText(nullValue: nullValue) { bytes.append(contentsOf: $0) }
    }

    @inline(__always)
    static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        if value == 0 {
            bytes.append(48)
            return
        }
        var v = value.magnitude
        var tmp: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                  UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var i = 20
        withUnsafeMutableBytes(of: &tmp) { digits in
            while v > 0 {
                i -= 1
                digits[i] = UInt8(48 + v % 10)
                v /= 10
            }
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: digits[i..<20])
        }
    }

    /// Keys sorted as osquery's row maps are (byte order); a repeated column
    /// name keeps its last value.
    static func sortedKeys(_ columns: [String]) -> [(name: String, index: Int)] {
        var last: [String: Int] = [:]
        for (i, c) in columns.enumerated() { last[c] = i }
        return last.map { (name: $0.key, index: $0.value) }.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    public static func json(_ result: ResultSet, _ settings: OutputSettings) -> String {
        String(decoding: jsonBytes(result, settings), as: UTF8.self)
    }

    /// `json` as UTF-8 bytes, each cell's bytes escaped straight from the result (no `String`
    /// per cell), for a caller that writes them out as they are.
    public static func jsonBytes(_ result: ResultSet, _ settings: OutputSettings) -> [UInt8] {
        let keys = sortedKeys(result.columns).map { (name: jsonKey($0.name), index: $0.index) }
        let n = result.columns.count
        let rows = result.rowCount
        var out: [UInt8] = Array("[\n".utf8)
        out.reserveCapacity(64 * rows * max(keys.count, 1))
        for r in 0..<rows {
            out.append(32)
            out.append(32)
            out.append(UInt8(ascii: "{"))
            for (k, key) in keys.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out += key.name
                out.append(UInt8(ascii: ":"))
                result.cell(r * n + key.index).withShellText(nullValue: settings.nullValue) { appendJSONString($0, to: &out) }
            }
            out.append(UInt8(ascii: "}"))
            if r < rows - 1 {
                out.append(UInt8(ascii: ","))
                out.append(10)
            }
        }
        out.append(contentsOf: "\n]\n".utf8)
        return out
    }

    public static func jsonPretty(_ result: ResultSet, _ settings: OutputSettings) -> String {
        guard result.rowCount > 0 else { return "[]\n" }
        let keys = sortedKeys(result.columns).map { (name: jsonKey($0.name), index: $0.index) }
        let n = result.columns.count
        let rows = result.rowCount
        var out: [UInt8] = Array("[\n".utf8)
        for r in 0..<rows {
            if keys.isEmpty {
                out.append(contentsOf: "  {}".utf8)
            } else {
                out.append(contentsOf: "  {\n".utf8)
                for (k, key) in keys.enumerated() {
                    out.append(contentsOf: "    ".utf8)
                    out += key.name
                    out.append(contentsOf: ": ".utf8)
                    result.cell(r * n + key.index).withShellText(nullValue: settings.nullValue) { appendJSONString($0, to: &out) }
                    if k < keys.count - 1 { out.append(UInt8(ascii: ",")) }
                    out.append(10)
                }
                out.append(contentsOf: "  }".utf8)
            }
            if r < rows - 1 { out.append(UInt8(ascii: ",")) }
            out.append(10)
        }
        out.append(contentsOf: "]\n".utf8)
        return String(decoding: out, as: UTF8.self)
    }

    /// A key as a JSON string, quoted and escaped once per result.
    static func jsonKey(_ name: String) -> [UInt8] {
        var text = ""
        JSON.appendString(name, to: &text)
        return Array(text.utf8)
    }

    /// `bytes` (UTF-8) as a JSON string, escaped as `JSON.appendString` escapes.
    @inline(__always)
    static func appendJSONString(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var plain = true
        for b in bytes where b < 0x20 || b == 0x22 || b == 0x5c {
            plain = false
            break
        }
        if plain {
            out.append(contentsOf: bytes)
        } else {
            let hex: StaticString = "0123456789ABCDEF"
            for b in bytes {
                switch b {
                case 0x22: out += [0x5c, 0x22]
                case 0x5c: out += [0x5c, 0x5c]
                case 0x08: out += [0x5c, UInt8(ascii: "b")]
                case 0x0c: out += [0x5c, UInt8(ascii: "f")]
                case 0x0a: out += [0x5c, UInt8(ascii: "n")]
                case 0x0d: out += [0x5c, UInt8(ascii: "r")]
                case 0x09: out += [0x5c, UInt8(ascii: "t")]
                case 0..<0x20:
                    let h = hex.utf8Start
                    out += [0x5c, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), h[Int(b >> 4)], h[Int(b & 0xf)]]
                default: out.append(b)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    public static func line(_ result: ResultSet, _ settings: OutputSettings) -> String {
        let n = result.columns.count
        var w = 5
        for c in result.columns where c.utf8.count > w { w = c.utf8.count }
        var out = ""
        for r in 0..<result.rowCount {
            if r > 0 { out += "\n" }
            for c in 0..<n {
                let name = result.columns[c]
                out += String(repeating: " ", count: max(0, w - name.utf8.count)) + name + " = "
                out += (result.cell(r * n + c).sqliteString ?? settings.nullValue) + "\n"
            }
        }
        return out
    }

    public static func list(_ result: ResultSet, _ settings: OutputSettings) -> String {
        guard result.rowCount > 0 else { return "" }
        let n = result.columns.count
        var out = ""
        if settings.headers {
            out += result.columns.joined(separator: settings.separator) + "\n"
        }
        for r in 0..<result.rowCount {
            for c in 0..<n {
                out += result.cell(r * n + c).sqliteString ?? settings.nullValue
                out += c < n - 1 ? settings.separator : "\n"
            }
        }
        return out
    }

    /// SQLite shell's needCsvQuote: control bytes, space, `"`, `'`, DEL and non-ASCII.
    static func needsCSVQuote(_ b: UInt8) -> Bool {
        b < 0x21 || b == 0x22 || b == 0x27 || b >= 0x7f
    }

    static func csvField(_ value: String?, _ settings: OutputSettings, into out: inout String) {
        guard let z = value else {
            out += settings.nullValue
            return
        }
        let sep = Array(settings.separator.utf8)
        let bytes = Array(z.utf8)
        var quote = bytes.isEmpty
        if !quote {
            for (i, b) in bytes.enumerated() {
                if needsCSVQuote(b) { quote = true; break }
                if let s0 = sep.first, b == s0 {
                    // SQLite compares the separator against the start of the value.
                    if sep.count == 1 || bytes.starts(with: sep) { quote = true; break }
                }
                _ = i
            }
        }
        if quote {
            out += "\""
            for ch in z.unicodeScalars {
                if ch == "\"" { out += "\"" }
                out.unicodeScalars.append(ch)
            }
            out += "\""
        } else {
            out += z
        }
    }

    public static func csv(_ result: ResultSet, _ settings: OutputSettings) -> String {
        guard result.rowCount > 0 else { return "" }
        let n = result.columns.count
        var out = ""
        if settings.headers {
            for (c, name) in result.columns.enumerated() {
                csvField(name, settings, into: &out)
                if c < n - 1 { out += settings.separator }
            }
            out += "\n"
        }
        for r in 0..<result.rowCount {
            for c in 0..<n {
                csvField(result.cell(r * n + c).sqliteString, settings, into: &out)
                if c < n - 1 { out += settings.separator }
            }
            out += "\n"
        }
        return out
    }

    /// `%-*.*s` by characters rather than bytes: pad or truncate to w
    /// Unicode scalars (SQLite's legacy shell counts bytes and can cut a
    /// multi-byte character in half).
    static func fixed(_ s: String, _ w: Int, rightAlign: Bool) -> String {
        let count = s.unicodeScalars.count
        var text = s
        if count > w {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: s.unicodeScalars.prefix(w))
            text = String(view)
        }
        let pad = String(repeating: " ", count: max(0, w - min(count, w)))
        return rightAlign ? pad + text : text + pad
    }

    public static func column(_ result: ResultSet, _ settings: OutputSettings) -> String {
        guard result.rowCount > 0 else { return "" }
        let n = result.columns.count
        var widths: [Int] = []
        var out = ""
        for c in 0..<n {
            var w = c < settings.widths.count ? settings.widths[c] : 0
            if w == 0 {
                w = max(10, displayWidth(result.columns[c]))
                let first = result.cell(c).sqliteString ?? settings.nullValue
                w = max(w, displayWidth(first))
            }
            widths.append(w)
            if settings.headers {
                out += fixed(result.columns[c], abs(w), rightAlign: w < 0) + (c == n - 1 ? "\n" : "  ")
            }
        }
        if settings.headers {
            for c in 0..<n {
                out += String(repeating: "-", count: abs(widths[c])) + (c == n - 1 ? "\n" : "  ")
            }
        }
        for r in 0..<result.rowCount {
            for c in 0..<n {
                let v = result.cell(r * n + c).sqliteString ?? settings.nullValue
                out += fixed(v, abs(widths[c]), rightAlign: widths[c] < 0) + (c == n - 1 ? "\n" : "  ")
            }
        }
        return out
    }
}
