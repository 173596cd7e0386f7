import Foundation
package import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `syslog_events`' columns between `time` (first) and `eid` (specs/linux/syslog_events.table).
enum SyslogEventsSchema {
    static let columns: [TableColumn] = [
        TableColumn("datetime", .text), TableColumn("host", .text), TableColumn("severity", .integer), TableColumn("facility", .text),
        TableColumn("tag", .text), TableColumn("message", .text),
    ]
}

/// One line of osquery's rsyslog template (`OsqueryCsvFormat`): six CSV fields, split as
/// osquery's `RsyslogCsvSeparator` splits them (quotes group, `""` is a quote, a trailing comma
/// is an empty last field), each trimmed, the tag without rsyslog's trailing colon.
package enum RsyslogCSV {
    package struct Line: Sendable, Equatable {
        package var datetime, host, severity, facility, tag, message: String
    }

    /// osquery's error texts.
    package static let moreFields = "Received more fields than expected"
    package static let fewerFields = "Received fewer fields than expected"

    package static func parse(_ bytes: ArraySlice<UInt8>) -> Result<Line, EventError> {
        // An empty line has no fields; otherwise every unquoted comma ends one, and what
        // follows the last (possibly nothing) is the last.
        guard !bytes.isEmpty else { return .failure(EventError(fewerFields)) }
        var fields: [String] = []
        fields.reserveCapacity(6)
        var token: [UInt8] = []
        var inQuote = false
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: ","), !inQuote {
                guard fields.count < 5 else { return .failure(EventError(moreFields)) }
                fields.append(Self.trimmed(token))
                token.removeAll(keepingCapacity: true)
            } else if b == UInt8(ascii: "\"") {
                if !inQuote {
                    inQuote = true
                } else if i + 1 < bytes.endIndex, bytes[i + 1] == UInt8(ascii: "\"") {
                    token.append(b)
                    i += 1
                } else {
                    inQuote = false
                }
            } else {
                token.append(b)
            }
            i += 1
        }
        fields.append(Self.trimmed(token))
        guard fields.count == 6 else { return .failure(EventError(fewerFields)) }
        var tag = fields[4]
        if tag.hasSuffix(":") { tag.removeLast() }
        return .success(Line(datetime: fields[0], host: fields[1], severity: fields[2], facility: fields[3], tag: tag, message: fields[5]))
    }

    private static func trimmed(_ bytes: [UInt8]) -> String {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0d) }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}

