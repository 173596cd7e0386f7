public import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's `calendarTime`: `asctime` of the UTC time plus ` UTC`.
public enum CalendarTime {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `Mon Nov 30 05:37:32 2026 UTC`; a one-digit day is space-padded
    /// (`Mon Nov  3 …`) as `asctime` does.
    public static func string(unixTime: UInt64) -> String {
        var t = time_t(clamping: unixTime)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let day = tmv.tm_mday < 10 ? " \(tmv.tm_mday)" : "\(tmv.tm_mday)"
        return "\(days[Int(tmv.tm_wday) % 7]) \(months[Int(tmv.tm_mon) % 12]) \(day) "
            + "\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)) \(Int(tmv.tm_year) + 1900) UTC"
    }
}

/// The formats of result lines (core.md §2.7), byte for byte as osquery's
/// rapidjson writer produces them.
public enum ResultFormat {
    /// How lines are shaped; taken from the flags of the same names.
    public struct Options: Sendable, Equatable {
        /// `--logger_event_type`: one line per added/removed row.
        public var eventType: Bool
        /// `--logger_snapshot_event_type`: one line per snapshot row.
        public var snapshotEventType: Bool
        /// `--logger_numerics`: numeric columns as JSON numbers.
        public var numerics: Bool
        /// `--decorations_top_level`: decorations merged into the line.
        public var decorationsTopLevel: Bool

        public init(eventType: Bool = true, snapshotEventType: Bool = false, numerics: Bool = false, decorationsTopLevel: Bool = false) {
            self.eventType = eventType
            self.snapshotEventType = snapshotEventType
            self.numerics = numerics
            self.decorationsTopLevel = decorationsTopLevel
        }

        public init(flags: Flags) {
            self.init(
                eventType: flags[.loggerEventType], snapshotEventType: flags[.loggerSnapshotEventType],
                numerics: flags[.loggerNumerics], decorationsTopLevel: flags[.decorationsTopLevel])
        }
    }

    /// What every line of one run shares.
    public struct Header: Sendable {
        public var name: String
        public var context: LogContext
        public var epoch: UInt64
        public var counter: UInt64

        public init(name: String, context: LogContext, epoch: UInt64, counter: UInt64) {
            self.name = name
            self.context = context
            self.epoch = epoch
            self.counter = counter
        }
    }

    /// A differential: removed rows first, as osquery logs them.
    public static func diffLines(
        header: Header, removed: [ResultRow], added: [ResultRow], numericColumns: Set<String>, options: Options
    ) -> [String] {
        let enc = RowEncoder(numerics: options.numerics ? numericColumns : nil)
        return diffLines(
            header: header, removed: removed.map { enc.encode($0) }, added: added.map { enc.encode($0) }, options: options)
    }

    /// Lines for already-encoded `columns` objects (see `RowEncoder`).
    static func diffLines(header: Header, removed: [String], added: [String], options: Options) -> [String] {
        let legacy = legacyFields(header, options)
        if options.eventType {
            var lines: [String] = []
            lines.reserveCapacity(removed.count + added.count)
            for r in removed { lines.append(event(legacy, r, action: "removed")) }
            for a in added { lines.append(event(legacy, a, action: "added")) }
            return lines
        }
        var line = "{\"diffResults\":{\"removed\":["
        appendJoined(removed, to: &line)
        line += "],\"added\":["
        appendJoined(added, to: &line)
        line += "]},"
        line += legacy
        line += "}"
        return [line]
    }

    /// A snapshot: one line with every row, or one line per row with
    /// `--logger_snapshot_event_type`.
    public static func snapshotLines(header: Header, rows: [ResultRow], numericColumns: Set<String>, options: Options) -> [String] {
        let enc = RowEncoder(numerics: options.numerics ? numericColumns : nil)
        return snapshotLines(header: header, rows: rows.map { enc.encode($0) }, options: options)
    }

    static func snapshotLines(header: Header, rows: [String], options: Options) -> [String] {
        let legacy = legacyFields(header, options)
        if options.snapshotEventType {
            return rows.map { event(legacy, $0, action: "snapshot") }
        }
        var line = "{\"snapshot\":["
        appendJoined(rows, to: &line)
        line += "],\"action\":\"snapshot\","
        line += legacy
        line += "}"
        return [line]
    }

