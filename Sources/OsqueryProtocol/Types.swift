package import ThriftCodec

// Swift mirrors of idl/osquery.thrift. Field ids and wire types are pinned by
// DriftTests, which compares what these types put on the wire with the IDL file.

/// `map<string,string>`: a registry call's arguments.
package typealias ExtensionPluginRequest = [ThriftString: ThriftString]
/// `list<map<string,string>>`: a registry call's rows, each kept in wire order.
package typealias ExtensionPluginResponse = [StringMap]
/// `i64`: the id the core gives each registered extension (0 = the core).
package typealias ExtensionRouteUUID = Int64
/// Plugin name → route info.
package typealias ExtensionRouteTable = [ThriftString: ExtensionPluginResponse]
/// Registry name → its plugins.
package typealias ExtensionRegistry = [ThriftString: ExtensionRouteTable]
package typealias InternalExtensionList = [ExtensionRouteUUID: InternalExtensionInfo]
package typealias InternalOptionList = [ThriftString: InternalOptionInfo]

/// A value that reads and writes itself as a Thrift struct body.
package protocol ThriftStruct: Sendable {
    /// Writes the fields and the closing STOP.
    func write(to writer: inout ThriftWriter)
    /// Reads fields until STOP; unknown fields are skipped, missing ones default.
    init(from reader: inout ThriftReader) throws(ThriftError)
}

/// osquery's status codes. On the wire they are plain i32s, so any value can arrive.
package enum ExtensionCode: Int32, Sendable {
    case success = 0
    case failed = 1
    case fatal = 2
}

/// `struct InternalOptionInfo` — one flag as the core reports it.
package struct InternalOptionInfo: ThriftStruct, Hashable {
    package var value: ThriftString
    package var defaultValue: ThriftString
    /// The gflags type name: `bool`, `string`, `int32`, `uint32`, `uint64`, …
    package var type: ThriftString

    package init(value: ThriftString = "", defaultValue: ThriftString = "", type: ThriftString = "") {
        self.value = value
        self.defaultValue = defaultValue
        self.type = type
    }

    package func write(to w: inout ThriftWriter) {
        w.writeFieldBegin(.string, id: 1)
        w.writeString(value)
        w.writeFieldBegin(.string, id: 2)
        w.writeString(defaultValue)
        w.writeFieldBegin(.string, id: 3)
        w.writeString(type)
        w.writeFieldStop()
    }

    package init(from r: inout ThriftReader) throws(ThriftError) {
        self.init()
        try r.enter()
        while let f = try r.readFieldBegin() {
            switch (f.id, f.type) {
            case (1, .string): value = try r.readString()
            case (2, .string): defaultValue = try r.readString()
            case (3, .string): type = try r.readString()
            default: try r.skip(f.type)
            }
        }
        r.leave()
    }
}

/// `struct InternalExtensionInfo` — what an extension says about itself.
package struct InternalExtensionInfo: ThriftStruct, Hashable {
    package var name: ThriftString
    package var version: ThriftString
    package var sdkVersion: ThriftString
    package var minSDKVersion: ThriftString

    package init(
        name: ThriftString = "", version: ThriftString = "", sdkVersion: ThriftString = "",
        minSDKVersion: ThriftString = ""
    ) {
        self.name = name
        self.version = version
        self.sdkVersion = sdkVersion
        self.minSDKVersion = minSDKVersion
    }

    package func write(to w: inout ThriftWriter) {
        w.writeFieldBegin(.string, id: 1)
        w.writeString(name)
        w.writeFieldBegin(.string, id: 2)
        w.writeString(version)
        w.writeFieldBegin(.string, id: 3)
        w.writeString(sdkVersion)
        w.writeFieldBegin(.string, id: 4)
        w.writeString(minSDKVersion)
        w.writeFieldStop()
    }

    package init(from r: inout ThriftReader) throws(ThriftError) {
        self.init()
        try r.enter()
        while let f = try r.readFieldBegin() {
            switch (f.id, f.type) {
            case (1, .string): name = try r.readString()
            case (2, .string): version = try r.readString()
            case (3, .string): sdkVersion = try r.readString()
            case (4, .string): minSDKVersion = try r.readString()
            default: try r.skip(f.type)
            }
        }
        r.leave()
    }
}

/// `struct ExtensionStatus` — the status most calls return.
package struct ExtensionStatus: ThriftStruct, Hashable, CustomStringConvertible {
    /// 0 for success, 1 for a failure (osquery's `ExtensionCode`).
    package var code: Int32
    /// What happened, for people (`OK`, `pong`, an error's text).
    package var message: ThriftString
    /// The uuid of the extension (or core) that answered.
    package var uuid: Int64

    /// A status from its fields.
    /// - Parameters:
    ///   - code: 0 for success, 1 for a failure.
    ///   - message: what happened.
    ///   - uuid: the uuid of whoever answers.
    package init(code: Int32 = 0, message: ThriftString = "", uuid: Int64 = 0) {
        self.code = code
        self.message = message
        self.uuid = uuid
    }

    package init(_ code: ExtensionCode, _ message: ThriftString, uuid: ExtensionRouteUUID = 0) {
        self.init(code: code.rawValue, message: message, uuid: uuid)
    }

    /// True when the code is 0.
    package var isSuccess: Bool { code == ExtensionCode.success.rawValue }

    /// The status as `{code 0, message "OK", uuid 1}`.
    package var description: String { "{code \(code), message \(message.debugDescription), uuid \(uuid)}" }

    package func write(to w: inout ThriftWriter) {
        w.writeFieldBegin(.i32, id: 1)
        w.writeI32(code)
        w.writeFieldBegin(.string, id: 2)
        w.writeString(message)
        w.writeFieldBegin(.i64, id: 3)
        w.writeI64(uuid)
        w.writeFieldStop()
    }

    package init(from r: inout ThriftReader) throws(ThriftError) {
        self.init()
        try r.enter()
        while let f = try r.readFieldBegin() {
            switch (f.id, f.type) {
            case (1, .i32): code = try r.readI32()
            case (2, .string): message = try r.readString()
            case (3, .i64): uuid = try r.readI64()
            default: try r.skip(f.type)
            }
        }
        r.leave()
    }
}

