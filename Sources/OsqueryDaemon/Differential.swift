import OsqueryEngine

/// Differential results (core.md §2.6): per query name the store keeps, in
/// domain `queries`, `<name>` (the last result set as a JSON array of rows),
/// `<name>epoch`, `<name>counter` and `query.<name>` (the SQL text last used).
public enum Differential {
    /// What one run changed, rows as canonical `columns` text (keys in byte
    /// order, string values).
    public struct Diff: Sendable, Equatable {
        public var added: [String]
        public var removed: [String]
        /// 0 for a new baseline (new name or epoch), previous + 1 when anything
        /// changed, the stored value otherwise.
        public var counter: UInt64
        /// True when the previous results were replaced (counter 0 or changed).
        public var stored: Bool
        /// True for a first run or a new epoch: everything is `added`.
        public var newBaseline: Bool

        public init(added: [String], removed: [String], counter: UInt64, stored: Bool, newBaseline: Bool) {
            self.added = added
            self.removed = removed
            self.counter = counter
            self.stored = stored
            self.newBaseline = newBaseline
        }
    }

    static let domain = DaemonStore.Domain.queries

    /// Canonical text of every row (the form diffed, stored and logged).
    static func canonical(_ rows: [ResultRow]) -> [String] {
        let enc = RowEncoder(numerics: nil)
        var out: [String] = []
        out.reserveCapacity(rows.count)
        for r in rows { out.append(enc.encode(r)) }
        return out
    }

    /// Multiset difference with duplicates counted: `added` keeps the current
    /// order, `removed` the previous order.
    public static func diff(previous: [Substring], current: [String]) -> (added: [String], removed: [String]) {
        var counts: [Substring: Int] = [:]
        counts.reserveCapacity(previous.count)
        for p in previous { counts[p, default: 0] += 1 }
        var added: [String] = []
        for c in current {
            let key = Substring(c)
            if let n = counts[key], n > 0 {
                counts[key] = n - 1
            } else {
                added.append(c)
            }
        }
        var removed: [String] = []
        for p in previous {
            if let n = counts[p], n > 0 {
                counts[p] = n - 1
                removed.append(String(p))
            }
        }
        return (added, removed)
    }

    /// Diffs `current` against what the store holds for `name` and writes the
    /// new state, inside the caller's transaction (so the baseline, counter and
    /// whatever else the caller writes commit together).
    static func apply(
        name: String, sql: String, current: [String], epoch: UInt64, in t: inout DaemonStore.Transaction
    ) throws(DaemonError) -> Diff {
        let storedSQL = try t.get(domain, "query." + name)
        let previousText = try t.get(domain, name)
        let storedEpoch = try t.get(domain, name + "epoch").flatMap { UInt64($0) }
        var newBaseline = false
        var previous: [Substring] = []
        if previousText == nil {
            newBaseline = true
            StatusLog.info("Storing initial results for new scheduled query: \(name)")
        } else if storedEpoch != epoch {
            newBaseline = true
            StatusLog.info("New Epoch \(epoch) for scheduled query \(name)")
        } else if let text = previousText {
            if let rows = CanonicalRow.split(array: text) {
                previous = rows
            } else {
                // A damaged baseline: start again rather than stop the daemon.
                StatusLog.warning("Stored results of scheduled query \(name) are unreadable; storing a new baseline")
                newBaseline = true
            }
        }
        if storedSQL != sql {
            if storedSQL != nil && !newBaseline { StatusLog.info("Scheduled query has been updated: \(name)") }
            try t.put(domain, "query." + name, sql)
        }

        let result: Diff
        if newBaseline {
            result = Diff(added: current, removed: [], counter: 0, stored: true, newBaseline: true)
        } else {
            let (added, removed) = diff(previous: previous, current: current)
            let changed = !added.isEmpty || !removed.isEmpty
            let old = try t.get(domain, name + "counter").flatMap { UInt64($0) } ?? 0
            result = Diff(added: added, removed: removed, counter: changed ? old &+ 1 : old, stored: changed, newBaseline: false)
        }
        if result.stored {
            var text = "["
            var first = true
            for c in current {
                if !first { text += "," }
                first = false
                text += c
            }
            text += "]"
            try t.put(domain, name, text)
            try t.put(domain, name + "epoch", String(epoch))
            try t.put(domain, name + "counter", String(result.counter))
        }
        return result
    }

    /// The names of queries with stored results.
    public static func storedNames(_ store: DaemonStore) throws(DaemonError) -> [String] {
        var names = Set<String>()
        for key in try store.keys(domain) {
            if key.hasPrefix("query.") {
                names.insert(String(key.dropFirst(6)))
            } else if !key.hasSuffix("epoch") && !key.hasSuffix("counter") {
                names.insert(key)
            }
        }
        return names.sorted()
    }

    /// Removes the stored results of queries no longer scheduled, once they
    /// have been gone for `olderThan` seconds (osquery: 592200, about a week).
    /// The first time a name is seen missing, `timestamp.<name>` in
    /// `persistent_settings` records when; a name back in the schedule loses
    /// its timestamp. Returns the names purged.
    @discardableResult
    public static func purgeStale(
        store: DaemonStore, keeping scheduled: Set<String>, now: UInt64, olderThan: UInt64 = 592_200
    ) throws(DaemonError) -> [String] {
        let settings = DaemonStore.Domain.persistentSettings
        let names = try storedNames(store)
        return try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> [String] in
            var purged: [String] = []
            for name in names {
                let stampKey = "timestamp." + name
                if scheduled.contains(name) {
                    if try t.get(settings, stampKey) != nil { try t.delete(settings, stampKey) }
                    continue
                }
                guard let stamp = try t.get(settings, stampKey).flatMap({ UInt64($0) }) else {
                    try t.put(settings, stampKey, String(now))
                    continue
                }
                if now >= stamp, now - stamp > olderThan {
                    for key in [name, name + "epoch", name + "counter", "query." + name] { try t.delete(domain, key) }
                    try t.delete(settings, stampKey)
                    purged.append(name)
                }
            }
            return purged
        }
    }
}
