/// Work for the core: queries to run, discovery queries gating them, and an optional accelerate interval.
public struct DistributedQueries: Sendable, Hashable {
    /// Query id → SQL.
    public var queries: [String: String]
    /// Query id → discovery SQL (a query runs only if its discovery returns rows).
    public var discovery: [String: String]
    /// Seconds for which the core should check in more often.
    public var accelerate: Int?

    /// Work with queries, optional discovery gates, and an optional accelerate interval.
    /// - Parameters:
    ///   - queries: query id → SQL.
    ///   - discovery: query id → discovery SQL; a query runs only if its discovery returns rows.
    ///   - accelerate: seconds for which the core should check in more often; nil: not sent.
    public init(queries: [String: String] = [:], discovery: [String: String] = [:], accelerate: Int? = nil) {
        self.queries = queries
        self.discovery = discovery
        self.accelerate = accelerate
    }

    /// The `results` JSON of a getQueries reply.
    package var json: String {
        var members: [(String, JSONValue)] = [
            ("queries", .object(queries.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))
        ]
        if !discovery.isEmpty {
            members.append(("discovery", .object(discovery.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        if let accelerate { members.append(("accelerate", .number(String(accelerate)))) }
        return JSONValue.object(members).serialized
    }
}

/// Resource use of one distributed query.
public struct QueryStats: Sendable, Hashable {
    /// Wall-clock time in milliseconds.
    public var wallTimeMs: Int64
    /// User CPU time.
    public var userTime: Int64
    /// System CPU time.
    public var systemTime: Int64
    /// Memory used, in bytes.
    public var memory: Int64

    /// Stats from their parts.
    /// - Parameters:
    ///   - wallTimeMs: wall-clock time in milliseconds.
    ///   - userTime: user CPU time.
    ///   - systemTime: system CPU time.
    ///   - memory: memory used, in bytes.
    package init(wallTimeMs: Int64 = 0, userTime: Int64 = 0, systemTime: Int64 = 0, memory: Int64 = 0) {
        self.wallTimeMs = wallTimeMs
        self.userTime = userTime
        self.systemTime = systemTime
        self.memory = memory
    }
}

/// What the core reports after running distributed queries.
public struct DistributedResults: Sendable, Hashable {
    /// Query id → rows.
    public var rows: [String: [[String: String]]]
    /// Query id → status code (0 = success).
    public var statuses: [String: Int]
    /// Query id → error message.
    public var messages: [String: String]
    /// Query id → resource use.
    public var stats: [String: QueryStats]

    /// Results from their parts.
    /// - Parameters:
    ///   - rows: query id → rows.
    ///   - statuses: query id → status code (0 = success).
    ///   - messages: query id → error message.
    ///   - stats: query id → resource use.
    package init(
        rows: [String: [[String: String]]] = [:], statuses: [String: Int] = [:], messages: [String: String] = [:],
        stats: [String: QueryStats] = [:]
    ) {
        self.rows = rows
        self.statuses = statuses
        self.messages = messages
        self.stats = stats
    }

    /// Parses the `results` JSON of a writeResults request (numbers as numbers or strings).
    /// Missing members are left empty.
    /// - Parameter json: the request's `results` value.
    /// - Throws: `JSONError` when `json` is not valid JSON.
    package init(json: String) throws(JSONError) {
        self.init()
        let doc = try JSONValue.parse(json)
        for (id, list) in doc["queries"]?.members ?? [] {
            rows[id] = (list.array ?? []).map { row in
                var out: [String: String] = [:]
                for (k, v) in row.members ?? [] { out[k] = v.text ?? (v == .null ? "" : v.serialized) }
                return out
            }
        }
        for (id, v) in doc["statuses"]?.members ?? [] { statuses[id] = Int(v.int64 ?? 0) }
        for (id, v) in doc["messages"]?.members ?? [] { messages[id] = v.text ?? "" }
        for (id, v) in doc["stats"]?.members ?? [] {
            stats[id] = QueryStats(
                wallTimeMs: v["wall_time_ms"]?.int64 ?? v["wall_time"]?.int64 ?? 0,
                userTime: v["user_time"]?.int64 ?? 0, systemTime: v["system_time"]?.int64 ?? 0,
                memory: v["memory"]?.int64 ?? 0)
        }
    }
}

/// A distributed plugin: hands the core queries and receives their results.
public struct DistributedPlugin: ExtensionPlugin {
    /// The plugin's name (`--distributed_plugin=<name>`).
    public let name: String
    let getQueries: @Sendable () async throws -> DistributedQueries
    let writeResults: @Sendable (DistributedResults) async throws -> Void

    /// `distributed`.
    public var registry: String { "distributed" }

    /// A distributed plugin named `name`.
    /// - Parameters:
    ///   - name: the plugin's name (what `--distributed_plugin` names).
    ///   - getQueries: the work for the core's next check-in.
    ///   - writeResults: receives the results of the queries the core ran.
    public init(
        _ name: String, getQueries: @escaping @Sendable () async throws -> DistributedQueries,
        writeResults: @escaping @Sendable (DistributedResults) async throws -> Void
    ) {
        self.name = name
        self.getQueries = getQueries
        self.writeResults = writeResults
    }

    /// Answers `getQueries` with one row holding the queries' JSON under `results`, and passes
    /// `writeResults`' parsed `results` to the `writeResults` closure; any other action, or results
    /// that are not JSON, get a failure status.
    /// - Parameter request: the core's request (`action`, and for `writeResults` its `results` JSON).
    /// - Returns: the reply for the core.
    /// - Throws: what `getQueries` or `writeResults` throws; the extension answers the core with
    ///   status 1 and the error's description.
    public func handle(_ request: PluginRequest) async throws -> PluginResponse {
        switch request.action {
        case "getQueries":
            return .ok([["results": try await getQueries().json]])
        case "writeResults":
            let results: DistributedResults
            do { results = try DistributedResults(json: request["results"] ?? "{}") } catch {
                return .failure("distributed \(name): cannot parse results: \(error)")
            }
            try await writeResults(results)
            return .ok()
        default:
            return .failure("distributed \(name): unknown action \(request.action ?? "(none)")")
        }
    }
}
