package import OsqueryProtocol

/// A table plugin: a schema and a way to produce rows (and, for a store, take writes).
///
/// ```swift
/// let hello = Table("hello", columns: [.text("greeting")]) { _ in [["greeting": "hello"]] }
/// ```
/// Rows are sent with only the columns the query uses; budgets in ``TableLimits`` apply.
/// Read-only tables answer writes with `readonly`.
///
/// `generate` runs in a task that is cancelled when the core gives up on the call (its call
/// timed out and it closed the connection), when the extension stops, or past the table's
/// ``TableLimits/deadline``: a long generate checks `Task.isCancelled` (or calls
/// `try Task.checkCancellation()`) and stops early, as a Go extension watches its `ctx`.
public struct Table: ExtensionPlugin {
    /// Columns, aliases, attributes and docs.
    package let schema: TableSchema
    /// Deadline and budgets for each generate.
    package let limits: TableLimits
    let source: Source
    let layout: RowLayout

    enum Source: Sendable {
        case generate(@Sendable (QueryContext) async throws -> [Row])
        case write(@Sendable (QueryContext, inout RowWriter) async throws -> Void)
        case store(any TableStore)
    }

    /// `table`.
    public var registry: String { "table" }
    /// The table's name in SQL.
    public var name: String { schema.name }
    /// The route info registration sends: one map per column, alias and column alias, then the
    /// attributes.
    public var routes: [[String: String]] { schema.routes.map(\.strings) }
    /// True when backed by a ``TableStore`` (writes are passed to it).
    package var isWritable: Bool { if case .store = source { true } else { false } }

    /// A read-only table from its columns and a generate closure.
    /// - Parameters:
    ///   - name: the table's name in SQL.
    ///   - columns: the columns, in order (the order ``RowWriter`` takes values in).
    ///   - aliases: other names the table answers to.
    ///   - columnAliases: other names for columns.
    ///   - documentation: the description, examples and notes of the table's spec (`--spec`).
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: makes the rows of one query from its context; what it throws is the query's error.
    public init(
        _ name: String, columns: [Column], aliases: [String] = [], columnAliases: [ColumnAlias] = [],
        documentation: TableDocumentation = TableDocumentation(),
        limits: TableLimits = TableLimits(), generate: @escaping @Sendable (QueryContext) async throws -> [Row]
    ) {
        self.init(
            schema: TableSchema(
                name: name, columns: columns, aliases: aliases, columnAliases: columnAliases,
                documentation: documentation), limits: limits, generate: generate)
    }

    /// A read-only table from a schema and a generate closure.
    /// - Parameters:
    ///   - schema: the table's name, columns, aliases, attributes and documentation.
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: makes the rows of one query from its context; what it throws is the query's error.
    package init(
        schema: TableSchema, limits: TableLimits = TableLimits(),
        generate: @escaping @Sendable (QueryContext) async throws -> [Row]
    ) {
        self.init(schema: schema, limits: limits, source: .generate(generate))
    }

    /// A read-only table whose generate writes its rows into a ``RowWriter`` instead of
    /// returning them: the fastest way to serve many rows (no dictionary or array per row).
    ///
    /// ```swift
    /// Table("numbers", columns: [.bigint("n"), .text("name")]) { context, rows in
    ///     for n in 0..<100_000 { rows.add(n, "n\(n)") }
    /// }
    /// ```
    /// - Parameters:
    ///   - name: the table's name in SQL.
    ///   - columns: the columns, in order (the order ``RowWriter`` takes values in).
    ///   - aliases: other names the table answers to.
    ///   - columnAliases: other names for columns.
    ///   - documentation: the description, examples and notes of the table's spec (`--spec`).
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: writes the rows of one query; what it throws is the query's error.
    public init(
        _ name: String, columns: [Column], aliases: [String] = [], columnAliases: [ColumnAlias] = [],
        documentation: TableDocumentation = TableDocumentation(),
        limits: TableLimits = TableLimits(), generate: @escaping @Sendable (QueryContext, inout RowWriter) async throws -> Void
    ) {
        self.init(
            schema: TableSchema(
                name: name, columns: columns, aliases: aliases, columnAliases: columnAliases,
                documentation: documentation), limits: limits, generate: generate)
    }

