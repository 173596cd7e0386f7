import Foundation
import Glibc
import OsqueryProtocol
import ThriftCodec

/// Runs an extension binary against the kit's reference manager and checks it
/// (protocol.md §2.5, §3, §4.3, §6 #40–42).
public struct ExtensionConformance: Sendable {
    public let command: [String]
    public init(command: [String]) { self.command = command }

    public func run(echo: (@Sendable (CheckResult) -> Void)? = nil) async -> Report {
        let rec = Recorder(mode: "extension", echo: echo)
        await ExtensionRun(command: command, rec: rec).all()
        return rec.current
    }
}

/// A launched extension process.
final class Launched: @unchecked Sendable {
    let process = Process()
    let log: String

    init(command: [String], socket: String, extra: [String], log: String) throws {
        self.log = log
        process.executableURL = URL(fileURLWithPath: command[0].contains("/") ? command[0] : "/usr/bin/env")
        let head = command[0].contains("/") ? [] : [command[0]]
        process.arguments = head + Array(command.dropFirst()) + extra + ["--socket", socket, "--timeout", "3", "--interval", "1"]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var running: Bool { process.isRunning }

    func logTail() -> String {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return String(text.suffix(400)).replacingOccurrences(of: "\n", with: " | ")
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let end = Date().addingTimeInterval(3)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

struct ExtensionRun {
    let command: [String]
    let rec: Recorder
    let dir: String

    init(command: [String], rec: Recorder) {
        self.command = command
        self.rec = rec
        dir = "/tmp/osqcf-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func client(_ path: String) -> ExtensionClient {
        ExtensionClient(path: path, options: RPCClientOptions(connectTimeout: .seconds(3), callTimeout: .seconds(10), maxIdleConnections: 0))
    }

    func call(_ c: ExtensionClient, _ registry: String, _ item: String, _ request: [String: String]) async -> QueryResult {
        var r: ExtensionPluginRequest = [:]
        for (k, v) in request { r[ThriftString(k)] = ThriftString(v) }
        do { return try await c.call(registry: ThriftString(registry), item: ThriftString(item), request: r).plain } catch {
            return QueryResult(code: -1, message: "transport error: \(error)", rows: [])
        }
    }

    func all() async {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        await runA()
        await runB()
        await runC()
    }

    /// Starts the extension before the socket exists, then the manager; waits for its registration.
    func launch(_ tag: String, extra: [String] = [], lateBy: Duration = .zero) async -> (ReferenceManager, RPCServer?, Launched?, ReferenceManager.Registration?) {
        let socket = "\(dir)/\(tag).em"
        let manager = ReferenceManager(socket: socket)
        var process: Launched?
        do { process = try Launched(command: command, socket: socket, extra: extra, log: "\(dir)/\(tag).log") } catch {
            rec.fail("extension.launch", "§4.3", "cannot start \(command): \(error)")
            return (manager, nil, nil, nil)
        }
        if lateBy > .zero { try? await Task.sleep(for: lateBy) }
        let server: RPCServer
        do { server = try await manager.serve() } catch {
            rec.fail("extension.launch", "§1.2", "cannot serve the reference manager on \(socket): \(error)")
            process?.stop()
            return (manager, nil, process, nil)
        }
        _ = await eventually(10) { !manager.registrations.isEmpty || process?.running == false }
        let registration = manager.registrations.first
        if let registration {
            // SDKs register before they listen (PyPI `osquery` calls serve() after
            // registerExtension returns), and a core retries its first connect, so
            // the kit waits for the socket too rather than failing a loaded machine.
            let path = "\(socket).\(registration.uuid)"
            _ = await eventually(5) { (try? RawConnection(path: path, timeout: 1)) != nil || process?.running == false }
        }
        return (manager, server, process, registration)
    }

    // MARK: run A: argv, late socket, registration payload, calls, silent deregistration

    func runA() async {
        let (manager, server, process, registration) = await launch("a", lateBy: .seconds(1))
        defer { process?.stop() }
        rec.check("extension.argv.accepted", "§4.3", process != nil && (registration != nil || process?.running == true),
                  expected: "the process accepts --socket S --timeout 3 --interval 1 and keeps running", seen: "exited: \(process?.logTail() ?? "")")
        rec.check("extension.register.late-socket", "§2.5", registration != nil,
                  expected: "registers after the manager socket appears 1 s late (waits up to --timeout)", seen: "no registration; log: \(process?.logTail() ?? "")")
        guard let registration, let server else {
            rec.skip("extension.calls", "§6", "the extension never registered")
            await server?.close()
            return
        }
        let info = registration.info
        rec.check("extension.register.name", "§2.1 §2.3", !info.name.isEmpty, expected: "a non-empty name", seen: "\"\"")
        rec.check("extension.register.sdk-version", "§2.3 rule 2", versionAtLeast(info.sdkVersion.lossyString, "1.7.7"),
                  expected: "sdk_version empty or ≥ 1.7.7", seen: info.sdkVersion.debugDescription)
        let registries = Set(registration.registry.keys.map(\.lossyString))
        let unknown = registries.subtracting(ReferenceManager.knownRegistries)
        rec.check("extension.register.registries", "§3.1", unknown.isEmpty, expected: "only registries the core knows", seen: "\(unknown.sorted())")
        let tables = registration.registry["table"] ?? [:]
        let typeNames: Set<String> = ["UNKNOWN", "TEXT", "INTEGER", "BIGINT", "UNSIGNED BIGINT", "DOUBLE", "BLOB"]
        var routeProblems: [String] = []
        for (name, routes) in tables {
            let columns = routes.filter { $0["id"] == "column" }
            if columns.isEmpty { routeProblems.append("\(name): no column routes") }
            for c in columns {
                guard let n = c["name"], let t = c["type"], let op = c["op"] else { routeProblems.append("\(name): column \(c) lacks name/type/op"); continue }
                if n.isEmpty { routeProblems.append("\(name): empty column name") }
                if !typeNames.contains(t.lossyString) { routeProblems.append("\(name).\(n): type \(t)") }
                if Int(op.lossyString) == nil { routeProblems.append("\(name).\(n): op \(op) not decimal") }
            }
        }
        rec.check("extension.register.table-routes", "§3.2", routeProblems.isEmpty,
                  expected: "every table has column routes {id, name, type (osquery's names), op (decimal)}", seen: "\(routeProblems)")

        let path = "\(manager.socket).\(registration.uuid)"
        let ext = client(path)
        do {
            let st = try await ext.ping()
            rec.check("extension.ping", "§2.3 ping", st.code == 0 && (st.uuid == 0 || st.uuid == registration.uuid),
                      expected: "{0, _, uuid 0 or \(registration.uuid)} on \(path)", seen: "\(st)")
        } catch { rec.fail("extension.ping", "§1.2 §2.3", "expected a ping reply on \(path); saw \(error)") }
        do {
            let r = try await Raw.exchange(path, [Raw.call("ping", seqid: 5, strict: false)])
            rec.check("extension.ping.old-header", "§1.1", r[0]?.header.type == .reply && r[0]?.header.sequenceID == 5,
                      expected: "REPLY ping#5 to an unversioned header", seen: r[0].map { "\($0)" } ?? "none")
        } catch { rec.fail("extension.ping.old-header", "§1.1", "\(error)") }
        do {
            let r = try await Raw.exchange(path, [Raw.call("foo", seqid: 6), Raw.call("ping", seqid: 7)])
            let ok = r[0]?.header.type == .exception && r[0]?.body[field: 2] == .i32(1) && r[1]?.header.type == .reply
            rec.check("extension.unknown-method", "§1.1", ok, expected: "EXCEPTION type 1 for foo, then ping answered on the same connection",
                      seen: r.map { $0.map { "\($0)" } ?? "none" }.joined(separator: " / "))
        } catch { rec.fail("extension.unknown-method", "§1.1", "\(error)") }

        // §1.4: an idle connection must not keep another connection waiting (C++ TThreadedServer, Go goroutines).
        do {
            let reply = try await offPool { () throws -> RawReply? in
                let idle = try RawConnection(path: path)
                let second = try RawConnection(path: path, timeout: 2)
                try second.send(Raw.call("ping", seqid: 11))
                let r = try second.receiveMessage().map(RawReply.decode)
                _ = idle
                return r
            }
            rec.check("extension.idle-connection-does-not-block", "§1.4", reply?.header.type == .reply && reply?.header.sequenceID == 11,
                      expected: "ping#11 answered within 2 s while another connection stays open and idle",
                      seen: reply.map { "\($0)" } ?? "no reply (the server serves one connection at a time)")
        } catch { rec.fail("extension.idle-connection-does-not-block", "§1.4", "\(error)") }

        await tableChecks(ext, path: path, tables: tables)
        await pluginChecks(ext, registration: registration)

        // §6 #41: unknown registry / item; the connection stays usable.
        let unknownReg = await call(ext, "cfx_nope", "x", [:])
        rec.check("extension.call.unknown-registry", "§6 #41 §3.1", unknownReg.code != 0 && unknownReg.code != -1,
                  expected: "a status with code ≠ 0", seen: "\(unknownReg)")
        let unknownItem = await call(ext, "table", "cfx_nope", ["action": "generate"])
        rec.check("extension.call.unknown-item", "§6 #41 §3.1", unknownItem.code != 0 && unknownItem.code != -1,
                  expected: "a status with code ≠ 0", seen: "\(unknownItem)")
        do {
            let msg = Raw.call("call", seqid: 8) { w in
                w.writeFieldBegin(.string, id: 1); w.writeString("cfx_nope")
                w.writeFieldBegin(.string, id: 2); w.writeString("x")
                w.writeFieldBegin(.map, id: 3); w.writeMapBegin(key: .string, value: .string, count: 0)
            }
            let r = try await Raw.exchange(path, [msg, Raw.call("ping", seqid: 9)])
            rec.check("extension.call.connection-survives", "§6 #41", r[0]?.header.type == .reply && r[1]?.header.type == .reply && r[1]?.header.sequenceID == 9,
                      expected: "REPLY to the unknown call, then ping#9 on the same connection", seen: r.map { $0.map { "\($0)" } ?? "none" }.joined(separator: " / "))
        } catch { rec.fail("extension.call.connection-survives", "§6 #41", "\(error)") }

        // Silent deregistration: the extension should notice (C++ checks extensions(); §2.5).
        let before = manager.registrations.count
        manager.forget(registration.uuid)
        let noticed = await eventually(1 + 3 + 5) {
            manager.registrations.count > before || process?.running == false
        }
        rec.check("extension.liveness.forgotten", "§2.5 (C++ ExtensionWatcher, fleetdm#52093)", noticed,
                  expected: "exits or re-registers within --interval + --timeout after the manager silently forgets it",
                  seen: "still running and not re-registered (a ping-only watchdog cannot notice)")
        await server.close()
    }

    func tableChecks(_ ext: ExtensionClient, path: String, tables: ExtensionRouteTable) async {
        guard let (name, routes) = tables.sorted(by: { $0.key < $1.key }).first else {
            for id in ["columns", "generate.empty-context", "generate.missing-context", "generate.rich-context", "generate.row-keys",
                       "generate.unknown-action", "generate.concurrent"] {
                rec.skip("extension.table.\(id)", "§3.2", "the extension registers no table")
            }
            return
        }
        let t = name.lossyString
        let columns = routes.filter { $0["id"] == "column" }.compactMap { $0["name"]?.lossyString }
        let cols = await call(ext, "table", t, ["action": "columns"])
        let returned = cols.rows.filter { $0["id"] == "column" }.compactMap { $0["name"] }
        rec.check("extension.table.columns", "§3.2 (later columns RPCs)", cols.code == 0 && returned == columns,
                  expected: "code 0 and the registered columns \(columns)", seen: "\(cols.code) \(returned)")

        func context(_ constraints: [String: [[String: Any]]], used: [String]) -> String {
            let entries: [[String: Any]] = columns.sorted().map { c in
                let type = routes.first { $0["name"]?.lossyString == c }?["type"]?.lossyString ?? "TEXT"
                return ["name": c, "list": constraints[c] ?? [], "affinity": type]
            }
            var bits: UInt64 = 0
            for (i, c) in columns.enumerated() where used.contains(c) { bits |= i < 63 ? (1 << UInt64(i)) : (1 << 63) }
            let object: [String: Any] = ["constraints": entries, "colsUsed": used, "colsUsedBitset": bits]
            return String(decoding: (try? JSONSerialization.data(withJSONObject: object)) ?? Data(), as: UTF8.self)
        }
        let known = Set(columns + ["rowid"])
        let empty = await call(ext, "table", t, ["action": "generate", "context": context([:], used: columns)])
        rec.check("extension.table.generate.empty-context", "§3.2 §6 #18", empty.code == 0,
                  expected: "code 0 for a context with every list []", seen: "\(empty.code) \(empty.message)")
        let stray = empty.rows.flatMap(\.keys).filter { !known.contains($0) }
        rec.check("extension.table.generate.row-keys", "§3.2 rows", stray.isEmpty, expected: "row keys among \(columns.sorted()) (or rowid)", seen: "\(Set(stray).sorted())")
        let missing = await call(ext, "table", t, ["action": "generate"])
        rec.check("extension.table.generate.missing-context", "§6 #42 §3.2", missing.code == 0,
                  expected: "no context key treated as an empty context (C++), code 0", seen: "\(missing.code) \(missing.message)")
        let first = columns[0]
        let value = empty.rows.first?[first] ?? "cfx"
        let rich = await call(ext, "table", t, ["action": "generate", "context": context(
            [first: [["op": 2, "expr": value], ["op": 65, "expr": "%"]]], used: [first])])
        rec.check("extension.table.generate.rich-context", "§3.2 context JSON", rich.code == 0,
                  expected: "code 0 for EQ + LIKE constraints, colsUsed [\(first)] and a bitset", seen: "\(rich.code) \(rich.message)")
        let action = await call(ext, "table", t, ["action": "cfx_bogus"])
        rec.check("extension.table.generate.unknown-action", "§3.2 other actions", action.code == 1,
                  expected: "code 1 for an unknown action (C++ `Unknown table plugin action`)", seen: "\(action)")
        let c = context([:], used: columns)
        let results = await withTaskGroup(of: Int32.self) { group in
            for _ in 0..<8 {
                group.addTask { await call(client(path), "table", t, ["action": "generate", "context": c]).code }
            }
            var codes: [Int32] = []
            for await code in group { codes.append(code) }
            return codes
        }
        rec.check("extension.table.generate.concurrent", "§1.4", results.allSatisfy { $0 == 0 },
                  expected: "8 concurrent generate calls (own connections) all code 0", seen: "\(results)")
    }

    func pluginChecks(_ ext: ExtensionClient, registration: ReferenceManager.Registration) async {
        if let logger = registration.registry["logger"]?.keys.sorted().first?.lossyString {
            let features = await call(ext, "logger", logger, ["action": "features"])
            rec.check("extension.logger.features", "§3.3 features", (0...3).contains(features.code) && features.message == "OK",
                      expected: "the feature bitmask in status.code with message \"OK\"",
                      seen: "\(features) — a generic failure that the core reads as LOGSTATUS")
            let line = await call(ext, "logger", logger, ["string": "{\"name\":\"cfx\"}", "category": "event"])
            rec.check("extension.logger.string", "§3.3", line.code == 0, expected: "code 0 for a result line", seen: "\(line)")
        } else {
            rec.skip("extension.logger.features", "§3.3", "no logger plugin")
            rec.skip("extension.logger.string", "§3.3", "no logger plugin")
        }
        if let config = registration.registry["config"]?.keys.sorted().first?.lossyString {
            let gen = await call(ext, "config", config, ["action": "genConfig"])
            rec.check("extension.config.genConfig", "§3.4", gen.code == 0 && !gen.rows.isEmpty,
                      expected: "code 0, row 0 maps source names to JSON config", seen: "\(gen)")
        } else {
            rec.skip("extension.config.genConfig", "§3.4", "no config plugin")
        }
    }

    // MARK: run B: --verbose accepted, shutdown is a call with a reply

    func runB() async {
        let (manager, server, process, registration) = await launch("b", extra: ["--verbose"])
        defer { process?.stop() }
        rec.check("extension.argv.verbose", "§4.3", registration != nil, expected: "registers when started with --verbose first",
                  seen: "no registration; log: \(process?.logTail() ?? "")")
        if let registration {
            do {
                try await client("\(manager.socket).\(registration.uuid)").shutdown()
                rec.add(CheckResult(id: "extension.shutdown.reply", status: .pass, cite: "§2.2 shutdown (not oneway)"))
            } catch { rec.fail("extension.shutdown.reply", "§2.2", "expected an empty REPLY to shutdown; saw \(error)") }
        } else {
            rec.skip("extension.shutdown.reply", "§2.2", "the extension never registered")
        }
        await server?.close()
    }

    // MARK: run C: the manager disappears

    func runC() async {
        let (manager, server, process, registration) = await launch("c")
        defer { process?.stop() }
        guard registration != nil, let server else {
            rec.skip("extension.liveness.manager-gone", "§6 #40", "the extension never registered")
            await server?.close()
            return
        }
        await server.close()
        unlink(manager.socket)
        let exited = await eventually(1 + 3 + 5) { process?.running == false }
        rec.check("extension.liveness.manager-gone", "§6 #40 §2.5", exited,
                  expected: "exits within --interval + --timeout after the manager socket disappears", seen: "still running")
    }
}
