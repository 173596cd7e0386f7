import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Per-process tables osquery builds from /proc/<pid>/fd and /proc/<pid>/maps:
/// process_open_files, process_open_pipes and process_memory_map.
enum ProcessFileTables {
    /// A process's descriptors: (fd, link target bytes), in fd order. Nil when the fd directory
    /// is unreadable (another user's process without root, or the process is gone).
    static func descriptors(_ pid: Int32) -> [(fd: Int64, target: [UInt8])]? {
        let dir = "/proc/\(pid)/fd"
        guard let names = FileIO.listDirectoryNames(dir) else { return nil }
        var out: [(fd: Int64, target: [UInt8])] = []
        out.reserveCapacity(names.count)
        for name in names {
            guard let fd = Int64(name), let target = FileIO.readLink(dir + "/" + name) else { continue }
            out.append((fd, target))
        }
        out.sort { $0.fd < $1.fd }
        return out
    }

    static func hasPrefix(_ bytes: [UInt8], _ prefix: StaticString) -> Bool {
        let n = prefix.utf8CodeUnitCount
        guard bytes.count >= n else { return false }
        return bytes.withUnsafeBytes { memcmp($0.baseAddress!, prefix.utf8Start, n) == 0 }
    }

    /// The pids a `pid = N` constraint names (those that exist), else every process.
    static func pids(_ context: QueryContext) -> [Int32] {
        let wanted = context.equalities(for: "pid")
        if wanted.isEmpty { return ProcReader().pids() }
        return wanted.compactMap { Int32($0) }.filter { $0 > 0 && FileIO.exists("/proc/\($0)") }
    }

    static func processOpenFiles() -> FunctionTable {
        table("process_open_files", [col("pid", .bigint, .index), col("fd", .bigint), col("path", .text)]) { context, schema in
            var rows = TableRows(schema: schema)
            for pid in pids(context) {
                guard let fds = descriptors(pid) else { continue }
                for (fd, target) in fds {
                    // Sockets, pipes and anonymous inodes are not files (osquery leaves them out
                    // here; process_open_sockets and process_open_pipes list them).
                    if hasPrefix(target, "socket:") || hasPrefix(target, "pipe:") || hasPrefix(target, "anon_inode:") { continue }
                    rows.append(.integer(Int64(pid)))
                    rows.append(.integer(fd))
                    rows.append(.text(bytes: target[...]))
                }
            }
            return rows
        }
    }

    struct PipeEnd {
        var pid: Int64, fd: Int64, mode: String, inode: UInt64, named: Bool
    }

