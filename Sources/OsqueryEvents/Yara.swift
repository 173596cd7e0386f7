internal import CYara
import Foundation
package import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Compiled YARA rules; destroyed with the last reference (a scan holds one).
package final class YaraRules: @unchecked Sendable {  // libyara's rules are safe to scan from several threads
    let handle: OpaquePointer

    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit { yr_rules_destroy(UnsafeMutablePointer(handle)) }
}

/// What one scan found, in osquery's forms: rule names, `$string:hexoffset` pairs and tags,
/// each comma-joined, and the number of matching rules.
package struct YaraMatches: Sendable, Equatable {
    package var matches = ""
    package var count = 0
    package var strings = ""
    package var tags = ""

    mutating func append(_ other: YaraMatches) {
        func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : b.isEmpty ? a : a + "," + b }
        matches = join(matches, other.matches)
        strings = join(strings, other.strings)
        tags = join(tags, other.tags)
        count += other.count
    }
}

/// libyara, initialized once for the process, with rule files read safely: only regular files,
/// at most `read_max` bytes, never a compiled rule file (libyara does not check those, so a
/// crafted one can crash the loader), errors as YARA reports them with file and line.
package enum Yara {
    private static let initialized: Int32 = yr_initialize()

    /// The clear error of a failed compile or scan.
    package struct Failure: Error, Sendable, Equatable {
        package var message: String
    }

    private final class Messages {
        var errors: [String] = []
    }

    /// The `strings` column lists at most this many matches of a rule.
    static let maxStringsPerRule = 1000

    /// Relative rule paths are under osquery's YARA home.
    static let home = "/etc/osquery/yara/"

    /// Compiles rule files (one namespace, as osquery compiles a signature group).
    package static func compile(files: [String], maxBytes: UInt64) -> Result<YaraRules, Failure> {
        compileRules { compiler, messages in
            for file in files {
                let path = file.hasPrefix("/") ? file : home + file
                let fd: Int32
                switch openRegular(path, maxBytes: maxBytes) {
                case .success(let opened): fd = opened
                case .failure(let e): return Failure(message: "YARA rule file \(path): \(e.message)")
                }
                defer { close(fd) }
                var magic = [UInt8](repeating: 0, count: 4)
                if pread(fd, &magic, 4, 0) == 4, magic == Array("YARA".utf8) {
                    return Failure(message: "YARA rule file \(path): compiled rules are not loaded; give the rule source")
                }
                if yr_compiler_add_fd(compiler, fd, nil, path) > 0 {
                    return Failure(message: messages.errors.first ?? "YARA rule file \(path): Compilation errors")
                }
            }
            return nil
        }
    }

    /// Compiles rules given as text (the yara table's `sigrule`).
    package static func compile(source: String) -> Result<YaraRules, Failure> {
        compileRules { compiler, messages in
            let errors = yr_compiler_add_string(compiler, source, nil)
            return errors > 0 ? Failure(message: messages.errors.first ?? "Compilation error \(errors)") : nil
        }
    }

    /// A compiler whose errors `add` finds in `messages` (per rule file, or "YARA rule string"
    /// for text); the rules once `add` has given it every source without a failure.
    private static func compileRules(_ add: (UnsafeMutablePointer<YR_COMPILER>, Messages) -> Failure?) -> Result<YaraRules, Failure> {
        guard initialized == ERROR_SUCCESS else { return .failure(Failure(message: "Failed to initialize YARA \(initialized)")) }
        var compiler: UnsafeMutablePointer<YR_COMPILER>?
        guard yr_compiler_create(&compiler) == ERROR_SUCCESS, let compiler else {
            return .failure(Failure(message: "Could not create compiler"))
        }
        defer { yr_compiler_destroy(compiler) }
        let messages = Messages()
        yr_compiler_set_callback(
            compiler,
            { level, file, line, _, message, context in
                guard let context, level == YARA_ERROR_LEVEL_ERROR else { return }
                let messages = Unmanaged<Messages>.fromOpaque(context).takeUnretainedValue()
                let where_ = file.map { "YARA rule file \(String(cString: $0))" } ?? "YARA rule string"
                messages.errors.append("\(where_)(\(line)): error: \(message.map { String(cString: $0) } ?? "")")
            }, Unmanaged.passUnretained(messages).toOpaque())
        if let failure = add(compiler, messages) { return .failure(failure) }
        var rules: UnsafeMutablePointer<YR_RULES>?
        guard yr_compiler_get_rules(compiler, &rules) == ERROR_SUCCESS, let rules else {
            return .failure(Failure(message: "Insufficient memory to get YARA rules"))
        }
        return .success(YaraRules(OpaquePointer(rules)))
    }

    /// Opens a regular file without blocking on a FIFO or device, within `maxBytes`.
    static func openRegular(_ path: String, maxBytes: UInt64) -> Result<Int32, Failure> {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(Failure(message: String(cString: strerror(errno)))) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return .failure(Failure(message: "not a regular file"))
        }
        guard UInt64(max(0, st.st_size)) <= maxBytes else {
            close(fd)
            return .failure(Failure(message: "larger than --read_max (\(maxBytes) bytes)"))
        }
        return .success(fd)
    }

    private final class ScanState {
        var found = YaraMatches()
        let strings: Bool
        init(strings: Bool) { self.strings = strings }
    }

    /// Scans a regular file (at most `maxBytes`, at most `timeout` seconds, 0 for none) in
    /// fast mode, as osquery does; `strings` false leaves the `strings` column empty.
    package static func scan(_ rules: YaraRules, path: String, maxBytes: UInt64, timeout: UInt64, strings: Bool) -> Result<YaraMatches, Failure> {
        let fd: Int32
        switch openRegular(path, maxBytes: maxBytes) {
        case .success(let opened): fd = opened
        case .failure(let e): return .failure(e)
        }
        defer { close(fd) }
        return run(rules, timeout: timeout, strings: strings, failed: "YARA error: ") { yr_rules_scan_fd($0, fd, SCAN_FLAGS_FAST_MODE, matched, $1, $2) }
    }

    /// One scan in fast mode, `matched` collecting into a state of its own: its matches, a
    /// timeout naming the flag, or `failed` followed by libyara's code.
    private static func run(
        _ rules: YaraRules, timeout: UInt64, strings: Bool, failed: String,
        _ scan: (UnsafeMutablePointer<YR_RULES>, UnsafeMutableRawPointer, Int32) -> Int32
    ) -> Result<YaraMatches, Failure> {
        let state = ScanState(strings: strings)
        let result = scan(UnsafeMutablePointer(rules.handle), Unmanaged.passUnretained(state).toOpaque(), Int32(clamping: timeout))
        switch result {
        case ERROR_SUCCESS: return .success(state.found)
        case ERROR_SCAN_TIMEOUT: return .failure(Failure(message: "YARA scan timed out (--yara_scan_timeout \(timeout))"))
        default: return .failure(Failure(message: failed + "\(result)"))
        }
    }

    /// libyara's scan callback: each matching rule appended to the scan's `ScanState`.
    private static let matched: YR_CALLBACK_FUNC = { scanContext, message, data, context in
        guard message == CALLBACK_MSG_RULE_MATCHING, let data, let context else { return CALLBACK_CONTINUE }
        let state = Unmanaged<ScanState>.fromOpaque(context).takeUnretainedValue()
        let rule = data.assumingMemoryBound(to: YR_RULE.self)
        var one = YaraMatches(matches: String(cString: osq_yr_rule_identifier(rule)), count: 1)
        var strings: [String] = []
        var tags: [String] = []
        if state.strings, let scanContext {
            withUnsafeMutablePointer(to: &strings) { list in
                osq_yr_rule_matches(
                    scanContext, rule,
                    { identifier, offset, out in
                        guard let identifier, let out else { return }
                        let list = out.assumingMemoryBound(to: [String].self)
                        // A file that matches a string a million times (libyara's cap)
                        // would make a row of megabytes.
                        guard list.pointee.count < Yara.maxStringsPerRule else { return }
                        list.pointee.append(
                            String(cString: identifier) + ":" + String(UInt64(bitPattern: offset), radix: 16))
                    }, list)
            }
        }
        withUnsafeMutablePointer(to: &tags) { list in
            osq_yr_rule_tags(
                rule,
                { tag, out in
                    guard let tag, let out else { return }
                    out.assumingMemoryBound(to: [String].self).pointee.append(String(cString: tag))
                }, list)
        }
        one.strings = strings.joined(separator: ",")
        one.tags = tags.joined(separator: ",")
        state.found.append(one)
        return CALLBACK_CONTINUE
    }

    /// Scans the memory of process `pid` (libyara reads /proc/PID/maps and /proc/PID/mem) in
    /// fast mode, as osquery does, at most `timeout` seconds (0 for none). A process that is
    /// gone, a kernel thread or one not readable fails as libyara reports it.
    package static func scan(_ rules: YaraRules, pid: Int32, timeout: UInt64, strings: Bool) -> Result<YaraMatches, Failure> {
        guard initialized == ERROR_SUCCESS else { return .failure(Failure(message: "Failed to initialize YARA \(initialized)")) }
        return run(rules, timeout: timeout, strings: strings, failed: "YARA process scan failed with error code: ") {
            yr_rules_scan_proc($0, pid, SCAN_FLAGS_FAST_MODE, matched, $1, $2)
        }
    }
}

