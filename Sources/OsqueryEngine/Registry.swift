import Synchronization

/// One plugin in a registry.
public struct RegistryItem: Sendable {
    public var registry: String
    public var name: String
    /// 0 = the core; otherwise the extension's uuid.
    public var ownerUUID: UInt64
    public var isInternal: Bool
    public var plugin: (any RegistryPlugin)?
    /// The same plugin when it is a table (kept typed so lookups need no dynamic cast).
    public var table: (any TablePlugin)?

    public init(registry: String, name: String, ownerUUID: UInt64 = 0, isInternal: Bool = false, plugin: (any RegistryPlugin)? = nil) {
        self.registry = registry
        self.name = name
        self.ownerUUID = ownerUUID
        self.isInternal = isInternal
        self.plugin = plugin
    }

    public init(table: any TablePlugin, ownerUUID: UInt64 = 0) {
        self.init(registry: "table", name: table.schema.name, ownerUUID: ownerUUID, plugin: table)
        self.table = table
    }
}

/// Registries of plugins by registry name (`table`, `config`, `logger`, …),
/// with the active plugin of each. Thread-safe.
public final class PluginRegistry: Sendable {
    /// The registries osquery's core knows (`killswitch` was removed upstream,
    /// so an extension registering it is refused with `Unknown registry`).
    public static let knownRegistries = [
        "config", "config_parser", "database", "distributed", "enroll", "event_publisher", "event_subscriber",
        "logger", "numeric_monitoring", "osquery_events_stream", "sql", "table",
    ]

    private struct State {
        var extensions: [UInt64: ExtensionInfo] = [:]
        var items: [String: [String: RegistryItem]] = [:]
        var active: [String: String] = [:]
        var generation: UInt64 = 0
        var configSections: [String: JSONValue] = [:]
        /// Every registered table's name and aliases, lowercased: `add` checks a new table
        /// against them without walking every table (osqueryi registers ~150 at start).
        var tableNames = Set<String>()

        mutating func noteAdded(_ item: RegistryItem) {
            guard item.registry == "table", let schema = item.table?.schema else { return }
            for name in [schema.name] + schema.aliases { tableNames.insert(name.lowercased()) }
        }

        mutating func noteRemoved(_ item: RegistryItem) {
            guard item.registry == "table", let schema = item.table?.schema else { return }
            for name in [schema.name] + schema.aliases { tableNames.remove(name.lowercased()) }
        }
    }

    private let state = Mutex(State())

    /// Sets a config section that tables read (osquery's config parsers keep them for their
    /// tables, e.g. `prometheus_targets`); nil removes it. Set on each config load.
    package func setConfigSection(_ key: String, _ value: JSONValue?) {
        state.withLock { $0.configSections[key] = value }
    }

    /// The config section `key` of the last config load (nil: the config has none).
    package func configSection(_ key: String) -> JSONValue? {
        state.withLock { $0.configSections[key] }
    }

    public init() {}

    /// The process-wide registry used by the shell and daemon.
    public static let shared = PluginRegistry()

    /// Add a plugin. Fails if the name is already taken in that registry.
    /// Fails too for a table whose name or an alias names a table or alias already there
    /// (compared as SQLite compares names, without ASCII case).
    @discardableResult
    public func add(_ item: RegistryItem) -> Bool {
        state.withLock { s in
            if s.items[item.registry]?[item.name] != nil { return false }
            if let table = item.table, Self.takenName(table.schema, in: s) != nil { return false }
            s.items[item.registry, default: [:]][item.name] = item
            s.noteAdded(item)
            s.generation &+= 1
            return true
        }
    }

    /// Add a table plugin owned by `owner` (0 = core).
    @discardableResult
    public func addTable(_ table: any TablePlugin, owner: UInt64 = 0) -> Bool {
        add(RegistryItem(table: table, ownerUUID: owner))
    }

    @discardableResult
    public func remove(registry: String, name: String) -> RegistryItem? {
        state.withLock { s in
            let removed = s.items[registry]?.removeValue(forKey: name)
            if let removed {
                s.noteRemoved(removed)
                s.generation &+= 1
                if s.active[registry] == name { s.active[registry] = nil }
            }
            return removed
        }
    }

