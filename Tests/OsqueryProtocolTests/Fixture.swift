import OsqueryProtocol
import ProtocolFixture
import ThriftCodec

/// One failed check: its number, name and what was wrong.
struct CheckFailure: CustomStringConvertible {
    let number: String
    let name: String
    let why: String
    var description: String { "FAIL \(number) \(name): \(why)" }
}

/// The client checks of FIXTURE.md, run through the Swift client against any
/// fixture server. Returns the failures (empty when all pass) and the count run.
func runFixtureChecks(_ client: ExtensionManagerClient, includeShutdown: Bool = true) async -> (
    failures: [CheckFailure], ran: Int
) {
    var failures: [CheckFailure] = []
    var ran = 0
    func check(_ number: String, _ name: String, _ body: () async throws -> String?) async {
        ran += 1
        do {
            if let why = try await body() { failures.append(.init(number: number, name: name, why: why)) }
        } catch {
            failures.append(.init(number: number, name: name, why: "threw \(error)"))
        }
    }
    func expectEcho(_ registry: ThriftString, _ item: ThriftString, _ request: ExtensionPluginRequest) async throws
        -> String?
    {
        let r = try await client.call(registry: registry, item: item, request: request)
        let want = ExtensionResponse(
            status: .init(code: 0, message: "OK", uuid: i64min), response: [StringMap(request), ["registry": registry, "item": item]])
        return r == want ? nil : "echo differs: got \(r.status), \(r.response.count) rows"
    }
    func expectRows(_ r: ExtensionResponse, _ n: Int) -> String? {
        guard r.status == ExtensionStatus(code: 0, message: "OK", uuid: 0) else { return "status \(r.status)" }
        guard r.response.count == n else { return "\(r.response.count) rows, want \(n)" }
        for (i, row) in r.response.enumerated() where row != fixtureRow(i) { return "row \(i) differs: \(row)" }
        return nil
    }

    await check("1", "ping") {
        let s = try await client.ping()
        return s == ExtensionStatus(code: 0, message: "pong", uuid: i64max) ? nil : "got \(s)"
    }
    await check("2", "call echo") { try await expectEcho("table", "t", ["action": "generate", "context": "{}"]) }
    await check("3", "call empty request") { try await expectEcho("r", "i", [:]) }
    await check("4", "call non-ASCII and invalid UTF-8") {
        try await expectEcho(
            "table", "ü",
            ["ключ": "値✓", "bad": ThriftString(bytes: [0xFF, 0xFE, 0x80, 0x61]), ThriftString(bytes: [0xC3, 0x28]): "k"])
    }
    await check("5", "call 10 000-entry request") {
        var big: ExtensionPluginRequest = [:]
        for i in 0..<10_000 { big[ThriftString("k\(i)")] = ThriftString("v\(i)") }
        return try await expectEcho("big", "map", big)
    }
    await check("6", "call 100 000 rows") { expectRows(try await client.call(registry: "x", item: "y", request: ["rows": "100000"]), 100_000) }
    await check("7", "call failure status") {
        let r = try await client.call(registry: "fail", item: "boom", request: [:])
        return r == ExtensionResponse(status: .init(code: 2, message: "failed: boom", uuid: 0)) ? nil : "got \(r.status)"
    }
    await check("7b", "call sparse status") {
        let r = try await client.call(registry: "sparse", item: "s", request: [:])
        return r == ExtensionResponse(status: .init(code: 0, message: "", uuid: 0)) ? nil : "got \(r.status) \(r.response)"
    }
    await check("8", "extensions") {
        let e = try await client.extensions()
        return e == fixtureExtensions ? nil : "got \(e)"
    }
    await check("9", "options") {
        let o = try await client.options()
        return o == fixtureOptions ? nil : "got \(o)"
    }
    await check("10", "registerExtension") {
        let info = InternalExtensionInfo(name: "ext-ü", version: "1.2.3", sdkVersion: "1.7.7", minSDKVersion: "1.0.0")
        let registry: ExtensionRegistry = [
            "table": [
                "t1": [["id": "column", "name": "a", "type": "TEXT", "op": "0"], ["id": "attributes", "attributes": "0"]],
                "t2": [],
            ],
            "logger": ["l": []], "config": [:],
        ]
        let s = try await client.registerExtension(info: info, registry: registry)
        let want = ExtensionStatus(code: 0, message: canon(info, registry), uuid: 2)
        return s == want ? nil : "got \(s), want \(want)"
    }
    await check("11", "registerExtension empty") {
        let s = try await client.registerExtension(info: .init(), registry: [:])
        return s == ExtensionStatus(code: 0, message: ",,,", uuid: 0) ? nil : "got \(s)"
    }
    await check("12", "registerExtension invalid UTF-8 name") {
        let info = InternalExtensionInfo(name: ThriftString(bytes: [0xFF, 0x00, 0x41]))
        let s = try await client.registerExtension(info: info, registry: [:])
        return s == ExtensionStatus(code: 0, message: "ff0041,,,", uuid: 0) ? nil : "got \(s)"
    }
    await check("13", "deregisterExtension extremes") {
        for uuid in [i64max, i64min, 0] {
            let s = try await client.deregisterExtension(uuid: uuid)
            if s != ExtensionStatus(code: 0, message: ThriftString(String(uuid)), uuid: uuid) { return "got \(s)" }
        }
        return nil
    }
    await check("14", "query 100 000 rows") { expectRows(try await client.query("rows:100000"), 100_000) }
    await check("15", "query error") {
        let r = try await client.query("error")
        return r == ExtensionResponse(status: .init(code: 1, message: "near \"error\": syntax error", uuid: 0))
            ? nil : "got \(r.status)"
    }
    await check("16", "query echo with invalid UTF-8") {
        let sql = ThriftString(bytes: Array("select 'ü' ".utf8) + [0xFF])
        let r = try await client.query(sql)
        return r == ExtensionResponse(status: .init(code: 0, message: "OK"), response: [["sql": sql]]) ? nil : "got \(r)"
    }
    await check("17", "query empty") {
        let r = try await client.query("")
        return r == ExtensionResponse(status: .init(code: 0, message: "OK"), response: [["sql": ""]]) ? nil : "got \(r)"
    }
    await check("18", "getQueryColumns") {
        let r = try await client.getQueryColumns("select 1")
        return r == ExtensionResponse(status: .init(code: 0, message: "OK"), response: [["select 1": "TEXT"], ["n": "INTEGER"]])
            ? nil : "got \(r)"
    }
    await check("19", "three calls on one connection") {
        // A single-connection client: the three calls must reuse it in order.
        let one = ExtensionManagerClient(path: client.rpc.path, options: RPCClientOptions(maxIdleConnections: 1))
        defer { one.close() }
        let p = try await one.ping()
        let e = try await one.extensions()
        let o = try await one.options()
        return p.message == "pong" && e == fixtureExtensions && o == fixtureOptions ? nil : "out of order"
    }
    if includeShutdown {
        await check("20", "shutdown") {
            try await client.shutdown()
            return nil
        }
    }
    return (failures, ran)
}
