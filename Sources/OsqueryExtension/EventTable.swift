import OsqueryProtocol
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The limits and the state file of an ``EventTable``.
public struct EventTableOptions: Sendable {
    /// How long an event stays buffered, in seconds (osquery's `--events_expiry`); 0 keeps
    /// events until ``maxEvents`` newer ones push them out.
    public var expiry: Int64
    /// The most events buffered at once (osquery's `--events_max`). An event added to a full
    /// buffer pushes the oldest out, as osquery does (the newest are the ones a schedule has not
    /// logged yet); the dropped events are counted (``EventTable/droppedCount``) and reported in
    /// the log, so a source that outruns the expiry costs no more memory than this.
    public var maxEvents: Int
    /// The directory of the table's state file `<table>.events` (the last `eid`, the last
    /// cursor, the epoch (the numbering the `eid`s belong to) and the buffered events, so a
    /// restarted extension neither reuses an `eid` nor loses a buffered event); nil keeps
    /// everything in memory only, and each start is a new epoch.
    public var stateDirectory: String?
    /// Where the table logs (a full buffer, an unwritable state file); nil: standard error.
    public var logger: Logger?

    /// The directory used when none is given: beside osquery's own database.
    public static let defaultStateDirectory = "/var/osquery/extension_events"

    /// Options from their parts.
    /// - Parameters:
    ///   - expiry: seconds an event stays buffered (osquery's default, 3600); 0: no expiry.
    ///   - maxEvents: the most events buffered at once (osquery's default, 50 000).
    ///   - stateDirectory: the directory of the state file; nil: no state file.
    ///   - logger: where the table logs; nil: standard error.
    public init(
        expiry: Int64 = 3600, maxEvents: Int = 50_000, stateDirectory: String? = EventTableOptions.defaultStateDirectory,
        logger: Logger? = nil
    ) {
        self.expiry = expiry
        self.maxEvents = maxEvents
        self.stateDirectory = stateDirectory
        self.logger = logger
    }
}

/// A table of events: rows are pushed into it as they happen (``add(_:time:cursor:)`` or
/// ``consume(_:)``) and a query reads the buffered ones, as osquery's `*_events` tables do.
///
/// ```swift
/// let logins = EventTable("login_events", columns: [.text("user"), .text("tty")])
/// logins.consume(loginStream)          // any AsyncSequence of Row
/// await Extension("logins", plugins: [logins]).run()
/// ```
///
/// The table appends osquery's `time` (unix seconds) and hidden `eid` columns and gives each
/// event an `eid` one above the last, across restarts when it has a state file. Queries with
/// `time` or `eid` constraints read only the matching events. Its route info carries the
/// `event_based` attribute, so an osquery-compatible daemon logs each event of a scheduled
/// `SELECT` once (`events_optimize`): it asks for `eid` above the last one it logged. The route
/// info also carries the table's epoch, which changes when the `eid`s start again at 1 (no
/// state file, or a lost one), so that such a daemon asks for every event again instead of only
/// those above a mark from the old numbering.
public final class EventTable: ExtensionPlugin {
    /// The table the core sees: the author's columns, then `time` and `eid`.
    package let table: Table
    /// The limits and state file.
    package let options: EventTableOptions
    let buffer: EventBuffer

    /// `table`.
    public var registry: String { "table" }
    /// The table's name in SQL.
    public var name: String { table.name }
    /// The route info: the columns (with `time` and `eid`) and the `event_based` attribute.
    public var routes: [[String: String]] { table.routes }

    /// An event table from its columns; the state file, if there is one, is read here.
    /// - Parameters:
    ///   - name: the table's name in SQL.
    ///   - columns: the event's columns, in order; `time` and `eid` are added after them.
    ///   - documentation: the description, examples and notes of the table's spec (`--spec`).
    ///   - options: expiry, the buffer's cap and the state file's directory.
    public init(
        _ name: String, columns: [Column], documentation: TableDocumentation = TableDocumentation(),
        options: EventTableOptions = EventTableOptions()
    ) {
        let all =
            columns + [
                .bigint("time", .additional, description: "Time of the event (unix seconds)"),
                .bigint("eid", .hidden, description: "Event ID, one above the previous event's"),
            ]
        let logger = options.logger ?? Logger(label: "osquery.extension.events.\(name)") { StreamLogHandler.standardError(label: $0) }
        let buffer = EventBuffer(
            table: name, columns: columns.map(\.name), options: options, logger: logger)
        var schema = TableSchema(name: name, columns: all, attributes: .eventBased, documentation: documentation)
        schema.eventEpoch = buffer.state.withLock { $0.epoch }
        self.buffer = buffer
        self.options = options
        self.table = Table(schema: schema, limits: .default) { context in buffer.rows(context) }
    }