    /// Remove every plugin an extension owns; returns what was removed.
    @discardableResult
    public func removeAll(owner: UInt64) -> [RegistryItem] {
        state.withLock { s in
            var removed: [RegistryItem] = []
            for (registry, items) in s.items {
                for (name, item) in items where item.ownerUUID == owner {
                    s.items[registry]?.removeValue(forKey: name)
                    s.noteRemoved(item)
                    removed.append(item)
                }
            }
            if !removed.isEmpty { s.generation &+= 1 }
            return removed
        }
    }

    public func setActive(registry: String, name: String) {
        state.withLock { s in s.active[registry] = name }
    }

    public func active(registry: String) -> String? {
        state.withLock { s in s.active[registry] }
    }

    public func item(registry: String, name: String) -> RegistryItem? {
        state.withLock { s in s.items[registry]?[name] }
    }

    /// Items of one registry sorted by name.
    public func items(registry: String) -> [RegistryItem] {
        state.withLock { s in
            (s.items[registry] ?? [:]).values.sorted { $0.name < $1.name }
        }
    }

    /// Every item, sorted by registry then name.
    public func allItems() -> [RegistryItem] {
        state.withLock { s in
            var out: [RegistryItem] = []
            for registry in s.items.keys.sorted() {
                out += s.items[registry]!.values.sorted { $0.name < $1.name }
            }
            return out
        }
    }

    /// Registry names that exist (known ones plus any with items).
    public func registryNames() -> [String] {
        state.withLock { s in
            Array(Set(PluginRegistry.knownRegistries).union(s.items.keys)).sorted()
        }
    }

    /// The first of `schema`'s name and aliases that names a registered table or alias, or
    /// another of its own names; nil when all are free.
    public func takenTableName(_ schema: TableSchema) -> String? {
        state.withLock { Self.takenName(schema, in: $0) }
    }

    private static func takenName(_ schema: TableSchema, in s: State) -> String? {
        var own: [String] = []
        for name in [schema.name] + schema.aliases {
            let key = name.lowercased()
            if s.tableNames.contains(key) || own.contains(key) { return name }
            own.append(key)
        }
        return nil
    }

    public func table(named name: String) -> (any TablePlugin)? {
        item(registry: "table", name: name)?.table
    }

    /// Every table plugin, sorted by name.
    public func tables() -> [any TablePlugin] {
        items(registry: "table").compactMap(\.table)
    }

    public func tableNames() -> [String] {
        items(registry: "table").map(\.name)
    }

    /// Record a registered extension (the extension manager calls this).
    public func addExtension(_ info: ExtensionInfo) {
        state.withLock { $0.extensions[info.uuid] = info }
    }

    public func removeExtension(uuid: UInt64) {
        state.withLock { _ = $0.extensions.removeValue(forKey: uuid) }
    }

    /// Registered extensions by uuid.
    public func extensions() -> [ExtensionInfo] {
        state.withLock { $0.extensions.values.sorted { $0.uuid < $1.uuid } }
    }

    /// Changes whenever an item is added or removed.
    public var generation: UInt64 { state.withLock { $0.generation } }

    /// osquery_registry's `active`: 1 when the registry has no active plugin or
    /// the name equals the active name exactly.
    public func isActive(registry: String, name: String) -> Bool {
        state.withLock { s in
            guard let active = s.active[registry] else { return true }
            return active == name
        }
    }
}

/// An extension known to the core (osquery_extensions rows).
public struct ExtensionInfo: Sendable, Equatable {
    public var uuid: UInt64
    public var name: String
    public var version: String
    public var sdkVersion: String
    public var minSdkVersion: String
    public var path: String

    public init(uuid: UInt64, name: String, version: String, sdkVersion: String, minSdkVersion: String, path: String) {
        self.uuid = uuid
        self.name = name
        self.version = version
        self.sdkVersion = sdkVersion
        self.minSdkVersion = minSdkVersion
        self.path = path
    }
}
