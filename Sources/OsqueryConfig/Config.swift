import Crypto
import Foundation
public import OsqueryEngine
import OsqueryTables
import Synchronization

/// Decorator queries by when they run (core.md §2.3).
public struct Decorators: Sendable, Equatable {
    /// Run when the config is (re)loaded.
    public var load: [String]
    /// Run before every scheduled query.
    public var always: [String]
    /// Run when the scheduler's time is a multiple of the key (seconds, a multiple of 60).
    public var interval: [UInt64: [String]]

    public init(load: [String] = [], always: [String] = [], interval: [UInt64: [String]] = [:]) {
        self.load = load
        self.always = always
        self.interval = interval
    }

    public var isEmpty: Bool { load.isEmpty && always.isEmpty && interval.isEmpty }
}

/// One entry of a config's `options`, as written.
public struct ConfigOption: Sendable, Equatable {
    public var name: String
    public var value: ConfigOptionValue
    public var line: Int

    public init(name: String, value: ConfigOptionValue, line: Int = 0) {
        self.name = name
        self.value = value
        self.line = line
    }

    /// The flag text osquery gives it (nil for null).
    public var text: String? { ConfigOptions.text(of: value) }
}

/// What one config source contributed.
public struct SourceConfig: Sendable, Equatable {
    public var name: String
    /// SHA1 (hex) of the raw text: an unchanged source is skipped on refresh.
    public var hash: String
    public var options: [ConfigOption] = []
    public var packs: [Pack] = []
    public var decorators = Decorators()
    public var views: [(name: String, sql: String)] = []
    public var filePaths: [String: [String]] = [:]
    public var filePathsQuery: [String: [String]] = [:]
    public var excludePaths: [String: [String]] = [:]
    public var fileAccesses: [String] = []
    /// `events` (e.g. `disable_subscribers`), when the source has it.
    public var events: [String: [String]]?
    /// `yara.signatures` and `yara.file_paths` (issue 19).
    package var yaraSignatures: [String: [String]] = [:]
    package var yaraFilePaths: [String: [String]] = [:]
    /// `auto_table_construction`, in the source's order.
    package var autoTables: [AutoTableDefinition] = []
    /// `prometheus_targets` (the prometheus_metrics table's), when the source has it.
    package var prometheusTargets: JSONValue?
    /// Problems osquery skips over, each naming the source, line and key.
    public var warnings: [String] = []

    public init(name: String, hash: String) {
        self.name = name
        self.hash = hash
    }

    public static func == (a: SourceConfig, b: SourceConfig) -> Bool {
        a.name == b.name && a.hash == b.hash && a.options == b.options && a.packs == b.packs
            && a.decorators == b.decorators && a.views.map(\.name) == b.views.map(\.name)
            && a.views.map(\.sql) == b.views.map(\.sql) && a.filePaths == b.filePaths
            && a.filePathsQuery == b.filePathsQuery && a.excludePaths == b.excludePaths
            && a.fileAccesses == b.fileAccesses && a.events == b.events && a.autoTables == b.autoTables
            && a.prometheusTargets == b.prometheusTargets && a.warnings == b.warnings
            && a.yaraSignatures == b.yaraSignatures && a.yaraFilePaths == b.yaraFilePaths
    }
}

/// The config of all sources, merged in source order (osquery's order: by
/// source name), with what each source contributed.
public struct DaemonConfig: Sendable {
    /// Source name → raw text, as the config plugin returned it.
    public let sources: [String: String]
    /// Source name → SHA1 (hex) of its text.
    public let hashes: [String: String]
    /// Source name → its parsed contribution.
    public let bySource: [String: SourceConfig]
    /// Source names in merge order.
    public let sourceOrder: [String]

    /// Option name → flag text; a later source wins.
    public let options: [String: String]
    /// Every pack of every source, in source order; the top-level `schedule`
    /// is a pack named "main" (one per source that has one).
    public let packs: [Pack]
    /// Decorator queries of all sources (in source order).
    public let decorators: Decorators
    /// View name → SQL; a later source wins.
    public let views: [String: String]
    /// FIM category → patterns (`%`/`%%` wildcards as written), all sources'
    /// top levels; packs carry their own (`Pack.filePaths`, for active packs only).
    public let filePaths: [String: [String]]
    public let filePathsQuery: [String: [String]]
    public let excludePaths: [String: [String]]
    /// Categories with access monitoring, sorted and unique (as osquery).
    public let fileAccesses: [String]
    /// `events` of the last source that has it.
    public let events: [String: [String]]
    /// `yara.signatures` / `yara.file_paths` of all sources, a later source's group replacing
    /// an earlier one's.
    package let yaraSignatures: [String: [String]]
    package let yaraFilePaths: [String: [String]]
    /// ATC tables of every source, by name; a later source's definition wins.
    package let autoTables: [AutoTableDefinition]
    /// `prometheus_targets` of the last source that has it.
    package let prometheusTargets: JSONValue?
    /// Every source's warnings, in source order.
    public let warnings: [String]

