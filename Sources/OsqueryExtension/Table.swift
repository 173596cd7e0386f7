import Synchronization

/// Per-table limits. Past them the core gets a status with a clear message,
/// never a broken transport.
public struct TableLimits: Sendable, Hashable {
    /// How long `generate` may run; the generating task is cancelled after it.
    public var deadline: Duration?
    /// The most rows one reply may carry.
    public var maxRows: Int?
    /// The most bytes of keys and values one reply may carry. The default, 64 MiB,
    /// stays clear of Thrift's usual 100 MiB message limit.
    public var maxBytes: Int?

    /// Limits; the default keeps replies under 64 MiB.
    /// - Parameters:
    ///   - deadline: how long `generate` may run; nil: no deadline.
    ///   - maxRows: the most rows one reply may carry; nil: no limit.
    ///   - maxBytes: the most bytes of keys and values one reply may carry; nil: no limit.
    public init(deadline: Duration? = nil, maxRows: Int? = nil, maxBytes: Int? = 64 << 20) {
        self.deadline = deadline
        self.maxRows = maxRows
        self.maxBytes = maxBytes
    }

    /// No deadline, no row limit, 64 MiB.
    public static let `default` = TableLimits()
    /// No limits at all.
    public static let unlimited = TableLimits(deadline: nil, maxRows: nil, maxBytes: nil)
}

/// The values of one `insert` or `update`, typed as osquery sends them.
public enum WriteValue: Sendable, Hashable, CustomStringConvertible {
    /// SQL NULL.
    case null
    /// An integer (JSON booleans arrive as 1 and 0).
    case integer(Int64)
    /// A number that is not a 64-bit integer.
    case double(Double)
    /// Text; a JSON array or object arrives as its JSON text.
    case text(String)

    /// The value as text (nil for NULL).
    public var text: String? {
        switch self {
        case .null: nil
        case .integer(let v): String(v)
        case .double(let v): String(v)
        case .text(let s): s
        }
    }

    /// The value as text, `NULL` for NULL.
    public var description: String { text ?? "NULL" }

    /// The value of one JSON array element of `json_value_array`.
    /// - Parameter json: the element: null, a boolean, a number, a string, or (as its text) anything else.
    public init(_ json: JSONValue) {
        switch json {
        case .null: self = .null
        case .bool(let b): self = .integer(b ? 1 : 0)
        case .number(let n): self = Int64(n).map { .integer($0) } ?? Double(n).map { .double($0) } ?? .text(n)
        case .string(let s): self = .text(s)
        default: self = .text(json.serialized)
        }
    }
}

/// An `INSERT`: one value per declared column.
public struct InsertRequest: Sendable {
    /// The values in column order.
    public var values: [WriteValue]
    /// The column names, in order.
    public var columns: [String]
    /// The rowid SQLite chose or the statement gave (nil when `autoRowid`).
    public var rowid: Int64?
    /// True when the table must pick the rowid (and return it).
    public var autoRowid: Bool
    /// The statement's context.
    public var context: QueryContext

    /// The value for `column`.
    /// - Parameter column: a declared column's name.
    /// - Returns: its value, or `.null` when there is no such column.
    public subscript(column: String) -> WriteValue { value(of: column, columns: columns, values: values) }
}

/// An `UPDATE` of the row with `rowid`.
public struct UpdateRequest: Sendable {
    /// The rowid of the row to change.
    public var rowid: Int64
    /// Set when the statement changes the rowid.
    public var newRowid: Int64?
    /// The new values in column order.
    public var values: [WriteValue]
    /// The column names, in order.
    public var columns: [String]
    /// The statement's context.
    public var context: QueryContext

    /// The new value for `column`.
    /// - Parameter column: a declared column's name.
    /// - Returns: its value, or `.null` when there is no such column.
    public subscript(column: String) -> WriteValue { value(of: column, columns: columns, values: values) }
}

/// The value of `column` in a write request's values (`.null` when absent).
private func value(of column: String, columns: [String], values: [WriteValue]) -> WriteValue {
    guard let i = columns.firstIndex(of: column), i < values.count else { return .null }
    return values[i]
}

/// A `DELETE` of the row with `rowid`.
public struct DeleteRequest: Sendable {
    /// The rowid of the row to delete.
    public var rowid: Int64
    /// The statement's context.
    public var context: QueryContext
}

/// How a write went; osquery turns these into SQLite results.
public enum MutationResult: Sendable, Hashable {
    /// Done. An insert returns the rowid it used.
    case success(rowid: Int64? = nil)
    /// SQLITE_CONSTRAINT.
    case constraint
    /// SQLITE_READONLY: "table … may not be modified".
    case readonly
    /// SQLITE_ERROR with a message.
    case failure(String)

