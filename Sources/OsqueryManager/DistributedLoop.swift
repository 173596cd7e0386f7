import Foundation
package import Logging
import OsqueryEngine
import OsqueryProtocol
import ThriftCodec

/// osquery's distributed queries through an extension's `distributed` plugin
/// (protocol.md §3.5): `getQueries` returns `{"queries": {id: sql},
/// "discovery": {id: sql}, "accelerate": seconds}`; a query with a discovery
/// query runs only when that one returns rows; results go back with
/// `writeResults` as `{"queries": {id: [rows]}, "statuses": {id: code},
/// "messages": {id: text}, "stats": {id: {...}}}`. Polls every
/// `--distributed_interval` seconds, every 5 s while accelerated.
package struct DistributedLoop: Sendable {
    let source: any DistributedSource
    let queries: QueryThreads
    let interval: Duration
    let logger: Logger

    package init(source: any DistributedSource, queries: QueryThreads, interval: Duration, logger: Logger) {
        self.source = source
        self.queries = queries
        self.interval = interval
        self.logger = logger
    }

    init(caller: ExtensionCaller, queries: QueryThreads, uuid: ExtensionRouteUUID, plugin: ThriftString, interval: Duration, logger: Logger) {
        self.init(source: ExtensionDistributedSource(caller: caller, uuid: uuid, plugin: plugin, logger: logger), queries: queries, interval: interval, logger: logger)
    }

    package func run() async {
        let clock = ContinuousClock()
        var acceleratedUntil = clock.now
        while !Task.isCancelled {
            if let accelerate = await poll(), accelerate > 0 {
                acceleratedUntil = clock.now + .seconds(accelerate)
            }
            let wait = clock.now < acceleratedUntil ? min(interval, .seconds(5)) : interval
            do { try await Task.sleep(for: wait) } catch { return }
        }
    }

    /// One round; returns the `accelerate` seconds the plugin asked for.
    func poll() async -> Int? {
        guard let text = await source.getQueries(),
            let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        else { return nil }
        let work = (object["queries"] as? [String: String]) ?? [:]
        let discovery = (object["discovery"] as? [String: String]) ?? [:]
        let accelerate = (object["accelerate"] as? NSNumber)?.intValue ?? Int((object["accelerate"] as? String) ?? "")
        guard !work.isEmpty else { return accelerate }

        var rows: [String: Any] = [:], statuses: [String: Any] = [:], messages: [String: Any] = [:], stats: [String: Any] = [:]
        for (id, sql) in work.sorted(by: { $0.key < $1.key }) {
            if let gate = discovery[id] {
                let passed = (try? await queries.run { db throws(EngineError) in try db.execute(gate).rowCount > 0 }) ?? false
                if !passed { continue }
            }
            let start = ContinuousClock.now
            let usageBefore = Self.usage()
            do {
                let result = try await queries.run { db throws(EngineError) in try db.execute(sql) }
                rows[id] = (0..<result.rowCount).map { r in
                    Dictionary(uniqueKeysWithValues: result.columns.enumerated().map { c, name in
                        (name, result[r, c].osqueryString ?? "")
                    })
                }
                statuses[id] = 0
                messages[id] = ""
            } catch {
                rows[id] = [[String: String]]()
                statuses[id] = 1
                messages[id] = error.message
            }
            let elapsed = ContinuousClock.now - start
            let usageAfter = Self.usage()
            stats[id] = [
                "wall_time_ms": Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000),
                "user_time": usageAfter.user - usageBefore.user, "system_time": usageAfter.system - usageBefore.system,
                "memory": usageAfter.memory,
            ]
        }
        let results: [String: Any] = ["queries": rows, "statuses": statuses, "messages": messages, "stats": stats]
        guard let data = try? JSONSerialization.data(withJSONObject: results, options: [.sortedKeys]) else { return accelerate }
        await source.writeResults(String(decoding: data, as: UTF8.self))
        return accelerate
    }

    /// CPU milliseconds and resident bytes of this process.
    static func usage() -> (user: Int, system: Int, memory: Int) {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        let user = Int(u.ru_utime.tv_sec) * 1000 + Int(u.ru_utime.tv_usec) / 1000
        let system = Int(u.ru_stime.tv_sec) * 1000 + Int(u.ru_stime.tv_usec) / 1000
        return (user, system, Int(u.ru_maxrss) * 1024)
    }
}

/// Where distributed queries come from and their results go: an extension's plugin, or the
/// daemon's `tls` plugin.
package protocol DistributedSource: Sendable {
    /// The JSON text of `{"queries": …, "discovery": …, "accelerate": …}`, or nil when the
    /// request failed (the source reports why).
    func getQueries() async -> String?
    /// Sends `{"queries": …, "statuses": …, "messages": …, "stats": …}` as JSON text.
    func writeResults(_ json: String) async
}

/// An extension's `distributed` plugin: `getQueries` and `writeResults` over its socket.
struct ExtensionDistributedSource: DistributedSource {
    let caller: ExtensionCaller
    let uuid: ExtensionRouteUUID
    let plugin: ThriftString
    let logger: Logger

    func getQueries() async -> String? {
        let response: ExtensionResponse
        do {
            response = try await caller.call(uuid: uuid, registry: "distributed", item: plugin, request: ["action": "getQueries"])
        } catch {
            logger.warning("distributed getQueries failed: \(error)")
            return nil
        }
        guard response.status.isSuccess else { return nil }
        return response.response.first?["results"]?.lossyString
    }

    func writeResults(_ json: String) async {
        do {
            let written = try await caller.call(
                uuid: uuid, registry: "distributed", item: plugin, request: ["action": "writeResults", "results": ThriftString(json)])
            if !written.status.isSuccess { logger.warning("distributed writeResults: \(written.status.message)") }
        } catch {
            logger.warning("distributed writeResults failed: \(error)")
        }
    }
}
