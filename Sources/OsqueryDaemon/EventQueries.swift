package import OsqueryEngine
import OsqueryEvents

// events (issue 17): scheduled queries over event tables (osquery's rules).

extension Scheduler {
    /// This query's `events_optimize` mark: the (time, eid) of the last event it logged.
    func eventsMark(_ query: String) -> (time: UInt64, eid: UInt64) {
        let domain = DaemonStore.Domain.events
        let time = (try? store.get(domain, EventQueryScope.timeKey(query))).flatMap { $0.flatMap { UInt64($0) } } ?? 0
        let eid = (try? store.get(domain, EventQueryScope.eidKey(query))).flatMap { $0.flatMap { UInt64($0) } } ?? 0
        return (time, eid)
    }

    /// The epochs stored with this query's mark (its extension event tables').
    func eventsEpochs(_ query: String) -> [String: String] {
        let text = (try? store.get(DaemonStore.Domain.events, EventQueryScope.epochKey(query))).flatMap { $0 }
        return text.map(EventQueryScope.decodeEpochs) ?? [:]
    }

    /// Whether every table `sql` reads (after FROM or JOIN) is an event table: osquery's
    /// `enforceEventsDenylist`, which spares such queries from crash denylisting.
    package static func readsOnlyEventTables(_ sql: String, registry: PluginRegistry) -> Bool {
        var words: [Substring] = []
        var current = ""
        for c in sql.lowercased() {
            if c.isLetter || c.isNumber || c == "_" {
                current.append(c)
            } else {
                if !current.isEmpty { words.append(Substring(current)) }
                current = ""
                if c == "," { words.append(",") }
            }
        }
        if !current.isEmpty { words.append(Substring(current)) }
        var tables: [Substring] = []
        var i = 0
        while i < words.count {
            if words[i] == "from" || words[i] == "join" || (words[i] == "," && !tables.isEmpty), i + 1 < words.count {
                tables.append(words[i + 1])
            }
            i += 1
        }
        guard !tables.isEmpty else { return false }
        return tables.allSatisfy { registry.table(named: String($0))?.schema.attributes.contains(.eventBased) ?? false }
    }
}

extension ResultPipeline {
    /// The `events_optimize` marks of a run, in the transaction that records its lines.
    static func putEventMarks(_ context: LogContext, in t: inout DaemonStore.Transaction) throws(DaemonError) {
        for (key, value) in context.eventMarks.sorted(by: { $0.key < $1.key }) {
            try t.put(DaemonStore.Domain.events, key, value)
        }
    }
}

extension Differential {
    /// osquery's `addNewEvents`: no baseline to diff against; a new epoch stores an empty one
    /// and restarts the counter, which then counts the runs that logged events.
    static func applyEvents(
        name: String, sql: String, added: Bool, epoch: UInt64, in t: inout DaemonStore.Transaction
    ) throws(DaemonError) -> UInt64 {
        let storedEpoch = try t.get(domain, name + "epoch").flatMap { UInt64($0) }
        let newEpoch = storedEpoch != epoch
        if newEpoch {
            try t.put(domain, name, "[]")
            try t.put(domain, name + "epoch", String(epoch))
        }
        if try t.get(domain, "query." + name) != sql { try t.put(domain, "query." + name, sql) }
        let old = newEpoch ? 0 : (try t.get(domain, name + "counter").flatMap { UInt64($0) } ?? 0)
        // osquery: counter 0 marks a new epoch; it rises once per run that logged events.
        let counter = added ? (newEpoch ? 0 : old &+ 1) : old
        try t.put(domain, name + "counter", String(counter))
        return counter
    }
}
