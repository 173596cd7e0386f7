import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Reads /proc files relative to an open /proc directory into one reused buffer.
final class ProcReader {
    var buffer = [UInt8](repeating: 0, count: 16384)
    let procFD: Int32

    init() {
        procFD = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    }

    deinit {
        if procFD >= 0 { close(procFD) }
    }

    /// Read `relative` (e.g. "123/stat") into `buffer`; returns the byte count or -1.
    func read(_ relative: String) -> Int {
        relative.withCString { read(at: procFD, $0) }
    }

    /// Open a process directory (e.g. "123") for reads relative to it.
    func openProcess(_ pid: Int32) -> Int32 {
        var name: (CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &name) { raw in
            var digits: [UInt8] = []
            var v = pid
            repeat { digits.append(UInt8(48 + v % 10)); v /= 10 } while v > 0
            for (i, d) in digits.reversed().enumerated() { raw[i] = d }
            return openat(procFD, raw.baseAddress!.assumingMemoryBound(to: CChar.self), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
    }

    /// Read a file relative to a directory descriptor into `buffer`.
    func read(at dirFD: Int32, _ name: UnsafePointer<CChar>) -> Int {
        let fd = openat(dirFD, name, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return -1 }
        defer { close(fd) }
        var total = 0
        while true {
            if total == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 {
                if errno == EINTR { continue }
                return total > 0 ? total : -1
            }
            if n == 0 { return total }
            total += n
        }
    }

    /// readlink relative to /proc, as raw bytes.
    func link(_ relative: String) -> [UInt8]? {
        relative.withCString { link(at: procFD, $0) }
    }

    func link(at dirFD: Int32, _ name: UnsafePointer<CChar>) -> [UInt8]? {
        let n = buffer.withUnsafeMutableBytes { readlinkat(dirFD, name, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        if n < 0 { return nil }
        return Array(buffer[0..<n])
    }

    /// Numeric directory entries of /proc.
    func pids() -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [Int32] = []
        out.reserveCapacity(512)
        while let entry = readdir(dir) {
            let pid: Int32 = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                var v: Int32 = 0
                for b in raw {
                    if b == 0 { break }
                    guard b >= 48 && b <= 57 else { return -1 }
                    v = v * 10 + Int32(b - 48)
                }
                return v
            }
            if pid > 0 { out.append(pid) }
        }
        return out
    }
}

enum ProcessTables {
    static let columns: [TableColumn] = [
        col("pid", .bigint, [.index, .optimized]), col("name", .text), col("path", .text), col("cmdline", .text),
        col("state", .text), col("cwd", .text), col("root", .text), col("uid", .bigint), col("gid", .bigint),
        col("euid", .bigint), col("egid", .bigint), col("suid", .bigint), col("sgid", .bigint), col("on_disk", .integer),
        col("wired_size", .bigint), col("resident_size", .bigint), col("total_size", .bigint), col("user_time", .bigint),
        col("system_time", .bigint), col("disk_bytes_read", .bigint), col("disk_bytes_written", .bigint),
        col("start_time", .bigint), col("parent", .bigint), col("pgroup", .bigint), col("threads", .integer),
        col("nice", .integer), col("cgroup_path", .text),
    ]

    static func processes() -> FunctionTable {
        table("processes", columns, attributes: .cacheable) { context, schema in
            try generate(context, schema)
        }
    }

    /// Which per-process files a query needs (from colsUsed).
    struct Needs: Sendable {
        var status, cmdline, path, cwd, root, io, cgroup: Bool
    }

    static func generate(_ context: QueryContext, _ schema: TableSchema) throws -> TableRows {
        var pids: [Int32]
        let wanted = context.equalities(for: "pid")
        if !wanted.isEmpty {
            pids = wanted.compactMap { Int32($0) }
        } else {
            pids = ProcReader().pids()
        }
        let needs = Needs(
            status: context.isAnyColumnUsed(["uid", "gid", "euid", "egid", "suid", "sgid"]),
            cmdline: context.isColumnUsed("cmdline"),
            path: context.isColumnUsed("path") || context.isColumnUsed("on_disk"),
            cwd: context.isColumnUsed("cwd"),
            root: context.isColumnUsed("root"),
            io: context.isAnyColumnUsed(["disk_bytes_read", "disk_bytes_written"]),
            cgroup: context.isColumnUsed("cgroup_path")
        )
        // Reading /proc is kernel work that parallelises well: split large
        // scans over the available cores (plain threads, not the Swift pool).
        let workers = pids.count >= 64 ? min(4, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))) : 1
        let chunk = (pids.count + workers - 1) / max(1, workers)
        let frozen = pids
        let columnCount = schema.columns.count
        let parts = Parallel.map(workers) { w -> (TableRows, Int) in
            let lower = min(frozen.count, w * chunk)
            let upper = min(frozen.count, lower + chunk)
            return ProcessTables.rows(for: frozen[lower..<upper], needs: needs, columnCount: columnCount)
        }
        var result = TableRows(columnCount: columnCount, reservingRows: pids.count)
        var denied = 0
        for (part, d) in parts {
            result.append(contentsOf: part)
            denied += d
        }
        if denied > 0 {
            StatusLog.info("processes: \(denied) processes' executable paths are not readable as uid \(getuid())")
        }
        return result
    }

