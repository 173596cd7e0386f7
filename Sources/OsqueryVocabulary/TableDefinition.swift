/// The checks the core makes before it declares an extension's table, shared with the SDK so an
/// author meets them when registering (or testing) a table rather than at a query.
package enum TableDefinition {
    /// Whether `name` may name a table, table alias or column an extension registers: ASCII
    /// letters, digits and `_`, not starting with a digit (the names osquery's tables use), at
    /// most 255 bytes, and not in SQLite's reserved `sqlite_` namespace. Such a name cannot
    /// change a statement it appears in.
    package static func isValidName(_ name: String) -> Bool {
        let bytes = name.utf8
        guard let first = bytes.first, bytes.count <= 255, !(first >= 0x30 && first <= 0x39) else { return false }
        guard bytes.allSatisfy({ $0 == 0x5F || ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) })
        else { return false }
        return !name.lowercased().hasPrefix("sqlite_")
    }

    static let nameRule = "ASCII letters, digits and _, not starting with a digit"

    /// Why SQLite could not declare this table, in the core's words; nil when it can.
    /// Column aliases become hidden columns, so they share the columns' names.
    package static func problem(table: String, columns: [String], columnAliases: [String], aliases: [String]) -> String? {
        if !isValidName(table) { return "Invalid table name \(table) (\(nameRule))" }
        if columns.isEmpty { return "Table \(table) has no columns" }
        var seen = Set<String>()
        for column in columns + columnAliases {
            if !isValidName(column) { return "Invalid column name in \(table): \(column) (\(nameRule))" }
            // SQLite compares column names without case.
            if !seen.insert(column.lowercased()).inserted { return "Duplicate column name in \(table): \(column)" }
        }
        if let alias = aliases.first(where: { !isValidName($0) }) { return "Invalid table alias in \(table): \(alias)" }
        return nil
    }
}
