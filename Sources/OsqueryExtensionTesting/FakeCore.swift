public import OsqueryProtocol
public import OsqueryExtension
import OsqueryEngine
import Synchronization
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// An in-process stand-in for an osquery core: a real `ExtensionManager` server
/// speaking Thrift on a real Unix socket. It registers extensions with osquery's
/// checks and messages, answers pings and `extensions()`, routes `call`s to the
/// owning extension, runs SQL over extension tables (with the core's SQLite
/// engine), and can be stopped, restarted, or made to forget an extension, to
/// exercise an extension's liveness and reconnect paths.
public final class FakeCore: ExtensionManagerHandler, Sendable {
    /// The manager socket path.
    public let socket: String
    let state = Mutex<State>(State())
    let server = Mutex<RPCServer?>(nil)

    struct State {
        var extensions: [Int64: (info: InternalExtensionInfo, registry: ExtensionRegistry)] = [:]
        var log: [String] = []
        var refuseNextRegistrations = 0
        var options: InternalOptionList = [:]
    }

    /// A registration the fake core holds.
    package struct Registration: Sendable {
        /// The uuid the fake core assigned.
        package var uuid: Int64
        /// The extension's name.
        package var name: String
        /// Its version.
        package var version: String
        /// Its `sdk_version`.
        package var sdkVersion: String
        /// Its `min_sdk_version`.
        package var minSDKVersion: String
        /// Registry → plugin names.
        package var plugins: [String: [String]]
        /// Table name → route rows.
        package var tableRoutes: [String: [StringMap]]
    }

    /// Starts a fake core at `socket` (default: a fresh temporary path).
    /// - Parameter socket: the manager socket path to listen on; nil: a fresh path in the temporary directory.
    /// - Returns: the core, listening.
    /// - Throws: the server's error when `socket` cannot be bound (an unusable path, a file that is
    ///   not a socket in the way, …).
    public static func start(socket: String? = nil) async throws -> FakeCore {
        let path = socket ?? FakeCore.temporarySocketPath()
        let core = FakeCore(socket: path)
        try await core.listen()
        return core
    }

    /// A fresh socket path in a new private temporary directory.
    /// - Returns: `osquery.em` in a new directory under `/tmp` (or `/tmp/osquery.em` when none
    ///   can be made).
    package static func temporarySocketPath() -> String {
        var template = Array("/tmp/osq-sdk-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { buf -> String in
            guard let p = mkdtemp(buf.baseAddress!) else { return "/tmp" }
            return String(cString: p)
        }
        return dir + "/osquery.em"
    }

    init(socket: String) {
        self.socket = socket
        state.withLock {
            $0.options = [
                "extensions_socket": InternalOptionInfo(value: ThriftString(socket), defaultValue: "/var/osquery/osquery.em", type: "string"),
                "config_plugin": InternalOptionInfo(value: "filesystem", defaultValue: "filesystem", type: "string"),
                "logger_plugin": InternalOptionInfo(value: "filesystem", defaultValue: "filesystem", type: "string"),
                "distributed_plugin": InternalOptionInfo(value: "tls", defaultValue: "tls", type: "string"),
            ]
        }
    }

    func listen() async throws {
        let s = try await RPCServer.start(path: socket, service: .manager(self))
        server.withLock { $0 = s }
    }

    // MARK: - Test controls

    /// Stops serving (the core "goes away"); the registrations are kept.
    public func stop() async {
        let s = server.withLock { s -> RPCServer? in
            defer { s = nil }
            return s
        }
        await s?.close()
    }

    /// Starts serving again at the same path with no registrations (a core restart).
    /// - Throws: the server's error when the path cannot be bound again.
    package func restart() async throws {
        await stop()
        state.withLock { $0.extensions.removeAll() }
        try await listen()
    }

    /// Drops a registration silently, as a restarted core or its death watcher would.
    /// - Parameter uuid: the registration's uuid.
    package func forget(uuid: Int64) {
        _ = state.withLock { $0.extensions.removeValue(forKey: uuid) }
    }

    /// Answers the next `count` registrations with "Duplicate extension registered".
    /// - Parameter count: how many registrations to refuse.
    package func refuseNextRegistrations(_ count: Int) {
        state.withLock { $0.refuseNextRegistrations = count }
    }

