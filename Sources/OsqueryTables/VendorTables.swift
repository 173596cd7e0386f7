internal import CSystemHeaders
import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's vendor-agent and firmware tables: `carbon_black_info` (a Carbon Black sensor's files)
/// and `intel_me_info` (the Intel ME firmware version through the mei driver).
enum VendorTables {
    // MARK: carbon_black_info

    /// The settings osquery reads from the sensor's `[CB]` section, in column order.
    static let carbonBlackSettings: [(column: String, key: String)] = [
        ("collect_store_files", "CollectStoreFiles"), ("collect_module_loads", "CollectModuleLoads"),
        ("collect_module_info", "CollectModuleInfo"), ("collect_file_mods", "CollectFileMods"),
        ("collect_reg_mods", "CollectRegMods"), ("collect_net_conns", "CollectNetConns"),
        ("collect_processes", "CollectProcesses"), ("collect_cross_processes", "CollectCrossProcess"),
        ("collect_emet_events", "CollectEmetEvents"),
    ]

    /// Keys of an INI file's section (`[name]`), as boost's INI parser reads them: `key=value`
    /// lines, whitespace trimmed, `;` and `#` lines skipped; nil if a line is not INI.
    static func iniSection(_ text: String, _ name: String) -> [String: String]? {
        var values: [String: String] = [:]
        var section = ""
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = String(raw).trimmingASCIIWhitespace()
            if line.isEmpty || line.hasPrefix(";") || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { return nil }
                section = String(line.dropFirst().dropLast()).trimmingASCIIWhitespace()
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { return nil }
            if section == name {
                values[String(line[..<eq]).trimmingASCIIWhitespace()] = String(line[line.index(after: eq)...]).trimmingASCIIWhitespace()
            }
        }
        return values
    }

    /// Sizes of the sensor's queues under `root`: `filedata`/`metadata` files (binaries to send)
    /// and files whose stem is `events`; at most `limit` entries are looked at.
    static func carbonBlackQueues(_ root: String, limit: Int = 100_000) -> (binary: Int64, events: Int64)? {
        guard let top = opendir(root) else { return nil }
        closedir(top)
        var binary: Int64 = 0, events: Int64 = 0, seen = 0
        var pending = [root]
        while let dir = pending.popLast() {
            guard let handle = opendir(dir) else { continue }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                seen += 1
                if seen > limit { return (binary, events) }
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                let path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                if st.st_mode & S_IFMT == S_IFDIR {
                    pending.append(path)
                    continue
                }
                guard st.st_mode & S_IFMT == S_IFREG else { continue }
                if name == "filedata" || name == "metadata" { binary += Int64(st.st_size) }
                let stem = name.hasPrefix(".") ? name : String(name[..<(name.lastIndex(of: ".") ?? name.endIndex)])
                if stem == "events" { events += Int64(st.st_size) }
            }
        }
        return (binary, events)
    }

    /// One row, as osquery: the sensor id from `sensor.id`, the settings from
    /// `sensorsettings.ini`, the queue sizes; columns it cannot read stay empty.
    static func carbonBlackInfo(root: String = "/var/lib/cb", readMax: @escaping @Sendable () -> UInt64 = { 1 << 20 }, log: OnceLog = .shared)
        -> FunctionTable
    {
        table("carbon_black_info", [
            col("sensor_id", .integer), col("config_name", .text), col("collect_store_files", .integer),
            col("collect_module_loads", .integer), col("collect_module_info", .integer), col("collect_file_mods", .integer),
            col("collect_reg_mods", .integer), col("collect_net_conns", .integer), col("collect_processes", .integer),
            col("collect_cross_processes", .integer), col("collect_emet_events", .integer), col("collect_data_file_writes", .integer),
            col("collect_process_user_context", .integer), col("collect_sensor_operations", .integer),
            col("log_file_disk_quota_mb", .integer), col("log_file_disk_quota_percentage", .integer),
            col("protection_disabled", .integer), col("sensor_ip_addr", .text), col("sensor_backend_server", .text),
            col("event_queue", .integer), col("binary_queue", .integer),
        ], aliases: ["cb_info"]) { _, schema in
            var row = [String: SQLValue]()
            // sensor.id: 16 characters, the sensor id in hex from the twelfth on.
            if let id = BoundedFile.text(root + "/sensor.id", limit: 4096), id.utf8.count == 16 {
                // std::hex extraction: the leading hex digits.
                let digits = Array(id.utf8.dropFirst(11)).prefix { ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }
                if let value = UInt32(String(decoding: digits, as: UTF8.self), radix: 16) { row["sensor_id"] = .integer(Int64(value)) }
            }
            let settingsPath = root + "/sensorsettings.ini"
            if let text = BoundedFile.text(settingsPath, limit: readMax()) {
                if let cb = iniSection(text, "CB") {
                    row["config_name"] = .text((cb["ConfigName"] ?? "").replacingAll("%20", with: " "))
                    for (column, key) in carbonBlackSettings {
                        row[column] = .integer(Int64(cb[key] ?? "-1") ?? -1)
                    }
                    row["sensor_backend_server"] = .text((cb["SensorBackendServer"] ?? "").replacingAll("%3A", with: ":"))
                    for column in ["collect_data_file_writes", "collect_sensor_operations", "log_file_disk_quota_mb",
                                   "log_file_disk_quota_percentage", "protection_disabled", "collect_process_user_context"]
                    {
                        row[column] = .integer(0)
                    }
                    row["sensor_ip_addr"] = .text("")
                } else {
                    log.info("Error parsing ini file: \(settingsPath)")
                }
            }
            if let (binary, events) = carbonBlackQueues(root) {
                row["binary_queue"] = .integer(binary)
                row["event_queue"] = .integer(events)
            }
            var rows = TableRows(schema: schema)
            rows.appendRow(schema.columns.map { row[$0.name] ?? .null })
            return rows
        }
    }

    // MARK: intel_me_info

    /// The mei driver's connect ioctl (`IOCTL_MEI_CONNECT_CLIENT`) and the MKHI update client's GUID.
    static let meiConnect: UInt = 0xC010_4801
    static let meiUpdateGUID: [UInt8] = [232, 205, 157, 48, 177, 204, 98, 64, 143, 120, 96, 1, 21, 163, 67, 39]
    /// `struct mei_version`: 7 words of details, then major, minor, hotfix, build (16 bits each), …
    static let meiVersionSize = 7 * 4 + 14 * 2

    /// The firmware version as osquery reads it: connect to the update client, ask with a
    /// 4-byte zero command, read the version. The answer is waited for at most `timeout` ms.
    static func meiVersion(device: String, timeout: Int32 = 2000, log: OnceLog) -> String? {
        let fd = open(device, O_RDWR | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            log.info("Cannot open MEI device \(device): \(String(cString: strerror(errno)))")
            return nil
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFCHR else {
            log.info("Cannot open MEI device \(device): not a character device")
            return nil
        }
        var buffer = [UInt8](repeating: 0, count: 18)
        buffer.replaceSubrange(0..<16, with: meiUpdateGUID)
        guard buffer.withUnsafeMutableBytes({ osq_ioctl_pointer(fd, meiConnect, $0.baseAddress) }) != -1 else {
            log.info("Intel MEI is not accessible: \(String(cString: strerror(errno)))")
            return nil
        }
        // The reply: max message length (32 bits), then the client's protocol version.
        guard buffer[4] == 1 else {
            log.info("Intel MEI version is unsupported")
            return nil
        }
        var command: [UInt8] = [0, 0, 0, 0]
        guard command.withUnsafeMutableBytes({ write(fd, $0.baseAddress, 4) }) == 4 else { return nil }
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, timeout) == 1 else {
            log.info("Intel MEI did not answer within \(timeout) ms")
            return nil
        }
        var version = [UInt8](repeating: 0, count: meiVersionSize)
        guard version.withUnsafeMutableBytes({ read(fd, $0.baseAddress, meiVersionSize) }) == meiVersionSize else { return nil }
        func half(_ at: Int) -> UInt16 { UInt16(version[at]) | UInt16(version[at + 1]) << 8 }
        return "\(half(28)).\(half(30)).\(half(32)).\(half(34))"
    }

    static func intelMEInfo(device: String = "/dev/mei0", log: OnceLog = .shared) -> FunctionTable {
        table("intel_me_info", [col("version", .text, .collateVersion)]) { _, schema in
            var rows = TableRows(schema: schema)
            if let version = meiVersion(device: device, log: log) { rows.appendRow([.text(version)]) }
            return rows
        }
    }
}
