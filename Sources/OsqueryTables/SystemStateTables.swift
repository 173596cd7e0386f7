import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's tables of RAID arrays, disk encryption, Secure Boot and model-specific registers,
/// read from /proc/mdstat, sysfs, efivarfs and /dev/cpu; each answers no rows, saying why
/// once, where the machine has none.
enum SystemStateTables {
    // MARK: /proc/mdstat

    struct MDAction: Equatable { var progress = "", finish = "", speed = "" }

    struct MDDevice: Equatable {
        var name = "", status = "", raidLevel = ""
        var usableSize: Int64 = 0
        var other = ""
        var drives: [(name: String, position: Int)] = []
        var healthyDrives = "", driveStatuses = ""
        var recovery = MDAction(), resync = MDAction(), reshape = MDAction(), checkArray = MDAction()
        var bitmapOnMem = "", bitmapChunkSize = "", bitmapExternalFile = ""

        static func == (a: MDDevice, b: MDDevice) -> Bool {
            a.name == b.name && a.status == b.status && a.raidLevel == b.raidLevel && a.usableSize == b.usableSize
                && a.other == b.other && a.drives.map(\.name) == b.drives.map(\.name) && a.drives.map(\.position) == b.drives.map(\.position)
                && a.healthyDrives == b.healthyDrives && a.driveStatuses == b.driveStatuses && a.recovery == b.recovery
                && a.resync == b.resync && a.reshape == b.reshape && a.checkArray == b.checkArray
                && a.bitmapOnMem == b.bitmapOnMem && a.bitmapChunkSize == b.bitmapChunkSize && a.bitmapExternalFile == b.bitmapExternalFile
        }
    }

    struct MDStat: Equatable {
        var personalities: [String] = []
        var devices: [MDDevice] = []
        var unused = ""
    }

    /// `"87.5% (917504/1048576) finish=0.1min speed=100000K/sec"`, as osquery cuts it (four
    /// space-separated pieces, the `finish=`/`speed=` letters stripped from the front).
    static func parseAction(_ line: String) -> MDAction? {
        let pieces = osquerySplit(line, " ")
        guard pieces.count == 4 else { return nil }
        func strip(_ s: String, _ letters: String) -> String {
            let set = Set(letters)
            let rest = s.drop { set.contains($0) }
            return rest.isEmpty ? s : String(rest)
        }
        return MDAction(progress: pieces[0] + " " + pieces[1], finish: strip(pieces[2], "finish="), speed: strip(pieces[3], "speed="))
    }

