@_exported public import OsqueryProtocol
@_exported public import ThriftCodec

/// Why a call got no answer: no socket at the path, nobody listening, permission denied, a
/// timeout, a closed or broken connection, bytes that were not a Thrift reply.
public struct TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The client's error, for this repository's callers that tell the kinds apart.
    package let error: RPCClientError

    package init(_ error: RPCClientError) { self.error = error }

    /// The failure as one line, naming the socket or the method.
    public var description: String { error.description }
}

/// Why a call to an osquery core failed.
public enum OsqueryClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call never got an answer: no socket, refused, timed out, broken transport, …
    case transport(TransportError)
    /// The core answered with a non-zero status (for `query`: the SQLite error text).
    case status(code: Int32, message: String)
    /// A row could not be decoded into the requested Swift type.
    case decoding(row: Int, column: String, reason: String)
    /// No core answered at the socket within the wait.
    case coreUnavailable(path: String, after: Duration, lastError: TransportError?)

    /// A one-line message naming the failure and its details.
    public var description: String {
        switch self {
        case .transport(let e): "osquery call failed: \(e)"
        case .status(let code, let message): "osquery returned status \(code): \(message)"
        case .decoding(let row, let column, let reason): "cannot decode row \(row), column '\(column)': \(reason)"
        case .coreUnavailable(let path, let after, let last):
            "no osquery core answered at \(path) within \(after)" + (last.map { " (last error: \($0))" } ?? "")
        }
    }
}

/// One extension as the core lists it.
package struct RegisteredExtension: Sendable, Hashable {
    /// The uuid the core gave it.
    package var uuid: Int64
    /// The extension's name.
    package var name: String
    /// The extension's version.
    package var version: String
    /// The `sdk_version` it registered with.
    package var sdkVersion: String
    /// The `min_sdk_version` it registered with.
    package var minSDKVersion: String

    /// Creates a description from its fields.
    /// - Parameters:
    ///   - uuid: the uuid the core gave it.
    ///   - name: the extension's name.
    ///   - version: the extension's version.
    ///   - sdkVersion: the `sdk_version` it registered with.
    ///   - minSDKVersion: the `min_sdk_version` it registered with.
    package init(uuid: Int64, name: String, version: String, sdkVersion: String, minSDKVersion: String) {
        self.uuid = uuid
        self.name = name
        self.version = version
        self.sdkVersion = sdkVersion
        self.minSDKVersion = minSDKVersion
    }
}

/// One core flag as `options()` reports it.
package struct CoreOption: Sendable, Hashable {
    /// The current value.
    package var value: String
    /// The default value.
    package var defaultValue: String
    /// The gflags type name (`bool`, `string`, `int32`, …).
    package var type: String
}

/// A client for an osquery core's extension manager socket.
///
/// Every in-flight call has its own connection (there is no shared lock), so
/// calls never wait on each other, a timed-out call can never hand its late
/// reply to the next one, and a table's `generate` may call back into the core
/// (re-entrant use) while the core is waiting for that same table.
///
/// ```swift
/// let core = OsqueryClient(socket: "/var/osquery/osquery.em")
/// struct Proc: Decodable { var pid: Int; var name: String }
/// let procs = try await core.query("select pid, name from processes", as: Proc.self)
/// ```
public struct OsqueryClient: Sendable {
    /// The manager socket path.
    package let socket: String
    /// The wire-level client (every `ExtensionManager` RPC, raw types).
    package let manager: ExtensionManagerClient

    /// A client for the core at `socket`. Nothing connects until the first call.
    /// - Parameters:
    ///   - socket: the core's extension manager socket (`--extensions_socket`).
    ///   - connectTimeout: how long opening a connection may take.
    ///   - callTimeout: the deadline of one call (osquery's own default is 300 s).
    public init(socket: String, connectTimeout: Duration = .seconds(3), callTimeout: Duration = .seconds(300)) {
        self.socket = socket
        self.manager = ExtensionManagerClient(
            path: socket, options: RPCClientOptions(connectTimeout: connectTimeout, callTimeout: callTimeout))
    }

    /// A client whose calls wait up to `syncBudget` on the caller's thread before an event loop
    /// takes over (the allocation gate fixes it so a loaded machine does not change the path).
    package init(socket: String, callTimeout: Duration, syncBudget: Duration) {
        self.socket = socket
        self.manager = ExtensionManagerClient(
            path: socket, options: RPCClientOptions(callTimeout: callTimeout, syncBudget: syncBudget))
    }