    /// Buffers one event; thread-safe, callable from any thread or task.
    /// - Parameters:
    ///   - row: the event's cells by column name (`time` and `eid` are set by the table).
    ///   - time: when it happened, in unix seconds; nil: now.
    ///   - cursor: where the source is (a sequence number, an offset), saved with the event
    ///     and given back by ``cursor`` after a restart, to skip what was already added.
    public func add(_ row: Row, time: Int64? = nil, cursor: String? = nil) {
        buffer.add(row, time: time, cursor: cursor)
    }

    /// Adds every row `rows` produces, in a task that ends with the sequence, at ``shutdown()``,
    /// or when cancelled. An error from the sequence ends it and is logged.
    /// - Parameter rows: the events, in the order they happened.
    /// - Returns: the task consuming the sequence.
    @discardableResult
    public func consume<S: AsyncSequence & Sendable>(_ rows: S) -> Task<Void, Never> where S.Element == Row {
        let buffer = self.buffer
        let task = Task {
            do {
                for try await row in rows { buffer.add(row, time: nil, cursor: nil) }
            } catch {
                buffer.logger.warning("event table \(buffer.table): its source failed: \(error)")
            }
        }
        buffer.keep(task)
        return task
    }

    /// The cursor saved with the last event added (in this run or, with a state file, a previous one).
    public var cursor: String? { buffer.state.withLock { $0.cursor } }
    /// The `eid` of the last event added; the next one gets one more.
    package var lastEID: Int64 { buffer.state.withLock { $0.lastEID } }
    /// The numbering the `eid`s belong to: random, made when the table starts without a state
    /// file (or with one that has none) and kept in the state file, so it changes exactly when
    /// the `eid`s start again at 1. Sent in the route info (`{"id": "eventEpoch", "epoch": …}`,
    /// which osquery's core ignores); a daemon that sees a new epoch forgets its
    /// `events_optimize` mark for the table.
    package var epoch: String { buffer.state.withLock { $0.epoch } }
    /// The events buffered now.
    package var bufferedCount: Int { buffer.state.withLock { $0.events.count - $0.head } }
    /// Events pushed out of a full buffer (``EventTableOptions/maxEvents``) before they expired.
    public var droppedCount: Int { buffer.state.withLock { $0.dropped } }

    /// Answers the core's calls as ``Table`` does.
    /// - Parameter request: the core's request.
    /// - Returns: the rows or a failure status.
    /// - Throws: what ``Table/handle(_:)`` throws.
    public func handle(_ request: PluginRequest) async throws -> PluginResponse { try await table.handle(request) }

    /// Answers the core's calls as ``Table`` does, rows encoded for the wire.
    /// - Parameter request: the core's request.
    /// - Returns: the encoded rows or a failure status.
    /// - Throws: what ``Table/reply(to:)`` throws.
    @_spi(FastPath) public func reply(to request: PluginRequest) async throws -> PluginReply { try await table.reply(to: request) }

    /// Stops the sequences given to ``consume(_:)`` and closes the state file.
    public func shutdown() async { buffer.close() }
}

/// The buffered events of one table and its state file.
final class EventBuffer: Sendable {
    struct Event {
        var eid: Int64
        var time: Int64
        var cells: [ThriftString?]
    }
    struct State {
        /// Buffered events are `events[head...]`, in eid order: dropping the oldest moves `head`
        /// (the array is shifted only once half of it is dropped ones).
        var events: [Event] = []
        var head = 0
        var lastEID: Int64 = 0
        var cursor: String?
        var epoch = ""
        var dropped = 0
        var file: Int32 = -1
        var journalLines = 0
        var tasks: [Task<Void, Never>] = []
    }

    let table: String
    let columns: [String]
    let options: EventTableOptions
    let logger: Logger
    let path: String?
    let state = Mutex(State())

