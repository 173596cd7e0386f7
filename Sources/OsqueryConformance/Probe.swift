import Foundation
import OsqueryProtocol
import ThriftCodec

/// One request the probe received.
struct ProbeCall: Sendable {
    var method: String
    var registry: String
    var item: String
    var request: [String: String]
}

/// The kit's own extension, served on `<socket>.<uuid>`: a table, a read-only
/// table, a logger and a config plugin. It records every request and answers
/// as the current check asks.
final class ProbeExtension: ExtensionHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var calls: [ProbeCall] = []
    /// What generate on `cfx_probe` returns: rows, or a failing status.
    private var rows: [[String: String]] = [["a": "x", "i": "1"], ["a": "y", "i": "2"]]
    private var failure: String?

    static let table = "cfx_probe"
    static let readonlyTable = "cfx_readonly"
    static let logger = "cfx_log"
    static let config = "cfx_cfg"

    /// Route info of the probe table: a TEXT, i INTEGER, b BIGINT, d DOUBLE.
    static let tableRoutes: [StringMap] = [
        ["id": "column", "name": "a", "type": "TEXT", "op": "0"],
        ["id": "column", "name": "i", "type": "INTEGER", "op": "0"],
        ["id": "column", "name": "b", "type": "BIGINT", "op": "0"],
        ["id": "column", "name": "d", "type": "DOUBLE", "op": "0"],
    ]
    static let readonlyRoutes: [StringMap] = [["id": "column", "name": "v", "type": "TEXT", "op": "0"]]

    static var registry: ExtensionRegistry {
        [
            "table": [ThriftString(table): tableRoutes, ThriftString(readonlyTable): readonlyRoutes],
            "logger": [ThriftString(logger): []],
            "config": [ThriftString(config): []],
        ]
    }

    func set(rows: [[String: String]], failure: String? = nil) {
        lock.withLock {
            self.rows = rows
            self.failure = failure
        }
    }

    func reset() { lock.withLock { calls.removeAll() } }
    var recorded: [ProbeCall] { lock.withLock { calls } }

    /// The parsed context JSON of every generate call since the last reset.
    var contexts: [[String: Any]] {
        recorded.filter { $0.request["action"] == "generate" && $0.item == Self.table }.compactMap { call in
            guard let text = call.request["context"] else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        }
    }

    func ping() -> ExtensionStatus {
        lock.withLock { calls.append(ProbeCall(method: "ping", registry: "", item: "", request: [:])) }
        return ExtensionStatus(code: 0, message: "pong")
    }

    func shutdown() async throws {
        lock.withLock { calls.append(ProbeCall(method: "shutdown", registry: "", item: "", request: [:])) }
    }

    func call(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) async throws -> ServerResponse {
        .rows(answer(registry: registry, item: item, request: request))
    }

    func answer(registry: ThriftString, item: ThriftString, request: ExtensionPluginRequest) -> ExtensionResponse {
        var req: [String: String] = [:]
        for (k, v) in request { req[k.lossyString] = v.lossyString }
        let call = ProbeCall(method: "call", registry: registry.lossyString, item: item.lossyString, request: req)
        let (rows, failure) = lock.withLock {
            calls.append(call)
            return (self.rows, self.failure)
        }
        func ok(_ r: [[String: String]]) -> ExtensionResponse {
            ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: r.map { StringMap($0) })
        }
        switch (call.registry, call.item) {
        case ("table", Self.table):
            switch req["action"] {
            case "generate":
                if let failure { return ExtensionResponse(status: ExtensionStatus(code: 1, message: ThriftString(failure))) }
                return ok(rows)
            case "columns": return ExtensionResponse(status: .init(code: 0, message: "OK"), response: Self.tableRoutes)
            case "insert": return ok([["status": "success", "id": "7"]])
            case "update", "delete": return ok([["status": "success"]])
            default: return ExtensionResponse(status: ExtensionStatus(code: 1, message: "Unknown action"))
            }
        case ("table", Self.readonlyTable):
            switch req["action"] {
            case "generate": return ok([["v": "r"]])
            case "columns": return ExtensionResponse(status: .init(code: 0, message: "OK"), response: Self.readonlyRoutes)
            default: return ok([["status": "readonly"]])
            }
        case ("logger", Self.logger):
            return ok([])
        case ("config", Self.config):
            return ok([["cfx": "{}"]])
        default:
            return ExtensionResponse(status: ExtensionStatus(code: 1, message: "Unknown registry item"))
        }
    }
}
