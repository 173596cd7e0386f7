/// Decodes one query row (strings, as osquery returns them) into a `Decodable` type.
///
/// - A property matches the column of the same name, or else its snake_case
///   form (`parentPid` ↔ `parent_pid`).
/// - Integers and unsigned integers accept decimal text; `Double`/`Float` any
///   floating-point text; `Bool` accepts `1`/`0`/`true`/`false`/`yes`/`no`.
/// - An `Optional` property is nil when the column is missing or empty
///   (osquery renders NULL as the empty string).
package enum RowDecoder {
    /// Decodes `row` (the `rowIndex`th of a result, used in error messages).
    /// - Parameters:
    ///   - type: the `Decodable` type to make.
    ///   - row: one row as the wire sent it (keys and values read as lossy UTF-8).
    ///   - rowIndex: the row's position in its result, reported in errors.
    /// - Returns: the decoded value.
    /// - Throws: ``OsqueryClientError/decoding(row:column:reason:)`` when a non-optional property's
    ///   column is missing, a value does not convert (`'abc' is not an integer of type Int`), or
    ///   `T` is not a keyed type or a single value of a one-column row.
    package static func decode<T: Decodable>(_ type: T.Type, from row: StringMap, rowIndex: Int = 0)
        throws(OsqueryClientError) -> T
    {
        var values: [String: String] = [:]
        values.reserveCapacity(row.count)
        for e in row.entries { values[e.key.lossyString] = e.value.lossyString }
        return try decode(type, from: values, rowIndex: rowIndex)
    }

    /// Decodes a row given as a dictionary.
    /// - Parameters:
    ///   - type: the `Decodable` type to make.
    ///   - row: column name → value, as ``OsqueryClient/OsqueryClient/query(_:timeout:)`` returns rows.
    ///   - rowIndex: the row's position in its result, reported in errors.
    /// - Returns: the decoded value.
    /// - Throws: ``OsqueryClientError/decoding(row:column:reason:)`` as the `StringMap` overload does.
    package static func decode<T: Decodable>(_ type: T.Type, from row: [String: String], rowIndex: Int = 0)
        throws(OsqueryClientError) -> T
    {
        do {
            return try T(from: _RowDecoder(row: row))
        } catch let error as RowDecodingError {
            throw .decoding(row: rowIndex, column: error.column, reason: error.reason)
        } catch {
            throw .decoding(row: rowIndex, column: "", reason: "\(error)")
        }
    }

    static func snakeCase(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch.isUppercase {
                if !out.isEmpty { out.append("_") }
                out += ch.lowercased()
            } else {
                out.append(ch)
            }
        }
        return out
    }
}

struct RowDecodingError: Error {
    var column: String
    var reason: String
}

struct _RowDecoder: Decoder {
    let row: [String: String]
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(RowContainer<Key>(row: row))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw RowDecodingError(column: "", reason: "a row decodes into a struct (keyed), not an array")
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        guard row.count == 1, let only = row.first else {
            throw RowDecodingError(column: "", reason: "a single value needs a one-column row")
        }
        return CellContainer(column: only.key, text: only.value)
    }
}

struct RowContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let row: [String: String]
    var codingPath: [any CodingKey] { [] }
    var allKeys: [Key] { row.keys.compactMap { Key(stringValue: $0) } }

    func column(_ key: Key) -> (String, String)? {
        if let v = row[key.stringValue] { return (key.stringValue, v) }
        let snake = RowDecoder.snakeCase(key.stringValue)
        if let v = row[snake] { return (snake, v) }
        return nil
    }

    func text(_ key: Key) throws -> (String, String) {
        guard let c = column(key) else { throw RowDecodingError(column: key.stringValue, reason: "no such column") }
        return c
    }

    func contains(_ key: Key) -> Bool { column(key) != nil }
    func decodeNil(forKey key: Key) throws -> Bool { (column(key)?.1 ?? "").isEmpty }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let (name, value) = try text(key)
        return try T(from: CellDecoder(column: name, text: value))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        throw RowDecodingError(column: key.stringValue, reason: "columns are flat strings")
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        throw RowDecodingError(column: key.stringValue, reason: "columns are flat strings")
    }
    func superDecoder() throws -> any Decoder { _RowDecoder(row: row) }
    func superDecoder(forKey key: Key) throws -> any Decoder { _RowDecoder(row: row) }
}

struct CellDecoder: Decoder {
    let column: String
    let text: String
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        throw RowDecodingError(column: column, reason: "a column holds one value, not a struct")
    }
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw RowDecodingError(column: column, reason: "a column holds one value, not an array")
    }
    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        CellContainer(column: column, text: text)
    }
}

struct CellContainer: SingleValueDecodingContainer {
    let column: String
    let text: String
    var codingPath: [any CodingKey] { [] }

    func fail(_ what: String) -> RowDecodingError {
        RowDecodingError(column: column, reason: "'\(text)' is not \(what)")
    }
    func decodeNil() -> Bool { text.isEmpty }
    func decode(_ type: String.Type) throws -> String { text }
    func decode(_ type: Bool.Type) throws -> Bool {
        switch text.lowercased() {
        case "1", "true", "yes": return true
        case "0", "false", "no": return false
        default: throw fail("a boolean")
        }
    }
    func decode(_ type: Double.Type) throws -> Double {
        guard let v = Double(text) else { throw fail("a number") }
        return v
    }
    func decode(_ type: Float.Type) throws -> Float {
        guard let v = Float(text) else { throw fail("a number") }
        return v
    }
    func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        guard let v = I(text) else { throw fail("an integer of type \(I.self)") }
        return v
    }
    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try T(from: CellDecoder(column: column, text: text))
    }
}
