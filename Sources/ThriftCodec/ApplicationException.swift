/// Thrift's `TApplicationException`: how a server reports an error that the IDL
/// does not declare (unknown method, handler failure, bad arguments). It travels
/// as an EXCEPTION message whose body is `{1: string message, 2: i32 type}`.
package struct TApplicationException: Error, Sendable, Equatable, CustomStringConvertible {
    /// libthrift's exception kinds.
    package enum Kind: Int32, Sendable {
        case unknown = 0
        case unknownMethod = 1
        case invalidMessageType = 2
        case wrongMethodName = 3
        case badSequenceID = 4
        case missingResult = 5
        case internalError = 6
        case protocolError = 7
        case invalidTransform = 8
        case invalidProtocol = 9
        case unsupportedClientType = 10
    }

    /// The peer's message.
    package var message: ThriftString
    /// The raw type code; see ``kind``.
    package var type: Int32

    package init(_ kind: Kind, _ message: ThriftString) {
        self.message = message
        self.type = kind.rawValue
    }

    package init(message: ThriftString, type: Int32) {
        self.message = message
        self.type = type
    }

    /// The kind, when the code is one libthrift defines.
    package var kind: Kind? { Kind(rawValue: type) }

    /// The exception as one line: its type code and message.
    package var description: String { "TApplicationException(type \(type)): \(message)" }

    package func write(to writer: inout ThriftWriter) {
        writer.writeFieldBegin(.string, id: 1)
        writer.writeString(message)
        writer.writeFieldBegin(.i32, id: 2)
        writer.writeI32(type)
        writer.writeFieldStop()
    }

    package init(from reader: inout ThriftReader) throws(ThriftError) {
        message = ""
        type = 0
        try reader.enter()
        while let field = try reader.readFieldBegin() {
            switch (field.id, field.type) {
            case (1, .string): message = try reader.readString()
            case (2, .i32): type = try reader.readI32()
            default: try reader.skip(field.type)
            }
        }
        reader.leave()
    }
}
