import OsqueryEngine

/// One of osquery's tables for other platforms, as scripts/gen-foreign-tables.py
/// writes it: `columns` is `name TYPE option...` joined by ", ", and
/// `columnAliases` is `alias target` pairs joined the same way.
struct ForeignTableSpec: Sendable {
    let name: String
    let platforms: String
    let columns: String
    let aliases: [String]
    let columnAliases: String

    init(_ name: String, _ platforms: String, _ columns: String, aliases: [String] = [], columnAliases: String = "") {
        self.name = name
        self.platforms = platforms
        self.columns = columns
        self.aliases = aliases
        self.columnAliases = columnAliases
    }

    var schema: TableSchema {
        let columns = Self.items(columns).map { words in
            TableColumn(String(words[0]), Self.type(words[1]), words.dropFirst(2).reduce(into: ColumnOptions()) { $0.formUnion(Self.option($1)) })
        }
        let columnAliases = Self.items(columnAliases).map { (alias: String($0[0]), target: String($0[1])) }
        return TableSchema(name: name, columns: columns, aliases: aliases, columnAliases: columnAliases)
    }

    private static func items(_ text: String) -> [[Substring]] {
        text.split(separator: ",").map { $0.split(separator: " ") }
    }

    private static func type(_ word: Substring) -> ColumnType {
        switch word {
        case "TEXT": .text
        case "INTEGER": .integer
        case "BIGINT": .bigint
        case "UNSIGNED_BIGINT": .unsignedBigint
        case "DOUBLE": .double
        case "BLOB": .blob
        default: .unknown
        }
    }

    private static func option(_ word: Substring) -> ColumnOptions {
        .specWord(word)
    }
}

/// osquery's `--enable_foreign`: the tables osquery declares for other
/// platforms only, registered with their columns; they answer no rows here,
/// as osquery's foreign template does.
enum ForeignTables {
    static func table(_ spec: ForeignTableSpec) -> FunctionTable {
        let schema = spec.schema
        return FunctionTable(schema) { _ in TableRows(schema: schema) }
    }

    /// Adds every foreign table whose name (and aliases) no table already has.
    static func register(into registry: PluginRegistry) {
        for spec in foreignTableSpecs where registry.item(registry: "table", name: spec.name) == nil {
            registry.addTable(table(spec))
        }
    }
}
