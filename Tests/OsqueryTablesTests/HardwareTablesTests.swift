import Foundation
import OsqueryEngine
@testable import OsqueryTables
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hardware and kernel tables against the admin's tools and the kernel's files read by a
/// second route, and on sysfs-shaped fixtures for hardware this machine lacks.
@Suite(.serialized) struct HardwareTablesTests {
    /// A database holding only the given tables.
    static func database(_ tables: FunctionTable...) throws -> Database {
        let registry = PluginRegistry()
        for t in tables { registry.addTable(t) }
        return try Database(registry: registry, flags: Flags())
    }

    /// `KEY="value"` pairs of one `lsblk -P` line.
    static func pairs(_ line: Substring) -> [String: String] {
        var out: [String: String] = [:]
        var rest = line[...]
        while let eq = rest.range(of: "=\"") {
            let key = rest[..<eq.lowerBound].trimmingCharacters(in: .whitespaces)
            let after = rest[eq.upperBound...]
            guard let close = after.firstIndex(of: "\"") else { break }
            out[key] = String(after[..<close])
            rest = after[after.index(after: close)...]
        }
        return out
    }

    /// /proc/keys as `cat` reads it, kept as osquery keeps it: lines of exactly ten fields.
    @Test(.enabled(if: installed("/usr/bin/keyctl", "/usr/bin/cat") && FileIO.exists("/proc/keys")))
    func kernelKeysMatchProcKeysAndKeyctl() async throws {
        // A key of the test's own, readable without possessing it, so the table must show it.
        let description = "osquery-test-\(getpid())"
        let serial = try await toolOutput("/usr/bin/keyctl", ["add", "user", description, "payload", "@u"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var failure: (any Error)?
        do {
            let id = try #require(UInt32(serial))
            _ = try await toolOutput("/usr/bin/keyctl", ["setperm", serial, "0x3f3f0000"])
            let db = try Self.database(HardwareTables.kernelKeys(flags: Flags()))
            let columns = ["serial_number", "permissions", "uid", "gid", "type", "description"]
            let ours = try rowSet(db, "SELECT * FROM kernel_keys", columns)
            let theirs = Set(try await toolOutput("/usr/bin/cat", ["/proc/keys"]).split(separator: "\n").compactMap { line -> String? in
                let f = line.split(separator: " ")
                guard f.count == 10 else { return nil }
                return [f[0], f[4], f[5], f[6], f[7], f[8] + f[9]].joined(separator: "\t")
            })
            #expect(ours == theirs, "only ours: \(ours.subtracting(theirs)); only /proc/keys: \(theirs.subtracting(ours))")
            let hex = String(id, radix: 16).leftPadded(8)
            #expect(ours.contains("\(hex)\t3f3f0000\t\(getuid())\t\(getgid())\tuser\t\(description):7"))
        } catch {
            failure = error
        }
        _ = try? await toolOutput("/usr/bin/keyctl", ["unlink", serial, "@u"])
        if let failure { throw failure }
    }

    @Test func kernelKeysKeepOsquerysTenFieldLines() throws {
        let dir = TempDir()
        dir.write("keys", """
            04ffe70d I--Q---     2 perm 1f3f0000     0 65534 keyring   _uid.0: empty
            2f416c2e I--Q---     1 perm 3f010000  1000  1000 user      osqp: 3
            1111aaaa I------     1 perm 3f010000     0     0 user      two words: 3
            short line

            """)
        let db = try Self.database(HardwareTables.kernelKeys(flags: Flags(), path: dir.path + "/keys"))
        #expect(try rowSet(db, "SELECT * FROM kernel_keys", ["serial_number", "flags", "usage", "timeout", "uid", "gid", "type", "description"]) == [
            "04ffe70d\tI--Q---\t2\tperm\t0\t65534\tkeyring\t_uid.0:empty",
            "2f416c2e\tI--Q---\t1\tperm\t1000\t1000\tuser\tosqp:3",
        ])
        #expect(try db.execute("SELECT typeof(usage), typeof(uid) FROM kernel_keys LIMIT 1")[0, 0] == .text("integer"))
    }

