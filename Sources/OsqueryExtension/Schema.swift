/// One column of a table.
public struct Column: Sendable, Hashable {
    /// The column name.
    package var name: String
    /// The column type.
    package var type: ColumnType
    /// INDEX, REQUIRED, HIDDEN, collations, …
    package var options: ColumnOptions
    /// For the spec JSON and docs.
    package var description: String

    /// A column of any type.
    package init(_ name: String, _ type: ColumnType, _ options: ColumnOptions = [], description: String = "") {
        self.name = name
        self.type = type
        self.options = options
        self.description = description
    }

    /// A `TEXT` column.
    public static func text(_ name: String, _ options: ColumnOptions = [], description: String = "") -> Column {
        Column(name, .text, options, description: description)
    }
    /// An `INTEGER` column (osquery stores it as 32-bit).
    public static func integer(_ name: String, _ options: ColumnOptions = [], description: String = "") -> Column {
        Column(name, .integer, options, description: description)
    }
    /// A `BIGINT` column.
    public static func bigint(_ name: String, _ options: ColumnOptions = [], description: String = "") -> Column {
        Column(name, .bigint, options, description: description)
    }
    /// An `UNSIGNED BIGINT` column.
    public static func unsignedBigint(_ name: String, _ options: ColumnOptions = [], description: String = "")
        -> Column
    {
        Column(name, .unsignedBigint, options, description: description)
    }
    /// A `DOUBLE` column.
    public static func double(_ name: String, _ options: ColumnOptions = [], description: String = "") -> Column {
        Column(name, .double, options, description: description)
    }
    /// A `BLOB` column.
    public static func blob(_ name: String, _ options: ColumnOptions = [], description: String = "") -> Column {
        Column(name, .blob, options, description: description)
    }
    /// An `UNKNOWN` column.
    package static func unknown(_ name: String, _ options: ColumnOptions = [], description: String = "") -> Column {
        Column(name, .unknown, options, description: description)
    }
}

/// Documentation for a table, emitted in its spec JSON.
public struct TableDocumentation: Sendable, Hashable {
    /// What the table shows.
    package var description: String
    /// A link for more information.
    package var url: String
    /// Free-form notes.
    package var notes: String
    /// Example queries.
    package var examples: [String]
    /// Platforms the table supports.
    package var platforms: [String]

    /// Documentation from its parts; all optional.
    public init(
        description: String = "", url: String = "", notes: String = "", examples: [String] = [],
        platforms: [String] = ["linux"]
    ) {
        self.description = description
        self.url = url
        self.notes = notes
        self.examples = examples
        self.platforms = platforms
    }
}

/// Another name for a column: a hidden column `name` that mirrors column `target`, as
/// osquery's column aliases do (`Table(…, columnAliases: [ColumnAlias("pid_old", target: "pid")])`).
public struct ColumnAlias: Sendable, Hashable {
    /// The alias (an extra hidden column).
    package var name: String
    /// The column it mirrors.
    package var target: String
    /// An alias `name` for column `target`.
    /// - Parameters:
    ///   - name: the alias, an extra hidden column.
    ///   - target: the column it mirrors.
    public init(_ name: String, target: String) {
        self.name = name
        self.target = target
    }
}

