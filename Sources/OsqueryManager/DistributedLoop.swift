import Foundation
import Logging
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
struct DistributedLoop: Sendable {
    let caller: ExtensionCaller
    let queries: QueryThreads
    let uuid: ExtensionRouteUUID
    let plugin: ThriftString
    let interval: Duration
    let logger: Logger

    func run() async {
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
        let response: ExtensionResponse
        do {
            response = try await caller.call(uuid: uuid, registry: "distributed", item: plugin, request: ["action": "getQueries"])
        } catch {
            logger.warning("distributed getQueries failed: \(error)")
            return nil
        }
        guard response.status.isSuccess, let text = response.response.first?["results"]?.lossyString,
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
        do {
            let written = try await caller.call(
                uuid: uuid, registry: "distributed", item: plugin,
                request: ["action": "writeResults", "results": ThriftString(String(decoding: data, as: UTF8.self))])
            if !written.status.isSuccess { logger.warning("distributed writeResults: \(written.status.message)") }
        } catch {
            logger.warning("distributed writeResults failed: \(error)")
        }
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
