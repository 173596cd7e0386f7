/// A value that can fill a table cell. osquery rows are strings; `nil` (an
/// `Optional` that is empty) leaves the column out, which the core reads as NULL.
public protocol ColumnValue: Sendable {
    /// The cell's text, or nil for NULL.
    var columnText: String? { get }

    /// Writes the cell's text to `writer` as one Thrift string and returns true, or writes
    /// nothing and returns false for NULL. The default writes ``columnText``; the SDK's
    /// integers, doubles, strings and byte arrays write theirs without building a string
    /// first. Implement it only to make a custom value type faster; it must write what
    /// ``columnText`` holds.
    /// - Parameter writer: the reply being written.
    /// - Returns: true when a string was written, false for NULL.
    func writeColumnText(to writer: inout ThriftWriter) -> Bool
}

extension ColumnValue {
    /// Writes ``columnText``, or nothing for NULL.
    /// - Parameter writer: the reply being written.
    /// - Returns: true when a string was written, false for NULL.
    public func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        guard let text = columnText else { return false }
        writer.writeString(text)
        return true
    }
}

extension ColumnValue {
    /// The cell's text as the wire carries it: byte arrays (and `ThriftString`s) as their bytes,
    /// not as ``columnText``'s repaired text. The type checks are resolved when specialized.
    package var wireText: ThriftString? {
        if Self.self == [UInt8].self { return ThriftString(bytes: unsafeBitCast(self, to: [UInt8].self)) }
        if Self.self == [UInt8]?.self { return unsafeBitCast(self, to: [UInt8]?.self).map { ThriftString(bytes: $0) } }
        if Self.self == ThriftString.self { return unsafeBitCast(self, to: ThriftString.self) }
        return columnText.map { ThriftString($0) }
    }
}

