/// Any Thrift value, decoded without a schema. Used to inspect what a peer
/// really put on the wire (field ids, type ids, container element types), by
/// the drift tests and the conformance suite.
package indirect enum ThriftValue: Sendable, Equatable {
    case bool(Bool)
    case byte(Int8)
    case i16(Int16)
    case i32(Int32)
    case i64(Int64)
    case double(Double)
    case string(ThriftString)
    case `struct`([Field])
    case map(key: TType, value: TType, [(ThriftValue, ThriftValue)])
    case set(element: TType, [ThriftValue])
    case list(element: TType, [ThriftValue])

    package struct Field: Sendable, Equatable {
        package var id: Int16
        package var value: ThriftValue
        package init(id: Int16, value: ThriftValue) {
            self.id = id
            self.value = value
        }
    }

    /// The wire type of this value.
    package var type: TType {
        switch self {
        case .bool: .bool
        case .byte: .byte
        case .i16: .i16
        case .i32: .i32
        case .i64: .i64
        case .double: .double
        case .string: .string
        case .struct: .struct
        case .map: .map
        case .set: .set
        case .list: .list
        }
    }

    /// The field with `id`, when this is a struct that has it.
    package subscript(field id: Int16) -> ThriftValue? {
        guard case .struct(let fields) = self else { return nil }
        return fields.first { $0.id == id }?.value
    }

    package static func == (lhs: ThriftValue, rhs: ThriftValue) -> Bool {
        switch (lhs, rhs) {
        case (.bool(let a), .bool(let b)): a == b
        case (.byte(let a), .byte(let b)): a == b
        case (.i16(let a), .i16(let b)): a == b
        case (.i32(let a), .i32(let b)): a == b
        case (.i64(let a), .i64(let b)): a == b
        case (.double(let a), .double(let b)): a.bitPattern == b.bitPattern
        case (.string(let a), .string(let b)): a == b
        case (.struct(let a), .struct(let b)): a == b
        case (.map(let ka, let va, let a), .map(let kb, let vb, let b)):
            ka == kb && va == vb && a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.set(let ea, let a), .set(let eb, let b)): ea == eb && a == b
        case (.list(let ea, let a), .list(let eb, let b)): ea == eb && a == b
        default: false
        }
    }
}

extension ThriftReader {
    /// Reads one value of `type` into a ``ThriftValue`` tree, within the limits.
    package mutating func readValue(_ type: TType) throws(ThriftError) -> ThriftValue {
        switch type {
        case .stop, .void: throw .invalidType(type.rawValue)
        case .bool: return .bool(try readBool())
        case .byte: return .byte(try readI8())
        case .i16: return .i16(try readI16())
        case .i32: return .i32(try readI32())
        case .i64: return .i64(try readI64())
        case .double: return .double(try readDouble())
        case .string: return .string(try readString())
        case .struct:
            try enter()
            defer { leave() }
            var fields: [ThriftValue.Field] = []
            while let field = try readFieldBegin() {
                fields.append(.init(id: field.id, value: try readValue(field.type)))
            }
            return .struct(fields)
        case .map:
            try enter()
            defer { leave() }
            let header = try readMapBegin()
            var entries: [(ThriftValue, ThriftValue)] = []
            entries.reserveCapacity(header.count)
            for _ in 0..<header.count {
                let k = try readValue(header.key)
                entries.append((k, try readValue(header.value)))
            }
            return .map(key: header.key, value: header.value, entries)
        case .set, .list:
            try enter()
            defer { leave() }
            let header = try readListBegin()
            var items: [ThriftValue] = []
            items.reserveCapacity(header.count)
            for _ in 0..<header.count { items.append(try readValue(header.element)) }
            return type == .set ? .set(element: header.element, items) : .list(element: header.element, items)
        }
    }
}

extension ThriftWriter {
    /// Writes a ``ThriftValue`` tree.
    package mutating func writeValue(_ value: ThriftValue) {
        switch value {
        case .bool(let v): writeBool(v)
        case .byte(let v): writeI8(v)
        case .i16(let v): writeI16(v)
        case .i32(let v): writeI32(v)
        case .i64(let v): writeI64(v)
        case .double(let v): writeDouble(v)
        case .string(let v): writeString(v)
        case .struct(let fields):
            for field in fields {
                writeFieldBegin(field.value.type, id: field.id)
                writeValue(field.value)
            }
            writeFieldStop()
        case .map(let key, let valueType, let entries):
            writeMapBegin(key: key, value: valueType, count: entries.count)
            for (k, v) in entries {
                writeValue(k)
                writeValue(v)
            }
        case .set(let element, let items):
            writeSetBegin(element: element, count: items.count)
            for item in items { writeValue(item) }
        case .list(let element, let items):
            writeListBegin(element: element, count: items.count)
            for item in items { writeValue(item) }
        }
    }
}
