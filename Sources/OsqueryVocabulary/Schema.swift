/// osquery's seven column types, named as they travel in route info
/// (`osquery/core/sql/column.cpp` names).
public enum ColumnType: String, Sendable, CaseIterable {
    /// A type osquery does not know.
    case unknown = "UNKNOWN"
    /// Text.
    case text = "TEXT"
    /// A 32-bit integer.
    case integer = "INTEGER"
    /// A 64-bit integer.
    case bigint = "BIGINT"
    /// A 64-bit unsigned integer.
    case unsignedBigint = "UNSIGNED BIGINT"
    /// A double.
    case double = "DOUBLE"
    /// Bytes.
    case blob = "BLOB"

    /// The type for a route, affinity or declared type name, in any case; unrecognised
    /// names are `unknown`, as in osquery.
    /// - Parameter name: the type name.
    package init(name: String) {
        self = ColumnType(rawValue: name) ?? ColumnType(rawValue: name.uppercased()) ?? .unknown
    }

    /// INTEGER, BIGINT, UNSIGNED BIGINT or DOUBLE.
    package var isNumeric: Bool {
        switch self {
        case .integer, .bigint, .unsignedBigint, .double: return true
        default: return false
        }
    }
}

/// A column's options: osquery's `ColumnOptions` bitmask (the route's `op`).
public struct ColumnOptions: OptionSet, Sendable, Hashable {
    /// The raw value osquery uses.
    public let rawValue: Int
    /// Options from their bits.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// A column the table can look up by: constraints on it are passed to `generate`.
    ///
    /// An extension table gets constraints on more than its `.index` columns: with
    /// `--extensions_default_index=true`, the default of osquery's core and ours, the core treats
    /// every column declared with no options as `.index`, so constraints on all plain columns
    /// arrive (`TableTester` does the same). A column with other options only (`.hidden` alone)
    /// gets none unless it is also `.index`, `.required` or `.additional`. Mark the columns a
    /// table looks up by `.index` anyway: a core run with `--extensions_default_index=false`
    /// passes constraints on those alone.
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
    package static let collateBinary = ColumnOptions(rawValue: 32)
    /// `COLLATE NOCASE`
    package static let collateNocase = ColumnOptions(rawValue: 64)
    /// `COLLATE RTRIM`
    package static let collateRtrim = ColumnOptions(rawValue: 128)
    /// osquery's `COLLATE VERSION`
    package static let collateVersion = ColumnOptions(rawValue: 256)
    /// osquery's `COLLATE VERSION_ARCH`
    package static let collateVersionArch = ColumnOptions(rawValue: 512)
    /// osquery's `COLLATE VERSION_DPKG`
    package static let collateVersionDpkg = ColumnOptions(rawValue: 1024)
    /// osquery's `COLLATE VERSION_RHEL`
    package static let collateVersionRhel = ColumnOptions(rawValue: 2048)

    /// Options whose constraints are handed to the table's generate.
    package static let pushDown: ColumnOptions = [.index, .required, .additional]

    /// The option an osquery `.table` spec names (`index`, `hidden`, `collate_nocase`…); none
    /// for a word it does not know.
    package static func specWord(_ word: some StringProtocol) -> ColumnOptions {
        switch word {
        case "index": .index
        case "required": .required
        case "additional": .additional
        case "optimized": .optimized
        case "hidden": .hidden
        case "collate_binary": .collateBinary
        case "collate_nocase": .collateNocase
        case "collate_rtrim": .collateRtrim
        case "collate_version": .collateVersion
        case "collate_version_arch": .collateVersionArch
        case "collate_version_dpkg": .collateVersionDpkg
        case "collate_version_rhel": .collateVersionRhel
        default: []
        }
    }

    /// The collation name for the `COLLATE` clause, if any.
    package var collation: String? {
        if contains(.collateBinary) { return "BINARY" }
        if contains(.collateNocase) { return "NOCASE" }
        if contains(.collateRtrim) { return "RTRIM" }
        if contains(.collateVersion) { return "VERSION" }
        if contains(.collateVersionArch) { return "VERSION_ARCH" }
        if contains(.collateVersionDpkg) { return "VERSION_DPKG" }
        if contains(.collateVersionRhel) { return "VERSION_RHEL" }
        return nil
    }
}