    private static func appendJoined(_ items: [String], to out: inout String) {
        var first = true
        for item in items {
            if !first { out += "," }
            first = false
            out += item
        }
    }

    private static func event(_ legacy: String, _ columns: String, action: String) -> String {
        var line = "{"
        line.reserveCapacity(legacy.utf8.count + columns.utf8.count + 40)
        line += legacy
        line += ",\"columns\":"
        line += columns
        line += ",\"action\":\""
        line += action
        line += "\"}"
        return line
    }

    /// `"name":…,"hostIdentifier":…,"calendarTime":…,"unixTime":N,"epoch":N,
    /// "counter":N,"numerics":B` then the decorations (nested, or merged with
    /// `--decorations_top_level`), without braces.
    static func legacyFields(_ h: Header, _ options: Options) -> String {
        var out = "\"name\":"
        JSON.appendString(h.name, to: &out)
        out += ",\"hostIdentifier\":"
        JSON.appendString(h.context.hostIdentifier, to: &out)
        out += ",\"calendarTime\":"
        JSON.appendString(h.context.calendarTime, to: &out)
        out += ",\"unixTime\":\(h.context.unixTime),\"epoch\":\(h.epoch),\"counter\":\(h.counter),\"numerics\":"
        out += options.numerics ? "true" : "false"
        let decorations = h.context.decorations
        if !decorations.isEmpty {
            let keys = decorations.keys.sorted(by: byteOrder)
            if options.decorationsTopLevel {
                for k in keys {
                    out += ","
                    JSON.appendString(k, to: &out)
                    out += ":"
                    JSON.appendString(decorations[k]!, to: &out)
                }
            } else {
                out += ",\"decorations\":{"
                var first = true
                for k in keys {
                    if !first { out += "," }
                    first = false
                    JSON.appendString(k, to: &out)
                    out += ":"
                    JSON.appendString(decorations[k]!, to: &out)
                }
                out += "}"
            }
        }
        return out
    }

    /// std::map order: bytewise on UTF-8.
    @inline(__always)
    static func byteOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// Whether `s` is a JSON number as rapidjson would write one; other values
    /// of numeric columns (empty for NULL, `inf`, hex) stay strings.
    static func isJSONNumber(_ s: String) -> Bool {
        var it = s.utf8.makeIterator()
        var c = it.next()
        if c == UInt8(ascii: "-") { c = it.next() }
        guard let first = c, first >= 0x30, first <= 0x39 else { return false }
        c = it.next()
        if first == 0x30, let d = c, d >= 0x30, d <= 0x39 { return false }
        while let d = c, d >= 0x30, d <= 0x39 { c = it.next() }
        if c == UInt8(ascii: ".") {
            c = it.next()
            guard let d = c, d >= 0x30, d <= 0x39 else { return false }
            while let d = c, d >= 0x30, d <= 0x39 { c = it.next() }
        }
        if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            c = it.next()
            if c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { c = it.next() }
            guard let d = c, d >= 0x30, d <= 0x39 else { return false }
            while let d = c, d >= 0x30, d <= 0x39 { c = it.next() }
        }
        return c == nil
    }
}

/// Encodes rows as osquery's `columns` objects: keys in byte order, values as
/// JSON strings (numeric columns as numbers when `numerics` is given). With
/// `numerics` nil the text is also the row's canonical form for diffing and
/// storage: equal rows give equal text.
struct RowEncoder {
    let numerics: Set<String>?
    /// The sorted key order of the last row's key set, reused while rows keep
    /// the same columns (no per-row sort).
    private let cache = KeyOrderCache()

    init(numerics: Set<String>?) {
        self.numerics = numerics
    }

    func encode(_ row: ResultRow) -> String {
        // Optimistic: the cached order fits rows with the same columns; a row
        // with other columns is encoded again with its own order.
        if let text = encode(row, keys: cache.keys(count: row.count)) { return text }
        return encode(row, keys: cache.resort(row))!
    }

