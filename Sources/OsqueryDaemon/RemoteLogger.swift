import Foundation
import OsqueryEngine
import Synchronization

/// osquery's `tls` logger (plugins/logger/tls_logger.cpp on buffered.cpp): every result and
/// status line is first written to the store (`logs` domain, `tls_r_…`/`tls_s_…` in arrival
/// order), so nothing is lost across restarts; a thread POSTs up to `--logger_tls_max_lines` of
/// each kind every `--logger_tls_period` s to `--logger_tls_endpoint` as
/// `{"node_key", "log_type": "result"|"status", "data": [...]}` and deletes them once accepted.
/// A failing kind backs off (period × n², at most `--logger_tls_backoff_max`). Above
/// `--buffered_log_max` lines the oldest are purged, with a warning.
final class TLSLogger: BatchResultLogger, @unchecked Sendable {  // `thread` is set once, before use
    let name = "tls"
    let api: RemoteAPI
    let store: DaemonStore
    let flags: Flags
    let hostIdentifier: @Sendable () -> String
    private let state: Mutex<(sequence: UInt64, count: UInt64)>
    /// Status lines not yet in the store: a status may be logged inside a store transaction
    /// (the store's lock is held), so the forwarding thread stores them. Bounded: past
    /// `pendingLimit` the oldest go.
    private let pending = Mutex<[String]>([])
    static let pendingLimit = 10_000
    private let gate = StopGate()
    private var thread: Thread?

    static let resultPrefix = "tls_r_"
    static let statusPrefix = "tls_s_"

    init(api: RemoteAPI, store: DaemonStore, flags: Flags, hostIdentifier: @escaping @Sendable () -> String) {
        self.api = api
        self.store = store
        self.flags = flags
        self.hostIdentifier = hostIdentifier
        // Keys are `<prefix><20-digit sequence>`: the next sequence follows the highest buffered.
        let results = (try? store.keys(DaemonStore.Domain.logs, prefix: Self.resultPrefix)) ?? []
        let statuses = (try? store.keys(DaemonStore.Domain.logs, prefix: Self.statusPrefix)) ?? []
        let highest = [results.last, statuses.last].compactMap { $0.flatMap { UInt64($0.dropFirst(Self.resultPrefix.count)) } }.max() ?? 0
        state = Mutex((highest, UInt64(results.count + statuses.count)))
    }

    /// Starts the forwarding thread.
    func start() {
        let t = Thread { [self] in forward() }
        t.name = "tls logger"
        thread = t
        t.start()
    }

    func stop() {
        gate.stop()
        storePending()
    }

    /// Moves the pending status lines into the store, in order.
    private func storePending() {
        let lines = pending.withLock { p in
            defer { p = [] }
            return p
        }
        for line in lines { try? add(Self.statusPrefix, line) }
    }

    private func add(_ prefix: String, _ line: String) throws(DaemonError) {
        let key = state.withLock { s -> String in
            s.sequence += 1
            s.count += 1
            return Self.key(prefix, s.sequence)
        }
        try store.put(DaemonStore.Domain.logs, key, line)
    }

    func logResult(_ line: String) throws(DaemonError) {
        // Enforced here rather than at send time (as osquery does): the line would be dropped anyway.
        if UInt64(line.utf8.count) > flags[.loggerTlsMaxLinesize] {
            StatusLog.warning("Linesize exceeds TLS logger maximum: \(line.utf8.count)")
            return
        }
        try add(Self.resultPrefix, line)
    }

    func logSnapshot(_ line: String) throws(DaemonError) { try logResult(line) }

