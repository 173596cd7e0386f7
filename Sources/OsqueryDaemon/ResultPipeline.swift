import Dispatch
import Foundation
public import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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

/// Diffs, stores, formats and logs each run of a scheduled query, so that no
/// run is lost while a logger fails and a SIGKILL at any point never loses or
/// duplicates a line of the results file.
///
/// `record` is one store transaction that writes the new baseline, counter
/// and the run's formatted lines into an outbox (domain `logs`,
/// `results_outbox.<seq>`), and nothing else: it never waits for a logger.
/// Each logger has a courier thread and a cursor (`results_cursor.<logger>`,
/// entry and line) and delivers from where it stopped, so a failing or hung
/// logger holds back only itself; it is retried with back-off up to
/// `--logger_retry_max_seconds`, with a status line when it fails and when it
/// recovers. An entry is deleted once every logger's cursor is past it. The
/// outbox is capped by `--logger_outbox_max_bytes`: beyond it the oldest
/// entry is dropped, with a WARNING naming the query and the lines lost.
///
/// The filesystem courier delivers an entry whole: it records the results
/// file's size S (`results_offset.<seq>`), appends, fsyncs, then moves its
/// cursor past the entry. With S recorded, bytes already at S are kept, a
/// torn or different tail (a crash, a disk that filled up) is cut back to S
/// and rewritten; without S nothing was written yet. The results file is
/// therefore exactly-once. Other loggers take lines one at a time; within a
/// process none gets a line twice, and after a SIGKILL a logger may get again
/// the lines of the entry it was in (at-least-once), as in osquery.
///
/// `record` blocks on the store: call it from the scheduler's own thread,
/// never from the cooperative pool.
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
        case afterCursor
    }

    let store: DaemonStore
    let loggers: LoggerSet
    let flags: Flags
    let core: PipelineCore
    let couriers: [Courier]
    /// Serializes `record`: sequence numbers and the cap.
    private let lock = Mutex(())
    private let started = Mutex(false)

    static let domain = DaemonStore.Domain.logs
    static let outboxPrefix = "results_outbox."
    static let offsetPrefix = "results_offset."
    static let cursorPrefix = "results_cursor."
    static let sequenceKey = "results_outbox_sequence"

    public init(store: DaemonStore, loggers: LoggerSet, flags: Flags) {
        self.store = store
        self.loggers = loggers
        self.flags = flags
        let core = PipelineCore(store: store, flags: flags)
        self.core = core
        var couriers: [Courier] = []
        if !loggers.disabled {
            if let fs = loggers.filesystem { couriers.append(Courier(name: "filesystem", target: .filesystem(fs), core: core)) }
            for logger in loggers.others { couriers.append(Courier(name: logger.name, target: .lines(logger), core: core)) }
        }
        self.couriers = couriers
        core.setLoggerNames(couriers.map(\.name))
    }

    deinit { stop() }

    /// Crash tests: `hook` runs at each `Step`; when it throws, the pipeline
    /// acts as a killed process (nothing more is written).
    func setFaultHook(_ hook: (@Sendable (Step) throws(DaemonError) -> Void)?) {
        core.faultHook.withLock { $0 = hook }
    }

    /// Diffs and stores one run of `query`, then hands it to the couriers.
    /// Snapshot queries store no results and log every row. Throws only when
    /// the store cannot be written (exit code 78): a logger that fails never
    /// makes a run fail, its lines wait in the outbox.
    public func record(_ query: ScheduledQuery, _ results: QueryResults, context: LogContext) throws(DaemonError) -> RecordOutcome {
        start()
        let options = ResultFormat.Options(flags: flags)
        let epoch = flags[.scheduleEpoch]
        let logging = loggers.logsResults && !couriers.isEmpty
        return try lock.withLock { (_: inout ()) throws(DaemonError) -> RecordOutcome in
            let numerics: Set<String>? = options.numerics ? results.numericColumns : nil
            let outcome: RecordOutcome
            let queued: Queued?
            if query.snapshot {
                let header = ResultFormat.Header(name: query.name, context: context, epoch: epoch, counter: 0)
                let enc = RowEncoder(numerics: numerics)
                var rows: [String] = []
                rows.reserveCapacity(results.rows.count)
                for r in results.rows { rows.append(enc.encode(r)) }
                let lines = ResultFormat.snapshotLines(header: header, rows: rows, options: options)
                let bytes = lines.reduce(0) { $0 + $1.utf8.count + 1 }
                outcome = RecordOutcome(added: results.rows.count, removed: 0, counter: 0, outputBytes: bytes)
                queued = try storeTransaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> Queued? in
                    try Self.putEventMarks(context, in: &t)
                    guard logging, !lines.isEmpty else { return nil }
                    return try enqueue(.snapshot, query.name, lines, in: &t)
                }
            } else if context.eventBased && flags[.eventsOptimize] {
                // events (issue 17): event rows are new by construction (each logged once per
                // query), so they are not diffed; the marks commit with the lines.
                let current = Differential.canonical(results.rows)
                (outcome, queued) = try storeTransaction {
                    (t: inout DaemonStore.Transaction) throws(DaemonError) -> (RecordOutcome, Queued?) in
                    let counter = try Differential.applyEvents(name: query.name, sql: query.sql, added: !current.isEmpty, epoch: epoch, in: &t)
                    try Self.putEventMarks(context, in: &t)
                    var lines: [String] = []
                    if !current.isEmpty {
                        let header = ResultFormat.Header(name: query.name, context: context, epoch: epoch, counter: counter)
                        let enc = RowEncoder(numerics: numerics)
                        let added = numerics == nil ? current : current.map { enc.reencode(canonical: $0) }
                        lines = ResultFormat.diffLines(header: header, removed: [], added: added, options: options)
                    }
                    let bytes = lines.reduce(0) { $0 + $1.utf8.count + 1 }
                    let o = RecordOutcome(added: current.count, removed: 0, counter: counter, outputBytes: bytes)
                    guard logging, !lines.isEmpty else { return (o, nil) }
                    return (o, try enqueue(.results, query.name, lines, in: &t))
                }
            } else {
                let current = Differential.canonical(results.rows)
                (outcome, queued) = try storeTransaction {
                    (t: inout DaemonStore.Transaction) throws(DaemonError) -> (RecordOutcome, Queued?) in
                    let diff = try Differential.apply(name: query.name, sql: query.sql, current: current, epoch: epoch, in: &t)
                    try Self.putEventMarks(context, in: &t)
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
                    return (o, try enqueue(.results, query.name, lines, in: &t))
                }
            }
            if let queued {
                core.committed(queued)
                try core.hook(.afterCommit)
                for c in couriers { c.notify() }
            }
            return outcome
        }
    }

    /// A committed entry and what the cap dropped to make room for it, with
    /// the loggers that had not taken all of each dropped entry.
    struct Queued {
        var entry: OutboxEntryInfo
        var dropped: [(entry: OutboxEntryInfo, waiting: [String])]
    }

    private func storeTransaction<T>(_ body: (inout DaemonStore.Transaction) throws(DaemonError) -> T) throws(DaemonError) -> T {
        do {
            return try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> T in
                let value = try body(&t)
                try core.hook(.beforeCommit)
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

    /// Starts the couriers, which deliver whatever a previous (killed) run
    /// left in the outbox before anything newer. Call once at start-up,
    /// before the scheduler runs.
    public func recover() {
        start()
        let pending = core.pendingEntries
        if pending > 0 { StatusLog.info("Delivering \(pending) result log entries left by the previous run") }
    }

    private func start() {
        let first = started.withLock { s -> Bool in
            defer { s = true }
            return !s
        }
        guard first else { return }
        do {
            try core.loadIndex()
        } catch {
            // The couriers retry the load; nothing is delivered until it succeeds.
            StatusLog.error("Cannot read the result outbox: \(error.message)")
        }
        for c in couriers { c.start() }
    }

    /// Waits until every courier named in `only` (all when nil) has delivered
    /// everything queued, up to `timeout` seconds; false when one has not.
    /// Throws the fault hook's error once a crash test stopped the pipeline.
    @discardableResult
    func drain(timeout: Double = 30, only: Set<String>? = nil) throws(DaemonError) -> Bool {
        let end = Scheduler.realNow() + timeout
        while true {
            if let crash = core.crash { throw crash }
            if couriers.allSatisfy({ only?.contains($0.name) == false || core.caughtUp($0) }) { return true }
            if Scheduler.realNow() >= end { return false }
            usleep(5_000)
        }
    }

    /// Stops the couriers. With `grace`, loggers that are not failing first
    /// get up to that many seconds to deliver what is queued; the rest stays
    /// in the outbox for the next start.
    public func stop(grace: Double = 0) {
        guard started.withLock({ $0 }) else { return }
        if grace > 0 {
            let end = Scheduler.realNow() + grace
            while Scheduler.realNow() < end, core.crash == nil,
                !couriers.allSatisfy({ $0.isFailing || core.caughtUp($0) })
            {
                usleep(10_000)
            }
        }
        for c in couriers { c.requestStop() }
        // A courier stuck in a hung logger's call is left behind: it only
        // holds the store, which the exiting process releases anyway.
        for c in couriers { c.join(timeout: 2) }
    }

    /// Entries waiting in the store (tests, `--database_dump` readers).
    func pendingCount() throws(DaemonError) -> Int {
        try store.keys(Self.domain, prefix: Self.outboxPrefix).count
    }

    /// The last delivery error of a logger while it fails (tests).
    func failure(of logger: String) -> String? {
        couriers.first { $0.name == logger }?.failureMessage
    }

    static func key(_ prefix: String, _ sequence: UInt64) -> String {
        // Zero-padded so byte order is sequence order.
        let digits = String(sequence)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// The outbox value: `<kind> <query name>`, then one line per result line.
    private func enqueue(
        _ kind: ResultKind, _ name: String, _ lines: [String], in t: inout DaemonStore.Transaction
    ) throws(DaemonError) -> Queued {
        let sequence = (try t.get(Self.domain, Self.sequenceKey).flatMap { UInt64($0) } ?? 0) &+ 1
        var value = kind.rawValue
        value += " "
        // The header is one line: control characters in a name become '?'.
        value += String(String.UnicodeScalarView(name.unicodeScalars.map { $0.value < 0x20 ? "?" : $0 }))
        value += "\n"
        for l in lines {
            value += l
            value += "\n"
        }
        try t.put(Self.domain, Self.sequenceKey, String(sequence))
        try t.put(Self.domain, Self.key(Self.outboxPrefix, sequence), value)
        let entry = OutboxEntryInfo(sequence: sequence, bytes: value.utf8.count, lines: lines.count, name: name)
        var dropped: [(entry: OutboxEntryInfo, waiting: [String])] = []
        for old in core.overCap(adding: entry, cap: flags[.loggerOutboxMaxBytes]) {
            // Read under the store's lock: no courier can pass the entry meanwhile.
            let past = OutboxCursor(old.sequence + 1, 0)
            let waiting = couriers.filter { ($0.currentCursor ?? OutboxCursor(0, 0)) < past }.map(\.name)
            try PipelineCore.deleteEntry(old.sequence, in: &t)
            dropped.append((old, waiting))
        }
        return Queued(entry: entry, dropped: dropped)
    }
}

/// What the pipeline keeps in memory about an outbox entry.
struct OutboxEntryInfo: Sendable {
    var sequence: UInt64
    var bytes: Int
    var lines: Int
    var name: String
}

/// A cursor: the next line a logger takes is line `line` of the first entry
/// whose sequence is at least `sequence`.
struct OutboxCursor: Sendable, Equatable, Comparable {
    var sequence: UInt64
    var line: Int

    static func < (a: Self, b: Self) -> Bool { (a.sequence, a.line) < (b.sequence, b.line) }

    init(_ sequence: UInt64, _ line: Int) {
        self.sequence = sequence
        self.line = line
    }

    init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let s = UInt64(parts[0]), let l = Int(parts[1]), l >= 0 else { return nil }
        self.init(s, l)
    }

    var text: String { "\(sequence):\(line)" }
}

/// What the couriers and `record` share: the store, the outbox index (entries
/// in sequence order and their bytes, for the cap) and the crash-test hook.
final class PipelineCore: Sendable {
    let store: DaemonStore
    let flags: Flags
    let faultHook = Mutex<(@Sendable (ResultPipeline.Step) throws(DaemonError) -> Void)?>(nil)
    private let crashed = Mutex<DaemonError?>(nil)
    /// Every logger's name: an entry is deleted once all their cursors passed it.
    private let loggerNames = Mutex<[String]>([])

    private struct Index {
        var loaded = false
        var entries: [OutboxEntryInfo] = []
        var bytes = 0
    }

    private let index = Mutex(Index())

    init(store: DaemonStore, flags: Flags) {
        self.store = store
        self.flags = flags
    }

    func setLoggerNames(_ names: [String]) { loggerNames.withLock { $0 = names } }

    var crash: DaemonError? { crashed.withLock { $0 } }

    func hook(_ step: ResultPipeline.Step) throws(DaemonError) {
        guard let h = faultHook.withLock({ $0 }) else { return }
        do {
            try h(step)
        } catch {
            crashed.withLock { $0 = error }
            throw error
        }
    }

    var testing: Bool { faultHook.withLock { $0 != nil } }

    var pendingEntries: Int { index.withLock { $0.entries.count } }

    /// Reads the outbox into the index (once). The read is one transaction, so
    /// `record`'s commits fall either before it (and are read) or after it
    /// (and are added by `committed`).
    func loadIndex() throws(DaemonError) {
        if index.withLock({ $0.loaded }) { return }
        let domain = ResultPipeline.domain
        try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) in
            var entries: [OutboxEntryInfo] = []
            var bytes = 0
            for key in try t.keys(domain, prefix: ResultPipeline.outboxPrefix) {
                guard let sequence = UInt64(key.dropFirst(ResultPipeline.outboxPrefix.count)) else { continue }
                guard let value = try t.get(domain, key) else { continue }
                let parsed = OutboxValue(value)
                entries.append(
                    OutboxEntryInfo(sequence: sequence, bytes: value.utf8.count, lines: parsed?.lines.count ?? 0, name: parsed?.name ?? "?"))
                bytes += value.utf8.count
            }
            index.withLock { i in
                guard !i.loaded else { return }
                i = Index(loaded: true, entries: entries, bytes: bytes)
            }
        }
    }

    /// The first entry at or after `sequence`.
    func entry(atLeast sequence: UInt64) -> OutboxEntryInfo? {
        index.withLock { i in
            var low = 0
            var high = i.entries.count
            while low < high {
                let mid = (low + high) / 2
                if i.entries[mid].sequence < sequence { low = mid + 1 } else { high = mid }
            }
            return low < i.entries.count ? i.entries[low] : nil
        }
    }

    func caughtUp(_ c: Courier) -> Bool {
        guard let cursor = c.currentCursor else { return false }
        return entry(atLeast: cursor.sequence) == nil
    }

    /// The oldest entries to drop so that `entry` fits under `cap` bytes (the
    /// newest entry is always kept).
    func overCap(adding entry: OutboxEntryInfo, cap: UInt64) -> [OutboxEntryInfo] {
        index.withLock { i in
            var total = i.bytes + entry.bytes
            var dropped: [OutboxEntryInfo] = []
            for old in i.entries where UInt64(max(0, total)) > cap {
                dropped.append(old)
                total -= old.bytes
            }
            return dropped
        }
    }

    /// After `record` committed: the index learns the new entry and forgets the
    /// dropped ones, and each drop is reported.
    func committed(_ queued: ResultPipeline.Queued) {
        index.withLock { i in
            if i.loaded, (i.entries.last?.sequence ?? 0) < queued.entry.sequence {
                i.entries.append(queued.entry)
                i.bytes += queued.entry.bytes
            }
        }
        forget(queued.dropped.map(\.entry.sequence))
        let cap = flags[.loggerOutboxMaxBytes]
        // An entry every logger had taken loses nothing: no warning.
        for (old, waiting) in queued.dropped where !waiting.isEmpty {
            StatusLog.warning(
                "Result outbox over --logger_outbox_max_bytes=\(cap): dropped the oldest entry, \(old.lines) result lines "
                    + "of query \(old.name), not yet taken by logger \(waiting.joined(separator: ", "))")
        }
    }

    private func forget(_ sequences: [UInt64]) {
        guard !sequences.isEmpty else { return }
        let gone = Set(sequences)
        index.withLock { i in
            i.entries.removeAll { e in
                guard gone.contains(e.sequence) else { return false }
                i.bytes -= e.bytes
                return true
            }
        }
    }

    static func deleteEntry(_ sequence: UInt64, in t: inout DaemonStore.Transaction) throws(DaemonError) {
        try t.delete(ResultPipeline.domain, ResultPipeline.key(ResultPipeline.outboxPrefix, sequence))
        try t.delete(ResultPipeline.domain, ResultPipeline.key(ResultPipeline.offsetPrefix, sequence))
    }

    /// Moves `courier`'s stored cursor to `cursor` and deletes the entries
    /// every logger has passed, in one transaction.
    func advance(_ courier: Courier, to cursor: OutboxCursor, clearingOffsetOf done: UInt64?) throws(DaemonError) {
        let names = loggerNames.withLock { $0 }
        let domain = ResultPipeline.domain
        let deleted = try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) -> [UInt64] in
            try t.put(domain, ResultPipeline.cursorPrefix + courier.name, cursor.text)
            if let done { try t.delete(domain, ResultPipeline.key(ResultPipeline.offsetPrefix, done)) }
            var oldest = cursor.sequence
            for name in names where name != courier.name {
                let stored = try t.get(domain, ResultPipeline.cursorPrefix + name).flatMap(OutboxCursor.init)
                oldest = min(oldest, stored?.sequence ?? 0)
            }
            let passed = index.withLock { i in i.entries.prefix { $0.sequence < oldest }.map(\.sequence) }
            for s in passed { try Self.deleteEntry(s, in: &t) }
            return passed
        }
        forget(deleted)
    }

    /// An entry that can never be delivered (not a known kind) is removed for
    /// every logger, with an error.
    func dropUnreadable(_ sequence: UInt64) throws(DaemonError) {
        StatusLog.error("Dropping an unreadable pending result entry \(ResultPipeline.key(ResultPipeline.outboxPrefix, sequence))")
        try store.transaction { (t: inout DaemonStore.Transaction) throws(DaemonError) in try Self.deleteEntry(sequence, in: &t) }
        forget([sequence])
    }
}

