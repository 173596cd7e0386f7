@_spi(FastPath) package import OsqueryProtocol
package import Synchronization
package import ThriftCodec

// The fixture manager of Tests/Peers/FIXTURE.md, in Swift (shared by the tests and Benchmarks/): the same answers the
// Python and C++ peers give, so a client in any language can check any server.

package let i64max = Int64.max
package let i64min = Int64.min

package func fixtureRow(_ i: Int) -> StringMap {
    [
        "i": ThriftString(String(i)), "name": ThriftString("row-\(i)"), "path": ThriftString("/proc/\(i)/status"),
        "zero": "", "unicode": "ünïcødé-✓", "neg": ThriftString(String(-i)),
    ]
}

package func fixtureRows(_ n: Int) -> ExtensionPluginResponse { (0..<n).map(fixtureRow) }

package func hexString(_ s: ThriftString) -> String {
    s.bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// CANON(info, registry) from FIXTURE.md.
package func canon(_ info: InternalExtensionInfo, _ registry: ExtensionRegistry) -> ThriftString {
    var out = [info.name, info.version, info.sdkVersion, info.minSDKVersion].map(hexString).joined(separator: ",")
    for registryName in registry.keys.sorted() {
        out += "|" + hexString(registryName) + ":"
        let plugins = registry[registryName]!
        out += plugins.keys.sorted().map { plugin in
            hexString(plugin) + "="
                + plugins[plugin]!.map { row in
                    let row = row.dictionary
                    return "{" + row.keys.sorted().map { hexString($0) + "=" + hexString(row[$0]!) }.joined(separator: ";") + "}"
                }.joined()
        }.joined(separator: "&")
    }
    return ThriftString(out)
}

package let fixtureExtensions: InternalExtensionList = [
    1: .init(name: "alpha", version: "1.0.0", sdkVersion: "1.7.7", minSDKVersion: "1.0.0"),
    65535: .init(name: "ünïcødé"),
    i64max: .init(name: "max", version: "v", sdkVersion: "s", minSDKVersion: "m"),
    i64min: .init(name: "min"),
]

package let fixtureOptions: InternalOptionList = [
    "extensions_socket": .init(value: "/fixture/osquery.em", defaultValue: "/var/osquery/osquery.em", type: "string"),
    "verbose": .init(value: "false", defaultValue: "false", type: "bool"),
    "empty": .init(),
]

package final class FixtureManager: ExtensionManagerHandler {
    package let shutdowns = Atomic<Int>(0)
    /// Delays `call` on registry "slow" so tests can hold a connection busy.
    let slowCall: Duration
    /// `call` on registry "gate" waits until this gate opens.
    let gate: Gate

    package init(slowCall: Duration = .seconds(2), gate: Gate = Gate()) {
        self.slowCall = slowCall
        self.gate = gate
    }

    package func ping() -> ExtensionStatus { ExtensionStatus(code: 0, message: "pong", uuid: i64max) }

    package func call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ServerResponse
    {
        .rows(try await answer(registry: registry, item: item, request: request))
    }

    func answer(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws
        -> ExtensionResponse
    {
        if registry == "fail" {
            return ExtensionResponse(status: .init(code: 2, message: ThriftString("failed: ") + item, uuid: 0))
        }
        if registry == "sparse" { return ExtensionResponse(status: .init(code: 0)) }
        if registry == "slow" {
            try await Task.sleep(for: slowCall)
            return ExtensionResponse(status: .init(code: 0, message: "slow", uuid: 0))
        }
        if registry == "throw" { throw FixtureError.boom }
        if registry == "gate" {
            await gate.wait()
            return ExtensionResponse(status: .init(code: 0, message: "opened", uuid: 0))
        }
        if let n = request["rows"]?.string.flatMap({ Int($0) }) {
            return ExtensionResponse(status: .init(code: 0, message: "OK"), response: fixtureRows(n))
        }
        return ExtensionResponse(
            status: .init(code: 0, message: "OK", uuid: i64min),
            response: [StringMap(request), ["registry": registry, "item": item]])
    }

    package func shutdown() async throws { shutdowns.add(1, ordering: .relaxed) }

    package func extensions() async throws -> InternalExtensionList { fixtureExtensions }

    package func options() async throws -> InternalOptionList { fixtureOptions }

    package func registerExtension(info: InternalExtensionInfo, registry: ExtensionRegistry) async throws -> ExtensionStatus {
        let routes = registry.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
        return ExtensionStatus(code: 0, message: canon(info, registry), uuid: Int64(routes))
    }

    package func deregisterExtension(uuid: ExtensionRouteUUID) async throws -> ExtensionStatus {
        ExtensionStatus(code: 0, message: ThriftString(String(uuid)), uuid: uuid)
    }

    package func query(sql: ThriftString) async throws -> ServerResponse {
        .rows(answer(sql: sql))
    }

    func answer(sql: ThriftString) -> ExtensionResponse {
        if let text = sql.string, text.hasPrefix("rows:"), let n = Int(text.dropFirst(5)) {
            return ExtensionResponse(status: .init(code: 0, message: "OK"), response: fixtureRows(n))
        }
        if sql == "error" {
            return ExtensionResponse(status: .init(code: 1, message: "near \"error\": syntax error"))
        }
        return ExtensionResponse(status: .init(code: 0, message: "OK"), response: [["sql": sql]])
    }

    package func getQueryColumns(sql: ThriftString) async throws -> ExtensionResponse {
        ExtensionResponse(status: .init(code: 0, message: "OK"), response: [[sql: "TEXT"], ["n": "INTEGER"]])
    }
}

enum FixtureError: Error, CustomStringConvertible {
    case boom
    var description: String { "boom from the handler" }
}

extension ThriftString {
    package static func + (lhs: ThriftString, rhs: ThriftString) -> ThriftString { ThriftString(bytes: lhs.bytes + rhs.bytes) }
}


/// A gate a handler can wait on until the test opens it.
package final class Gate: Sendable {
    let stream: AsyncStream<Void>
    let continuation: AsyncStream<Void>.Continuation
    package init() { (stream, continuation) = AsyncStream<Void>.makeStream() }
    package func open() { continuation.finish() }
    package func wait() async { for await _ in stream {} }
}