    /// A read-only table from a schema and a generate closure that writes its rows into a
    /// ``RowWriter``.
    /// - Parameters:
    ///   - schema: the table's name, columns, aliases, attributes and documentation.
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: writes the rows of one query; what it throws is the query's error.
    package init(
        schema: TableSchema, limits: TableLimits = TableLimits(),
        generate: @escaping @Sendable (QueryContext, inout RowWriter) async throws -> Void
    ) {
        self.init(schema: schema, limits: limits, source: .write(generate))
    }

    /// A writable table whose rows and writes are handled by `store`.
    /// - Parameters:
    ///   - name: the table's name in SQL.
    ///   - columns: the columns, in order (the order ``RowWriter`` takes values in).
    ///   - aliases: other names the table answers to.
    ///   - columnAliases: other names for columns.
    ///   - documentation: the description, examples and notes of the table's spec (`--spec`).
    ///   - limits: the deadline and budgets of each generate.
    ///   - store: produces the rows and takes the inserts, updates and deletes.
    public init(
        _ name: String, columns: [Column], aliases: [String] = [], columnAliases: [ColumnAlias] = [],
        documentation: TableDocumentation = TableDocumentation(),
        limits: TableLimits = TableLimits(), store: any TableStore
    ) {
        self.init(
            schema: TableSchema(
                name: name, columns: columns, aliases: aliases, columnAliases: columnAliases,
                documentation: documentation), limits: limits, source: .store(store))
    }

    private init(schema: TableSchema, limits: TableLimits, source: Source) {
        self.schema = schema
        self.limits = limits
        self.source = source
        self.layout = RowLayout(schema)
    }

    /// The table's spec JSON.
    package var spec: JSONValue { schema.specJSON(writable: isWritable) }

    /// Calls the store's ``TableStore/shutdown()``; other tables have nothing to do.
    public func shutdown() async {
        if case .store(let store) = source { await store.shutdown() }
    }

    /// Answers the core's table actions: `generate` (the rows, within the table's ``TableLimits``), `columns` (the
    /// route info), and `insert`, `update` and `delete` (passed to the store; `readonly` without one).
    /// - Parameter request: the core's request (`action`, `context`, and a write's values and rowids).
    /// - Returns: the rows or the write's result; a generate's error, deadline or exceeded budget,
    ///   and an unknown action, are a failure status.
    /// - Throws: ``PluginError`` when a write's `context` or `json_value_array` does not parse; what
    ///   the store's `insert`, `update` or `delete` throws.
    public func handle(_ request: PluginRequest) async throws -> PluginResponse {
        PluginResponse(try await wireResponse(request))
    }

    /// ``handle(_:)``'s answer as the wire value (rows' bytes as they are, keys in column order).
    package func wireResponse(_ request: PluginRequest) async throws -> ExtensionResponse {
        guard let action = request.action else { return .failure("Table plugins must include a request action") }
        switch action {
        case "generate":
            return await generateResponse(request)
        case "columns":
            return .ok(schema.routes)
        case "insert", "update", "delete":
            return try await write(action, request)
        default:
            return .failure("Unknown table plugin action: \(action)")
        }
    }

    func context(_ request: PluginRequest) throws -> QueryContext {
        do {
            return try QueryContext(json: request["context"] ?? "", core: request.core)
        } catch {
            throw PluginError("table \(name): cannot parse the query context: \(error)")
        }
    }

    /// ``handle(_:)`` as the extension's server sends it: a generate's rows are encoded straight
    /// to their wire form (`ServerResponse.encoded`) with the same columns, values, budgets and
    /// errors, without a map per row.
    @_spi(FastPath) public func reply(to request: PluginRequest) async throws -> PluginReply {
        PluginReply(try await serverResponse(request))
    }

