import Foundation
import OsqueryEngine
@testable import OsqueryTables
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The SMBIOS tables on a structure table the test writes in the firmware's format, read by
/// us and by `dmidecode --from-dump`; on this host's own table where the kernel exposes one.
@Suite(.serialized) struct SMBIOSTablesTests {
    /// A structure: formatted bytes (type, length and handle filled in) and its strings.
    static func structure(_ type: UInt8, handle: UInt16, _ body: [UInt8], strings: [String]) -> [UInt8] {
        var out: [UInt8] = [type, UInt8(body.count + 4), UInt8(handle & 0xFF), UInt8(handle >> 8)] + body
        if strings.isEmpty { return out + [0, 0] }
        for s in strings { out += Array(s.utf8) + [0] }
        return out + [0]
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

    /// BIOS, one processor, two memory devices (one sized through the extended field), end.
    static let parts: [[UInt8]] = {
        var bios: [UInt8] = [1, 2] + le16(0xE800) + [3, 0x03] + [0x80, 0, 0, 0, 0, 0, 0, 0] + [0x03, 0x0D] + [2, 7] + [0xFF, 0xFF]
        bios = structure(0, handle: 0x0000, bios, strings: ["Acme BIOS", "1.2.3  ", "03/14/2024"])
        var cpu: [UInt8] = [1, 3, 0xB3, 2] + [0xF1, 0x06, 0x08, 0x00, 0xFF, 0xFB, 0xEB, 0xBF] + [3, 0x8C] + le16(100)
        cpu += le16(4000) + le16(2100) + [0x41, 0x01] + le16(0xFFFF) + le16(0xFFFF) + le16(0xFFFF) + [0, 0, 0] + [8, 8, 16]
        cpu += le16(0x0004) + le16(0x00B3) + le16(8) + le16(8) + le16(16)
        cpu = structure(4, handle: 0x0400, cpu, strings: ["CPU 0", "Intel(R) Corporation", "Intel(R) Xeon(R) Gold"])
        func memory(_ handle: UInt16, size: UInt16, extended: UInt32, set: UInt8, speed: UInt16, _ strings: [String]) -> [UInt8] {
            var m: [UInt8] = le16(0x1000) + le16(0xFFFE) + le16(72) + le16(64) + le16(size) + [0x09, set, 1, 2, 0x1A] + le16(0x0080)
            m += le16(speed) + [3, 4, 5, 6, 0x01]
            m += [UInt8(extended & 0xFF), UInt8((extended >> 8) & 0xFF), UInt8((extended >> 16) & 0xFF), UInt8(extended >> 24)]
            m += le16(speed == 0 ? 0 : 2933) + le16(1200) + le16(1200) + le16(1200)
            return structure(17, handle: handle, m, strings: strings)
        }
        let dimm0 = memory(0x1100, size: 0x2000, extended: 0, set: 0, speed: 3200, ["DIMM 0", "BANK 0", "Samsung", "12345678", "Asset-1", "M393A1K43DB2-CWE"])
        let dimm1 = memory(0x1101, size: 0x7FFF, extended: 32768, set: 0xFF, speed: 0, ["DIMM 1", "BANK 1", "Micron", "87654321", "Asset-2", "MTA36ASF4G72PZ"])
        return [bios, cpu, dimm0, dimm1, structure(127, handle: 0xFEFF, [], strings: [])]
    }()

    static let table = Array(parts.joined())

    /// The table as `dmidecode --dump-bin` writes it: an SMBIOS 3 entry point pointing at
    /// offset 32 of the file, the table there.
    static func dump(_ table: [UInt8]) -> [UInt8] {
        var entry: [UInt8] = Array("_SM3_".utf8) + [0, 0x18, 3, 0, 0, 1, 0]
        let size = UInt32(table.count)
        entry += [UInt8(size & 0xFF), UInt8((size >> 8) & 0xFF), UInt8((size >> 16) & 0xFF), UInt8(size >> 24)]
        entry += [32, 0, 0, 0, 0, 0, 0, 0]
        entry[5] = UInt8((256 - entry.reduce(0) { ($0 + Int($1)) % 256 }) % 256)
        return entry + [UInt8](repeating: 0, count: 32 - entry.count) + table
    }

    static func write(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// dmidecode's structures: handle, type and header size, with their `Key: value` lines.
    static func dmidecodeBlocks(_ output: String) -> [(handle: Int, type: Int, length: Int, fields: [String: String])] {
        var out: [(handle: Int, type: Int, length: Int, fields: [String: String])] = []
        for line in output.split(separator: "\n") {
            if line.hasPrefix("Handle 0x") {
                // "Handle 0x0400, DMI type 4, 48 bytes"
                let f = line.split(whereSeparator: { $0 == " " || $0 == "," })
                guard f.count >= 6, let h = Int(f[1].dropFirst(2), radix: 16), let t = Int(f[4]), let l = Int(f[5]) else { continue }
                out.append((h, t, l, [:]))
            } else if line.hasPrefix("\t"), !line.hasPrefix("\t\t"), let colon = line.range(of: ": "), !out.isEmpty {
                out[out.count - 1].fields[line[..<colon.lowerBound].trimmingCharacters(in: .whitespaces)] = String(line[colon.upperBound...])
            }
        }
        return out
    }

    static func database(_ path: String, log: OnceLog = OnceLog()) throws -> Database {
        let registry = PluginRegistry()
        let flags = Flags()
        registry.addTable(SMBIOSTables.smbiosTables(flags: flags, path: path, log: log))
        registry.addTable(SMBIOSTables.platformInfo(flags: flags, path: path, efiDirectory: "/nonexistent", log: log))
        registry.addTable(SMBIOSTables.memoryDevices(flags: flags, path: path, log: log))
        registry.addTable(SMBIOSTables.cpuInfo(flags: flags, path: path, log: log))
        return try Database(registry: registry, flags: flags)
    }

    @Test(.enabled(if: installed("/usr/sbin/dmidecode"))) func fixtureMatchesDmidecode() async throws {
        let dir = TempDir()
        Self.write(dir.path + "/DMI", Self.table)
        Self.write(dir.path + "/dump", Self.dump(Self.table))
        let db = try Self.database(dir.path + "/DMI")
        let blocks = Self.dmidecodeBlocks(try await toolOutput("/usr/sbin/dmidecode", ["--from-dump", dir.path + "/dump"]))
        #expect(blocks.count == 5)

        #expect(try rowSet(db, "SELECT * FROM smbios_tables", ["handle", "type", "header_size"])
            == Set(blocks.map { "\($0.handle)\t\($0.type)\t\($0.length)" }))
        #expect(try rowSet(db, "SELECT * FROM smbios_tables", ["number", "description", "size"]) == [
            "0\tBIOS Information\t\(Self.parts[0].count)", "1\tProcessor Information\t\(Self.parts[1].count)",
            "2\tMemory Device\t\(Self.parts[2].count)", "3\tMemory Device\t\(Self.parts[3].count)", "4\tEnd-of-Table\t4",
        ])

