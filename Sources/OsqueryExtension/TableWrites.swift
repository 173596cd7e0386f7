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
    package init(_ json: JSONValue) {
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
    package var values: [WriteValue]
    /// The column names, in order.
    package var columns: [String]
    /// The rowid SQLite chose or the statement gave (nil when `autoRowid`).
    public var rowid: Int64?
    /// True when the table must pick the rowid (and return it).
    public var autoRowid: Bool
    /// The statement's context.
    package var context: QueryContext

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
    package var values: [WriteValue]
    /// The column names, in order.
    package var columns: [String]
    /// The statement's context.
    package var context: QueryContext

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
    package var context: QueryContext
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
