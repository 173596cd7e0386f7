import Foundation
public import OsqueryProtocol
package import ThriftCodec

/// The kit's own manager, written from protocol.md §2.3 alone: osquery's
/// registration rules and messages, extensions/options, and a tiny SQL subset
/// (`select * from <extension table>`, proxied as a generate call). It can
/// "forget" an extension silently, as a restarted core would.
public final class ReferenceManager: ExtensionManagerHandler, @unchecked Sendable {
    public struct Registration: Sendable {
        public var uuid: Int64
        package var info: InternalExtensionInfo
        package var registry: ExtensionRegistry
    }

    public let socket: String
    private let lock = NSLock()
    private var live: [Int64: Registration] = [:]
    private var history: [Registration] = []
    static let knownRegistries: Set<String> = [
        "config", "config_parser", "database", "distributed", "enroll", "event_publisher", "event_subscriber",
        "logger", "numeric_monitoring", "sql", "table", "osquery_events_stream",
    ]

    public init(socket: String) { self.socket = socket }

    /// Every accepted registration, in order (re-registrations included).
    public var registrations: [Registration] { lock.withLock { history } }
    public var current: [Int64: Registration] { lock.withLock { live } }

    /// Drops `uuid` without telling the extension; ping still answers.
    public func forget(_ uuid: Int64) { _ = lock.withLock { live.removeValue(forKey: uuid) } }

    /// Serves this manager on its socket.
    package func serve() async throws -> RPCServer {
        try await RPCServer.start(path: socket, service: .manager(self))
    }

    public func shutdown() async throws {}

    package func extensions() async throws -> InternalExtensionList {
        lock.withLock { live.mapValues(\.info) }
    }

    package func options() async throws -> InternalOptionList {
        [
            "extensions_socket": InternalOptionInfo(value: ThriftString(socket), defaultValue: "/var/osquery/osquery.em", type: "string"),
            "extensions_interval": InternalOptionInfo(value: "1", defaultValue: "3", type: "string"),
            "extensions_timeout": InternalOptionInfo(value: "3", defaultValue: "3", type: "string"),
            "config_plugin": InternalOptionInfo(value: "filesystem", defaultValue: "filesystem", type: "string"),
            "logger_plugin": InternalOptionInfo(value: "filesystem", defaultValue: "filesystem", type: "string"),
            "distributed_plugin": InternalOptionInfo(value: "tls", defaultValue: "tls", type: "string"),
        ]
    }

    /// §2.3 registerExtension, checked in osquery's order.
    package func registerExtension(info: InternalExtensionInfo, registry: ExtensionRegistry) async throws -> ExtensionStatus {
        lock.withLock {
            if live.values.contains(where: { $0.info.name == info.name }) {
                return ExtensionStatus(code: 1, message: "Duplicate extension registered")
            }
            if !versionAtLeast(info.sdkVersion.lossyString, "1.7.7") {
                return ExtensionStatus(code: 1, message: "Incompatible extension SDK version")
            }
            let taken = Set(live.values.flatMap { r in r.registry.flatMap { reg in reg.value.keys.map { "\(reg.key.lossyString)/\($0.lossyString)" } } })
            for (name, routes) in registry.sorted(by: { $0.key < $1.key }) {
                guard Self.knownRegistries.contains(name.lossyString) else {
                    return ExtensionStatus(code: 1, message: ThriftString("Failed adding registry: Unknown registry: \(name.lossyString)"))
                }
                for (item, info) in routes {
                    if taken.contains("\(name.lossyString)/\(item.lossyString)") {
                        return ExtensionStatus(code: 1, message: ThriftString(
                            "Failed adding registry: Registry item \(item.lossyString) conflicts with another item of the same name."))
                    }
                    if name == "table" && info.isEmpty {
                        return ExtensionStatus(code: 1, message: "Failed adding registry: Invalid route info")
                    }
                }
            }
            var uuid = Int64.random(in: 1...65535)
            while live[uuid] != nil { uuid = Int64.random(in: 1...65535) }
            let r = Registration(uuid: uuid, info: info, registry: registry)
            live[uuid] = r
            history.append(r)
            return ExtensionStatus(code: 0, message: "OK", uuid: uuid)
        }
    }

    package func deregisterExtension(uuid: Int64) async throws -> ExtensionStatus {
        lock.withLock {
            live.removeValue(forKey: uuid) == nil
                ? ExtensionStatus(code: 1, message: "No extension UUID found") : ExtensionStatus(code: 0, message: "OK")
        }
    }

    package func call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws -> ServerResponse {
        .rows(try await callExtension(registry: registry, item: item, request: request))
    }

    func callExtension(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws -> ExtensionResponse {
        guard let owner = lock.withLock({ live.values.first { $0.registry[registry]?[item] != nil } }) else {
            return ExtensionResponse(status: ExtensionStatus(code: 1, message: ThriftString("Cannot call registry item: \(item.lossyString)")))
        }
        let client = ExtensionClient(path: "\(socket).\(owner.uuid)", options: RPCClientOptions(callTimeout: .seconds(30), maxIdleConnections: 0))
        defer { client.close() }
        return try await client.call(registry: registry, item: item, request: request)
    }

    /// `select * from <table>` on an extension table; anything else is refused.
    package func query(sql: ThriftString) async throws -> ServerResponse {
        .rows(try await runQuery(sql))
    }

    func runQuery(_ sql: ThriftString) async throws -> ExtensionResponse {
        let words = sql.lossyString.split(whereSeparator: \.isWhitespace).map(String.init)
        guard words.count == 4, words[0].lowercased() == "select", words[1] == "*", words[2].lowercased() == "from" else {
            return ExtensionResponse(status: ExtensionStatus(code: 1, message: "reference manager: only `select * from <extension table>`"))
        }
        let table = ThriftString(words[3])
        guard lock.withLock({ live.values.contains { $0.registry["table"]?[table] != nil } }) else {
            return ExtensionResponse(status: ExtensionStatus(code: 1, message: ThriftString("no such table: \(words[3])")))
        }
        return try await callExtension(registry: "table", item: table, request: ["action": "generate", "context": "{\"constraints\":[]}"])
    }

    package func getQueryColumns(sql: ThriftString) async throws -> ExtensionResponse {
        ExtensionResponse(status: ExtensionStatus(code: 1, message: "reference manager: getQueryColumns is not supported"))
    }
}

/// osquery's versionAtLeast: dotted parts compared numerically when both are
/// numbers, else as strings; an empty version passes (§2.3).
func versionAtLeast(_ version: String, _ floor: String) -> Bool {
    let a = version.split(separator: ".").map(String.init)
    let b = floor.split(separator: ".").map(String.init)
    if a.isEmpty { return true }
    for i in 0..<min(a.count, b.count) {
        if let x = Int(a[i]), let y = Int(b[i]) {
            if x != y { return x > y }
        } else if a[i] != b[i] {
            return a[i] > b[i]
        }
    }
    return true
}