/// Everything the core needs to know about a table: its route info, and the spec JSON.
package struct TableSchema: Sendable, Hashable {
    /// The table's name.
    package var name: String
    /// The columns, in order.
    package var columns: [Column]
    /// Other names for the table (the core creates a view for each).
    package var aliases: [String]
    /// Extra hidden columns mirroring a target column: `[alias: target]` pairs in order.
    package var columnAliases: [ColumnAlias]
    /// CACHEABLE, USER_BASED, …
    package var attributes: TableAttributes
    /// Docs for the spec JSON.
    package var documentation: TableDocumentation
    /// An ``EventTable``'s epoch, sent in the route info.
    var eventEpoch: String?

    /// A column alias (the SDK's top-level ``OsqueryExtension/ColumnAlias``).
    package typealias ColumnAlias = OsqueryExtension.ColumnAlias

    /// A schema from its parts.
    package init(
        name: String, columns: [Column], aliases: [String] = [], columnAliases: [ColumnAlias] = [],
        attributes: TableAttributes = [], documentation: TableDocumentation = TableDocumentation()
    ) {
        self.name = name
        self.columns = columns
        self.aliases = aliases
        self.columnAliases = columnAliases
        self.attributes = attributes
        self.documentation = documentation
    }

    /// Why the core would refuse to declare this table, in the core's words; nil when it would
    /// not. The core takes table names, aliases and column names of ASCII letters, digits and
    /// `_` that do not start with a digit (so `my-table` is refused), at least one column, and
    /// each column name (column aliases included) once, whatever its case. ``Extension`` and
    /// the testing kit check it before registering, so a table that would fail at the core fails
    /// under test too.
    package var problem: String? {
        TableDefinition.problem(
            table: name, columns: columns.map(\.name), columnAliases: columnAliases.map(\.name), aliases: aliases)
    }

    /// Route info, as registered and as answered to the `columns` action: columns in
    /// order, aliases, column aliases, an ``EventTable``'s epoch, then attributes last (as
    /// osquery's C++ sends it).
    package var routes: [StringMap] {
        var routes: [TableRoute] = []
        routes.reserveCapacity(columns.count + aliases.count + columnAliases.count + 2)
        for c in columns { routes.append(.column(name: c.name, type: c.type, options: c.options)) }
        for a in aliases { routes.append(.alias(a)) }
        for a in columnAliases { routes.append(.columnAlias(name: a.name, target: a.target)) }
        if let eventEpoch { routes.append(.eventEpoch(eventEpoch)) }
        routes.append(.attributes(attributes))
        return routes.map { route in
            var m = StringMap(minimumCapacity: route.pairCount)
            route.forEachPair { m.append(ThriftString($0), ThriftString($1)) }
            return m
        }
    }

    /// The table's spec as JSON (name, docs, attributes, aliases, columns with every option).
    package func specJSON(writable: Bool = false) -> JSONValue {
        func flag(_ o: ColumnOptions, _ c: Column) -> JSONValue { .bool(c.options.contains(o)) }
        let cols: [JSONValue] = columns.map { c in
            let collations: [(ColumnOptions, String)] = [
                (.collateBinary, "binary"), (.collateNocase, "nocase"), (.collateRtrim, "rtrim"),
                (.collateVersion, "version"), (.collateVersionArch, "version_arch"),
                (.collateVersionDpkg, "version_dpkg"), (.collateVersionRhel, "version_rhel"),
            ]
            let collate = collations.first { c.options.contains($0.0) }?.1
            return .object([
                ("name", .string(c.name)), ("type", .string(c.type.rawValue)),
                ("description", .string(c.description)),
                ("index", flag(.index, c)), ("required", flag(.required, c)),
                ("additional", flag(.additional, c)), ("optimized", flag(.optimized, c)),
                ("hidden", flag(.hidden, c)), ("collate", collate.map { .string($0) } ?? .null),
                ("op", .number(String(c.options.rawValue))),
                ("aliases", .array(columnAliases.filter { $0.target == c.name }.map { .string($0.name) })),
            ])
        }
        var attrNames: [JSONValue] = []
        for (a, n) in [
            (TableAttributes.utility, "utility"), (.cacheable, "cacheable"), (.eventBased, "event_based"),
            (.userBased, "user_based"), (.kernelRequired, "kernel_required"), (.pending, "pending"),
        ] where attributes.contains(a) {
            attrNames.append(.string(n))
        }
        return .object([
            ("name", .string(name)),
            ("description", .string(documentation.description)),
            ("url", .string(documentation.url)),
            ("notes", .string(documentation.notes)),
            ("examples", .array(documentation.examples.map { .string($0) })),
            ("platforms", .array(documentation.platforms.map { .string($0) })),
            ("aliases", .array(aliases.map { .string($0) })),
            ("attributes", .array(attrNames)),
            ("writable", .bool(writable)),
            ("columns", .array(cols)),
        ])
    }
}
