import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Kernel tables osquery reads from /proc: arp_cache (/proc/net/arp), shared_memory
/// (System V segments, from /proc/sysvipc/shm: the same fields as shmctl(SHM_STAT) without
/// walking ids), process_envs, process_namespaces and interface_ipv6.
enum KernelStateTables {
    /// Each interface's IPv6 settings as the kernel applies them, combined with the `all`
    /// settings as osquery combines them (ip-sysctl.txt: some are ORed, some ANDed).
    static func interfaceIPv6(flags: Flags) -> FunctionTable {
        table("interface_ipv6", [
            col("interface", .text), col("hop_limit", .integer), col("forwarding_enabled", .integer),
            col("redirect_accept", .integer), col("rtadv_accept", .integer),
        ]) { _, schema in
            let readMax = flags[.readMax]
            func setting(_ interface: String, _ name: String) -> Int64 {
                let text = BoundedFile.text("/proc/sys/net/ipv6/conf/\(interface)/\(name)", limit: readMax)
                return text.flatMap { Int64(Int32($0.trimmingASCIIWhitespace()) ?? -1) } ?? -1
            }
            var rows = TableRows(schema: schema)
            let allRedirects = setting("all", "accept_redirects")
            for interface in (FileIO.listDirectoryNames("/sys/class/net") ?? []).sorted() {
                let forwarding = setting(interface, "forwarding")
                let redirects = setting(interface, "accept_redirects")
                let routerAdverts = setting(interface, "accept_ra")
                rows.append(.text(interface))
                rows.append(.integer(setting(interface, "hop_limit")))
                rows.append(.integer(forwarding))
                // C truth values, -1 (unreadable) counting as true, as in osquery.
                let redirect = forwarding != 0 ? (allRedirects != 0 && redirects != 0) : (allRedirects != 0 || redirects != 0)
                rows.append(.integer(redirect ? 1 : 0))
                rows.append(.integer(routerAdverts == 2 ? 1 : (routerAdverts != 0 && forwarding == 0) ? 1 : 0))
            }
            return rows
        }
    }

    /// The processes a `pid` constraint names, else every process.
    static func pids(_ context: QueryContext) -> [Int32] {
        let wanted = context.equalities(for: "pid")
        return wanted.isEmpty ? ProcReader().pids() : wanted.compactMap { Int32($0) }
    }

    static func processEnvs(flags: Flags) -> FunctionTable {
        table("process_envs", [col("pid", .integer, [.index, .optimized]), col("key", .text), col("value", .text)]) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            for pid in pids(context) {
                // Other users' environments are unreadable without root: those processes give no rows.
                guard let bytes = BoundedFile.read("/proc/\(pid)/environ", limit: readMax) else { continue }
                var start = 0
                while start < bytes.count {
                    let end = bytes[start...].firstIndex(of: 0) ?? bytes.count
                    if end == start { break }
                    let entry = bytes[start..<end]
                    rows.append(.integer(Int64(pid)))
                    if let equals = entry.firstIndex(of: 0x3D) {
                        rows.append(.text(bytes: entry[..<equals]))
                        rows.append(.text(bytes: entry[(equals + 1)...]))
                    } else {
                        // osquery's substr(npos + 1): the whole entry is both key and value.
                        rows.append(.text(bytes: entry))
                        rows.append(.text(bytes: entry))
                    }
                    start = end + 1
                }
            }
            return rows
        }
    }

    static let namespaceKinds = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]

    static func processNamespaces() -> FunctionTable {
        table("process_namespaces", [
            col("pid", .integer, [.index, .optimized]), col("cgroup_namespace", .text), col("ipc_namespace", .text),
            col("mnt_namespace", .text), col("net_namespace", .text), col("pid_namespace", .text),
            col("user_namespace", .text), col("uts_namespace", .text),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            for pid in pids(context) {
                let root = "/proc/\(pid)/ns/"
                // A process that is gone (or a pid that never was) gives no row.
                guard FileIO.exists("/proc/\(pid)") else { continue }
                rows.append(.integer(Int64(pid)))
                for kind in namespaceKinds {
                    var st = stat()
                    rows.append(stat(root + kind, &st) == 0 ? .text(String(st.st_ino)) : .null)
                }
            }
            return rows
        }
    }

    static func arpCache(flags: Flags, path: String = "/proc/net/arp") -> FunctionTable {
        table("arp_cache", [
            col("address", .text), col("mac", .text, .collateNocase), col("interface", .text), col("permanent", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let content = BoundedFile.text(path, limit: flags[.readMax]) else {
                StatusLog.info("Cannot read arp table")
                return rows
            }
            // IP address, HW type, Flags, HW address, Mask, Device; the first line is the header.
            for line in content.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count == 6 else { continue }
                rows.append(.text(String(fields[0])))
                rows.append(.text(String(fields[3])))
                rows.append(.text(String(fields[5])))
                // ATF_COM | ATF_PERM
                rows.append(fields[2] == "0x6" ? "1" : "0")
            }
            return rows
        }
    }

    static func sharedMemory(flags: Flags, path: String = "/proc/sysvipc/shm") -> FunctionTable {
        table("shared_memory", [
            col("shmid", .integer), col("owner_uid", .bigint), col("creator_uid", .bigint), col("pid", .bigint),
            col("creator_pid", .bigint), col("atime", .bigint), col("dtime", .bigint), col("ctime", .bigint),
            col("permissions", .text), col("size", .bigint), col("attached", .integer), col("status", .text),
            col("locked", .integer),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let content = BoundedFile.text(path, limit: flags[.readMax]) else {
                StatusLog.info("Linux kernel not configured for shared memory")
                return rows
            }
            // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
            for line in content.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                guard f.count >= 14, let mode = Int(f[2], radix: 8) else { continue }
                func number(_ i: Int) -> SQLValue { Int64(f[i]).map { .integer($0) } ?? .null }
                // osquery reports a uid only when it names a user.
                func user(_ i: Int) -> SQLValue {
                    guard let uid = UInt32(f[i]), getpwuid(uid) != nil else { return .null }
                    return .integer(Int64(uid))
                }
                rows.append(number(1))
                rows.append(user(7))
                rows.append(user(9))
                rows.append(number(5))
                rows.append(number(4))
                rows.append(number(11))
                rows.append(number(12))
                rows.append(number(13))
                // osquery's lsperms: four octal digits, SHM_DEST/SHM_LOCKED in the first.
                let digits = [9, 6, 3, 0].map { String((mode >> $0) & 7) }.joined()
                rows.append(.text(digits))
                rows.append(number(3))
                rows.append(number(6))
                rows.append(.text(mode & 0o1000 != 0 ? "dest" : ""))
                rows.append(.integer(mode & 0o2000 != 0 ? 1 : 0))
            }
            return rows
        }
    }
}