    /// Merges per-source contributions; `delimiter` names pack queries.
    public init(sources: [String: String], bySource: [String: SourceConfig], delimiter: String) {
        self.sources = sources
        self.bySource = bySource
        let order = bySource.keys.sorted()
        sourceOrder = order
        hashes = bySource.mapValues(\.hash)
        var options: [String: String] = [:]
        var packs: [Pack] = []
        var decorators = Decorators()
        var views: [String: String] = [:]
        var filePaths: [String: [String]] = [:]
        var filePathsQuery: [String: [String]] = [:]
        var excludePaths: [String: [String]] = [:]
        var accesses = Set<String>()
        var events: [String: [String]] = [:]
        var autoTables: [AutoTableDefinition] = []
        var autoTableIndex: [String: Int] = [:]
        var prometheusTargets: JSONValue?
        var warnings: [String] = []
        var yaraSignatures: [String: [String]] = [:]
        var yaraFilePaths: [String: [String]] = [:]
        for name in order {
            guard let s = bySource[name] else { continue }
            for o in s.options { if let t = o.text, !t.isEmpty { options[o.name] = t } }
            for var pack in s.packs {
                // Names follow the delimiter in force now (osquery names at use time).
                for i in pack.queries.indices {
                    pack.queries[i].name = Pack.queryName(pack: pack.name, query: pack.queries[i].queryName, delimiter: delimiter)
                }
                packs.append(pack)
            }
            decorators.load += s.decorators.load
            decorators.always += s.decorators.always
            for (k, v) in s.decorators.interval { decorators.interval[k, default: []] += v }
            for v in s.views { views[v.name] = v.sql }
            for (k, v) in s.filePaths { filePaths[k, default: []] += v }
            for (k, v) in s.filePathsQuery { filePathsQuery[k, default: []] += v }
            for (k, v) in s.excludePaths { excludePaths[k] = v }
            accesses.formUnion(s.fileAccesses)
            if let e = s.events { events = e }
            for table in s.autoTables {
                if let i = autoTableIndex[table.name] {
                    autoTables[i] = table
                } else {
                    autoTableIndex[table.name] = autoTables.count
                    autoTables.append(table)
                }
            }
            if let p = s.prometheusTargets { prometheusTargets = p }
            warnings += s.warnings
            yaraSignatures.merge(s.yaraSignatures) { $1 }
            yaraFilePaths.merge(s.yaraFilePaths) { $1 }
        }
        self.yaraSignatures = yaraSignatures
        self.yaraFilePaths = yaraFilePaths
        self.prometheusTargets = prometheusTargets
        self.options = options
        self.packs = packs
        self.decorators = decorators
        self.views = views
        self.filePaths = filePaths
        self.filePathsQuery = filePathsQuery
        self.excludePaths = excludePaths
        self.fileAccesses = accesses.sorted()
        self.events = events
        self.autoTables = autoTables
        self.warnings = warnings
    }

    /// The ATC tables of this host's platform (osquery's `checkPlatform`, as for packs).
    package var hostAutoTables: [AutoTableDefinition] {
        autoTables.filter { table in
            if PackFilters.platformMatches(table.platform) { return true }
            StatusLog.info("ATC table: Skipping \(table.name) because platform doesn't match")
            return false
        }
    }

    /// Registers this host's ATC tables in `registry` and removes the ones this config no
    /// longer names (osquery does it on each config update, for the shell and the daemon).
    package func registerAutoTables(registry: PluginRegistry, flags: Flags) {
        AutoTables.apply(hostAutoTables, registry: registry, flags: flags)
    }

    /// Hands the tables their config sections (prometheus_metrics' `prometheus_targets`).
    package func applyTableSections(registry: PluginRegistry) {
        registry.setConfigSection("prometheus_targets", prometheusTargets)
    }

