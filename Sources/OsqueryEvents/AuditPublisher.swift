import Foundation
package import OsqueryEngine
import Synchronization
internal import CSystemHeaders
#if canImport(Glibc)
import Glibc
#endif

/// The audit publisher (osquery's `auditeventpublisher`) and its seven subscribers. One thread
/// reads the NETLINK_AUDIT socket, assembles records into events and turns them into rows; its
/// work per record is bounded (a read batch, a cap on events in flight and on argument bytes),
/// so an exec storm costs the kernel's backlog, never the scheduler.
package final class AuditPublisher: EventPublisher, @unchecked Sendable {  // mutable state under the mutexes
    package let name = "auditeventpublisher"
    package let processEvents: EventSubscriber
    package let socketEvents: EventSubscriber
    package let userEvents: EventSubscriber
    package let processFileEvents: EventSubscriber
    package let selinuxEvents: EventSubscriber
    package let apparmorEvents: EventSubscriber
    package let seccompEvents: EventSubscriber
    private let flags: Flags

    /// Rules this core installs carry this key prefix, then the settings it found, so a core
    /// killed before it could clean up is undone by the next one.
    static let keyPrefix = "osquery-swift"

    private struct Original: Equatable {
        var enabled: UInt32
        var backlogLimit: UInt32
        var backlogWaitTime: UInt32
        var failure: UInt32

        var key: String { "\(AuditPublisher.keyPrefix) enabled=\(enabled) backlog_limit=\(backlogLimit) backlog_wait_time=\(backlogWaitTime) failure=\(failure)" }

        /// The settings recorded in a key this core wrote; nil for any other key.
        init?(key: String) {
            guard key.hasPrefix(AuditPublisher.keyPrefix + " ") else { return nil }
            var values: [String: UInt32] = [:]
            for part in key.split(separator: " ").dropFirst() {
                let kv = part.split(separator: "=", maxSplits: 1)
                if kv.count == 2, let v = UInt32(kv[1]) { values[String(kv[0])] = v }
            }
            enabled = min(values["enabled"] ?? 0, 1)
            backlogLimit = values["backlog_limit"] ?? 64
            backlogWaitTime = values["backlog_wait_time"] ?? 15000
            failure = values["failure"] ?? 1
        }

        init(_ s: AuditStatus) {
            enabled = min(s.enabled, 1)
            backlogLimit = s.backlogLimit
            backlogWaitTime = s.backlogWaitTime
            failure = s.failure
        }
    }

    package struct Counters: Sendable, Equatable {
        package var events = 0
        package var records = 0
        package var malformedMessages = 0
        package var malformedRecords = 0
        package var unknownRecords = 0
        package var partialDropped = 0
        package var incomplete = 0
        package var argumentOverflows = 0
        package var recordOverflows = 0
        package var socketOverflows = 0
        package var kernelLost = 0
        package var controlLost = 0
        package var ruleErrors = 0
        package var recoveredRules = 0
        /// SYSCALL records whose serial was already open (osquery: "Received a duplicated event").
        package var duplicateSerials = 0
    }
    private let counters = Mutex(Counters())

    private struct Running {
        var socket: AuditSocket?
        var stopRead: Int32 = -1
        var stopWrite: Int32 = -1
        var active = false
        var rule: [UInt8]?
        var original: Original?
        var lastLost: UInt32?
    }
    private let running = Mutex(Running())
    private let readerDone = DispatchSemaphore(value: 0)
    private let filePatterns = Mutex<[ResolvedPattern]>([])
    private let ownExecutable: String

    package init(hub: EventHub) {
        func make(_ name: String, _ shape: AuditRowShape) -> EventSubscriber {
            EventSubscriber(
                name: name, publisher: "auditeventpublisher", schemaColumns: shape.schemaColumns, columnAliases: shape.columnAliases,
                database: hub.database, flags: hub.flags, isDaemon: hub.isDaemon)
        }
        processEvents = make("process_events", AuditTables.processEvents)
        socketEvents = make("socket_events", AuditTables.socketEvents)
        userEvents = make("user_events", AuditTables.userEvents)
        processFileEvents = make("process_file_events", AuditTables.processFileEvents)
        selinuxEvents = make("selinux_events", AuditTables.selinuxEvents)
        apparmorEvents = make("apparmor_events", AuditTables.apparmorEvents)
        seccompEvents = make("seccomp_events", AuditTables.seccompEvents)
        flags = hub.flags
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, Int(PATH_MAX))
        ownExecutable = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    }

    package var subscribers: [EventSubscriber] {
        [processEvents, socketEvents, userEvents, processFileEvents, selinuxEvents, apparmorEvents, seccompEvents]
    }

    /// osquery's IsPublisherEnabled.
    package func isEnabled(_ flags: Flags) -> Bool {
        guard !flags[.disableAudit] else { return false }
        return flags[.auditAllowFimEvents] || flags[.auditAllowProcessEvents] || flags[.auditAllowSockets] || flags[.auditAllowUserEvents]
            || flags[.auditAllowSelinuxEvents] || flags[.auditAllowKillProcessEvents] || flags[.auditAllowApparmorEvents]
            || flags[.auditAllowSeccompEvents]
    }

    /// Whether process_events and socket_events rows, filled by column position, follow the
    /// tables' schemas.
    package static var positionalColumnsFollowSchemas: Bool { AuditTables.positionalColumnsFollowSchemas }

    package var counterValues: Counters { counters.withLock { $0 } }

    package var status: PublisherStatus {
        var s = PublisherStatus()
        s.active = running.withLock { $0.active }
        s.subscriptions = subscribers.filter { subscribed($0) }.count
        let c = counters.withLock { $0 }
        s.events = c.events
        s.counters = [
            ("malformed_messages", c.malformedMessages), ("malformed_records", c.malformedRecords + c.duplicateSerials), ("unknown_records", c.unknownRecords),
            ("partial_events_dropped", c.partialDropped), ("incomplete_events", c.incomplete), ("argument_overflows", c.argumentOverflows),
            ("record_overflows", c.recordOverflows), ("socket_overflows", c.socketOverflows), ("kernel_lost", c.kernelLost),
            ("control_lost", c.controlLost), ("rule_errors", c.ruleErrors), ("recovered_rules", c.recoveredRules),
        ]
        return s
    }

    private func subscribed(_ s: EventSubscriber) -> Bool {
        switch s.name {
        case "process_events": flags[.auditAllowProcessEvents]
        case "socket_events": flags[.auditAllowSockets]
        case "user_events": flags[.auditAllowUserEvents]
        case "process_file_events": flags[.auditAllowFimEvents]
        case "selinux_events": flags[.auditAllowSelinuxEvents]
        case "apparmor_events": flags[.auditAllowApparmorEvents]
        case "seccomp_events": flags[.auditAllowSeccompEvents]
        default: false
        }
    }

    /// The syscalls the flags ask rules for (osquery's configureAuditService).
    package func ruleSyscalls() -> [Int] {
        var set = Set<Int>()
        if flags[.auditAllowSockets] { set.formUnion(AuditSyscalls.sockets(accept: flags[.auditAllowAcceptSocketEvents])) }
        if flags[.auditAllowProcessEvents] {
            set.formUnion(AuditSyscalls.exec)
            if flags[.auditAllowForkProcessEvents] { set.formUnion(AuditSyscalls.forks) }
            if flags[.auditAllowKillProcessEvents] { set.formUnion(AuditSyscalls.kills) }
        }
        if flags[.auditAllowFimEvents] { set.formUnion(AuditSyscalls.files) }
        return set.sorted()
    }

    package func configure(_ configuration: EventsConfiguration) {
        var resolved: [ResolvedPattern] = []
        for (category, list) in configuration.filePaths.sorted(by: { $0.key < $1.key }) {
            for pattern in list {
                if case .success(let r) = FilePatterns.resolve(pattern, category: category) { resolved += r }
            }
        }
        filePatterns.withLock { $0 = resolved }
        processFileEvents.setSubscriptions(resolved.count)
    }

    // MARK: start and stop

    package func start() throws(EventError) {
        guard !running.withLock({ $0.active }) else { return }
        let socket = try AuditSocket()
        let early = Mutex<[AuditMessage]>([])
        socket.onRecord = { m in early.withLock { if $0.count < 4096 { $0.append(m) } } }
        let status: AuditStatus
        switch socket.status() {
        case .success(let s): status = s
        case .failure(let e): throw EventError("Could not read the audit status: \(e.message)")
        }
        let me = UInt32(getpid())
        if status.pid != 0, status.pid != me, kill(pid_t(status.pid), 0) == 0 || errno == EPERM {
            let holder = "pid \(status.pid)" + (Self.command(of: status.pid).map { " (\($0))" } ?? "")
            if !flags[.auditPersist] {
                throw EventError("The audit netlink is held by \(holder) and --audit_persist=false: audit-based tables get no events")
            }
        }
        // Becoming the audit pid: the kernel refuses (EEXIST) while another live process holds it.
        if let e = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskPID, pid: me)) {
            let holder = "pid \(status.pid)" + (Self.command(of: status.pid).map { " (\($0))" } ?? "")
            throw EventError(
                "Could not become the audit daemon: \(e.message); the audit netlink is held by \(holder) (auditd?): stop it to use audit-based tables")
        }
        var original = Original(status)
        var rule: [UInt8]?
        if flags[.auditAllowConfig] {
            // Rules a killed core left (recognised by their key) go first, and what that core found
            // is what is restored at exit.
            let recovered = removeRules(socket, all: flags[.auditForceReconfigure])
            if let first = recovered.first { original = first }
            let backlog = UInt32(clamping: max(0, flags[.auditBacklogLimit]))
            let wait = UInt32(clamping: max(0, flags[.auditBacklogWaitTime]))
            _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskBacklogLimit, backlogLimit: backlog))
            _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskBacklogWaitTime, backlogWaitTime: wait))
            _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskFailure, failure: 0))
            let syscalls = ruleSyscalls()
            if !syscalls.isEmpty {
                let data = AuditRule.data(syscalls: syscalls, key: original.key)
                if case .failure(let e) = socket.request(AuditType.addRule, data) {
                    counters.withLock { $0.ruleErrors += 1 }
                    StatusLog.error(
                        "Failed to install the audit rule due to one or more syscalls with error \(e.message), Audit-based tables may not function as expected")
                } else {
                    rule = data
                }
            }
            if let e = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskEnabled, enabled: 1)) {
                StatusLog.warning("Failed to enable the audit service: \(e.message)")
            }
        } else if status.enabled == 0 {
            StatusLog.warning("Audit is disabled in the kernel and --audit_allow_config is false: audit-based tables get no events")
        }
        var stopPipe: [Int32] = [-1, -1]
        guard pipe(&stopPipe) == 0 else {
            restore(socket, rule: rule, original: original)
            throw EventError("Could not create a pipe: \(String(cString: strerror(errno)))")
        }
        for end in stopPipe { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        socket.onRecord = nil
        let backlog = early.withLock { $0 }
        let stopRead = stopPipe[0]
        let thread = Thread { [self] in
            readLoop(socket, stopFD: stopRead, early: backlog)
            readerDone.signal()
        }
        thread.name = "audit publisher"
        running.withLock { $0 = Running(socket: socket, stopRead: stopPipe[0], stopWrite: stopPipe[1], active: true, rule: rule, original: original) }
        thread.start()
    }

    package func stop() {
        let r = running.withLock { r -> Running in
            defer { r = Running() }
            return r
        }
        guard r.active, let socket = r.socket else { return }
        var one: UInt8 = 1
        _ = write(r.stopWrite, &one, 1)
        readerDone.wait()
        close(r.stopWrite)
        close(r.stopRead)
        if flags[.auditAllowConfig], let original = r.original {
            restore(socket, rule: r.rule, original: original)
        } else {
            releasePID(socket)
        }
    }

    /// Removes this core's rules (or, with `all`, every rule) and returns the settings recorded in
    /// the keys of rules a previous core left.
    private func removeRules(_ socket: AuditSocket, all: Bool) -> [Original] {
        guard case .success(let rules) = socket.request(AuditType.listRules, [], expecting: AuditType.listRules, dump: true) else {
            StatusLog.warning("Could not list the audit rules")
            return []
        }
        var found: [Original] = []
        for rule in rules {
            let key = AuditRule.key(of: rule)
            let ours = key.flatMap { Original(key: $0) }
            guard ours != nil || all else { continue }
            if case .failure(let e) = socket.request(AuditType.deleteRule, Array(rule)) {
                StatusLog.warning("Could not remove an audit rule: \(e.message)")
                continue
            }
            if let ours {
                found.append(ours)
                counters.withLock { $0.recoveredRules += 1 }
            }
        }
        if !found.isEmpty {
            StatusLog.warning("Removed \(found.count) audit rule(s) left by a previous osqueryd that did not exit cleanly")
        }
        return found
    }

    private func restore(_ socket: AuditSocket, rule: [UInt8]?, original: Original) {
        if flags[.auditForceUnconfigure] {
            _ = removeRules(socket, all: false)
        } else if let rule, case .failure(let e) = socket.request(AuditType.deleteRule, rule) {
            StatusLog.warning("Could not remove the audit rule: \(e.message)")
        }
        // Another audit daemon took over meanwhile: its settings are its own.
        if case .success(let s) = socket.status(), s.pid != UInt32(getpid()), s.pid != 0 { return }
        _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskBacklogLimit, backlogLimit: original.backlogLimit))
        _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskBacklogWaitTime, backlogWaitTime: original.backlogWaitTime))
        _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskFailure, failure: original.failure))
        _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskEnabled, enabled: original.enabled))
        releasePID(socket)
    }

    private func releasePID(_ socket: AuditSocket) {
        if case .success(let s) = socket.status(), s.pid == UInt32(getpid()) {
            _ = socket.set(AuditStatus.setPayload(mask: AuditStatus.maskPID, pid: 0))
        }
    }

    static func command(of pid: UInt32) -> String? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return nil }
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    // MARK: reading

    /// Datagrams read before the queue is looked at again (and rows handed to the store).
    static let readBatch = 256
    /// Datagrams taken per recvmmsg call, each in a slot of `slotSize` bytes (an audit record
    /// is at most 8970 bytes; a longer datagram is cut and counted malformed).
    static let slots = 32
    static let slotSize = 1 << 14
    /// After a read that emptied the socket, the reader rests this long before it polls again:
    /// in a storm it then takes many records per wakeup instead of one (the socket's buffer
    /// holds them meanwhile), at the cost of that much latency.
    static let restMilliseconds: Int32 = 25

    private func readLoop(_ socket: AuditSocket, stopFD: Int32, early: [AuditMessage]) {
        var assembler = AuditAssembler(
            maxPartial: Int(clamping: flags[.auditMaxPartialEvents]), maxArgumentBytes: Int(clamping: flags[.auditMaxEventBytes]))
        // Datagrams are read into the slots of this array and parsed from slices of it: no copy each.
        var buffer = [UInt8](repeating: 0, count: Self.slots * Self.slotSize)
        var vectors = [iovec](repeating: iovec(), count: Self.slots)
        var headers = [osq_mmsghdr](repeating: osq_mmsghdr(), count: Self.slots)
        var completed: [AuditEvent] = []
        // The flags dispatch reads and the assembler's counts last reported: both are looked at
        // once a second or when they change, not at every wakeup.
        var options = DispatchOptions(flags)
        var noted = AuditAssemblyCounters()
        var stats = ExecutableStats()
        for m in early { handle(m, socket: socket, assembler: &assembler, into: &completed) }
        var fds = [pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
        var lastCheck = Date.distantPast
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let rc = poll(&fds, 2, 500)
            if rc < 0, errno != EINTR {
                StatusLog.error("audit netlink poll failed: \(String(cString: strerror(errno)))")
                return
            }
            if fds[1].revents != 0 { break }
            var reads = 0
            var drained = false
            while reads < Self.readBatch, !drained {
                let n = buffer.withUnsafeMutableBytes { raw in
                    vectors.withUnsafeMutableBufferPointer { v in
                        headers.withUnsafeMutableBufferPointer { h in
                            for i in 0..<Self.slots {
                                v[i] = iovec(iov_base: raw.baseAddress! + i * Self.slotSize, iov_len: Self.slotSize)
                                h[i] = osq_mmsghdr()
                                h[i].msg_hdr.msg_iov = v.baseAddress! + i
                                h[i].msg_hdr.msg_iovlen = 1
                            }
                            return osq_recvmmsg(socket.fd, h.baseAddress, UInt32(Self.slots), Int32(MSG_DONTWAIT))
                        }
                    }
                }
                if n < 0 {
                    if errno == EAGAIN || errno == EINTR { break }
                    if errno == ENOBUFS {
                        let first = counters.withLock { c -> Bool in
                            c.socketOverflows += 1
                            return c.socketOverflows == 1 || c.socketOverflows % 1000 == 0
                        }
                        if first { StatusLog.warning("The audit netlink socket overflowed (ENOBUFS): audit records were lost") }
                        continue
                    }
                    StatusLog.error("Could not read the audit netlink: \(String(cString: strerror(errno)))")
                    return
                }
                // Fewer than asked: the socket is empty for now.
                drained = Int(n) < Self.slots
                reads += Int(n)
                for i in 0..<Int(n) {
                    let start = i * Self.slotSize
                    let length = min(Int(headers[i].msg_len), Self.slotSize)
                    consume(buffer[start..<(start + length)], socket: socket, assembler: &assembler, into: &completed)
                }
                if completed.count >= 64 { emit(&completed, options, stats: &stats) }
            }
            emit(&completed, options, stats: &stats)
            if assembler.records > 0 {
                let n = assembler.records
                assembler.records = 0
                counters.withLock { $0.records += n }
            }
            let now = Date()
            if now.timeIntervalSince(lastCheck) >= 1 {
                lastCheck = now
                options = DispatchOptions(flags)
                // Executables are stat'ed again each second (a storm runs the same few).
                stats.removeAll()
                // The status reply (type AUDIT_GET) comes through this loop: control and lost counts.
                _ = socket.send(AuditType.get, [], ack: false)
                let dropped = assembler.expire(now: UInt64(now.timeIntervalSince1970))
                if dropped > 0 { StatusLog.warning("\(dropped) audit events never completed (no EOE record) and were dropped") }
            }
            if assembler.counters != noted {
                noted = assembler.counters
                noteAssembly(noted)
            }
            if reads > 0, reads < Self.readBatch {
                var stop = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
                if poll(&stop, 1, Self.restMilliseconds) > 0 { break }
            }
        }
        emit(&completed, options, stats: &stats)
        noteAssembly(assembler.counters)
    }

    /// One datagram: a malformed one is counted and skipped.
    package func consume(_ raw: UnsafeRawBufferPointer, socket: AuditSocket?, assembler: inout AuditAssembler, into completed: inout [AuditEvent]) {
        consume(Array(raw)[...], socket: socket, assembler: &assembler, into: &completed)
    }

    func consume(_ bytes: ArraySlice<UInt8>, socket: AuditSocket?, assembler: inout AuditAssembler, into completed: inout [AuditEvent]) {
        // An audit record comes alone in its datagram: handled without the list of messages.
        if let m = AuditDatagram.singleRecord(bytes) {
            handle(m, socket: socket, assembler: &assembler, into: &completed)
            return
        }
        guard let messages = AuditDatagram.messages(bytes), !messages.isEmpty else {
            count(\.malformedMessages)
            return
        }
        for m in messages { handle(m, socket: socket, assembler: &assembler, into: &completed) }
    }

    private func handle(_ m: AuditMessage, socket: AuditSocket?, assembler: inout AuditAssembler, into completed: inout [AuditEvent]) {
        switch m.type {
        case AuditType.get:
            if let status = AuditStatus(payload: m.payload) { check(status, socket: socket) }
            return
        case 0..<AuditType.firstUser, AuditType.daemonStart...AuditType.daemonConfig, AuditType.configChange, AuditType.replace:
            return
        default:
            break
        }
        assembler.records += 1
        // Records no table reads (EOE, capabilities, the proctitle EXECVE already gives) keep only
        // their header: less work per exec.
        let fields = m.type != AuditType.eoe && m.type != AuditType.bprmFcaps && m.type != AuditType.proctitle
        guard let record = AuditRecord.parse(type: m.type, payload: m.payload, fields: fields) else {
            count(\.malformedRecords)
            return
        }
        assembler.add(record, into: &completed)
    }

    /// A status reply: control of the audit pid (audit_persist) and the kernel's lost count.
    private func check(_ status: AuditStatus, socket: AuditSocket?) {
        let me = UInt32(getpid())
        if status.pid != me {
            let n = counters.withLock { c -> Int in
                c.controlLost += 1
                return c.controlLost
            }
            let holder = "pid \(status.pid)" + (Self.command(of: status.pid).map { " (\($0))" } ?? "")
            if n == 1 || n % 60 == 0 { StatusLog.warning("Audit control lost to \(holder)") }
            if flags[.auditPersist], let socket {
                _ = socket.send(AuditType.set, AuditStatus.setPayload(mask: AuditStatus.maskPID, pid: me), ack: false)
            }
        }
        let grown = running.withLock { r -> UInt32 in
            defer { r.lastLost = status.lost }
            guard let last = r.lastLost, status.lost > last else { return 0 }
            return status.lost - last
        }
        if grown > 0 {
            counters.withLock { $0.kernelLost += Int(grown) }
            StatusLog.warning(
                "The kernel lost \(grown) audit records (backlog limit \(status.backlogLimit), lost in all \(status.lost)): raise --audit_backlog_limit")
        }
    }

    /// Takes the assembler's counts (it lives on the reader's stack).
    package func noteAssembly(_ a: AuditAssemblyCounters) {
        let (before, after) = counters.withLock { c -> (Counters, Counters) in
            let before = c
            c.duplicateSerials = a.malformed
            c.unknownRecords = a.unknown
            c.partialDropped = a.partialDropped
            c.incomplete = a.incomplete
            c.argumentOverflows = a.argumentOverflows
            c.recordOverflows = a.recordOverflows
            return (before, c)
        }
        report(before, after)
    }

    /// A status line when a trouble counter first moves, then every 1000 (a storm of bad records
    /// must not become a storm of log lines).
    private func report(_ before: Counters, _ after: Counters) {
        let troubles: [(KeyPath<Counters, Int>, String)] = [
            (\.malformedMessages, "malformed audit netlink messages were dropped"),
            (\.malformedRecords, "malformed audit records were dropped"),
            (\.unknownRecords, "audit records of types no table reads, outside any event, were ignored"),
            (\.partialDropped, "audit events were dropped: more than --audit_max_partial_events were being assembled"),
            (\.argumentOverflows, "EXECVE arguments were cut at --audit_max_event_bytes (overflows: cmdline)"),
            (\.recordOverflows, "audit events had too many records; the extra ones were dropped"),
        ]
        for (key, text) in troubles where after[keyPath: key] > before[keyPath: key] {
            let n = after[keyPath: key]
            if before[keyPath: key] == 0 || n / 1000 > before[keyPath: key] / 1000 { StatusLog.warning("\(n) \(text)") }
        }
    }

    private func count(_ key: WritableKeyPath<Counters, Int>) {
        let (before, after) = counters.withLock { c -> (Counters, Counters) in
            let before = c
            c[keyPath: key] += 1
            return (before, c)
        }
        report(before, after)
    }

    /// Hands completed events to the subscribers.
    package func emit(_ events: inout [AuditEvent]) {
        guard !events.isEmpty else { return }
        var stats = ExecutableStats()
        emit(&events, DispatchOptions(flags), stats: &stats)
    }

    /// The rows of one batch of events, per table: each table takes its rows at once (one lock
    /// and one clock reading per batch, not per row).
    struct Rows {
        var process: [[SQLValue]] = []
        var socket: [[SQLValue]] = []
        var user: [[SQLValue]] = []
        var file: [[SQLValue]] = []
        var selinux: [[SQLValue]] = []
        var apparmor: [[SQLValue]] = []
        var seccomp: [[SQLValue]] = []
    }

    func emit(_ events: inout [AuditEvent], _ options: DispatchOptions, stats: inout ExecutableStats) {
        guard !events.isEmpty else { return }
        var rows = Rows()
        for event in events { dispatch(event, options, stats: &stats, into: &rows) }
        let added = [
            (processEvents, rows.process), (socketEvents, rows.socket), (userEvents, rows.user), (processFileEvents, rows.file),
            (selinuxEvents, rows.selinux), (apparmorEvents, rows.apparmor), (seccompEvents, rows.seccomp),
        ].reduce(0) { n, pair in
            pair.0.add(rows: pair.1)
            return n + pair.1.count
        }
        counters.withLock { $0.events += added }
        events.removeAll(keepingCapacity: true)
    }

    /// One event → its table's row, appended to `rows`.
    func dispatch(_ event: AuditEvent, _ o: DispatchOptions, stats: inout ExecutableStats, into rows: inout Rows) {
        guard let first = event.records.first else { return }
        let t = first.type
        if AuditType.isUser(t) && !AuditType.isSELinux(t) {
            guard o.user else { return }
            rows.user.append(AuditTables.userRow(first))
            return
        }
        if AuditType.isSELinux(t) {
            if AuditTables.isAppArmor(first) {
                guard o.apparmor, let row = AuditTables.apparmorRow(first) else { return }
                rows.apparmor.append(row)
            } else {
                guard o.selinux else { return }
                rows.selinux.append(AuditTables.selinuxRow(first))
            }
            return
        }
        if t == AuditType.seccomp {
            guard o.seccomp else { return }
            rows.seccomp.append(AuditTables.seccompRow(first))
            return
        }
        guard t == AuditType.syscall else { return }
        // osquery's checks of the SYSCALL record: a malformed one is dropped (and counted here).
        guard let exe = first.text("exe"), let number = first.integer("syscall"), first.integer("pid") != nil, first.integer("ppid") != nil
        else {
            count(\.malformedRecords)
            return
        }
        // Events of this daemon itself are not reported (osquery's rule).
        if exe == ownExecutable { return }
        let syscall = Int(clamping: number)
        let succeeded = first.raw("success") == nil || first.rawEquals("success", "yes")
        let isSocket = AuditSyscalls.sockets(accept: true).contains(syscall)
        if !succeeded && !isSocket { return }
        if o.process, let row = AuditTables.processRow(event, syscallNumber: syscall, path: exe, stats: &stats) {
            rows.process.append(row)
        }
        if isSocket, o.sockets {
            if let row = AuditTables.socketRow(event, syscallNumber: syscall, succeeded: succeeded, options: o.socket) {
                rows.socket.append(row)
            }
        }
        if o.files, AuditSyscalls.files.contains(syscall),
            let op = AuditTables.fileOperation(event, syscallNumber: syscall, showAccesses: o.showAccesses),
            watched(op.path) || op.dest.map(watched) == true, let row = AuditTables.fileRow(event, operation: op)
        {
            rows.file.append(row)
        }
    }

    /// The flags `dispatch` reads, taken once per batch of events.
    struct DispatchOptions {
        var user, apparmor, selinux, seccomp, process, sockets, files, showAccesses: Bool
        var socket: AuditTables.SocketOptions

        init(_ flags: Flags) {
            user = flags[.auditAllowUserEvents]
            apparmor = flags[.auditAllowApparmorEvents]
            selinux = flags[.auditAllowSelinuxEvents]
            seccomp = flags[.auditAllowSeccompEvents]
            process = flags[.auditAllowProcessEvents]
            sockets = flags[.auditAllowSockets]
            files = flags[.auditAllowFimEvents]
            showAccesses = flags[.auditFimShowAccesses]
            socket = AuditTables.SocketOptions(
                allowFailed: flags[.auditAllowFailedSocketEvents], allowUnix: flags[.auditAllowUnix],
                allowAccept: flags[.auditAllowAcceptSocketEvents], allowNullAccept: flags[.auditAllowNullAcceptSocketEvents])
        }
    }

    /// Whether `path` is under the config's `file_paths` (process_file_events shows only those).
    private func watched(_ path: String) -> Bool {
        guard let slash = path.lastIndex(of: "/") else { return false }
        let dir = String(path[...slash])
        let name = String(path[path.index(after: slash)...])
        return filePatterns.withLock { patterns in
            patterns.contains { p in
                p.directories.contains { d in
                    p.recursive ? path.hasPrefix(d) : dir == d && (p.leaf.map { FilePatterns.matches($0, name) } ?? true)
                }
            }
        }
    }
}