    func serverResponse(_ request: PluginRequest) async throws -> ServerResponse {
        guard request.action == "generate" else { return .rows(try await wireResponse(request)) }
        do {
            let ctx = try context(request)
            let rows: [Row]
            switch source {
            case .write(let f):
                return .encoded(ExtensionStatus(code: 0, message: "OK"), try await writtenRows(f, ctx))
            case .generate(let f): rows = try await generated(f, ctx)
            case .store(let store): rows = try await generated({ try await store.generate($0) }, ctx)
            }
            let encoded = try await layout.encodeWireConcurrently(rows, context: ctx, limits: limits, table: name)
            // The rows are freed after the reply is sent, while the core works on it.
            return .encoded(
                ExtensionStatus(code: 0, message: "OK"), encoded, releaseAfterSending: rows.count >= Self.releaseAfterSendingFrom ? rows : nil)
        } catch {
            return .rows(failure(error))
        }
    }

    /// Rows of a reply this long are freed on a pool thread once it is sent, off the core's wait;
    /// fewer are cheap to free at once.
    static let releaseAfterSendingFrom = 1024

    /// Runs generate (under the deadline) and encodes the used columns of the rows (under the budgets).
    func generateResponse(_ request: PluginRequest) async -> ExtensionResponse {
        do {
            let ctx = try context(request)
            let rows: [Row]
            switch source {
            case .write(let f): return .ok(try await writtenRows(f, ctx).decoded())
            case .generate(let f): rows = try await generated(f, ctx)
            case .store(let store): rows = try await generated({ try await store.generate($0) }, ctx)
            }
            return .ok(try layout.encode(rows, context: ctx, limits: limits, table: name))
        } catch {
            return failure(error)
        }
    }

    /// Runs a generate closure under the deadline.
    func generated(_ body: @escaping @Sendable (QueryContext) async throws -> [Row], _ ctx: QueryContext) async throws
        -> [Row]
    {
        guard let deadline = limits.deadline else { return try await body(ctx) }
        return try await runWithDeadline(deadline, what: "table \(name): generate") { try await body(ctx) }
    }

    /// The status a failed generate answers with.
    func failure(_ error: any Error) -> ExtensionResponse {
        switch error {
        case let e as PluginError: .failure(e.message)
        case is CancellationError: .failure("table \(name): generate was cancelled")
        default: .failure(describe(error))
        }
    }

    /// Runs a ``RowWriter`` generate (under the deadline) and hands over what it wrote.
    func writtenRows(_ f: @escaping @Sendable (QueryContext, inout RowWriter) async throws -> Void, _ ctx: QueryContext)
        async throws -> EncodedRows
    {
        let used = try layout.columnsToSend([], context: ctx, limits: limits, table: name)
        let (layout, limits, name, columnCount) = (layout, limits, name, schema.columns.count)
        let run: @Sendable () async throws -> EncodedRows = {
            var writer = RowWriter(layout: layout, columnCount: columnCount, used: used, limits: limits, table: name)
            try await f(ctx, &writer)
            return try writer.finish()
        }
        if let deadline = limits.deadline { return try await runWithDeadline(deadline, what: "table \(name): generate", run) }
        return try await run()
    }

    func write(_ action: String, _ request: PluginRequest) async throws -> ExtensionResponse {
        guard case .store(let store) = source else { return .ok([MutationResult.readonly.row]) }
        let ctx = try context(request)
        let columns = schema.columns.map(\.name)
        func values() throws -> [WriteValue] {
            guard let text = request["json_value_array"] else { return [] }
            guard let array = try? JSONValue.parse(text).array else {
                throw PluginError("table \(name): json_value_array is not a JSON array")
            }
            return array.map(WriteValue.init)
        }
        func rowid(_ key: String) -> Int64? { request[key].flatMap { Int64($0) } }
        let result: MutationResult
        switch action {
        case "insert":
            let auto = request["auto_rowid"] == "true"
            result = try await store.insert(
                InsertRequest(values: try values(), columns: columns, rowid: rowid("id"), autoRowid: auto, context: ctx))
        case "update":
            guard let id = rowid("id") else { return .ok([MutationResult.failure("update without a rowid").row]) }
            result = try await store.update(
                UpdateRequest(rowid: id, newRowid: rowid("new_id"), values: try values(), columns: columns, context: ctx))
        default:
            guard let id = rowid("id") else { return .ok([MutationResult.failure("delete without a rowid").row]) }
            result = try await store.delete(DeleteRequest(rowid: id, context: ctx))
        }
        return .ok([result.row])
    }
}
