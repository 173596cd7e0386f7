public import OsqueryEngine
import Synchronization

/// What one `record` did.
public struct RecordOutcome: Sendable, Equatable {
    public var added: Int
    public var removed: Int
    public var counter: UInt64
    /// Bytes of result lines produced (newlines included).
    public var outputBytes: Int

    public init(added: Int, removed: Int, counter: UInt64, outputBytes: Int) {
        self.added = added
        self.removed = removed
        self.counter = counter
        self.outputBytes = outputBytes
    }
}

/// Diffs, stores, formats and logs each run of a scheduled query, so that a
/// SIGKILL at any point never loses or duplicates a line of the results file.
///
/// One run is one store transaction that writes the new baseline, counter and
/// the run's formatted lines into an outbox (domain `logs`,
/// `results_outbox.<seq>`). Delivering an entry: record the result file's
/// size S (`results_offset.<seq>`), append, hand the lines to the other
/// loggers, delete the entry. `recover()` (and every `record`) delivers what
/// is left in order: with S recorded, bytes already at S are kept, a torn or
/// different tail is cut back to S and rewritten; without S nothing was
/// written yet. The results file is therefore exactly-once; stdout, syslog
/// and extension loggers are at-least-once (a line may be sent again after a
/// crash between sending it and deleting the entry).
///
/// Calls block (store, files, extension calls): run them on the scheduler's
/// own thread, never on the cooperative pool.
public final class ResultPipeline: Sendable {
    /// Points of a run where crash tests stop it.
    enum Step: Sendable, CaseIterable {
        /// Inside the transaction, before it commits (the run is rolled back).
        case beforeCommit
        case afterCommit
        case afterOffset
        /// Half of the entry's bytes are in the file.
        case midAppend
        case afterAppend
        case afterOthers
        case afterDelete
    }

    let store: DaemonStore
    let loggers: LoggerSet
    let flags: Flags
    /// Serializes runs: the outbox must be delivered in sequence order.
    private let lock = Mutex(())
    /// Crash tests: called at each `Step`; throwing there stops the run.
    let faultHook = Mutex<(@Sendable (Step) throws(DaemonError) -> Void)?>(nil)

    static let domain = DaemonStore.Domain.logs
    static let outboxPrefix = "results_outbox."
    static let offsetPrefix = "results_offset."
    static let sequenceKey = "results_outbox_sequence"

    public init(store: DaemonStore, loggers: LoggerSet, flags: Flags) {
        self.store = store
        self.loggers = loggers
        self.flags = flags
    }

    private func hook(_ step: Step) throws(DaemonError) {
        if let h = faultHook.withLock({ $0 }) { try h(step) }
    }