    /// Waits, with back-off, until a core answers `ping` at `socket`, then returns a client.
    /// - Parameters:
    ///   - socket: the core's extension manager socket (`--extensions_socket`).
    ///   - timeout: how long to wait for the core to answer.
    ///   - callTimeout: the deadline of each later call of the client.
    /// - Returns: a client for the core, which has answered `ping`.
    /// - Throws: ``OsqueryClientError/coreUnavailable(path:after:lastError:)`` when no core answered
    ///   within `timeout` (or the waiting task was cancelled), with the last call's error.
    public static func connect(
        socket: String, timeout: Duration = .seconds(3), callTimeout: Duration = .seconds(300)
    ) async throws(OsqueryClientError) -> OsqueryClient {
        let client = OsqueryClient(socket: socket, connectTimeout: .seconds(1), callTimeout: callTimeout)
        try await client.waitUntilAvailable(timeout: timeout)
        return client
    }

    /// Waits, with back-off (20 ms doubling to 500 ms), until the core answers `ping`.
    ///
    /// A `ping` answered with status code 1 counts as no answer.
    /// - Parameter timeout: how long to wait.
    /// - Throws: ``OsqueryClientError/coreUnavailable(path:after:lastError:)`` when no core answered
    ///   within `timeout` (or the waiting task was cancelled), with the last call's error;
    ///   ``OsqueryClientError/transport(_:)`` with `permissionDenied` at once when the socket may not
    ///   be written to (waiting would not change that).
    nonisolated(nonsending) package func waitUntilAvailable(timeout: Duration) async throws(OsqueryClientError) {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var delay = Duration.milliseconds(20)
        var last: RPCClientError?
        while true {
            do {
                let status = try await manager.ping(timeout: .seconds(2))
                if status.code != 1 { return }
                last = .protocolError("ping answered code 1: \(status.message)")
            } catch {
                // Waiting does not grant access: say so now rather than after the whole timeout.
                if case .permissionDenied = error { throw .transport(TransportError(error)) }
                last = error
            }
            let now = clock.now
            if now >= deadline { throw .coreUnavailable(path: socket, after: timeout, lastError: last.map(TransportError.init)) }
            let nap = min(delay, deadline - now)
            do { try await Task.sleep(for: nap) } catch { throw .coreUnavailable(path: socket, after: timeout, lastError: last.map(TransportError.init)) }
            delay = min(delay * 2, .milliseconds(500))
        }
    }

    // MARK: - RPCs

    /// `ping`: checks that the core answers (osquery answers `{0, "pong"}`).
    /// - Parameter timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection); ``OsqueryClientError/status(code:message:)`` when the core
    ///   answers with a non-zero status.
    nonisolated(nonsending) public func ping(timeout: Duration? = nil) async throws(OsqueryClientError) {
        try Self.check(try await pingStatus(timeout: timeout))
    }

    /// `ping`'s status as the core answered it (a non-zero code is not thrown).
    nonisolated(nonsending) package func pingStatus(timeout: Duration? = nil) async throws(OsqueryClientError) -> ExtensionStatus {
        do { return try await manager.ping(timeout: timeout) } catch { throw .transport(TransportError(error)) }
    }

    /// `query`: runs SQL and returns rows of strings (integers in decimal, NULL as `""`, as osquery does).
    /// - Parameters:
    ///   - sql: the statement to run.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the rows, each a column name → value dictionary.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection); ``OsqueryClientError/status(code:message:)`` when the core
    ///   answers with a non-zero status (for SQL, SQLite's error text, e.g. `no such table: …`).
    nonisolated(nonsending) public func query(_ sql: String, timeout: Duration? = nil) async throws(OsqueryClientError) -> [[String: String]] {
        try await queryRows(sql, timeout: timeout).map { row in
            var out: [String: String] = [:]
            out.reserveCapacity(row.count)
            for e in row.entries { out[e.key.lossyString] = e.value.lossyString }
            return out
        }
    }

    /// `query` with rows kept as the wire sent them (byte-faithful, in column order).
    /// - Parameters:
    ///   - sql: the statement to run.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the rows as the core sent them.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection); ``OsqueryClientError/status(code:message:)`` when the core
    ///   answers with a non-zero status (for SQL, SQLite's error text, e.g. `no such table: …`).
    nonisolated(nonsending) package func queryRows(_ sql: String, timeout: Duration? = nil) async throws(OsqueryClientError) -> [StringMap] {
        let response: (status: ExtensionStatus, rows: [StringMap])
        do { response = try await manager.queryRows(ThriftString(sql), timeout: timeout) } catch { throw .transport(TransportError(error)) }
        try Self.check(response.status)
        return response.rows
    }