    private func encode(_ row: ResultRow, keys: [String]) -> String? {
        guard keys.count == row.count else { return nil }
        var out = "{"
        var first = true
        for k in keys {
            guard let v = row[k] else { return nil }
            if !first { out += "," }
            first = false
            JSON.appendString(k, to: &out)
            out += ":"
            if let numerics, numerics.contains(k), ResultFormat.isJSONNumber(v) {
                out += v
            } else {
                JSON.appendString(v, to: &out)
            }
        }
        out += "}"
        return out
    }

    /// Re-encodes a canonical (all-string) row with numeric columns as numbers.
    func reencode(canonical: String) -> String {
        guard let numerics, !numerics.isEmpty, let pairs = CanonicalRow.parse(canonical) else { return canonical }
        var out = "{"
        var first = true
        for (k, v) in pairs {
            if !first { out += "," }
            first = false
            JSON.appendString(k, to: &out)
            out += ":"
            if numerics.contains(k), ResultFormat.isJSONNumber(v) { out += v } else { JSON.appendString(v, to: &out) }
        }
        out += "}"
        return out
    }
}

/// Holds the sorted keys of the most recent key set.
final class KeyOrderCache {
    private var keys: [String] = []

    /// The cached order when it has `count` keys (empty otherwise).
    func keys(count: Int) -> [String] { keys.count == count ? keys : [] }

    /// Sorts and caches the keys of `row`.
    func resort(_ row: ResultRow) -> [String] {
        keys = row.keys.sorted(by: ResultFormat.byteOrder)
        return keys
    }
}

/// Reading back the canonical `{"k":"v",…}` text that `RowEncoder` writes.
enum CanonicalRow {
    /// Splits a stored `[{…},{…}]` array into the rows' texts; nil when the
    /// text is not such an array. Scans the bytes once (result sets can be
    /// large).
    static func split(array text: String) -> [Substring]? {
        var text = text
        let ranges: [(Int, Int)]? = text.withUTF8 { u in
            guard u.count >= 2, u[0] == UInt8(ascii: "["), u[u.count - 1] == UInt8(ascii: "]") else { return nil }
            var ranges: [(Int, Int)] = []
            var depth = 0
            var inString = false
            var escape = false
            var start = 0
            var i = 1
            let end = u.count - 1
            while i < end {
                let b = u[i]
                if inString {
                    if escape {
                        escape = false
                    } else if b == UInt8(ascii: "\\") {
                        escape = true
                    } else if b == UInt8(ascii: "\"") {
                        inString = false
                    }
                } else {
                    switch b {
                    case UInt8(ascii: "\""): inString = true
                    case UInt8(ascii: "{"):
                        if depth == 0 { start = i }
                        depth += 1
                    case UInt8(ascii: "}"):
                        depth -= 1
                        if depth < 0 { return nil }
                        if depth == 0 { ranges.append((start, i + 1)) }
                    case UInt8(ascii: ","), UInt8(ascii: " "):
                        break
                    default:
                        if depth == 0 { return nil }
                    }
                }
                i += 1
            }
            return depth == 0 && !inString ? ranges : nil
        }
        guard let ranges else { return nil }
        // Native strings index UTF-8 offsets in O(1).
        let utf8 = text.utf8
        let base = utf8.startIndex
        return ranges.map { r in Substring(utf8[utf8.index(base, offsetBy: r.0)..<utf8.index(base, offsetBy: r.1)]) }
    }

    /// The (key, value) pairs of a flat object of strings, in text order.
    static func parse<S: StringProtocol>(_ text: S) -> [(String, String)]? {
        var reader = JSONReader(bytes: Array(text.utf8), maxDepth: 1)
        return reader.flatStringObject()
    }

    /// A parsed canonical row as a `ResultRow`.
    static func row<S: StringProtocol>(_ text: S) -> ResultRow? {
        guard let pairs = parse(text) else { return nil }
        var row = ResultRow(minimumCapacity: pairs.count)
        for (k, v) in pairs { row[k] = v }
        return row
    }
}
