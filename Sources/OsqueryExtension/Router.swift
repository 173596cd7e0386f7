import OsqueryProtocol
import Synchronization

/// Routes the core's calls to plugins; answers pings; counts in-flight calls for draining.
final class Router: ExtensionHandler, Sendable {
    let name: String
    let table: Mutex<[String: [String: any ExtensionPlugin]]>
    let order: Mutex<[any ExtensionPlugin]>
    let uuid = Atomic<Int64>(0)
    let draining = Atomic<Bool>(false)
    /// Bumped when a re-registration starts and when it ends (odd: one is under way), so the
    /// liveness check can tell "deregistered by the core" from "re-registering ourselves".
    let registrationEpoch = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
    let hooks = Mutex<(core: OsqueryClient?, onShutdown: (@Sendable () -> Void)?)>((nil, nil))

    var core: OsqueryClient? {
        get { hooks.withLock { $0.core } }
        set { hooks.withLock { $0.core = newValue } }
    }
    var onShutdownRPC: (@Sendable () -> Void)? {
        get { hooks.withLock { $0.onShutdown } }
        set { hooks.withLock { $0.onShutdown = newValue } }
    }

    init(name: String, plugins: [any ExtensionPlugin]) {
        self.name = name
        var t: [String: [String: any ExtensionPlugin]] = [:]
        for p in plugins where t[p.registry]?[p.name] == nil { t[p.registry, default: [:]][p.name] = p }
        table = Mutex(t)
        order = Mutex(plugins)
    }

    func all() -> [any ExtensionPlugin] { order.withLock { $0 } }

    func firstDuplicate() -> (String, String)? {
        var seen = Set<String>()
        for p in all() where !seen.insert("\(p.registry)\u{0}\(p.name)").inserted { return (p.registry, p.name) }
        return nil
    }

    func add(_ plugin: any ExtensionPlugin) {
        remove(registry: plugin.registry, name: plugin.name)
        table.withLock { $0[plugin.registry, default: [:]][plugin.name] = plugin }
        order.withLock { $0.append(plugin) }
    }

    func remove(registry: String, name: String) {
        table.withLock { _ = $0[registry]?.removeValue(forKey: name) }
        order.withLock { $0.removeAll { $0.registry == registry && $0.name == name } }
    }

    /// Only the registries that hold plugins (osquery rejects unknown registries, even empty).
    func registryPayload() -> ExtensionRegistry {
        var out = ExtensionRegistry()
        for p in all() { out[ThriftString(p.registry), default: [:]][ThriftString(p.name)] = p.routes.map(StringMap.sorted) }
        return out
    }

    func ping() -> ExtensionStatus {
        ExtensionStatus(code: 0, message: "pong", uuid: uuid.load(ordering: .relaxed))
    }

    func call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ServerResponse
    {
        let me = uuid.load(ordering: .relaxed)
        func fail(_ message: String) -> ServerResponse {
            .rows(ExtensionResponse(status: ExtensionStatus(code: 1, message: ThriftString(message), uuid: me)))
        }
        if draining.load(ordering: .sequentiallyConsistent) { return fail("extension \(name) is shutting down") }
        let reg = registry.lossyString
        let found: (known: Bool, plugin: (any ExtensionPlugin)?) = table.withLock { t in
            guard let items = t[reg] else { return (false, nil) }
            return (true, items[item.lossyString])
        }
        guard found.known else { return fail("Unknown registry: \(reg)") }
        guard let plugin = found.plugin else { return fail("Unknown registry item: \(item.lossyString)") }
        inFlight.add(1, ordering: .sequentiallyConsistent)
        defer { inFlight.subtract(1, ordering: .sequentiallyConsistent) }
        var response: ServerResponse
        do {
            response = try await plugin.reply(to: PluginRequest(raw: request, core: core)).response
        } catch let e as PluginError {
            response = .rows(.failure(e.message))
        } catch {
            response = .rows(.failure(describe(error)))
        }
        response.status.uuid = me
        return response
    }

    func shutdown() async throws {
        onShutdownRPC?()
    }
}
