import Foundation
public import Logging
public import OsqueryEngine
public import OsqueryProtocol
package import ThriftCodec
import Synchronization

/// The core's side of osquery's `ExtensionManager` service (protocol.md §2.3):
/// registration with osquery's checks, order and messages, routing of plugin
/// calls, SQL for extensions, and the bookkeeping the watcher and
/// `osquery_extensions` rely on.
public final class ManagerService: ExtensionManagerHandler {
    /// The oldest extension SDK osquery accepts.
    static let minimumSDKVersion = "1.7.7"

    struct Registered {
        var info: InternalExtensionInfo
        var registry: ExtensionRegistry
        /// Who registered it (nil when the kernel did not say).
        var owner: PeerCredentials?
        /// True once the watcher has seen it answer (its first check gets a grace period).
        var seenAlive = false
    }

    let registry: PluginRegistry
    let flags: Flags
    let queries: QueryThreads
    let caller: ExtensionCaller
    let logger: Logger
    let state = Mutex<[ExtensionRouteUUID: Registered]>([:])
    let ownUID = getuid()

    public init(registry: PluginRegistry, flags: Flags, queries: QueryThreads, caller: ExtensionCaller, logger: Logger) {
        self.registry = registry
        self.flags = flags
        self.queries = queries
        self.caller = caller
        self.logger = logger
    }

    // MARK: Authorization (better than osquery, which has none)

    /// Peers other than root and the core's own user may not use any method
    /// that reveals or changes something (only `ping` stays open, as in
    /// osquery). The socket is 0600 already; this also holds if an operator
    /// loosens its mode. A call whose peer the kernel did not name is refused
    /// too: an unknown caller is not a trusted one.
    func refusal(_ what: String) -> ExtensionStatus? {
        guard let peer = PeerCredentials.current else {
            logger.warning("refused \(what) from a peer whose credentials are unavailable")
            return ExtensionStatus(code: 1, message: ThriftString("Permission denied: the caller's credentials are unavailable"))
        }
        guard peer.uid != 0, peer.uid != ownUID else { return nil }
        logger.warning("refused \(what) from \(peer): only root and uid \(ownUID) may")
        return ExtensionStatus(code: 1, message: ThriftString("Permission denied: uid \(peer.uid) may not \(what)"))
    }

    /// ``refusal(_:)`` for methods whose result has no status: the caller gets
    /// a `TApplicationException` with the same message.
    func checkAllowed(_ what: String) throws(TApplicationException) {
        if let refused = refusal(what) { throw TApplicationException(.unknown, refused.message) }
    }

    // MARK: Extension service


    /// osquery's manager ignores `shutdown`; so do we (the core stops on signals).
    public func shutdown() async throws {}