    /// Method names received, oldest first (`ping`, `registerExtension`, `extensions`, …).
    package var log: [String] { state.withLock { $0.log } }

    /// The current registrations by uuid.
    package var registrations: [Int64: Registration] {
        state.withLock { s in
            var out: [Int64: Registration] = [:]
            for (uuid, e) in s.extensions {
                var plugins: [String: [String]] = [:]
                var tables: [String: [StringMap]] = [:]
                for (reg, items) in e.registry {
                    plugins[reg.lossyString] = items.keys.map(\.lossyString).sorted()
                    if reg == "table" { for (n, r) in items { tables[n.lossyString] = r } }
                }
                out[uuid] = Registration(
                    uuid: uuid, name: e.info.name.lossyString, version: e.info.version.lossyString,
                    sdkVersion: e.info.sdkVersion.lossyString, minSDKVersion: e.info.minSDKVersion.lossyString,
                    plugins: plugins, tableRoutes: tables)
            }
            return out
        }
    }

    /// Waits until an extension named `name` is registered and its socket is in place (it
    /// registers before it listens); returns its uuid.
    /// - Parameters:
    ///   - name: the extension's name.
    ///   - timeout: how long to wait.
    ///   - excluding: uuids not to count (an earlier registration of the same extension).
    /// - Returns: the registration's uuid.
    /// - Throws: an error naming the extension when none registered within `timeout`;
    ///   `CancellationError` when the waiting task is cancelled.
    public func waitForExtension(named name: String, timeout: Duration = .seconds(10), excluding: Set<Int64> = [])
        async throws -> Int64
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let r = registrations.values.first(where: { $0.name == name && !excluding.contains($0.uuid) }),
                access("\(socket).\(r.uuid)", F_OK) == 0
            {
                return r.uuid
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw FakeCoreError("no extension named \(name) registered within \(timeout)")
    }

    /// A client for the extension listening at `path`, once it answers a ping; a missing or
    /// refusing socket is tried again for up to 10 s, as the core retries its calls.
    static func answeringClient(_ path: String) async throws(RPCClientError) -> ExtensionClient {
        try await retryingUntilListening(for: .seconds(10)) { () async throws(RPCClientError) in
            let client = ExtensionClient(path: path)
            do throws(RPCClientError) {
                _ = try await client.ping(timeout: .seconds(10))
                return client
            } catch {
                client.close()
                throw error
            }
        }
    }

    /// A client for the extension with `uuid` (its socket is `<socket>.<uuid>`).
    /// - Parameter uuid: the extension's uuid.
    /// - Returns: a client that connects on its first call; close it when done.
    package func extensionClient(_ uuid: Int64) -> ExtensionClient {
        ExtensionClient(path: "\(socket).\(uuid)")
    }

    /// Calls a plugin of the extension that registered it, as the core would.
    /// - Parameters:
    ///   - registry: the plugin's registry (`table`, `logger`, …).
    ///   - item: the plugin's name.
    ///   - request: the request map, e.g. `["action": "generate", "context": "{}"]`.
    /// - Returns: the plugin's reply, or a failure status when no extension registered the plugin.
    /// - Throws: an error naming the plugin when the owning extension does not answer on its socket.
    public func callPlugin(registry: String, item: String, request: [String: String]) async throws -> PluginResponse {
        do {
            return PluginResponse(try await callPluginRaw(registry: registry, item: item, request: request))
        } catch let error as RPCClientError {
            throw FakeCoreError("calling \(registry) \(item): \(error)")
        }
    }

    /// ``callPlugin(registry:item:request:)``'s reply as the wire value.
    package func callPluginRaw(registry: String, item: String, request: [String: String]) async throws -> ExtensionResponse {
        var raw = ExtensionPluginRequest()
        for (k, v) in request { raw[ThriftString(k)] = ThriftString(v) }
        return try await callExtension(registry: ThriftString(registry), item: ThriftString(item), request: raw)
    }

    // MARK: - ExtensionManager

    func note(_ method: String) { state.withLock { $0.log.append(method) } }

    /// Answers `{0, "pong"}`, as osquery's core does; the server calls it on the thread that read
    /// the call, so a busy cooperative pool never makes the fake core look dead.
    /// - Returns: the status.
    package func ping() -> ExtensionStatus {
        note("ping")
        return ExtensionStatus(code: 0, message: "pong", uuid: 0)
    }

