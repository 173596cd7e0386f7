import Foundation
import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// System call numbers of the native architecture (asm/unistd.h) that the audit tables use.
enum AuditSyscalls {
    #if arch(x86_64)
    static let execve = 59, execveat = 322, clone = 56, fork = 57, vfork = 58
    static let kill = 62, tkill = 200, tgkill = 234
    static let bind = 49, connect = 42, accept = 43, accept4 = 288
    static let open = 2, openat = 257, creat = 85, truncate = 76, unlink = 87, unlinkat = 263
    static let rename = 82, renameat = 264, renameat2 = 316, link = 86, linkat = 265, symlink = 88, symlinkat = 266
    #else
    static let execve = 221, execveat = 281, clone = 220, fork = -1, vfork = -1
    static let kill = 129, tkill = 130, tgkill = 131
    static let bind = 200, connect = 203, accept = 202, accept4 = 242
    static let open = -1, openat = 56, creat = -1, truncate = 45, unlink = -1, unlinkat = 35
    static let rename = -1, renameat = 38, renameat2 = 276, link = -1, linkat = 37, symlink = -1, symlinkat = 36
    #endif

    // Lists made once: the dispatch of every event looks a syscall up in them.
    static let exec: [Int] = [execve, execveat]
    static let forks: [Int] = [clone, fork, vfork].filter { $0 >= 0 }
    static let kills: [Int] = [kill, tkill, tgkill]
    private static let socketsWithAccept: [Int] = [bind, connect, accept, accept4]
    private static let socketsWithoutAccept: [Int] = [bind, connect]
    static func sockets(accept withAccept: Bool) -> [Int] { withAccept ? socketsWithAccept : socketsWithoutAccept }
    static let files: [Int] =
        [open, openat, creat, truncate, unlink, unlinkat, rename, renameat, renameat2, link, linkat, symlink, symlinkat].filter { $0 >= 0 }

    static func name(_ n: Int) -> String? {
        switch n {
        case execve: "execve"
        case execveat: "execveat"
        case clone: "clone"
        case fork where fork >= 0: "fork"
        case vfork where vfork >= 0: "vfork"
        case kill: "kill"
        case tkill: "tkill"
        case tgkill: "tgkill"
        default: nil
        }
    }
}

/// A table's columns (without `time` and `eid`) and a row being filled by column name.
struct AuditRowShape: Sendable {
    let schemaColumns: [TableColumn]
    let columnAliases: [(alias: String, target: String)]
    let index: [String: Int]
    let count: Int

    init(_ columns: [TableColumn], aliases: [(alias: String, target: String)] = []) {
        schemaColumns = columns
        columnAliases = aliases
        var index: [String: Int] = [:]
        var i = 0
        for c in columns where c.name != "time" && c.name != "eid" {
            index[c.name] = i
            i += 1
        }
        self.index = index
        count = i
    }

    func row(_ fill: (inout AuditRow) -> Void) -> [SQLValue] {
        var r = AuditRow(shape: self, values: Array(repeating: .null, count: count))
        fill(&r)
        return r.values
    }
}

struct AuditRow {
    let shape: AuditRowShape
    var values: [SQLValue]

    subscript(_ column: String) -> SQLValue {
        get { shape.index[column].map { values[$0] } ?? .null }
        set { if let i = shape.index[column] { values[i] = newValue } }
    }
}

