/// A value that can fill a table cell. osquery rows are strings; `nil` (an
/// `Optional` that is empty) leaves the column out, which the core reads as NULL.
public protocol ColumnValue: Sendable {
    /// The cell's text, or nil for NULL.
    var columnText: ThriftString? { get }
}

extension String: ColumnValue { public var columnText: ThriftString? { ThriftString(self) } }
extension Substring: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension ThriftString: ColumnValue { public var columnText: ThriftString? { self } }
extension Int: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension Int8: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension Int16: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension Int32: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension Int64: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension UInt: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension UInt8: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension UInt16: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension UInt32: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension UInt64: ColumnValue { public var columnText: ThriftString? { ThriftString(String(self)) } }
extension Double: ColumnValue {
    /// Finite doubles in Swift's shortest round-trip form; NaN and infinities are NULL.
    public var columnText: ThriftString? { isFinite ? ThriftString(String(self)) : nil }
}
extension Float: ColumnValue { public var columnText: ThriftString? { isFinite ? ThriftString(String(self)) : nil } }
/// `1` or `0`, as osquery stores booleans.
extension Bool: ColumnValue { public var columnText: ThriftString? { self ? "1" : "0" } }
/// Raw bytes, sent as they are (for BLOB columns and non-UTF-8 text).
extension Array: ColumnValue where Element == UInt8 { public var columnText: ThriftString? { ThriftString(bytes: self) } }
extension Optional: ColumnValue where Wrapped: ColumnValue {
    public var columnText: ThriftString? { self?.columnText }
}

/// One row of a table: column names and values, in the order given.
///
/// Write it as a dictionary literal, `["pid": pid, "name": name]`; the order is
/// kept and nothing is hashed. Values are turned into text only for the columns
/// the query uses, so an unused expensive-to-format value costs nothing. The key
/// `rowid` sets the SQLite rowid (for writable tables).
public struct Row: Sendable, ExpressibleByDictionaryLiteral {
    /// The cells in order.
    public var cells: [(column: String, value: any ColumnValue)]

    /// An empty row.
    public init() { cells = [] }

    /// A row with room for `capacity` cells.
    public init(capacity: Int) {
        cells = []
        cells.reserveCapacity(capacity)
    }

    /// A row from `["column": value, …]`, in the order written.
    public init(dictionaryLiteral elements: (String, any ColumnValue)...) {
        // The literal's array already holds the cells; only the tuple labels differ, so it is
        // taken as it is rather than copied element by element (a second array per row).
        cells = unsafeBitCast(elements, to: [(column: String, value: any ColumnValue)].self)
    }

    /// Appends a cell (no check for an earlier cell of the same column).
    public mutating func append(_ column: String, _ value: any ColumnValue) {
        cells.append((column, value))
    }

    /// The value of `column`, or nil. Setting replaces the cell or appends one; nil removes it.
    public subscript(column: String) -> (any ColumnValue)? {
        get { cells.last(where: { $0.column == column })?.value }
        set {
            if let i = cells.lastIndex(where: { $0.column == column }) {
                if let newValue { cells[i].value = newValue } else { cells.remove(at: i) }
            } else if let newValue {
                cells.append((column, newValue))
            }
        }
    }
}