    static func rows(for pids: ArraySlice<Int32>, needs: Needs, columnCount: Int) -> (TableRows, Int) {
        let reader = ProcReader()
        let needStatus = needs.status, needCmdline = needs.cmdline, needPath = needs.path
        let needCwd = needs.cwd, needRoot = needs.root, needIO = needs.io, needCgroup = needs.cgroup
        let boot = Host.bootTime
        let ticks = max(1, Host.clockTicks)
        let page = Host.pageSize
        var rows = TableRows(columnCount: columnCount, reservingRows: pids.count)
        var denied = 0

        for pid in pids {
            let dir = reader.openProcess(pid)
            if dir < 0 { continue }
            defer { close(dir) }
            // stat: "pid (comm) S ppid pgrp ..." — comm may contain spaces and ')'.
            let n = reader.read(at: dir, "stat")
            if n <= 0 { continue }
            var name: SQLValue = .text("")
            var fields: [Int64] = []
            var state: SQLValue = .text("")
            reader.buffer.withUnsafeBufferPointer { buf in
                let b = UnsafeBufferPointer(rebasing: buf[0..<n])
                guard let open = b.firstIndex(of: 40), let close = b.lastIndex(of: 41), close > open else { return }
                name = .text(bytes: b[(open + 1)..<close])
                var i = close + 2
                if i < n { state = .text(String(UnicodeScalar(b[i]))) }
                i += 2
                fields.reserveCapacity(24)
                // fields[0] = ppid (field 4) …
                while i < n && fields.count < 22 {
                    var j = i
                    while j < n && b[j] != 32 && b[j] != 10 { j += 1 }
                    fields.append(parseInt(b[i..<j]))
                    i = j + 1
                }
            }
            guard fields.count >= 21 else { continue }
            let ppid = fields[0], pgrp = fields[1]
            let utime = fields[10], stime = fields[11]
            let nice = fields[15], threads = fields[16], start = fields[18]
            let vsize = fields[19], rss = fields[20]

            var ids: [Int64] = [-1, -1, -1, -1, -1, -1]  // uid euid suid gid egid sgid
            if needStatus {
                let m = reader.read(at: dir, "status")
                if m > 0 {
                    reader.buffer.withUnsafeBufferPointer { buf in
                        let b = UnsafeBufferPointer(rebasing: buf[0..<m])
                        var lineStart = 0
                        var found = 0
                        while lineStart < m && found < 2 {
                            var end = lineStart
                            while end < m && b[end] != 10 { end += 1 }
                            let isUid = end - lineStart > 4 && b[lineStart] == 85 && b[lineStart + 1] == 105 && b[lineStart + 2] == 100 && b[lineStart + 3] == 58
                            let isGid = end - lineStart > 4 && b[lineStart] == 71 && b[lineStart + 1] == 105 && b[lineStart + 2] == 100 && b[lineStart + 3] == 58
                            if isUid || isGid {
                                var values: [Int64] = []
                                var i = lineStart + 4
                                while i < end && values.count < 3 {
                                    while i < end && (b[i] == 9 || b[i] == 32) { i += 1 }
                                    var j = i
                                    while j < end && b[j] != 9 && b[j] != 32 { j += 1 }
                                    if j > i { values.append(parseInt(b[i..<j])) }
                                    i = j
                                }
                                if values.count == 3 {
                                    let base = isUid ? 0 : 3
                                    ids[base] = values[0]; ids[base + 1] = values[1]; ids[base + 2] = values[2]
                                }
                                found += 1
                            }
                            lineStart = end + 1
                        }
                    }
                }
            }

            var cmdline: SQLValue = .text("")
            if needCmdline {
                let m = reader.read(at: dir, "cmdline")
                if m > 0 {
                    var end = m
                    while end > 0 && reader.buffer[end - 1] == 0 { end -= 1 }
                    for i in 0..<end where reader.buffer[i] == 0 { reader.buffer[i] = 32 }
                    cmdline = .text(bytes: reader.buffer[0..<end])
                }
            }

            var path: SQLValue = .text("")
            var onDisk: Int64 = -1
            if needPath {
                if let target = reader.link(at: dir, "exe") {
                    var bytes = target
                    let deleted = Array(" (deleted)".utf8)
                    var isDeleted = false
                    if bytes.count > deleted.count && Array(bytes.suffix(deleted.count)) == deleted {
                        bytes.removeLast(deleted.count)
                        isDeleted = true
                    }
                    path = .text(bytes: bytes)
                    onDisk = isDeleted ? 0 : 1
                } else {
                    denied += 1
                }
            }
            let cwd: SQLValue = needCwd ? (reader.link(at: dir, "cwd").map { .text(bytes: $0) } ?? .text("")) : .null
            let root: SQLValue = needRoot ? (reader.link(at: dir, "root").map { .text(bytes: $0) } ?? .text("")) : .null

            var readBytes: Int64 = -1, writeBytes: Int64 = -1
            if needIO {
                let m = reader.read(at: dir, "io")
                if m > 0 {
                    // Lines "name: value"; read_bytes and write_bytes are the 5th and 6th.
                    var line = 0, i = 0
                    while i < m && line < 6 {
                        var j = i
                        while j < m && reader.buffer[j] != 10 { j += 1 }
                        if line == 4 || line == 5, let colon = reader.buffer[i..<j].firstIndex(of: 58) {
                            let v = parseInt(reader.buffer[(colon + 2)..<j])
                            if line == 4 { readBytes = v } else { writeBytes = v }
                        }
                        line += 1
                        i = j + 1
                    }
                }
            }

            var cgroup: SQLValue = .text("")
            if needCgroup {
                let m = reader.read(at: dir, "cgroup")
                if m > 0 {
                    let text = String(decoding: reader.buffer[0..<m], as: UTF8.self)
                    let lines = text.split(separator: "\n")
                    let line = lines.first { $0.hasPrefix("0::") } ?? lines.first
                    if let line, let colon = line.lastIndex(of: ":") {
                        cgroup = .text(String(line[line.index(after: colon)...]))
                    }
                }
            }

            rows.append(.integer(Int64(pid)))
            rows.append(name)
            rows.append(path)
            rows.append(cmdline)
            rows.append(state)
            rows.append(cwd)
            rows.append(root)
            rows.append(.integer(ids[0]))
            rows.append(.integer(ids[3]))
            rows.append(.integer(ids[1]))
            rows.append(.integer(ids[4]))
            rows.append(.integer(ids[2]))
            rows.append(.integer(ids[5]))
            rows.append(.integer(onDisk))
            rows.append(.integer(0))
            rows.append(.integer(rss * page))
            rows.append(.integer(vsize))
            rows.append(.integer(utime * 1000 / ticks))
            rows.append(.integer(stime * 1000 / ticks))
            rows.append(.integer(readBytes))
            rows.append(.integer(writeBytes))
            rows.append(.integer(boot + start / ticks))
            rows.append(.integer(ppid))
            rows.append(.integer(pgrp))
            rows.append(.integer(threads))
            rows.append(.integer(nice))
            rows.append(cgroup)
        }
        return (rows, denied)
    }
}
