/// Thrift binary-protocol type ids, as they appear on the wire.
@usableFromInline package enum TType: UInt8, Sendable, CaseIterable {
    case stop = 0
    case void = 1
    case bool = 2
    case byte = 3
    case double = 4
    case i16 = 6
    case i32 = 8
    case i64 = 10
    case string = 11
    case `struct` = 12
    case map = 13
    case set = 14
    case list = 15

    /// The fewest bytes one value of this type can take on the wire; used to
    /// refuse container counts that cannot fit in what is left of a message
    /// before anything is allocated for them.
    @inlinable
    package var minimumEncodedSize: Int {
        switch self {
        case .stop, .void: 0
        case .bool, .byte, .struct: 1
        case .i16: 2
        case .i32, .string: 4
        case .i64, .double: 8
        case .map: 6
        case .set, .list: 5
        }
    }

    /// True for the types a field or container element may carry.
    @inlinable
    package var isValueType: Bool { self != .stop && self != .void }
}

/// Thrift message types.
package enum TMessageType: UInt8, Sendable {
    case call = 1
    case reply = 2
    case exception = 3
    case oneway = 4
}

/// The header in front of every Thrift message.
package struct MessageHeader: Sendable, Equatable {
    package var name: ThriftString
    package var type: TMessageType
    package var sequenceID: Int32

    package init(name: ThriftString, type: TMessageType, sequenceID: Int32) {
        self.name = name
        self.type = type
        self.sequenceID = sequenceID
    }
}

/// Limits that keep a hostile or broken peer from making us allocate or
/// recurse without bound. Defaults match libthrift's `TConfiguration`.
@usableFromInline package struct ThriftLimits: Sendable, Equatable {
    /// The largest message accepted, in bytes (libthrift: 100 MiB).
    @usableFromInline package var maxMessageSize: Int
    /// The deepest nesting of structs and containers accepted (libthrift: 64).
    @usableFromInline package var maxDepth: Int

    @usableFromInline package init(maxMessageSize: Int = 100 * 1024 * 1024, maxDepth: Int = 64) {
        self.maxMessageSize = maxMessageSize
        self.maxDepth = maxDepth
    }

    @usableFromInline package static let `default` = ThriftLimits()
}

/// Everything that can go wrong reading Thrift bytes. Each case names what was
/// wrong so a log line tells the operator which peer misbehaved and how.
package enum ThriftError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes ended in the middle of a value.
    case truncated
    /// A length or count was negative.
    case negativeSize(Int64)
    /// A length, count or the message itself exceeds what the limits allow.
    case sizeLimit(declared: Int64, limit: Int64)
    /// Nesting deeper than the limit.
    case depthLimit(Int)
    /// A type id that Thrift does not define, or one not allowed where it stood.
    case invalidType(UInt8)
    /// A strict header with a version other than 1.
    case badVersion(UInt32)
    /// A message type other than call, reply, exception or oneway.
    case invalidMessageType(UInt8)
    /// A field that must be present was missing, or held the wrong type.
    case invalidData(String)

    package var description: String {
        switch self {
        case .truncated: "Thrift message truncated"
        case .negativeSize(let n): "negative size \(n) in Thrift message"
        case .sizeLimit(let declared, let limit): "size \(declared) exceeds the limit of \(limit) bytes"
        case .depthLimit(let d): "Thrift nesting exceeds the depth limit of \(d)"
        case .invalidType(let t): "invalid Thrift type id \(t)"
        case .badVersion(let v): "bad Thrift protocol version 0x\(String(v, radix: 16))"
        case .invalidMessageType(let t): "invalid Thrift message type \(t)"
        case .invalidData(let why): "invalid Thrift data: \(why)"
        }
    }
}
