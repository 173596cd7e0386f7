import Crypto
import Foundation
public import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A query pack: the top-level `schedule` (pack "main") or an entry of `packs`.
public struct Pack: Sendable, Equatable {
    public var name: String
    /// The config source it came from.
    public var source: String
    /// Pack-level restrictions ("" when absent).
    public var platform: String
    public var version: String
    /// 0 when absent.
    public var shard: UInt64
    /// All must return at least one row for the pack to run.
    public var discovery: [String]
    /// Valid queries in the pack's order: (startup_priority, name). Query-level
    /// platform/version/shard are kept on each query and applied by
    /// `DaemonConfig.scheduledQueries`; a name may repeat when the copies have
    /// different restrictions (the first that applies wins, as in osquery).
    public var queries: [ScheduledQuery]
    /// File monitoring a pack may carry (osquery applies a pack's config keys
    /// when the pack runs on the host): category → patterns, as at the top level.
    public var filePaths: [String: [String]] = [:]
    public var filePathsQuery: [String: [String]] = [:]
    public var excludePaths: [String: [String]] = [:]
    public var fileAccesses: [String] = []

    public init(
        name: String, source: String, platform: String = "", version: String = "", shard: UInt64 = 0,
        discovery: [String] = [], queries: [ScheduledQuery] = []
    ) {
        self.name = name
        self.source = source
        self.platform = platform
        self.version = version
        self.shard = shard
        self.discovery = discovery
        self.queries = queries
    }

    /// osquery's name for a query of pack `pack`: plain for "main",
    /// `pack<delim><pack><delim><query>` otherwise.
    public static func queryName(pack: String, query: String, delimiter: String) -> String {
        pack == "main" ? query : "pack" + delimiter + pack + delimiter + query
    }
}

/// What the pack and query filters need to know about this host.
public struct HostFacts: Sendable, Equatable {
    public var hostname: String
    /// Compared with `version` restrictions (osquery compares its SDK version).
    public var osqueryVersion: String
    /// `(first byte of SHA1(hostname)) * 100 / 255`, osquery's machine shard.
    public var shard: UInt64

    public init(hostname: String, osqueryVersion: String = OsqueryVersion.sdkVersion) {
        self.hostname = hostname
        self.osqueryVersion = osqueryVersion
        self.shard = HostFacts.shard(of: hostname)
    }

    /// This machine: its hostname (as gethostname(2) gives it) and our version.
    public static func current() -> HostFacts {
        var buffer = [CChar](repeating: 0, count: 256)
        let name = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        return HostFacts(hostname: name)
    }

    public static func shard(of hostname: String) -> UInt64 {
        let digest = Insecure.SHA1.hash(data: Array(hostname.utf8))
        let first = digest.withUnsafeBytes { $0.first ?? 0 }
        return UInt64(first) * 100 / 255
    }
}

/// osquery's pack and query restrictions on Linux.
public enum PackFilters {
    /// Substring rules: empty/"null"/any/all match everything; linux, ubuntu,
    /// centos and posix match Linux.
    public static func platformMatches(_ platform: String) -> Bool {
        if platform.isEmpty || platform == "null" { return true }
        for word in ["any", "all", "linux", "ubuntu", "centos", "posix"] where platform.contains(word) { return true }
        return false
    }

    /// osquery's `versionAtLeast(required, ours)`: dot-separated chunks
    /// compared numerically (as text when either is not a number); a
    /// requirement with fewer chunks is met once its chunks are; "0.0.0" passes.
    public static func versionAtLeast(_ required: String, _ ours: String) -> Bool {
        if required.isEmpty || required == "null" { return true }
        if required == "0.0.0" || ours == "0.0.0" { return true }
        let need = required.split(separator: ".", omittingEmptySubsequences: true)
        let have = ours.split(separator: ".", omittingEmptySubsequences: true)
        for (index, chunk) in have.enumerated() {
            guard index < need.count else { return true }
            if let a = leadingInt(chunk), let b = leadingInt(need[index]) {
                if a < b { return false }
                if a > b { return true }
            } else if chunk.lexicographicallyPrecedes(need[index]) {
                return false
            }
        }
        return true
    }

    /// `std::stoi`: optional blanks, a sign, digits; the rest ignored.
    static func leadingInt(_ s: Substring) -> Int? {
        var t = s.drop { $0 == " " || $0 == "\t" }
        var sign = 1
        if let f = t.first, f == "-" || f == "+" {
            sign = f == "-" ? -1 : 1
            t = t.dropFirst()
        }
        let digits = t.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let v = Int(digits) else { return nil }
        return sign * v
    }

    /// A shard restriction of 0 means none; otherwise the host's shard must not exceed it.
    public static func shardMatches(_ shard: UInt64, host: HostFacts) -> Bool {
        shard == 0 || shard >= host.shard
    }
}