/// The config's signature groups, compiled once per config (a group whose files fail to
/// compile is left out with a status line), and rule files named by `sigfile`, compiled once
/// per file version.
package final class YaraRuleCache: Sendable {
    private let flags: Flags
    private let groups = Mutex<(signatures: [String: [String]], compiled: [String: YaraRules])>(([:], [:]))
    private struct FileKey: Hashable {
        var path: String
        var device: UInt64, inode: UInt64, size: Int64, mtime: Int, mtimeNanoseconds: Int
    }
    private let files = Mutex<[FileKey: YaraRules]>([:])
    private let errors = Mutex(0)

    package init(flags: Flags) { self.flags = flags }

    /// Compile failures so far (yara_events shows them as a counter).
    package var compileErrors: Int { errors.withLock { $0 } }

    /// Compiles the groups of a new config; an unchanged config keeps its rules.
    package func configure(signatures: [String: [String]]) {
        guard groups.withLock({ $0.signatures != signatures }) else { return }
        var compiled: [String: YaraRules] = [:]
        for (group, files) in signatures.sorted(by: { $0.key < $1.key }) {
            switch Yara.compile(files: files, maxBytes: flags[.readMax]) {
            case .success(let rules): compiled[group] = rules
            case .failure(let e):
                errors.withLock { $0 += 1 }
                StatusLog.warning("YARA signature group \(group) not compiled: \(e.message)")
            }
        }
        groups.withLock { $0 = (signatures, compiled) }
    }

    package func group(_ name: String) -> YaraRules? { groups.withLock { $0.compiled[name] } }

    package func file(_ path: String) -> Result<YaraRules, Yara.Failure> {
        let full = path.hasPrefix("/") ? path : Yara.home + path
        var st = stat()
        guard stat(full, &st) == 0 else { return .failure(Yara.Failure(message: "YARA rule file \(full): \(String(cString: strerror(errno)))")) }
        let key = FileKey(
            path: full, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size), mtime: st.st_mtim.tv_sec,
            mtimeNanoseconds: st.st_mtim.tv_nsec)
        if let rules = files.withLock({ $0[key] }) { return .success(rules) }
        let result = Yara.compile(files: [full], maxBytes: flags[.readMax])
        if case .success(let rules) = result {
            files.withLock { cache in
                // A bounded cache: old versions of files go first.
                if cache.count >= 64 { cache.removeAll() }
                cache = cache.filter { $0.key.path != full }
                cache[key] = rules
            }
        } else {
            errors.withLock { $0 += 1 }
        }
        return result
    }
}

