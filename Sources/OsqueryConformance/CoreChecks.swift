import Foundation
import Glibc
import OsqueryProtocol
import ThriftCodec

/// Checks a running core from outside through its manager socket (protocol.md §6).
public struct CoreConformance: Sendable {
    public let socket: String
    public init(socket: String) { self.socket = socket }

    /// Runs every core check; `echo` sees each result as it is recorded.
    public func run(echo: (@Sendable (CheckResult) -> Void)? = nil) async -> Report {
        let rec = Recorder(mode: "core", echo: echo)
        await CoreRun(socket: socket, rec: rec).all()
        return rec.current
    }
}

typealias Rows = [[String: String]]

struct QueryResult: CustomStringConvertible {
    var code: Int32
    var message: String
    var rows: Rows
    var description: String { "{code \(code), message \(message.debugDescription), rows \(rows)}" }
}

extension ExtensionResponse {
    var plain: QueryResult {
        QueryResult(code: status.code, message: status.message.lossyString, rows: response.map { row in
            var d: [String: String] = [:]
            for (k, v) in row { d[k.lossyString] = v.lossyString }
            return d
        })
    }
}

struct CoreRun {
    let socket: String
    let rec: Recorder
    let em: ExtensionManagerClient
    let tag: String

    init(socket: String, rec: Recorder) {
        self.socket = socket
        self.rec = rec
        em = ExtensionManagerClient(path: socket, options: RPCClientOptions(connectTimeout: .seconds(3), callTimeout: .seconds(20)))
        tag = String(getpid() % 100000)
    }

    func query(_ sql: String) async -> QueryResult {
        do { return try await em.query(ThriftString(sql)).plain } catch {
            return QueryResult(code: -1, message: "transport error: \(error)", rows: [])
        }
    }

    func call(_ registry: String, _ item: String, _ request: [String: String]) async -> QueryResult {
        var r: ExtensionPluginRequest = [:]
        for (k, v) in request { r[ThriftString(k)] = ThriftString(v) }
        do { return try await em.call(registry: ThriftString(registry), item: ThriftString(item), request: r).plain } catch {
            return QueryResult(code: -1, message: "transport error: \(error)", rows: [])
        }
    }

    func register(_ name: String, sdk: String = "", minSDK: String = "", version: String = "1.0", _ registry: ExtensionRegistry) async -> ExtensionStatus {
        let info = InternalExtensionInfo(name: ThriftString(name), version: ThriftString(version), sdkVersion: ThriftString(sdk),
                                         minSDKVersion: ThriftString(minSDK))
        do { return try await em.registerExtension(info: info, registry: registry) } catch {
            return ExtensionStatus(code: -1, message: ThriftString("transport error: \(error)"))
        }
    }

    func deregister(_ uuid: Int64) async -> ExtensionStatus {
        do { return try await em.deregisterExtension(uuid: uuid) } catch {
            return ExtensionStatus(code: -1, message: ThriftString("transport error: \(error)"))
        }
    }

    func extensionsList() async -> InternalExtensionList? { try? await em.extensions() }

    func all() async {
        guard (try? await em.ping(timeout: .seconds(5))) != nil else {
            rec.fail("core.connect", "§1.1", "cannot ping the manager at \(socket)")
            return
        }
        await wire()
        await managerMethods()
        await registration()
        await queries()
        await probe()
        await deathWatch()
        em.close()
    }

    // MARK: wire (§1.1, §6 1–6)

    func expectPong(_ reply: RawReply?, seqid: Int32) -> (Bool, String) {
        guard let reply else { return (false, "no reply") }
        let ok = reply.header.type == .reply && reply.header.name == "ping" && reply.header.sequenceID == seqid
            && reply.success?[field: 1] == .i32(0) && reply.success?[field: 2] == .string("pong")
            && (reply.success?[field: 3] == .i64(0) || reply.success?[field: 3] == nil)
        return (ok, reply.description)
    }

