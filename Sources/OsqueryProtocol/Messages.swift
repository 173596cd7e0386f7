package import ThriftCodec

/// The nine methods of osquery's two services. `ExtensionManager` extends
/// `Extension`, so a manager answers all nine and an extension the first three.
package enum ExtensionMethod: String, Sendable, CaseIterable {
    case ping, call, shutdown
    case extensions, options, registerExtension, deregisterExtension, query, getQueryColumns

    /// True for the methods only `ExtensionManager` has.
    package var isManagerOnly: Bool {
        switch self {
        case .ping, .call, .shutdown: false
        default: true
        }
    }

    package init?(name: ThriftString) {
        guard let s = name.string else { return nil }
        self.init(rawValue: s)
    }
}

/// A decoded call: the method and its arguments.
package enum ExtensionRequest: Sendable, Equatable {
    case ping
    case call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest)
    case shutdown
    case extensions
    case options
    case registerExtension(info: InternalExtensionInfo, registry: ExtensionRegistry)
    case deregisterExtension(uuid: ExtensionRouteUUID)
    case query(sql: ThriftString)
    case getQueryColumns(sql: ThriftString)

    package var method: ExtensionMethod {
        switch self {
        case .ping: .ping
        case .call: .call
        case .shutdown: .shutdown
        case .extensions: .extensions
        case .options: .options
        case .registerExtension: .registerExtension
        case .deregisterExtension: .deregisterExtension
        case .query: .query
        case .getQueryColumns: .getQueryColumns
        }
    }

    /// Writes the `<method>_args` struct.
    package func writeArguments(to w: inout ThriftWriter) {
        switch self {
        case .ping, .shutdown, .extensions, .options:
            break
        case .call(let registry, let item, let request):
            w.writeFieldBegin(.string, id: 1)
            w.writeString(registry)
            w.writeFieldBegin(.string, id: 2)
            w.writeString(item)
            w.writeFieldBegin(.map, id: 3)
            w.writeStringMap(request)
        case .registerExtension(let info, let registry):
            w.writeFieldBegin(.struct, id: 1)
            info.write(to: &w)
            w.writeFieldBegin(.map, id: 2)
            w.writeRegistry(registry)
        case .deregisterExtension(let uuid):
            w.writeFieldBegin(.i64, id: 1)
            w.writeI64(uuid)
        case .query(let sql), .getQueryColumns(let sql):
            w.writeFieldBegin(.string, id: 1)
            w.writeString(sql)
        }
        w.writeFieldStop()
    }

    /// Reads the `<method>_args` struct. Unknown fields are skipped and missing
    /// ones default, as libthrift and the Python peers expect.
    package static func readArguments(
        of method: ExtensionMethod, from r: inout ThriftReader
    ) throws(ThriftError) -> ExtensionRequest {
        var s1: ThriftString = "", s2: ThriftString = ""
        var map: ExtensionPluginRequest = [:]
        var info = InternalExtensionInfo()
        var registry: ExtensionRegistry = [:]
        var uuid: Int64 = 0
        try r.enter()
        while let f = try r.readFieldBegin() {
            switch (method, f.id, f.type) {
            case (.call, 1, .string), (.query, 1, .string), (.getQueryColumns, 1, .string):
                s1 = try r.readString()
            case (.call, 2, .string): s2 = try r.readString()
            case (.call, 3, .map): map = try r.readStringMap()
            case (.registerExtension, 1, .struct): info = try InternalExtensionInfo(from: &r)
            case (.registerExtension, 2, .map): registry = try r.readRegistry()
            case (.deregisterExtension, 1, .i64): uuid = try r.readI64()
            default: try r.skip(f.type)
            }
        }
        r.leave()
        switch method {
        case .ping: return .ping
        case .shutdown: return .shutdown
        case .extensions: return .extensions
        case .options: return .options
        case .call: return .call(registry: s1, item: s2, request: map)
        case .registerExtension: return .registerExtension(info: info, registry: registry)
        case .deregisterExtension: return .deregisterExtension(uuid: uuid)
        case .query: return .query(sql: s1)
        case .getQueryColumns: return .getQueryColumns(sql: s1)
        }
    }
}

/// A method's result value.
package enum ExtensionReply: Sendable, Equatable {
    /// `ping`, `registerExtension`, `deregisterExtension`.
    case status(ExtensionStatus)
    /// `call`, `query`, `getQueryColumns`.
    case response(ExtensionResponse)
    /// `shutdown`.
    case void
    case extensions(InternalExtensionList)
    case options(InternalOptionList)

    /// Writes the `<method>_result` struct: field 0 holds the value; a void
    /// result is an empty struct.
    package func writeResult(to w: inout ThriftWriter) {
        switch self {
        case .void:
            break
        case .status(let s):
            w.writeFieldBegin(.struct, id: 0)
            s.write(to: &w)
        case .response(let r):
            w.writeFieldBegin(.struct, id: 0)
            r.write(to: &w)
        case .extensions(let list):
            w.writeFieldBegin(.map, id: 0)
            w.writeMapBegin(key: .i64, value: .struct, count: list.count)
            for (uuid, info) in list {
                w.writeI64(uuid)
                info.write(to: &w)
            }
        case .options(let list):
            w.writeFieldBegin(.map, id: 0)
            w.writeMapBegin(key: .string, value: .struct, count: list.count)
            for (name, info) in list {
                w.writeString(name)
                info.write(to: &w)
            }
        }
        w.writeFieldStop()
    }

    /// Reads the `<method>_result` struct. A non-void result without its
    /// field 0 is `MISSING_RESULT`, as libthrift reports it.
    package static func readResult(
        of method: ExtensionMethod, from r: inout ThriftReader
    ) throws -> ExtensionReply {
        var reply: ExtensionReply?
        try r.enter()
        while let f = try r.readFieldBegin() {
            switch (method, f.id, f.type) {
            case (.ping, 0, .struct), (.registerExtension, 0, .struct), (.deregisterExtension, 0, .struct):
                reply = .status(try ExtensionStatus(from: &r))
            case (.call, 0, .struct), (.query, 0, .struct), (.getQueryColumns, 0, .struct):
                reply = .response(try ExtensionResponse(from: &r))
            case (.extensions, 0, .map):
                reply = .extensions(try r.readExtensionList())
            case (.options, 0, .map):
                reply = .options(try r.readOptionList())
            default:
                try r.skip(f.type)
            }
        }
        r.leave()
        if method == .shutdown { return .void }
        guard let reply else {
            throw TApplicationException(.missingResult, ThriftString("\(method.rawValue) failed: unknown result"))
        }
        return reply
    }
}

/// Encodes a whole message: header, then the body `write` produces.
package func encodeMessage(
    _ header: MessageHeader, capacity: Int = 256, body: (inout ThriftWriter) -> Void
) -> [UInt8] {
    var w = ThriftWriter(reservingCapacity: capacity)
    w.writeMessageBegin(header)
    body(&w)
    return w.bytes
}
