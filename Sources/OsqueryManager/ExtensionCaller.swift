import Foundation
import OsqueryEngine
package import OsqueryProtocol
package import ThriftCodec
import Synchronization

/// Calls extensions at `<manager socket>.<uuid>`, from async code or from a
/// query thread that may block.
///
/// Every call opens its own connection and closes it afterwards, as osquery's
/// core does: extensions written with PyPI `osquery` serve one connection at a
/// time, so an idle pooled connection would lock every other caller out. Every
/// call has a deadline, so a hung extension fails only the statement that
/// touched it.
public struct ExtensionCaller: Sendable {
    /// The manager socket; extension `uuid` listens on `<socket>.<uuid>`.
    public let managerSocket: String
    /// The deadline for one call.
    public let timeout: Duration
    /// The cells (rows × columns) an extension table's reply may always cost
    /// (`--extensions_max_reply_cells`); a bigger reply may cost one per 8 of its bytes.
    package let maxReplyCells: Int

    /// `--extensions_max_reply_cells`' default: 128 MiB of cells.
    package static let defaultMaxReplyCells = 16_777_216

    public init(managerSocket: String, timeout: Duration) {
        self.init(managerSocket: managerSocket, timeout: timeout, maxReplyCells: Self.defaultMaxReplyCells)
    }

    package init(managerSocket: String, timeout: Duration, maxReplyCells: Int) {
        self.managerSocket = managerSocket
        self.timeout = timeout
        self.maxReplyCells = maxReplyCells
    }

    package func socketPath(uuid: ExtensionRouteUUID) -> String { "\(managerSocket).\(uuid)" }

    func client(uuid: ExtensionRouteUUID, timeout: Duration? = nil) -> ExtensionClient {
        let t = timeout ?? self.timeout
        return ExtensionClient(
            path: socketPath(uuid: uuid),
            options: RPCClientOptions(connectTimeout: min(t, .seconds(3)), callTimeout: t, maxIdleConnections: 0))
    }

    package func call(
        uuid: ExtensionRouteUUID, registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest
    ) async throws(RPCClientError) -> ExtensionResponse {
        let client = self.client(uuid: uuid)
        return try await retryingUntilListening(for: Self.connectRetryWindow) { () async throws(RPCClientError) in
            try await client.call(registry: registry, item: item, request: request)
        }
    }

    /// Extensions register before they listen (osquery's SDKs all do), so a call right after
    /// registration can find no socket yet: retried for up to this much wall-clock time (on a
    /// loaded machine an extension can take over a second between its registration's reply and
    /// its listen).
    static let connectRetryWindow = Duration.seconds(3)

    package func ping(uuid: ExtensionRouteUUID, timeout: Duration? = nil) async throws(RPCClientError) -> ExtensionStatus {
        try await client(uuid: uuid, timeout: timeout).ping()
    }

    package func shutdown(uuid: ExtensionRouteUUID, timeout: Duration? = nil) async throws(RPCClientError) {
        try await client(uuid: uuid, timeout: timeout).shutdown()
    }

    /// `call` from a thread that may block, with the reply left undecoded: the caller decodes
    /// it on its own thread (``RawReply/decodeResponse(rows:)``), not on the cooperative pool.
    package func callBlockingRaw(
        uuid: ExtensionRouteUUID, registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest
    ) throws(RPCClientError) -> RawReply {
        let client = self.client(uuid: uuid)
        return try runBlocking { () async throws(RPCClientError) in
            try await retryingUntilListening(for: Self.connectRetryWindow) { () async throws(RPCClientError) in
                try await client.callRaw(registry: registry, item: item, request: request)
            }
        }
    }

    /// Calls from a thread that may block (a query thread inside `generate`),
    /// never from the cooperative pool.
    package func callBlocking(
        uuid: ExtensionRouteUUID, registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest
    ) throws(RPCClientError) -> ExtensionResponse {
        let caller = self
        return try runBlocking { () async throws(RPCClientError) in
            try await caller.call(uuid: uuid, registry: registry, item: item, request: request)
        }
    }
}
