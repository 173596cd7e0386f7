import Foundation
import OsqueryProtocol
import ThriftCodec

extension CoreRun {
    /// The constraint entry for `column` in a context.
    func constraint(_ ctx: [String: Any]?, _ column: String) -> [String: Any]? {
        (ctx?["constraints"] as? [[String: Any]])?.first { $0["name"] as? String == column }
    }

    func list(_ ctx: [String: Any]?, _ column: String) -> [[String: Any]]? {
        constraint(ctx, column)?["list"] as? [[String: Any]]
    }

    func json(_ v: Any?) -> String {
        guard let v, JSONSerialization.isValidJSONObject(v),
              let d = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys]) else { return "\(v ?? "nil")" }
        return String(decoding: d, as: UTF8.self)
    }

    /// op must be a JSON number (NSNumber that is not a Bool), expr a string.
    func isEq(_ entry: [String: Any], op: Int, expr: String) -> Bool {
        guard let n = entry["op"] as? NSNumber, !(entry["op"] is String), n.intValue == op else { return false }
        return entry["expr"] as? String == expr
    }

    /// Registers the probe, serves it on `<socket>.<uuid>` and checks what the core sends it (§6 17–22, 28, 44).
    func probe() async {
        let probe = ProbeExtension()
        let st = await register("cfx_probe_\(tag)", sdk: "5.0.0", ProbeExtension.registry)
        guard st.code == 0 else {
            rec.fail("core.probe.register", "§6 #9", "expected the probe to register; saw \(st)")
            return
        }
        let uuid = st.uuid
        let server: RPCServer
        do {
            server = try await RPCServer.start(path: "\(socket).\(uuid)", service: .extension(probe))
        } catch {
            rec.fail("core.probe.serve", "§1.2", "cannot serve the probe on \(socket).\(uuid): \(error)")
            _ = await deregister(uuid)
            return
        }
        rec.add(CheckResult(id: "core.probe.register", status: .pass, cite: "§6 #9 §1.2"))
        let t = ProbeExtension.table

        // §6 #17/#18: a plain scan.
        probe.reset()
        let all = await query("select a, i from \(t)")
        rec.check("core.probe.generate-rows", "§6 #17", all.code == 0 && all.rows == [["a": "x", "i": "1"], ["a": "y", "i": "2"]],
                  expected: "{0} with the probe's rows [x/1, y/2]", seen: "\(all)")
        let seen = probe.recorded
        let gen = seen.first { $0.method == "call" && $0.request["action"] == "generate" }
        rec.check("core.probe.generate-request", "§6 #17 §3.2", gen?.registry == "table" && gen?.item == t && gen?.request["context"] != nil,
                  expected: "call(table, \(t), {action: generate, context})", seen: gen.map { "\($0.registry)/\($0.item) \($0.request)" } ?? "no call: \(seen.map(\.method))")
        if let i = seen.firstIndex(where: { $0.method == "call" }), seen[..<i].contains(where: { $0.method == "ping" }) {
            rec.add(CheckResult(id: "core.probe.pre-ping", status: .pass, cite: "§1.4 §6 #17"))
        } else {
            rec.add(CheckResult(id: "core.probe.pre-ping", status: .pass, cite: "§1.4 §6 #17",
                                differsOnPurpose: "no ping before each call; the call has its own deadline (docs/differences-from-osquery.md)"))
        }
        let ctx = probe.contexts.first
        let names = (ctx?["constraints"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        let shapeOK = names == ["a", "b", "d", "i"] && list(ctx, "a")?.isEmpty == true
            && constraint(ctx, "a")?["affinity"] as? String == "TEXT" && constraint(ctx, "i")?["affinity"] as? String == "INTEGER"
            && constraint(ctx, "b")?["affinity"] as? String == "BIGINT" && constraint(ctx, "d")?["affinity"] as? String == "DOUBLE"
            && ctx?["colsUsed"] is [Any] && ctx?["colsUsedBitset"] is NSNumber
        rec.check("core.probe.context-shape", "§6 #18 §3.2", shapeOK,
                  expected: "constraints for a,b,d,i (lexical) with list [] and affinities; colsUsed, colsUsedBitset", seen: json(ctx))
        let used = Set((ctx?["colsUsed"] as? [String]) ?? [])
        let bits = (ctx?["colsUsedBitset"] as? NSNumber)?.uint64Value
        rec.check("core.probe.cols-used", "§3.2", used == ["a", "i"] && bits == 0b11,
                  expected: "colsUsed [a, i], colsUsedBitset 3", seen: "\(used.sorted()) \(bits.map { "\($0)" } ?? "nil")")

        // §6 #19: EQ on TEXT.
        probe.reset()
        let eq = await query("select a from \(t) where a = 'x'")
        let eqList = list(probe.contexts.first, "a")
        rec.check("core.probe.context-eq", "§6 #19 §3.2", eq.rows == [["a": "x"]] && eqList?.count == 1 && eqList.map { isEq($0[0], op: 2, expr: "x") } == true,
                  expected: "a list [{\"op\":2,\"expr\":\"x\"}] (op a number), rows [x]", seen: "\(json(eqList)) \(eq)")

        // §6 #20: GT on TEXT is not passed.
        probe.reset()
        let gt = await query("select a from \(t) where a > 'x'")
        let gtList = list(probe.contexts.first, "a")
        rec.check("core.probe.context-text-gt", "§6 #20 §3.2", gt.rows == [["a": "y"]] && gtList?.isEmpty == true,
                  expected: "a list [], rows [y] (SQLite filters)", seen: "\(json(gtList)) \(gt)")

        // GT on INTEGER is passed.
        probe.reset()
        let igt = await query("select a from \(t) where i > 1")
        let igtList = list(probe.contexts.first, "i")
        rec.check("core.probe.context-int-gt", "§3.2", igt.rows == [["a": "y"]] && igtList?.count == 1 && igtList.map { isEq($0[0], op: 4, expr: "1") } == true,
                  expected: "i list [{op 4, expr \"1\"}], rows [y]", seen: "\(json(igtList)) \(igt)")

        // IN is rewritten to EQ.
        probe.reset()
        let inq = await query("select a from \(t) where a in ('x', 'y') order by a")
        let inEntries = probe.contexts.flatMap { list($0, "a") ?? [] }
        let inOK = !inEntries.isEmpty && inEntries.allSatisfy { ($0["op"] as? NSNumber)?.intValue == 2 }
            && Set(inEntries.compactMap { $0["expr"] as? String }) == ["x", "y"]
        rec.check("core.probe.context-in", "§3.2", inOK && inq.rows == [["a": "x"], ["a": "y"]],
                  expected: "EQ (op 2) constraints for x and y, never op 3; rows [x, y]", seen: "\(json(inEntries)) \(inq)")

        // LIKE.
        probe.reset()
        let like = await query("select a from \(t) where a like 'x%'")
        let likeList = list(probe.contexts.first, "a")
        rec.check("core.probe.context-like", "§3.2", like.rows == [["a": "x"]] && likeList?.count == 1 && likeList.map { isEq($0[0], op: 65, expr: "x%") } == true,
                  expected: "a list [{op 65, expr \"x%\"}], rows [x]", seen: "\(json(likeList)) \(like)")

        // JOIN: the value comes from the other table.
        probe.reset()
        let join = await query("select p.a from (select 'y' as v) s cross join \(t) p on p.a = s.v")
        let joinEntries = probe.contexts.flatMap { list($0, "a") ?? [] }
        rec.check("core.probe.context-join", "§3.2", join.rows == [["a": "y"]] && joinEntries.contains { isEq($0, op: 2, expr: "y") },
                  expected: "a generate with a EQ \"y\" from the joined side, rows [y]", seen: "\(json(joinEntries)) \(join)")

        // colsUsed for one column.
        probe.reset()
        _ = await query("select i from \(t)")
        let c1 = probe.contexts.first
        let u1 = (c1?["colsUsed"] as? [String]) ?? []
        let b1 = (c1?["colsUsedBitset"] as? NSNumber)?.uint64Value
        rec.check("core.probe.cols-used-one", "§3.2", u1 == ["i"] && b1 == 0b10,
                  expected: "colsUsed [i], colsUsedBitset 2 (column 1 of a, i, b, d)", seen: "\(u1) \(b1.map { "\($0)" } ?? "nil")")

        // §6 #22: value conversion.
        probe.set(rows: [
            ["a": "missing"], ["a": "empty", "i": ""], ["a": "hex", "i": "0x10"], ["a": "junk", "i": "abc"], ["a": "oct", "i": "010"],
            ["a": "big", "b": "99999999999999999999"], ["a": "bigok", "b": "9223372036854775807"],
            ["a": "dbl", "d": "1.5"], ["a": "dblbad", "d": "1.5x"], ["a": "extra", "i": "3", "zz": "ignored"],
        ])
        let conv = await query("select a, typeof(i) as ti, i, typeof(b) as tb, b, typeof(d) as td, d from \(t)")
        var byA: [String: [String: String]] = [:]
        for r in conv.rows { if let a = r["a"] { byA[a] = r } }
        func conversion(_ id: String, _ a: String, _ key: String, _ want: String) {
            rec.check("core.probe.convert.\(id)", "§6 #22 §3.2", byA[a]?[key] == want, expected: "\(key)=\(want) for row \(a)", seen: "\(byA[a] ?? [:])")
        }
        conversion("missing-null", "missing", "ti", "null")
        conversion("empty-int-null", "empty", "ti", "null")
        conversion("hex", "hex", "i", "16")
        conversion("junk-null", "junk", "ti", "null")
        conversion("octal", "oct", "i", "8")
        conversion("bigint-overflow-null", "big", "tb", "null")
        conversion("bigint-max", "bigok", "b", "9223372036854775807")
        conversion("double", "dbl", "d", "1.5")
        conversion("double-partial-null", "dblbad", "td", "null")
        rec.check("core.probe.convert.extra-key-ignored", "§3.2", byA["extra"]?["i"] == "3" && conv.code == 0,
                  expected: "row kept, unknown key ignored", seen: "\(byA["extra"] ?? [:]) code \(conv.code)")

        // §6 #21: a failing generate.
        probe.set(rows: [], failure: "boom")
        let boom = await query("select * from \(t)")
        rec.check("core.probe.generate-error", "§6 #21 §3.2", boom.code == 1 && boom.message == "boom" && boom.rows.isEmpty,
                  expected: "{1, \"boom\"}, no rows", seen: "\(boom)")
        probe.set(rows: [["a": "x", "i": "1"], ["a": "y", "i": "2"]])

        // §6 #28: call routed to the probe.
        probe.reset()
        let routed = await call("table", t, ["action": "generate"])
        rec.check("core.call.routed-to-extension", "§6 #28 §2.3", routed.code == 0 && routed.rows.map { $0["a"] } == ["x", "y"],
                  expected: "{0} with the probe's rows", seen: "\(routed)")
        let logged = await call("logger", ProbeExtension.logger, ["string": "cfx-hello"])
        rec.check("core.call.routed-logger", "§2.3 §3.3", logged.code == 0 && probe.recorded.contains { $0.item == ProbeExtension.logger && $0.request["string"] == "cfx-hello" },
                  expected: "the probe's logger receives {string: cfx-hello}, code 0", seen: "\(logged) probe saw \(probe.recorded.map(\.item))")
        let cfg = await call("config", ProbeExtension.config, ["action": "genConfig"])
        rec.check("core.call.routed-config", "§2.3 §3.4", cfg.code == 0 && cfg.rows == [["cfx": "{}"]],
                  expected: "{0} [{cfx: {}}]", seen: "\(cfg)")

        // §3.2 write actions and §6 #44.
        probe.reset()
        let ins = await query("insert into \(t) (a, i) values ('w', 5)")
        let insReq = probe.recorded.first { $0.request["action"] == "insert" }?.request
        let values = insReq?["json_value_array"].flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [Any]
        let valuesOK = values?.count == 4 && values?[0] as? String == "w" && (values?[1] as? NSNumber)?.intValue == 5 && values?[2] is NSNull
        rec.check("core.probe.write-insert", "§3.2", ins.code == 0 && valuesOK && insReq?["auto_rowid"] != nil,
                  expected: "code 0; insert with json_value_array [\"w\",5,null,null] and auto_rowid", seen: "\(ins) request \(insReq ?? [:])")
        probe.reset()
        let upd = await query("update \(t) set i = 9 where a = 'x'")
        let updReq = probe.recorded.first { $0.request["action"] == "update" }?.request
        rec.check("core.probe.write-update", "§3.2", upd.code == 0 && updReq?["id"] != nil && updReq?["json_value_array"] != nil,
                  expected: "code 0; update with id and json_value_array", seen: "\(upd) request \(updReq ?? [:])")
        probe.reset()
        let del = await query("delete from \(t) where a = 'y'")
        let delReq = probe.recorded.first { $0.request["action"] == "delete" }?.request
        rec.check("core.probe.write-delete", "§3.2", del.code == 0 && delReq?["id"] != nil,
                  expected: "code 0; delete with id", seen: "\(del) request \(delReq ?? [:])")
        let ro = await query("insert into \(ProbeExtension.readonlyTable) values ('v')")
        rec.check("core.probe.write-readonly", "§6 #44 §3.2", ro.code == 1 && ro.message.contains("\(ProbeExtension.readonlyTable) may not be modified"),
                  expected: "code 1, \"table \(ProbeExtension.readonlyTable) may not be modified\"", seen: "\(ro)")

        // §6 #31: the probe stops answering; the watcher removes it.
        let options = try? await em.options()
        let interval = Double(options?["extensions_interval"]?.value.lossyString ?? "3") ?? 3
        let timeout = Double(options?["extensions_timeout"]?.value.lossyString ?? "3") ?? 3
        await server.close()
        let removed = await eventually(interval + timeout + 5) { await extensionsList()?[uuid] == nil }
        rec.check("core.watcher.removes-dead", "§6 #31 §2.4", removed, expected: "uuid \(uuid) gone within interval+timeout+5 s",
                  seen: "still listed")
        let detached = await query("select * from \(t)")
        rec.check("core.watcher.table-detached", "§6 #31", detached.code == 1 && detached.message.contains("no such table"),
                  expected: "no such table: \(t)", seen: "\(detached)")
        let again = await register("cfx_probe_\(tag)", sdk: "5.0.0", ["table": [ThriftString(t): ProbeExtension.tableRoutes]])
        rec.check("core.watcher.reregister", "§6 #31", again.code == 0, expected: "re-registering the same name succeeds", seen: "\(again)")
        if again.code == 0 { _ = await deregister(again.uuid) }
    }

    /// §6 #32: registered but never listening → removed after the first-check grace.
    func deathWatch() async {
        let st = await register("cfx_silent_\(tag)", [:])
        guard st.code == 0 else {
            rec.fail("core.watcher.never-listens", "§6 #32", "registration refused: \(st)")
            return
        }
        let listedAtOnce = await extensionsList()?[st.uuid] != nil
        rec.check("core.watcher.grace", "§6 #32 §2.4", listedAtOnce, expected: "listed right after registering (grace period)", seen: "already gone")
        let options = try? await em.options()
        let interval = Double(options?["extensions_interval"]?.value.lossyString ?? "3") ?? 3
        let timeout = Double(options?["extensions_timeout"]?.value.lossyString ?? "3") ?? 3
        let removed = await eventually(interval * 2 + timeout + 5) { await extensionsList()?[st.uuid] == nil }
        rec.check("core.watcher.never-listens", "§6 #32 §2.4", removed, expected: "removed after about extensions_timeout", seen: "still listed")
        if !removed { _ = await deregister(st.uuid) }
        rec.add(CheckResult(id: "core.peer-credentials", status: .skip, cite: "§1.3",
                            detail: "another uid is needed; our core refuses other uids (SO_PEERCRED), a deliberate difference"))
    }
}