    /// "r", "w" or "rw" from the permission bits of /proc/<pid>/fd/<fd> itself, which the kernel
    /// sets from the descriptor's open mode; "-" when it is gone.
    static func mode(_ pid: Int32, _ fd: Int64) -> String {
        var st = stat()
        guard lstat("/proc/\(pid)/fd/\(fd)", &st) == 0 else { return "-" }
        var mode = ""
        if st.st_mode & (S_IRUSR | S_IRGRP | S_IROTH) != 0 { mode += "r" }
        if st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH) != 0 { mode += "w" }
        return mode
    }

    /// Every pipe end of every process, anonymous ("pipe:[inode]") and named (a FIFO path).
    static func pipeEnds() -> [PipeEnd] {
        var ends: [PipeEnd] = []
        for pid in ProcReader().pids() {
            guard let fds = descriptors(pid) else { continue }
            for (fd, target) in fds {
                if hasPrefix(target, "pipe:[") {
                    let digits = target.dropFirst(6).prefix { $0 >= 48 && $0 <= 57 }
                    let inode = UInt64(String(decoding: digits, as: UTF8.self)) ?? 0
                    ends.append(PipeEnd(pid: Int64(pid), fd: fd, mode: mode(pid, fd), inode: inode, named: false))
                } else if target.first == UInt8(ascii: "/") {
                    // A FIFO opened by path; the link names it (stat follows to the FIFO itself).
                    var st = stat()
                    let isFIFO = target.withUnsafeBufferPointer { b -> Bool in
                        var path = Array(b)
                        path.append(0)
                        return path.withUnsafeBufferPointer { stat(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), &st) } == 0
                            && (st.st_mode & S_IFMT) == S_IFIFO
                    }
                    if isFIFO {
                        ends.append(PipeEnd(pid: Int64(pid), fd: fd, mode: mode(pid, fd), inode: UInt64(st.st_ino), named: true))
                    }
                }
            }
        }
        return ends
    }

    static func processOpenPipes() -> FunctionTable {
        table("process_open_pipes", [
            col("pid", .bigint), col("fd", .bigint), col("mode", .text), col("inode", .bigint), col("type", .text),
            col("partner_pid", .bigint), col("partner_fd", .bigint), col("partner_mode", .text),
        ]) { _, schema in
            // Partners may be any process, so every process is read even under a pid constraint
            // (as osquery does); SQLite filters the rows.
            let ends = pipeEnds()
            var byInode: [UInt64: [Int]] = [:]
            for (i, end) in ends.enumerated() { byInode[end.inode, default: []].append(i) }
            var rows = TableRows(schema: schema)
            func start(_ end: PipeEnd) {
                rows.append(.integer(end.pid))
                rows.append(.integer(end.fd))
                rows.append(.text(end.mode))
                rows.append(.integer(Int64(bitPattern: end.inode)))
                rows.append(.text(end.named ? "named" : "anonymous"))
            }
            for (i, end) in ends.enumerated() {
                let partners = byInode[end.inode] ?? []
                if partners.count == 1 {
                    start(end)
                    rows.append(.null); rows.append(.null); rows.append(.null)
                    continue
                }
                // Each other end that can talk to this one: the opposite direction, or any end
                // when this one both reads and writes.
                for j in partners where j != i {
                    let partner = ends[j]
                    guard partner.mode != end.mode || end.mode == "rw" else { continue }
                    start(end)
                    rows.append(.integer(partner.pid))
                    rows.append(.integer(partner.fd))
                    rows.append(.text(partner.mode))
                }
            }
            return rows
        }
    }

    static func processMemoryMap(flags: Flags) -> FunctionTable {
        table("process_memory_map", [
            col("pid", .integer, [.index, .optimized]), col("start", .text), col("end", .text), col("permissions", .text),
            col("offset", .bigint), col("device", .text), col("inode", .integer), col("path", .text), col("pseudo", .integer),
        ]) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            for pid in pids(context) {
                guard let bytes = BoundedFile.read("/proc/\(pid)/maps", limit: readMax) else { continue }
                appendMaps(pid: Int64(pid), bytes, to: &rows)
            }
            return rows
        }
    }

    /// Rows of one /proc/<pid>/maps: "start-end perms offset dev inode   path".
    static func appendMaps(pid: Int64, _ bytes: [UInt8], to rows: inout TableRows) {
        for line in bytes.split(separator: 10) {
            // Five fields, then the path: the rest of the line, which may hold spaces (osquery
            // keeps only its first word).
            var fields: [ArraySlice<UInt8>] = []
            var i = line.startIndex
            while fields.count < 5 && i < line.endIndex {
                while i < line.endIndex && line[i] == 32 { i += 1 }
                let s = i
                while i < line.endIndex && line[i] != 32 { i += 1 }
                if i > s { fields.append(line[s..<i]) }
            }
            guard fields.count == 5, let dash = fields[0].firstIndex(of: UInt8(ascii: "-")) else { continue }
            while i < line.endIndex && line[i] == 32 { i += 1 }
            var pathEnd = line.endIndex
            while pathEnd > i && line[pathEnd - 1] == 32 { pathEnd -= 1 }
            let path = line[i..<pathEnd]
            func text(_ b: ArraySlice<UInt8>) -> String { String(decoding: b, as: UTF8.self) }
            let inode = text(fields[4])
            rows.append(.integer(pid))
            rows.append(.text("0x" + text(fields[0][..<dash])))
            rows.append(.text("0x" + text(fields[0][(dash + 1)...])))
            rows.append(.text(text(fields[1])))
            rows.append(.integer(Int64(text(fields[2]), radix: 16) ?? -1))
            rows.append(.text(text(fields[3])))
            rows.append(.integer(Int64(inode) ?? 0))
            rows.append(.text(bytes: path))
            // An anonymous mapping the kernel names ([heap], [stack], [vdso]...).
            rows.append(.integer(inode == "0" && !path.isEmpty ? 1 : 0))
        }
    }
}
