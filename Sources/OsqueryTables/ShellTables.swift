import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// shell_history (users' shell history files), suid_bin (set-id programs in the usual
/// binary directories) and last (the login records of wtmp).
enum ShellTables {
    static let historyFiles = [".bash_history", ".zsh_history", ".zhistory", ".history", ".sh_history", ".ash_history"]

    static func shellHistory(flags: Flags, users: @escaping SSHTables.Users = { ContextUsers.fromContext($0) }) -> FunctionTable {
        table("shell_history", [
            col("uid", .bigint, [.additional, .optimized]), col("time", .integer), col("command", .text),
            col("history_file", .text),
        ], attributes: .userBased) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            for user in users(context) {
                var files = historyFiles.map { SSHTables.joinedPath(user.directory, $0) }
                let sessions = SSHTables.joinedPath(user.directory, ".bash_sessions")
                files += BoundedFile.files(in: sessions).filter { $0.hasSuffix(".history") }
                for file in files {
                    guard let bytes = BoundedFile.read(file, limit: readMax) else { continue }
                    appendHistory(bytes, uid: user.uid, file: file, to: &rows)
                }
            }
            return rows
        }
    }

    /// Lines of a history file: a bash `#<seconds>` line dates the next line, a zsh extended
    /// line `: <seconds>:<duration>;<command>` dates itself, other lines have time 0.
    static func appendHistory(_ bytes: [UInt8], uid: Int64, file: String, to rows: inout TableRows) {
        var pendingTime: Int64?
        var start = 0
        let fileValue = SQLValue.text(file)
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
            let line = bytes[start..<end]
            start = end + 1
            var time: Int64 = 0
            var command = line
            if let pending = pendingTime {
                time = pending
                pendingTime = nil
            } else if let stamp = bashTimestamp(line) {
                pendingTime = stamp
                continue
            } else if let (stamp, rest) = zshExtended(line) {
                time = stamp
                command = rest
            }
            rows.append(.integer(uid))
            rows.append(.integer(time))
            rows.append(.text(bytes: command))
            rows.append(fileValue)
        }
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// `^#([0-9]+)$`
    static func bashTimestamp(_ line: ArraySlice<UInt8>) -> Int64? {
        guard line.first == 0x23, line.count > 1, line.dropFirst().allSatisfy(isDigit) else { return nil }
        return Int64(String(decoding: line.dropFirst(), as: UTF8.self)) ?? Int64.max
    }

    /// `^: {0,10}([0-9]{1,11}):[0-9]+;(.*)$`
    static func zshExtended(_ line: ArraySlice<UInt8>) -> (Int64, ArraySlice<UInt8>)? {
        guard line.first == 0x3A else { return nil }
        var i = line.startIndex + 1
        var spaces = 0
        while i < line.endIndex, line[i] == 0x20, spaces < 10 { i += 1; spaces += 1 }
        let stampStart = i
        while i < line.endIndex, isDigit(line[i]) { i += 1 }
        let digits = i - stampStart
        guard digits >= 1, digits <= 11, i < line.endIndex, line[i] == 0x3A else { return nil }
        let stamp = parseInt(line[stampStart..<i])
        i += 1
        let durationStart = i
        while i < line.endIndex, isDigit(line[i]) { i += 1 }
        guard i > durationStart, i < line.endIndex, line[i] == 0x3B else { return nil }
        return (stamp, line[(i + 1)...])
    }

    static let binaryDirectories = ["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/tmp"]

    static func suidBin(directories: [String] = binaryDirectories) -> FunctionTable {
        table("suid_bin", [
            col("path", .text), col("username", .text), col("groupname", .text), col("permissions", .text), pidWithNamespace,
        ], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            var users: [uid_t: String] = [:]
            var groups: [gid_t: String] = [:]
            func visit(_ path: PathBytes, _ st: stat) {
                let mode = st.st_mode
                guard mode & (S_ISUID | S_ISGID) != 0 else { return }
                rows.append(.text(bytes: path))
                if users[st.st_uid] == nil {
                    users[st.st_uid] = getpwuid(st.st_uid).map { String(cString: $0.pointee.pw_name) } ?? String(st.st_uid)
                }
                if groups[st.st_gid] == nil {
                    groups[st.st_gid] = getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) } ?? String(st.st_gid)
                }
                rows.append(.text(users[st.st_uid]!))
                rows.append(.text(groups[st.st_gid]!))
                rows.append(.text((mode & S_ISUID != 0 ? "S" : "") + (mode & S_ISGID != 0 ? "G" : "")))
                rows.append(.integer(0))
            }
            // A directory's links are followed for the file they name, not walked into (as
            // boost's recursive iterator); the start directory itself may be a link (/bin).
            // Entries come in directory order, as osquery's: sorting them cost most of the
            // scan's CPU when /tmp holds large scratch trees.
            func walk(_ directory: PathBytes, depth: Int) {
                guard depth < 64, let names = PathResolver.listRaw(directory) else { return }
                for name in names {
                    let path = joinPath(directory, name)
                    var st = stat()
                    guard withCPath(path, { lstat($0, &st) }) == 0 else { continue }
                    switch st.st_mode & S_IFMT {
                    case S_IFDIR: walk(path, depth: depth + 1)
                    case S_IFREG: visit(path, st)
                    case S_IFLNK:
                        var target = stat()
                        if withCPath(path, { stat($0, &target) }) == 0, (target.st_mode & S_IFMT) == S_IFREG { visit(path, target) }
                    default: continue
                    }
                }
            }
            for directory in directories { walk(Array(directory.utf8), depth: 0) }
            return rows
        }
    }

    static func last(flags: Flags, path: String = "/var/log/wtmp") -> FunctionTable {
        table("last", [
            col("username", .text), col("tty", .text), col("pid", .integer), col("type", .integer),
            col("type_name", .text), col("time", .integer), col("host", .text),
        ], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            // Records are read from the file, not through glibc's utmpxname, whose file choice
            // is process-wide state shared with logged_in_users.
            guard let bytes = BoundedFile.read(path, limit: flags[.readMax]) else { return rows }
            let size = MemoryLayout<utmpx>.size
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset + size <= raw.count {
                    let record = raw.loadUnaligned(fromByteOffset: offset, as: utmpx.self)
                    offset += size
                    let type = Int32(record.ut_type)
                    guard type == USER_PROCESS || type == DEAD_PROCESS else { continue }
                    rows.append(.text(bytes: cField(record.ut_user)))
                    rows.append(.text(bytes: cField(record.ut_line)))
                    rows.append(.integer(Int64(record.ut_pid)))
                    rows.append(.integer(Int64(type)))
                    rows.append(.text(type == USER_PROCESS ? "user-process" : "dead-process"))
                    rows.append(.integer(Int64(record.ut_tv.tv_sec)))
                    rows.append(.text(bytes: cField(record.ut_host)))
                }
            }
            return rows
        }
    }

    /// A fixed-size C char field: up to its first NUL, or all of it.
    static func cField<T>(_ field: T) -> [UInt8] {
        withUnsafeBytes(of: field) { raw in
            Array(raw.prefix { $0 != 0 })
        }
    }
}