    init(table: String, columns: [String], options: EventTableOptions, logger: Logger) {
        self.table = table
        self.columns = columns
        self.options = options
        self.logger = logger
        path = options.stateDirectory.map { $0 + "/" + table + ".events" }
        let fresh = Self.newEpoch()
        state.withLock { $0.epoch = fresh }
        guard let directory = options.stateDirectory, let path else { return }
        let loaded = Self.load(path, columnCount: columns.count)
        state.withLock { s in
            // The eids go on from the file's: so does their epoch (a file from before epochs
            // gets the new one, written below).
            if let epoch = loaded.epoch { s.epoch = epoch }
            s.lastEID = loaded.lastEID
            s.cursor = loaded.cursor
            s.events = loaded.events
            s.journalLines = loaded.lines
            expire(&s, now: Self.now())
            let excess = s.events.count - s.head - max(options.maxEvents, 1)
            if excess > 0 { drop(&s, excess) }
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                logger.warning("event table \(table): cannot create \(directory): \(String(cString: strerror(errno))); events are kept in memory only")
                return
            }
            // Rewritten at start: drops expired events and a line cut short by a kill.
            compact(&s)
        }
    }

    static func now() -> Int64 { Int64(Glibc.time(nil)) }

    /// 64 random bits in hex.
    static func newEpoch() -> String { String(UInt64.random(in: 1...UInt64.max), radix: 16) }

    func keep(_ task: Task<Void, Never>) { state.withLock { $0.tasks.append(task) } }

    func close() {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            if s.file >= 0 { Glibc.close(s.file) }
            s.file = -1
            defer { s.tasks = [] }
            return s.tasks
        }
        for t in tasks { t.cancel() }
    }

    func add(_ row: Row, time: Int64?, cursor: String?) {
        var cells = [ThriftString?](repeating: nil, count: columns.count)
        for (column, value) in row.cells {
            if let i = columns.firstIndex(of: column) { cells[i] = value.wireText }
        }
        let now = Self.now()
        state.withLock { s in
            expire(&s, now: now)
            if s.events.count - s.head >= max(options.maxEvents, 1) {
                drop(&s, 1)
                s.dropped += 1
                // One line per thousand dropped (or per events_max, if more): a storm cannot flood the log either.
                if (s.dropped - 1) % max(options.maxEvents, 1000) == 0 {
                    logger.warning(
                        "event table \(table): \(options.maxEvents) events are buffered (the limit, events_max): the oldest are dropped, \(s.dropped) so far")
                }
            }
            s.lastEID += 1
            let event = Event(eid: s.lastEID, time: time ?? now, cells: cells)
            s.events.append(event)
            if let cursor { s.cursor = cursor }
            journal(&s, event, cursor: cursor)
        }
    }

    /// Drops the `count` oldest events.
    private func drop(_ s: inout State, _ count: Int) {
        s.head += count
        if s.head >= 1024 && s.head * 2 >= s.events.count {
            s.events.removeFirst(s.head)
            s.head = 0
        }
    }

    /// Drops the oldest events while they are older than the expiry (a look at the oldest when
    /// none is); an event given an earlier time than the one before it waits for its turn, and
    /// queries skip it meanwhile.
    private func expire(_ s: inout State, now: Int64) {
        guard options.expiry > 0 else { return }
        let cutoff = now - options.expiry
        var expired = 0
        while s.head + expired < s.events.count, s.events[s.head + expired].time < cutoff { expired += 1 }
        if expired > 0 { drop(&s, expired) }
    }

    /// The rows of one query: `eid` and `time` ranges and equalities read only the matching events.
    func rows(_ context: QueryContext) -> [Row] {
        let eids = context["eid"]
        let times = context["time"]
        let eidRange = eids.range(as: Int64.self)
        let timeRange = times.range(as: Int64.self)
        let eidEquals = Set(eids.equals(as: Int64.self))
        let timeEquals = Set(times.equals(as: Int64.self))
        let eidFiltered = eids.exists(.equals)
        let timeFiltered = times.exists(.equals)
        let (columns, now) = (columns, Self.now())
        let cutoff = options.expiry > 0 ? now - options.expiry : Int64.min
        return state.withLock { s in
            expire(&s, now: now)
            // Events are in eid order: start at the lower bound.
            var start = s.head
            if let lower = eidRange.lower {
                var (lo, hi) = (s.head, s.events.count)
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if lower.inclusive ? s.events[mid].eid < lower.value : s.events[mid].eid <= lower.value { lo = mid + 1 } else { hi = mid }
                }
                start = lo
            }
            var out: [Row] = []
            for event in s.events[start...] {
                if !eidRange.contains(event.eid) {
                    if let upper = eidRange.upper, event.eid >= upper.value { break }
                    continue
                }
                if eidFiltered && !eidEquals.contains(event.eid) { continue }
                if event.time < cutoff || !timeRange.contains(event.time) || (timeFiltered && !timeEquals.contains(event.time)) { continue }
                var row = Row(capacity: columns.count + 2)
                for (i, column) in columns.enumerated() where context.isUsed(column) { row.append(column, event.cells[i]) }
                row.append("time", event.time)
                row.append("eid", event.eid)
                out.append(row)
            }
            return out
        }
    }

    // MARK: the state file: JSON lines, one per event, after a line with the last eid and cursor.

    private func line(_ event: Event, cursor: String?) -> String {
        var members: [(String, JSONValue)] = [
            ("eid", .number(String(event.eid))), ("time", .number(String(event.time))),
            ("row", .array(event.cells.map { $0.map { .string($0.lossyString) } ?? .null })),
        ]
        if let cursor { members.append(("cursor", .string(cursor))) }
        return JSONValue.object(members).serialized + "\n"
    }

    private func journal(_ s: inout State, _ event: Event, cursor: String?) {
        guard s.file >= 0 else { return }
        if s.journalLines > 2 * options.maxEvents + 1024 { compact(&s) }
        guard s.file >= 0 else { return }
        if !writeAll(s.file, line(event, cursor: cursor)) {
            failed(&s, "cannot write")
            return
        }
        s.journalLines += 1
    }

    /// Writes the state file anew (the header, then the buffered events) and appends to it from then on.
    private func compact(_ s: inout State) {
        guard let path else { return }
        if s.file >= 0 { Glibc.close(s.file) }
        s.file = -1
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return failed(&s, "cannot create") }
        var header: [(String, JSONValue)] = [("last_eid", .number(String(s.lastEID))), ("epoch", .string(s.epoch))]
        if let cursor = s.cursor { header.append(("cursor", .string(cursor))) }
        var text = JSONValue.object(header).serialized + "\n"
        for event in s.events[s.head...] { text += line(event, cursor: nil) }
        let written = writeAll(fd, text)
        Glibc.close(fd)
        guard written, rename(temporary, path) == 0 else { return failed(&s, "cannot write") }
        s.file = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        s.journalLines = s.events.count - s.head + 1
        if s.file < 0 { failed(&s, "cannot open") }
    }

    private func failed(_ s: inout State, _ what: String) {
        logger.warning("event table \(table): \(what) its state file \(path ?? ""): \(String(cString: strerror(errno))); events are kept in memory only")
        if s.file >= 0 { Glibc.close(s.file) }
        s.file = -1
    }

    private func writeAll(_ fd: Int32, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                done += n
            }
            return true
        }
    }

    /// The state file's events, last eid and epoch; a line cut short (a kill during a write) is skipped.
    static func load(
        _ path: String, columnCount: Int
    ) -> (lastEID: Int64, cursor: String?, epoch: String?, events: [Event], lines: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return (0, nil, nil, [], 0) }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        var (lastEID, cursor, epoch, events, lines): (Int64, String?, String?, [Event], Int) = (0, nil, nil, [], 0)
        for text in bytes.split(separator: UInt8(ascii: "\n")) {
            lines += 1
            guard let value = try? JSONValue.parse(String(decoding: text, as: UTF8.self)) else { continue }
            if let c = value["cursor"]?.text { cursor = c }
            if let e = value["epoch"]?.text, TableRoute.isValidEpoch(e) { epoch = e }
            if let last = value["last_eid"]?.int64 {
                lastEID = max(lastEID, last)
                continue
            }
            guard let eid = value["eid"]?.int64, let time = value["time"]?.int64, let row = value["row"]?.array,
                row.count == columnCount, eid > (events.last?.eid ?? 0)
            else { continue }
            let cells = row.map { cell -> ThriftString? in
                if case .string(let s) = cell { ThriftString(s) } else { nil }
            }
            events.append(Event(eid: eid, time: time, cells: cells))
            lastEID = max(lastEID, eid)
        }
        return (lastEID, cursor, epoch, events, lines)
    }
}