/// The stat of executables, kept for a second (the publisher empties it): a storm execs the same
/// few files, and osquery's own stat runs when its batch of events is handled, not at the exec.
/// An entry is used only while the inode the PATH record names is the one it holds (a file
/// replaced meanwhile is stat'ed again); a file changed in place shows its new times within a
/// second.
package struct ExecutableStats {
    package struct Entry: Sendable {
        package var path: String
        package var inode: UInt64
        package var mode: UInt32
        package var atime: Int64, mtime: Int64, ctime: Int64
    }
    private var entries: [Entry] = []
    private var failed: [String] = []
    static let capacity = 16

    package init() {}

    package mutating func removeAll() {
        entries.removeAll(keepingCapacity: true)
        failed.removeAll(keepingCapacity: true)
    }

    /// The file's stat (following links, as osquery's stat does); nil when it cannot be stat'ed.
    package mutating func lookup(_ path: String, inode: UInt64?) -> Entry? {
        if let e = entries.first(where: { $0.path == path }), inode == nil || inode == e.inode { return e }
        if inode == nil, failed.contains(path) { return nil }
        var st = stat()
        guard stat(path, &st) == 0 else {
            if failed.count < Self.capacity { failed.append(path) }
            return nil
        }
        let e = Entry(
            path: path, inode: UInt64(st.st_ino), mode: UInt32(st.st_mode), atime: Int64(st.st_atim.tv_sec), mtime: Int64(st.st_mtim.tv_sec),
            ctime: Int64(st.st_ctim.tv_sec))
        if let i = entries.firstIndex(where: { $0.path == path }) {
            entries[i] = e
        } else if entries.count < Self.capacity {
            entries.append(e)
        }
        return e
    }
}

/// The seven audit-based tables: osquery's columns (specs/linux/*.table), in order, and how an
/// assembled audit event becomes their rows.
enum AuditTables {
    static let time = TableColumn("time", .bigint, .additional)
    static let eid = TableColumn("eid", .text, .hidden)

    static let processEvents = AuditRowShape(
        [
            TableColumn("pid", .bigint), TableColumn("path", .text), TableColumn("mode", .text), TableColumn("cmdline", .text),
            TableColumn("cmdline_size", .bigint, .hidden), TableColumn("env", .text, .hidden), TableColumn("env_count", .bigint, .hidden),
            TableColumn("env_size", .bigint, .hidden), TableColumn("cwd", .text), TableColumn("auid", .bigint), TableColumn("uid", .bigint),
            TableColumn("euid", .bigint), TableColumn("gid", .bigint), TableColumn("egid", .bigint), TableColumn("owner_uid", .bigint),
            TableColumn("owner_gid", .bigint), TableColumn("atime", .bigint), TableColumn("mtime", .bigint), TableColumn("ctime", .bigint),
            TableColumn("btime", .bigint), TableColumn("overflows", .text, .hidden), TableColumn("parent", .bigint), time,
            TableColumn("uptime", .bigint), eid, TableColumn("fsuid", .bigint), TableColumn("suid", .bigint), TableColumn("fsgid", .bigint),
            TableColumn("sgid", .bigint), TableColumn("syscall", .text),
        ],
        aliases: [
            ("environment", "env"), ("environment_count", "env_count"), ("environment_size", "env_size"), ("access_time", "atime"),
            ("modify_time", "mtime"), ("change_time", "ctime"), ("create_time", "btime"),
        ])

    static let socketEvents = AuditRowShape([
        TableColumn("action", .text), TableColumn("pid", .bigint), TableColumn("path", .text), TableColumn("fd", .text),
        TableColumn("auid", .bigint), TableColumn("family", .integer), TableColumn("protocol", .integer, .hidden),
        TableColumn("local_address", .text), TableColumn("remote_address", .text), TableColumn("local_port", .integer),
        TableColumn("remote_port", .integer), TableColumn("socket", .text, .hidden), time, TableColumn("uptime", .bigint), eid,
        TableColumn("success", .integer, .hidden), TableColumn("status", .text),
    ])

    static let userEvents = AuditRowShape([
        TableColumn("uid", .bigint), TableColumn("auid", .bigint), TableColumn("pid", .bigint), TableColumn("message", .text),
        TableColumn("type", .integer), TableColumn("path", .text), TableColumn("address", .text), TableColumn("terminal", .text), time,
        TableColumn("uptime", .bigint), eid,
    ])

    static let processFileEvents = AuditRowShape(
        [TableColumn("operation", .text), TableColumn("pid", .bigint), TableColumn("ppid", .bigint), time, TableColumn("executable", .text)]
            + ["partial", "cwd", "path", "dest_path", "uid", "gid", "auid", "euid", "egid", "fsuid", "fsgid", "suid", "sgid"].map {
                TableColumn($0, .text)
            } + [TableColumn("uptime", .bigint), eid])

