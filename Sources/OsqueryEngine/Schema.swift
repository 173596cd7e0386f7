// The vocabulary (column types and options, table attributes, route info, constraint
// operators, JSON) is shared with the SDK; the core sees it as its own.
@_exported public import OsqueryVocabulary

public struct TableColumn: Sendable, Hashable {
    public var name: String
    public var type: ColumnType
    public var options: ColumnOptions

    public init(_ name: String, _ type: ColumnType, _ options: ColumnOptions = []) {
        self.name = name
        self.type = type
        self.options = options
    }
}

/// Everything SQLite and the extension protocol need to know about a table.
public struct TableSchema: Sendable, Hashable {
    public var name: String
    public var columns: [TableColumn]
    /// Table aliases, created as `CREATE VIEW alias AS SELECT * FROM name`.
    public var aliases: [String]
    /// Column aliases: extra hidden columns `(alias, target)` mirroring `target`.
    public var columnAliases: [(alias: String, target: String)]
    package var attributes: TableAttributes

    package init(
        name: String,
        columns: [TableColumn],
        aliases: [String] = [],
        columnAliases: [(alias: String, target: String)] = [],
        attributes: TableAttributes = []
    ) {
        self.name = name
        self.columns = columns
        self.aliases = aliases
        self.columnAliases = columnAliases
        self.attributes = attributes
    }

    public static func == (a: TableSchema, b: TableSchema) -> Bool {
        a.name == b.name && a.columns == b.columns && a.aliases == b.aliases
            && a.columnAliases.map(\.alias) == b.columnAliases.map(\.alias)
            && a.columnAliases.map(\.target) == b.columnAliases.map(\.target)
            && a.attributes == b.attributes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(columns)
    }

    /// Index of a real (non-alias) column.
    public func columnIndex(_ name: String) -> Int? {
        columns.firstIndex { $0.name == name }
    }

    /// The columns SQLite sees: the real columns, then one hidden column per
    /// column alias (type of its target), as `(column, source index)`.
    public var virtualColumns: [(column: TableColumn, source: Int)] {
        var result = columns.enumerated().map { (column: $0.element, source: $0.offset) }
        for alias in columnAliases {
            guard let target = columnIndex(alias.target) else { continue }
            result.append((TableColumn(alias.alias, columns[target].type, .hidden), target))
        }
        return result
    }

    /// osquery's column definition: "(`a` TEXT, `b` BIGINT HIDDEN, PRIMARY KEY (`a`)) WITHOUT ROWID".
    /// `includeAliases` adds the hidden alias columns (SQLite needs them; `.schema` omits them).
    /// Extension tables keep their rowid (they may be writable).
    public func columnDefinition(includeAliases: Bool, isExtension: Bool = false) -> String {
        var out = "("
        var indexed = false
        var primaryKeys: [String] = []
        let defined: [TableColumn] = includeAliases ? virtualColumns.map(\.column) : columns
        for (i, column) in defined.enumerated() {
            out += "\(Self.backquoted(column.name)) \(column.type.rawValue)"
            if column.options.contains(.index) { indexed = true }
            if !column.options.isDisjoint(with: [.index, .additional]) { primaryKeys.append(column.name) }
            if column.options.contains(.hidden) { out += " HIDDEN" }
            if let collation = column.options.collation { out += " COLLATE \(collation)" }
            if i < defined.count - 1 { out += ", " }
        }
        if !indexed { primaryKeys.removeAll() }
        if !primaryKeys.isEmpty {
            out += ", PRIMARY KEY ("
            out += primaryKeys.map { Self.backquoted($0) }.joined(separator: ", ")
            out += ")"
        }
        out += ")"
        if !primaryKeys.isEmpty && !isExtension { out += " WITHOUT ROWID" }
        return out
    }

    /// A name in osquery's quotes (`a`), any backquote in it doubled.
    static func backquoted(_ name: String) -> String {
        var out = "`"
        for c in name { out += c == "`" ? "``" : String(c) }
        return out + "`"
    }

    /// Whether `name` may name a table, table alias or column an extension registers (see
    /// `TableDefinition.isValidName`).
    public static func isValidName(_ name: String) -> Bool { TableDefinition.isValidName(name) }

    /// The `.schema` line: `CREATE TABLE name(...)...;`
    public var createStatement: String {
        "CREATE TABLE \(name)\(columnDefinition(includeAliases: false));"
    }

    /// Route info as sent over the extension protocol (protocol.md §3.2).
    public var routeInfo: [[String: String]] {
        var routes: [TableRoute] = columns.map { .column(name: $0.name, type: $0.type, options: $0.options) }
        routes += aliases.map { .alias($0) }
        routes += columnAliases.map { .columnAlias(name: $0.alias, target: $0.target) }
        routes.append(.attributes(attributes))
        return routes.map { route in
            var entry: [String: String] = [:]
            route.forEachPair { entry[$0] = $1 }
            return entry
        }
    }

    /// Build a schema from route info. Throws on an empty route list
    /// (`Invalid route info`, as osquery); entries without `id` are ignored.
    public init(name: String, routeInfo: [[String: String]]) throws(EngineError) {
        if routeInfo.isEmpty { throw EngineError(code: 1, message: "Invalid route info") }
        var columns: [TableColumn] = []
        var aliases: [String] = []
        var columnAliases: [(alias: String, target: String)] = []
        var attributes: TableAttributes = []
        for entry in routeInfo {
            switch TableRoute({ entry[$0] }) {
            case .column(let column, let type, let options): columns.append(TableColumn(column, type, options))
            case .alias(let alias): aliases.append(alias)
            case .columnAlias(let alias, let target): columnAliases.append((alias, target))
            case .attributes(let value): attributes = value
            case .eventEpoch, nil: continue
            }
        }
        self.init(name: name, columns: columns, aliases: aliases, columnAliases: columnAliases, attributes: attributes)
    }
}

/// An error with an SQLite primary result code and message.
public struct EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int32
    public var message: String
    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }

    public static let sqliteError: Int32 = 1
    public static let sqliteConstraint: Int32 = 19
    public static let sqliteReadonly: Int32 = 8
}