    /// Packs that may run on this host: pack-level shard, platform and version
    /// first, then discovery (cached by `discovery`), as osquery checks them.
    public func activePacks(host: HostFacts, discovery: PackDiscovery) -> [Pack] {
        packs.filter { pack in
            PackFilters.shardMatches(pack.shard, host: host) && PackFilters.platformMatches(pack.platform)
                && PackFilters.versionAtLeast(pack.version, host.osqueryVersion) && discovery.allows(pack)
        }
    }

    /// The queries that should run on this host, in schedule order (packs in
    /// config order, each ordered by startup_priority then name): active packs
    /// only, each query's own shard/platform/version applied, the first of
    /// repeated names kept. Discovery queries run here (on the caller's thread)
    /// when their cached answer is stale.
    public func scheduledQueries(host: HostFacts, discovery: PackDiscovery) -> [ScheduledQuery] {
        var out: [ScheduledQuery] = []
        var seen = Set<String>()
        for pack in activePacks(host: host, discovery: discovery) {
            for q in pack.queries {
                if let s = q.shard, !PackFilters.shardMatches(s, host: host) { continue }
                if let p = q.platform, !PackFilters.platformMatches(p) { continue }
                if let v = q.version, !PackFilters.versionAtLeast(v, host.osqueryVersion) { continue }
                // Two sources' schedules (both pack "main") may repeat a name:
                // one name is one set of stored results, so the first wins.
                guard seen.insert(q.name).inserted else { continue }
                out.append(q)
            }
        }
        return out
    }
}

/// Turns one source's text into its contribution (osquery's `updateSource`
/// and config parsers).
struct SourceParser {
    let name: String
    let delimiter: String
    let defaultInterval: UInt64
    let genPack: (String, String) throws(DaemonError) -> String

    static func hash(_ text: String) -> String {
        Insecure.SHA1.hash(data: Array(text.utf8)).map { b in
            let h = String(b, radix: 16)
            return b < 16 ? "0" + h : h
        }.joined()
    }

    /// The parsed document (errors for syntax, size, depth, root type).
    func document(_ text: String) throws(DaemonError) -> ConfigValue {
        try ConfigJSON.parse(text, source: name)
    }

    /// The options of a parsed document, applied before packs are built so
    /// that `schedule_default_interval` and `pack_delimiter` take effect.
    static func options(_ root: ConfigValue, source: String, warnings: inout [String]) -> [ConfigOption] {
        guard let options = root["options"], !options.isNull else { return [] }
        guard let members = options.members else {
            warnings.append("config \(source) line \(options.line): \"options\" must be an object; ignored")
            return []
        }
        return members.map { m in ConfigOption(name: m.key, value: optionValue(m.value), line: m.value.line) }
    }

    static func optionValue(_ v: ConfigValue) -> ConfigOptionValue {
        switch v.kind {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .uint(let u): return .uint(u)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array, .object: return .json(v.jsonText)
        }
    }

    func parse(root: ConfigValue, text: String, options: [ConfigOption], warnings: [String]) -> SourceConfig {
        var out = SourceConfig(name: name, hash: SourceParser.hash(text))
        out.options = options
        var packs = PackParser(source: name, delimiter: delimiter, defaultInterval: defaultInterval)
        packs.warnings = warnings
        var list: [Pack?] = []
        var index: [String: Int] = [:]
        func add(_ pack: Pack) {
            // A pack of the same name from the same source replaces the earlier
            // one (and moves to the end, as osquery removes and appends it).
            if let old = index[pack.name] { list[old] = nil }
            index[pack.name] = list.count
            list.append(pack)
        }
        if let schedule = root["schedule"], !schedule.isNull {
            if schedule.members != nil {
                add(packs.pack(name: "main", object: ConfigValue(.object([.init(key: "queries", value: schedule)]), line: schedule.line)))
            } else {
                packs.warn(schedule, "\"schedule\" must be an object of queries; ignored")
            }
        }
        if let packsValue = root["packs"], !packsValue.isNull {
            if let members = packsValue.members {
                for m in members {
                    switch m.value.kind {
                    case .object:
                        add(packs.pack(name: m.key, object: m.value))
                    case .string(let target):
                        for p in resolve(name: m.key, target: target, at: m.value, parser: &packs) { add(p) }
                    default:
                        packs.warn(m.value, "pack \"\(m.key)\" must be an object or a string naming it; ignored")
                    }
                }
            } else {
                packs.warn(packsValue, "\"packs\" must be an object; ignored")
            }
        }
        out.packs = list.compactMap { $0 }
        parseSections(root, into: &out, warn: { v, m in packs.warn(v, m) })
        out.warnings = packs.warnings
        return out
    }