    /// /proc/mdstat as osquery parses it.
    static func parseMDStat(_ text: String) -> MDStat {
        var result = MDStat()
        let lines = osquerySplit(text, "\n")
        guard !lines.isEmpty else { return result }
        var n = 0
        let personalities = "Personalities :"
        if let r = lines[0].firstRange(of: personalities) {
            for token in osquerySplit(lines[0][r.upperBound...], " ") where token.count > 2 {
                result.personalities.append(String(token.dropFirst().dropLast()))
            }
            n = 1
        }
        /// When the line after `n` holds `term`, what follows it (trimmed), and `n` moves on.
        func status(_ term: String) -> String? {
            guard n + 2 <= lines.count, let r = lines[n + 1].firstRange(of: term), lines[n + 1][r.upperBound...].count > 0 else { return nil }
            n += 1
            return String(lines[n][r.upperBound...]).trimmingASCIIWhitespace()
        }
        while n < lines.count {
            let line = lines[n]
            if line.count < 2 { n += 1; continue }
            if line.hasPrefix("md") {
                guard let colon = line.firstIndex(of: ":") else { n += 1; continue }
                var device = MDDevice()
                device.name = String(line[..<colon]).trimmingASCIIWhitespace()
                let settings = osquerySplit(line[line.index(after: colon)...], " ")
                if settings.count >= 2 {
                    device.status = settings[0]
                    device.raidLevel = settings[1]
                    for drive in settings.dropFirst(2) {
                        var position = 0
                        if let open = drive.firstIndex(of: "["), let close = drive.firstIndex(of: "]"), open < close {
                            position = Int(drive[drive.index(after: open)..<close].prefix { $0.isNumber }) ?? 0
                        }
                        device.drives.append((drive, position))
                    }
                }
                if n >= lines.count - 1 {
                    result.devices.append(device)
                    break
                }
                let config = osquerySplit(lines[n + 1], " \t")
                if config.count >= 4 {
                    if config[1] == "blocks", let size = Int64(config[0]) { device.usableSize = size }
                    device.healthyDrives = config[config.count - 2]
                    device.driveStatuses = config[config.count - 1]
                    if config.count > 4 { device.other = config[2..<(config.count - 2)].joined(separator: " ") }
                }
                n += 1
                while n < lines.count - 1 {
                    if let s = status("recovery =") { device.recovery = parseAction(s) ?? device.recovery; continue }
                    if let s = status("resync =") { device.resync = parseAction(s) ?? device.resync; continue }
                    if let s = status("resync=") { device.resync.progress = s; continue }
                    if let s = status("reshape =") { device.reshape = parseAction(s) ?? device.reshape; continue }
                    if let s = status("check =") { device.checkArray = parseAction(s) ?? device.checkArray; continue }
                    if let s = status("bitmap:") {
                        let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingASCIIWhitespace() }
                        if parts.count >= 2 {
                            device.bitmapOnMem = parts[0]
                            device.bitmapChunkSize = parts[1]
                            if parts.count > 2, let r = parts[2].firstRange(of: "file:") {
                                device.bitmapExternalFile = String(parts[2][r.upperBound...]).trimmingASCIIWhitespace()
                            }
                        }
                        continue
                    }
                    break
                }
                result.devices.append(device)
            } else if line.hasPrefix("un"), line.count > "unused devices:".count {
                result.unused = String(line.dropFirst("unused devices:".count)).trimmingASCIIWhitespace()
            }
            n += 1
        }
        return result
    }

    /// The md driver's numbers for a personality (mdadm's `level`).
    static func raidLevel(_ name: String) -> Int64? {
        switch name {
        case "linear": -1
        case "multipath": -4
        case "faulty": -5
        case "container": -100
        default: name.hasPrefix("raid") ? Int64(name.dropFirst(4)) : nil
        }
    }

    /// One member of an array in sysfs (`md/dev-<name>`): its slot and state words.
    struct MDMember {
        var name: String
        var slot: Int?
        var state: [String]
    }

    static func members(_ mdDir: String, readMax: UInt64) -> [MDMember] {
        var out: [MDMember] = []
        for entry in (FileIO.listDirectoryNames(mdDir) ?? []).sorted() where entry.hasPrefix("dev-") {
            let dir = mdDir + "/" + entry
            let slot = BoundedFile.text(dir + "/slot", limit: readMax).flatMap { Int($0.trimmingASCIIWhitespace()) }
            let state = (BoundedFile.text(dir + "/state", limit: readMax) ?? "").trimmingASCIIWhitespace()
            out.append(MDMember(name: String(entry.dropFirst(4)), slot: slot, state: osquerySplit(state, ",")))
        }
        return out
    }

    /// osquery's words for a member's state (from the md driver's disk state bits).
    static func memberState(_ words: [String]) -> String {
        var out: [String] = []
        if words.contains("faulty") { out.append("faulty") }
        if words.contains("in_sync") { out += ["active", "sync"] }
        if words.contains("write_mostly") { out.append("writemostly") }
        if words.contains("failfast") { out.append("failfast") }
        if words.contains("journal") { out.append("journal") }
        if words.contains("spare") && !words.contains("in_sync") { out.append("spare") }
        return out.isEmpty ? "recovering" : out.joined(separator: " ")
    }

    static func mdDevices(flags: Flags, mdstat: String = "/proc/mdstat", sysBlock: String = "/sys/block", log: OnceLog = .shared) -> FunctionTable {
        table("md_devices", [
            col("device_name", .text), col("status", .text), col("raid_level", .integer), col("size", .bigint),
            col("chunk_size", .bigint), col("raid_disks", .integer), col("nr_raid_disks", .integer), col("working_disks", .integer),
            col("active_disks", .integer), col("failed_disks", .integer), col("spare_disks", .integer),
            col("superblock_state", .text), col("superblock_version", .text), col("superblock_update_time", .bigint),
            col("bitmap_on_mem", .text), col("bitmap_chunk_size", .text), col("bitmap_external_file", .text),
            col("recovery_progress", .text), col("recovery_finish", .text), col("recovery_speed", .text),
            col("resync_progress", .text), col("resync_finish", .text), col("resync_speed", .text),
            col("reshape_progress", .text), col("reshape_finish", .text), col("reshape_speed", .text),
            col("check_array_progress", .text), col("check_array_finish", .text), col("check_array_speed", .text),
            col("unused_devices", .text), col("other", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let readMax = flags[.readMax]
            guard let text = BoundedFile.text(mdstat, limit: readMax) else {
                log.info("md_devices: \(mdstat) does not exist (the md driver is not loaded)")
                return rows
            }
            let stat = parseMDStat(text)
            for device in stat.devices {
                let md = sysBlock + "/" + device.name + "/md"
                func attribute(_ name: String) -> String? {
                    BoundedFile.text(md + "/" + name, limit: readMax).map { $0.trimmingASCIIWhitespace() }
                }
                guard FileIO.exists(md) else {
                    StatusLog.error("Could not get file path for \(device.name)")
                    return rows
                }
                let members = Self.members(md, readMax: readMax)
                let raidDisks = attribute("raid_disks").flatMap { Int64($0) }
                let failed = Int64(members.filter { $0.state.contains("faulty") }.count)
                let active = Int64(members.filter { $0.state.contains("in_sync") }.count)
                let spare = Int64(members.filter { !$0.state.contains("in_sync") && !$0.state.contains("faulty") }.count)
                let state = attribute("array_state") ?? ""
                var values: [String: SQLValue] = [
                    "device_name": .text(device.name), "status": .text(device.status),
                    "raid_level": attribute("level").flatMap(raidLevel).map { .integer($0) } ?? .null,
                    "size": .integer(device.usableSize),
                    "chunk_size": attribute("chunk_size").flatMap { Int64($0) }.map { .integer($0) } ?? .null,
                    "raid_disks": raidDisks.map { .integer($0) } ?? .null,
                    "nr_raid_disks": .integer(Int64(members.count)), "working_disks": .integer(Int64(members.count) - failed),
                    "active_disks": .integer(active), "failed_disks": .integer(failed), "spare_disks": .integer(spare),
                    "superblock_state": .text(state == "clean" ? "clean" : (state.isEmpty ? "unknown" : "")),
                    "superblock_version": .text(attribute("metadata_version") ?? ""),
                    "other": .text(device.other), "unused_devices": .text(stat.unused),
                ]
                for (prefix, action) in [("recovery", device.recovery), ("resync", device.resync), ("reshape", device.reshape),
                                         ("check_array", device.checkArray)] where !action.progress.isEmpty {
                    values[prefix + "_progress"] = .text(action.progress)
                    values[prefix + "_finish"] = .text(action.finish)
                    values[prefix + "_speed"] = .text(action.speed)
                }
                if !device.bitmapOnMem.isEmpty {
                    values["bitmap_on_mem"] = .text(device.bitmapOnMem)
                    values["bitmap_chunk_size"] = .text(device.bitmapChunkSize)
                    values["bitmap_external_file"] = .text(device.bitmapExternalFile)
                }
                rows.appendRow(schema.columns.map { values[$0.name] ?? .null })
            }
            return rows
        }
    }

    static func mdDrives(flags: Flags, mdstat: String = "/proc/mdstat", sysBlock: String = "/sys/block", log: OnceLog = .shared) -> FunctionTable {
        table("md_drives", [
            col("md_device_name", .text), col("drive_name", .text), col("slot", .integer), col("state", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let readMax = flags[.readMax]
            guard let text = BoundedFile.text(mdstat, limit: readMax) else {
                log.info("md_drives: \(mdstat) does not exist (the md driver is not loaded)")
                return rows
            }
            for device in parseMDStat(text).devices {
                let md = sysBlock + "/" + device.name + "/md"
                guard FileIO.exists(md) else {
                    StatusLog.error("Could not get file path for \(device.name)")
                    continue
                }
                let raidDisks = BoundedFile.text(md + "/raid_disks", limit: readMax).flatMap { Int($0.trimmingASCIIWhitespace()) } ?? 0
                var missing = Array(0..<max(raidDisks, 0))
                for member in members(md, readMax: readMax) {
                    rows.append(.text(device.name))
                    rows.append(.text("/dev/" + member.name))
                    if let slot = member.slot {
                        rows.append(.integer(Int64(slot)))
                        missing.removeAll { $0 == slot }
                    } else {
                        rows.append(.null)
                    }
                    rows.append(.text(memberState(member.state)))
                }
                for slot in missing {
                    rows.appendRow([.text(device.name), .text("unknown"), .integer(Int64(slot)), .text("removed")])
                }
            }
            return rows
        }
    }

    // MARK: disk_encryption

    /// libcryptsetup, loaded at run time (libcryptsetup12 is on Debian systems that use LUKS;
    /// without it the type falls back to what device-mapper's uuid names).
    struct Cryptsetup: @unchecked Sendable {
        typealias InitByName = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UnsafePointer<CChar>) -> Int32
        typealias Get = @convention(c) (OpaquePointer) -> UnsafePointer<CChar>?
        typealias Free = @convention(c) (OpaquePointer) -> Void
        let initByName: InitByName, type: Get, cipher: Get, mode: Get, free: Free

        static let shared: Cryptsetup? = {
            guard let lib = dlopen("libcryptsetup.so.12", RTLD_NOW | RTLD_LOCAL) else { return nil }
            func symbol<T>(_ name: String, _: T.Type) -> T? { dlsym(lib, name).map { unsafeBitCast($0, to: T.self) } }
            guard let i = symbol("crypt_init_by_name", InitByName.self), let t = symbol("crypt_get_type", Get.self),
                  let c = symbol("crypt_get_cipher", Get.self), let m = symbol("crypt_get_cipher_mode", Get.self),
                  let f = symbol("crypt_free", Free.self) else { return nil }
            return Cryptsetup(initByName: i, type: t, cipher: c, mode: m, free: f)
        }()

        /// `LUKS2-aes-xts-plain64`: type, cipher and mode joined by '-'; nil when not known.
        func describe(_ mapping: String) -> String? {
            var cd: OpaquePointer?
            guard initByName(&cd, mapping) >= 0, let cd else { return nil }
            defer { free(cd) }
            return [type(cd), cipher(cd), mode(cd)].compactMap { $0.map { String(cString: $0) } }.joined(separator: "-")
        }
    }

    static func diskEncryption(flags: Flags, classBlock: String = "/sys/class/block", log: OnceLog = .shared) -> FunctionTable {
        table("disk_encryption", [
            col("name", .text, .index), col("uuid", .text, .collateNocase), col("encrypted", .integer), col("type", .text),
            col("encryption_status", .text), col("uid", .text, .hidden), col("user_uuid", .text, [.hidden, .collateNocase]),
            col("filevault_status", .text, .hidden),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            guard getuid() == 0 && geteuid() == 0 else {
                log.info("disk_encryption: Not running as root, disk encryption status not available")
                return rows
            }
            let readMax = flags[.readMax]
            // name → (parent, crypt type or nil)
            var devices: [String: (parent: String, crypt: String?)] = [:]
            for entry in FileIO.listDirectoryNames(classBlock) ?? [] {
                guard let real = realpath(classBlock + "/" + entry, nil) else { continue }
                let path = String(cString: real)
                Glibc.free(real)
                let components = path.split(separator: "/")
                let container = components.count >= 2 ? String(components[components.count - 2]) : ""
                var parent = ""
                if container != "block" {
                    parent = "/dev/" + container
                } else if let slave = FileIO.listDirectoryNames(path + "/slaves")?.sorted().first {
                    parent = "/dev/" + slave
                }
                var crypt: String?
                // A dm-crypt mapping's device-mapper uuid is "CRYPT-<TYPE>-<uuid>-<name>".
                if let uuid = BoundedFile.text(path + "/dm/uuid", limit: readMax)?.trimmingASCIIWhitespace(), uuid.hasPrefix("CRYPT-") {
                    let name = BoundedFile.text(path + "/dm/name", limit: readMax)?.trimmingASCIIWhitespace() ?? ""
                    crypt = Cryptsetup.shared?.describe(name) ?? String(uuid.dropFirst(6).prefix { $0 != "-" })
                }
                devices["/dev/" + entry] = (parent, crypt)
            }
            let wanted = Set(context.equalities(for: "name"))
            func status(_ name: String, depth: Int = 0) -> (Bool, String) {
                guard let d = devices[name] else { return (false, "") }
                if let crypt = d.crypt { return (true, crypt) }
                return d.parent.isEmpty || depth > 16 ? (false, "") : status(d.parent, depth: depth + 1)
            }
            for name in devices.keys.sorted() where wanted.isEmpty || wanted.contains(name) {
                let (encrypted, type) = status(name)
                let uuid = HardwareTables.Blkid.shared?.probe(name).uuid ?? ""
                rows.appendRow([
                    .text(name), .text(uuid), .integer(encrypted ? 1 : 0), .text(type),
                    .text(encrypted ? "encrypted" : "not encrypted"), .null, .null, .null,
                ])
            }
            return rows
        }
    }

    // MARK: secureboot, secureboot_certificates

    static let efiGlobalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

    static func secureboot(flags: Flags, efi: String = "/sys/firmware/efi", log: OnceLog = .shared) -> FunctionTable {
        table("secureboot", [
            col("secure_boot", .integer), col("secure_mode", .integer, .hidden), col("description", .text, .hidden),
            col("kernel_extensions", .integer, .hidden), col("mdm_operations", .integer, .hidden), col("setup_mode", .integer),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard FileIO.exists(efi) else {
                log.info("secureboot: Secure boot is only supported on UEFI firmware (no \(efi))")
                return rows
            }
            func flag(_ name: String) -> SQLValue {
                // Four bytes of attributes, then the value's one byte.
                guard let data = BoundedFile.read(efi + "/efivars/" + name + "-" + efiGlobalGUID, limit: 4096) else { return .null }
                guard data.count == 5 else {
                    StatusLog.info("Under read on efivar file : \(efi)/efivars/\(name)-\(efiGlobalGUID)")
                    return .null
                }
                return .integer(data[4] <= 1 ? Int64(data[4]) : -1)
            }
            rows.appendRow([flag("SecureBoot"), .null, .null, .null, .null, flag("SetupMode")])
            return rows
        }
    }

    /// The X.509 certificates of EFI signature lists (after the variable's four attribute bytes).
    static func efiCertificates(_ data: [UInt8]) -> [X509Certificate] {
        var out: [X509Certificate] = []
        var head = 4
        func u32(_ at: Int) -> Int { Int(data[at]) | Int(data[at + 1]) << 8 | Int(data[at + 2]) << 16 | Int(data[at + 3]) << 24 }
        guard data.count >= 4 + 28 else { return out }
        while head + 28 <= data.count {
            let listSize = u32(head + 16), headerSize = u32(head + 20), sigSize = u32(head + 24)
            guard listSize > 0, head + listSize <= data.count else { break }
            // EFI_CERT_X509_GUID's first byte on disk; hashes and other kinds are skipped.
            if data[head] == 0xa1, sigSize > 16, head + 28 + headerSize <= head + listSize {
                let area = head + 28 + headerSize
                for i in 0..<((head + listSize - area) / sigSize) {
                    let start = area + i * sigSize + 16
                    let end = area + (i + 1) * sigSize
                    if let cert = X509Certificate(der: Array(data[start..<end])) { out.append(cert) }
                }
            }
            head += listSize
        }
        return out
    }

    static func securebootCertificates(flags: Flags, efivars: String = "/sys/firmware/efi/efivars", log: OnceLog = .shared) -> FunctionTable {
        table("secureboot_certificates", [
            col("common_name", .text), col("subject", .text), col("issuer", .text), col("not_valid_before", .text),
            col("not_valid_after", .text), col("sha1", .text, .collateNocase), col("serial", .text, .collateNocase),
            col("revoked", .integer), col("path", .text), col("is_ca", .integer), col("self_signed", .integer),
            col("key_usage", .text), col("authority_key_id", .text, .collateNocase), col("subject_key_id", .text, .collateNocase),
            col("signing_algorithm", .text), col("key_algorithm", .text), col("key_strength", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let names = FileIO.listDirectoryNames(efivars) else {
                log.info("secureboot_certificates: \(efivars) does not exist (not UEFI firmware, or efivarfs is not mounted)")
                return rows
            }
            for (prefix, revoked) in [("db-", false), ("dbx-", true)] {
                for name in names.sorted() where name.hasPrefix(prefix) {
                    let path = efivars + "/" + name
                    guard let data = BoundedFile.read(path, limit: flags[.readMax]), data.count > 4 else { continue }
                    for cert in efiCertificates(data) {
                        rows.appendRow([
                            .text(cert.commonName ?? ""), .text(cert.subject ?? ""), .text(cert.issuer ?? ""),
                            .text(String(cert.notBefore ?? 0)), .text(String(cert.notAfter ?? 0)), .text(cert.sha1 ?? ""),
                            .text(cert.serial ?? ""), .integer(revoked ? 1 : 0), .text(path), .integer(cert.isCA ? 1 : 0),
                            .integer(cert.isSelfSigned ? 1 : 0), .text(cert.keyUsage ?? ""), .text(cert.authorityKeyID ?? ""),
                            .text(cert.subjectKeyID ?? ""), .text(cert.signingAlgorithm ?? ""), .text(cert.keyAlgorithm ?? ""),
                            .text(cert.keyStrength ?? ""),
                        ])
                    }
                }
            }
            return rows
        }
    }

    // MARK: msr

    /// The registers osquery reads: (column, offset, mask, is a flag).
    static let msrFields: [(String, off_t, UInt64, Bool)] = [
        ("turbo_disabled", 0x1a0, 1 << 38, true), ("turbo_ratio_limit", 0x1ad, .max, false),
        ("platform_info", 0xce, .max, false), ("perf_status", 0x198, .max, false), ("perf_ctl", 0x199, 0xffff, false),
        ("feature_control", 0x3a, .max, false), ("rapl_power_limit", 0x610, .max, false),
        ("rapl_energy_status", 0x611, .max, false), ("rapl_power_units", 0x606, .max, false),
    ]

    static func msr(cpuDirectory: String = "/dev/cpu", log: OnceLog = .shared) -> FunctionTable {
        table("msr", [
            col("processor_number", .bigint), col("turbo_disabled", .bigint), col("turbo_ratio_limit", .bigint),
            col("platform_info", .bigint), col("perf_ctl", .bigint), col("perf_status", .bigint), col("feature_control", .bigint),
            col("rapl_power_limit", .bigint), col("rapl_energy_status", .bigint), col("rapl_power_units", .bigint),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let cpus = (FileIO.listDirectoryNames(cpuDirectory) ?? []).compactMap { Int($0) }.sorted()
            guard !cpus.isEmpty else {
                log.info("msr: No msr information check msr kernel module is enabled (no \(cpuDirectory))")
                return rows
            }
            for cpu in cpus {
                let path = "\(cpuDirectory)/\(cpu)/msr"
                // O_NONBLOCK: a FIFO in the device's place must not wait for a writer.
                let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
                guard fd >= 0 else {
                    let reason = errno == EACCES ? " (root is needed)" : " (check the msr kernel module is enabled)"
                    log.info("msr: Could not open msr file \(path)\(reason)")
                    continue
                }
                defer { close(fd) }
                var st = stat()
                guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR || (st.st_mode & S_IFMT) == S_IFREG else {
                    log.info("msr: \(path) is not a device")
                    continue
                }
                var values: [String: SQLValue] = ["processor_number": .integer(Int64(cpu))]
                for (name, offset, mask, isFlag) in msrFields {
                    var value: UInt64 = 0
                    guard pread(fd, &value, 8, offset) == 8 else { continue }
                    values[name] = .integer(isFlag ? (value & mask != 0 ? 1 : 0) : Int64(bitPattern: value & mask))
                }
                rows.appendRow(schema.columns.map { values[$0.name] ?? .null })
            }
            return rows
        }
    }
}