/// Runs packs' discovery queries and caches each pack's answer for
/// `--pack_refresh_interval` seconds, as osquery does.
public final class PackDiscovery: Sendable {
    /// Discovery counters of one pack (osquery_packs' discovery columns).
    public struct Stats: Sendable, Equatable {
        public var total: UInt64 = 0
        public var hits: UInt64 = 0
        public var executions: UInt64 = 0
        /// The last answer.
        public var active: Bool = false
    }

    struct Entry {
        var checkedAt: UInt64
        var result: Bool
        var queries: [String]
        var stats: Stats
    }

    let run: @Sendable (String) -> Bool
    let clock: @Sendable () -> UInt64
    let refreshInterval: @Sendable () -> UInt64
    let cache = Mutex<[String: Entry]>([:])

    /// - Parameters:
    ///   - refreshInterval: seconds an answer is reused (read at each check, so
    ///     a config `options` change of `pack_refresh_interval` applies).
    ///   - clock: unix seconds now (injectable for tests).
    ///   - run: runs one discovery query; true when it returned at least one
    ///     row (a failing query is false: the caller logs why).
    public init(
        refreshInterval: @escaping @Sendable () -> UInt64,
        clock: @escaping @Sendable () -> UInt64 = PackDiscovery.unixNow,
        run: @escaping @Sendable (String) -> Bool
    ) {
        self.refreshInterval = refreshInterval
        self.clock = clock
        self.run = run
    }

    @usableFromInline
    @Sendable static func unixNow() -> UInt64 { UInt64(Date().timeIntervalSince1970) }

    /// Whether the pack may run: all its discovery queries return rows (AND,
    /// stopping at the first that does not); the answer is cached per pack
    /// (name and source) and recomputed when stale or when the queries changed.
    /// The queries run outside the lock, on the caller's thread.
    public func allows(_ pack: Pack) -> Bool {
        let key = pack.source + "\u{0}" + pack.name
        let now = clock()
        let interval = refreshInterval()
        let cached: Bool? = cache.withLock { c in
            guard var e = c[key], e.queries == pack.discovery, e.checkedAt != 0, now &- e.checkedAt < interval else {
                return nil
            }
            e.stats.total += 1
            e.stats.hits += 1
            c[key] = e
            return e.result
        }
        if let cached { return cached }
        var result = true
        for query in pack.discovery where !run(query) {
            result = false
            break
        }
        cache.withLock { c in
            var stats = c[key]?.stats ?? Stats()
            stats.total += 1
            stats.executions += 1
            stats.active = result
            c[key] = Entry(checkedAt: max(now, 1), result: result, queries: pack.discovery, stats: stats)
        }
        return result
    }

    /// Counters for a pack, when it was checked at least once.
    public func stats(pack: String, source: String) -> Stats? {
        cache.withLock { $0[source + "\u{0}" + pack]?.stats }
    }

    /// Forgets every cached answer (a config reload with changed packs).
    public func reset() {
        cache.withLock { $0.removeAll() }
    }
}

/// Builds packs from config JSON with osquery's rules, collecting warnings
/// that name the source, line and key.
struct PackParser {
    let source: String
    let delimiter: String
    let defaultInterval: UInt64
    var warnings: [String] = []

    static let maxInterval: UInt64 = 604_800
    static let reservedPrefixes = ["query.", "cache.", "config_views."]
    static let reservedSuffixes = ["epoch", "counter"]

    init(source: String, delimiter: String, defaultInterval: UInt64) {
        self.source = source
        self.delimiter = delimiter
        self.defaultInterval = defaultInterval
    }

    mutating func warn(_ value: ConfigValue, _ message: String) {
        warnings.append("config \(source) line \(value.line): \(message)")
    }