    /// Done, no rowid to report.
    public static var success: MutationResult { .success(rowid: nil) }

    var row: StringMap {
        var m = StringMap(minimumCapacity: 2)
        switch self {
        case .success(let id):
            m.append("status", "success")
            if let id { m.append("id", ThriftString(String(id))) }
        case .constraint: m.append("status", "constraint")
        case .readonly: m.append("status", "readonly")
        case .failure(let msg):
            m.append("status", "failure")
            m.append("message", ThriftString(msg))
        }
        return m
    }
}

/// The state behind a writable table. It is an actor, so its data is race-free
/// without locks; calls to one store run one at a time.
public protocol TableStore: Actor {
    /// The rows for a query. Include a `rowid` cell so updates and deletes can find rows.
    /// - Parameter context: the query's constraints and used columns.
    /// - Returns: the rows; only the columns the query uses are sent.
    /// - Throws: any error; the core gets its description as the query's error (a ``PluginError``'s
    ///   message as it is).
    func generate(_ context: QueryContext) async throws -> [Row]
    /// `INSERT`. Defaults to `.readonly`.
    /// - Parameter request: the values and rowid to insert.
    /// - Returns: how it went; an insert that picked the rowid returns it in `.success(rowid:)`.
    /// - Throws: any error; the core gets a failure status with its description.
    func insert(_ request: InsertRequest) async throws -> MutationResult
    /// `UPDATE`. Defaults to `.readonly`.
    /// - Parameter request: the row's rowid and its new values.
    /// - Returns: how it went.
    /// - Throws: any error; the core gets a failure status with its description.
    func update(_ request: UpdateRequest) async throws -> MutationResult
    /// `DELETE`. Defaults to `.readonly`.
    /// - Parameter request: the rowid of the row to delete.
    /// - Returns: how it went.
    /// - Throws: any error; the core gets a failure status with its description.
    func delete(_ request: DeleteRequest) async throws -> MutationResult
    /// Called when the extension stops.
    func shutdown() async
}

extension TableStore {
    /// Refuses the insert (read-only).
    /// - Parameter request: the insert, unused.
    /// - Returns: `.readonly`.
    /// - Throws: never (the protocol requirement is `throws`).
    public func insert(_ request: InsertRequest) async throws -> MutationResult { .readonly }
    /// Refuses the update (read-only).
    /// - Parameter request: the update, unused.
    /// - Returns: `.readonly`.
    /// - Throws: never (the protocol requirement is `throws`).
    public func update(_ request: UpdateRequest) async throws -> MutationResult { .readonly }
    /// Refuses the delete (read-only).
    /// - Parameter request: the delete, unused.
    /// - Returns: `.readonly`.
    /// - Throws: never (the protocol requirement is `throws`).
    public func delete(_ request: DeleteRequest) async throws -> MutationResult { .readonly }
    /// Does nothing.
    public func shutdown() async {}
}

/// A table plugin: a schema and a way to produce rows (and, for a store, take writes).
///
/// ```swift
/// let hello = Table("hello", columns: [.text("greeting")]) { _ in [["greeting": "hello"]] }
/// ```
/// Rows are sent with only the columns the query uses; budgets in ``TableLimits`` apply.
/// Read-only tables answer writes with `readonly`.
public struct Table: ExtensionPlugin {
    /// Columns, aliases, attributes and docs.
    public let schema: TableSchema
    /// Deadline and budgets for each generate.
    public let limits: TableLimits
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
    public var routes: [StringMap] { schema.routes }
    /// True when backed by a ``TableStore`` (writes are passed to it).
    public var isWritable: Bool { if case .store = source { true } else { false } }

    /// A read-only table from its columns and a generate closure.
    /// - Parameters:
    ///   - name: the table's name in SQL.
    ///   - columns: the columns, in order (the order ``RowWriter`` takes values in).
    ///   - aliases: other names the table answers to.
    ///   - columnAliases: other names for columns.
    ///   - attributes: osquery's table attributes (none by default).
    ///   - documentation: the description, examples and notes of the table's spec (`--spec`).
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: makes the rows of one query from its context; what it throws is the query's error.
    public init(
        _ name: String, columns: [Column], aliases: [String] = [], columnAliases: [TableSchema.ColumnAlias] = [],
        attributes: TableAttributes = [], documentation: TableDocumentation = TableDocumentation(),
        limits: TableLimits = .default, generate: @escaping @Sendable (QueryContext) async throws -> [Row]
    ) {
        self.init(
            schema: TableSchema(
                name: name, columns: columns, aliases: aliases, columnAliases: columnAliases, attributes: attributes,
                documentation: documentation), limits: limits, generate: generate)
    }