    func wire() async {
        do {
            let r = try await Raw.exchange(socket, [Raw.call("ping", seqid: 41)])
            let (ok, seen) = expectPong(r[0], seqid: 41)
            rec.check("core.ping.strict", "§6 #1", ok, expected: "REPLY ping#41 {1:i32:0, 2:\"pong\", 3:i64:0}", seen: seen)
        } catch { rec.fail("core.ping.strict", "§6 #1", "\(error)") }

        do {
            let r = try await Raw.exchange(socket, [Raw.call("ping", seqid: 42, strict: false)])
            let (ok, seen) = expectPong(r[0], seqid: 42)
            rec.check("core.ping.old-header", "§6 #2", ok, expected: "a normal REPLY to an unversioned header", seen: seen)
        } catch { rec.fail("core.ping.old-header", "§6 #2", "\(error)") }

        do {
            let ping = Raw.call("ping", seqid: 43)
            var framed = withUnsafeBytes(of: UInt32(ping.count).bigEndian) { Array($0) }
            framed += ping
            let r = try await Raw.exchange(socket, [framed], timeout: 1.5)
            let isPong = r[0].map { $0.header.type == .reply && $0.header.name == "ping" } ?? false
            rec.check("core.ping.framed-refused", "§6 #3 §1.1", !isPong, expected: "no ping REPLY to a 4-byte-framed message",
                      seen: r[0].map { "\($0)" } ?? "nothing")
        } catch {
            rec.add(CheckResult(id: "core.ping.framed-refused", status: .pass, cite: "§6 #3 §1.1"))
        }

        do {
            let r = try await Raw.exchange(socket, [Raw.call("foo", seqid: 44)])
            let reply = r[0]
            let ok = reply?.header.type == .exception && reply?.header.sequenceID == 44
                && reply?.body[field: 2] == .i32(1) && reply?.body[field: 1] == .string("Invalid method name: 'foo'")
            rec.check("core.unknown-method", "§6 #4 §1.1", ok,
                      expected: "EXCEPTION foo#44 {1:\"Invalid method name: 'foo'\", 2:i32:1}", seen: reply.map { "\($0)" } ?? "no reply")
        } catch { rec.fail("core.unknown-method", "§6 #4", "\(error)") }

        do {
            let r = try await Raw.exchange(socket, [Raw.call("ping", seqid: 1), Raw.call("extensions", seqid: 2), Raw.call("options", seqid: 3)])
            let names = r.map { $0.map { "\($0.header.name.lossyString)#\($0.header.sequenceID)" } ?? "none" }
            rec.check("core.one-connection-sequence", "§6 #5 §1.4", names == ["ping#1", "extensions#2", "options#3"],
                      expected: "[ping#1, extensions#2, options#3]", seen: "\(names)")
        } catch { rec.fail("core.one-connection-sequence", "§6 #5", "\(error)") }

        do {
            let s = socket
            let r = try await offPool { () throws -> RawReply? in
                let idle = try RawConnection(path: s)
                let second = try RawConnection(path: s)
                try second.send(Raw.call("ping", seqid: 7))
                let reply = try second.receiveMessage().map(RawReply.decode)
                _ = idle
                return reply
            }
            let (ok, seen) = expectPong(r, seqid: 7)
            rec.check("core.idle-connection-does-not-block", "§6 #6 §1.4", ok, expected: "ping answered while another connection idles", seen: seen)
        } catch { rec.fail("core.idle-connection-does-not-block", "§6 #6", "\(error)") }

        // Many connections at once, each with its own ping.
        let s = socket
        let okCount = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<16 {
                group.addTask {
                    guard let r = try? await Raw.exchange(s, [Raw.call("ping", seqid: Int32(100 + i))]), let reply = r[0] else { return false }
                    return reply.header.sequenceID == Int32(100 + i) && reply.success?[field: 1] == .i32(0)
                }
            }
            var n = 0
            for await ok in group where ok { n += 1 }
            return n
        }
        rec.check("core.concurrent-connections", "§1.4", okCount == 16, expected: "16 concurrent pings answered with their seqids", seen: "\(okCount)")

