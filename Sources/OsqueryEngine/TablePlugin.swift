/// Anything that can sit in the plugin registry.
public protocol RegistryPlugin: Sendable {}

/// A table: built in, or (later) served by an extension over RPC.
///
/// `generate` is synchronous and may block (an extension table waits on an
/// RPC inside it); the engine calls it on the thread running the query, never
/// on the Swift concurrency pool.
public protocol TablePlugin: RegistryPlugin {
    var schema: TableSchema { get }
    /// True for tables served by an extension (their DDL keeps the rowid and
    /// plain columns get constraints by default, like `extensions_default_index`).
    var isExtension: Bool { get }
    func generate(_ context: QueryContext) throws -> TableRows
    func insert(_ values: [SQLValue], rowid: Int64?, context: QueryContext) throws -> Int64?
    func update(rowid: Int64, newRowid: Int64?, values: [SQLValue], context: QueryContext) throws
    func delete(rowid: Int64, context: QueryContext) throws
}

extension TablePlugin {
    public var isExtension: Bool { false }

    public func insert(_ values: [SQLValue], rowid: Int64?, context: QueryContext) throws -> Int64? {
        throw EngineError(code: EngineError.sqliteReadonly, message: "table \(schema.name) may not be modified")
    }

    public func update(rowid: Int64, newRowid: Int64?, values: [SQLValue], context: QueryContext) throws {
        throw EngineError(code: EngineError.sqliteReadonly, message: "table \(schema.name) may not be modified")
    }

    public func delete(rowid: Int64, context: QueryContext) throws {
        throw EngineError(code: EngineError.sqliteReadonly, message: "table \(schema.name) may not be modified")
    }

    /// Whether writes are supported (the vtab gets xUpdate only then).
    public var isWritable: Bool { isExtension }
}

/// Rows of one table, stored flat (row-major) so appending a row allocates
/// nothing beyond the values themselves. Rows an extension sent may instead stay
/// as their text in its reply (a ``RowSource``) until SQLite reads them.
public struct TableRows: Sendable {
    public let columnCount: Int
    private var storage: [SQLValue]
    /// Rows still in their wire text (an extension's reply); nil for rows built from values.
    package private(set) var source: (any RowSource)?
    /// Optional explicit rowids (one per row) for writable tables.
    public var rowids: [Int64]?

    public init(columnCount: Int, reservingRows rows: Int = 0) {
        self.columnCount = columnCount
        self.storage = []
        if rows > 0 { storage.reserveCapacity(rows * columnCount) }
    }

    public init(schema: TableSchema, reservingRows rows: Int = 0) {
        self.init(columnCount: schema.columns.count, reservingRows: rows)
    }

    /// Rows that stay as text until read. Without `rowids`, the source's (when it has finished)
    /// are the rows'.
    package init(source: any RowSource, rowids: [Int64]? = nil) {
        self.columnCount = source.columnCount
        self.storage = []
        self.source = source
        self.rowids = rowids
    }

    /// Every value, row after row (rows kept as text are converted here).
    public var values: [SQLValue] {
        guard let source else { return storage }
        var out: [SQLValue] = []
        out.reserveCapacity(source.rowCount * columnCount)
        for r in 0..<source.rowCount {
            for c in 0..<columnCount { out.append(source.value(row: r, column: c)) }
        }
        return out
    }

    public var count: Int {
        if let source { return source.rowCount }
        return columnCount == 0 ? 0 : storage.count / columnCount
    }

    /// Rows kept as text become values before they are changed.
    private mutating func decodeText() {
        guard source != nil else { return }
        storage = values
        source = nil
    }

    /// Makes room for `rows` more rows.
    public mutating func reserveRows(_ rows: Int) {
        decodeText()
        if rows > 0 { storage.reserveCapacity(storage.count + rows * columnCount) }
    }

    /// Append the next value of the current row (columns in schema order).
    public mutating func append(_ value: SQLValue) {
        decodeText()
        storage.append(value)
    }

    public mutating func append(_ value: String) { append(.text(value)) }
    public mutating func append(_ value: Int64) { append(.integer(value)) }
    public mutating func append(_ value: Int) { append(.integer(Int64(value))) }

    /// Append all rows of another result with the same columns.
    public mutating func append(contentsOf other: TableRows) {
        precondition(other.columnCount == columnCount)
        decodeText()
        storage.append(contentsOf: other.values)
    }

    /// Append a whole row, in schema order.
    public mutating func appendRow(_ row: [SQLValue]) {
        precondition(row.count == columnCount, "row has \(row.count) values, table has \(columnCount) columns")
        decodeText()
        storage.append(contentsOf: row)
    }

    /// Append a row given by column name; missing columns are NULL, unknown keys ignored.
    public mutating func appendRow(_ row: [String: SQLValue], schema: TableSchema) {
        decodeText()
        for column in schema.columns {
            storage.append(row[column.name] ?? .null)
        }
    }

    /// Append a row of strings (extension-style), converted per column type.
    public mutating func appendRow(strings row: [String: String], schema: TableSchema) {
        decodeText()
        for column in schema.columns {
            if let s = row[column.name] {
                storage.append(SQLValue.converting(s, to: column.type))
            } else {
                storage.append(.null)
            }
        }
    }

    /// Checks that every row is complete (for tests and debug builds).
    public var isWellFormed: Bool { source != nil || columnCount == 0 || storage.count % columnCount == 0 }

    public subscript(row: Int, column: Int) -> SQLValue {
        if let source { return source.value(row: row, column: column) }
        return storage[row * columnCount + column]
    }
}

/// A table whose rows come from a closure; the usual way to write built-in tables.
public struct FunctionTable: TablePlugin {
    public let schema: TableSchema
    private let body: @Sendable (QueryContext) throws -> TableRows

    public init(_ schema: TableSchema, generate: @escaping @Sendable (QueryContext) throws -> TableRows) {
        self.schema = schema
        self.body = generate
    }

    public func generate(_ context: QueryContext) throws -> TableRows {
        try body(context)
    }
}
