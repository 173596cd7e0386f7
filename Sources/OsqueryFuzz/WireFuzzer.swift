import Foundation
import Logging
import OsqueryEngine
import OsqueryManager
import OsqueryProtocol
import ThriftCodec

/// A seeded mutation fuzzer for what a peer on the extensions socket controls: the byte
/// stream the framer splits (``MessageFramer``), the calls the server decodes and answers
/// (``MessageProcessor``), the replies a client decodes (``RawReply``, the framer-checked
/// rows of ``ReplyRowsReader``), and `registerExtension` payloads run through the core's
/// ``ManagerService`` in process.
///
/// Input `i` of seed `s` depends on nothing else, so any input can be made again alone
/// (``input(_:)``). A crash is a finding; so is a disagreement between two paths that must agree
/// (the framer fed all at once or in pieces; rows decoded through the framer's checked list or
/// checked again one by one).
package final class WireFuzzer {
    package let seed: UInt64
    let seeds: [[UInt8]]
    let limits = ThriftLimits.default
    let processor: MessageProcessor
    let manager: ManagerService
    let owner = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
    /// How far inputs got: whole messages framed, registrations the manager accepted, replies
    /// whose rows were decoded both ways.
    package private(set) var framed = 0
    package private(set) var registered = 0
    package private(set) var rowReplies = 0

    package init(seed: UInt64) {
        self.seed = seed
        self.seeds = Self.seedMessages()
        self.processor = MessageProcessor(service: Self.echoService)
        var logger = Logger(label: "osquery.fuzz") { _ in SwiftLogNoOpLogHandler() }
        logger.logLevel = .critical
        let registry = PluginRegistry()
        let flags = Flags()
        manager = ManagerService(
            registry: registry, flags: flags, queries: QueryThreads(count: 1, registry: registry, flags: flags),
            caller: ExtensionCaller(managerSocket: "/nonexistent/osquery-fuzz.em", timeout: .milliseconds(10)),
            logger: logger)
    }

    /// Input `index`: a mutated seed message, a generated `registerExtension` call (mutated or
    /// not), or, rarely, random bytes.
    package func input(_ index: Int) -> [UInt8] {
        var rng = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        let kind = rng.below(100)
        if kind < 2 { return rng.bytes(rng.below(64)) }
        if kind < 27 {
            let call = Self.generatedRegistration(&rng)
            return rng.below(2) == 0 ? call : mutate(call, &rng)
        }
        return mutate(seeds[rng.below(seeds.count)], &rng)
    }

    /// Runs one input through every target; a description of what went wrong, or nil.
    package func run(_ bytes: [UInt8]) async -> String? {
        // The framer, fed all at once and in pieces: the same answer either way.
        var whole = MessageFramer(limits: limits)
        let wholeResult = bytes.withUnsafeBytes { raw in Result { () throws(ThriftError) in try whole.scan(raw) } }
        var pieces = MessageFramer(limits: limits)
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: bytes.count) &* 31 &+ seed)
        var cut = 0
        var pieceResult: Result<Int?, ThriftError> = .success(nil)
        while true {
            cut = min(bytes.count, cut + 1 + rng.below(max(1, bytes.count / 3)))
            pieceResult = bytes.withUnsafeBytes { raw in
                Result { () throws(ThriftError) in try pieces.scan(UnsafeRawBufferPointer(rebasing: raw[0..<cut])) }
            }
            if case .success(nil) = pieceResult, cut < bytes.count { continue }
            break
        }
        switch (wholeResult, pieceResult) {
        case (.success(let a), .success(let b)) where a != b:
            return "framer: all at once \(String(describing: a)), in pieces \(String(describing: b))"
        case (.success(let a?), .failure(let e)), (.failure(let e), .success(let a?)):
            return "framer: one way a message of \(a) bytes, the other \(e)"
        default:
            break
        }
        if case .success(let length?) = wholeResult, whole.lastStringMapList != pieces.lastStringMapList {
            return "framer: rows list \(String(describing: whole.lastStringMapList)) at once, "
                + "\(String(describing: pieces.lastStringMapList)) in pieces (message of \(length) bytes)"
        }
        // Any bytes through the generic reader.
        _ = try? ThriftReader.read(bytes) { r in (try r.readMessageBegin(), try r.readValue(.struct)) }
        guard case .success(let length?) = wholeResult else { return nil }
        guard length <= bytes.count else { return "framer: message of \(length) bytes in \(bytes.count)" }
        let frame = Array(bytes[0..<length])
        framed += 1
        // As a call: the server's decode and reply, and registrations through the manager.
        _ = await processor.process(frame)
        if let finding = await register(frame) { return finding }
        // As a reply: a client's decoding, the rows through the framer's checked list and again
        // one by one.
        return decodeReply(frame, rows: whole.lastStringMapList)
    }

    func register(_ frame: [UInt8]) async -> String? {
        let request: ExtensionRequest? = frame.withUnsafeBytes { raw in
            var reader = ThriftReader(raw, limits: limits)
            guard let header = try? reader.readMessageBegin(), let method = ExtensionMethod(name: header.name),
                method == .registerExtension || method == .deregisterExtension
            else { return nil }
            return try? ExtensionRequest.readArguments(of: method, from: &reader)
        }
        switch request {
        case .registerExtension(let info, let routes)?:
            let manager = self.manager
            let status = try? await PeerCredentials.$current.withValue(owner) {
                try await manager.registerExtension(info: info, registry: routes)
            }
            guard let status else { return "registerExtension threw" }
            if status.code == 0 {
                registered += 1
                manager.remove(uuid: status.uuid, reason: "fuzz")
                if manager.uuids.contains(status.uuid) { return "registerExtension: uuid \(status.uuid) not removed" }
            }
        case .deregisterExtension(let uuid)?:
            _ = try? await PeerCredentials.$current.withValue(owner) { try await manager.deregisterExtension(uuid: uuid) }
        default:
            break
        }
        return nil
    }

    func decodeReply(_ frame: [UInt8], rows: MessageFramer.StringMapList?) -> String? {
        guard let reply = try? RawReply.received(frame, rows: rows, limits: limits) else { return nil }
        let plain = try? reply.decode()
        guard reply.method == .call || reply.method == .query || reply.method == .getQueryColumns else { return nil }
        let checked = try? reply.decodeReplyRows()
        switch (plain, checked) {
        case (.response(let response)?, let (status, rows)?):
            rowReplies += 1
            if response.status != status { return "reply: status \(response.status) decoded, \(status) through rows" }
            let maps = rows.stringMaps
            if maps != response.response {
                return "reply: \(response.response.count) rows decoded, \(maps.count) different ones through the checked list"
            }
        case (nil, nil), (.response?, nil):
            // The plain decoder takes a reply whose rows list repeats; the rows path may not.
            break
        case (nil, let (_, rows)?):
            _ = rows.stringMaps
        default:
            return "reply: decoded as \(String(describing: plain)), not a response"
        }
        return nil
    }

    // MARK: Mutations

    func mutate(_ base: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = base
        for _ in 0...rng.below(4) {
            switch rng.below(11) {
            case 0 where !b.isEmpty:  // bit flips
                for _ in 0...rng.below(4) { b[rng.below(b.count)] ^= UInt8(1) << UInt8(rng.below(8)) }
            case 1 where !b.isEmpty:  // a byte that means something: type ids, 0, sign bits
                b[rng.below(b.count)] = Self.interestingBytes[rng.below(Self.interestingBytes.count)]
            case 2 where b.count >= 4:  // a length or count field
                let at = rng.below(b.count - 3)
                let old = Int32(bigEndian: b[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) })
                let choices: [Int32] = [
                    0, 1, -1, Int32.max, Int32.min, 0x7FFF_FFF0, 100 * 1024 * 1024, 100 * 1024 * 1024 - 8, 0x10000,
                    Int32(clamping: b.count), Int32(clamping: b.count - at), old &+ 1, old &- 1, old &+ 4, old &* 2,
                ]
                write(choices[rng.below(choices.count)], at: at, in: &b)
            case 3 where !b.isEmpty:  // truncate
                b.removeLast(rng.below(b.count) + 1)
            case 4:  // splice with another seed
                let other = seeds[rng.below(seeds.count)]
                let keep = b.isEmpty ? 0 : rng.below(b.count)
                let from = other.isEmpty ? 0 : rng.below(other.count)
                b = Array(b[..<keep]) + other[from...]
            case 5:  // insert random bytes
                b.insert(contentsOf: rng.bytes(1 + rng.below(16)), at: b.isEmpty ? 0 : rng.below(b.count))
            case 6 where b.count >= 2:  // repeat a chunk
                let start = rng.below(b.count)
                let end = min(b.count, start + 1 + rng.below(64))
                let chunk = Array(b[start..<end])
                for _ in 0...rng.below(8) { b.insert(contentsOf: chunk, at: rng.below(b.count)) }
            case 7 where b.count >= 2:  // delete a range
                let start = rng.below(b.count)
                b.removeSubrange(start..<min(b.count, start + 1 + rng.below(32)))
            case 8 where b.count >= 4:  // a huge length where one is read
                write(rng.below(2) == 0 ? Int32.max : 0x6400_0000 - Int32(rng.below(16)), at: rng.below(b.count - 3), in: &b)
            case 9:  // deep nesting
                b = Self.nested(depth: 1 + rng.below(200), rng: &rng)
            default:  // append a seed: two messages in one stream
                b += seeds[rng.below(seeds.count)]
            }
        }
        return b
    }

    func write(_ value: Int32, at: Int, in b: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { for i in 0..<4 { b[at + i] = $0[i] } }
    }

    static let interestingBytes: [UInt8] = [0, 1, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15, 16, 0x7F, 0x80, 0xFF, 0x81]

    /// A call whose arguments are containers nested `depth` deep (past the depth limit at 64).
    static func nested(depth: Int, rng: inout SplitMix64) -> [UInt8] {
        var w = ThriftWriter()
        w.writeMessageBegin(MessageHeader(name: "call", type: .call, sequenceID: 1))
        for _ in 0..<depth {
            switch rng.below(3) {
            case 0:
                w.writeFieldBegin(.struct, id: 1)
            case 1:
                w.writeFieldBegin(.list, id: 1)
                w.writeListBegin(element: .list, count: 1)
            default:
                w.writeFieldBegin(.map, id: 1)
                w.writeMapBegin(key: .string, value: .struct, count: 1)
                w.writeString("k")
            }
        }
        for _ in 0..<depth { w.writeFieldStop() }
        w.writeFieldStop()
        return w.bytes
    }

    // MARK: Seeds

    static func call(_ request: ExtensionRequest, seq: Int32 = 1, oldHeader: Bool = false, oneway: Bool = false) -> [UInt8] {
        var w = ThriftWriter()
        let header = MessageHeader(
            name: ThriftString(request.method.rawValue), type: oneway ? .oneway : .call, sequenceID: seq)
        if oldHeader { w.writeOldMessageBegin(header) } else { w.writeMessageBegin(header) }
        request.writeArguments(to: &w)
        return w.bytes
    }

    static func reply(_ method: ExtensionMethod, _ reply: ExtensionReply, seq: Int32 = 1) -> [UInt8] {
        encodeMessage(MessageHeader(name: ThriftString(method.rawValue), type: .reply, sequenceID: seq)) {
            reply.writeResult(to: &$0)
        }
    }

    static let tableRoutes: ExtensionPluginResponse = [
        ["id": "column", "name": "a", "type": "TEXT", "op": "0"],
        ["id": "column", "name": "b", "type": "INTEGER", "op": "1"],
        ["id": "column", "name": "c", "type": "BIGINT", "op": "4"],
        ["id": "alias", "alias": "t_alias"],
        ["id": "columnAlias", "name": "aa", "target": "a"],
        ["id": "attributes", "attributes": "0"],
    ]

    static func seedMessages() -> [[UInt8]] {
        let info = InternalExtensionInfo(name: "fz", version: "1.0.0", sdkVersion: "5.12.1", minSDKVersion: "1.0.0")
        let registry: ExtensionRegistry = [
            "table": ["fz_table": tableRoutes], "config": ["fz_config": []], "logger": ["fz_logger": []],
        ]
        let rows: ExtensionPluginResponse = (0..<40).map { i in
            ["i": ThriftString(String(i)), "name": ThriftString("row-\(i)"), "empty": "", "u": "ünï"]
        }
        var seeds: [[UInt8]] = [
            call(.ping), call(.shutdown), call(.extensions), call(.options),
            call(.query(sql: "select 1")), call(.getQueryColumns(sql: "select * from t")),
            call(.deregisterExtension(uuid: 5)),
            call(.call(registry: "table", item: "t", request: ["action": "generate", "context": "{\"constraints\":[]}"])),
            call(.registerExtension(info: info, registry: registry)),
            call(.registerExtension(info: info, registry: registry), oldHeader: true),
            call(.ping, oldHeader: true), call(.query(sql: "select 1"), oneway: true),
            reply(.ping, .status(ExtensionStatus(code: 0, message: "pong", uuid: 1))),
            reply(.shutdown, .void),
            reply(.extensions, .extensions([1: info, 2: InternalExtensionInfo(name: "other")])),
            reply(.options, .options(["a": InternalOptionInfo(value: "1", defaultValue: "0", type: "bool")])),
            reply(.registerExtension, .status(ExtensionStatus(code: 0, message: "OK", uuid: 7))),
            reply(.query, .response(ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: rows))),
            reply(.call, .response(ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: rows))),
            reply(.getQueryColumns, .response(ExtensionResponse(status: ExtensionStatus(code: 0), response: [["a": "TEXT"]]))),
            reply(.query, .response(ExtensionResponse(status: ExtensionStatus(code: 1, message: "error"), response: []))),
        ]
        seeds.append(
            encodeMessage(MessageHeader(name: "query", type: .exception, sequenceID: 1)) {
                TApplicationException(.internalError, "boom").write(to: &$0)
            })
        return seeds
    }

    static let names: [ThriftString] = [
        "", "t", "fz", "processes", "osquery_info", "a b", "x;DROP TABLE t", "t\"q", "ünïcødé", "sqlite_master",
        ThriftString(String(repeating: "n", count: 300)), "1abc", "_t", "temp.t", "main", "\u{0}",
    ]
    static let registries: [ThriftString] = ["table", "config", "logger", "distributed", "sql", "killswitch", "foo", ""]
    static let routeKeys: [ThriftString] = ["id", "name", "type", "op", "alias", "target", "attributes", "x"]
    static let routeValues: [ThriftString] = [
        "column", "alias", "columnAlias", "attributes", "TEXT", "INTEGER", "BIGINT", "UNSIGNED BIGINT", "DOUBLE",
        "BLOB", "", "0", "1", "2", "4", "8", "16", "-1", "99999999999999999999", "a", "b", "processes",
        "v1 AS SELECT 1; ATTACH DATABASE '/tmp/x' AS ai", "x y", "ünï",
    ]

    /// A `registerExtension` call with arbitrary info and route info.
    static func generatedRegistration(_ rng: inout SplitMix64) -> [UInt8] {
        func pick(_ pool: [ThriftString]) -> ThriftString { pool[rng.below(pool.count)] }
        let info = InternalExtensionInfo(
            name: pick(names), version: rng.below(2) == 0 ? "1.0.0" : pick(names),
            sdkVersion: [ThriftString("5.12.1"), "0.0.0", "", "1.7.7", "x.y", "99999999999.0.0"][rng.below(6)],
            minSDKVersion: pick(names))
        var registry: ExtensionRegistry = [:]
        for _ in 0..<rng.below(4) {
            var plugins: [ThriftString: ExtensionPluginResponse] = [:]
            for _ in 0..<rng.below(4) {
                var routes: ExtensionPluginResponse = []
                for _ in 0..<rng.below(8) {
                    var row: [ThriftString: ThriftString] = [:]
                    for _ in 0..<rng.below(5) { row[pick(routeKeys)] = pick(rng.below(3) == 0 ? names : routeValues) }
                    routes.append(StringMap(row))
                }
                plugins[pick(names)] = routes
            }
            registry[pick(registries)] = plugins
        }
        return call(.registerExtension(info: info, registry: registry), seq: Int32(truncatingIfNeeded: rng.next()))
    }
}

extension WireFuzzer {
    /// Answers every method at once, echoing what it was sent so replies carry the peer's bytes.
    static let echoService = ExtensionService(methods: Set(ExtensionMethod.allCases)) { request in
        switch request {
        case .ping: return .value(.status(ExtensionStatus(code: 0, message: "pong")))
        case .shutdown: return .value(.void)
        case .extensions: return .value(.extensions([1: InternalExtensionInfo(name: "a")]))
        case .options: return .value(.options(["a": InternalOptionInfo(value: "1")]))
        case .registerExtension(let info, _): return .value(.status(ExtensionStatus(code: 0, message: info.name, uuid: 1)))
        case .deregisterExtension(let uuid): return .value(.status(ExtensionStatus(code: 0, uuid: uuid)))
        case .call(let registry, let item, let req):
            return .value(.response(ExtensionResponse(status: ExtensionStatus(code: 0, message: item), response: [StringMap(req), ["registry": registry]])))
        case .query(let sql), .getQueryColumns(let sql):
            return .value(.response(ExtensionResponse(status: ExtensionStatus(code: 0), response: [["sql": sql]])))
        }
    }
}

/// SplitMix64: a small, fast generator whose whole state is its seed.
package struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