    func logLines(_ lines: [Substring], snapshot: Bool) throws(DaemonError) {
        let maximum = flags[.loggerTlsMaxLinesize]
        var kept: [Substring] = []
        kept.reserveCapacity(lines.count)
        for line in lines {
            if UInt64(line.utf8.count) > maximum {
                StatusLog.warning("Linesize exceeds TLS logger maximum: \(line.utf8.count)")
            } else {
                kept.append(line)
            }
        }
        guard !kept.isEmpty else { return }
        let first = state.withLock { s -> UInt64 in
            defer { s.sequence += UInt64(kept.count) }
            return s.sequence + 1
        }
        try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) in
            for (i, line) in kept.enumerated() { try t.put(DaemonStore.Domain.logs, Self.key(Self.resultPrefix, first + UInt64(i)), String(line)) }
        }
        state.withLock { $0.count += UInt64(kept.count) }
    }

    static func key(_ prefix: String, _ sequence: UInt64) -> String {
        let digits = String(sequence)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    func logStatus(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt) {
        let now = Date().timeIntervalSince1970
        let object: [String: Any] = [
            "hostIdentifier": hostIdentifier(), "calendarTime": CalendarTime.string(unixTime: UInt64(now)),
            "unixTime": Int64(now), "severity": severity.rawValue, "filename": file, "line": Int(line),
            "message": message, "version": OsqueryVersion.version,
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
            UInt64(data.count) <= flags[.loggerTlsMaxLinesize]
        else { return }
        let text = String(decoding: data, as: UTF8.self)
        pending.withLock { p in
            if p.count >= Self.pendingLimit { p.removeFirst(p.count - Self.pendingLimit + 1) }
            p.append(text)
        }
    }

    /// Lines buffered (both kinds).
    var buffered: UInt64 { state.withLock { $0.count } }

    private func forward() {
        var backoff: [String: (steps: UInt64, wait: UInt64)] = ["result": (0, 0), "status": (0, 0)]
        while !gate.isStopped {
            storePending()
            let period = max(flags[.loggerTlsPeriod], 1)
            for kind in ["result", "status"] where backoff[kind]!.wait == 0 {
                if send(kind) {
                    backoff[kind] = (0, 0)
                } else if !gate.isStopped {
                    // osquery's back-off: period × steps², capped at --logger_tls_backoff_max.
                    let maximum = flags[.loggerTlsBackoffMax]
                    var steps = backoff[kind]!.steps + 1
                    var wait = period * steps * steps
                    if wait > maximum {
                        wait = maximum
                        steps -= 1
                    }
                    backoff[kind] = (steps, wait)
                }
            }
            purge()
            repeat {
                if gate.wait(seconds: Double(period)) { return }
                for kind in ["result", "status"] { backoff[kind]!.wait -= min(backoff[kind]!.wait, period) }
            } while backoff["result"]!.wait > 0 && backoff["status"]!.wait > 0
        }
    }

    /// Sends one batch of `kind`; true when nothing failed.
    private func send(_ kind: String) -> Bool {
        let prefix = kind == "result" ? Self.resultPrefix : Self.statusPrefix
        let limit = Int(clamping: max(flags[.loggerTlsMaxLines], 1))
        guard let keys = try? store.keys(DaemonStore.Domain.logs, prefix: prefix, limit: limit), !keys.isEmpty else {
            return true
        }
        if kind == "status", flags[.tlsDisableStatusLog] {
            remove(keys)
            return true
        }
        var data: [Any] = []
        data.reserveCapacity(keys.count)
        for key in keys {
            // A line that is not JSON is skipped, as osquery does.
            guard let text = try? store.get(DaemonStore.Domain.logs, key),
                let object = try? JSONSerialization.jsonObject(with: Data(text.utf8))
            else { continue }
            data.append(object)
        }
        do {
            _ = try api.request(
                flags[.loggerTlsEndpoint], params: ["log_type": kind, "data": data], attempts: 1,
                compress: flags[.loggerTlsCompress])
        } catch {
            StatusLog.info("Error sending \(kind == "result" ? "results" : "status") to logger: \(error.message)")
            return false
        }
        remove(keys)
        return true
    }

    private func remove(_ keys: [String]) {
        do {
            try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) in
                for key in keys { try t.delete(DaemonStore.Domain.logs, key) }
            }
            state.withLock { $0.count -= min($0.count, UInt64(keys.count)) }
        } catch {
            StatusLog.error("Error deleting sent TLS log lines: \(error.message)")
        }
    }

    /// osquery's purge: above `--buffered_log_max` (0: no cap) the oldest lines of either kind go.
    private func purge() {
        let cap = flags[.bufferedLogMax]
        let count = buffered
        guard cap > 0, count > cap else { return }
        let excess = Int(clamping: count - cap)
        let results = (try? store.keys(DaemonStore.Domain.logs, prefix: Self.resultPrefix, limit: excess)) ?? []
        let statuses = (try? store.keys(DaemonStore.Domain.logs, prefix: Self.statusPrefix, limit: excess)) ?? []
        // Oldest by sequence, across both kinds.
        let oldest = (results + statuses).sorted { $0.dropFirst(Self.resultPrefix.count) < $1.dropFirst(Self.resultPrefix.count) }
            .prefix(excess)
        StatusLog.warning("Purging buffered logs limit (\(cap)) exceeded: \(count)")
        remove(Array(oldest))
    }
}
