import Crypto
import Foundation
package import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// osquery's inotify masks and actions (`osquery/events/linux/inotify.cpp`).
enum INotifyMask {
    static let access: UInt32 = 0x1, modify: UInt32 = 0x2, attrib: UInt32 = 0x4, closeWrite: UInt32 = 0x8
    static let open: UInt32 = 0x20, movedFrom: UInt32 = 0x40, movedTo: UInt32 = 0x80, create: UInt32 = 0x100
    static let delete: UInt32 = 0x200, deleteSelf: UInt32 = 0x400, moveSelf: UInt32 = 0x800
    static let overflow: UInt32 = 0x4000, ignored: UInt32 = 0x8000, isDir: UInt32 = 0x4000_0000
    static let onlyDir: UInt32 = 0x0100_0000, dontFollow: UInt32 = 0x0200_0000, exclUnlink: UInt32 = 0x0400_0000

    static let fileDefault = movedTo | movedFrom | modify | delete | create | closeWrite | attrib
    static let fileAccess = open | access

    /// Actions in osquery's order (a `std::map` keyed by the bit): the first bit set names it.
    static let actions: [(UInt32, String)] = [
        (access, "ACCESSED"), (modify, "UPDATED"), (attrib, "ATTRIBUTES_MODIFIED"), (closeWrite, "UPDATED"),
        (open, "OPENED"), (movedFrom, "MOVED_FROM"), (movedTo, "MOVED_TO"), (create, "CREATED"), (delete, "DELETED"),
    ]

    static func action(_ mask: UInt32) -> String? {
        actions.first { mask & $0.0 != 0 }?.1
    }
}

/// `file_events`' columns before `time` and `eid` (specs/posix/file_events.table).
enum FileEventsSchema {
    static let columns: [TableColumn] = [
        TableColumn("target_path", .text), TableColumn("category", .text), TableColumn("action", .text),
        TableColumn("transaction_id", .bigint), TableColumn("inode", .bigint), TableColumn("uid", .bigint),
        TableColumn("gid", .bigint), TableColumn("mode", .text), TableColumn("size", .bigint), TableColumn("atime", .bigint),
        TableColumn("mtime", .bigint), TableColumn("ctime", .bigint), TableColumn("md5", .text, .collateNocase),
        TableColumn("sha1", .text, .collateNocase), TableColumn("sha256", .text, .collateNocase), TableColumn("hashed", .integer),
    ]
}

/// One file event on its way to a row.
struct FileEventItem: Sendable {
    var path: String
    var category: String
    var action: String
    var cookie: UInt32
    var hash: Bool
    /// Wanted a hash but the hash queue was full: logged with `hashed` -1.
    var hashSkipped = false
}

/// md5, sha1 and sha256 of a file in one read, never blocking on a FIFO or device (opened
/// O_NONBLOCK, only regular files read) and never reading more than `limit` bytes.
package enum FileHasher {
    package struct Digests: Sendable {
        package var md5: String
        package var sha1: String
        package var sha256: String
    }

    package enum Failure: Error { case unreadable(Int32), notRegular, tooBig }

    package static func hash(path: String, limit: UInt64) -> Result<Digests, Failure> {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(.unreadable(errno)) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.unreadable(errno)) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .failure(.notRegular) }
        guard UInt64(max(0, st.st_size)) <= limit else { return .failure(.tooBig) }
        var md5 = Insecure.MD5()
        var sha1 = Insecure.SHA1()
        var sha256 = SHA256()
        let chunk = 1 << 16
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var total: UInt64 = 0
        while true {
            let n = read(fd, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(.unreadable(errno))
            }
            if n == 0 { break }
            total += UInt64(n)
            // A file growing while it is hashed stops at the cap.
            if total > limit { return .failure(.tooBig) }
            let slice = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            md5.update(bufferPointer: slice)
            sha1.update(bufferPointer: slice)
            sha256.update(bufferPointer: slice)
        }
        return .success(Digests(md5: Hex.lowercase(md5.finalize()), sha1: Hex.lowercase(sha1.finalize()), sha256: Hex.lowercase(sha256.finalize())))
    }

}

