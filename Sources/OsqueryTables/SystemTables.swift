import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

enum SystemTables {
    static func dmi(_ name: String) -> String {
        FileIO.readLine("/sys/class/dmi/id/" + name) ?? ""
    }

    static func systemInfo() -> FunctionTable {
        table("system_info", [
            col("hostname", .text), col("uuid", .text, .collateNocase), col("cpu_type", .text), col("cpu_subtype", .text),
            col("cpu_brand", .text), col("cpu_physical_cores", .integer), col("cpu_logical_cores", .integer),
            col("cpu_sockets", .integer), col("cpu_microcode", .text), col("physical_memory", .bigint),
            col("hardware_vendor", .text), col("hardware_model", .text), col("hardware_version", .text),
            col("hardware_serial", .text), col("board_vendor", .text), col("board_model", .text),
            col("board_version", .text), col("board_serial", .text), col("computer_name", .text),
            col("local_hostname", .text), col("emulated_cpu_type", .text, .hidden),
        ]) { _, schema in
            var brand = "", subtype = "", microcode = ""
            var logical = 0
            var cores = Set<String>()
            var sockets = Set<String>()
            var physicalID = "0"
            for line in Text.lines("/proc/cpuinfo") {
                guard let i = line.firstIndex(of: ":") else { continue }
                let key = line[..<i].trimmingCharacters()
                let value = line[line.index(after: i)...].trimmingCharacters()
                switch key {
                case "processor": logical += 1
                case "model name": if brand.isEmpty { brand = value }
                case "model": if subtype.isEmpty { subtype = value }
                case "microcode": if microcode.isEmpty { microcode = value }
                case "physical id": physicalID = value; sockets.insert(value)
                case "core id": cores.insert(physicalID + ":" + value)
                default: break
                }
            }
            if logical == 0 { logical = Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) }
            let memory = Int64(sysconf(Int32(_SC_PHYS_PAGES))) * Host.pageSize
            let host = Host.hostname()
            let short = String(host.split(separator: ".").first ?? Substring(host))
            if dmi("product_serial").isEmpty && getuid() != 0 {
                StatusLog.info("system_info: DMI serial numbers need root")
            }
            var rows = TableRows(schema: schema, reservingRows: 1)
            rows.appendRow([
                .text(host), .text(Host.uuid), .text(Host.uname().machine), .text(subtype), .text(brand),
                .integer(Int64(cores.isEmpty ? logical : cores.count)), .integer(Int64(logical)),
                .integer(Int64(max(1, sockets.count))), .text(microcode), .integer(memory),
                .text(dmi("sys_vendor")), .text(dmi("product_name")), .text(dmi("product_version")),
                .text(dmi("product_serial")), .text(dmi("board_vendor")), .text(dmi("board_name")),
                .text(dmi("board_version")), .text(dmi("board_serial")), .text(short), .text(short), .null,
            ])
            return rows
        }
    }

    static func osVersion() -> FunctionTable {
        table("os_version", [
            col("name", .text), col("version", .text, .collateVersion), col("major", .integer), col("minor", .integer),
            col("patch", .integer), col("build", .text), col("platform", .text), col("platform_like", .text),
            col("codename", .text), col("arch", .text), col("extra", .text, .hidden), col("install_date", .bigint, .hidden),
            col("revision", .integer, .hidden), pidWithNamespace, mountNamespaceID,
        ]) { _, schema in
            var release = Text.keyValues("/etc/os-release", separator: "=").mapValues(Text.unquote)
            if release.isEmpty { release = Text.keyValues("/usr/lib/os-release", separator: "=").mapValues(Text.unquote) }
            var name = release["NAME"] ?? ""
            var version = release["VERSION"] ?? ""
            var versionID = release["VERSION_ID"] ?? ""
            if name.isEmpty, let redhat = FileIO.readLine("/etc/redhat-release") {
                name = redhat
                version = redhat
                versionID = redhat.split(separator: " ").first(where: { $0.first?.isNumber == true }).map(String.init) ?? ""
            }
            let parts = versionID.split(separator: ".").map { Int64($0) }
            func part(_ i: Int) -> SQLValue { i < parts.count ? (parts[i].map { .integer($0) } ?? .null) : .null }
            var rows = TableRows(schema: schema, reservingRows: 1)
            rows.appendRow([
                .text(name), .text(version), part(0), part(1), part(2), "",
                .text(release["ID"] ?? ""), .text(release["ID_LIKE"] ?? ""), .text(release["VERSION_CODENAME"] ?? ""),
                .text(Host.uname().machine), .null, .null, .null, .null, .null,
            ])
            return rows
        }
    }

    static func kernelInfo() -> FunctionTable {
        table("kernel_info", [col("version", .text, .collateVersion), col("arguments", .text), col("path", .text), col("device", .text)], attributes: .cacheable) { _, schema in
            let cmdline = FileIO.readLine("/proc/cmdline") ?? ""
            var path = "", device = ""
            var arguments: [Substring] = []
            for word in cmdline.split(separator: " ") {
                if word.hasPrefix("BOOT_IMAGE=") { path = String(word.dropFirst(11)); continue }
                if word.hasPrefix("root=") { device = String(word.dropFirst(5)) }
                arguments.append(word)
            }
            var rows = TableRows(schema: schema, reservingRows: 1)
            rows.appendRow([.text(Host.uname().release), .text(arguments.joined(separator: " ")), .text(path), .text(device)])
            return rows
        }
    }

    static func uptime() -> FunctionTable {
        table("uptime", [
            col("days", .integer), col("hours", .integer), col("minutes", .integer), col("seconds", .integer), col("total_seconds", .bigint),
        ]) { _, schema in
            let first = FileIO.readLine("/proc/uptime")?.split(separator: " ").first ?? ""
            let total = Int64(Double(first) ?? 0)
            var rows = TableRows(schema: schema, reservingRows: 1)
            rows.appendRow([
                .integer(total / 86400), .integer(total % 86400 / 3600), .integer(total % 3600 / 60), .integer(total % 60), .integer(total),
            ])
            return rows
        }
    }

    static func memoryInfo() -> FunctionTable {
        let keys = ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active", "Inactive", "SwapTotal", "SwapFree"]
        return table("memory_info", [
            col("memory_total", .bigint), col("memory_free", .bigint), col("memory_available", .bigint), col("buffers", .bigint),
            col("cached", .bigint), col("swap_cached", .bigint), col("active", .bigint), col("inactive", .bigint),
            col("swap_total", .bigint), col("swap_free", .bigint),
        ]) { _, schema in
            let info = Text.keyValues("/proc/meminfo", separator: ":")
            var rows = TableRows(schema: schema, reservingRows: 1)
            for key in keys {
                if let v = info[key], let kb = Int64(v.split(separator: " ").first ?? "") {
                    rows.append(.integer(kb * 1024))
                } else {
                    rows.append(.null)
                }
            }
            return rows
        }
    }

    static func loadAverage() -> FunctionTable {
        table("load_average", [col("period", .text), col("average", .text)]) { _, schema in
            var loads = [Double](repeating: 0, count: 3)
            let n = getloadavg(&loads, 3)
            var rows = TableRows(schema: schema, reservingRows: 3)
            for (i, period) in ["1m", "5m", "15m"].enumerated() where i < n {
                rows.appendRow([.text(period), .text(sixDecimals(loads[i]))])
            }
            return rows
        }
    }

    /// std::to_string(double): fixed with 6 decimals.
    static func sixDecimals(_ d: Double) -> String {
        let scaled = Int64((d * 1_000_000).rounded())
        let frac = String(abs(scaled) % 1_000_000)
        return "\(scaled / 1_000_000)." + String(repeating: "0", count: 6 - frac.count) + frac
    }

    static func cpuTime() -> FunctionTable {
        table("cpu_time", [
            col("core", .integer), col("user", .bigint), col("nice", .bigint), col("system", .bigint), col("idle", .bigint),
            col("iowait", .bigint), col("irq", .bigint), col("softirq", .bigint), col("steal", .bigint), col("guest", .bigint),
            col("guest_nice", .bigint),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            for line in Text.lines("/proc/stat") where line.hasPrefix("cpu") && !line.hasPrefix("cpu ") {
                let f = Text.fields(line)
                guard f.count >= 11, let core = Int64(f[0].dropFirst(3)) else { continue }
                rows.append(.integer(core))
                for i in 1...10 { rows.append(.integer(Int64(f[i]) ?? 0)) }
            }
            return rows
        }
    }

    static func kernelModules() -> FunctionTable {
        table("kernel_modules", [col("name", .text), col("size", .bigint), col("used_by", .text), col("status", .text), col("address", .text)]) { _, schema in
            var rows = TableRows(schema: schema)
            let lines = Text.lines("/proc/modules")
            if lines.isEmpty { StatusLog.info("kernel_modules: /proc/modules is not readable or empty") }
            for line in lines {
                let f = Text.fields(line)
                guard f.count >= 6 else { continue }
                var usedBy = String(f[3])
                if usedBy.hasSuffix(",") { usedBy.removeLast() }
                rows.appendRow([.text(String(f[0])), .integer(Int64(f[1]) ?? 0), .text(usedBy), .text(String(f[4])), .text(String(f[5]))])
            }
            return rows
        }
    }

    static func mounts() -> FunctionTable {
        table("mounts", [
            col("device", .text), col("device_alias", .text), col("path", .text), col("type", .text), col("blocks_size", .bigint),
            col("blocks", .bigint), col("blocks_free", .bigint), col("blocks_available", .bigint), col("inodes", .bigint),
            col("inodes_free", .bigint), col("flags", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            for line in Text.lines("/proc/mounts") {
                let f = Text.fields(line)
                guard f.count >= 4 else { continue }
                let device = unescapeMount(f[0]), path = unescapeMount(f[1])
                var alias = device
                if device.hasPrefix("/"), let real = realpath(device, nil) {
                    alias = String(cString: real)
                    free(real)
                }
                var st = statvfs()
                let ok = statvfs(path, &st) == 0
                func v(_ x: some BinaryInteger) -> SQLValue { ok ? .integer(Int64(x)) : .null }
                rows.appendRow([
                    .text(device), .text(alias), .text(path), .text(String(f[2])), v(st.f_frsize), v(st.f_blocks),
                    v(st.f_bfree), v(st.f_bavail), v(st.f_files), v(st.f_ffree), .text(String(f[3])),
                ])
            }
            return rows
        }
    }

    /// /proc/mounts escapes space, tab, newline and backslash as octal.
    static func unescapeMount(_ s: Substring) -> String {
        guard s.contains("\\") else { return String(s) }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == 92, i + 3 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func loggedInUsers() -> FunctionTable {
        table("logged_in_users", [
            col("type", .text), col("user", .text), col("tty", .text), col("host", .text), col("time", .bigint), col("pid", .integer),
            col("sid", .text, .hidden), col("registry_hive", .text, .hidden),
        ], attributes: .cacheable) { _, schema in
            let names = ["empty", "runlevel", "boot_time", "new_time", "old_time", "init", "login", "user", "dead", "accounting"]
            var rows = TableRows(schema: schema)
            setutxent()
            defer { endutxent() }
            while let entry = getutxent() {
                let e = entry.pointee
                let type = Int(e.ut_type)
                if type == 0 { continue }
                func text<T>(_ field: T) -> String {
                    withUnsafeBytes(of: field) { raw in
                        let bytes = raw.bindMemory(to: UInt8.self)
                        return String(decoding: bytes[0..<(bytes.firstIndex(of: 0) ?? bytes.count)], as: UTF8.self)
                    }
                }
                rows.appendRow([
                    .text(type < names.count ? names[type] : "unknown"), .text(text(e.ut_user)), .text(text(e.ut_line)),
                    .text(text(e.ut_host)), .integer(Int64(e.ut_tv.tv_sec)), .integer(Int64(e.ut_pid)), .null, .null,
                ])
            }
            return rows
        }
    }
}