    /// A pack given as a string: resolved by the config plugin (osquery's
    /// `Config::genPack`); failures are warnings, as there.
    func resolve(name: String, target: String, at value: ConfigValue, parser: inout PackParser) -> [Pack] {
        let text: String
        do {
            text = try genPack(name, target)
        } catch {
            parser.warn(value, "pack \"\(name)\" (\(target)): \(error.message)")
            return []
        }
        if text.isEmpty {
            parser.warn(value, "Error reading the query pack named: \(name)")
            return []
        }
        let doc: ConfigValue
        do {
            doc = try ConfigJSON.parseAny(bytes: Array(text.utf8), source: "\(self.name) pack \(name) (\(target))")
        } catch {
            parser.warn(value, "Error parsing the \"\(name)\" pack JSON: \(error.message)")
            return []
        }
        guard let members = doc.members else {
            parser.warn(value, "Error parsing the \"\(name)\" pack JSON: not an object")
            return []
        }
        if name != "*" { return [parser.pack(name: name, object: doc)] }
        var out: [Pack] = []
        for m in members {
            guard m.value.members != nil else {
                parser.warn(value, "Error parsing pack: \(m.key): the value should be an object")
                continue
            }
            out.append(parser.pack(name: m.key, object: m.value))
        }
        return out
    }

    /// The other config parsers: decorators, views, file paths, events, ATC.
    func parseSections(_ root: ConfigValue, into out: inout SourceConfig, warn: (ConfigValue, String) -> Void) {
        for key in ["options", "decorators", "views", "file_paths", "file_paths_query", "exclude_paths", "file_accesses", "events"] {
            if let v = root[key], !v.isNull, v.members == nil, v.elements == nil {
                warn(v, "Error config \(key) should be an array or object")
            }
        }
        if let d = root["decorators"], d.members != nil {
            out.decorators = decorators(d, warn: warn)
        }
        if let views = root["views"]?.members {
            var index: [String: Int] = [:]
            for m in views {
                guard let sql = m.value.string else {
                    warn(m.value, "view \"\(m.key)\" must be a string of SQL; ignored")
                    continue
                }
                if sql.isEmpty { continue }
                // A repeated name: the last definition wins, in the first one's place.
                if let i = index[m.key] {
                    out.views[i].sql = sql
                } else {
                    index[m.key] = out.views.count
                    out.views.append((m.key, sql))
                }
            }
        }
        out.filePaths = SourceParser.categories(root["file_paths"], key: "file_paths", skipEmpty: true, warn: warn)
        out.filePathsQuery = SourceParser.categories(root["file_paths_query"], key: "file_paths_query", skipEmpty: false, warn: warn)
        out.excludePaths = SourceParser.categories(root["exclude_paths"], key: "exclude_paths", skipEmpty: false, warn: warn)
        if let accesses = root["file_accesses"]?.elements {
            out.fileAccesses = accesses.compactMap(\.string)
        }
        if let events = root["events"]?.members {
            var e: [String: [String]] = [:]
            for m in events {
                if let items = m.value.elements { e[m.key] = items.compactMap(\.string) }
            }
            out.events = e
        }
        if let tables = root["auto_table_construction"]?.members {
            out.autoTables = SourceParser.autoTables(tables, warn: warn)
        }
        if let targets = root["prometheus_targets"], targets.members != nil {
            out.prometheusTargets = Self.json(targets)
        }
        if let yara = root["yara"], yara.members != nil {
            out.yaraSignatures = SourceParser.categories(yara["signatures"], key: "yara signatures", skipEmpty: true, warn: warn)
            out.yaraFilePaths = SourceParser.categories(yara["file_paths"], key: "yara file_paths", skipEmpty: true, warn: warn)
        }
    }

