import Foundation
import OsqueryManager
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// Route info for a table of `columns` TEXT columns `c0`, `c1`…
func wideRoutes(_ columns: Int) -> ExtensionPluginResponse {
    (0..<columns).map { ["id": "column", "name": ThriftString("c\($0)"), "type": "TEXT", "op": "0"] }
        + [["id": "attributes", "attributes": "0"]]
}

/// Registers `handler` as extension `name` serving `table` with `routes`, at `<socket>.<uuid>`.
func attach(
    _ core: TestCore, name: ThriftString, table: ThriftString, routes: ExtensionPluginResponse, _ handler: TestExtension
) async throws -> RPCServer {
    let status = try await core.client.registerExtension(
        info: InternalExtensionInfo(name: name, version: "1.0", sdkVersion: "1.7.7", minSDKVersion: "1.0.0"),
        registry: ["table": [table: routes]])
    #expect(status.code == 0, "\(status)")
    return try await RPCServer.start(path: "\(core.manager.socketPath).\(status.uuid)", service: .extension(handler))
}

/// Issue 14 item 5: through the socket, a result past 2 GiB is the caller's error; the core
/// keeps serving.
@Suite struct OversizedResultOverTheSocketTests {
    @Test func theIssuesQueryIsAnErrorAndTheCoreKeepsServing() async throws {
        let core = try await TestCore.start("toobig")
        let reply = try await core.client.query(
            "SELECT length(concat(zeroblob(1000000000), zeroblob(1000000000), zeroblob(200000000))) AS n")
        #expect(reply.status.code == 1 && reply.status.message.lossyString.contains("too big"), "\(reply.status)")
        #expect(reply.response.isEmpty)
        #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        await core.stop()
    }
}

/// Issue 14 item 7: a reply of many empty rows for a wide table costs 6 bytes a row on the wire
/// and rows × columns × 8 bytes once converted; the core refuses it before allocating.
@Suite struct ReplyCellBudgetTests {
    /// 17 000 empty rows × 1 000 columns (100 KB on the wire; 17 M cells, past the default
    /// 16 M): a long reply, checked by the framer and refused before its cells exist.
    @Test func aLongReplyOfEmptyRowsForAWideTableIsRefused() async throws {
        let core = try await TestCore.start("cells")
        let empty = [StringMap](repeating: StringMap(), count: 17_000)
        let hostile = try await attach(core, name: "wide", table: "wide_tbl", routes: wideRoutes(1_000), TestExtension(rows: empty))
        let refused = try await core.client.query("select count(*) as c from wide_tbl")
        #expect(refused.status.code == 1, "\(refused.status)")
        #expect(refused.status.message.lossyString.contains("17000 rows × 1000 columns"), "\(refused.status)")
        #expect(refused.status.message.lossyString.contains("--extensions_max_reply_cells"), "\(refused.status)")
        // The core keeps serving, wide tables with replies that fit included.
        #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        let fits = try await attach(
            core, name: "wide2", table: "wide2_tbl", routes: wideRoutes(1_000),
            TestExtension(rows: [StringMap](repeating: ["c999": "z"], count: 9_000)))
        let counted = try await core.client.query("select count(*) as c, max(c999) as m from wide2_tbl")
        #expect(counted.response == [["c": "9000", "m": "z"]], "\(counted.status)")
        await fits.close()
        await hostile.close()
        await core.stop()
    }

    /// A short reply (converted as it is read) obeys the same budget, here lowered by the flag;
    /// a dense reply past the floor still fits (one cell per 8 bytes it sent).
    @Test func aShortReplyObeysTheFlagAndDenseRepliesFit() async throws {
        let core = try await TestCore.start("cells2", flags: ["extensions_max_reply_cells": "50000"])
        let hostile = try await attach(
            core, name: "wide", table: "wide_tbl", routes: wideRoutes(1_000),
            TestExtension(rows: [StringMap](repeating: StringMap(), count: 100)))
        let refused = try await core.client.query("select count(*) as c from wide_tbl")
        #expect(refused.status.code == 1 && refused.status.message.lossyString.contains("100 rows × 1000 columns"), "\(refused.status)")
        #expect(refused.status.message.lossyString.contains("limit of 50000 cells"), "\(refused.status)")
        let dense: [StringMap] = (0..<8_000).map { i in
            ["a": ThriftString("r\(i)"), "n": ThriftString(String(i)), "big": "1", "d": "2.5"]
        }
        let fits = try await attach(core, name: "dense", table: "dense_tbl", routes: t1Routes, TestExtension(rows: dense))
        let counted = try await core.client.query("select count(*) as c, sum(n) as s from dense_tbl")
        #expect(counted.response == [["c": "8000", "s": ThriftString(String(8_000 * 7_999 / 2))]], "\(counted.status)")
        #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        await fits.close()
        await hostile.close()
        await core.stop()
    }
}