/// An outbox value split into its kind, query name and lines (byte slices).
struct OutboxValue {
    var kind: ResultKind
    var name: String
    /// Every line, newline-terminated, as the results file takes them.
    var text: Substring
    var lines: [Substring]

    init?(_ value: String) {
        // Lines are JSON and never hold a raw newline; split bytes, not Characters.
        guard let end = value.utf8.firstIndex(of: 0x0A) else { return nil }
        let header = Substring(value.utf8[..<end])
        let space = header.firstIndex(of: " ")
        guard let kind = ResultKind(rawValue: String(header[..<(space ?? header.endIndex)])) else { return nil }
        self.kind = kind
        name = space.map { String(header[header.index(after: $0)...]) } ?? "?"
        text = Substring(value.utf8[value.utf8.index(after: end)...])
        lines = text.utf8.split(separator: 0x0A, omittingEmptySubsequences: true).map { Substring($0) }
    }
}

/// Delivers the outbox to one logger, on its own thread, from its cursor.
final class Courier: Sendable {
    enum Target: Sendable {
        case filesystem(FilesystemLogger)
        case lines(any ResultLogger)
    }

    let name: String
    let target: Target
    let core: PipelineCore
    /// New entries (or a stop) while the courier is idle.
    private let wake = DispatchSemaphore(value: 0)
    /// A stop while it waits out a back-off: new entries do not cut that short.
    private let stopWake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    private struct State {
        var cursor: OutboxCursor?
        var stopping = false
        var running = false
        var failure: String?
    }