    /// A config value as the vocabulary's JSON (numbers keep their text form).
    static func json(_ value: ConfigValue) -> JSONValue {
        switch value.kind {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let v): .number(String(v))
        case .uint(let v): .number(String(v))
        case .double(let d): .number(String(d))
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(json))
        case .object(let members): .object(members.map { ($0.key, json($0.value)) })
        }
    }

    /// `auto_table_construction` entries as osquery reads them: a non-object entry is skipped,
    /// a missing or non-string `query`, `path` or `platform` is empty, a non-string column is
    /// dropped with a warning. The rest is checked when the tables are registered.
    static func autoTables(_ members: [ConfigValue.Member], warn: (ConfigValue, String) -> Void) -> [AutoTableDefinition] {
        var out: [AutoTableDefinition] = []
        var index: [String: Int] = [:]
        for m in members {
            guard m.value.members != nil else { continue }
            var columns: [String]?
            if let items = m.value["columns"]?.elements {
                columns = []
                for item in items {
                    guard let column = item.string else {
                        warn(item, "ATC Table: \(m.key) is misconfigured. (non-string column)")
                        continue
                    }
                    columns?.append(column)
                }
            }
            let table = AutoTableDefinition(
                name: m.key, query: m.value["query"]?.string ?? "", path: m.value["path"]?.string ?? "",
                columns: columns, platform: m.value["platform"]?.string ?? "")
            // A repeated name: the last definition wins (a JSON object keeps one value per key).
            if let i = index[m.key] {
                out[i] = table
            } else {
                index[m.key] = out.count
                out.append(table)
            }
        }
        return out
    }

    static func categories(_ value: ConfigValue?, key: String, skipEmpty: Bool, warn: (ConfigValue, String) -> Void) -> [String: [String]] {
        guard let members = value?.members else { return [:] }
        var out: [String: [String]] = [:]
        for m in members {
            guard let items = m.value.elements else {
                warn(m.value, "\(key) category \"\(m.key)\" must be an array of strings; ignored")
                continue
            }
            for item in items {
                guard let s = item.string, !(skipEmpty && s.isEmpty) else { continue }
                out[m.key, default: []].append(s)
            }
        }
        return out
    }

    func decorators(_ d: ConfigValue, warn: (ConfigValue, String) -> Void) -> Decorators {
        var out = Decorators()
        if let load = d["load"]?.elements { out.load = load.compactMap(\.string) }
        if let always = d["always"]?.elements { out.always = always.compactMap(\.string) }
        guard let interval = d["interval"] else { return out }
        guard let members = interval.members else {
            warn(interval, "Invalid decorator interval configuration in config source: \(name)")
            return out
        }
        for m in members {
            guard let rate = UInt64(m.key), rate > 0, rate % 60 == 0 else {
                warn(m.value, "Invalid decorator interval rate \(m.key) in config source: \(name) (\"interval\" keys must be multiples of 60 seconds); ignored")
                continue
            }
            guard let items = m.value.elements else {
                warn(m.value, "Invalid decorator interval rate \(rate) configuration in config source: \(name)")
                continue
            }
            out.interval[rate, default: []] += items.compactMap(\.string)
        }
        return out
    }
}

/// Loads the config from a source and keeps the last good one (osquery's
/// `Config::load` / `refresh`). Errors name the source, line and key.
///
/// `load` and `refresh` block (file reads, extension RPCs, the config
/// plugin's `genPack`): call them from a thread of your own. Calls are
/// serialized.
public final class ConfigLoader: Sendable {
    public let source: any ConfigSource
    public let flags: Flags
    let log: @Sendable (StatusLog.Severity, String) -> Void
    let state = Mutex<DaemonConfig?>(nil)
    /// Serializes whole loads (a SIGHUP reload racing the refresh timer).
    let running = NSLock()

    /// - Parameter log: receives warnings (problems osquery skips over) and
    ///   option warnings; StatusLog by default.
    public init(
        source: any ConfigSource, flags: Flags,
        log: @escaping @Sendable (StatusLog.Severity, String) -> Void = { StatusLog.log($0, $1) }
    ) {
        self.source = source
        self.flags = flags
        self.log = log
    }

    /// Seconds until the next refresh: `--config_refresh`, or
    /// `--config_accelerated_refresh` after a failed load or refresh (osquery
    /// switches to it until a load succeeds); 0 means refresh is off.
    public func refreshDelay(lastAttemptFailed: Bool) -> UInt64 {
        let normal = flags[.configRefresh]
        guard normal > 0 else { return 0 }
        return lastAttemptFailed ? max(1, flags[.configAcceleratedRefresh]) : normal
    }

    /// The config in force: the last that loaded without error (nil before).
    public var current: DaemonConfig? { state.withLock { $0 } }

    /// Reads and parses every source, applies their options to the flags,
    /// resolves packs; the result becomes `current`. On error `current` stays.
    @discardableResult
    public func load() throws(DaemonError) -> DaemonConfig {
        running.lock()
        defer { running.unlock() }
        // Without a previous config there is always a result.
        guard let config = try buildIfChanged(previous: nil) else { throw DaemonError("config plugin \(source.name) gave nothing") }
        state.withLock { $0 = config }
        return config
    }