        do {
            let r = try await Raw.exchange(socket, [Raw.call("shutdown", seqid: 9), Raw.call("ping", seqid: 10)])
            let ok = r[0]?.header.type == .reply && r[0]?.body == .struct([]) && r[1]?.header.type == .reply
            rec.check("core.manager-shutdown-is-noop", "§2.2 §2.3", ok, expected: "empty REPLY to shutdown, then ping still answered",
                      seen: r.map { $0.map { "\($0)" } ?? "none" }.joined(separator: " / "))
        } catch { rec.fail("core.manager-shutdown-is-noop", "§2.3", "\(error)") }
    }

    // MARK: extensions / options (§6 7–8)

    func managerMethods() async {
        do {
            let r = try await Raw.exchange(socket, [Raw.call("extensions", seqid: 5)])
            guard case .map(let k, let v, let pairs)? = r[0]?.success else {
                rec.fail("core.extensions.shape", "§2.1", "expected field 0 map<i64, InternalExtensionInfo>; saw \(r[0].map { "\($0)" } ?? "none")")
                return
            }
            rec.check("core.extensions.shape", "§2.1", k == .i64 && (pairs.isEmpty || v == .struct),
                      expected: "map<i64, struct>", seen: "map<\(k), \(v)>")
            rec.check("core.extensions.core-not-listed", "§6 #7 §2.3", !pairs.contains { $0.0 == .i64(0) },
                      expected: "uuid 0 (the core) not listed", seen: render(.map(key: k, value: v, pairs)))
        } catch { rec.fail("core.extensions.shape", "§2.1", "\(error)") }

        do {
            let r = try await Raw.exchange(socket, [Raw.call("options", seqid: 6)])
            guard case .map(_, _, let pairs)? = r[0]?.success else {
                rec.fail("core.options.extensions_socket", "§6 #8", "no options map: \(r[0].map { "\($0)" } ?? "none")")
                return
            }
            var options: [String: ThriftValue] = [:]
            for (k, v) in pairs { if case .string(let s) = k { options[s.lossyString] = v } }
            let sock = options["extensions_socket"]
            rec.check("core.options.extensions_socket", "§6 #8 §2.3",
                      sock?[field: 1] == .string(ThriftString(socket)) && sock?[field: 3] == .string("string"),
                      expected: "{1:\"\(socket)\", 3:\"string\"}", seen: sock.map(render) ?? "missing")
            let missing = ["config_plugin", "logger_plugin", "distributed_plugin"].filter { options[$0] == nil }
            rec.check("core.options.plugins", "§6 #8", missing.isEmpty, expected: "config_plugin, logger_plugin, distributed_plugin", seen: "missing \(missing)")
            let interval = options["extensions_interval"]
            rec.check("core.options.types", "§2.3", interval?[field: 3] == .string("string") && options["extensions_timeout"]?[field: 3] == .string("string"),
                      expected: "extensions_interval and extensions_timeout typed \"string\"", seen: interval.map(render) ?? "missing")
        } catch { rec.fail("core.options.extensions_socket", "§6 #8", "\(error)") }
    }

    // MARK: registerExtension / deregisterExtension (§6 9–16, 29–30, 43)

    func registration() async {
        let name = "cfx_t1_\(tag)"
        let table = "cfx_t1_tbl_\(tag)"
        let routes: [StringMap] = [["id": "column", "name": "a", "type": "TEXT", "op": "0"]]
        let reg: ExtensionRegistry = ["table": [ThriftString(table): routes]]
        let st = await register(name, sdk: "", minSDK: "9.9.9", version: "1.2.3", reg)
        let okReg = st.code == 0 && st.message == "OK" && (1...65535).contains(st.uuid)
        rec.check("core.register.ok", "§6 #9 §2.3", okReg, expected: "{0, \"OK\", 1≤uuid≤65535}", seen: "\(st)")
        guard okReg else { return }
        let uuid = st.uuid

        let dup = await register(name, [:])
        rec.check("core.register.duplicate", "§6 #10 §2.3", dup.code == 1 && dup.message == "Duplicate extension registered",
                  expected: "{1, \"Duplicate extension registered\"}", seen: "\(dup)")

        let old = await register("cfx_old_\(tag)", sdk: "1.7.6", [:])
        rec.check("core.register.sdk-too-old", "§6 #11 §2.3", old.code == 1 && old.message == "Incompatible extension SDK version",
                  expected: "{1, \"Incompatible extension SDK version\"}", seen: "\(old)")
        if old.code == 0 { _ = await deregister(old.uuid) }
        for sdk in ["1.7.7", "0.0.0", "5.0.0"] {
            let s = await register("cfx_sdk_\(sdk.replacingOccurrences(of: ".", with: "_"))_\(tag)", sdk: sdk, [:])
            rec.check("core.register.sdk-\(sdk)", "§6 #11 §2.3", s.code == 0, expected: "sdk_version \(sdk) accepted", seen: "\(s)")
            if s.code == 0 { _ = await deregister(s.uuid) }
        }

        let time = await register("cfx_time_\(tag)", ["table": ["time": routes]])
        rec.check("core.register.conflict", "§6 #12 §2.3 4a", time.code == 1 &&
                  time.message == "Failed adding registry: Registry item time conflicts with another item of the same name.",
                  expected: "{1, \"Failed adding registry: Registry item time conflicts with another item of the same name.\"}", seen: "\(time)")
        if time.code == 0 { _ = await deregister(time.uuid) }

        let ks = await register("cfx_ks_\(tag)", ["killswitch": [:]])
        rec.check("core.register.unknown-registry", "§6 #13 §3.1", ks.code == 1 && ks.message == "Failed adding registry: Unknown registry: killswitch",
                  expected: "{1, \"Failed adding registry: Unknown registry: killswitch\"}", seen: "\(ks)")
        if ks.code == 0 { _ = await deregister(ks.uuid) }

        let empty = await register("cfx_t2_\(tag)", ["table": [ThriftString("cfx_t2_\(tag)"): []]])
        rec.check("core.register.empty-routes", "§6 #14 §3.2", empty.code == 1 && empty.message == "Failed adding registry: Invalid route info",
                  expected: "{1, \"Failed adding registry: Invalid route info\"}", seen: "\(empty)")
        if empty.code == 0 { _ = await deregister(empty.uuid) }

        // §6 #15, read schema-free: the info comes back byte for byte.
        do {
            let r = try await Raw.exchange(socket, [Raw.call("extensions", seqid: 15)])
            var info: ThriftValue?
            if case .map(_, _, let pairs)? = r[0]?.success { info = pairs.first { $0.0 == .i64(uuid) }?.1 }
            let want: ThriftValue = .struct([.init(id: 1, value: .string(ThriftString(name))), .init(id: 2, value: .string("1.2.3")),
                                             .init(id: 3, value: .string("")), .init(id: 4, value: .string("9.9.9"))])
            rec.check("core.extensions.info-bytes", "§6 #15 §2.3", info == want, expected: render(want), seen: info.map(render) ?? "uuid \(uuid) not listed")
        } catch { rec.fail("core.extensions.info-bytes", "§6 #15", "\(error)") }

        let owner = await query("select name, owner_uuid from osquery_registry where registry='table' and name='\(table)'")
        rec.check("core.registry.owner", "§6 #16 §5", owner.code == 0 && owner.rows == [["name": table, "owner_uuid": "\(uuid)"]],
                  expected: "one row owner_uuid=\(uuid)", seen: "\(owner)")

        let ext = await query("select uuid, name, path, type from osquery_extensions where uuid in (0, \(uuid)) order by uuid")
        let extRow = ext.rows.last
        rec.check("core.osquery_extensions.rows", "§5 §1.2", ext.code == 0 && ext.rows.count == 2 && ext.rows.first?["type"] == "core"
                  && extRow?["path"] == "\(socket).\(uuid)" && extRow?["type"] == "extension" && extRow?["name"] == name,
                  expected: "core row plus {path \(socket).\(uuid), type extension}", seen: "\(ext)")

        let sdk = await query("select sdk_version from osquery_extensions where uuid=\(uuid)")
        if sdk.rows == [["sdk_version": "9.9.9"]] {
            rec.add(CheckResult(id: "core.osquery_extensions.sdk-swap", status: .pass, cite: "§6 #43 §5"))
        } else {
            rec.check("core.osquery_extensions.sdk-swap", "§6 #43 §5", sdk.rows == [["sdk_version": ""]],
                      expected: "min_sdk_version 9.9.9 (osquery's swap) or sdk_version \"\" as registered", seen: "\(sdk)",
                      differs: "sdk_version shows the registered sdk_version, not min_sdk_version (docs/differences-from-osquery.md)")
        }

        let dr = await deregister(uuid)
        rec.check("core.deregister.ok", "§6 #29 §2.3", dr.code == 0 && dr.message == "OK", expected: "{0, \"OK\"}", seen: "\(dr)")
        let gone = await query("select * from \(table)")
        rec.check("core.deregister.table-detached", "§6 #29", gone.code == 1 && gone.message.contains("no such table: \(table)"),
                  expected: "{1, \"no such table: \(table)\"}", seen: "\(gone)")
        let list = await extensionsList()
        rec.check("core.deregister.unlisted", "§6 #29", list != nil && list?[uuid] == nil, expected: "uuid \(uuid) gone from extensions()",
                  seen: "\(list.map { Array($0.keys) } ?? [])")
        let unknown = await deregister(424242)
        rec.check("core.deregister.unknown", "§6 #30 §2.3", unknown.code == 1 && unknown.message == "No extension UUID found",
                  expected: "{1, \"No extension UUID found\"}", seen: "\(unknown)")
    }

    // MARK: query / getQueryColumns / call (§5, §6 23–27)

    func queries() async {
        do {
            let r = try await em.getQueryColumns("select seconds as s from time").plain
            rec.check("core.getQueryColumns", "§6 #23 §5", r.code == 0 && r.rows == [["s": "INTEGER"]], expected: "{0}, [{s: INTEGER}]", seen: "\(r)")
        } catch { rec.fail("core.getQueryColumns", "§6 #23", "\(error)") }
        do {
            let r = try await em.getQueryColumns("selectx").plain
            rec.check("core.getQueryColumns.error", "§2.3", r.code == 1 && r.rows.isEmpty && r.message.contains("syntax error"),
                      expected: "code 1, syntax error, no rows", seen: "\(r)")
        } catch { rec.fail("core.getQueryColumns.error", "§2.3", "\(error)") }

        let bad = await query("selectx")
        rec.check("core.query.syntax-error", "§6 #24 §5", bad.code == 1 && bad.message.contains("syntax error") && bad.rows.isEmpty,
                  expected: "code 1, message contains \"syntax error\", no rows", seen: "\(bad)")
        let nope = await query("select * from cfx_no_such_table")
        rec.check("core.query.no-such-table", "§5", nope.code == 1 && nope.message == "no such table: cfx_no_such_table",
                  expected: "{1, \"no such table: cfx_no_such_table\"}", seen: "\(nope)")
        let multi = await query("select 1 as a; select 2 as a")
        rec.check("core.query.statements-concatenated", "§5", multi.code == 0 && multi.rows == [["a": "1"], ["a": "2"]],
                  expected: "[{a:1},{a:2}]", seen: "\(multi)")
        let empty = await query("  ")
        rec.check("core.query.empty", "§5", empty.code == 0 && empty.rows.isEmpty, expected: "code 0, no rows", seen: "\(empty)")
        let values = await query("select 42 as i, null as n, 'x' as t")
        rec.check("core.query.values", "§5", values.rows == [["i": "42", "n": "", "t": "x"]],
                  expected: "integers as decimal text, NULL as \"\"", seen: "\(values)")

        let cols = await call("table", "time", ["action": "columns"])
        let colRows = cols.rows.filter { $0["id"] == "column" }
        rec.check("core.call.columns", "§6 #25 §3.2", cols.code == 0 && !colRows.isEmpty
                  && colRows.allSatisfy { $0["name"] != nil && $0["type"] != nil && $0["op"] != nil }
                  && cols.rows.last?["id"] == "attributes" && cols.rows.last?["attributes"] != nil,
                  expected: "column rows {id,name,type,op} then {id:attributes, attributes:n}", seen: "\(cols.rows.prefix(3))… last \(cols.rows.last ?? [:])")
        let unknownItem = await call("table", "nope", ["action": "generate"])
        rec.check("core.call.unknown-item", "§6 #26 §2.3", unknownItem.code == 1 && unknownItem.message == "Cannot call registry item: nope",
                  expected: "{1, \"Cannot call registry item: nope\"}", seen: "\(unknownItem)")
        let noAction = await call("table", "time", [:])
        rec.check("core.call.no-action", "§6 #27 §3.2", noAction.code == 1 && noAction.message == "Table plugins must include a request action",
                  expected: "{1, \"Table plugins must include a request action\"}", seen: "\(noAction)")
        let unknownReg = await call("cfx_reg", "x", [:])
        rec.check("core.call.unknown-registry", "§2.3", unknownReg.code == 1 && unknownReg.message == "Unknown registry requested: cfx_reg",
                  expected: "{1, \"Unknown registry requested: cfx_reg\"}", seen: "\(unknownReg)")
        do {
            let r = try await Raw.exchange(socket, [callMessage(registry: "cfx_reg", item: "", seqid: 77)])
            let reply = r[0]
            if reply?.header.type == .exception {
                rec.add(CheckResult(id: "core.call.unknown-registry-empty-item", status: .pass, cite: "§2.3"))
            } else {
                let status = reply?.success?[field: 1]
                rec.check("core.call.unknown-registry-empty-item", "§2.3",
                          status?[field: 1] == .i32(1) && status?[field: 2] == .string("Unknown registry requested: cfx_reg"),
                          expected: "T_EXCEPTION (osquery) or {1, \"Unknown registry requested: cfx_reg\"}", seen: reply.map { "\($0)" } ?? "none",
                          differs: "a status instead of a Thrift exception, so the caller's transport survives (docs/differences-from-osquery.md)")
            }
        } catch { rec.fail("core.call.unknown-registry-empty-item", "§2.3", "\(error)") }
    }

    func callMessage(registry: String, item: String, seqid: Int32) -> [UInt8] {
        Raw.call("call", seqid: seqid) { w in
            w.writeFieldBegin(.string, id: 1)
            w.writeString(registry)
            w.writeFieldBegin(.string, id: 2)
            w.writeString(item)
            w.writeFieldBegin(.map, id: 3)
            w.writeMapBegin(key: .string, value: .string, count: 0)
        }
    }
}