    package func call(registry name: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ServerResponse
    {
        .rows(try await route(registry: name, item: item, request: request))
    }

    /// ``call(registry:item:request:)``'s answer.
    func route(registry name: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ExtensionResponse
    {
        if let refused = refusal("call plugins") { return ExtensionResponse(status: refused) }
        let registryName = name.lossyString
        var itemName = item.lossyString
        if itemName.isEmpty {
            guard PluginRegistry.knownRegistries.contains(registryName) else {
                // osquery raises an exception here; a status says the same thing clearly.
                return failed("Unknown registry requested: \(registryName)")
            }
            itemName = registry.active(registry: registryName) ?? ""
        }
        if itemName.contains(",") {
            // A comma list calls each plugin; their statuses are ignored, as in osquery.
            for part in itemName.split(separator: ",") {
                _ = try await callOne(registryName, String(part), request)
            }
            return ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"))
        }
        return try await callOne(registryName, itemName, request)
    }

    func callOne(_ registryName: String, _ itemName: String, _ request: ExtensionPluginRequest) async throws
        -> ExtensionResponse
    {
        guard PluginRegistry.knownRegistries.contains(registryName) else {
            return failed("Unknown registry requested: \(registryName)")
        }
        guard let item = registry.item(registry: registryName, name: itemName) else {
            return failed("Cannot call registry item: \(itemName)")
        }
        if item.ownerUUID != 0 {
            // Another extension's plugin: proxy the call to it.
            do {
                var response = try await caller.call(
                    uuid: ExtensionRouteUUID(item.ownerUUID), registry: ThriftString(registryName),
                    item: ThriftString(itemName), request: request)
                if !response.status.isSuccess { response.response = [] }
                response.status.uuid = 0
                return response
            } catch {
                return failed("Extension call failed: \(error)")
            }
        }
        if registryName == "table", let table = item.table {
            return await callCoreTable(table, request)
        }
        return failed("Cannot call registry item: \(itemName)")
    }

    /// The `table` plugin protocol for the core's own tables.
    func callCoreTable(_ table: any TablePlugin, _ request: ExtensionPluginRequest) async -> ExtensionResponse {
        guard let action = request["action"] else { return failed("Table plugins must include a request action") }
        switch action {
        case "columns":
            return ExtensionResponse(status: .init(code: 0, message: "OK"), response: table.schema.routeInfo.map { StringMap($0) })
        case "generate":
            do {
                let rows = try await queries.run { _ throws(EngineError) in
                    do { return try table.generate(QueryContext(schema: table.schema)) } catch let e as EngineError {
                        throw e
                    } catch {
                        throw EngineError(code: 1, message: "\(error)")
                    }
                }
                return ExtensionResponse(status: .init(code: 0, message: "OK"), response: Self.stringRows(rows, table.schema))
            } catch {
                return failed(error.message)
            }
        default:
            return failed("Unknown table plugin action: \(action.lossyString)")
        }
    }

    static func stringRows(_ rows: TableRows, _ schema: TableSchema) -> [StringMap] {
        let keys = schema.columns.map { ThriftString($0.name) }
        var out: [StringMap] = []
        out.reserveCapacity(rows.count)
        for r in 0..<rows.count {
            var row = StringMap(minimumCapacity: keys.count)
            for (c, key) in keys.enumerated() {
                if let text = wireString(rows[r, c]) { row.append(key, text) }
            }
            out.append(row)
        }
        return out
    }

    static func wireString(_ value: SQLValue) -> ThriftString? {
        switch value {
        case .null: return nil
        case .text(let s): return ThriftString(s)
        case .integer(let i): return ThriftString(String(i))
        case .blob(let bytes): return ThriftString(bytes: bytes)
        case .double: return value.osqueryString.map { ThriftString($0) }
        }
    }

    func failed(_ message: String) -> ExtensionResponse {
        ExtensionResponse(status: ExtensionStatus(code: 1, message: ThriftString(message)))
    }

    // MARK: ExtensionManager service

    package func extensions() async throws -> InternalExtensionList {
        try checkAllowed("list extensions")
        return registeredExtensions()
    }

    /// The registered extensions, for the core's own use (no caller to check).
    func registeredExtensions() -> InternalExtensionList {
        state.withLock { $0.mapValues(\.info) }
    }

    package func options() async throws -> InternalOptionList {
        try checkAllowed("read options")
        var list = InternalOptionList()
        for definition in flags.allDefinitions() {
            list[ThriftString(definition.name)] = InternalOptionInfo(
                value: ThriftString(flags.value(named: definition.name)),
                defaultValue: ThriftString(definition.defaultValue),
                type: ThriftString(definition.type.rawValue))
        }
        return list
    }

    package func registerExtension(info: InternalExtensionInfo, registry routes: ExtensionRegistry) async throws
        -> ExtensionStatus
    {
        if let refused = refusal("register extensions") { return refused }
        let owner = PeerCredentials.current
        // osquery's checks, in osquery's order.
        let uuid: ExtensionRouteUUID? = state.withLock { live in
            if live.values.contains(where: { $0.info.name == info.name }) { return nil }
            return 0
        }
        guard uuid != nil else { return ExtensionStatus(code: 1, message: "Duplicate extension registered") }
        if !versionAtLeast(info.sdkVersion.lossyString, Self.minimumSDKVersion) {
            return ExtensionStatus(code: 1, message: "Incompatible extension SDK version")
        }
        // Reserve a random unused uuid in 1...65535 together with the name, so
        // two concurrent registrations can neither share one nor both pass the
        // duplicate check.
        let reserved: ExtensionRouteUUID? = state.withLock { live in
            if live.values.contains(where: { $0.info.name == info.name }) { return nil }
            guard live.count < 65535 else { return nil }
            var candidate: ExtensionRouteUUID
            repeat { candidate = ExtensionRouteUUID(UInt16.random(in: 1...UInt16.max)) } while live[candidate] != nil
            live[candidate] = Registered(info: info, registry: routes, owner: owner)
            return candidate
        }
        guard let uuid = reserved else { return ExtensionStatus(code: 1, message: "Duplicate extension registered") }
        if let error = addRoutes(uuid: uuid, routes) {
            // Unlike osquery, nothing of a refused registration stays behind.
            _ = registry.removeAll(owner: UInt64(uuid))
            _ = state.withLock { $0.removeValue(forKey: uuid) }
            return ExtensionStatus(code: 1, message: ThriftString("Failed adding registry: \(error)"))
        }
        registry.addExtension(
            ExtensionInfo(
                uuid: UInt64(uuid), name: info.name.lossyString, version: info.version.lossyString,
                sdkVersion: info.sdkVersion.lossyString, minSdkVersion: info.minSDKVersion.lossyString,
                path: caller.socketPath(uuid: uuid)))
        logger.info(
            "Registering extension (\(info.name), \(uuid), version=\(info.version), sdk=\(info.sdkVersion))")
        return ExtensionStatus(code: 0, message: "OK", uuid: uuid)
    }

    /// Adds every plugin of a registration; returns osquery's message for the first failure.
    func addRoutes(uuid: ExtensionRouteUUID, _ routes: ExtensionRegistry) -> String? {
        // Registries are walked in lexical order, as osquery walks its map.
        for registryName in routes.keys.sorted() {
            let name = registryName.lossyString
            guard PluginRegistry.knownRegistries.contains(name) else { return "Unknown registry: \(name)" }
            let plugins = routes[registryName]!
            for pluginName in plugins.keys.sorted() {
                let plugin = pluginName.lossyString
                if registry.item(registry: name, name: plugin) != nil {
                    return "Registry item \(plugin) conflicts with another item of the same name."
                }
                let item: RegistryItem
                if name == "table" {
                    let routeInfo = plugins[pluginName]!.map { row in
                        Dictionary(row.entries.map { ($0.key.lossyString, $0.value.lossyString) }, uniquingKeysWith: { _, b in b })
                    }
                    let schema: TableSchema
                    do {
                        schema = try TableSchema(name: plugin, routeInfo: routeInfo)
                    } catch {
                        return error.message
                    }
                    if let problem = TableDefinition.problem(
                        table: plugin, columns: schema.columns.map(\.name), columnAliases: schema.columnAliases.map(\.alias),
                        aliases: schema.aliases)
                    {
                        return problem
                    }
                    // An alias naming a table would shadow it (a temp view wins over main).
                    if let taken = registry.takenTableName(schema) {
                        return taken == plugin
                            ? "Registry item \(plugin) conflicts with another item of the same name."
                            : "Table alias \(taken) of \(plugin) conflicts with an existing table or alias"
                    }
                    let epoch = routeInfo.lazy.compactMap { entry -> String? in
                        if case .eventEpoch(let epoch)? = TableRoute({ entry[$0] }) { epoch } else { nil }
                    }.first
                    item = RegistryItem(
                        table: ExtensionTable(schema: schema, uuid: uuid, caller: caller, eventEpoch: epoch), ownerUUID: UInt64(uuid))
                } else {
                    item = RegistryItem(
                        registry: name, name: plugin, ownerUUID: UInt64(uuid),
                        plugin: ExternalPlugin(uuid: uuid, registry: name, name: plugin))
                }
                guard registry.add(item) else {
                    return "Registry item \(plugin) conflicts with another item of the same name."
                }
            }
        }
        return nil
    }

    package func deregisterExtension(uuid: ExtensionRouteUUID) async throws -> ExtensionStatus {
        if let refused = refusal("deregister extensions") { return refused }
        let peer = PeerCredentials.current
        let outcome: ExtensionStatus? = state.withLock { live in
            guard let entry = live[uuid] else { return ExtensionStatus(code: 1, message: "No extension UUID found") }
            // Better than osquery: only whoever registered it (or root) may remove it.
            if let peer, peer.uid != 0, let owner = entry.owner, owner.uid != peer.uid {
                return ExtensionStatus(
                code: 1, message: ThriftString("Permission denied: extension \(uuid) belongs to another user"))
            }
            return nil
        }
        if let outcome { return outcome }
        remove(uuid: uuid, reason: "deregistered")
        return ExtensionStatus(code: 0, message: "OK", uuid: 0)
    }

    /// Removes an extension and everything it registered.
    package func remove(uuid: ExtensionRouteUUID, reason: String) {
        guard let entry = state.withLock({ $0.removeValue(forKey: uuid) }) else { return }
        _ = registry.removeAll(owner: UInt64(uuid))
        registry.removeExtension(uuid: UInt64(uuid))
        logger.info("Removed extension (\(entry.info.name), \(uuid)): \(reason)")
    }

    package func query(sql: ThriftString) async throws -> ServerResponse {
        if let refused = refusal("run queries") { return .rows(ExtensionResponse(status: refused)) }
        let text = sql.lossyString
        let nullValue = ThriftString(flags[.nullvalue])
        // The socket's own limit: a reply past it could never be sent.
        let limit = ExtensionManager.serverLimits(flags).maxMessageSize
        do {
            // Rows are encoded on the query thread straight from SQLite: no typed result set,
            // no map per row.
            let rows = try await queries.run { db throws(EngineError) in
                var encoder = QueryRowsEncoder(nullValue: nullValue, limit: limit)
                try db.execute(text, columns: { encoder.begin(columns: $0) }) { row throws(EngineError) in
                    encoder.add(row)
                    if encoder.tooLarge { throw encoder.tooLargeError }
                }
                return encoder.finish()
            }
            return .encoded(ExtensionStatus(code: 0, message: "OK"), rows)
        } catch {
            return .rows(failed(error.message))
        }
    }

    package func getQueryColumns(sql: ThriftString) async throws -> ExtensionResponse {
        if let refused = refusal("run queries") { return ExtensionResponse(status: refused) }
        let text = sql.lossyString
        do {
            let columns = try await queries.run { db throws(EngineError) in try db.queryColumns(text) }
            let rows = columns.map { column -> StringMap in [ThriftString(column.name): ThriftString(column.type)] }
            return ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: rows)
        } catch {
            return failed(error.message)
        }
    }

    // MARK: For the watcher

    /// Registered uuids, and whether each has answered a check yet.
    func snapshot() -> [(uuid: ExtensionRouteUUID, seenAlive: Bool)] {
        state.withLock { $0.map { ($0.key, $0.value.seenAlive) } }
    }

    func markAlive(_ uuid: ExtensionRouteUUID) {
        state.withLock { $0[uuid]?.seenAlive = true }
    }

    /// The uuids currently registered.
    package var uuids: [ExtensionRouteUUID] { state.withLock { Array($0.keys) } }
}

/// A plugin an extension serves in a registry other than `table` (osquery's external
/// plugin; the SDK's `ExtensionPlugin` is the extension's side of it): calls to it
/// are proxied to the extension.
public struct ExternalPlugin: RegistryPlugin {
    package let uuid: ExtensionRouteUUID
    public let registry: String
    public let name: String
}

/// osquery's SDK check: dot-separated parts compared in turn, numerically when
/// both are numbers, as text otherwise; an empty version (Go's SDK sends none)
/// and `0.0.0` (unversioned) pass.
func versionAtLeast(_ version: String, _ minimum: String) -> Bool {
    let v = version.split(separator: ".", omittingEmptySubsequences: false)
    let m = minimum.split(separator: ".", omittingEmptySubsequences: false)
    if version.isEmpty || version == "0.0.0" { return true }
    for (a, b) in zip(v, m) {
        if let x = Int(a), let y = Int(b) {
            if x != y { return x > y }
        } else if a != b {
            return a > b
        }
    }
    return true
}