    /// Reads the sources again; nil when every source's content is unchanged
    /// (and none appeared or vanished). Changed sources are parsed again and
    /// replace what they contributed (their packs); unchanged ones are kept
    /// as they were. Before any successful load this is `load()`. On error
    /// `current` stays in force.
    public func refresh() throws(DaemonError) -> DaemonConfig? {
        running.lock()
        defer { running.unlock() }
        guard let config = try buildIfChanged(previous: current) else { return nil }
        state.withLock { $0 = config }
        return config
    }

    func buildIfChanged(previous: DaemonConfig?) throws(DaemonError) -> DaemonConfig? {
        let generated = try source.genConfig()
        var texts: [String: String] = [:]
        for item in generated { texts[item.name] = item.text }
        var changed: [String] = []
        var changedSet = Set<String>()
        for name in texts.keys.sorted() {
            let text = texts[name]!
            if let old = previous?.bySource[name], old.hash == SourceParser.hash(text) { continue }
            changed.append(name)
            changedSet.insert(name)
        }
        if let previous, changed.isEmpty, Set(previous.bySource.keys) == Set(texts.keys) { return nil }

        // Syntax first, for every changed source, so a bad source changes nothing.
        var documents: [(name: String, root: ConfigValue, options: [ConfigOption], warnings: [String])] = []
        for name in changed {
            let root = try ConfigJSON.parse(texts[name]!, source: name)
            var warnings: [String] = []
            let options = SourceParser.options(root, source: name, warnings: &warnings)
            documents.append((name, root, options, warnings))
        }
        // Options before packs: they may set the default interval and the delimiter.
        for doc in documents {
            ConfigOptions.apply(doc.options.map { ($0.name, $0.value) }, to: flags) { [log] message in
                log(.warning, "config \(doc.name): \(message)")
            }
        }
        var bySource: [String: SourceConfig] = [:]
        for name in texts.keys {
            if let old = previous?.bySource[name], !changedSet.contains(name) { bySource[name] = old }
        }
        let delimiter = flags[.packDelimiter]
        let source = self.source
        for doc in documents {
            let parser = SourceParser(
                name: doc.name, delimiter: delimiter, defaultInterval: flags[.scheduleDefaultInterval],
                genPack: { (name: String, value: String) throws(DaemonError) -> String in
                    try source.genPack(name: name, value: value)
                })
            let parsed = parser.parse(root: doc.root, text: texts[doc.name]!, options: doc.options, warnings: doc.warnings)
            for w in parsed.warnings { log(.warning, w) }
            bySource[doc.name] = parsed
        }
        return DaemonConfig(sources: texts, bySource: bySource, delimiter: delimiter)
    }
}

/// `--config_check` and `--config_dump`, run early by osqueryd's main.
public enum ConfigCommands {
    /// osquery's `--config_check`: loads the config; on failure writes
    /// `Error reading config: <message>` and returns 1 (the error's code);
    /// on success returns 0. Warnings (skipped queries, unknown options) go to
    /// `err` too, as osquery's status log would show them.
    public static func check(flags: Flags, source: any ConfigSource, err: (String) -> Void) -> Int32 {
        let warnings = Mutex<[String]>([])
        let loader = ConfigLoader(source: source, flags: flags) { _, message in
            warnings.withLock { $0.append(message) }
        }
        do {
            try loader.load()
        } catch {
            err("Error reading config: \(error.message)")
            return error.exitCode
        }
        for w in warnings.withLock({ $0 }) { err(w) }
        return 0
    }

    /// osquery's `--config_dump`: one line per source, in source-name order,
    /// `{"<source>": <raw text>}` exactly as osquery prints it (the text is not
    /// re-encoded), then 0. When the plugin fails, `Error reading config:
    /// <message>` goes to `err` and the result is 1.
    /// - Parameter out: receives each line with its trailing newline.
    @usableFromInline
    static func writeStandardError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    public static func dump(
        flags: Flags, source: any ConfigSource, out: (String) -> Void,
        err: (String) -> Void = ConfigCommands.writeStandardError
    ) -> Int32 {
        do {
            for item in try source.genConfig() {
                out("{\"\(item.name)\": \(item.text)}\n")
            }
            return 0
        } catch {
            err("Error reading config: \(error.message)")
            return error.exitCode
        }
    }
}