    private let state = Mutex(State())

    init(name: String, target: Target, core: PipelineCore) {
        self.name = name
        self.target = target
        self.core = core
    }

    var currentCursor: OutboxCursor? { state.withLock { $0.cursor } }
    var isFailing: Bool { state.withLock { $0.failure != nil } }
    var failureMessage: String? { state.withLock { $0.failure } }

    func start() {
        state.withLock { $0.running = true }
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "logger-\(name)"
        thread.start()
    }

    /// New entries: an idle courier looks for them; one waiting out a
    /// back-off keeps waiting (a hung logger would cost a call per run).
    func notify() { wake.signal() }

    func requestStop() {
        state.withLock { $0.stopping = true }
        wake.signal()
        stopWake.signal()
    }

    func join(timeout: Double) {
        guard state.withLock({ $0.running }) else { return }
        if finished.wait(timeout: .now() + timeout) == .success {
            state.withLock { $0.running = false }
        }
    }

    private var stopping: Bool { state.withLock { $0.stopping } }

    private func run() {
        let firstDelay = 0.25
        var delay = firstDelay
        while !stopping, core.crash == nil {
            let progressed: Bool
            do {
                progressed = try deliverNext()
            } catch {
                if core.crash != nil { break }
                failed(error)
                let most = Double(max(1, core.flags[.loggerRetryMaxSeconds]))
                _ = stopWake.wait(timeout: .now() + min(delay, most))
                delay = min(delay * 2, most)
                continue
            }
            if delay != firstDelay || isFailing {
                delay = firstDelay
                recovered()
            }
            if !progressed { wake.wait() }
        }
        // Where a line logger stopped inside an entry, for the next start.
        if core.crash == nil, case .lines = target, let c = currentCursor {
            try? core.store.put(ResultPipeline.domain, ResultPipeline.cursorPrefix + name, c.text)
        }
    }