/// `yara_events`' columns before `time` and `eid` (specs/yara_events.table; Linux has no
/// `transaction_id`).
enum YaraEventsSchema {
    static let columns: [TableColumn] = [
        TableColumn("target_path", .text), TableColumn("category", .text), TableColumn("action", .text), TableColumn("matches", .text),
        TableColumn("count", .integer), TableColumn("strings", .text), TableColumn("tags", .text),
    ]
}

/// yara_events: files that inotify reports created, updated or moved in under a category of
/// the config's `yara.file_paths` are scanned with that category's signature groups, on a
/// thread of their own, from a bounded queue (a file already waiting is not queued twice);
/// a file with matches gives a row, as osquery.
package final class YaraEventsScanner: EventPublisher, @unchecked Sendable {  // mutable state under `queue` / `counters`
    package let name = "yara"
    package let subscriber: EventSubscriber
    package let cache: YaraRuleCache
    private let flags: Flags
    private let filePaths = Mutex<[String: [String]]>([:])

    private struct Item: Hashable {
        var path: String
        var category: String
        var action: String
    }
    private struct Queue {
        var items: [Item] = []
        var waiting = Set<Item>()
        var stopping = false
        var running = false
    }
    private let queue = Mutex(Queue())
    private let queued = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)

    private struct Counters {
        var scans = 0
        var queueOverflows = 0
        var scanErrors = 0
        var timeouts = 0
    }
    private let counters = Mutex(Counters())

    package init(subscriber: EventSubscriber, cache: YaraRuleCache, flags: Flags) {
        self.subscriber = subscriber
        self.cache = cache
        self.flags = flags
    }

    package static func makeSubscriber(hub: EventHub) -> EventSubscriber {
        var layout = EventSubscriber.Layout()
        layout.timeOptions = []
        return EventSubscriber(
            name: "yara_events", publisher: "inotify", columns: YaraEventsSchema.columns, database: hub.database, flags: hub.flags,
            isDaemon: hub.isDaemon, layout: layout)
    }

    /// As osquery: yara_events rides on the inotify publisher.
    package func isEnabled(_ flags: Flags) -> Bool { flags[.enableFileEvents] }

    package var status: PublisherStatus {
        var s = PublisherStatus()
        s.active = queue.withLock { $0.running }
        counters.withLock { c in
            s.events = c.scans
            s.counters = [
                ("scan_queue_overflows", c.queueOverflows), ("scan_errors", c.scanErrors), ("scan_timeouts", c.timeouts),
                ("compile_errors", cache.compileErrors),
            ]
        }
        return s
    }

    package func configure(_ configuration: EventsConfiguration) {
        cache.configure(signatures: configuration.yaraSignatures)
        // Only categories that file_paths has (osquery logs and skips the others).
        let usable = configuration.yaraFilePaths.filter { configuration.filePaths[$0.key] != nil }
        filePaths.withLock { $0 = usable }
        subscriber.setSubscriptions(usable.reduce(0) { $0 + (configuration.filePaths[$1.key]?.count ?? 0) })
    }

    package func start() throws(EventError) {
        let started = queue.withLock { q -> Bool in
            guard !q.running else { return false }
            q.running = true
            q.stopping = false
            return true
        }
        guard started else { return }
        let thread = Thread { [self] in
            scanLoop()
            done.signal()
        }
        thread.name = "yara_events scanner"
        thread.start()
    }

    package func stop() {
        let running = queue.withLock { q -> Bool in
            defer { q.stopping = true }
            return q.running
        }
        guard running else { return }
        queued.signal()
        done.wait()
        queue.withLock { $0 = Queue() }
    }

    /// inotify's listener: takes the event if its category is yara's; never blocks.
    package func fileChanged(path: String, category: String, action: String) {
        guard action == "CREATED" || action == "UPDATED" || action == "MOVED_TO" else { return }
        guard filePaths.withLock({ $0[category] != nil }) else { return }
        let item = Item(path: path, category: category, action: action)
        let cap = Int(clamping: max(1, flags[.yaraEventsQueueMax]))
        let outcome = queue.withLock { q -> Bool? in
            guard q.running, !q.stopping else { return nil }
            if q.waiting.contains(item) { return nil }
            guard q.items.count < cap else { return false }
            q.items.append(item)
            q.waiting.insert(item)
            return true
        }
        switch outcome {
        case true?: queued.signal()
        case false?:
            let count = counters.withLock { c -> Int in
                c.queueOverflows += 1
                return c.queueOverflows
            }
            if count == 1 || count % 10000 == 0 {
                StatusLog.warning("yara_events scan queue is full (--yara_events_queue_max \(cap)): \(path) was not scanned")
            }
        case nil: break
        }
    }

    private func scanLoop() {
        while true {
            queued.wait()
            let next = queue.withLock { q -> Item?? in
                if q.stopping { return .none }
                guard !q.items.isEmpty else { return .some(nil) }
                let item = q.items.removeFirst()
                q.waiting.remove(item)
                return .some(item)
            }
            switch next {
            case .none: return
            case .some(nil): continue
            case .some(let item?): scan(item)
            }
        }
    }

    private func scan(_ item: Item) {
        let groups = filePaths.withLock { $0[item.category] } ?? []
        var found = YaraMatches()
        for group in groups {
            guard let rules = cache.group(group) else { continue }
            switch Yara.scan(rules, path: item.path, maxBytes: flags[.readMax], timeout: flags[.yaraScanTimeout], strings: true) {
            case .success(let m): found.append(m)
            case .failure(let e):
                // A file gone before its scan is not a trouble.
                if access(item.path, F_OK) != 0 { return }
                let timedOut = e.message.hasPrefix("YARA scan timed out")
                counters.withLock { c in
                    if timedOut { c.timeouts += 1 } else { c.scanErrors += 1 }
                }
                StatusLog.warning("yara_events cannot scan \(item.path): \(e.message)")
                return
            }
        }
        counters.withLock { $0.scans += 1 }
        guard !found.matches.isEmpty else { return }
        subscriber.add([
            .text(item.path), .text(item.category), .text(item.action), .text(found.matches), .integer(Int64(found.count)),
            .text(found.strings), .text(found.tags),
        ])
    }
}