/// Table attributes: osquery's `TableAttributes` bitmask (`osquery/core/tables.h`).
package struct TableAttributes: OptionSet, Sendable, Hashable {
    package let rawValue: Int
    /// Attributes from their bits.
    package init(rawValue: Int) { self.rawValue = rawValue }
    /// A utility table.
    package static let utility = TableAttributes(rawValue: 1)
    /// Results may be cached by the core.
    package static let cacheable = TableAttributes(rawValue: 2)
    /// Rows come from buffered events.
    package static let eventBased = TableAttributes(rawValue: 4)
    /// Rows depend on a `uid` constraint.
    package static let userBased = TableAttributes(rawValue: 8)
    /// Needs a kernel component.
    package static let kernelRequired = TableAttributes(rawValue: 16)
    /// Not yet available.
    package static let pending = TableAttributes(rawValue: 32)
}

/// One entry of a table's route info, as registered and as answered to the `columns` action
/// (protocol.md §3.2). A table sends its columns in order, its aliases, its column aliases,
/// then its attributes last, as osquery's C++ does.
package enum TableRoute: Sendable, Hashable {
    case column(name: String, type: ColumnType, options: ColumnOptions)
    case alias(String)
    case columnAlias(name: String, target: String)
    case attributes(TableAttributes)
    /// An SDK event table's epoch: it changes when the table's `eid`s start again at 1 (its
    /// state was lost), so a daemon's `events_optimize` mark from before no longer applies.
    /// osquery's core skips entries of an unknown `id`.
    case eventEpoch(String)

    /// How many key/value pairs the entry has on the wire.
    package var pairCount: Int {
        switch self {
        case .column: 4
        case .alias, .attributes, .eventEpoch: 2
        case .columnAlias: 3
        }
    }

    /// The entry's key/value pairs in wire order.
    package func forEachPair(_ body: (String, String) -> Void) {
        switch self {
        case .column(let name, let type, let options):
            body("id", "column")
            body("name", name)
            body("type", type.rawValue)
            body("op", String(options.rawValue))
        case .alias(let alias):
            body("id", "alias")
            body("alias", alias)
        case .columnAlias(let name, let target):
            body("id", "columnAlias")
            body("name", name)
            body("target", target)
        case .attributes(let attributes):
            body("id", "attributes")
            body("attributes", String(attributes.rawValue))
        case .eventEpoch(let epoch):
            body("id", "eventEpoch")
            body("epoch", epoch)
        }
    }

    /// The entry whose keys `value` looks up; nil for an entry without a known `id` or
    /// without the keys its kind needs (osquery skips those). A missing or bad `op` or
    /// `attributes` is 0, an unknown type is UNKNOWN.
    package init?(_ value: (String) -> String?) {
        switch value("id") {
        case "column":
            guard let name = value("name") else { return nil }
            let op = Int(value("op") ?? "0") ?? 0
            self = .column(name: name, type: ColumnType(name: value("type") ?? ""), options: ColumnOptions(rawValue: op))
        case "alias":
            guard let alias = value("alias") else { return nil }
            self = .alias(alias)
        case "columnAlias":
            guard let name = value("name"), let target = value("target") else { return nil }
            self = .columnAlias(name: name, target: target)
        case "attributes":
            self = .attributes(TableAttributes(rawValue: Int(value("attributes") ?? "0") ?? 0))
        case "eventEpoch":
            guard let epoch = value("epoch"), Self.isValidEpoch(epoch) else { return nil }
            self = .eventEpoch(epoch)
        default:
            return nil
        }
    }

    /// An epoch the core keeps: 1 to 64 ASCII letters, digits, `-` or `_` (what it stores per
    /// scheduled query stays small whatever an extension sends).
    package static func isValidEpoch(_ epoch: String) -> Bool {
        !epoch.isEmpty && epoch.utf8.count <= 64
            && epoch.utf8.allSatisfy { $0 == 0x2D || $0 == 0x5F || ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) }
    }
}