    private func failed(_ error: DaemonError) {
        let first = state.withLock { s -> Bool in
            defer { s.failure = error.message }
            return s.failure != error.message
        }
        // Once per outage (or when the reason changes), not at every retry.
        if first {
            StatusLog.warning("Results for logger \(name) are held in the outbox and retried: \(error.message)")
        }
    }

    private func recovered() {
        let was = state.withLock { s -> String? in
            defer { s.failure = nil }
            return s.failure
        }
        if was != nil { StatusLog.info("Logger \(name) is taking results again") }
    }

    /// Delivers the entry at the cursor; false when there is none.
    private func deliverNext() throws(DaemonError) -> Bool {
        try core.loadIndex()
        let cursor: OutboxCursor
        if let c = currentCursor {
            cursor = c
        } else {
            let stored = try core.store.get(ResultPipeline.domain, ResultPipeline.cursorPrefix + name)
            cursor = stored.flatMap(OutboxCursor.init) ?? OutboxCursor(0, 0)
            state.withLock { $0.cursor = cursor }
        }
        guard let info = core.entry(atLeast: cursor.sequence) else { return false }
        let sequence = info.sequence
        let key = ResultPipeline.key(ResultPipeline.outboxPrefix, sequence)
        // A read error throws: nothing is delivered or advanced on a guess.
        guard let value = try core.store.get(ResultPipeline.domain, key) else {
            // Dropped by the cap or passed by every logger meanwhile.
            setCursor(OutboxCursor(sequence + 1, 0))
            return true
        }
        guard let entry = OutboxValue(value) else {
            try core.dropUnreadable(sequence)
            return true
        }
        switch target {
        case .filesystem(let fs):
            try deliverFile(fs, sequence, entry)
        case .lines(let logger):
            try deliverLines(logger, sequence, entry, from: cursor.sequence == sequence ? cursor.line : 0)
        }
        return true
    }

