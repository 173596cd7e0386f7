import OsqueryEngine
internal import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// osquery's SMBIOS tables (smbios_tables, platform_info, memory_devices, cpu_info), read from
/// the kernel's copy of the firmware's structure table. osquery falls back to scanning
/// /dev/mem where sysfs has none; that is not done here (kernels with STRICT_DEVMEM refuse
/// it, and a raw memory read is not a thing a query should do), so such hosts give no rows.
enum SMBIOSTables {
    static let dmiPath = "/sys/firmware/dmi/tables/DMI"

    /// One structure: its formatted area and the string set after it.
    struct Structure {
        var index: Int
        var type: UInt8
        var headerLength: Int
        var handle: UInt16
        var bytes: ArraySlice<UInt8>

        var formatted: ArraySlice<UInt8> { bytes.prefix(headerLength) }

        func byte(_ offset: Int) -> UInt8 {
            let i = bytes.startIndex + offset
            return i < bytes.endIndex ? bytes[i] : 0
        }

        func word(_ offset: Int) -> UInt16 { UInt16(byte(offset)) | UInt16(byte(offset + 1)) << 8 }

        func dword(_ offset: Int) -> UInt32 { UInt32(word(offset)) | UInt32(word(offset + 2)) << 16 }

        /// osquery's dmiString: the numbered string of the set, "" for 0 or a malformed set.
        func string(at offset: Int) -> String { string(number: byte(offset)) }

        func string(number: UInt8) -> String {
            var number = number
            let text = bytes.dropFirst(headerLength)
            guard number != 0, let last = text.last, last == 0 else { return "" }
            var i = text.startIndex
            while number > 1 {
                guard let nul = text[i...].firstIndex(of: 0), nul + 1 < text.endIndex else { return "" }
                i = nul + 1
                number -= 1
            }
            let end = text[i...].firstIndex(of: 0) ?? text.endIndex
            var s = String(decoding: text[i..<end], as: UTF8.self)
            while let c = s.last, c == " " || c == "\t" || c == "\n" || c == "\r" { s.removeLast() }
            return s
        }
    }

    /// The structures as osquery walks them: each ends after the double NUL closing its
    /// strings; a zero header, or one past the data, ends the table.
    static func structures(_ data: [UInt8]) -> [Structure] {
        var out: [Structure] = []
        var table = 0
        while table + 4 <= data.count {
            let length = Int(data[table + 1])
            let handle = UInt16(data[table + 2]) | UInt16(data[table + 3]) << 8
            if table + length > data.count || (length == 0 && handle == 0) { break }
            var next = table + length
            while next + 4 <= data.count {
                if data[next] == 0 && data[next + 1] == 0 { next += 2; break }
                next += 1
            }
            out.append(Structure(index: out.count, type: data[table], headerLength: length, handle: handle, bytes: data[table..<next]))
            table = next
        }
        return out
    }

    /// The structure table, or nil (said once per table) when this host has none readable.
    static func read(_ path: String, readMax: UInt64, table: String, log: OnceLog) -> [Structure]? {
        guard let data = BoundedFile.read(path, limit: readMax) else {
            log.info("\(table): no SMBIOS data: \(path) is missing or unreadable (it needs root and firmware tables)")
            return nil
        }
        return structures(data)
    }