        let bios = try #require(blocks.first { $0.type == 0 }).fields
        let platform = try rowSet(db, "SELECT * FROM platform_info", ["vendor", "version", "date", "revision", "address", "size", "firmware_type"])
        // osquery trims the spaces vendors leave after strings; dmidecode prints them.
        let biosExpected = [bios["Vendor"], bios["Version"]?.trimmingCharacters(in: .whitespaces), bios["Release Date"], bios["BIOS Revision"], "0xe800", "262144", "bios"]
        #expect(platform == [biosExpected.map { $0 ?? "?" }.joined(separator: "\t")])
        #expect(bios["Address"] == "0xE8000" && bios["ROM Size"] == "256 kB")

        let cpu = try #require(blocks.first { $0.type == 4 }).fields
        #expect(try rowSet(db, "SELECT * FROM cpu_info", [
            "device_id", "socket_designation", "manufacturer", "model", "max_clock_speed", "current_clock_speed", "number_of_cores",
            "logical_processors", "address_width", "processor_type", "cpu_status",
        ]) == [
            ["CPU0", cpu["Socket Designation"], cpu["Manufacturer"], cpu["Version"], cpu["Max Speed"]?.replacingOccurrences(of: " MHz", with: ""),
             cpu["Current Speed"]?.replacingOccurrences(of: " MHz", with: ""), cpu["Core Count"], cpu["Thread Count"], "64", "3", "65"]
                .map { $0 ?? "?" }.joined(separator: "\t"),
        ])
        #expect(cpu["Type"] == "Central Processor" && cpu["Status"] == "Populated, Enabled")

        let columns = ["handle", "array_handle", "form_factor", "total_width", "data_width", "size", "set", "device_locator", "bank_locator",
                       "memory_type", "memory_type_details", "max_speed", "configured_clock_speed", "manufacturer", "serial_number",
                       "asset_tag", "part_number", "min_voltage", "max_voltage", "configured_voltage"]
        var expected = Set<String>()
        for block in blocks where block.type == 17 {
            let f = block.fields
            func number(_ key: String, _ unit: String) -> String? {
                guard let v = f[key], v.hasSuffix(unit) else { return "" }
                return String(v.dropLast(unit.count))
            }
            // dmidecode prints sizes in GB, speeds in MT/s; osquery keeps the raw MB and MT/s.
            let size = f["Size"].flatMap { $0.hasSuffix(" GB") ? Int($0.dropLast(3)).map { String($0 * 1024) } : nil }
            expected.insert([SMBIOSTables.hex4(UInt16(block.handle)), "0x1000", f["Form Factor"], number("Total Width", " bits"),
                             number("Data Width", " bits"), size, f["Set"] == "None" ? "0" : f["Set"] == "Unknown" ? "" : f["Set"], f["Locator"], f["Bank Locator"],
                             f["Type"], f["Type Detail"], number("Speed", " MT/s"), number("Configured Memory Speed", " MT/s"),
                             f["Manufacturer"], f["Serial Number"], f["Asset Tag"], f["Part Number"], "1200", "1200", "1200"]
                .map { $0 ?? "?" }.joined(separator: "\t"))
        }
        #expect(try rowSet(db, "SELECT * FROM memory_devices", columns) == expected)
        #expect(expected.contains { $0.contains("\t32768\t\tDIMM 1\t") })
    }

    static func le32(_ v: UInt32) -> [UInt8] { le16(UInt16(v & 0xFFFF)) + le16(UInt16(v >> 16)) }

    /// A memory array, its mapped range, a device's mapped range, an error record, OEM strings.
    static let memoryParts: [[UInt8]] = [
        structure(16, handle: 0x1000, [3, 3, 6] + le32(64 << 20) + le16(0xFFFE) + le16(4) + le32(0) + le32(0), strings: []),
        structure(19, handle: 0x1300, le32(0) + le32(0x1FFFFF) + le16(0x1000) + [1] + le32(0) + le32(0) + le32(0) + le32(0), strings: []),
        structure(20, handle: 0x1400, le32(0) + le32(0x1FFFFF) + le16(0x1100) + le16(0x1300) + [1, 1, 1] + le32(0) + le32(0) + le32(0) + le32(0), strings: []),
        structure(18, handle: 0x1200, [3, 2, 2] + le32(0) + le32(0x8000_0000) + le32(0x8000_0000) + le32(0x8000_0000), strings: []),
        structure(11, handle: 0x0B00, [2], strings: ["Hello OEM", "key=value"]),
        structure(127, handle: 0xFEFF, [], strings: []),
    ]

    @Test(.enabled(if: installed("/usr/sbin/dmidecode"))) func memoryStructuresMatchDmidecode() async throws {
        let dir = TempDir()
        let table = Array(Self.memoryParts.joined())
        Self.write(dir.path + "/DMI", table)
        Self.write(dir.path + "/dump", Self.dump(table))
        let path = dir.path + "/DMI"
        let flags = Flags()
        let registry = PluginRegistry()
        registry.addTable(SMBIOSTables.memoryArrays(flags: flags, path: path))
        registry.addTable(SMBIOSTables.memoryArrayMappedAddresses(flags: flags, path: path))
        registry.addTable(SMBIOSTables.memoryDeviceMappedAddresses(flags: flags, path: path))
        registry.addTable(SMBIOSTables.memoryErrorInfo(flags: flags, path: path))
        registry.addTable(SMBIOSTables.oemStrings(flags: flags, path: path))
        let db = try Database(registry: registry, flags: flags)
        let blocks = Self.dmidecodeBlocks(try await toolOutput("/usr/sbin/dmidecode", ["--from-dump", dir.path + "/dump"]))
        func fields(_ type: Int) throws -> [String: String] { try #require(blocks.first { $0.type == type }).fields }

        // dmidecode capitalises the words osquery's tables keep lower case.
        let array = try fields(16)
        #expect(try rowSet(db, "SELECT * FROM memory_arrays", ["handle", "location", "use", "memory_error_correction", "max_capacity", "memory_error_info_handle", "number_memory_devices"])
            == [["0x1000", array["Location"]?.lowercased() == "system board or motherboard" ? "System board or motherboard" : "?",
                 array["Use"]?.lowercased() == "system memory" ? "System memory" : "?", array["Error Correction Type"],
                 array["Maximum Capacity"]?.replacingOccurrences(of: " GB", with: ""),
                 array["Error Information Handle"] == "Not Provided" ? "" : "?", array["Number Of Devices"]].map { $0 ?? "?" }.joined(separator: "\t")])

        // dmidecode prints byte addresses; osquery the structure's kilobyte values.
        func kilobytes(_ text: String?) -> String {
            guard let text, let bytes = UInt64(text.dropFirst(2), radix: 16) else { return "?" }
            return SMBIOSTables.hex(bytes / 1024, width: 8)
        }
        let mapped = try fields(19)
        #expect(try rowSet(db, "SELECT * FROM memory_array_mapped_addresses", ["handle", "memory_array_handle", "starting_address", "ending_address", "partition_width"])
            == [["0x1300", mapped["Physical Array Handle"], kilobytes(mapped["Starting Address"]), kilobytes(mapped["Ending Address"]),
                 mapped["Partition Width"]].map { $0 ?? "?" }.joined(separator: "\t")])
        let device = try fields(20)
        #expect(try rowSet(db, "SELECT * FROM memory_device_mapped_addresses", ["handle", "memory_device_handle", "starting_address", "ending_address", "partition_row_position", "interleave_position", "interleave_data_depth"])
            == [["0x1400", device["Physical Device Handle"], kilobytes(device["Starting Address"]), kilobytes(device["Ending Address"]),
                 device["Partition Row Position"], device["Interleave Position"], device["Interleaved Data Depth"]].map { $0 ?? "?" }.joined(separator: "\t")])
        #expect(device["Memory Array Mapped Address Handle"] == "0x1300")

        let error = try fields(18)
        #expect(try rowSet(db, "SELECT * FROM memory_error_info", ["handle", "error_type", "error_granularity", "error_operation", "vendor_syndrome", "memory_array_error_address", "device_error_address", "error_resolution"])
            == [["0x1200", error["Type"], error["Granularity"], error["Operation"],
                 error["Vendor Syndrome"] == "Unknown" ? "" : "?", error["Memory Array Address"] == "Unknown" ? "" : "?",
                 error["Device Address"] == "Unknown" ? "" : "?", error["Resolution"] == "Unknown" ? "" : "?"].map { $0 ?? "?" }.joined(separator: "\t")])

        let oem = try fields(11)
        #expect(try rowSet(db, "SELECT * FROM oem_strings", ["handle", "number", "value"])
            == Set((1...2).map { "0x0b00\t\($0)\t\(oem["String \($0)"] ?? "?")" }))
    }

    /// No table here (or no root): each table answers no rows and says why once, however
    /// often it is asked.
    @Test func missingTableGivesNoRowsAndSaysWhyOnce() throws {
        let log = OnceLog()
        let db = try Self.database("/nonexistent/DMI", log: log)
        for _ in 0..<3 {
            for name in ["smbios_tables", "platform_info", "memory_devices", "cpu_info"] {
                #expect(try db.execute("SELECT * FROM \(name)").rowCount == 0)
            }
        }
        #expect(log.messages.count == 4)
    }

    /// Truncated and corrupt structures (a length past the end, strings without their NULs,
    /// string numbers past the set) give what can be read and no crash; the tables keep answering.
    @Test func corruptTablesAreReadSafely() throws {
        let dir = TempDir()
        var garbage = Self.table
        garbage[1] = 0xFF
        Self.write(dir.path + "/long", garbage)
        Self.write(dir.path + "/cut", Array(Self.table.prefix(70)))
        var strings = Self.structure(0, handle: 1, [9, 9] + [UInt8](repeating: 0, count: 18), strings: ["x"])
        strings.removeLast(2)
        Self.write(dir.path + "/strings", strings + [0x41, 0x42])
        for name in ["long", "cut", "strings"] {
            let db = try Self.database(dir.path + "/" + name)
            for table in ["smbios_tables", "platform_info", "memory_devices", "cpu_info"] {
                _ = try db.execute("SELECT * FROM \(table)")
            }
        }
        let cut = try Self.database(dir.path + "/cut")
        #expect(try rowSet(cut, "SELECT * FROM smbios_tables", ["type"]) == ["0"])
        #expect(try rowSet(cut, "SELECT * FROM platform_info", ["vendor"]) == ["Acme BIOS"])
        let bad = try Self.database(dir.path + "/strings")
        #expect(try rowSet(bad, "SELECT * FROM platform_info", ["vendor", "version"]) == ["\t"])
    }

    /// This host's own table against dmidecode, where the kernel exposes one and we are root.
    @Test(.enabled(if: installed("/usr/sbin/dmidecode") && access(SMBIOSTables.dmiPath, R_OK) == 0))
    func hostTableMatchesDmidecode() async throws {
        let db = try Self.database(SMBIOSTables.dmiPath)
        let blocks = Self.dmidecodeBlocks(try await toolOutput("/usr/sbin/dmidecode", []))
        #expect(try rowSet(db, "SELECT * FROM smbios_tables", ["handle", "type", "header_size"])
            == Set(blocks.map { "\($0.handle)\t\($0.type)\t\($0.length)" }))
    }

    /// Every ACPI table file, its size and MD5 as `find` and `md5sum` see them; without root
    /// the rows stay, with size -1 and no digest.
    @Test(.enabled(if: installed("/usr/bin/find", "/usr/bin/md5sum") && FileIO.isDirectory("/sys/firmware/acpi/tables")))
    func acpiTablesMatchMd5sum() async throws {
        let registry = PluginRegistry()
        registry.addTable(SMBIOSTables.acpiTables(flags: Flags()))
        let db = try Database(registry: registry, flags: Flags())
        let files = try await toolOutput("/usr/bin/find", ["/sys/firmware/acpi/tables", "-type", "f"]).split(separator: "\n").map(String.init)
        var expected = Set<String>()
        for file in files {
            let name = String(file.split(separator: "/").last ?? "")
            let sum = try await toolOutput("/usr/bin/md5sum", [file]).split(separator: " ").first.map(String.init)
            var st = stat()
            if let sum, sum.count == 32, access(file, R_OK) == 0 {
                _ = stat(file, &st)
                expected.insert("\(name)\t\(st.st_size)\t\(sum)")
            } else {
                expected.insert("\(name)\t-1\t")
            }
        }
        #expect(try rowSet(db, "SELECT * FROM acpi_tables", ["name", "size", "md5"]) == expected)
    }

    @Test func acpiTablesWithoutAcpiSayWhyOnce() throws {
        let log = OnceLog()
        let registry = PluginRegistry()
        registry.addTable(SMBIOSTables.acpiTables(flags: Flags(), root: "/nonexistent/acpi", log: log))
        let db = try Database(registry: registry, flags: Flags())
        for _ in 0..<2 { #expect(try db.execute("SELECT * FROM acpi_tables").rowCount == 0) }
        #expect(log.messages.count == 1)
    }
}