    /// Each region of /proc/iomem (read by `cat`), cut as osquery cuts it: the end keeps the
    /// space before " : ".
    @Test(.enabled(if: installed("/usr/bin/cat") && FileIO.exists("/proc/iomem")))
    func memoryMapMatchesProcIomem() async throws {
        let db = try Self.database(HardwareTables.memoryMap(flags: Flags()))
        let ours = try rowSet(db, "SELECT * FROM memory_map", ["name", "start", "end"])
        let theirs = Set(try await toolOutput("/usr/bin/cat", ["/proc/iomem"]).split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard let sep = trimmed.range(of: " : "), let dash = trimmed.firstIndex(of: "-") else { return nil }
            return "\(trimmed[sep.upperBound...])\t0x\(trimmed[..<dash])\t0x\(trimmed[trimmed.index(after: dash)..<sep.lowerBound]) "
        })
        #expect(!theirs.isEmpty)
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs).prefix(5)); only iomem: \(theirs.subtracting(ours).prefix(5))")
    }

    @Test func memoryMapReadsNestedRegions() throws {
        let dir = TempDir()
        dir.write("iomem", "00000000-00000fff : Reserved\n  000f0000-000fffff : System ROM\n    eec00000-eecfffff : PCI Bus 0000:00\nbad line\n")
        let db = try Self.database(HardwareTables.memoryMap(flags: Flags(), path: dir.path + "/iomem"))
        #expect(try rowSet(db, "SELECT * FROM memory_map", ["name", "start", "end"]) == [
            "Reserved\t0x00000000\t0x00000fff ", "System ROM\t0x000f0000\t0x000fffff ", "PCI Bus 0000:00\t0xeec00000\t0xeecfffff ",
        ])
    }

    /// Every device lsblk shows, with its parent, size (sysfs sectors of 512 bytes), logical
    /// sector size and, for disks, vendor and model; lsblk leaves out loop devices with no
    /// backing file, the only ones it may lack.
    @Test(.enabled(if: installed("/usr/bin/lsblk"))) func blockDevicesMatchLsblk() async throws {
        let db = try Self.database(HardwareTables.blockDevices(flags: Flags()))
        let output = try await toolOutput("/usr/bin/lsblk", ["-b", "-P", "-o", "KNAME,PKNAME,VENDOR,MODEL,SIZE,LOG-SEC,UUID,FSTYPE,LABEL,TYPE"])
        let columns = ["name", "parent", "size", "block_size"]
        var theirs = Set<String>()
        var disks: [String: (vendor: String, model: String)] = [:]
        var filesystems: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let p = Self.pairs(line)
            let name = "/dev/" + (p["KNAME"] ?? "")
            let parent = (p["PKNAME"] ?? "").isEmpty ? "" : "/dev/" + p["PKNAME"]!
            let sectors = (Int64(p["SIZE"] ?? "") ?? -1) / 512
            theirs.insert([name, parent, String(sectors), p["LOG-SEC"] ?? ""].joined(separator: "\t"))
            if p["TYPE"] == "disk" { disks[name] = (p["VENDOR"] ?? "", p["MODEL"] ?? "") }
            filesystems[name] = [p["UUID"] ?? "", p["FSTYPE"] ?? "", p["LABEL"] ?? ""].joined(separator: "\t")
        }
        #expect(!theirs.isEmpty)
        let ours = try rowSet(db, "SELECT * FROM block_devices", columns)
        #expect(theirs.subtracting(ours).isEmpty, "only lsblk: \(theirs.subtracting(ours))")
        for extra in ours.subtracting(theirs) {
            #expect(extra.hasPrefix("/dev/loop") && extra.split(separator: "\t", omittingEmptySubsequences: false)[2] == "0", "only ours: \(extra)")
        }
        for (name, disk) in disks {
            let r = try db.execute("SELECT vendor, model FROM block_devices WHERE name = '\(name)'")
            #expect(r.rowCount == 1)
            #expect(r[0, 0].text == disk.vendor && r[0, 1].text == disk.model, "\(name)")
        }
        // lsblk probes (or asks udev for) filesystems as root only, as libblkid does for us.
        if getuid() == 0 {
            for (name, fs) in filesystems {
                let r = try rowSet(db, "SELECT * FROM block_devices WHERE name = '\(name)'", ["uuid", "type", "label"])
                #expect(r == [fs], "\(name)")
            }
        }
    }

    /// `WHERE name = ...` reads only that device, and a name that is no device gives no row.
    @Test func blockDevicesPushDownTheName() throws {
        let db = try Self.database(HardwareTables.blockDevices(flags: Flags()))
        let all = try rowSet(db, "SELECT * FROM block_devices", ["name"])
        if let one = all.first {
            #expect(try rowSet(db, "SELECT * FROM block_devices WHERE name = '\(one)'", ["name"]) == [one])
        }
        #expect(try db.execute("SELECT * FROM block_devices WHERE name = '/dev/no-such-device'").rowCount == 0)
    }

    /// Each device lspci lists, with its ids, names from pci.ids, and the driver bound to it.
    @Test(.enabled(if: installed("/usr/bin/lspci") && FileIO.exists("/sys/bus/pci/devices")))
    func pciDevicesMatchLspci() async throws {
        let db = try Self.database(HardwareTables.pciDevices(flags: Flags()))
        let output = try await toolOutput("/usr/bin/lspci", ["-mm", "-nn", "-D"])
        /// "Name [id]" as (name, id).
        func named(_ field: String) -> (String, String) {
            guard field.hasSuffix("]"), let open = field.lastIndex(of: "[") else { return (field, "") }
            let name = field[..<open].trimmingCharacters(in: .whitespaces)
            return (name, String(field[field.index(after: open)..<field.index(before: field.endIndex)]))
        }
        var expected = Set<String>()
        var names: [String: [String]] = [:]
        for line in output.split(separator: "\n") {
            let quoted = line.split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            guard quoted.count == 5, let slot = line.split(separator: " ").first else { continue }
            let (className, classID) = named(quoted[0])
            let (vendor, vendorID) = named(quoted[1])
            let (model, modelID) = named(quoted[2])
            let (subVendor, subVendorID) = named(quoted[3])
            let (_, subModelID) = named(quoted[4])
            let c = Array(classID.lowercased())
            expected.insert([String(slot), "0x" + vendorID, "0x" + modelID, "0x" + String(c[0..<2]), "0x" + String(c[2..<4]),
                             subVendorID.isEmpty ? "" : "0x" + subVendorID, subModelID.isEmpty ? "" : "0x" + subModelID,
                             subVendor].joined(separator: "\t"))
            // lspci names an unknown class by its number, an unknown device "Device".
            names[String(slot)] = [named(className).0, vendor, model.hasPrefix("Device") ? "" : model]
        }
        #expect(!expected.isEmpty)
        // lspci leaves out a subsystem of 0000:0000 (the kernel reports it, and so do we).
        let ours = try rowSet(db, """
            SELECT pci_slot, vendor_id, model_id, pci_class_id, pci_subclass_id,
                   iif(subsystem_vendor_id = '0x0000', '', subsystem_vendor_id) AS sv,
                   iif(subsystem_vendor_id = '0x0000', '', subsystem_model_id) AS sm, subsystem_vendor FROM pci_devices
            """, ["pci_slot", "vendor_id", "model_id", "pci_class_id", "pci_subclass_id", "sv", "sm", "subsystem_vendor"])
        #expect(ours == expected, "only ours: \(ours.subtracting(expected)); only lspci: \(expected.subtracting(ours))")
        let r = try db.execute("SELECT pci_slot, pci_class, pci_subclass, vendor, model, driver FROM pci_devices")
        for row in 0..<r.rowCount {
            let slot = r[row, 0].text ?? ""
            guard let want = names[slot] else { continue }
            let subclass = r[row, 2].text ?? ""
            #expect((subclass.isEmpty ? r[row, 1].text : subclass) == want[0], "\(slot) class")
            #expect(r[row, 3].text == want[1], "\(slot) vendor")
            if !want[2].isEmpty { #expect(r[row, 4].text == want[2], "\(slot) model") }
            // The bound driver, read by a second route: the sysfs link.
            let link = FileIO.readLink("/sys/bus/pci/devices/\(slot)/driver").map { String(decoding: $0, as: UTF8.self) } ?? ""
            #expect(r[row, 5].text == (link.split(separator: "/").last.map(String.init) ?? ""), "\(slot) driver")
        }
    }

    /// Without pci.ids osquery answers no rows and logs where it looked; the table keeps answering.
    @Test func pciDevicesNeedPciIds() throws {
        let dir = TempDir()
        dir.mkdir("devices")
        dir.mkdir("devices/0000:00:1f.0")
        dir.write("devices/0000:00:1f.0/uevent", "DRIVER=lpc_ich\nPCI_CLASS=60100\nPCI_ID=8086:2918\nPCI_SUBSYS_ID=1AF4:1100\nPCI_SLOT_NAME=0000:00:1f.0\n")
        dir.write("pci.ids", """
            # comment
            1af4  Red Hat, Inc.
            8086  Intel Corporation
            \t2918  82801IB (ICH9) LPC Interface Controller
            \t\t1af4 1100  QEMU Virtual Machine
            ffff  Illegal Vendor ID
            C 06  Bridge
            \t00  Host bridge
            \t01  ISA bridge

            """)
        let missing = try Self.database(HardwareTables.pciDevices(flags: Flags(), devicesDir: dir.path + "/devices", idsPaths: [dir.path + "/none"]))
        #expect(try missing.execute("SELECT * FROM pci_devices").rowCount == 0)
        let db = try Self.database(HardwareTables.pciDevices(flags: Flags(), devicesDir: dir.path + "/devices", udevData: dir.path + "/udev", idsPaths: [dir.path + "/pci.ids"]))
        #expect(try rowSet(db, "SELECT * FROM pci_devices", [
            "pci_slot", "pci_class", "driver", "vendor", "vendor_id", "model", "model_id", "pci_class_id", "pci_subclass_id",
            "pci_subclass", "subsystem_vendor_id", "subsystem_vendor", "subsystem_model_id", "subsystem_model",
        ]) == ["0000:00:1f.0\tBridge\tlpc_ich\tIntel Corporation\t0x8086\t82801IB (ICH9) LPC Interface Controller\t0x2918\t0x06\t0x01\tISA bridge\t0x1af4\tRed Hat, Inc.\t0x1100\tQEMU Virtual Machine"])
    }

    /// Where there is no USB bus the table answers no rows and says why once; with `lsusb` and
    /// a bus, each device's bus, number and ids match.
    @Test func usbDevicesMatchLsusbOrSayWhyOnce() async throws {
        let log = OnceLog()
        let db = try Self.database(HardwareTables.usbDevices(flags: Flags(), log: log))
        let ours = try rowSet(db, "SELECT * FROM usb_devices", ["usb_address", "usb_port", "vendor_id", "model_id"])
        _ = try db.execute("SELECT * FROM usb_devices")
        if !FileIO.exists("/sys/bus/usb/devices") {
            #expect(ours.isEmpty)
            #expect(log.messages.count == 1)
        } else if installed("/usr/bin/lsusb") {
            // "Bus 001 Device 002: ID 1d6b:0002 ..."
            let theirs = Set(try await toolOutput("/usr/bin/lsusb", []).split(separator: "\n").compactMap { line -> String? in
                let f = line.split(separator: " ")
                guard f.count >= 6, let bus = Int(f[1]), let device = Int(f[3].dropLast()) else { return nil }
                let ids = f[5].split(separator: ":")
                guard ids.count == 2 else { return nil }
                return "\(bus)\t\(device)\t\(ids[0])\t\(ids[1])"
            })
            #expect(ours == theirs)
        }
    }

    /// A sysfs-shaped bus: devices give rows (from udev's database where udevd keeps one, else
    /// from the attributes udev reads), interfaces none.
    @Test func usbDevicesReadSysfsAndUdevData() throws {
        let dir = TempDir()
        for d in ["devices", "devices/usb1", "devices/1-1", "devices/1-0:1.0", "udev"] { dir.mkdir(d) }
        dir.write("devices/usb1/uevent", "MAJOR=189\nMINOR=0\nDEVNAME=bus/usb/001/001\nDEVTYPE=usb_device\nTYPE=9/0/1\nBUSNUM=001\nDEVNUM=001\n")
        dir.write("devices/usb1/idVendor", "1d6b\n")
        dir.write("devices/usb1/idProduct", "0002\n")
        dir.write("devices/usb1/bcdDevice", "0606\n")
        dir.write("devices/usb1/product", "xHCI Host Controller\n")
        dir.write("devices/usb1/serial", "0000:00:14.0\n")
        dir.write("devices/usb1/removable", "unknown\n")
        dir.write("devices/1-1/uevent", "MAJOR=189\nMINOR=1\nTYPE=0/0/0\nBUSNUM=001\nDEVNUM=002\n")
        dir.write("devices/1-1/removable", "removable\n")
        dir.write("udev/c189:1", "I:123\nE:ID_VENDOR_ID=0781\nE:ID_MODEL_ID=5581\nE:ID_REVISION=0100\nE:ID_MODEL=Ultra\nE:ID_MODEL_FROM_DATABASE=Ultra Flash\nE:ID_VENDOR_FROM_DATABASE=SanDisk Corp.\nE:ID_SERIAL_SHORT=4C53\n")
        dir.write("devices/1-0:1.0/uevent", "DEVTYPE=usb_interface\nINTERFACE=9/0/0\n")
        let log = OnceLog()
        let db = try Self.database(HardwareTables.usbDevices(flags: Flags(), devicesDir: dir.path + "/devices", udevData: dir.path + "/udev", log: log))
        #expect(try rowSet(db, "SELECT * FROM usb_devices", [
            "usb_address", "usb_port", "vendor", "vendor_id", "version", "model", "model_id", "serial", "class", "subclass", "protocol", "removable",
        ]) == [
            "1\t1\t\t1d6b\t0606\txHCI_Host_Controller\t0002\t0000:00:14.0\t9\t0\t1\t-1",
            "1\t2\tSanDisk Corp.\t0781\t0100\tUltra Flash\t5581\t4C53\t0\t0\t0\t1",
        ])
        #expect(log.messages.isEmpty)
    }

    /// FIFOs where /proc/keys, /proc/iomem and the DMI table should be are refused at once (a
    /// read would wait for a writer), a DMI table over read_max is not read, and each table
    /// keeps answering afterwards.
    @Test func fifosAndOversizedFilesAreRefused() throws {
        let dir = TempDir()
        for name in ["keys", "iomem", "DMI"] { #expect(mkfifo(dir.path + "/" + name, 0o600) == 0) }
        let flags = Flags()
        let registry = PluginRegistry()
        registry.addTable(HardwareTables.kernelKeys(flags: flags, path: dir.path + "/keys"))
        registry.addTable(HardwareTables.memoryMap(flags: flags, path: dir.path + "/iomem"))
        registry.addTable(SMBIOSTables.smbiosTables(flags: flags, path: dir.path + "/DMI"))
        let db = try Database(registry: registry, flags: flags)
        for table in ["kernel_keys", "memory_map", "smbios_tables"] {
            #expect(try db.execute("SELECT * FROM \(table)").rowCount == 0)
        }

        let big = TempDir()
        big.write("DMI", String(repeating: "\u{1}", count: 8192))
        let bigRegistry = PluginRegistry()
        bigRegistry.addTable(SMBIOSTables.smbiosTables(flags: flags, path: big.path + "/DMI"))
        let bigDB = try Database(registry: bigRegistry, flags: flags)
        #expect(try bigDB.execute("SELECT * FROM smbios_tables").rowCount > 0)
        try flags.set("read_max", "4096")
        #expect(try bigDB.execute("SELECT * FROM smbios_tables").rowCount == 0)
        try flags.set("read_max", String(50 << 20))
        #expect(try bigDB.execute("SELECT * FROM smbios_tables").rowCount > 0)
    }

    /// cpuid's registers against /proc/cpuinfo, read by `cat`: vendor, brand string, family,
    /// and every feature the kernel lists (the kernel may hide features, never invent them).
    @Test(.enabled(if: installed("/usr/bin/cat") && access("/dev/cpu/0/cpuid", R_OK) == 0))
    func cpuidMatchesProcCpuinfo() async throws {
        let db = try Self.database(CPUIDTable.cpuid(flags: Flags()))
        let r = try db.execute("SELECT feature, value FROM cpuid")
        var ours: [String: String] = [:]
        for row in 0..<r.rowCount { ours[r[row, 0].text ?? ""] = r[row, 1].text ?? "" }
        var info: [String: String] = [:]
        for line in try await toolOutput("/usr/bin/cat", ["/proc/cpuinfo"]).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 {
                let key = parts[0].trimmingCharacters(in: .whitespaces)
                if info[key] == nil { info[key] = parts[1].trimmingCharacters(in: .whitespaces) }
            }
            if line.isEmpty { break }
        }
        #expect(ours["vendor"] == info["vendor_id"])
        #expect(ours["product_name"]?.trimmingCharacters(in: .whitespaces) == info["model name"])
        #expect(Int(ours["family"] ?? "", radix: 16).map { $0 >> 8 } == Int(info["cpu family"] ?? "").map { min($0, 15) })
        let flags = Set((info["flags"] ?? "").split(separator: " ").map(String.init))
        #expect(!flags.isEmpty)
        // osquery's names where the kernel's differ.
        let renamed = ["sse4.1": "sse4_1", "sse4.2": "sse4_2", "htt": "ht", "sha": "sha_ni", "lahfsahf": "lahf_lm",
                       "page1gb": "pdpe1gb", "sse3": "pni", "clfsh": "clflush", "sdbg": "sdbg", "intel_pt": "intel_pt"]
        for (_, list) in CPUIDTable.features {
            for (name, _, _) in list where flags.contains(renamed[name] ?? name) {
                #expect(ours[name] == "1", "\(name)")
            }
        }
        #expect(ours["hypervisor"] == (flags.contains("hypervisor") ? "1" : ours["hypervisor"]))
    }

    @Test func cpuidWithoutTheDriverSaysWhyOnce() throws {
        let log = OnceLog()
        let db = try Self.database(CPUIDTable.cpuid(flags: Flags(), device: "/nonexistent/cpuid", log: log))
        for _ in 0..<2 { #expect(try db.execute("SELECT * FROM cpuid").rowCount == 0) }
        let regular = TempDir()
        regular.write("cpuid", "not a device")
        let fileDB = try Self.database(CPUIDTable.cpuid(flags: Flags(), device: regular.path + "/cpuid", log: log))
        #expect(try fileDB.execute("SELECT * FROM cpuid").rowCount == 0)
        #expect(log.messages.count == 2)
    }

    /// /proc/mdstat's personalities, on the kernel's file where md is loaded and on a written one.
    @Test func mdPersonalitiesReadMdstat() throws {
        let dir = TempDir()
        dir.write("mdstat", "Personalities : [raid1] [raid6] [raid5] [raid4] [linear]\nmd0 : active raid1 sdb1[1] sda1[0]\n      1046528 blocks super 1.2 [2/2] [UU]\n\nunused devices: <none>\n")
        let db = try Self.database(HardwareTables.mdPersonalities(flags: Flags(), path: dir.path + "/mdstat"))
        #expect(try rowSet(db, "SELECT * FROM md_personalities", ["name"]) == ["raid1", "raid6", "raid5", "raid4", "linear"])
        let log = OnceLog()
        let live = try Self.database(HardwareTables.mdPersonalities(flags: Flags(), log: log))
        let rows = try rowSet(live, "SELECT * FROM md_personalities", ["name"])
        if let text = FileIO.readString("/proc/mdstat") {
            let expected = text.split(separator: "\n").first?.split(separator: "[").dropFirst().map { String($0.prefix { $0 != "]" }) } ?? []
            #expect(rows == Set(expected))
        } else {
            _ = try live.execute("SELECT * FROM md_personalities")
            #expect(rows.isEmpty && log.messages.count == 1)
        }
    }
}
