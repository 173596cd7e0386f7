/// A call to a plugin: the request map and who is calling.
public struct PluginRequest: Sendable {
    /// The request exactly as received.
    public var raw: ExtensionPluginRequest
    /// A client for the core (nil when not running under one): lets plugins query back.
    public var core: OsqueryClient?

    /// A request from raw wire values.
    public init(raw: ExtensionPluginRequest, core: OsqueryClient? = nil) {
        self.raw = raw
        self.core = core
    }

    /// A request from Swift strings (handy in tests).
    public init(_ values: [String: String], core: OsqueryClient? = nil) {
        var raw = ExtensionPluginRequest(minimumCapacity: values.count)
        for (k, v) in values { raw[ThriftString(k)] = ThriftString(v) }
        self.init(raw: raw, core: core)
    }

    /// The value of `key` (lossy UTF-8), or nil.
    public subscript(key: String) -> String? { raw[ThriftString(key)]?.lossyString }

    /// The `action` key.
    public var action: String? { self["action"] }
}

/// A plugin of any registry: the building block under ``Table``, ``LoggerPlugin``,
/// ``ConfigPlugin`` and ``DistributedPlugin``. Implement it directly for other
/// registries (`enroll`, `numeric_monitoring`, …).
public protocol ExtensionPlugin: Sendable {
    /// The registry: `table`, `logger`, `config`, `distributed`, …
    var registry: String { get }
    /// The plugin's name, unique within its registry.
    var name: String { get }
    /// Route info sent at registration (tables: their columns; others usually none).
    var routes: [StringMap] { get }
    /// Answers one call from the core. Errors become a status with code 1.
    func handle(_ request: PluginRequest) async throws -> ExtensionResponse
    /// Answers one call as the extension's server sends it back: by default ``handle(_:)``'s
    /// answer. A plugin that has its rows already encoded (as ``Table`` does for `generate`)
    /// returns them as `ServerResponse.encoded`, so they go on the wire without a map per row.
    /// Errors become a status with code 1.
    func reply(to request: PluginRequest) async throws -> ServerResponse
    /// Called once when the extension stops (flush buffers, close files).
    func shutdown() async
}

extension ExtensionPlugin {
    public var routes: [StringMap] { [] }
    public func reply(to request: PluginRequest) async throws -> ServerResponse { .rows(try await handle(request)) }
    public func shutdown() async {}
}

/// An error whose message is sent to the core as is (status code 1), e.g. a
/// table's "requires a path constraint".
public struct PluginError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message sent to the core.
    public var message: String
    /// An error with `message`.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension ExtensionResponse {
    /// A success with rows.
    public static func ok(_ rows: [StringMap] = []) -> ExtensionResponse {
        ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: rows)
    }

    /// A failure with a message (code 1 by default).
    public static func failure(_ message: String, code: Int32 = 1) -> ExtensionResponse {
        ExtensionResponse(status: ExtensionStatus(code: code, message: ThriftString(message)), response: [])
    }
}
