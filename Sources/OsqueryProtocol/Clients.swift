package import ThriftCodec

/// The `Extension` service's methods, which every osquery socket answers
/// (the manager's service extends it).
package protocol ExtensionServiceClient: Sendable {
    var rpc: RPCClient { get }
}

extension ExtensionServiceClient {
    nonisolated(nonsending) package func ping(timeout: Duration? = nil) async throws(RPCClientError) -> ExtensionStatus {
        try await rpc.invoke(.ping, timeout: timeout).expectStatus()
    }

    nonisolated(nonsending) package func call(
        registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest, timeout: Duration? = nil
    ) async throws(RPCClientError) -> ExtensionResponse {
        try await rpc.invoke(.call(registry: registry, item: item, request: request), timeout: timeout)
            .expectResponse()
    }

    nonisolated(nonsending) package func shutdown(timeout: Duration? = nil) async throws(RPCClientError) {
        _ = try await rpc.invoke(.shutdown, timeout: timeout)
    }

    /// Closes idle connections.
    package func close() { rpc.close() }
}

/// Calls an extension's `Extension` service (ping, call, shutdown).
package struct ExtensionClient: ExtensionServiceClient {
    package let rpc: RPCClient

    /// A client for the socket at `path`; connects on first use.
    package init(path: String, options: RPCClientOptions = RPCClientOptions()) {
        rpc = RPCClient(path: path, options: options)
    }
}

/// Calls a core's `ExtensionManager` service: all nine methods.
package struct ExtensionManagerClient: ExtensionServiceClient {
    package let rpc: RPCClient

    /// A client for the manager socket at `path`; connects on first use.
    package init(path: String, options: RPCClientOptions = RPCClientOptions()) {
        rpc = RPCClient(path: path, options: options)
    }

    nonisolated(nonsending) package func extensions(timeout: Duration? = nil) async throws(RPCClientError) -> InternalExtensionList {
        guard case .extensions(let list) = try await rpc.invoke(.extensions, timeout: timeout) else {
            throw .protocolError("extensions: unexpected result type")
        }
        return list
    }

    nonisolated(nonsending) package func options(timeout: Duration? = nil) async throws(RPCClientError) -> InternalOptionList {
        guard case .options(let list) = try await rpc.invoke(.options, timeout: timeout) else {
            throw .protocolError("options: unexpected result type")
        }
        return list
    }

    nonisolated(nonsending) package func registerExtension(
        info: InternalExtensionInfo, registry: ExtensionRegistry, timeout: Duration? = nil
    ) async throws(RPCClientError) -> ExtensionStatus {
        try await rpc.invoke(.registerExtension(info: info, registry: registry), timeout: timeout).expectStatus()
    }

    nonisolated(nonsending) package func deregisterExtension(uuid: ExtensionRouteUUID, timeout: Duration? = nil) async throws(RPCClientError)
        -> ExtensionStatus
    {
        try await rpc.invoke(.deregisterExtension(uuid: uuid), timeout: timeout).expectStatus()
    }

    nonisolated(nonsending) package func query(_ sql: ThriftString, timeout: Duration? = nil) async throws(RPCClientError)
        -> ExtensionResponse
    {
        try await rpc.invoke(.query(sql: sql), timeout: timeout).expectResponse()
    }

    /// ``query(_:timeout:)`` with the rows decoded by ``StringMapRowsReader`` (a big result in
    /// two halves at once).
    nonisolated(nonsending) package func queryRows(_ sql: ThriftString, timeout: Duration? = nil) async throws(RPCClientError)
        -> (status: ExtensionStatus, rows: [StringMap])
    {
        let reply = try await rpc.invokeRaw(.query(sql: sql), timeout: timeout)
        var reader = StringMapRowsReader()
        let status = try reply.decodeResponse(rows: &reader)
        return (status, reader.rows)
    }

    /// ``query(_:timeout:)`` with the rows left in the reply (``ReplyRows``): one walk over the
    /// reply, no string built until a cell is read.
    nonisolated(nonsending) package func queryReplyRows(_ sql: ThriftString, timeout: Duration? = nil) async throws(RPCClientError)
        -> (status: ExtensionStatus, rows: ReplyRows)
    {
        try await rpc.invokeRaw(.query(sql: sql), timeout: timeout).decodeReplyRows()
    }

    nonisolated(nonsending) package func getQueryColumns(_ sql: ThriftString, timeout: Duration? = nil) async throws(RPCClientError)
        -> ExtensionResponse
    {
        try await rpc.invoke(.getQueryColumns(sql: sql), timeout: timeout).expectResponse()
    }
}

extension ExtensionReply {
    func expectStatus() throws(RPCClientError) -> ExtensionStatus {
        guard case .status(let status) = self else { throw .protocolError("unexpected result type") }
        return status
    }

    func expectResponse() throws(RPCClientError) -> ExtensionResponse {
        guard case .response(let response) = self else { throw .protocolError("unexpected result type") }
        return response
    }
}


/// Runs `body` again while it fails because nothing listens at the socket yet (`noSocket`,
/// `connectionRefused`: nothing was sent), for up to `window` of wall-clock time, backing off
/// from 10 to 200 ms. Extensions register before they listen (osquery's SDKs all do), so a
/// caller that learns of one from its registration may reach its socket too early.
package func retryingUntilListening<T>(
    for window: Duration, _ body: () async throws(RPCClientError) -> T
) async throws(RPCClientError) -> T {
    let clock = ContinuousClock()
    let deadline = clock.now + window
    var delay = Duration.milliseconds(10)
    while true {
        do {
            return try await body()
        } catch {
            switch error {
            case .noSocket, .connectionRefused:
                guard clock.now < deadline else { throw error }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .milliseconds(200))
            default:
                throw error
            }
        }
    }
}