/// `struct ExtensionResponse` — a status and rows.
package struct ExtensionResponse: ThriftStruct, Hashable {
    /// Whether the call succeeded, and why not.
    package var status: ExtensionStatus
    /// The rows (a table's rows, a logger's or config plugin's answer).
    package var response: ExtensionPluginResponse

    /// A response from its status and rows; see also `.ok(_:)` and `.failure(_:code:)`.
    /// - Parameters:
    ///   - status: the status; success by default.
    ///   - response: the rows; none by default.
    package init(status: ExtensionStatus = .init(), response: ExtensionPluginResponse = []) {
        self.status = status
        self.response = response
    }

    package func write(to w: inout ThriftWriter) {
        w.writeFieldBegin(.struct, id: 1)
        status.write(to: &w)
        w.writeFieldBegin(.list, id: 2)
        w.writeStringMapList(response)
        w.writeFieldStop()
    }

    package init(from r: inout ThriftReader) throws(ThriftError) {
        self.init()
        try r.enter()
        while let f = try r.readFieldBegin() {
            switch (f.id, f.type) {
            case (1, .struct): status = try ExtensionStatus(from: &r)
            case (2, .list): response = try r.readStringMapList()
            default: try r.skip(f.type)
            }
        }
        r.leave()
    }
}

/// `exception ExtensionException`. Declared by osquery but thrown by no method,
/// so it never appears on the wire; kept so the Swift side mirrors the IDL whole.
package struct ExtensionException: ThriftStruct, Error, Hashable {
    package var code: Int32
    package var message: ThriftString
    package var uuid: ExtensionRouteUUID

    package init(code: Int32 = 0, message: ThriftString = "", uuid: ExtensionRouteUUID = 0) {
        self.code = code
        self.message = message
        self.uuid = uuid
    }

    package func write(to w: inout ThriftWriter) {
        ExtensionStatus(code: code, message: message, uuid: uuid).write(to: &w)
    }

    package init(from r: inout ThriftReader) throws(ThriftError) {
        let s = try ExtensionStatus(from: &r)
        self.init(code: s.code, message: s.message, uuid: s.uuid)
    }
}

// MARK: - Container helpers for the typedefs above

extension ThriftWriter {
    mutating func writeRouteTable(_ table: ExtensionRouteTable) {
        writeMapBegin(key: .string, value: .list, count: table.count)
        for (name, routes) in table {
            writeString(name)
            writeStringMapList(routes)
        }
    }

    mutating func writeRegistry(_ registry: ExtensionRegistry) {
        writeMapBegin(key: .string, value: .map, count: registry.count)
        for (name, table) in registry {
            writeString(name)
            writeRouteTable(table)
        }
    }
}

extension ThriftReader {
    mutating func readRouteTable() throws(ThriftError) -> ExtensionRouteTable {
        let h = try readMapBegin()
        guard h.count == 0 || (h.key == .string && h.value == .list) else {
            throw .invalidData("expected ExtensionRouteTable map<string,list>")
        }
        try enter()
        defer { leave() }
        var table = ExtensionRouteTable(minimumCapacity: h.count)
        for _ in 0..<h.count {
            let name = try readString()
            table[name] = try readStringMapList()
        }
        return table
    }

    mutating func readRegistry() throws(ThriftError) -> ExtensionRegistry {
        let h = try readMapBegin()
        guard h.count == 0 || (h.key == .string && h.value == .map) else {
            throw .invalidData("expected ExtensionRegistry map<string,map>")
        }
        try enter()
        defer { leave() }
        var registry = ExtensionRegistry(minimumCapacity: h.count)
        for _ in 0..<h.count {
            let name = try readString()
            registry[name] = try readRouteTable()
        }
        return registry
    }

    mutating func readExtensionList() throws(ThriftError) -> InternalExtensionList {
        let h = try readMapBegin()
        guard h.count == 0 || (h.key == .i64 && h.value == .struct) else {
            throw .invalidData("expected InternalExtensionList map<i64,struct>")
        }
        var list = InternalExtensionList(minimumCapacity: h.count)
        for _ in 0..<h.count {
            let uuid = try readI64()
            list[uuid] = try InternalExtensionInfo(from: &self)
        }
        return list
    }

    mutating func readOptionList() throws(ThriftError) -> InternalOptionList {
        let h = try readMapBegin()
        guard h.count == 0 || (h.key == .string && h.value == .struct) else {
            throw .invalidData("expected InternalOptionList map<string,struct>")
        }
        var list = InternalOptionList(minimumCapacity: h.count)
        for _ in 0..<h.count {
            let name = try readString()
            list[name] = try InternalOptionInfo(from: &self)
        }
        return list
    }
}
