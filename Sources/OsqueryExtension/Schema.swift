/// osquery's seven column types, named as they travel in route info.
public enum ColumnType: String, Sendable, CaseIterable {
    case unknown = "UNKNOWN"
    case text = "TEXT"
    case integer = "INTEGER"
    case bigint = "BIGINT"
    case unsignedBigint = "UNSIGNED BIGINT"
    case double = "DOUBLE"
    case blob = "BLOB"

    /// The type for a route or affinity name; unrecognised names are `unknown`, as in osquery.
    public init(name: String) { self = ColumnType(rawValue: name) ?? .unknown }
}

/// A column's options: osquery's `ColumnOptions` bitmask (the route's `op`).
public struct ColumnOptions: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// A primary-key candidate: constraints on it are passed to `generate`.
    public static let index = ColumnOptions(rawValue: 1)
    /// Queries must constrain it, or SQLite reports a missing required column.
    public static let required = ColumnOptions(rawValue: 2)
    /// Constraints are passed but not required.
    public static let additional = ColumnOptions(rawValue: 4)
    /// An `IN (…)` list arrives all at once, as several `=` constraints.
    public static let optimized = ColumnOptions(rawValue: 8)
    /// Left out of `SELECT *`.
    public static let hidden = ColumnOptions(rawValue: 16)
    /// `COLLATE BINARY`
    public static let collateBinary = ColumnOptions(rawValue: 32)
    /// `COLLATE NOCASE`
    public static let collateNocase = ColumnOptions(rawValue: 64)
    /// `COLLATE RTRIM`
    public static let collateRtrim = ColumnOptions(rawValue: 128)
    /// osquery's `COLLATE VERSION`
    public static let collateVersion = ColumnOptions(rawValue: 256)
    /// osquery's `COLLATE VERSION_ARCH`
    public static let collateVersionArch = ColumnOptions(rawValue: 512)
    /// osquery's `COLLATE VERSION_DPKG`
    public static let collateVersionDpkg = ColumnOptions(rawValue: 1024)
    /// osquery's `COLLATE VERSION_RHEL`
    public static let collateVersionRhel = ColumnOptions(rawValue: 2048)
}

/// Table attributes: osquery's `TableAttributes` bitmask.
public struct TableAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// A utility table.
    public static let utility = TableAttributes(rawValue: 1)
    /// Results may be cached by the core.
    public static let cacheable = TableAttributes(rawValue: 2)
    /// Rows come from buffered events.
    public static let eventBased = TableAttributes(rawValue: 4)
    /// Rows depend on a `uid` constraint.
    public static let userBased = TableAttributes(rawValue: 8)
    /// Needs a kernel component.
    public static let kernelRequired = TableAttributes(rawValue: 16)
    /// Not yet available.
    public static let pending = TableAttributes(rawValue: 32)
}

/// One column of a table.
public struct Column: Sendable, Hashable {
    /// The column name.
    public var name: String
    /// The column type.
    public var type: ColumnType
    /// INDEX, REQUIRED, HIDDEN, collations, …
    public var options: ColumnOptions
    /// For the spec JSON and docs.
    public var description: String

    /// A column of any type.
    public init(_ name: String, _ type: ColumnType, _ options: ColumnOptions = [], description: String = "") {
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
    public static func unknown(_ name: String, _ options: ColumnOptions = [], description: String = "") -> Column {
        Column(name, .unknown, options, description: description)
    }
}

/// Documentation for a table, emitted in its spec JSON.
public struct TableDocumentation: Sendable, Hashable {
    /// What the table shows.
    public var description: String
    /// A link for more information.
    public var url: String
    /// Free-form notes.
    public var notes: String
    /// Example queries.
    public var examples: [String]
    /// Platforms the table supports.
    public var platforms: [String]

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

/// Everything the core needs to know about a table: its route info, and the spec JSON.
public struct TableSchema: Sendable, Hashable {
    /// The table's name.
    public var name: String
    /// The columns, in order.
    public var columns: [Column]
    /// Other names for the table (the core creates a view for each).
    public var aliases: [String]
    /// Extra hidden columns mirroring a target column: `[alias: target]` pairs in order.
    public var columnAliases: [ColumnAlias]
    /// CACHEABLE, USER_BASED, …
    public var attributes: TableAttributes
    /// Docs for the spec JSON.
    public var documentation: TableDocumentation

    /// A column alias: `name` mirrors `target`.
    public struct ColumnAlias: Sendable, Hashable {
        /// The alias (an extra hidden column).
        public var name: String
        /// The column it mirrors.
        public var target: String
        /// An alias `name` for column `target`.
        public init(_ name: String, target: String) {
            self.name = name
            self.target = target
        }
    }

    /// A schema from its parts.
    public init(
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

    /// Route info, as registered and as answered to the `columns` action: columns in
    /// order, aliases, column aliases, then attributes last (as osquery's C++ sends it).
    public var routes: [StringMap] {
        var out: [StringMap] = []
        out.reserveCapacity(columns.count + aliases.count + columnAliases.count + 1)
        for c in columns {
            var m = StringMap(minimumCapacity: 4)
            m.append("id", "column")
            m.append("name", ThriftString(c.name))
            m.append("type", ThriftString(c.type.rawValue))
            m.append("op", ThriftString(String(c.options.rawValue)))
            out.append(m)
        }
        for a in aliases {
            var m = StringMap(minimumCapacity: 2)
            m.append("id", "alias")
            m.append("alias", ThriftString(a))
            out.append(m)
        }
        for a in columnAliases {
            var m = StringMap(minimumCapacity: 3)
            m.append("id", "columnAlias")
            m.append("name", ThriftString(a.name))
            m.append("target", ThriftString(a.target))
            out.append(m)
        }
        var attrs = StringMap(minimumCapacity: 2)
        attrs.append("id", "attributes")
        attrs.append("attributes", ThriftString(String(attributes.rawValue)))
        out.append(attrs)
        return out
    }

    /// The table's spec as JSON (name, docs, attributes, aliases, columns with every option).
    public func specJSON(writable: Bool = false) -> JSONValue {
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