/// The syslog publisher and the `syslog_events` subscriber: rsyslog (or syslog-ng) writes CSV
/// lines into a named pipe this process creates (mode 0460, group `syslog` when there is one)
/// and reads. At most `--syslog_rate_limit` lines are taken per 200 ms (a flooding writer
/// then blocks on the full pipe instead of growing this process), lines longer than
/// `--syslog_max_line` are skipped; malformed, overlong and rate-limited lines are counted.
package final class SyslogPublisher: EventPublisher, @unchecked Sendable {  // mutable state under `counters` (the reader thread is its own)
    package let name = "syslog"
    package let subscriber: EventSubscriber
    private let flags: Flags

    private struct Counters {
        var events = 0
        var malformed = 0
        var overlong = 0
        var rateLimited = 0
    }
    private let counters = Mutex(Counters())
    private let reader = ReaderThread()

    /// osquery's: rsyslog writes, osquery reads.
    static let pipeMode: mode_t = 0o460
    static let window = 200

    package init(subscriber: EventSubscriber, flags: Flags) {
        self.subscriber = subscriber
        self.flags = flags
    }

    package static func makeSubscriber(hub: EventHub) -> EventSubscriber {
        var layout = EventSubscriber.Layout()
        layout.timeFirst = true
        layout.aliases = ["syslog"]
        layout.expiry = .syslogEventsExpiry
        layout.max = .syslogEventsMax
        return EventSubscriber(
            name: "syslog_events", publisher: "syslog", columns: SyslogEventsSchema.columns, database: hub.database, flags: hub.flags,
            isDaemon: hub.isDaemon, layout: layout)
    }

    package func isEnabled(_ flags: Flags) -> Bool { flags[.enableSyslog] }

    package var status: PublisherStatus {
        var s = PublisherStatus()
        s.active = reader.isRunning
        s.subscriptions = 1
        counters.withLock { c in
            s.events = c.events
            s.counters = [("malformed_lines", c.malformed), ("overlong_lines", c.overlong), ("rate_limited", c.rateLimited)]
        }
        return s
    }

    package func configure(_ configuration: EventsConfiguration) {
        subscriber.setSubscriptions(1)
    }

    /// Creates the pipe when it is missing, refuses anything but a FIFO (a symlink included),
    /// and takes an exclusive lock so a second osquery process cannot steal lines.
    package func start() throws(EventError) {
        guard !reader.isRunning else { return }
        let path = flags[.syslogPipePath]
        var st = stat()
        if lstat(path, &st) != 0 {
            if let problem = Self.createPipe(path) { StatusLog.warning("Problems encountered creating pipe: \(problem)") }
        }
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFIFO else { throw EventError("Not a FIFO file: \(path)") }
        // O_RDWR: the pipe never reads end-of-file while rsyslog reopens it.
        let fd = open(path, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw EventError("Error opening stream for reading: \(path)") }
        var opened = stat()
        guard fstat(fd, &opened) == 0, (opened.st_mode & S_IFMT) == S_IFIFO, opened.st_ino == st.st_ino, opened.st_dev == st.st_dev
        else {
            close(fd)
            throw EventError("Not a FIFO file: \(path)")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            throw EventError("Unable to acquire pipe lock: \(String(cString: strerror(e)))")
        }
        try reader.start(name: "syslog publisher", source: fd) { [self] stopFD in readLoop(fd: fd, stopFD: stopFD) }
        subscriber.setSubscriptions(1)
    }

    /// osquery's createPipe: mkfifo, chmod past the umask, group `syslog` when it exists.
    private static func createPipe(_ path: String) -> String? {
        if mkfifo(path, pipeMode) != 0 { return "Error in mkfifo: \(String(cString: strerror(errno)))" }
        if chmod(path, pipeMode) != 0 { return "Error in chmod: \(String(cString: strerror(errno)))" }
        guard let group = getgrnam("syslog") else { return nil }
        if chown(path, uid_t.max, group.pointee.gr_gid) != 0 {
            return "Error in chown to group syslog: \(String(cString: strerror(errno)))"
        }
        return nil
    }

    package func stop() { reader.stop() }

    private func readLoop(fd: Int32, stopFD: Int32) {
        let chunk = 64 * 1024
        var pending: [UInt8] = []
        pending.reserveCapacity(chunk)
        var discarding = false
        var windowStart = DispatchTime.now()
        var windowLines: UInt64 = 0
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
        while true {
            let limit = max(1, flags[.syslogRateLimit])
            let maxLine = Int(clamping: max(64, flags[.syslogMaxLine]))
            // Lines already read: as many as the window allows.
            var consumed = 0
            while windowLines < limit, let newline = pending[consumed...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[consumed..<newline]
                consumed = newline + 1
                if discarding {
                    discarding = false
                    continue
                }
                if line.count > maxLine {
                    report(\.overlong, "Syslog line longer than --syslog_max_line \(maxLine) skipped")
                    continue
                }
                if line.isEmpty { continue }
                windowLines += 1
                handle(line)
            }
            pending.removeFirst(consumed)
            if !discarding, pending.count > maxLine, !pending.contains(UInt8(ascii: "\n")) {
                report(\.overlong, "Syslog line longer than --syslog_max_line \(maxLine) skipped")
                pending.removeAll(keepingCapacity: true)
                discarding = true
            } else if discarding, !pending.contains(UInt8(ascii: "\n")) {
                pending.removeAll(keepingCapacity: true)
            }
            let elapsed = Int((DispatchTime.now().uptimeNanoseconds - windowStart.uptimeNanoseconds) / 1_000_000)
            var timeout: Int32 = -1
            if windowLines >= limit {
                if elapsed < Self.window {
                    // The window's share is taken: only the stop pipe is watched until it ends.
                    if windowLines == limit {
                        windowLines += 1
                        report(\.rateLimited, "Syslog lines arrive faster than --syslog_rate_limit \(limit) per 200 ms: ingestion is throttled")
                    }
                    fds[1].revents = 0
                    var stopOnly = [fds[1]]
                    if poll(&stopOnly, 1, Int32(Self.window - elapsed)) > 0 { return }
                    continue
                }
                windowStart = .now()
                windowLines = 0
                continue
            } else if elapsed >= Self.window {
                windowStart = .now()
                windowLines = 0
            }
            if pending.contains(UInt8(ascii: "\n")) { timeout = 0 }
            fds[0].revents = 0
            fds[1].revents = 0
            let rc = poll(&fds, 2, timeout)
            if rc < 0 {
                if errno == EINTR { continue }
                StatusLog.error("Could not read syslog pipe: \(String(cString: strerror(errno)))")
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            let old = pending.count
            pending.append(contentsOf: repeatElement(0, count: chunk))
            let n = pending.withUnsafeMutableBytes { read(fd, $0.baseAddress! + old, chunk) }
            pending.removeLast(chunk - max(0, n))
            if n < 0, errno != EAGAIN, errno != EINTR {
                StatusLog.error("Could not read syslog pipe: \(String(cString: strerror(errno)))")
                return
            }
        }
    }

    private func handle(_ line: ArraySlice<UInt8>) {
        switch RsyslogCSV.parse(line) {
        case .success(let l):
            counters.withLock { $0.events += 1 }
            subscriber.add([
                .text(l.datetime), .text(l.host), Int64(l.severity).map { .integer($0) } ?? .null, .text(l.facility), .text(l.tag),
                .text(l.message),
            ])
        case .failure(let e):
            report(\.malformed, "\(e.message) in line: \(String(decoding: line.prefix(256), as: UTF8.self))")
        }
    }

    /// Counts a trouble and logs the first and every 1 000th.
    private func report(_ counter: WritableKeyPath<Counters, Int>, _ message: String) {
        let count = counters.withLock { c -> Int in
            c[keyPath: counter] += 1
            return c[keyPath: counter]
        }
        if count == 1 || count % 1000 == 0 { StatusLog.warning(message + (count > 1 ? " (\(count) so far)" : "")) }
    }
}
