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
            // Decimal digits written in place (no array per process); the tuple's last byte
            // stays NUL.
            var count = 0
            var v = max(0, pid)
            repeat { count += 1; v /= 10 } while v > 0
            v = max(0, pid)
            for i in stride(from: count - 1, through: 0, by: -1) {
                raw[i] = UInt8(48 + v % 10)
                v /= 10
            }
            return openat(procFD, raw.baseAddress!.assumingMemoryBound(to: CChar.self), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
    }

    /// Read a file relative to a directory descriptor into `buffer`. With `whole`, the file is
    /// one that the kernel renders in full per read (a per-pid single-record file such as stat,
    /// status, io, cgroup), so a short read is its end, as procps reads them: that saves a second,
    /// empty read per file. Multi-record files (/proc/net/*) come a page at a time and must be
    /// read to EOF.
    func read(at dirFD: Int32, _ name: UnsafePointer<CChar>, whole: Bool = false) -> Int {
        let fd = openat(dirFD, name, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return -1 }
        defer { close(fd) }
        var total = 0
        while true {
            if total == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
            let room = buffer.count - total
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + total, room) }
            if n < 0 {
                if errno == EINTR { continue }
                return total > 0 ? total : -1
            }
            total += n
            if n == 0 || (whole && n < room) { return total }
        }
    }

    /// readlink relative to a directory into `buffer`; the byte count or -1.
    func readLink(at dirFD: Int32, _ name: UnsafePointer<CChar>) -> Int {
        buffer.withUnsafeMutableBytes { readlinkat(dirFD, name, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    /// The first `count` bytes of `buffer`.
    func withBytes<R>(_ count: Int, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        buffer.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[0..<count])) }
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
        col("nice", .integer),
        // osquery's columns of other platforms, hidden on Linux.
        col("elevated_token", .integer, .hidden), col("secure_process", .integer, .hidden),
        col("protection_type", .text, .hidden), col("virtual_process", .integer, .hidden),
        col("elapsed_time", .bigint, .hidden), col("handle_count", .bigint, .hidden),
        col("percent_processor_time", .bigint, .hidden), col("upid", .bigint, .hidden), col("uppid", .bigint, .hidden),
        col("cpu_type", .integer, .hidden), col("cpu_subtype", .integer, .hidden), col("translated", .integer, .hidden),
        col("cgroup_path", .text),
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

    /// Scans smaller than this run on the calling thread. Measured on a 2-vCPU host with 70–90
    /// processes: a second thread did not shorten `SELECT * FROM processes` (6.73 ms with it,
    /// 6.51 ms without; thread start, a second reader and the merge cost what the split saved).
    static let threadedScanMinimum = 512

    static func generate(_ context: QueryContext, _ schema: TableSchema, threadedMinimum: Int = threadedScanMinimum) throws -> TableRows {
        let reader = ProcReader()
        var pids: [Int32]
        let wanted = context.equalities(for: "pid")
        if !wanted.isEmpty {
            pids = wanted.compactMap { Int32($0) }
        } else {
            pids = reader.pids()
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
        let columnCount = schema.columns.count
        let boot = Host.bootTime  // read /proc/stat once, not per worker
        // Reading /proc is kernel work that parallelises on large hosts: split big scans over
        // the available cores (plain threads, not the Swift pool).
        let workers = pids.count >= threadedMinimum ? min(4, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))) : 1
        let result: TableRows
        var denied = 0
        if workers == 1 {
            (result, denied) = rows(for: pids[...], reader: reader, needs: needs, columnCount: columnCount, boot: boot)
        } else {
            let chunk = (pids.count + workers - 1) / workers
            let frozen = pids
            let parts = Parallel.map(workers) { w -> (TableRows, Int) in
                let lower = min(frozen.count, w * chunk)
                let upper = min(frozen.count, lower + chunk)
                return ProcessTables.rows(for: frozen[lower..<upper], reader: ProcReader(), needs: needs, columnCount: columnCount, boot: boot)
            }
            var merged = TableRows(columnCount: columnCount, reservingRows: pids.count)
            for (part, d) in parts {
                merged.append(contentsOf: part)
                denied += d
            }
            result = merged
        }
        if denied > 0 {
            StatusLog.info("processes: \(denied) processes' executable paths are not readable as uid \(getuid())")
        }
        return result
    }

    static func rows(for pids: ArraySlice<Int32>, reader: ProcReader, needs: Needs, columnCount: Int, boot: Int64) -> (TableRows, Int) {
        let needStatus = needs.status, needCmdline = needs.cmdline, needPath = needs.path
        let needCwd = needs.cwd, needRoot = needs.root, needIO = needs.io, needCgroup = needs.cgroup
        let ticks = max(1, Host.clockTicks)
        let page = Host.pageSize
        var rows = TableRows(columnCount: columnCount, reservingRows: pids.count)
        var denied = 0

        for pid in pids {
            let dir = reader.openProcess(pid)
            if dir < 0 { continue }
            defer { close(dir) }
            let n = reader.read(at: dir, "stat", whole: true)
            if n <= 0 { continue }
            guard let stat = reader.withBytes(n, { ProcStat.parse($0) }) else { continue }

            var ids = ProcIDs()
            if needStatus {
                let m = reader.read(at: dir, "status", whole: true)
                if m > 0 { ids = reader.withBytes(m) { ProcIDs.parse($0) } }
            }

            var cmdline: SQLValue = .text("")
            if needCmdline {
                let m = reader.read(at: dir, "cmdline")
                if m > 0 {
                    cmdline = reader.buffer.withUnsafeMutableBufferPointer {
                        ProcParse.cmdline(UnsafeMutableBufferPointer(rebasing: $0[0..<m]))
                    }
                }
            }

            var path: SQLValue = .text("")
            var onDisk: Int64 = -1
            if needPath {
                let m = reader.readLink(at: dir, "exe")
                if m >= 0 {
                    (path, onDisk) = reader.withBytes(m) { ProcParse.executable($0) }
                } else {
                    denied += 1
                }
            }
            var cwd: SQLValue = .null
            if needCwd {
                let m = reader.readLink(at: dir, "cwd")
                cwd = m >= 0 ? reader.withBytes(m) { procText($0) } : .text("")
            }
            var root: SQLValue = .null
            if needRoot {
                let m = reader.readLink(at: dir, "root")
                root = m >= 0 ? reader.withBytes(m) { procText($0) } : .text("")
            }

            var io: (read: Int64, written: Int64) = (-1, -1)
            if needIO {
                let m = reader.read(at: dir, "io", whole: true)
                if m > 0 { io = reader.withBytes(m) { ProcParse.io($0) } }
            }

            var cgroup: SQLValue = .text("")
            if needCgroup {
                let m = reader.read(at: dir, "cgroup", whole: true)
                if m > 0 { cgroup = reader.withBytes(m) { ProcParse.cgroup($0) } }
            }

            rows.append(.integer(Int64(pid)))
            rows.append(stat.name)
            rows.append(path)
            rows.append(cmdline)
            rows.append(stat.state)
            rows.append(cwd)
            rows.append(root)
            rows.append(.integer(ids.uid))
            rows.append(.integer(ids.gid))
            rows.append(.integer(ids.euid))
            rows.append(.integer(ids.egid))
            rows.append(.integer(ids.suid))
            rows.append(.integer(ids.sgid))
            rows.append(.integer(onDisk))
            rows.append(.integer(0))
            rows.append(.integer(stat.rss * page))
            rows.append(.integer(stat.vsize))
            rows.append(.integer(stat.utime * 1000 / ticks))
            rows.append(.integer(stat.stime * 1000 / ticks))
            rows.append(.integer(io.read))
            rows.append(.integer(io.written))
            rows.append(.integer(boot + stat.start / ticks))
            rows.append(.integer(stat.ppid))
            rows.append(.integer(stat.pgrp))
            rows.append(.integer(stat.threads))
            rows.append(.integer(stat.nice))
            for _ in 0..<12 { rows.append(.null) }
            rows.append(cgroup)
        }
        return (rows, denied)
    }
}