extension String: ColumnValue {
    /// The string itself.
    public var columnText: String? { self }
    /// Writes the string's UTF-8 bytes.
    /// - Parameter writer: the reply being written.
    /// - Returns: true: the text was written.
    public func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        writer.writeString(self)
        return true
    }
}
extension Substring: ColumnValue {
    /// The substring as a string.
    public var columnText: String? { String(self) }
}
extension ThriftString: ColumnValue {
    /// The bytes as text (bytes that are not UTF-8 replaced); the wire gets the bytes.
    @usableFromInline package var columnText: String? { lossyString }
    /// Writes the bytes as they are.
    @usableFromInline package func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        writer.writeString(self)
        return true
    }
}
/// Integers in decimal, written in place.
extension ColumnValue where Self: BinaryInteger {
    /// The integer in decimal.
    public var columnText: String? { String(self) }
}
extension ColumnValue where Self: SignedInteger & FixedWidthInteger {
    /// Writes the integer in decimal, without building a string.
    /// - Parameter writer: the reply being written.
    /// - Returns: true: the text was written.
    public func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        writer.writeDecimalString(Int64(self))
        return true
    }
}
extension ColumnValue where Self: UnsignedInteger & FixedWidthInteger {
    /// Writes the integer in decimal, without building a string.
    /// - Parameter writer: the reply being written.
    /// - Returns: true: the text was written.
    public func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        writer.writeDecimalString(UInt64(self))
        return true
    }
}
extension Int: ColumnValue {}
extension Int8: ColumnValue {}
extension Int16: ColumnValue {}
extension Int32: ColumnValue {}
extension Int64: ColumnValue {}
extension UInt: ColumnValue {}
extension UInt8: ColumnValue {}
extension UInt16: ColumnValue {}
extension UInt32: ColumnValue {}
extension UInt64: ColumnValue {}
extension Double: ColumnValue {
    /// Writes the same text as ``columnText``, without building a string when it can.
    /// - Parameter writer: the reply being written.
    /// - Returns: true when a string was written, false for NaN and infinities (NULL).
    public func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        guard isFinite else { return false }
        if let (m, scale) = Self.shortDecimal(self) {
            writer.writeFixedPointString(m, scale: scale, negative: self < 0)
        } else {
            writer.writeString(description)
        }
        return true
    }

    /// |d| as m·10⁻ᵏ when that is `description`'s text, found without formatting: |d|·10ᵏ is a
    /// whole number m < 10¹⁵ for the smallest k, and m·10⁻ᵏ converts back to exactly |d| (a
    /// correctly rounded division of exact values). A decimal of at most 15 digits that converts
    /// back is the only one in its double's interval, so it is the shortest; and between 10⁻⁴
    /// and 10¹⁵ `description` prints it in fixed notation.
    static func shortDecimal(_ d: Double) -> (m: UInt64, scale: Int)? {
        let a = d.magnitude
        guard a >= 1e-4, a < 1e15 else { return nil }
        var power = 1.0
        for k in 0...17 {
            let t = a * power
            if t >= 1e15 { return nil }
            let whole = UInt64(t)
            if Double(whole) == t {
                return Double(whole) / power == a ? (whole, k) : nil
            }
            power *= 10
        }
        return nil
    }
}
extension Float: ColumnValue {}
/// Finite doubles and floats in Swift's shortest round-trip form; NaN and infinities are NULL.
extension ColumnValue where Self: BinaryFloatingPoint & LosslessStringConvertible {
    /// The value's shortest round-trip text, or nil (NULL) for NaN and infinities.
    public var columnText: String? { isFinite ? String(self) : nil }
}
/// `1` or `0`, as osquery stores booleans.
extension Bool: ColumnValue {
    /// `1` for true, `0` for false.
    public var columnText: String? { self ? "1" : "0" }
}
/// Raw bytes, sent as they are (for BLOB columns and non-UTF-8 text).
extension Array: ColumnValue where Element == UInt8 {
    /// The bytes as text (bytes that are not UTF-8 replaced); the wire gets the bytes themselves.
    public var columnText: String? { String(decoding: self, as: UTF8.self) }
    /// Writes the bytes as they are.
    /// - Parameter writer: the reply being written.
    /// - Returns: true: the text was written.
    public func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        withUnsafeBytes { writer.writeString(bytes: $0) }
        return true
    }
}
/// nil is NULL; a value is written as the value itself would be.
extension Optional: ColumnValue where Wrapped: ColumnValue {
    /// The wrapped value's text, or nil (NULL).
    public var columnText: String? { self?.columnText }
    /// Writes the wrapped value as it writes itself, or nothing for nil.
    /// - Parameter writer: the reply being written.
    /// - Returns: true when a string was written, false for nil (or a NULL wrapped value).
    public func writeColumnText(to writer: inout ThriftWriter) -> Bool {
        guard let self else { return false }
        return self.writeColumnText(to: &writer)
    }
}

/// One row of a table: column names and values, in the order given.
///
/// Write it as a dictionary literal, `["pid": pid, "name": name]`; the order is
/// kept and nothing is hashed. Values are turned into text only for the columns
/// the query uses, so an unused expensive-to-format value costs nothing. The key
/// `rowid` sets the SQLite rowid (for writable tables).
public struct Row: Sendable, ExpressibleByDictionaryLiteral {
    /// The cells in order.
    package var cells: [(column: String, value: any ColumnValue)]

    /// An empty row.
    public init() { cells = [] }

    /// A row with room for `capacity` cells.
    /// - Parameter capacity: how many cells to reserve room for.
    package init(capacity: Int) {
        cells = []
        cells.reserveCapacity(capacity)
    }

    /// A row from `["column": value, …]`, in the order written.
    /// - Parameter elements: the column names and values.
    public init(dictionaryLiteral elements: (String, any ColumnValue)...) {
        // The literal's array already holds the cells; only the tuple labels differ, so it is
        // taken as it is rather than copied element by element (a second array per row).
        cells = unsafeBitCast(elements, to: [(column: String, value: any ColumnValue)].self)
    }

    /// Appends a cell (no check for an earlier cell of the same column).
    /// - Parameters:
    ///   - column: the column's name.
    ///   - value: the cell's value (nil-valued optionals are NULL).
    public mutating func append(_ column: String, _ value: any ColumnValue) {
        cells.append((column, value))
    }

    /// The value of `column`, or nil. Setting replaces the cell or appends one; nil removes it.
    /// - Parameter column: the column's name (the last cell of that name counts).
    /// - Returns: the cell's value, or nil when the row has no cell for `column`.
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
