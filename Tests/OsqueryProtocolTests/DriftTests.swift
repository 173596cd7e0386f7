import Foundation
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// A small parser for the IDL subset osquery.thrift uses: typedefs, enums,
/// structs, exceptions and services with `extends`.
struct IDL {
    indirect enum FieldType: Equatable {
        case base(TType)
        case named(String)
        case map(FieldType, FieldType)
        case list(FieldType)
        case set(FieldType)
        case void
    }
    struct Field { let id: Int16; let name: String; let type: FieldType }
    struct Method { let name: String; let returns: FieldType; let arguments: [Field]; let service: String }

    var typedefs: [String: FieldType] = [:]
    var structs: [String: [Field]] = [:]
    var enums: Set<String> = []
    var methods: [Method] = []
    var extends: [String: String] = [:]

    init(text: String) throws {
        // Drop comments, then tokenize on punctuation.
        let stripped = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { line -> Substring in
                if let r = line.range(of: "//") { return line[..<r.lowerBound] }
                return line[...]
            }.joined(separator: "\n")
        var tokens: [String] = []
        var current = ""
        for ch in stripped {
            if "{}()<>,:;=".contains(ch) || ch.isWhitespace {
                if !current.isEmpty { tokens.append(current); current = "" }
                if !ch.isWhitespace { tokens.append(String(ch)) }
            } else { current.append(ch) }
        }
        var i = 0
        func next() -> String { defer { i += 1 }; return tokens[i] }
        func peek() -> String { tokens[i] }
        func parseType() -> FieldType {
            let t = next()
            switch t {
            case "bool": return .base(.bool)
            case "byte", "i8": return .base(.byte)
            case "i16": return .base(.i16)
            case "i32": return .base(.i32)
            case "i64": return .base(.i64)
            case "double": return .base(.double)
            case "string", "binary": return .base(.string)
            case "void": return .void
            case "map":
                _ = next(); let k = parseType(); _ = next(); let v = parseType(); _ = next()
                return .map(k, v)
            case "list", "set":
                _ = next(); let e = parseType(); _ = next()
                return t == "list" ? .list(e) : .set(e)
            default: return .named(t)
            }
        }
        func parseFields(until end: String) -> [Field] {
            var fields: [Field] = []
            while peek() != end {
                if peek() == "," || peek() == ";" { i += 1; continue }
                let id = Int16(next())!
                _ = next()  // ':'
                if ["required", "optional"].contains(peek()) { i += 1 }
                let type = parseType()
                fields.append(Field(id: id, name: next(), type: type))
            }
            i += 1
            return fields
        }
        while i < tokens.count {
            switch next() {
            case "namespace": i += 2
            case "typedef":
                let type = parseType()
                typedefs[next()] = type
            case "enum":
                enums.insert(next())
                while next() != "}" {}
            case "struct", "exception":
                let name = next()
                _ = next()  // '{'
                structs[name] = parseFields(until: "}")
            case "service":
                let service = next()
                if peek() == "extends" { i += 1; extends[service] = next() }
                _ = next()  // '{'
                while peek() != "}" {
                    if peek() == "," || peek() == ";" { i += 1; continue }
                    let returns = parseType()
                    let name = next()
                    _ = next()  // '('
                    methods.append(Method(name: name, returns: returns, arguments: parseFields(until: ")"), service: service))
                }
                i += 1
            default:
                throw IDLError.unexpected(tokens[i - 1])
            }
        }
    }

    func resolve(_ type: FieldType) -> FieldType {
        if case .named(let name) = type {
            if let t = typedefs[name] { return resolve(t) }
            if enums.contains(name) { return .base(.i32) }
        }
        return type
    }

    func wireType(_ type: FieldType) -> TType? {
        switch resolve(type) {
        case .base(let t): t
        case .named: .struct
        case .map: .map
        case .list: .list
        case .set: .set
        case .void: nil
        }
    }

    /// Why `value` does not have the shape `type` declares, or nil when it does.
    func mismatch(_ value: ThriftValue, _ type: FieldType, at path: String) -> String? {
        let type = resolve(type)
        guard let want = wireType(type), value.type == want else {
            return "\(path): wire type \(value.type), IDL says \(type)"
        }
        switch (type, value) {
        case (.named(let name), .struct(let fields)):
            guard let declared = structs[name] else { return "\(path): unknown struct \(name)" }
            return mismatch(fields: fields, declared, at: path + "." + name)
        case (.map(let k, let v), .map(let kt, let vt, let entries)):
            if kt != wireType(k) || vt != wireType(v) { return "\(path): map<\(kt),\(vt)>, IDL says \(type)" }
            for (key, val) in entries {
                if let m = mismatch(key, k, at: path + "[key]") ?? mismatch(val, v, at: path + "[value]") { return m }
            }
        case (.list(let e), .list(let et, let items)), (.set(let e), .set(let et, let items)):
            if et != wireType(e) { return "\(path): element \(et), IDL says \(e)" }
            for item in items { if let m = mismatch(item, e, at: path + "[]") { return m } }
        default: break
        }
        return nil
    }

    /// Every declared field present once with its declared id and type, nothing else.
    func mismatch(fields: [ThriftValue.Field], _ declared: [Field], at path: String) -> String? {
        guard fields.map(\.id).sorted() == declared.map(\.id).sorted() else {
            return "\(path): field ids \(fields.map(\.id)), IDL declares \(declared.map(\.id))"
        }
        for field in fields {
            let d = declared.first { $0.id == field.id }!
            if let m = mismatch(field.value, d.type, at: "\(path).\(d.name)") { return m }
        }
        return nil
    }
}

enum IDLError: Error { case unexpected(String) }