    static let typeDescriptions: [UInt8: String] = [
        0: "BIOS Information", 1: "System Information", 2: "Base Board or Module Information",
        3: "System Enclosure or Chassis", 4: "Processor Information", 5: "Memory Controller Information",
        6: "Memory Module Information", 7: "Cache Information", 8: "Port Connector Information", 9: "System Slots",
        10: "On Board Devices Information", 11: "OEM Strings", 12: "System Configuration Options",
        13: "BIOS Language Information", 14: "Group Associations", 15: "System Event Log", 16: "Physical Memory Array",
        17: "Memory Device", 18: "32-bit Memory Error Information", 19: "Memory Array Mapped Address",
        20: "Memory Device Mapped Address", 21: "Built-in Pointing Device", 22: "Portable Battery", 23: "System Reset",
        24: "Hardware Security", 25: "System Power Controls", 26: "Voltage Probe", 27: "Cooling Device",
        28: "Temperature Probe", 29: "Electrical Current Probe", 30: "Out-of-Band Remote Access",
        31: "Boot Integrity Services", 32: "System Boot Information", 33: "64-bit Memory Error Information",
        34: "Management Device", 35: "Management Device Component", 36: "Management Device Threshold Data",
        37: "Memory Channel", 38: "IPMI Device Information", 39: "System Power Supply", 40: "Additional Information",
        41: "Onboard Devices Extended Info", 126: "Inactive", 127: "End-of-Table", 130: "Memory SPD Data",
        131: "OEM Processor Type", 132: "OEM Processor Bus Speed",
    ]

    static let formFactors: [UInt8: String] = [
        0x01: "Other", 0x02: "Unknown", 0x03: "SIMM", 0x04: "SIP", 0x05: "Chip", 0x06: "DIP", 0x07: "ZIP",
        0x08: "Proprietary Card", 0x09: "DIMM", 0x0A: "TSOP", 0x0B: "Row of chips", 0x0C: "RIMM", 0x0D: "SODIMM",
        0x0E: "SRIMM", 0x0F: "FB-DIMM",
    ]

    static let memoryDetails = [
        "Reserved", "Other", "Unknown", "Fast-paged", "Static column", "Pseudo-static", "RAMBUS", "Synchronous", "CMOS",
        "EDO", "Window DRAM", "Cache DRAM", "Non-volatile", "Registered (Buffered)", "Unbuffered (Unregistered)", "LRDIMM",
    ]

    static let memoryTypes: [UInt8: String] = [
        0x01: "Other", 0x02: "Unknown", 0x03: "DRAM", 0x04: "EDRAM", 0x05: "VRAM", 0x06: "SRAM", 0x07: "RAM", 0x08: "ROM",
        0x09: "FLASH", 0x0A: "EEPROM", 0x0B: "FEPROM", 0x0C: "EPROM", 0x0D: "CDRAM", 0x0E: "3DRAM", 0x0F: "SDRAM",
        0x10: "SGRAM", 0x11: "RDRAM", 0x12: "DDR", 0x13: "DDR2", 0x14: "DDR2 FB-DIMM", 0x15: "RESERVED",
        0x16: "RESERVED", 0x17: "RESERVED", 0x18: "DDR3", 0x19: "FBD2", 0x1A: "DDR4", 0x1B: "LPDDR", 0x1C: "LPDDR2",
        0x1D: "LPDDR3", 0x1E: "LPDDR4",
    ]