    /// Routes a call to the extension that registered the plugin (ping, then call, as osquery does).
    /// - Parameters:
    ///   - registry: the plugin's registry.
    ///   - item: the plugin's name.
    ///   - request: the request map.
    /// - Returns: the plugin's reply, or a failure status when no extension registered the plugin.
    /// - Throws: `RPCClientError` when the owning extension does not answer on its socket.
    package func call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ServerResponse
    {
        .rows(try await callExtension(registry: registry, item: item, request: request))
    }

    func callExtension(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ExtensionResponse
    {
        note("call")
        let owner = state.withLock { s in s.extensions.first { $0.value.registry[registry]?[item] != nil }?.key }
        guard let owner else {
            return .failure("Cannot call registry item: \(item.lossyString)")
        }
        let client = try await Self.answeringClient("\(socket).\(owner)")
        defer { client.close() }
        return try await client.call(registry: registry, item: item, request: request)
    }

    /// Records the call and does nothing else (osquery's manager treats it as a no-op).
    /// - Throws: never (the protocol requirement is `throws`).
    package func shutdown() async throws { note("shutdown") }

    /// The registered extensions by uuid.
    /// - Returns: each registration's name, version and SDK versions.
    /// - Throws: never (the protocol requirement is `throws`).
    package func extensions() async throws -> InternalExtensionList {
        note("extensions")
        return state.withLock { s in s.extensions.mapValues(\.info) }
    }

    /// A few of osquery's flags: `extensions_socket` (this core's socket), `config_plugin`,
    /// `logger_plugin` and `distributed_plugin`.
    /// - Returns: each flag's value, default and type.
    /// - Throws: never (the protocol requirement is `throws`).
    package func options() async throws -> InternalOptionList {
        note("options")
        return state.withLock { $0.options }
    }

    static let knownRegistries: Set<String> = [
        "config", "config_parser", "database", "distributed", "enroll", "event_publisher", "event_subscriber",
        "logger", "numeric_monitoring", "sql", "table", "osquery_events_stream",
    ]

    /// Registers an extension with osquery's checks and messages: a taken name ("Duplicate extension
    /// registered"), an `sdk_version` below 1.7.7, an unknown registry, a plugin name another extension
    /// holds in the same registry, a table without route info.
    /// - Parameters:
    ///   - info: the extension's name, version and SDK versions.
    ///   - registry: registry → plugin name → route info.
    /// - Returns: status 0 with the new uuid, or status 1 with osquery's message.
    /// - Throws: never (the protocol requirement is `throws`).
    package func registerExtension(info: InternalExtensionInfo, registry: ExtensionRegistry) async throws
        -> ExtensionStatus
    {
        note("registerExtension")
        return state.withLock { s in
            if s.refuseNextRegistrations > 0 {
                s.refuseNextRegistrations -= 1
                return ExtensionStatus(code: 1, message: "Duplicate extension registered")
            }
            if s.extensions.values.contains(where: { $0.info.name == info.name }) {
                return ExtensionStatus(code: 1, message: "Duplicate extension registered")
            }
            if !versionAtLeast(info.sdkVersion.lossyString, "1.7.7") {
                return ExtensionStatus(code: 1, message: "Incompatible extension SDK version")
            }
            for (reg, items) in registry.sorted(by: { $0.key < $1.key }) {
                guard Self.knownRegistries.contains(reg.lossyString) else {
                    return ExtensionStatus(code: 1, message: ThriftString("Failed adding registry: Unknown registry: \(reg.lossyString)"))
                }
                for (item, routes) in items {
                    let taken = s.extensions.values.contains { $0.registry[reg]?[item] != nil }
                    if taken {
                        return ExtensionStatus(
                            code: 1,
                            message: ThriftString("Failed adding registry: Registry item \(item.lossyString) conflicts with another item of the same name."))
                    }
                    if reg == "table" && routes.isEmpty {
                        return ExtensionStatus(code: 1, message: "Failed adding registry: Invalid route info")
                    }
                    if reg == "table", let problem = Self.tableProblem(item.lossyString, routes) {
                        return ExtensionStatus(code: 1, message: ThriftString("Failed adding registry: \(problem)"))
                    }
                }
            }
            var uuid: Int64
            repeat { uuid = Int64.random(in: 1...65535) } while s.extensions[uuid] != nil
            s.extensions[uuid] = (info, registry)
            return ExtensionStatus(code: 0, message: "OK", uuid: uuid)
        }
    }

    /// What the core refuses in a table's route info, with its message (the core's own checks).
    static func tableProblem(_ name: String, _ routes: [StringMap]) -> String? {
        let info = routes.map { row in
            Dictionary(row.entries.map { ($0.key.lossyString, $0.value.lossyString) }, uniquingKeysWith: { _, b in b })
        }
        let schema: OsqueryEngine.TableSchema
        do { schema = try OsqueryEngine.TableSchema(name: name, routeInfo: info) } catch { return error.message }
        return TableDefinition.problem(
            table: name, columns: schema.columns.map(\.name), columnAliases: schema.columnAliases.map(\.alias),
            aliases: schema.aliases)
    }

    /// Drops the registration with `uuid`.
    /// - Parameter uuid: the registration's uuid.
    /// - Returns: status 0, or status 1 "No extension UUID found".
    /// - Throws: never (the protocol requirement is `throws`).
    package func deregisterExtension(uuid: ExtensionRouteUUID) async throws -> ExtensionStatus {
        note("deregisterExtension")
        let removed = state.withLock { $0.extensions.removeValue(forKey: uuid) != nil }
        return removed ? ExtensionStatus(code: 0, message: "OK") : ExtensionStatus(code: 1, message: "No extension UUID found")
    }

    /// Runs SQL over the registered extension tables with the core's SQLite engine;
    /// each table call goes over the wire to its extension (ping, then call, as osquery does).
    /// - Parameter sql: the statement to run.
    /// - Returns: the rows (NULL as `""`), or a failure status with SQLite's message.
    /// - Throws: the engine's error when its database cannot be set up.
    package func query(sql: ThriftString) async throws -> ServerResponse {
        .rows(try await runQuery(sql))
    }

    func runQuery(_ sql: ThriftString) async throws -> ExtensionResponse {
        note("query")
        do {
            let rows = try await runSQL(sql.lossyString)
            return .ok(rows.map { StringMap($0) })
        } catch let e as SQLBridgeError {
            return .failure(e.message)
        }
    }

    /// Not supported by the fake core.
    /// - Parameter sql: the statement, unused.
    /// - Returns: a failure status.
    /// - Throws: never (the protocol requirement is `throws`).
    package func getQueryColumns(sql: ThriftString) async throws -> ExtensionResponse {
        note("getQueryColumns")
        return .failure("getQueryColumns is not supported by the fake core")
    }

    func runSQL(_ sql: String) async throws -> [[String: String]] {
        let tables: [BridgedTable] = state.withLock { s in
            var out: [BridgedTable] = []
            for (uuid, e) in s.extensions {
                for (name, routes) in e.registry["table"] ?? [:] {
                    let info = routes.map { row in Dictionary(row.entries.map { ($0.key.lossyString, $0.value.lossyString) }, uniquingKeysWith: { $1 }) }
                    guard let schema = try? OsqueryEngine.TableSchema(name: name.lossyString, routeInfo: info) else { continue }
                    let path = "\(socket).\(uuid)"
                    out.append(BridgedTable(schema: schema) { request in
                        let client = try await FakeCore.answeringClient(path)
                        defer { client.close() }
                        return try await client.call(registry: "table", item: name, request: request)
                    })
                }
            }
            return out
        }
        let box = try EngineBox(tables: tables)
        return try await box.run(sql)
    }
}

/// A fake-core failure in a test.
package struct FakeCoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, e.g. `no extension named hello registered within 10.0 seconds`.
    package var description: String
    init(_ d: String) { description = d }
}

/// osquery's `versionAtLeast`: dotted parts compared numerically when both are numbers.
func versionAtLeast(_ version: String, _ minimum: String) -> Bool {
    let a = version.split(separator: ".").map(String.init)
    let b = minimum.split(separator: ".").map(String.init)
    if a.isEmpty { return true }
    for i in 0..<max(a.count, b.count) {
        let x = i < a.count ? a[i] : "0"
        let y = i < b.count ? b[i] : "0"
        if let xi = Int(x), let yi = Int(y) {
            if xi != yi { return xi > yi }
        } else if x != y {
            return x > y
        }
    }
    return true
}