/// Issue 14 item 13: every manager method that reveals or changes something checks the caller's
/// uid, and a call whose credentials the kernel did not give is refused.
@Suite(.serialized) struct PeerRefusalTests {
    static let unavailable = "Permission denied: the caller's credentials are unavailable"

    /// Called with no credentials (what the server passes when `SO_PEERCRED` fails): refused.
    @Test func callsWithoutCredentialsAreRefused() async throws {
        let core = try await TestCore.start("nocred")
        let service = core.manager.service
        #expect(PeerCredentials.current == nil)
        let refused = ExtensionStatus(code: 1, message: ThriftString(Self.unavailable))
        #expect(try await service.query(sql: "select 1").status == refused)
        #expect(try await service.query(sql: "select 1").value.response.isEmpty)
        #expect(try await service.getQueryColumns(sql: "select 1").status == refused)
        #expect(try await service.call(registry: "table", item: "time", request: ["action": "generate"]).status == refused)
        #expect(try await service.registerExtension(
            info: InternalExtensionInfo(name: "x", version: "1", sdkVersion: "1.7.7", minSDKVersion: "1"), registry: [:])
            == refused)
        #expect(try await service.deregisterExtension(uuid: 1) == refused)
        await #expect(throws: TApplicationException(.unknown, ThriftString(Self.unavailable))) { try await service.options() }
        await #expect(throws: TApplicationException(.unknown, ThriftString(Self.unavailable))) { try await service.extensions() }
        #expect(service.ping().code == 0)
        // Over the socket the kernel names the caller (root or this uid): served.
        #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        #expect(try await core.client.options()["extensions_socket"] != nil)
        #expect(try await core.client.extensions().isEmpty)
        await core.stop()
    }

    /// A real client running as uid 65534 on a socket an operator opened to everyone: only
    /// `ping` answers; root is still served.
    @Test func anotherUsersCallsAreRefused() async throws {
        guard getuid() == 0 else { return }  // needs root to run a client as another uid
        let python = Peers.repo + "/.venv/bin/python3"
        guard FileManager.default.fileExists(atPath: python) else { throw RealError("\(python) is missing") }
        let core = try await TestCore.start("peercred2")
        let dir = try scratchDirectory("peercred2")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = dir + "/client.py"
        try Self.client.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(dir, 0o755)
        chmod(script, 0o644)
        #expect(chmod(core.manager.socketPath, 0o666) == 0)
        let (status, out, err) = try await Real.run(
            "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", python, script, core.manager.socketPath])
        #expect(status == 0, "\(err)")
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: String], "\(out) \(err)")
        #expect(reply["ping"] == "pong")
        for method in ["query", "getQueryColumns", "options", "extensions", "call", "registerExtension", "deregisterExtension"] {
            #expect(reply[method]?.contains("Permission denied: uid 65534 may not") == true, "\(method): \(reply[method] ?? "-")")
        }
        #expect(try await core.client.extensions().isEmpty)
        #expect(try await core.client.query("select 1 as one").response == [["one": "1"]])
        await core.stop()
    }

    /// Calls every manager method with PyPI `osquery`'s client; prints what each returned.
    static let client = #"""
        import json, sys
        from osquery.extension_client import ExtensionClient
        from osquery.extensions.ttypes import InternalExtensionInfo
        c = ExtensionClient(path=sys.argv[1])
        c.open(timeout=5)
        em = c.extension_manager_client()
        out = {"ping": em.ping().message}
        def attempt(name, f):
            try:
                r = f()
                status = getattr(r, "status", r)
                out[name] = getattr(status, "message", None) or "served: %r" % (r,)
            except Exception as e:
                out[name] = "exception: %s" % (e,)
        attempt("query", lambda: em.query("select 1"))
        attempt("getQueryColumns", lambda: em.getQueryColumns("select 1"))
        attempt("options", lambda: em.options())
        attempt("extensions", lambda: em.extensions())
        attempt("call", lambda: em.call("table", "time", {"action": "generate"}))
        attempt("registerExtension", lambda: em.registerExtension(InternalExtensionInfo(name="intruder", sdk_version="1.7.7"), {}))
        attempt("deregisterExtension", lambda: em.deregisterExtension(1))
        print(json.dumps(out))
        """#
}