    /// A pack from its object; `name` "main" for the top-level schedule, whose
    /// object is `{"queries": schedule}`.
    mutating func pack(name: String, object: ConfigValue) -> Pack {
        var pack = Pack(name: name, source: source)
        if let shard = object["shard"] {
            if let v = shard.unsignedValue { pack.shard = v } else { warn(shard, "pack \"\(name)\": \"shard\" must be a number; ignored") }
        }
        if let platform = object["platform"] {
            if let s = platform.string { pack.platform = s } else if !platform.isNull { warn(platform, "pack \"\(name)\": \"platform\" must be a string; ignored") }
        }
        if let version = object["version"] {
            if let s = version.string { pack.version = s } else if !version.isNull { warn(version, "pack \"\(name)\": \"version\" must be a string; ignored") }
        }
        if let discovery = object["discovery"] {
            if let items = discovery.elements {
                for item in items {
                    if let s = item.string { pack.discovery.append(s) } else { warn(item, "pack \"\(name)\": discovery queries must be strings; one ignored") }
                }
            } else {
                warn(discovery, "pack \"\(name)\": \"discovery\" must be an array of queries; ignored")
            }
        }
        var found: [(ConfigValue, String)] = []
        pack.filePaths = SourceParser.categories(object["file_paths"], key: "file_paths", skipEmpty: true) { found.append(($0, $1)) }
        pack.filePathsQuery = SourceParser.categories(object["file_paths_query"], key: "file_paths_query", skipEmpty: false) {
            found.append(($0, $1))
        }
        pack.excludePaths = SourceParser.categories(object["exclude_paths"], key: "exclude_paths", skipEmpty: false) {
            found.append(($0, $1))
        }
        if let accesses = object["file_accesses"]?.elements { pack.fileAccesses = accesses.compactMap(\.string) }
        for (value, message) in found { warn(value, "pack \"\(name)\": \(message)") }
        guard let queries = object["queries"] else { return pack }
        guard let members = queries.members else {
            warn(queries, "pack \"\(name)\": \"queries\" must be an object; the pack has no queries")
            return pack
        }
        for member in members {
            if let q = query(pack: name, name: member.key, value: member.value) { pack.queries.append(q) }
        }
        // osquery runs a pack's queries ordered by startup priority, then name;
        // stable, so repeated names keep their config order.
        pack.queries = pack.queries.enumerated().sorted { a, b in
            let pa = a.element.startupPriority ?? 0, pb = b.element.startupPriority ?? 0
            if pa != pb { return pa < pb }
            if a.element.queryName != b.element.queryName { return a.element.queryName < b.element.queryName }
            return a.offset < b.offset
        }.map(\.element)
        return pack
    }

    mutating func query(pack: String, name: String, value: ConfigValue) -> ScheduledQuery? {
        let label = pack == "main" ? "schedule \"\(name)\"" : "pack \"\(pack)\" query \"\(name)\""
        guard value.members != nil else {
            warn(value, "\(label) must be an object; skipped")
            return nil
        }
        if let prefix = PackParser.reservedPrefixes.first(where: { name.hasPrefix($0) }) {
            warn(value, "Invalid query name: \(name) starts with one of the reserved prefixes: \(PackParser.reservedPrefixes.joined(separator: ", ")) (\(prefix)); skipped")
            return nil
        }
        if let suffix = PackParser.reservedSuffixes.first(where: { name.hasSuffix($0) }) {
            warn(value, "Invalid query name: \(name) ends with one of the reserved suffixes: \(PackParser.reservedSuffixes.joined(separator: ", ")) (\(suffix)); skipped")
            return nil
        }
        guard let sqlValue = value["query"], let sql = sqlValue.string else {
            warn(value["query"] ?? value, "\(label): \"query\" must be a string; skipped")
            return nil
        }
        var interval = defaultInterval
        if let i = value["interval"] {
            guard let v = i.unsignedValue else {
                warn(i, "\(label): \"interval\" must be a number of seconds (1...\(PackParser.maxInterval)), not \(i.kindText); skipped")
                return nil
            }
            interval = v
        }
        if interval == 0 || interval > PackParser.maxInterval || sql.isEmpty {
            let what = sql.isEmpty ? "\"query\" is empty" : "\"interval\" \(interval) is outside 1...\(PackParser.maxInterval)"
            warn(value["interval"] ?? value, "Query has invalid interval: \(name): \(interval) (\(label): \(what)); skipped")
            return nil
        }
        var q = ScheduledQuery(
            name: Pack.queryName(pack: pack, query: name, delimiter: delimiter), pack: pack, queryName: name, sql: sql,
            interval: interval)
        if let v = value["snapshot"] { q.snapshot = v.boolValue }
        if let v = value["removed"] { q.removed = v.boolValue }
        if let v = value["denylist"] { q.denylist = v.boolValue }
        if let v = value["startup_priority"] {
            if let p = v.unsignedValue { q.startupPriority = p } else { warn(v, "\(label): \"startup_priority\" must be a number; ignored") }
        }
        if let v = value["shard"] {
            if let s = v.unsignedValue { q.shard = s } else { warn(v, "\(label): \"shard\" must be a number; ignored") }
        }
        if let v = value["platform"], let s = v.string { q.platform = s }
        if let v = value["version"], let s = v.string { q.version = s }
        if let v = value["description"], let s = v.string { q.description = s }
        if let v = value["value"], let s = v.string { q.value = s }
        return q
    }
}

extension ConfigValue {
    /// The value as a message shows it: strings quoted, containers by type.
    var kindText: String {
        switch kind {
        case .string(let s): return "\"\(s)\""
        case .array, .object, .null: return typeName
        default: return jsonText
        }
    }
}