/// The inotify publisher and the `file_events` subscriber (osquery keeps them apart; here the
/// one subscriber of inotify lives with it). A thread reads the inotify descriptor and keeps the
/// watches; a second thread decorates events (the `file` table's columns), hashes them and
/// writes the rows, taking them from a queue. The reader does no I/O but `read`: the kernel's
/// queue (`fs.inotify.max_queued_events`) is small, and a storm fills it in milliseconds while
/// the reader waits on a disk or the store. Past `--file_events_hash_queue_max` events waiting
/// for a hash, events are queued to be logged unhashed; past `--file_events_queue_max` waiting
/// in all, the reader pauses (so memory stays bounded) and the kernel reports the overflow.
package final class INotifyPublisher: EventPublisher, @unchecked Sendable {  // mutable state under `watches` / `queue`
    package let name = "inotify"
    package let subscriber: EventSubscriber
    private let flags: Flags
    private let registry: PluginRegistry?

    private struct Subscription {
        var category: String
        var mask: UInt32
        var leaf: String?
        var recursive: Bool
        var hash: Bool
    }

    private struct Watch {
        var path: String  // with a trailing '/'
        var subscriptions: [Subscription]
    }

    private struct Watches {
        var fd: Int32 = -1
        var byDescriptor: [Int32: Watch] = [:]
        var byPath: [String: Int32] = [:]
        var excludes: [String] = []
        var subscriptionCount = 0
        var limitLogged = false
    }
    private let watches = Mutex(Watches())

    private struct Counters {
        var events = 0
        var refreshes = 0
        var watchLimit = 0
        var unwatchable = 0
        var queueOverflows = 0
        var unreadable = 0
        var hashQueueOverflows = 0
        var refusedPatterns = 0
    }
    private let counters = Mutex(Counters())

    private struct Queue {
        var items: [FileEventItem] = []
        /// `items` before it are taken.
        var head = 0
        /// Of the waiting items and those the worker holds, those that want a hash.
        var hashing = 0
        var stopping = false
        /// The worker sleeps on `queued` (it is signalled once per batch, not per event).
        var workerWaiting = false
        /// The reader sleeps on `drained` until the queue is down to half `--file_events_queue_max`.
        var readerWaiting = false
    }
    private let queue = Mutex(Queue())
    private let queued = DispatchSemaphore(value: 0)
    private let drained = DispatchSemaphore(value: 0)

    /// The reader polls `stopFD`; a byte written to `stopWriteFD` ends it.
    private let threads = Mutex<(reader: Thread?, hasher: Thread?, stopFD: Int32, stopWriteFD: Int32, running: Bool)>((nil, nil, -1, -1, false))
    private let readerDone = DispatchSemaphore(value: 0)
    private let hasherDone = DispatchSemaphore(value: 0)
    private let configuration = Mutex(EventsConfiguration())
    /// Other subscribers of inotify's events (yara_events): each gets every event file_events
    /// gets, on the reader thread, and must hand it off at once.
    private let listeners = Mutex<[@Sendable (_ path: String, _ category: String, _ action: String) -> Void]>([])

    package func addListener(_ listener: @escaping @Sendable (_ path: String, _ category: String, _ action: String) -> Void) {
        listeners.withLock { $0.append(listener) }
    }

    /// Tests: while set, the reader leaves events in the kernel's queue (to make it overflow).
    private let readingPaused = Mutex(false)

    package func pauseReading(_ paused: Bool) { readingPaused.withLock { $0 = paused } }

    package init(subscriber: EventSubscriber, flags: Flags, registry: PluginRegistry?) {
        self.subscriber = subscriber
        self.flags = flags
        self.registry = registry
    }

    /// The `file_events` subscriber for `hub`.
    package static func makeSubscriber(hub: EventHub) -> EventSubscriber {
        EventSubscriber(
            name: "file_events", publisher: "inotify", columns: FileEventsSchema.columns, database: hub.database, flags: hub.flags,
            isDaemon: hub.isDaemon)
    }

    package func isEnabled(_ flags: Flags) -> Bool { flags[.enableFileEvents] }

    package var status: PublisherStatus {
        var s = PublisherStatus()
        let (subscriptions, running) = (watches.withLock { $0.subscriptionCount }, threads.withLock { $0.running })
        s.subscriptions = subscriptions
        s.active = running
        counters.withLock { c in
            s.events = c.events
            s.refreshes = c.refreshes
            s.counters = [
                ("watch_limit", c.watchLimit), ("unwatchable_paths", c.unwatchable), ("queue_overflows", c.queueOverflows),
                ("unreadable_paths", c.unreadable), ("hash_queue_overflows", c.hashQueueOverflows),
                ("refused_patterns", c.refusedPatterns),
            ]
        }
        return s
    }

    package func start() throws(EventError) {
        guard !threads.withLock({ $0.running }) else { return }
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw EventError("Could not initialize inotify: \(String(cString: strerror(errno)))") }
        var stopPipe: [Int32] = [-1, -1]
        // Left over from a previous run's stop.
        while drained.wait(timeout: .now()) == .success {}
        guard pipe(&stopPipe) == 0 else {
            close(fd)
            throw EventError("Could not create a pipe: \(String(cString: strerror(errno)))")
        }
        for end in stopPipe {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
        }
        let stopFD = stopPipe[0]
        watches.withLock { $0.fd = fd }
        queue.withLock { $0.stopping = false }
        let reader = Thread { [self] in
            readLoop(fd: fd, stopFD: stopFD)
            readerDone.signal()
        }
        reader.name = "inotify publisher"
        let hasher = Thread { [self] in
            hashLoop()
            hasherDone.signal()
        }
        hasher.name = "file_events hasher"
        threads.withLock { $0 = (reader, hasher, stopFD, stopPipe[1], true) }
        reader.start()
        hasher.start()
        configure(configuration.withLock { $0 })
    }

    package func stop() {
        let (running, stopFD, stopWriteFD) = threads.withLock { t in
            defer { t.running = false }
            return (t.running, t.stopFD, t.stopWriteFD)
        }
        guard running else { return }
        var one: UInt8 = 1
        _ = write(stopWriteFD, &one, 1)
        // A reader paused on a full queue wakes, sees the stop pipe and ends.
        drained.signal()
        readerDone.wait()
        close(stopWriteFD)
        queue.withLock { $0.stopping = true }
        queued.signal()
        hasherDone.wait()
        close(stopFD)
        let fd = watches.withLock { w -> Int32 in
            defer { w = Watches() }
            return w.fd
        }
        if fd >= 0 { close(fd) }
        threads.withLock { $0 = (nil, nil, -1, -1, false) }
    }

    /// Replaces every watch with the config's (run again on each config change).
    package func configure(_ config: EventsConfiguration) {
        configuration.withLock { $0 = config }
        guard threads.withLock({ $0.running }) else { return }
        var patterns = config.filePaths
        // file_paths_query: each query's `path` column adds patterns to its category.
        if !config.filePathsQuery.isEmpty, let registry {
            if let database = try? Database(registry: registry, flags: flags) {
                for (category, queries) in config.filePathsQuery.sorted(by: { $0.key < $1.key }) {
                    for sql in queries {
                        database.refreshTables()
                        do {
                            let result = try database.execute(sql)
                            guard let column = result.columns.firstIndex(of: "path") else { continue }
                            for row in result.rows {
                                if let p = row[column].osqueryString, !p.isEmpty { patterns[category, default: []].append(p) }
                            }
                        } catch {
                            StatusLog.warning("file_paths_query for category \(category) failed: \(error.message)")
                        }
                    }
                }
            }
        }
        let accesses = Set(config.fileAccesses)
        // exclude_paths apply to categories that exist in file_paths.
        let excludes = config.excludePaths.filter { patterns[$0.key] != nil }.flatMap(\.value).filter { !$0.isEmpty }
        var resolved: [ResolvedPattern] = []
        for (category, list) in patterns.sorted(by: { $0.key < $1.key }) {
            for pattern in list {
                switch FilePatterns.resolve(pattern, category: category) {
                case .success(let r): resolved += r
                case .failure(let e):
                    counters.withLock { $0.refusedPatterns += 1 }
                    StatusLog.warning(e.message)
                }
            }
        }
        watches.withLock { w in
            for wd in w.byDescriptor.keys { inotify_rm_watch(w.fd, wd) }
            w.byDescriptor = [:]
            w.byPath = [:]
            w.excludes = excludes
            w.subscriptionCount = resolved.count
            w.limitLogged = false
            for r in resolved {
                let access = accesses.contains(r.category)
                let sub = Subscription(
                    category: r.category, mask: INotifyMask.fileDefault | (access ? INotifyMask.fileAccess : 0), leaf: r.leaf,
                    recursive: r.recursive, hash: !access)
                for dir in r.directories { addWatch(&w, dir, sub) }
            }
        }
        subscriber.setSubscriptions(resolved.count)
        counters.withLock { $0.refreshes += 1 }
    }

    /// Watches `dir` (and, for a recursive subscription, every directory below it, never through
    /// a symlink, each once). Called with the watches held.
    private func addWatch(_ w: inout Watches, _ dir: String, _ sub: Subscription) {
        var pending = [dir]
        var seen = Set<String>()
        while let path = pending.popLast() {
            guard seen.insert(path).inserted else { continue }
            var mask = sub.mask
            for other in w.byPath[path].flatMap({ w.byDescriptor[$0]?.subscriptions }) ?? [] { mask |= other.mask }
            let cap = flags[.fileEventsMaxWatches]
            let capped = cap > 0 && w.byPath[path] == nil && UInt64(w.byDescriptor.count) >= cap
            let wd = capped ? -1 : inotify_add_watch(w.fd, path, mask | INotifyMask.onlyDir)
            if wd < 0 {
                let e = capped ? ENOSPC : errno
                if e == ENOSPC {
                    counters.withLock { $0.watchLimit += 1 }
                    if !w.limitLogged {
                        w.limitLogged = true
                        let limit = capped ? "--file_events_max_watches \(cap)" : "fs.inotify.max_user_watches"
                        StatusLog.warning("inotify watch limit reached (\(limit)): could not watch \(path); file events there are not seen")
                    }
                    return
                }
                counters.withLock { $0.unwatchable += 1 }
                StatusLog.warning("Could not add inotify watch on: \(path): \(String(cString: strerror(e)))")
                continue
            }
            if w.byDescriptor[wd] == nil {
                w.byDescriptor[wd] = Watch(path: path, subscriptions: [])
            }
            w.byDescriptor[wd]!.path = path
            if !w.byDescriptor[wd]!.subscriptions.contains(where: {
                $0.category == sub.category && $0.leaf == sub.leaf && $0.recursive == sub.recursive && $0.mask == sub.mask
            }) {
                w.byDescriptor[wd]!.subscriptions.append(sub)
            }
            w.byPath[path] = wd
            guard sub.recursive else { continue }
            guard let d = opendir(path) else {
                counters.withLock { $0.unreadable += 1 }
                StatusLog.warning("Could not list directory for file events: \(path): \(String(cString: strerror(errno)))")
                continue
            }
            while let entry = readdir(d) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                var isDir = entry.pointee.d_type == UInt8(DT_DIR)
                if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
                    var st = stat()
                    isDir = lstat(path + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
                }
                // Symlinks are never followed: a link loop under %% cannot recurse.
                if isDir { pending.append(path + name + "/") }
            }
            closedir(d)
        }
    }

    private func readLoop(fd: Int32, stopFD: Int32) {
        let size = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
        // One read's events: kept here and handed to the queue in one step.
        var batch: [FileEventItem] = []
        batch.reserveCapacity(size / 16)
        var overflows = 0
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let rc = poll(&fds, 2, -1)
            if rc < 0 {
                if errno == EINTR { continue }
                StatusLog.error("inotify poll failed: \(String(cString: strerror(errno)))")
                return
            }
            if fds[1].revents != 0 { return }
            if readingPaused.withLock({ $0 }) {
                usleep(10_000)
                continue
            }
            let n = read(fd, buffer, size)
            if n <= 0 {
                if n < 0, errno == EAGAIN || errno == EINTR { continue }
                StatusLog.warning("Could not read inotify handle")
                return
            }
            batch.removeAll(keepingCapacity: true)
            overflows = 0
            watches.withLock { w in
                var offset = 0
                while offset + 16 <= n {
                    let base = buffer + offset
                    let wd = base.loadUnaligned(fromByteOffset: 0, as: Int32.self)
                    let mask = base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
                    let cookie = base.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
                    let len = Int(base.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
                    if mask & INotifyMask.overflow != 0 {
                        overflows += 1
                    } else {
                        let bytes = UnsafeRawBufferPointer(start: base + 16, count: max(0, min(len, n - offset - 16)))
                        handle(&w, wd: wd, mask: mask, cookie: cookie, name: bytes.prefix { $0 != 0 }, into: &batch)
                    }
                    offset += 16 + len
                }
            }
            if overflows > 0 {
                counters.withLock { $0.queueOverflows += overflows }
                StatusLog.warning("inotify event queue overflowed (fs.inotify.max_queued_events): file events were lost")
            }
            guard !batch.isEmpty else { continue }
            let others = listeners.withLock { $0 }
            if !others.isEmpty {
                for item in batch {
                    for listener in others { listener(item.path, item.category, item.action) }
                }
            }
            enqueue(batch)
            waitForRoom(stopFD: stopFD)
        }
    }

    /// Turns one inotify event into items (one per matching subscription), the watches held.
    private func handle(_ w: inout Watches, wd: Int32, mask: UInt32, cookie: UInt32, name: Slice<UnsafeRawBufferPointer>, into items: inout [FileEventItem]) {
        guard let watch = w.byDescriptor[wd] else { return }
        if mask & INotifyMask.ignored != 0 {
            w.byDescriptor[wd] = nil
            if w.byPath[watch.path] == wd { w.byPath[watch.path] = nil }
            return
        }
        if mask & (INotifyMask.deleteSelf | INotifyMask.moveSelf) != 0 {
            // The directory went away or moved: its path no longer names it.
            if mask & INotifyMask.moveSelf != 0 { inotify_rm_watch(w.fd, wd) }
            return
        }
        guard let action = INotifyMask.action(mask) else { return }
        var path = watch.path
        path.append(String(decoding: name, as: UTF8.self))
        for sub in watch.subscriptions {
            guard mask & sub.mask != 0 else { continue }
            if let leaf = sub.leaf, !FilePatterns.matches(leaf, String(decoding: name, as: UTF8.self)) { continue }
            // inotify does not recurse: a new directory under %% gets its own watches.
            if sub.recursive, action == "CREATED" || action == "MOVED_TO", mask & INotifyMask.isDir != 0 {
                addWatch(&w, path + "/", sub)
            }
            if !w.excludes.isEmpty,
                FilePatterns.excluded(String(watch.path.dropLast()), by: w.excludes) || FilePatterns.excluded(path, by: w.excludes)
            {
                continue
            }
            items.append(
                FileEventItem(
                    path: path, category: sub.category, action: action, cookie: cookie,
                    hash: sub.hash && (action == "CREATED" || action == "UPDATED")))
        }
    }

    /// Queues one read's events for the worker. Past `--file_events_hash_queue_max` events
    /// waiting for a hash, an event is queued to be logged unhashed (and counted).
    private func enqueue(_ batch: [FileEventItem]) {
        let cap = Int(clamping: max(1, flags[.fileEventsHashQueueMax]))
        let (skipped, wake) = queue.withLock { q -> (Int, Bool) in
            var skipped = 0
            if q.head == q.items.count {
                // A storm's array is given back once it is drained.
                q.items.removeAll(keepingCapacity: q.items.capacity <= 8192)
                q.head = 0
            } else if q.head > 4096, q.head * 2 > q.items.count {
                q.items.removeFirst(q.head)
                q.head = 0
            }
            for var item in batch {
                if item.hash {
                    if q.hashing >= cap {
                        item.hash = false
                        item.hashSkipped = true
                        skipped += 1
                    } else {
                        q.hashing += 1
                    }
                }
                q.items.append(item)
            }
            defer { q.workerWaiting = false }
            return (skipped, q.workerWaiting)
        }
        counters.withLock { $0.events += batch.count }
        if wake { queued.signal() }
        guard skipped > 0 else { return }
        let warn = counters.withLock { c -> Bool in
            let before = c.hashQueueOverflows
            c.hashQueueOverflows += skipped
            return before == 0 || before / 10000 != c.hashQueueOverflows / 10000
        }
        if warn {
            StatusLog.warning("file_events hash queue is full (--file_events_hash_queue_max \(cap)): events are logged without hashes")
        }
    }

    /// Past `--file_events_queue_max` events waiting, the reader sleeps until the worker has
    /// written half of them (or the publisher stops): memory stays bounded, and the events the
    /// kernel then drops are its counted queue overflows.
    private func waitForRoom(stopFD: Int32) {
        let cap = Int(clamping: max(1, flags[.fileEventsQueueMax]))
        while true {
            let full = queue.withLock { q -> Bool in
                q.readerWaiting = q.items.count - q.head >= cap
                return q.readerWaiting
            }
            guard full else { return }
            drained.wait()
            var stop = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
            if poll(&stop, 1, 0) > 0 { return }
        }
    }

    private func hashLoop() {
        // The events taken at once: the queue's lock is held once per batch, not per event.
        let batchSize = 256
        var work: [FileEventItem] = []
        work.reserveCapacity(batchSize)
        while true {
            let resume = Int(clamping: max(1, flags[.fileEventsQueueMax])) / 2
            let (stopping, wakeReader) = queue.withLock { q -> (Bool, Bool) in
                let waiting = q.items.count - q.head
                guard waiting > 0 else {
                    q.workerWaiting = !q.stopping
                    return (q.stopping, false)
                }
                let end = q.head + min(waiting, batchSize)
                work.append(contentsOf: q.items[q.head..<end])
                q.head = end
                let wake = q.readerWaiting && q.items.count - q.head <= resume
                if wake { q.readerWaiting = false }
                return (false, wake)
            }
            if wakeReader { drained.signal() }
            if work.isEmpty {
                if stopping { return }
                queued.wait()
                continue
            }
            for item in work {
                subscriber.add(row(item, hashFailed: item.hashSkipped))
                if item.hash { queue.withLock { $0.hashing -= 1 } }
            }
            work.removeAll(keepingCapacity: true)
        }
    }

    /// The row: osquery's `decorateFileEvent` (the `file` table's columns, then the digests).
    private func row(_ item: FileEventItem, hashFailed: Bool) -> [SQLValue] {
        var values: [SQLValue] = [.text(item.path), .text(item.category), .text(item.action), .integer(Int64(item.cookie))]
        var st = stat()
        if lstat(item.path, &st) == 0 {
            values += [
                .integer(Int64(st.st_ino)), .integer(Int64(st.st_uid)), .integer(Int64(st.st_gid)),
                .text(Self.octalMode(st.st_mode)), .integer(Int64(st.st_size)), .integer(Int64(st.st_atim.tv_sec)),
                .integer(Int64(st.st_mtim.tv_sec)), .integer(Int64(st.st_ctim.tv_sec)),
            ]
        } else {
            values += Array(repeating: .null, count: 8)
        }
        if hashFailed {
            values += ["", "", "", -1]
        } else if item.hash {
            switch FileHasher.hash(path: item.path, limit: flags[.readMax]) {
            case .success(let d): values += [.text(d.md5), .text(d.sha1), .text(d.sha256), 1]
            case .failure(let f):
                if case .unreadable(let e) = f, e != ENOENT {
                    counters.withLock { $0.unreadable += 1 }
                    StatusLog.warning("Cannot hash \(item.path) for file_events: \(String(cString: strerror(e)))")
                }
                values += ["", "", "", -1]
            }
        } else {
            // Not attempted: osquery leaves the digests out of the row.
            values += [.null, .null, .null, 0]
        }
        return values
    }

    static func octalMode(_ mode: mode_t) -> String {
        let s = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}