    static let selinuxEvents = AuditRowShape([TableColumn("type", .text), TableColumn("message", .text), time, TableColumn("uptime", .bigint), eid])

    static let apparmorEvents = AuditRowShape([
        TableColumn("type", .text), TableColumn("message", .text), time, TableColumn("uptime", .bigint), eid,
        TableColumn("apparmor", .text), TableColumn("operation", .text), TableColumn("parent", .unsignedBigint),
        TableColumn("profile", .text), TableColumn("name", .text), TableColumn("pid", .unsignedBigint), TableColumn("comm", .text),
        TableColumn("denied_mask", .text), TableColumn("capname", .text), TableColumn("fsuid", .unsignedBigint),
        TableColumn("ouid", .unsignedBigint), TableColumn("capability", .bigint), TableColumn("requested_mask", .text),
        TableColumn("info", .text), TableColumn("error", .text), TableColumn("namespace", .text), TableColumn("label", .text),
    ])

    static let seccompEvents = AuditRowShape([
        time, TableColumn("uptime", .bigint), TableColumn("auid", .unsignedBigint), TableColumn("uid", .unsignedBigint),
        TableColumn("gid", .unsignedBigint), TableColumn("ses", .unsignedBigint), TableColumn("pid", .unsignedBigint),
        TableColumn("comm", .text), TableColumn("exe", .text), TableColumn("sig", .bigint), TableColumn("arch", .text),
        TableColumn("syscall", .text), TableColumn("compat", .bigint), TableColumn("ip", .text), TableColumn("code", .text),
    ])