    private func setCursor(_ c: OutboxCursor) { state.withLock { $0.cursor = c } }

    private func deliverFile(_ fs: FilesystemLogger, _ sequence: UInt64, _ entry: OutboxValue) throws(DaemonError) {
        let offsetKey = ResultPipeline.key(ResultPipeline.offsetPrefix, sequence)
        let text = String(entry.text)
        if let recorded = try core.store.get(ResultPipeline.domain, offsetKey), let offset = UInt64(recorded) {
            try fs.reconcile(entry.kind, offset: offset, text)
        } else {
            let offset = try fs.prepare(entry.kind)
            try core.store.put(ResultPipeline.domain, offsetKey, String(offset))
            try core.hook(.afterOffset)
            let midway: (() throws(DaemonError) -> Void)? = core.testing ? { () throws(DaemonError) in try self.core.hook(.midAppend) } : nil
            try fs.append(entry.kind, text, midway: midway)
        }
        try core.hook(.afterAppend)
        let next = OutboxCursor(sequence + 1, 0)
        try core.advance(self, to: next, clearingOffsetOf: sequence)
        setCursor(next)
        try core.hook(.afterCursor)
    }

    private func deliverLines(_ logger: any ResultLogger, _ sequence: UInt64, _ entry: OutboxValue, from start: Int) throws(DaemonError) {
        var line = start
        // A logger that takes a run's lines at once (TLS: one store transaction) has them all
        // or none, so its cursor moves past the whole entry or stays.
        if let batch = logger as? any BatchResultLogger, line < entry.lines.count {
            if stopping { return }
            do {
                try batch.logLines(Array(entry.lines[line...]), snapshot: entry.kind == .snapshot)
            } catch {
                setCursor(OutboxCursor(sequence, line))
                try? core.store.put(ResultPipeline.domain, ResultPipeline.cursorPrefix + name, OutboxCursor(sequence, line).text)
                throw error
            }
            line = entry.lines.count
        }
        while line < entry.lines.count {
            if stopping { return }
            let text = String(entry.lines[line])
            do {
                switch entry.kind {
                case .results: try logger.logResult(text)
                case .snapshot: try logger.logSnapshot(text)
                }
            } catch {
                // Where this logger stopped, so a restart resumes there too.
                setCursor(OutboxCursor(sequence, line))
                try? core.store.put(ResultPipeline.domain, ResultPipeline.cursorPrefix + name, OutboxCursor(sequence, line).text)
                throw error
            }
            line += 1
            setCursor(OutboxCursor(sequence, line))
        }
        let next = OutboxCursor(sequence + 1, 0)
        try core.advance(self, to: next, clearingOffsetOf: nil)
        setCursor(next)
    }
}