    static func hex4(_ value: UInt16) -> String {
        let s = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    static func smbiosTables(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        table("smbios_tables", [
            col("number", .integer), col("type", .integer), col("description", .text), col("handle", .integer),
            col("header_size", .integer), col("size", .integer), col("md5", .text, .collateNocase),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            for s in read(path, readMax: flags[.readMax], table: "smbios_tables", log: log) ?? [] {
                rows.append(.integer(Int64(s.index)))
                rows.append(.integer(Int64(s.type)))
                rows.append(.text(typeDescriptions[s.type] ?? "Unknown"))
                rows.append(.integer(Int64(s.handle)))
                rows.append(.integer(Int64(s.headerLength)))
                rows.append(.integer(Int64(s.bytes.count)))
                let digest = s.bytes.withUnsafeBytes { Insecure.MD5.hash(data: $0) }
                rows.append(.text(digest.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()))
            }
            return rows
        }
    }

    static func platformInfo(flags: Flags, path: String = dmiPath, efiDirectory: String = "/sys/firmware/efi", log: OnceLog = OnceLog()) -> FunctionTable {
        table("platform_info", [
            col("vendor", .text), col("version", .text, .collateVersion), col("date", .text), col("revision", .text),
            col("extra", .text), col("firmware_type", .text), col("address", .text), col("size", .text),
            col("volume_size", .integer),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            for s in read(path, readMax: flags[.readMax], table: "platform_info", log: log) ?? [] where s.type == 0 && s.bytes.count >= 0x15 {
                rows.append(.text(s.string(at: 0x04)))
                rows.append(.text(s.string(at: 0x05)))
                rows.append(.text(s.string(at: 0x08)))
                rows.append(.text("\(s.byte(0x14)).\(s.byte(0x15))"))
                rows.append(.text(""))
                rows.append(.text(FileIO.isDirectory(efiDirectory) ? "uefi" : "bios"))
                rows.append(.text(hex4(s.word(0x06))))
                rows.append(.text(String(((Int(s.byte(0x09)) + 1) << 6) * 1024)))
                rows.append(.integer(0))
            }
            return rows
        }
    }

    static func memoryDevices(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        table("memory_devices", [
            col("handle", .text), col("array_handle", .text), col("form_factor", .text), col("total_width", .integer),
            col("data_width", .integer), col("size", .integer), col("set", .integer), col("device_locator", .text),
            col("bank_locator", .text), col("memory_type", .text), col("memory_type_details", .text),
            col("max_speed", .integer), col("configured_clock_speed", .integer), col("manufacturer", .text),
            col("serial_number", .text), col("asset_tag", .text), col("part_number", .text), col("min_voltage", .integer),
            col("max_voltage", .integer), col("configured_voltage", .integer),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            for s in read(path, readMax: flags[.readMax], table: "memory_devices", log: log) ?? [] where s.type == 17 && s.bytes.count >= 0x26 + 4 {
                func unless(_ value: UInt16, _ absent: UInt16...) -> SQLValue {
                    absent.contains(value) ? .null : .integer(Int64(value))
                }
                rows.append(.text(hex4(s.word(0x02))))
                rows.append(.text(hex4(s.word(0x04))))
                rows.append(formFactors[s.byte(0x0E)].map { .text($0) } ?? .null)
                rows.append(unless(s.word(0x08), 0xFFFF))
                rows.append(unless(s.word(0x0A), 0xFFFF))
                let size = s.word(0x0C)
                rows.append(size == 0xFFFF ? .null : size == 0x7FFF ? .integer(Int64(s.dword(0x1C))) : .integer(Int64(size)))
                rows.append(s.byte(0x0F) == 0xFF ? .null : .integer(Int64(s.byte(0x0F))))
                rows.append(.text(s.string(at: 0x10)))
                rows.append(.text(s.string(at: 0x11)))
                rows.append(memoryTypes[s.byte(0x12)].map { .text($0) } ?? .null)
                let details = s.word(0x13)
                rows.append(.text(memoryDetails.indices.filter { details & (1 << $0) != 0 }.map { memoryDetails[$0] }.joined(separator: " ")))
                rows.append(unless(s.word(0x15), 0, 0xFFFF))
                rows.append(unless(s.word(0x20), 0, 0xFFFF))
                rows.append(.text(s.string(at: 0x17)))
                rows.append(.text(s.string(at: 0x18)))
                rows.append(.text(s.string(at: 0x19)))
                rows.append(.text(s.string(at: 0x1A)))
                rows.append(unless(s.word(0x22), 0))
                rows.append(unless(s.word(0x24), 0))
                rows.append(unless(s.word(0x26), 0))
            }
            return rows
        }
    }

    static let processorKinds: [UInt8: String] = [3: "CPU", 4: "MATH", 5: "DSP", 6: "GPU"]

    static func cpuInfo(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        table("cpu_info", [
            col("device_id", .text), col("model", .text), col("manufacturer", .text), col("processor_type", .text),
            col("cpu_status", .integer), col("number_of_cores", .text), col("logical_processors", .integer),
            col("address_width", .text), col("current_clock_speed", .integer), col("max_clock_speed", .integer),
            col("socket_designation", .text), col("availability", .text, .hidden), col("load_percentage", .integer, .hidden),
            col("number_of_efficiency_cores", .integer, .hidden), col("number_of_performance_cores", .integer, .hidden),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            var deviceNumber = 0
            for s in read(path, readMax: flags[.readMax], table: "cpu_info", log: log) ?? [] where s.type == 4 && s.bytes.count >= 0x2e + 2 {
                let kind = s.byte(0x05)
                if let name = processorKinds[kind] {
                    rows.append(.text(name + String(deviceNumber)))
                    deviceNumber += 1
                } else {
                    rows.append(.null)
                }
                rows.append(.text(s.string(at: 0x10)))
                rows.append(.text(s.string(at: 0x07)))
                rows.append(.text(String(kind)))
                rows.append(.integer(Int64(s.byte(0x18))))
                // Core counts arrived in SMBIOS 2.5; older tables get the running system's.
                if s.headerLength >= 0x28 {
                    rows.append(.text(String(s.byte(0x23))))
                    rows.append(.integer(Int64(s.byte(0x25))))
                    rows.append(.text(s.word(0x26) & (1 << 2) != 0 ? "64" : "32"))
                } else {
                    rows.append(.text(String(physicalCores(readMax: flags[.readMax]))))
                    rows.append(.integer(Int64(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
                    rows.append(.text(MemoryLayout<Int>.size == 8 ? "64" : "32"))
                }
                rows.append(.integer(Int64(s.word(0x16))))
                rows.append(.integer(Int64(s.word(0x14))))
                rows.append(.text(s.string(at: 0x04)))
                for _ in 0..<4 { rows.append(.null) }
            }
            return rows
        }
    }

    static func hex(_ value: UInt64, width: Int) -> String {
        let s = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, width - s.count)) + s
    }

    static let arrayLocations: [UInt8: String] = [
        0x01: "Other", 0x02: "Unknown", 0x03: "System board or motherboard", 0x04: "ISA add-on card",
        0x05: "EISA add-on card", 0x06: "PCI add-on card", 0x07: "MCA add-on card", 0x08: "PCMCIA add-on card",
        0x09: "Proprietary add-on card", 0x0A: "NuBus", 0xA0: "PC-98/C20 add-on card", 0xA1: "PC-98/C24 add-on card",
        0xA2: "PC-98/E add-on card", 0xA3: "PC-98/Local bus add-on card",
    ]
    static let arrayUses: [UInt8: String] = [
        0x01: "Other", 0x02: "Unknown", 0x03: "System memory", 0x04: "Video memory", 0x05: "Flash memory",
        0x06: "Non-volatile RAM", 0x07: "Cache memory",
    ]
    static let errorCorrections: [UInt8: String] = [
        0x01: "Other", 0x02: "Unknown", 0x03: "none", 0x04: "Parity", 0x05: "Single-bit ECC", 0x06: "Multi-bit ECC", 0x07: "CRC",
    ]
    static let errorTypes: [UInt8: String] = [
        0x01: "Other", 0x02: "Unknown", 0x03: "OK", 0x04: "Bad read", 0x05: "Parity error", 0x06: "Single-bit error",
        0x07: "Double-bit error", 0x08: "Multi-bit error", 0x09: "Nibble error", 0x0A: "Checksum error", 0x0B: "CRC error",
        0x0C: "Corrected single-bit error", 0x0D: "Corrected error", 0x0E: "Uncorrectable error",
    ]
    static let errorGranularities: [UInt8: String] = [0x01: "Other", 0x02: "Unknown", 0x03: "Device level", 0x04: "Memory partition level"]
    static let errorOperations: [UInt8: String] = [0x01: "Other", 0x02: "Unknown", 0x03: "Read", 0x04: "Write", 0x05: "Partial write"]

    /// A table of one row per structure of a type whose structures span at least `minimum` bytes.
    static func structureTable(
        _ name: String, _ columns: [TableColumn], type: UInt8, minimum: Int, flags: Flags, path: String, log: OnceLog,
        row: @escaping @Sendable (Structure, inout TableRows) -> Void
    ) -> FunctionTable {
        table(name, columns) { _, schema in
            var rows = TableRows(schema: schema)
            for s in read(path, readMax: flags[.readMax], table: name, log: log) ?? [] where s.type == type && s.bytes.count >= minimum {
                row(s, &rows)
            }
            return rows
        }
    }

    static func memoryArrays(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        structureTable("memory_arrays", [
            col("handle", .text), col("location", .text), col("use", .text), col("memory_error_correction", .text),
            col("max_capacity", .integer), col("memory_error_info_handle", .text), col("number_memory_devices", .integer),
        ], type: 16, minimum: 0x0F + 8, flags: flags, path: path, log: log) { s, rows in
            rows.append(.text(hex4(s.word(0x02))))
            rows.append(arrayLocations[s.byte(0x04)].map { .text($0) } ?? .null)
            rows.append(arrayUses[s.byte(0x05)].map { .text($0) } ?? .null)
            rows.append(errorCorrections[s.byte(0x06)].map { .text($0) } ?? .null)
            // Kilobytes, or bytes in the extended field: osquery reports whole gigabytes.
            let capacity = s.dword(0x07)
            let extended = UInt64(s.dword(0x0F)) | UInt64(s.dword(0x13)) << 32
            rows.append(.integer(Int64(capacity >= 0x8000_0000 ? extended / 1_073_741_824 : UInt64(capacity / 1_048_576))))
            let errorHandle = s.word(0x0B)
            rows.append(errorHandle == 0xFFFE || errorHandle == 0xFFFF ? .null : .text(hex4(errorHandle)))
            rows.append(.integer(Int64(s.word(0x0D))))
        }
    }

    static func memoryArrayMappedAddresses(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        structureTable("memory_array_mapped_addresses", [
            col("handle", .text), col("memory_array_handle", .text), col("starting_address", .text),
            col("ending_address", .text), col("partition_width", .integer),
        ], type: 19, minimum: 0x17 + 8, flags: flags, path: path, log: log) { s, rows in
            rows.append(.text(hex4(s.word(0x02))))
            rows.append(.text(hex4(s.word(0x0C))))
            let start = s.dword(0x04)
            if start != 0xFFFF_FFFF {
                rows.append(.text(hex(UInt64(start), width: 8)))
                rows.append(.text(hex(UInt64(s.dword(0x08)), width: 8)))
            } else {
                rows.append(.text(hex(UInt64(s.dword(0x0F)) | UInt64(s.dword(0x13)) << 32, width: 12)))
                rows.append(.text(hex(UInt64(s.dword(0x17)) | UInt64(s.dword(0x1B)) << 32, width: 12)))
            }
            rows.append(.integer(Int64(s.byte(0x0E))))
        }
    }

    static func memoryDeviceMappedAddresses(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        structureTable("memory_device_mapped_addresses", [
            col("handle", .text), col("memory_device_handle", .text), col("memory_array_mapped_address_handle", .text),
            col("starting_address", .text), col("ending_address", .text), col("partition_row_position", .integer),
            col("interleave_position", .integer), col("interleave_data_depth", .integer),
        ], type: 20, minimum: 0x1B + 8, flags: flags, path: path, log: log) { s, rows in
            rows.append(.text(hex4(s.word(0x02))))
            rows.append(.text(hex4(s.word(0x0C))))
            // osquery leaves the array mapping's handle unset.
            rows.append(.null)
            let start = s.dword(0x04)
            if start != 0xFFFF_FFFF {
                rows.append(.text(hex(UInt64(start), width: 8)))
                rows.append(.text(hex(UInt64(s.dword(0x08)), width: 8)))
            } else {
                rows.append(.text(hex(UInt64(s.dword(0x13)) | UInt64(s.dword(0x17)) << 32, width: 12)))
                rows.append(.text(hex(UInt64(s.dword(0x1B)) | UInt64(s.dword(0x1F)) << 32, width: 12)))
            }
            rows.append(.integer(Int64(s.byte(0x10))))
            rows.append(.integer(Int64(s.byte(0x11))))
            rows.append(.integer(Int64(s.byte(0x12))))
        }
    }

    static func memoryErrorInfo(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        structureTable("memory_error_info", [
            col("handle", .text), col("error_type", .text), col("error_granularity", .text), col("error_operation", .text),
            col("vendor_syndrome", .text), col("memory_array_error_address", .text), col("device_error_address", .text),
            col("error_resolution", .text),
        ], type: 18, minimum: 0x13 + 4, flags: flags, path: path, log: log) { s, rows in
            rows.append(.text(hex4(s.word(0x02))))
            rows.append(errorTypes[s.byte(0x04)].map { .text($0) } ?? .null)
            rows.append(errorGranularities[s.byte(0x05)].map { .text($0) } ?? .null)
            rows.append(errorOperations[s.byte(0x06)].map { .text($0) } ?? .null)
            let syndrome = s.dword(0x07)
            rows.append(syndrome == 0 ? .null : .text(hex(UInt64(syndrome), width: 8)))
            // 0x80000000: unknown.
            for offset in [0x0B, 0x0F, 0x13] {
                let value = s.dword(offset)
                rows.append(value == 0x8000_0000 ? .null : .text(hex(UInt64(value), width: 8)))
            }
        }
    }

    static func oemStrings(flags: Flags, path: String = dmiPath, log: OnceLog = OnceLog()) -> FunctionTable {
        structureTable("oem_strings", [col("handle", .text), col("number", .integer), col("value", .text)],
                       type: 11, minimum: 0x04 + 1, flags: flags, path: path, log: log) { s, rows in
            let count = s.byte(0x04)
            guard count > 0 else { return }
            for i in 1...count {
                rows.append(.text(hex4(s.word(0x02))))
                rows.append(.integer(Int64(i)))
                rows.append(.text(s.string(number: i)))
            }
        }
    }

    /// Each ACPI table the kernel exposes (subdirectories such as dynamic/ included); an
    /// unreadable one (without root) keeps its row with size -1 and no digest, as in osquery.
    static func acpiTables(flags: Flags, root: String = "/sys/firmware/acpi/tables", log: OnceLog = OnceLog()) -> FunctionTable {
        table("acpi_tables", [col("name", .text), col("size", .integer), col("md5", .text, .collateNocase)]) { _, schema in
            var rows = TableRows(schema: schema)
            guard FileIO.isDirectory(root) else {
                log.info("acpi_tables: no ACPI tables here (\(root) does not exist)")
                return rows
            }
            func walk(_ directory: String, depth: Int) {
                for name in (FileIO.listDirectoryNames(directory) ?? []).sorted() {
                    let path = directory + "/" + name
                    var st = stat()
                    guard lstat(path, &st) == 0 else { continue }
                    if (st.st_mode & S_IFMT) == S_IFDIR {
                        if depth < 4 { walk(path, depth: depth + 1) }
                        continue
                    }
                    guard (st.st_mode & S_IFMT) == S_IFREG else { continue }
                    rows.append(.text(name))
                    if let bytes = BoundedFile.read(path, limit: flags[.readMax]) {
                        rows.append(.integer(Int64(bytes.count)))
                        let digest = bytes.withUnsafeBytes { Insecure.MD5.hash(data: $0) }
                        rows.append(.text(digest.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()))
                    } else {
                        rows.append(.integer(-1))
                        rows.append(.null)
                    }
                }
            }
            walk(root, depth: 0)
            return rows
        }
    }

    /// Distinct (physical id, core id) pairs of /proc/cpuinfo, as boost's physical_concurrency.
    static func physicalCores(readMax: UInt64) -> Int {
        var cores = Set<String>()
        var physical = ""
        for line in (BoundedFile.text("/proc/cpuinfo", limit: readMax) ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(), value = parts[1].trimmingCharacters()
            if key == "physical id" { physical = value }
            if key == "core id" { cores.insert(physical + "/" + value) }
        }
        return cores.isEmpty ? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) : cores.count
    }
}