/// Encodes with the Swift code under test and reads it back schema-free.
func wire(_ write: (inout ThriftWriter) -> Void) throws -> ThriftValue {
    var w = ThriftWriter()
    write(&w)
    return try ThriftReader.read(w.bytes) { try $0.readValue(.struct) }
}

let sampleRows: ExtensionPluginResponse = [["k": "v"]]
let sampleInfo = InternalExtensionInfo(name: "n", version: "v", sdkVersion: "s", minSDKVersion: "m")
let sampleStatus = ExtensionStatus(code: 1, message: "m", uuid: 2)

func sampleRequest(_ method: ExtensionMethod) -> ExtensionRequest {
    switch method {
    case .ping: .ping
    case .call: .call(registry: "r", item: "i", request: ["a": "b"])
    case .shutdown: .shutdown
    case .extensions: .extensions
    case .options: .options
    case .registerExtension: .registerExtension(info: sampleInfo, registry: ["table": ["t": sampleRows]])
    case .deregisterExtension: .deregisterExtension(uuid: 7)
    case .query: .query(sql: "select 1")
    case .getQueryColumns: .getQueryColumns(sql: "select 1")
    }
}

func sampleReply(_ method: ExtensionMethod) -> ExtensionReply {
    switch method {
    case .ping, .registerExtension, .deregisterExtension: .status(sampleStatus)
    case .call, .query, .getQueryColumns: .response(ExtensionResponse(status: sampleStatus, response: sampleRows))
    case .shutdown: .void
    case .extensions: .extensions([5: sampleInfo])
    case .options: .options(["o": InternalOptionInfo(value: "1", defaultValue: "0", type: "bool")])
    }
}

@Suite struct DriftTests {
    let idl: IDL

    init() throws {
        idl = try IDL(text: String(contentsOf: repoRoot.appendingPathComponent("idl/osquery.thrift"), encoding: .utf8))
    }

    @Test func idlDeclaresOsquerysServicesAndNothingElse() {
        #expect(idl.extends == ["ExtensionManager": "Extension"])
        let byService = Dictionary(grouping: idl.methods, by: \.service).mapValues { Set($0.map(\.name)) }
        #expect(byService["Extension"] == ["ping", "call", "shutdown"])
        #expect(byService["ExtensionManager"]
            == ["extensions", "options", "registerExtension", "deregisterExtension", "query", "getQueryColumns"])
        for method in ExtensionMethod.allCases {
            let declared = idl.methods.first { $0.name == method.rawValue }
            #expect(declared != nil, "\(method) is not in the IDL")
            #expect(declared?.service == (method.isManagerOnly ? "ExtensionManager" : "Extension"))
        }
        #expect(Set(idl.structs.keys) == [
            "InternalOptionInfo", "InternalExtensionInfo", "ExtensionStatus", "ExtensionResponse", "ExtensionException",
        ])
    }

    @Test func structsMatchTheIDL() throws {
        let encoded: [String: ThriftValue] = [
            "InternalOptionInfo": try wire { InternalOptionInfo(value: "a", defaultValue: "b", type: "c").write(to: &$0) },
            "InternalExtensionInfo": try wire { sampleInfo.write(to: &$0) },
            "ExtensionStatus": try wire { sampleStatus.write(to: &$0) },
            "ExtensionResponse": try wire { ExtensionResponse(status: sampleStatus, response: sampleRows).write(to: &$0) },
            "ExtensionException": try wire { ExtensionException(code: 1, message: "m", uuid: 3).write(to: &$0) },
        ]
        #expect(Set(encoded.keys) == Set(idl.structs.keys))
        for (name, value) in encoded {
            #expect(idl.mismatch(value, .named(name), at: "") == nil, "\(name)")
        }
    }

    @Test(arguments: ExtensionMethod.allCases)
    func argumentsAndResultsMatchTheIDL(_ method: ExtensionMethod) throws {
        let declared = try #require(idl.methods.first { $0.name == method.rawValue })
        guard case .struct(let args) = try wire({ sampleRequest(method).writeArguments(to: &$0) }) else {
            Issue.record("arguments are not a struct")
            return
        }
        #expect(idl.mismatch(fields: args, declared.arguments, at: "\(method)_args") == nil)
        guard case .struct(let result) = try wire({ sampleReply(method).writeResult(to: &$0) }) else {
            Issue.record("result is not a struct")
            return
        }
        let resultFields = declared.returns == .void ? [] : [IDL.Field(id: 0, name: "success", type: declared.returns)]
        #expect(idl.mismatch(fields: result, resultFields, at: "\(method)_result") == nil)
        // And what we write, we read back the same.
        let request = sampleRequest(method)
        var w = ThriftWriter()
        request.writeArguments(to: &w)
        #expect(try ThriftReader.read(w.bytes) { try ExtensionRequest.readArguments(of: method, from: &$0) } == request)
        var rw = ThriftWriter()
        sampleReply(method).writeResult(to: &rw)
        #expect(try ThriftReader.read(rw.bytes) { try ExtensionReply.readResult(of: method, from: &$0) } == sampleReply(method))
    }

    @Test func theDriftCheckCatchesADrift() throws {
        // A status whose uuid went out as i32 instead of i64 must be caught.
        let drifted = try wire { w in
            w.writeFieldBegin(.i32, id: 1); w.writeI32(0)
            w.writeFieldBegin(.string, id: 2); w.writeString("m")
            w.writeFieldBegin(.i32, id: 3); w.writeI32(1)
            w.writeFieldStop()
        }
        #expect(idl.mismatch(drifted, .named("ExtensionStatus"), at: "") != nil)
    }
}