    /// Diffs, stores and logs one run of `query`. Snapshot queries store no
    /// results and log every row. Throws when the store or a logger cannot be
    /// written (exit code 78; 1 for an extension logger that is away); the
    /// run's lines then stay in the outbox and are delivered by the next
    /// `record` or `recover`.
    public func record(_ query: ScheduledQuery, _ results: QueryResults, context: LogContext) throws(DaemonError) -> RecordOutcome {
        let options = ResultFormat.Options(flags: flags)
        let epoch = flags.uint("schedule_epoch")
        let logging = loggers.logsResults
        return try lock.withLock { (_: inout ()) throws(DaemonError) -> RecordOutcome in
            // Anything an earlier failed run left goes out first, in order.
            try deliverPending()
            let numerics: Set<String>? = options.numerics ? results.numericColumns : nil
            let outcome: RecordOutcome
            let sequence: UInt64?
            if query.snapshot {
                let header = ResultFormat.Header(name: query.name, context: context, epoch: epoch, counter: 0)
                let enc = RowEncoder(numerics: numerics)
                var rows: [String] = []
                rows.reserveCapacity(results.rows.count)
                for r in results.rows { rows.append(enc.encode(r)) }
                let lines = ResultFormat.snapshotLines(header: header, rows: rows, options: options)
                let bytes = lines.reduce(0) { $0 + $1.utf8.count + 1 }
                outcome = RecordOutcome(added: results.rows.count, removed: 0, counter: 0, outputBytes: bytes)
                sequence = try storeTransaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> UInt64? in
                    guard logging, !lines.isEmpty else { return nil }
                    return try enqueue(.snapshot, lines, in: &t)
                }
            } else {
                let current = Differential.canonical(results.rows)
                (outcome, sequence) = try storeTransaction {
                    (t: inout DaemonStore.Transaction) throws(DaemonError) -> (RecordOutcome, UInt64?) in
                    let diff = try Differential.apply(name: query.name, sql: query.sql, current: current, epoch: epoch, in: &t)
                    let removed = query.removed ? diff.removed : []
                    var lines: [String] = []
                    // Nothing changed: nothing logged, except a new baseline
                    // (counter 0), which batch mode logs even when empty.
                    if !diff.added.isEmpty || !removed.isEmpty || (diff.newBaseline && !options.eventType) {
                        let header = ResultFormat.Header(name: query.name, context: context, epoch: epoch, counter: diff.counter)
                        let enc = RowEncoder(numerics: numerics)
                        let added = numerics == nil ? diff.added : diff.added.map { enc.reencode(canonical: $0) }
                        let gone = numerics == nil ? removed : removed.map { enc.reencode(canonical: $0) }
                        lines = ResultFormat.diffLines(header: header, removed: gone, added: added, options: options)
                    }
                    let bytes = lines.reduce(0) { $0 + $1.utf8.count + 1 }
                    let o = RecordOutcome(added: diff.added.count, removed: removed.count, counter: diff.counter, outputBytes: bytes)
                    guard logging, !lines.isEmpty else { return (o, nil) }
                    return (o, try enqueue(.results, lines, in: &t))
                }
            }
            try hook(.afterCommit)
            if sequence != nil { try deliverPending() }
            return outcome
        }
    }

    private func storeTransaction<T>(_ body: (inout DaemonStore.Transaction) throws(DaemonError) -> T) throws(DaemonError) -> T {
        do {
            return try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> T in
                let value = try body(&t)
                try hook(.beforeCommit)
                return value
            }
        } catch {
            throw DaemonError(error.message, exitCode: 78)
        }
    }

    /// osquery's `output_size` of a run (osquery_schedule): the bytes of every
    /// column name and value of every returned row, before any diffing.
    public static func outputSize(_ results: QueryResults) -> Int {
        var size = 0
        for row in results.rows {
            for (k, v) in row { size += k.utf8.count + v.utf8.count }
        }
        return size
    }

    /// Delivers whatever a previous (killed) run left in the outbox. Call once
    /// at start-up, before the scheduler runs.
    public func recover() throws(DaemonError) {
        try lock.withLock { (_: inout ()) throws(DaemonError) in
            let pending = pendingCount
            try deliverPending()
            if pending > 0 { StatusLog.info("Delivered \(pending) result log entries left by the previous run") }
        }
    }

    /// Entries waiting for delivery (tests, `--database_dump` readers).
    var pendingCount: Int { store.keys(Self.domain, prefix: Self.outboxPrefix).count }

    private static func key(_ prefix: String, _ sequence: UInt64) -> String {
        // Zero-padded so byte order is sequence order.
        let digits = String(sequence)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    private func enqueue(_ kind: ResultKind, _ lines: [String], in t: inout DaemonStore.Transaction) throws(DaemonError) -> UInt64 {
        let sequence = (try t.get(Self.domain, Self.sequenceKey).flatMap { UInt64($0) } ?? 0) &+ 1
        var value = kind.rawValue
        value += "\n"
        for l in lines {
            value += l
            value += "\n"
        }
        try t.put(Self.domain, Self.sequenceKey, String(sequence))
        try t.put(Self.domain, Self.key(Self.outboxPrefix, sequence), value)
        return sequence
    }

    private func deliverPending() throws(DaemonError) {
        for key in store.keys(Self.domain, prefix: Self.outboxPrefix) {
            guard let value = store.get(Self.domain, key) else { continue }
            let sequence = String(key.dropFirst(Self.outboxPrefix.count))
            try deliver(entryKey: key, offsetKey: Self.offsetPrefix + sequence, value: value)
        }
    }

    private func deliver(entryKey: String, offsetKey: String, value: String) throws(DaemonError) {
        // Lines are JSON and never hold a raw newline; split bytes, not Characters.
        var parts = value.utf8.split(separator: 0x0A, omittingEmptySubsequences: true)
        guard let first = parts.first, let kind = ResultKind(rawValue: String(Substring(first))) else {
            StatusLog.error("Dropping an unreadable pending result entry \(entryKey)")
            try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) in
                try t.delete(Self.domain, entryKey)
                try t.delete(Self.domain, offsetKey)
            }
            return
        }
        parts.removeFirst()
        let text = String(Substring(value.utf8.dropFirst(first.count + 1)))
        if let fs = loggers.filesystem {
            if let offset = store.get(Self.domain, offsetKey).flatMap({ UInt64($0) }) {
                try fs.reconcile(kind, offset: offset, text)
            } else {
                let offset = try fs.prepare(kind)
                try store.put(Self.domain, offsetKey, String(offset))
                try hook(.afterOffset)
                let testing = faultHook.withLock { $0 != nil }
                try fs.append(kind, text, midway: testing ? { () throws(DaemonError) in try self.hook(.midAppend) } : nil)
            }
            try hook(.afterAppend)
        }
        for logger in loggers.others {
            for line in parts {
                switch kind {
                case .results: try logger.logResult(String(Substring(line)))
                case .snapshot: try logger.logSnapshot(String(Substring(line)))
                }
            }
        }
        try hook(.afterOthers)
        try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) in
            try t.delete(Self.domain, entryKey)
            try t.delete(Self.domain, offsetKey)
        }
        try hook(.afterDelete)
    }
}