    /// `query` with the rows left in the core's reply: the fastest way to take a big result.
    /// Nothing is built per row or cell until it is read (`row["name"]`, `ReplyRows.Row.stringMap`);
    /// the same cells, in the same order, as ``queryRows(_:timeout:)``.
    /// - Parameters:
    ///   - sql: the statement to run.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the rows, still in the reply's bytes.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection); ``OsqueryClientError/status(code:message:)`` when the core
    ///   answers with a non-zero status (for SQL, SQLite's error text, e.g. `no such table: …`).
    nonisolated(nonsending) package func queryReplyRows(_ sql: String, timeout: Duration? = nil) async throws(OsqueryClientError) -> ReplyRows {
        let response: (status: ExtensionStatus, rows: ReplyRows)
        do { response = try await manager.queryReplyRows(ThriftString(sql), timeout: timeout) } catch { throw .transport(TransportError(error)) }
        try Self.check(response.status)
        return response.rows
    }

    /// `query`, decoding each row into `T`: a property matches the column of the same name or
    /// its snake_case form (`parentPid` ↔ `parent_pid`); integers read decimal text, `Double` and
    /// `Float` floating-point text, `Bool` `1`/`0`/`true`/`false`/`yes`/`no`; an `Optional` is nil
    /// when the column is missing or empty (osquery renders NULL as the empty string).
    /// - Parameters:
    ///   - sql: the statement to run.
    ///   - type: the `Decodable` type of one row.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: one `T` per row, in the result's order.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection); ``OsqueryClientError/status(code:message:)`` when the core
    ///   answers with a non-zero status (for SQL, SQLite's error text, e.g. `no such table: …`);
    ///   ``OsqueryClientError/decoding(row:column:reason:)`` when a row does not decode into `T`.
    nonisolated(nonsending) public func query<T: Decodable>(_ sql: String, as type: T.Type, timeout: Duration? = nil)
        async throws(OsqueryClientError) -> [T]
    {
        let rows = try await queryRows(sql, timeout: timeout)
        var out: [T] = []
        out.reserveCapacity(rows.count)
        for (i, row) in rows.enumerated() {
            out.append(try RowDecoder.decode(T.self, from: row, rowIndex: i))
        }
        return out
    }

    /// The first row of `query(sql, as:)`, or nil when there is none.
    /// - Parameters:
    ///   - sql: the statement to run.
    ///   - type: the `Decodable` type of the row.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the first row as `T`, or nil when the result is empty.
    /// - Throws: as ``query(_:as:timeout:)`` does (every row is decoded).
    nonisolated(nonsending) package func queryRow<T: Decodable>(_ sql: String, as type: T.Type, timeout: Duration? = nil)
        async throws(OsqueryClientError) -> T?
    {
        try await query(sql, as: type, timeout: timeout).first
    }

    /// A core's answer other than code 0, as ``OsqueryClientError/status(code:message:)``.
    static func check(_ status: ExtensionStatus) throws(OsqueryClientError) {
        guard status.code == 0 else { throw .status(code: status.code, message: status.message.lossyString) }
    }

