package import OsqueryProtocol

/// A call to a plugin: the request map and who is calling.
public struct PluginRequest: Sendable {
    /// The request exactly as received.
    package var raw: ExtensionPluginRequest
    /// A client for the core (nil when not running under one): lets plugins query back.
    public var core: OsqueryClient?

    /// A request from raw wire values.
    /// - Parameters:
    ///   - raw: the request map as the core sent it.
    ///   - core: a client for the core, for plugins that query back; nil: none.
    package init(raw: ExtensionPluginRequest, core: OsqueryClient? = nil) {
        self.raw = raw
        self.core = core
    }

    /// A request from Swift strings (handy in tests).
    /// - Parameters:
    ///   - values: the request map, e.g. `["action": "generate", "context": "{}"]`.
    ///   - core: a client for the core, for plugins that query back; nil: none.
    public init(_ values: [String: String], core: OsqueryClient? = nil) {
        var raw = ExtensionPluginRequest(minimumCapacity: values.count)
        for (k, v) in values { raw[ThriftString(k)] = ThriftString(v) }
        self.init(raw: raw, core: core)
    }

    /// The value of `key` (lossy UTF-8), or nil.
    /// - Parameter key: the request key (`action`, `context`, …).
    /// - Returns: the value, or nil when the request has no such key.
    public subscript(key: String) -> String? { raw[ThriftString(key)]?.lossyString }

    /// The `action` key.
    package var action: String? { self["action"] }
}

/// A plugin of any registry: the building block under ``Table``, ``LoggerPlugin``,
/// ``ConfigPlugin`` and ``DistributedPlugin``. Implement it directly for other
/// registries (`enroll`, `numeric_monitoring`, …).
public protocol ExtensionPlugin: Sendable {
    /// The registry: `table`, `logger`, `config`, `distributed`, …
    var registry: String { get }
    /// The plugin's name, unique within its registry.
    var name: String { get }
    /// Route info sent at registration (tables: their columns; others usually none), each
    /// map's keys sent in sorted order.
    var routes: [[String: String]] { get }
    /// Answers one call from the core. Errors become a status with code 1.
    /// - Parameter request: the core's request map and a client for the core.
    /// - Returns: the reply: a status and rows (`.ok(rows)`, `.failure(message)`).
    /// - Throws: any error; the extension answers the core with status 1 and the error's
    ///   description (a ``PluginError``'s message as it is).
    func handle(_ request: PluginRequest) async throws -> PluginResponse
    /// Answers one call as the extension's server sends it back: by default ``handle(_:)``'s
    /// answer. A plugin that has its rows already encoded (as ``Table`` does for `generate`)
    /// returns them as they are, so they go on the wire without a map per row.
    /// Errors become a status with code 1. SPI (`@_spi(FastPath) import OsqueryExtension`): the
    /// default is right for every plugin that does not wrap a ``Table``.
    @_spi(FastPath) func reply(to request: PluginRequest) async throws -> PluginReply
    /// Called once when the extension stops (flush buffers, close files).
    func shutdown() async
}

extension ExtensionPlugin {
    /// No route info.
    public var routes: [[String: String]] { [] }
    /// Answers with ``handle(_:)``'s reply.
    /// - Parameter request: the core's request map and a client for the core.
    /// - Returns: `handle`'s status and rows.
    /// - Throws: what ``handle(_:)`` throws.
    @_spi(FastPath) public func reply(to request: PluginRequest) async throws -> PluginReply {
        PluginReply(.rows(try await handle(request).wire))
    }
    /// Does nothing.
    public func shutdown() async {}
}

/// An error whose message is sent to the core as is (status code 1), e.g. a
/// table's "requires a path constraint".
public struct PluginError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message sent to the core.
    public var message: String
    /// An error with `message`.
    /// - Parameter message: the text the core reports.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// A plugin's answer as the extension's server sends it: a status and rows as values, or rows
/// a ``Table`` already encoded. SPI (`@_spi(FastPath) import OsqueryExtension`): a plugin that
/// wraps a ``Table`` returns the table's `reply(to:)` as it is.
@_spi(FastPath) public struct PluginReply: Sendable {
    package var response: ServerResponse

    package init(_ response: ServerResponse) { self.response = response }
}

extension ExtensionResponse {
    /// A success with rows.
    package static func ok(_ rows: [StringMap] = []) -> ExtensionResponse {
        ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: rows)
    }

    /// A failure with a message (code 1 by default).
    package static func failure(_ message: String, code: Int32 = 1) -> ExtensionResponse {
        ExtensionResponse(status: ExtensionStatus(code: code, message: ThriftString(message)), response: [])
    }
}