    /// A read-only table from a schema and a generate closure.
    /// - Parameters:
    ///   - schema: the table's name, columns, aliases, attributes and documentation.
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: makes the rows of one query from its context; what it throws is the query's error.
    public init(
        schema: TableSchema, limits: TableLimits = .default,
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
    ///   - attributes: osquery's table attributes (none by default).
    ///   - documentation: the description, examples and notes of the table's spec (`--spec`).
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: writes the rows of one query; what it throws is the query's error.
    public init(
        _ name: String, columns: [Column], aliases: [String] = [], columnAliases: [TableSchema.ColumnAlias] = [],
        attributes: TableAttributes = [], documentation: TableDocumentation = TableDocumentation(),
        limits: TableLimits = .default, generate: @escaping @Sendable (QueryContext, inout RowWriter) async throws -> Void
    ) {
        self.init(
            schema: TableSchema(
                name: name, columns: columns, aliases: aliases, columnAliases: columnAliases, attributes: attributes,
                documentation: documentation), limits: limits, generate: generate)
    }

    /// A read-only table from a schema and a generate closure that writes its rows into a
    /// ``RowWriter``.
    /// - Parameters:
    ///   - schema: the table's name, columns, aliases, attributes and documentation.
    ///   - limits: the deadline and budgets of each generate.
    ///   - generate: writes the rows of one query; what it throws is the query's error.
    public init(
        schema: TableSchema, limits: TableLimits = .default,
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
    ///   - attributes: osquery's table attributes (none by default).
    ///   - documentation: the description, examples and notes of the table's spec (`--spec`).
    ///   - limits: the deadline and budgets of each generate.
    ///   - store: produces the rows and takes the inserts, updates and deletes.
    public init(
        _ name: String, columns: [Column], aliases: [String] = [], columnAliases: [TableSchema.ColumnAlias] = [],
        attributes: TableAttributes = [], documentation: TableDocumentation = TableDocumentation(),
        limits: TableLimits = .default, store: any TableStore
    ) {
        self.init(
            schema: TableSchema(
                name: name, columns: columns, aliases: aliases, columnAliases: columnAliases, attributes: attributes,
                documentation: documentation), limits: limits, source: .store(store))
    }

    private init(schema: TableSchema, limits: TableLimits, source: Source) {
        self.schema = schema
        self.limits = limits
        self.source = source
        self.layout = RowLayout(schema)
    }

    /// The table's spec JSON.
    public var spec: JSONValue { schema.specJSON(writable: isWritable) }

    /// Calls the store's ``TableStore/shutdown()``; other tables have nothing to do.
    public func shutdown() async {
        if case .store(let store) = source { await store.shutdown() }
    }

    /// Answers the core's table actions: `generate` (the rows, within ``limits``), `columns` (the
    /// route info), and `insert`, `update` and `delete` (passed to the store; `readonly` without one).
    /// - Parameter request: the core's request (`action`, `context`, and a write's values and rowids).
    /// - Returns: the rows or the write's result; a generate's error, deadline or exceeded budget,
    ///   and an unknown action, are a failure status.
    /// - Throws: ``PluginError`` when a write's `context` or `json_value_array` does not parse; what
    ///   the store's `insert`, `update` or `delete` throws.
    public func handle(_ request: PluginRequest) async throws -> ExtensionResponse {
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
    public func reply(to request: PluginRequest) async throws -> ServerResponse {
        guard request.action == "generate" else { return .rows(try await handle(request)) }
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
                ExtensionStatus(code: 0, message: "OK"), encoded, releaseAfterSending: rows.count >= 1024 ? rows : nil)
        } catch {
            return .rows(failure(error))
        }
    }

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
        default: .failure("\(error)")
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

/// Precomputed keys of a table's columns, so encoding a row is appends and string compares.
struct RowLayout: Sendable {
    let names: [String]
    let keys: [ThriftString]
    let index: [String: Int]
    /// The keys as they go on the wire, encoded once.
    let keyWire: EncodedStrings
    /// Column aliases mapped to their target's index (used when a row names the alias).
    init(_ schema: TableSchema) {
        var names = schema.columns.map(\.name)
        for a in schema.columnAliases where !names.contains(a.name) { names.append(a.name) }
        names.append("rowid")
        self.names = names
        self.keys = names.map { ThriftString($0) }
        var index: [String: Int] = [:]
        for (i, n) in names.enumerated() where index[n] == nil { index[n] = i }
        self.index = index
        self.keyWire = EncodedStrings(keys)
    }

    /// The column a row's cell fills: its own position when the row follows the schema's order
    /// (the usual case, a string compare), else a lookup; nil for a key that is no column.
    @inline(__always)
    func column(named name: String, at position: Int) -> Int? {
        if position < names.count, names[position] == name { return position }
        return index[name]
    }

    /// The error of a reply that passed its byte budget after `rows` rows.
    func overBudget(_ maxBytes: Int, afterRows rows: Int, table: String) -> PluginError {
        PluginError(
            "table \(table): result exceeds budget (more than \(maxBytes) bytes after \(rows) rows): "
                + "select fewer columns or add a WHERE")
    }

    /// The row budget check and which columns to send (the used ones), shared by both encoders.
    func columnsToSend(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) throws(PluginError)
        -> [Bool]
    {
        if let maxRows = limits.maxRows, rows.count > maxRows {
            throw PluginError(
                "table \(table): result exceeds budget (\(rows.count) rows, limit \(maxRows)): "
                    + "select fewer columns or add a WHERE")
        }
        var used = [Bool](repeating: true, count: names.count)
        if let set = context.usedColumns {
            for (i, n) in names.enumerated() where n != "rowid" { used[i] = set.contains(n) }
        }
        return used
    }

    func encode(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) throws(PluginError)
        -> [StringMap]
    {
        let used = try columnsToSend(rows, context: context, limits: limits, table: table)
        let maxBytes = limits.maxBytes ?? Int.max
        var bytes = 0
        var out: [StringMap] = []
        out.reserveCapacity(rows.count)
        for row in rows {
            var m = StringMap(minimumCapacity: row.cells.count)
            for (position, cell) in row.cells.enumerated() {
                // A key that is no column is left out: the core would ignore it.
                guard let i = column(named: cell.column, at: position), used[i], let text = cell.value.columnText else { continue }
                bytes += keys[i].byteCount + text.byteCount + 8
                m.append(keys[i], text)
            }
            bytes += 8
            if bytes > maxBytes { throw overBudget(maxBytes, afterRows: out.count, table: table) }
            out.append(m)
        }
        return out
    }
}

extension RowLayout {
    /// ``encode(_:context:limits:table:)`` written straight to wire bytes: the same entries in
    /// the same order, the same budget checks at the same rows. Each value writes its own text
    /// into the buffer (``ColumnValue/writeColumnText(to:)``), and a row's map count is filled
    /// in after its entries, so no string or array is built per cell or per row.
    func encodeWire(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) throws(PluginError)
        -> EncodedRows
    {
        let used = try columnsToSend(rows, context: context, limits: limits, table: table)
        let part = encodeRows(rows[...], used: used, maxBytes: limits.maxBytes ?? Int.max, table: table)
        if let error = part.overBudget { throw error }
        return EncodedRows(count: rows.count, encoded: part.encoded)
    }

    /// ``encodeWire(_:context:limits:table:)`` with a big reply's two halves encoded at once on
    /// two threads (the same bytes; the extension is otherwise idle while it encodes). A budget
    /// exceeded anywhere is found again in one pass, for the same error at the same row.
    func encodeWireConcurrently(_ rows: [Row], context: QueryContext, limits: TableLimits, table: String) async
        throws(PluginError) -> EncodedRows
    {
        guard rows.count >= 16_384 else { return try encodeWire(rows, context: context, limits: limits, table: table) }
        let used = try columnsToSend(rows, context: context, limits: limits, table: table)
        let maxBytes = limits.maxBytes ?? Int.max
        let middle = rows.count / 2
        async let firstHalf = encodeRows(rows[..<middle], used: used, maxBytes: maxBytes, table: table)
        let second = encodeRows(rows[middle...], used: used, maxBytes: maxBytes, table: table)
        let first = await firstHalf
        if first.overBudget != nil || second.overBudget != nil || first.bytes > maxBytes - second.bytes {
            return try encodeWire(rows, context: context, limits: limits, table: table)
        }
        var writer = ThriftWriter(reservingCapacity: first.encoded.count + second.encoded.count)
        first.encoded.withUnsafeBytes { writer.writeRaw(bytes: $0) }
        second.encoded.withUnsafeBytes { writer.writeRaw(bytes: $0) }
        return EncodedRows(count: rows.count, encoded: writer.finish())
    }

    /// One run of rows encoded: the bytes, the budget count (keys, values and 8 per entry, 8 per
    /// row) and the budget error at the first row that passed `maxBytes` counting from this run's
    /// start (row numbers are the rows' indices).
    struct EncodedPart: Sendable {
        var encoded: ThriftBytes
        var bytes: Int
        var overBudget: PluginError?
    }

    func encodeRows(_ rows: ArraySlice<Row>, used: [Bool], maxBytes: Int, table: String) -> EncodedPart {
        var bytes = 0
        var writer = ThriftWriter(reservingCapacity: 1 << 16)
        var failure: PluginError?
        // A view of the keys, not the arrays: a reference count moved per cell costs more than the cell.
        keyWire.withView { keys in
            for r in rows.indices {
                let rowStart = writer.byteCount
                writer.writeMapBegin(key: .string, value: .string, count: 0)
                let entries = encodeCells(of: rows[r], used: used, keys: keys, to: &writer)
                writer.patchI32(entries, at: rowStart &+ 2)
                // The same count as before: keys, values and 8 per entry, 8 per row.
                bytes &+= writer.byteCount &- rowStart &+ 2
                if bytes > maxBytes {
                    failure = overBudget(maxBytes, afterRows: r, table: table)
                    return
                }
                // Rows of a table are alike: size the buffer once from the first, plus a margin.
                // Never more than the budget allows (or 256 MiB without one).
                if r == rows.startIndex {
                    let (estimate, overflow) = writer.byteCount.multipliedReportingOverflow(by: rows.count)
                    let cap = min(maxBytes, 1 << 28)
                    writer.reserveCapacity(overflow ? cap : min(estimate / 8 * 9 + 64, cap))
                }
            }
        }
        return EncodedPart(encoded: writer.finish(), bytes: bytes, overBudget: failure)
    }
}

extension RowLayout {
    /// Writes a row's cells of the `used` columns as map entries and returns how many it wrote
    /// (NULLs and keys that are no column are left out: the core would ignore them).
    @inline(__always)
    func encodeCells(of row: Row, used: [Bool], keys: EncodedStrings.View, to writer: inout ThriftWriter) -> Int32 {
        var entries: Int32 = 0
        row.cells.withUnsafeBufferPointer { cells in
            // Cells are read in place through the pointer: no copy of the existential
            // (and retain of its string) per cell.
            guard let base = cells.baseAddress else { return }
            for position in 0..<cells.count {
                let cell = UnsafeRawPointer(base + position)
                let column = cell.assumingMemoryBound(to: String.self)
                let value = (cell + cellValueOffset).assumingMemoryBound(to: (any ColumnValue).self)
                guard let i = self.column(named: column.pointee, at: position), used[i] else { continue }
                let entryStart = writer.byteCount
                keys.write(i, to: &writer)
                if value.pointee.writeColumnText(to: &writer) {
                    entries &+= 1
                } else {
                    writer.truncate(to: entryStart)  // NULL: the key goes too
                }
            }
        }
        return entries
    }
}

/// Where a cell's value sits in a `(column: String, value: any ColumnValue)` tuple: after the
/// string, at the existential's alignment (tuples are laid out in order, like structs).
private let cellValueOffset: Int = {
    let align = MemoryLayout<any ColumnValue>.alignment
    return (MemoryLayout<String>.size + align - 1) / align * align
}()

/// Runs `body` in its own task; after `deadline` the task is cancelled and a clear error returned
/// at once, even if `body` ignores cancellation: "`what` exceeded its deadline of …", where
/// `what` names the work ("table t: generate", "logger l: shutdown").
func runWithDeadline<T: Sendable>(
    _ deadline: Duration, what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            if race.finish() { continuation.resume(with: result) }
        }
        let timer = Task {
            try? await Task.sleep(for: deadline)
            if !Task.isCancelled, race.finish() {
                work.cancel()
                continuation.resume(
                    throwing: PluginError("\(what) exceeded its deadline of \(deadline)"))
            }
        }
        race.setTimer(timer)
    }
}

final class DeadlineRace: Sendable {
    let state = Mutex<(finished: Bool, timer: Task<Void, Never>?)>((false, nil))

    /// True for the first caller only; cancels the timer.
    func finish() -> Bool {
        let (first, timer) = state.withLock { s -> (Bool, Task<Void, Never>?) in
            if s.finished { return (false, nil) }
            s.finished = true
            return (true, s.timer)
        }
        timer?.cancel()
        return first
    }

    func setTimer(_ timer: Task<Void, Never>) {
        let cancel = state.withLock { s -> Bool in
            if s.finished { return true }
            s.timer = timer
            return false
        }
        if cancel { timer.cancel() }
    }
}