    /// `getQueryColumns`: the result columns of `sql` as `(name, type)` in select order.
    /// - Parameters:
    ///   - sql: the statement whose columns are wanted.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: each column's name and osquery type name (`TEXT`, `BIGINT`, …).
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection); ``OsqueryClientError/status(code:message:)`` when the core
    ///   answers with a non-zero status (for SQL, SQLite's error text, e.g. `no such table: …`).
    nonisolated(nonsending) package func queryColumns(_ sql: String, timeout: Duration? = nil) async throws(OsqueryClientError)
        -> [(name: String, type: String)]
    {
        let response: ExtensionResponse
        do { response = try await manager.getQueryColumns(ThriftString(sql), timeout: timeout) } catch {
            throw .transport(TransportError(error))
        }
        try Self.check(response.status)
        return response.response.compactMap { row in
            row.entries.first.map { ($0.key.lossyString, $0.value.lossyString) }
        }
    }

    /// `extensions`: every registered extension, by uuid (the core is not listed).
    /// - Parameter timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the registered extensions by uuid.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection).
    nonisolated(nonsending) package func extensions(timeout: Duration? = nil) async throws(OsqueryClientError) -> [Int64: RegisteredExtension] {
        let list: InternalExtensionList
        do { list = try await manager.extensions(timeout: timeout) } catch { throw .transport(TransportError(error)) }
        var out: [Int64: RegisteredExtension] = [:]
        for (uuid, info) in list {
            out[uuid] = RegisteredExtension(
                uuid: uuid, name: info.name.lossyString, version: info.version.lossyString,
                sdkVersion: info.sdkVersion.lossyString, minSDKVersion: info.minSDKVersion.lossyString)
        }
        return out
    }

    /// `options`: every core flag by name.
    /// - Parameter timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: each flag's value, default and type, by flag name.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection).
    nonisolated(nonsending) package func options(timeout: Duration? = nil) async throws(OsqueryClientError) -> [String: CoreOption] {
        let list: InternalOptionList
        do { list = try await manager.options(timeout: timeout) } catch { throw .transport(TransportError(error)) }
        var out: [String: CoreOption] = [:]
        for (name, o) in list {
            out[name.lossyString] = CoreOption(
                value: o.value.lossyString, defaultValue: o.defaultValue.lossyString, type: o.type.lossyString)
        }
        return out
    }

    /// `call`: runs a registry plugin through the core (the core routes it to its owner).
    /// A non-zero status is returned, not thrown: some registries (logger `features`) carry data in it.
    /// - Parameters:
    ///   - registry: the registry (`table`, `config`, `logger`, …).
    ///   - item: the plugin's name within it.
    ///   - request: the plugin's request map (e.g. `["action": "generate", "context": "{}"]`).
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the plugin's response: its status and rows.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection).
    nonisolated(nonsending) public func call(registry: String, item: String, request: [String: String], timeout: Duration? = nil)
        async throws(OsqueryClientError) -> PluginResponse
    {
        PluginResponse(try await callRaw(registry: registry, item: item, request: request, timeout: timeout))
    }

    /// `call`'s response as the wire value (rows' bytes as they are, keys in the order sent).
    nonisolated(nonsending) package func callRaw(
        registry: String, item: String, request: [String: String], timeout: Duration? = nil
    ) async throws(OsqueryClientError) -> ExtensionResponse {
        var req = ExtensionPluginRequest(minimumCapacity: request.count)
        for (k, v) in request { req[ThriftString(k)] = ThriftString(v) }
        do {
            return try await manager.call(
                registry: ThriftString(registry), item: ThriftString(item), request: req, timeout: timeout)
        } catch { throw .transport(TransportError(error)) }
    }

    /// `registerExtension` (raw; the extension runner does this for you).
    /// - Parameters:
    ///   - info: the extension's name, version and SDK versions.
    ///   - registry: registry → plugin name → route info, as registration sends it.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the core's status; on success (code 0) it carries the new uuid.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection).
    nonisolated(nonsending) package func registerExtension(info: InternalExtensionInfo, registry: ExtensionRegistry, timeout: Duration? = nil)
        async throws(OsqueryClientError) -> ExtensionStatus
    {
        do { return try await manager.registerExtension(info: info, registry: registry, timeout: timeout) } catch {
            throw .transport(TransportError(error))
        }
    }

    /// `deregisterExtension`: asks the core to drop the extension registered as `uuid`.
    /// - Parameters:
    ///   - uuid: the uuid the core gave the extension at registration.
    ///   - timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Returns: the core's status (non-zero when it holds no such uuid).
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection).
    nonisolated(nonsending) package func deregisterExtension(uuid: Int64, timeout: Duration? = nil) async throws(OsqueryClientError)
        -> ExtensionStatus
    {
        do { return try await manager.deregisterExtension(uuid: uuid, timeout: timeout) } catch {
            throw .transport(TransportError(error))
        }
    }

    /// `shutdown`: asks the core to stop (osquery's manager treats it as a no-op).
    /// - Parameter timeout: the call's deadline; nil: the client's `callTimeout`.
    /// - Throws: ``OsqueryClientError/transport(_:)`` when the call gets no answer (no socket, refused,
    ///   timed out, broken connection).
    nonisolated(nonsending) package func shutdown(timeout: Duration? = nil) async throws(OsqueryClientError) {
        do { try await manager.shutdown(timeout: timeout) } catch { throw .transport(TransportError(error)) }
    }

    /// Closes idle connections; a later call opens a new one.
    public func close() { manager.close() }
}