    static var uptime: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Int64(ts.tv_sec)
    }

    static func integer(_ record: AuditRecord, _ key: String, default value: Int64? = nil) -> SQLValue {
        if let v = record.integer(key) { return .integer(Int64(truncatingIfNeeded: v)) }
        // auid/ses of a process without a login: 4294967295 is numeric; "-1" or text are kept.
        if let raw = record.raw(key), let v = Int64(raw) { return .integer(v) }
        return value.map { .integer($0) } ?? .null
    }

    static func text(_ record: AuditRecord, _ key: String) -> SQLValue {
        record.text(key).map { .text($0) } ?? .null
    }

    // MARK: process_events

    /// osquery's AuditProcessEventSubscriber::ProcessEvents for one syscall event; nil when the
    /// event is not a (successful) process event or is malformed.
    static func processRow(_ event: AuditEvent, syscallNumber: Int, path knownPath: String? = nil, stats: inout ExecutableStats) -> [SQLValue]? {
        guard let sys = event.first(AuditType.syscall) else { return nil }
        let isExec = AuditSyscalls.exec.contains(syscallNumber)
        let isKill = AuditSyscalls.kills.contains(syscallNumber)
        guard isExec || isKill || AuditSyscalls.forks.contains(syscallNumber) else { return nil }
        // Threads (clone with CLONE_THREAD) are not processes.
        if syscallNumber == AuditSyscalls.clone, let flags = sys.integer("a0", base: 16), flags & 0x10000 != 0 { return nil }
        var pid: UInt64 = 0
        var parent: UInt64 = 0
        if syscallNumber == AuditSyscalls.fork || syscallNumber == AuditSyscalls.vfork {
            (parent, pid) = (sys.integer("pid") ?? 0, sys.integer("exit") ?? 0)
        } else if syscallNumber == AuditSyscalls.clone {
            pid = sys.integer("exit") ?? 0
            let flags = sys.integer("a0", base: 16) ?? 0
            parent = (flags & 0x8000 != 0 ? sys.integer("ppid") : sys.integer("pid")) ?? 0
        } else {
            (parent, pid) = (sys.integer("ppid") ?? 0, sys.integer("pid") ?? 0)
        }
        var cwd: SQLValue = .null
        var cmdline: SQLValue = .null
        var cmdlineSize: SQLValue = .null
        var mode: SQLValue = .null
        var ownerUID: SQLValue = 0
        var ownerGID: SQLValue = 0
        var overflows = ""
        var inode: UInt64?
        if isExec {
            // osquery drops exec events without their CWD, EXECVE and PATH records.
            guard let cwdRecord = event.first(AuditType.cwd), event.first(AuditType.execve) != nil,
                let pathRecord = event.first(AuditType.path)
            else { return nil }
            cwd = text(cwdRecord, "cwd")
            let line = event.cmdline
            cmdline = .text(line)
            cmdlineSize = .integer(Int64(line.utf8.count))
            if event.argumentsOverflowed { overflows = "cmdline" }
            mode = text(pathRecord, "mode")
            ownerUID = integer(pathRecord, "ouid", default: 0)
            ownerGID = integer(pathRecord, "ogid", default: 0)
            inode = pathRecord.integer("inode")
        }
        let path = knownPath ?? sys.text("exe") ?? ""
        var atime: SQLValue = 0, mtime: SQLValue = 0, ctime: SQLValue = 0, btime: SQLValue = .null
        // osquery stats the executable for its times (the PATH record has no times); mode and
        // owner come from the record.
        if !path.isEmpty, let st = stats.lookup(path, inode: inode) {
            if case .null = mode { mode = .text(octalMode(mode_t(st.mode))) }
            btime = 0
            atime = .integer(st.atime)
            mtime = .integer(st.mtime)
            ctime = .integer(st.ctime)
        }
        // Filled by position (ProcessColumn): an exec storm makes one of these per exec.
        var r = [SQLValue](repeating: .null, count: ProcessColumn.allCases.count)
        func set(_ c: ProcessColumn, _ v: SQLValue) { r[c.rawValue] = v }
        set(.pid, .integer(Int64(truncatingIfNeeded: pid)))
        set(.path, .text(path))
        set(.mode, mode)
        set(.cmdline, cmdline)
        set(.cmdlineSize, cmdlineSize)
        set(.env, "")
        set(.envCount, 0)
        set(.envSize, 0)
        set(.cwd, cwd)
        set(.auid, integer(sys, "auid", default: 0))
        set(.uid, integer(sys, "uid", default: 0))
        set(.euid, integer(sys, "euid", default: 0))
        set(.gid, integer(sys, "gid", default: 0))
        set(.egid, integer(sys, "egid", default: 0))
        set(.fsuid, integer(sys, "fsuid", default: 0))
        set(.suid, integer(sys, "suid", default: 0))
        set(.fsgid, integer(sys, "fsgid", default: 0))
        set(.sgid, integer(sys, "sgid", default: 0))
        set(.ownerUid, ownerUID)
        set(.ownerGid, ownerGID)
        set(.atime, atime)
        set(.mtime, mtime)
        set(.ctime, ctime)
        set(.btime, btime)
        set(.overflows, .text(overflows))
        set(.parent, .integer(Int64(truncatingIfNeeded: parent)))
        set(.uptime, .integer(Self.uptime))
        set(.syscall, .text(AuditSyscalls.name(syscallNumber) ?? String(syscallNumber)))
        return r
    }

    /// process_events' columns but `time` and `eid`, in schema order (a test holds the two
    /// lists equal).
    enum ProcessColumn: Int, CaseIterable {
        case pid, path, mode, cmdline, cmdlineSize, env, envCount, envSize, cwd, auid, uid, euid, gid, egid, ownerUid, ownerGid
        case atime, mtime, ctime, btime, overflows, parent, uptime, fsuid, suid, fsgid, sgid, syscall
    }

    /// A positional column's name in the schema: `cmdlineSize` → `cmdline_size`.
    static func columnName(_ c: some CaseIterable) -> String {
        var out = ""
        for ch in String(describing: c) {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    /// Whether the positional column lists follow their tables' schemas (a test checks it).
    static var positionalColumnsFollowSchemas: Bool {
        func names(_ shape: AuditRowShape) -> [String] { shape.index.sorted { $0.value < $1.value }.map(\.key) }
        return names(processEvents) == ProcessColumn.allCases.map(columnName) && names(socketEvents) == SocketColumn.allCases.map(columnName)
    }

    static func octalMode(_ mode: mode_t) -> String {
        let s = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    // MARK: socket_events

    struct SocketOptions: Sendable {
        var allowFailed = false
        var allowUnix = false
        var allowAccept = true
        var allowNullAccept = false
    }

    /// osquery's SocketEventSubscriber::ProcessEvents for one syscall event.
    static func socketRow(_ event: AuditEvent, syscallNumber: Int, succeeded: Bool, options: SocketOptions) -> [SQLValue]? {
        let action: String
        switch syscallNumber {
        case AuditSyscalls.bind: action = "bind"
        case AuditSyscalls.connect: action = "connect"
        case AuditSyscalls.accept, AuditSyscalls.accept4:
            guard options.allowAccept else { return nil }
            action = "accept"
        default: return nil
        }
        guard let sys = event.first(AuditType.syscall) else { return nil }
        var status = succeeded ? "succeeded" : "failed"
        if !succeeded, action != "bind" {
            guard let exit = sys.raw("exit").flatMap({ Int64($0) }) else { return nil }
            if action == "connect", exit == -Int64(EINPROGRESS) { status = "in_progress" }
            if action == "accept", exit == -Int64(EAGAIN), options.allowNullAccept { status = "no_client" }
        }
        if status == "failed" && !options.allowFailed { return nil }
        guard let saddr = event.first(AuditType.sockaddr)?.raw("saddr"), saddr.utf8.count >= 4 else { return nil }
        // NETLINK_ROUTE and other netlink sockets are not network activity.
        if saddr.hasPrefix("10") { return nil }
        guard let address = parseSockaddr(saddr) else { return nil }
        if address.family == 1 && !options.allowUnix { return nil }
        let local = action == "bind"
        var r = [SQLValue](repeating: .null, count: SocketColumn.allCases.count)
        func set(_ c: SocketColumn, _ v: SQLValue) { r[c.rawValue] = v }
        set(.action, .text(action))
        set(.pid, integer(sys, "pid"))
        set(.path, .text(sys.text("exe") ?? ""))
        set(.fd, sys.raw("a0").map { .text($0) } ?? .null)
        set(.auid, integer(sys, "auid"))
        set(.family, .integer(Int64(address.family)))
        set(.protocol, 0)
        set(.localPort, 0)
        set(.remotePort, 0)
        if address.family == 1 {
            set(.socket, .text(address.path))
        } else {
            set(local ? .localAddress : .remoteAddress, .text(address.address))
            set(local ? .localPort : .remotePort, .integer(Int64(address.port)))
        }
        set(.uptime, .integer(Self.uptime))
        set(.success, status == "failed" ? 0 : 1)
        set(.status, .text(status))
        return r
    }

    /// socket_events' columns but `time` and `eid`, in schema order (a test holds the two lists
    /// equal).
    enum SocketColumn: Int, CaseIterable {
        case action, pid, path, fd, auid, family, `protocol`, localAddress, remoteAddress, localPort, remotePort, socket, uptime
        case success, status
    }

    /// A SOCKADDR record's `saddr` (hex of a struct sockaddr): family, address, port, or a
    /// UNIX socket's path.
    static func parseSockaddr(_ saddr: String) -> (family: Int, address: String, port: Int, path: String)? {
        var bytes: [UInt8] = []
        guard AuditRecord.appendHex(saddr, to: &bytes, limit: 256), bytes.count >= 2 else { return nil }
        let family = Int(bytes[0]) | Int(bytes[1]) << 8
        switch family {
        case 2:
            guard bytes.count >= 8 else { return nil }
            return (2, "\(bytes[4]).\(bytes[5]).\(bytes[6]).\(bytes[7])", Int(bytes[2]) << 8 | Int(bytes[3]), "")
        case 10:
            guard bytes.count >= 24 else { return nil }
            // osquery's form: eight lowercase groups of four hex digits, uncompressed.
            let groups = (0..<8).map { i in
                let v = UInt16(bytes[8 + 2 * i]) << 8 | UInt16(bytes[9 + 2 * i])
                let h = String(v, radix: 16)
                return String(repeating: "0", count: 4 - h.count) + h
            }
            return (10, groups.joined(separator: ":"), Int(bytes[2]) << 8 | Int(bytes[3]), "")
        case 1:
            // An abstract socket starts with a NUL; the path ends at the first NUL after it.
            var name = bytes.dropFirst(2)
            if name.first == 0 { name = name.dropFirst() }
            let path = name.prefix { $0 != 0 }
            return (1, "", 0, String(decoding: path, as: UTF8.self))
        default:
            return nil
        }
    }

    // MARK: user_events

    static func userRow(_ record: AuditRecord) -> [SQLValue] {
        let uptime = Self.uptime
        // A user message keeps its own fields inside msg='…' (exe, addr, terminal, …).
        var inner = record
        var message: String?
        if var m = record.raw("msg"), m.utf8.count > 1 {
            m.removeFirst()
            if m.hasSuffix("'") { m.removeLast() }
            message = m
            inner = record.appendingFields(of: m)
        }
        return userEvents.row { r in
            r["uptime"] = .integer(uptime)
            r["type"] = .integer(Int64(record.type))
            r["uid"] = integer(record, "uid")
            r["pid"] = integer(record, "pid")
            r["auid"] = integer(record, "auid")
            r["terminal"] = text(inner, "terminal")
            r["address"] = text(inner, "addr")
            r["path"] = .text(inner.text("exe") ?? "")
            r["message"] = message.map { .text($0) } ?? .null
        }
    }

    // MARK: selinux_events, apparmor_events, seccomp_events

    static func isAppArmor(_ record: AuditRecord) -> Bool { record.type == AuditType.avc && record.body.contains("apparmor=") }

    static func selinuxRow(_ record: AuditRecord) -> [SQLValue] {
        let uptime = Self.uptime
        return selinuxEvents.row { r in
            r["type"] = .text(AuditType.selinuxLabels[record.type] ?? String(record.type))
            r["message"] = .text(record.body)
            r["uptime"] = .integer(uptime)
        }
    }

    static func apparmorRow(_ record: AuditRecord) -> [SQLValue]? {
        guard let status = record.text("apparmor"), !status.isEmpty else { return nil }
        let uptime = Self.uptime
        return apparmorEvents.row { r in
            r["type"] = "AA"
            r["message"] = .text(record.body)
            r["uptime"] = .integer(uptime)
            for key in ["apparmor", "operation", "profile", "name", "comm", "denied_mask", "capname", "requested_mask", "info", "error", "namespace", "label"] {
                r[key] = .text(record.text(key) ?? "")
            }
            for key in ["parent", "pid", "fsuid", "ouid", "capability"] {
                r[key] = .integer(Int64(truncatingIfNeeded: record.integer(key) ?? 0))
            }
        }
    }

    static let seccompActions: [UInt64: String] = [
        0x8000_0000: "KILL_PROCESS", 0: "KILL_THREAD", 0x0003_0000: "TRAP", 0x0005_0000: "ERRNO", 0x7ff0_0000: "TRACE",
        0x7ffc_0000: "LOG", 0x7fff_0000: "ALLOW",
    ]
    static let architectures: [UInt64: String] = [
        0xC000_003E: "X86_64", 0xC000_00B7: "AARCH64", 0x4000_0003: "I386", 0x4000_0028: "ARM", 0xC000_0015: "PPC64",
        0x4000_0015: "PPC64LE", 0x8000_0016: "S390X", 0x0000_0016: "S390", 0x4000_0008: "MIPSEL", 0x0000_0008: "MIPS",
    ]

    static func hexValue(_ raw: String?) -> UInt64? {
        guard var raw else { return nil }
        if raw.hasPrefix("0x") { raw.removeFirst(2) }
        return UInt64(raw, radix: 16)
    }

    static func seccompRow(_ record: AuditRecord) -> [SQLValue] {
        let uptime = Self.uptime
        let arch = hexValue(record.raw("arch"))
        return seccompEvents.row { r in
            r["uptime"] = .integer(uptime)
            for key in ["auid", "uid", "gid", "ses", "pid", "sig", "compat"] {
                r[key] = .integer(Int64(truncatingIfNeeded: record.integer(key) ?? 0))
            }
            r["comm"] = .text(record.text("comm") ?? "")
            r["exe"] = .text(record.text("exe") ?? "")
            r["ip"] = .text(record.raw("ip") ?? "")
            if let arch { r["arch"] = .text(architectures[arch] ?? "\(arch)(unknown)") } else { r["arch"] = "" }
            if let n = record.integer("syscall") {
                if arch == 0xC000_003E {
                    r["syscall"] = .text(X86_64Syscalls.name(n) ?? "\(n)(unknown)")
                } else {
                    r["syscall"] = .text(String(n))
                }
            } else {
                r["syscall"] = ""
            }
            if let code = hexValue(record.raw("code")) {
                r["code"] = .text(seccompActions[code & 0xffff_0000] ?? "\(code)(unknown)")
            } else {
                r["code"] = ""
            }
        }
    }

    // MARK: process_file_events

    /// The operation and paths of a file syscall (paths made absolute against the CWD record);
    /// nil for syscalls this table does not show.
    static func fileOperation(_ event: AuditEvent, syscallNumber n: Int, showAccesses: Bool) -> (operation: String, path: String, dest: String?)? {
        guard let sys = event.first(AuditType.syscall) else { return nil }
        let cwd = event.first(AuditType.cwd)?.text("cwd") ?? ""
        let paths = event.records.filter { $0.type == AuditType.path }
        func absolute(_ name: String) -> String {
            name.hasPrefix("/") || cwd.isEmpty ? name : (cwd.hasSuffix("/") ? cwd + name : cwd + "/" + name)
        }
        func item(_ nametype: String) -> String? {
            paths.first { $0.raw("nametype") == nametype }.flatMap { $0.text("name") }.map(absolute)
        }
        let firstName = paths.first { $0.raw("nametype") != "PARENT" }.flatMap { $0.text("name") }.map(absolute)
        switch n {
        case AuditSyscalls.open, AuditSyscalls.openat, AuditSyscalls.creat:
            let flags: UInt64 =
                n == AuditSyscalls.creat ? 0o1101 : (sys.integer(n == AuditSyscalls.openat ? "a2" : "a1", base: 16) ?? 0)
            guard let path = item("CREATE") ?? firstName else { return nil }
            if flags & 0o1000 != 0 { return ("open+truncate", path, nil) }
            let writes = flags & 0o3 != 0 || flags & 0o100 != 0
            guard writes || showAccesses else { return nil }
            return ("open", path, nil)
        case AuditSyscalls.truncate:
            guard let path = firstName else { return nil }
            return ("write", path, nil)
        case AuditSyscalls.unlink, AuditSyscalls.unlinkat:
            guard let path = item("DELETE") ?? firstName else { return nil }
            return ("unlink", path, nil)
        case AuditSyscalls.rename, AuditSyscalls.renameat, AuditSyscalls.renameat2:
            guard let from = item("DELETE") else { return nil }
            return ("rename", from, item("CREATE"))
        case AuditSyscalls.link, AuditSyscalls.linkat:
            guard let to = item("CREATE") else { return nil }
            return ("link", firstName ?? to, to)
        case AuditSyscalls.symlink, AuditSyscalls.symlinkat:
            guard let to = item("CREATE") else { return nil }
            return ("symlink", to, to)
        default:
            return nil
        }
    }

    static func fileRow(_ event: AuditEvent, operation: (operation: String, path: String, dest: String?)) -> [SQLValue]? {
        guard let sys = event.first(AuditType.syscall) else { return nil }
        let uptime = Self.uptime
        return processFileEvents.row { r in
            r["operation"] = .text(operation.operation)
            r["pid"] = integer(sys, "pid")
            r["ppid"] = integer(sys, "ppid")
            r["executable"] = .text(sys.text("exe") ?? "")
            r["partial"] = "false"
            r["cwd"] = .text(event.first(AuditType.cwd)?.text("cwd") ?? "")
            r["path"] = .text(operation.path)
            r["dest_path"] = .text(operation.dest ?? "")
            for key in ["uid", "gid", "auid", "euid", "egid", "fsuid", "fsgid", "suid", "sgid"] { r[key] = .text(sys.raw(key) ?? "") }
            r["uptime"] = .integer(uptime)
        }
    }
}
