import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Logs a table's reason for answering no rows the first time only: a scheduled query
/// on a host without the hardware would otherwise repeat it every interval.
final class OnceLog: Sendable {
    /// For tables that take no log of their own: one set of messages for the process.
    static let shared = OnceLog()

    private let said = Mutex<Set<String>>([])

    func info(_ message: String) {
        let first = said.withLock { $0.insert(message).inserted }
        if first { StatusLog.info(message) }
    }

    /// The messages logged so far.
    var messages: Set<String> { said.withLock { $0 } }
}

/// osquery's hardware and kernel tables read from /proc and sysfs: kernel_keys, memory_map,
/// block_devices, pci_devices, usb_devices.
enum HardwareTables {
    static func kernelKeys(flags: Flags, path: String = "/proc/keys") -> FunctionTable {
        table("kernel_keys", [
            col("serial_number", .text), col("flags", .text), col("usage", .bigint), col("timeout", .text),
            col("permissions", .text), col("uid", .bigint), col("gid", .bigint), col("type", .text),
            col("description", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let content = BoundedFile.text(path, limit: flags[.readMax]) else {
                StatusLog.info("Cannot find keyrings file: \(path)")
                return rows
            }
            for line in content.split(separator: "\n") {
                // osquery keeps only keys of exactly ten fields, the description being the
                // last two joined without their space ("name:" and the payload summary).
                let f = osquerySplit(line, " ")
                guard f.count == 10 else { continue }
                rows.append(.text(f[0]))
                rows.append(.text(f[1]))
                rows.append(Int64(f[2]).map { .integer($0) } ?? .null)
                rows.append(.text(f[3]))
                rows.append(.text(f[4]))
                rows.append(Int64(f[5]).map { .integer($0) } ?? .null)
                rows.append(Int64(f[6]).map { .integer($0) } ?? .null)
                rows.append(.text(f[7]))
                rows.append(.text(f[8] + f[9]))
            }
            return rows
        }
    }

    /// /proc/iomem's regions, cut where osquery cuts each trimmed line: at its first '-' and
    /// its first ' ' or ':' (osquery's find_first_of(" : ")), so `end` keeps the space before
    /// " : " as osquery's does and rows match osquery's byte for byte.
    static func memoryMap(flags: Flags, path: String = "/proc/iomem") -> FunctionTable {
        table("memory_map", [col("name", .text), col("start", .text), col("end", .text)]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let content = BoundedFile.text(path, limit: flags[.readMax]) else { return rows }
            for line in osquerySplit(content, "\n") {
                let bytes = Array(line.utf8)
                guard let b1 = bytes.firstIndex(of: 0x2D),
                      let b2 = bytes.firstIndex(where: { $0 == 0x20 || $0 == 0x3A }),
                      bytes.count > b2 + 3 else { continue }
                // substr(b1 + 1, b2 - b1): a negative length wraps to npos, the rest of the line.
                let endBytes = b2 > b1 ? bytes[(b1 + 1)..<min(bytes.count, b2 + 1)] : bytes[(b1 + 1)...]
                rows.append(.text(bytes: bytes[(b2 + 3)...]))
                rows.append(.text("0x" + String(decoding: bytes[..<b1], as: UTF8.self)))
                rows.append(.text("0x" + String(decoding: endBytes, as: UTF8.self)))
            }
            return rows
        }
    }

    /// The RAID personalities the md driver has loaded: the bracketed names of /proc/mdstat's
    /// first line ("Personalities : [raid1] [raid6]").
    static func mdPersonalities(flags: Flags, path: String = "/proc/mdstat", log: OnceLog = OnceLog()) -> FunctionTable {
        table("md_personalities", [col("name", .text)]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let content = BoundedFile.text(path, limit: flags[.readMax]) else {
                log.info("md_personalities: \(path) does not exist (the md driver is not loaded)")
                return rows
            }
            let prefix = "Personalities :"
            guard let first = osquerySplit(content, "\n").first, first.contains(prefix) else { return rows }
            // osquery cuts the prefix's length off the line wherever on it the prefix was found.
            for token in osquerySplit(first.dropFirst(prefix.count), " ") where token.count > 2 {
                rows.append(.text(String(token.dropFirst().dropLast())))
            }
            return rows
        }
    }

    // MARK: block_devices

    /// libblkid's superblock probe, loaded at run time: libblkid1 is part of every Debian
    /// system (util-linux needs it), its development headers are not.
    struct Blkid: @unchecked Sendable {
        typealias NewProbe = @convention(c) (UnsafePointer<CChar>) -> OpaquePointer?
        typealias SetInt = @convention(c) (OpaquePointer, Int32) -> Int32
        typealias Probe = @convention(c) (OpaquePointer) -> Int32
        typealias Lookup = @convention(c) (OpaquePointer, UnsafePointer<CChar>, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafeMutablePointer<Int>?) -> Int32
        typealias Free = @convention(c) (OpaquePointer) -> Void
        let newProbe: NewProbe, enable: SetInt, setFlags: SetInt, safeProbe: Probe, lookup: Lookup, free: Free

        static let shared: Blkid? = {
            guard let lib = dlopen("libblkid.so.1", RTLD_NOW | RTLD_LOCAL) else {
                StatusLog.info("libblkid is not available: block_devices has no uuid, type or label")
                return nil
            }
            func symbol<T>(_ name: String, _: T.Type) -> T? { dlsym(lib, name).map { unsafeBitCast($0, to: T.self) } }
            guard let n = symbol("blkid_new_probe_from_filename", NewProbe.self),
                  let e = symbol("blkid_probe_enable_superblocks", SetInt.self),
                  let s = symbol("blkid_probe_set_superblocks_flags", SetInt.self),
                  let p = symbol("blkid_do_safeprobe", Probe.self),
                  let l = symbol("blkid_probe_lookup_value", Lookup.self),
                  let f = symbol("blkid_free_probe", Free.self) else { return nil }
            return Blkid(newProbe: n, enable: e, setFlags: s, safeProbe: p, lookup: l, free: f)
        }()

        /// UUID, TYPE and LABEL of the device's superblock, "" where absent (or not root).
        func probe(_ device: String) -> (uuid: String, type: String, label: String) {
            guard let pr = newProbe(device) else { return ("", "", "") }
            defer { free(pr) }
            // BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE
            _ = enable(pr, 1)
            _ = setFlags(pr, (1 << 1) | (1 << 3) | (1 << 5))
            guard safeProbe(pr) == 0 else { return ("", "", "") }
            func value(_ name: String) -> String {
                var out: UnsafePointer<CChar>?
                guard lookup(pr, name, &out, nil) == 0, let out else { return "" }
                return String(cString: out)
            }
            return (value("UUID"), value("TYPE"), value("LABEL"))
        }
    }

    struct BlockDevice {
        var path = ""
        var parent = ""
        var model = "", serial = "", vendor = "", size = "", blockSize = ""
        var uuid = "", type = "", label = ""
        var done = false
    }

    /// The sysfs mount point as osquery finds it (the first sysfs in /proc/mounts).
    static func sysfsRoot(readMax: UInt64) -> String {
        for line in (BoundedFile.text("/proc/mounts", limit: readMax) ?? "").split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count >= 3, f[2] == "sysfs" { return String(f[1]) }
        }
        return "/sys"
    }

    static func blockDevices(flags: Flags) -> FunctionTable {
        table("block_devices", [
            col("name", .text, .index), col("parent", .text), col("vendor", .text), col("model", .text),
            col("serial", .text), col("size", .bigint), col("block_size", .integer), col("uuid", .text, .collateNocase),
            col("type", .text), col("label", .text),
        ]) { context, schema in
            let readMax = flags[.readMax]
            let classDir = sysfsRoot(readMax: readMax) + "/class/block"
            var devices: [String: BlockDevice] = [:]
            for entry in FileIO.listDirectoryNames(classDir) ?? [] {
                // Each entry is a link to the device's directory; a partition's lies in its disk's.
                guard let real = realpath(classDir + "/" + entry, nil) else { continue }
                let path = String(cString: real)
                Glibc.free(real)
                guard FileIO.exists(path + "/uevent") else { continue }
                var device = BlockDevice(path: path)
                let components = path.split(separator: "/")
                let name = "/dev/" + (components.last.map(String.init) ?? entry)
                let container = components.count >= 2 ? String(components[components.count - 2]) : ""
                if container != "block" {
                    device.parent = "/dev/" + container
                } else if let slave = FileIO.listDirectoryNames(path + "/slaves")?.first {
                    // A logical device (dm, md) names its one lower device in slaves/.
                    device.parent = "/dev/" + slave
                }
                devices[name] = device
            }
            func attribute(_ path: String) -> String {
                guard let text = BoundedFile.text(path, limit: readMax) else { return "" }
                return String(text.unicodeScalars.drop(while: { " \t\n".unicodeScalars.contains($0) })
                    .reversed().drop(while: { " \t\n".unicodeScalars.contains($0) }).reversed().map(Character.init))
            }
            func fill(_ name: String) {
                guard var device = devices[name], !device.done else { return }
                var inherited: BlockDevice?
                if !device.parent.isEmpty, devices[device.parent] != nil {
                    fill(device.parent)
                    inherited = devices[device.parent]
                }
                device.model = attribute(device.path + "/device/model")
                for file in ["device/wwid", "device/serial"] where device.serial.isEmpty {
                    device.serial = attribute(device.path + "/" + file)
                }
                for file in ["device/vendor", "device/device/vendor"] where device.vendor.isEmpty {
                    device.vendor = attribute(device.path + "/" + file)
                }
                device.size = attribute(device.path + "/size")
                device.blockSize = attribute(device.path + "/queue/logical_block_size")
                if let inherited {
                    device.model = inherited.model
                    device.serial = inherited.serial
                    device.vendor = inherited.vendor
                }
                if let blkid = Blkid.shared { (device.uuid, device.type, device.label) = blkid.probe(name) }
                device.done = true
                devices[name] = device
            }
            let wanted = Set(context.equalities(for: "name"))
            var rows = TableRows(schema: schema)
            for name in devices.keys.sorted() where wanted.isEmpty || wanted.contains(name) {
                fill(name)
                guard let d = devices[name] else { continue }
                rows.append(.text(name))
                rows.append(.text(d.parent))
                rows.append(.text(d.vendor))
                rows.append(.text(d.model))
                rows.append(.text(d.serial))
                rows.append(Int64(d.size).map { .integer($0) } ?? .null)
                rows.append(Int64(d.blockSize).map { .integer($0) } ?? .null)
                rows.append(.text(d.uuid))
                rows.append(.text(d.type))
                rows.append(.text(d.label))
            }
            return rows
        }
    }

    // MARK: pci_devices, usb_devices

    /// KEY=VALUE lines of a sysfs uevent file.
    static func uevent(_ path: String, readMax: UInt64) -> [String: String] {
        var out: [String: String] = [:]
        for line in (BoundedFile.text(path, limit: readMax) ?? "").split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return out
    }

    /// The properties udev stored for a device (`E:` lines of its database entry): where
    /// udevd runs, the hardware database's names; elsewhere nothing.
    static func udevProperties(_ id: String, udevData: String, readMax: UInt64) -> [String: String] {
        var out: [String: String] = [:]
        for line in (BoundedFile.text(udevData + "/" + id, limit: readMax) ?? "").split(separator: "\n") where line.hasPrefix("E:") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[line.index(line.startIndex, offsetBy: 2)..<eq])] = String(line[line.index(after: eq)...])
        }
        return out
    }

    static let pciIDsPaths = ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"]

    /// The names pci.ids gives the devices present: vendors, their models and subsystems
    /// (read as osquery reads them, up to the `ffff` vendor), and the device classes after it.
    struct PCIDatabase {
        var vendors: [String: String] = [:]
        var models: [String: String] = [:]          // "vvvv dddd"
        var subsystems: [String: String] = [:]      // "vvvv dddd ssss tttt"
        var classes: [String: String] = [:]         // "cc" and "ccss"

        init(_ text: String, vendorsWanted: Set<String>) {
            var vendor = "", model = ""
            var inClasses = false, currentClass = ""
            for raw in text.split(separator: "\n") {
                var line = Substring(raw)
                if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
                while let last = line.last, last == " " || last == "\t" || last == "\r" { line = line.dropLast() }
                if line.isEmpty { continue }
                let bytes = Array(line.utf8)
                if inClasses {
                    if bytes.count > 6, bytes[0] == UInt8(ascii: "C"), bytes[1] == 0x20 {
                        currentClass = String(decoding: bytes[2..<4], as: UTF8.self)
                        classes[currentClass] = String(decoding: bytes[6...], as: UTF8.self)
                    } else if bytes.count > 5, bytes[0] == 0x09, bytes[1] != 0x09, !currentClass.isEmpty {
                        classes[currentClass + String(decoding: bytes[1..<3], as: UTF8.self)] = String(decoding: bytes[5...], as: UTF8.self)
                    }
                    continue
                }
                let hex = Set("0123456789abcdef".utf8)
                switch bytes.firstIndex(where: { hex.contains($0) }) {
                case 0:
                    guard bytes.count >= 7 else { continue }
                    vendor = String(decoding: bytes[0..<4], as: UTF8.self)
                    // Device classes follow the last vendor.
                    if vendor == "ffff" { inClasses = true; continue }
                    if vendorsWanted.contains(vendor), vendors[vendor] == nil {
                        vendors[vendor] = String(decoding: bytes[6...], as: UTF8.self)
                    }
                case 1:
                    guard bytes.count >= 8, vendorsWanted.contains(vendor) else { continue }
                    model = vendor + " " + String(decoding: bytes[1..<5], as: UTF8.self)
                    if models[model] == nil { models[model] = String(decoding: bytes[7...], as: UTF8.self) }
                case 2:
                    guard bytes.count >= 12, vendorsWanted.contains(vendor) else { continue }
                    let key = model + " " + String(decoding: bytes[2..<11], as: UTF8.self)
                    if subsystems[key] == nil {
                        subsystems[key] = String(decoding: bytes[11...], as: UTF8.self).trimmingASCIIWhitespace()
                    }
                default:
                    continue
                }
            }
        }
    }

    static func pciDevices(
        flags: Flags, devicesDir: String = "/sys/bus/pci/devices", udevData: String = "/run/udev/data",
        idsPaths: [String] = pciIDsPaths
    ) -> FunctionTable {
        table("pci_devices", [
            col("pci_slot", .text), col("pci_class", .text), col("driver", .text), col("vendor", .text),
            col("vendor_id", .text, .collateNocase), col("model", .text), col("model_id", .text, .collateNocase),
            col("pci_class_id", .text, .collateNocase), col("pci_subclass_id", .text, .collateNocase),
            col("pci_subclass", .text), col("subsystem_vendor_id", .text, .collateNocase),
            col("subsystem_vendor", .text), col("subsystem_model_id", .text, .collateNocase), col("subsystem_model", .text),
        ]) { _, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            // The pci.ids read like any other file: bounded (it is about 1.4 MB).
            guard let ids = idsPaths.lazy.compactMap({ BoundedFile.text($0, limit: readMax) }).first else {
                StatusLog.error("Unexpected error attempting to read pci.ids at path: " + idsPaths.joined(separator: " "))
                return rows
            }
            func pair(_ attribute: String?) -> (String, String)? {
                let parts = (attribute ?? "").lowercased().split(separator: ":", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[1].isEmpty else { return nil }
                return (String(parts[0]), String(parts[1]))
            }
            let devices = (FileIO.listDirectoryNames(devicesDir) ?? []).sorted().map { name in
                (name, uevent(devicesDir + "/" + name + "/uevent", readMax: readMax))
            }
            var wanted = Set<String>()
            for (_, event) in devices {
                if let (v, _) = pair(event["PCI_ID"]) { wanted.insert(v) }
                if let (v, _) = pair(event["PCI_SUBSYS_ID"]) { wanted.insert(v) }
            }
            let db = PCIDatabase(ids, vendorsWanted: wanted)
            for (name, event) in devices {
                let slot = event["PCI_SLOT_NAME"] ?? ""
                let udev = udevProperties("+pci:" + name, udevData: udevData, readMax: readMax)
                var values: [String: String] = [
                    "pci_slot": slot, "driver": event["DRIVER"] ?? "",
                    "vendor": udev["ID_VENDOR_FROM_DATABASE"] ?? "", "model": udev["ID_MODEL_FROM_DATABASE"] ?? "",
                ]
                if let (vendor, model) = pair(event["PCI_ID"]) {
                    values["vendor_id"] = "0x" + vendor
                    values["model_id"] = "0x" + model
                    if let v = db.vendors[vendor] { values["vendor"] = v }
                    if let m = db.models[vendor + " " + model] { values["model"] = m }
                    if let (sv, sm) = pair(event["PCI_SUBSYS_ID"]) {
                        values["subsystem_vendor_id"] = "0x" + sv
                        values["subsystem_model_id"] = "0x" + sm
                        values["subsystem_vendor"] = db.vendors[sv]
                        values["subsystem_model"] = db.subsystems[vendor + " " + model + " " + sv + " " + sm]
                    }
                } else {
                    values["vendor_id"] = "0"
                    values["model_id"] = "0"
                }
                let pciClass = (event["PCI_CLASS"] ?? "").lowercased()
                var classID = "", subclassID = ""
                if pciClass.count == 5 || pciClass.count == 6 {
                    let c = Array(pciClass.count == 5 ? "0" + pciClass : pciClass)
                    classID = String(c[0..<2])
                    subclassID = String(c[2..<4])
                    values["pci_class_id"] = "0x" + classID
                    values["pci_subclass_id"] = "0x" + subclassID
                }
                // udev's names, else the same names from pci.ids where udevd keeps no database.
                values["pci_class"] = udev["ID_PCI_CLASS_FROM_DATABASE"] ?? db.classes[classID] ?? ""
                values["pci_subclass"] = udev["ID_PCI_SUBCLASS_FROM_DATABASE"] ?? db.classes[classID + subclassID] ?? ""
                for column in schema.columns {
                    rows.append(values[column.name].map { .text($0) } ?? .null)
                }
            }
            return rows
        }
    }

    static func usbDevices(
        flags: Flags, devicesDir: String = "/sys/bus/usb/devices", udevData: String = "/run/udev/data",
        log: OnceLog = OnceLog()
    ) -> FunctionTable {
        table("usb_devices", [
            col("usb_address", .integer), col("usb_port", .integer), col("vendor", .text),
            col("vendor_id", .text, .collateNocase), col("version", .text, .collateVersion), col("model", .text),
            col("model_id", .text, .collateNocase), col("serial", .text), col("class", .text), col("subclass", .text),
            col("protocol", .text), col("removable", .integer),
        ]) { _, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            guard let names = FileIO.listDirectoryNames(devicesDir) else {
                log.info("usb_devices: no USB bus here (\(devicesDir) does not exist)")
                return rows
            }
            func attribute(_ path: String) -> String? {
                BoundedFile.text(path, limit: readMax).map { $0.trimmingASCIIWhitespace() }
            }
            for name in names.sorted() {
                let dir = devicesDir + "/" + name
                let event = uevent(dir + "/uevent", readMax: readMax)
                // Interfaces share the bus; only devices carry a bus and device number.
                guard let bus = event["BUSNUM"], let device = event["DEVNUM"], !bus.isEmpty, !device.isEmpty else { continue }
                var udev = udevProperties("c\(event["MAJOR"] ?? ""):\(event["MINOR"] ?? "")", udevData: udevData, readMax: readMax)
                if udev.isEmpty {
                    // No udev database: the sysfs attributes udev's usb_id builtin derives these from.
                    udev["ID_VENDOR_ID"] = attribute(dir + "/idVendor")
                    udev["ID_MODEL_ID"] = attribute(dir + "/idProduct")
                    udev["ID_REVISION"] = attribute(dir + "/bcdDevice")
                    udev["ID_SERIAL_SHORT"] = attribute(dir + "/serial")
                    udev["ID_MODEL"] = attribute(dir + "/product").map { String($0.map { $0 == " " ? "_" : $0 }) }
                }
                rows.append(Int64(bus).map { .integer($0) } ?? .null)
                rows.append(Int64(device).map { .integer($0) } ?? .null)
                rows.append(.text(udev["ID_VENDOR_FROM_DATABASE"] ?? ""))
                rows.append(.text(udev["ID_VENDOR_ID"] ?? ""))
                rows.append(.text(udev["ID_REVISION"] ?? ""))
                let model = udev["ID_MODEL_FROM_DATABASE"] ?? ""
                rows.append(.text(model.isEmpty ? udev["ID_MODEL"] ?? "" : model))
                rows.append(.text(udev["ID_MODEL_ID"] ?? ""))
                rows.append(.text(udev["ID_SERIAL_SHORT"] ?? ""))
                let kind = osquerySplit(event["TYPE"] ?? "", "/")
                for i in 0..<3 { rows.append(.text(kind.count == 3 ? kind[i] : "")) }
                // osquery's test: only "unknown" is -1, "fixed" and "removable" both 1.
                rows.append(.integer(attribute(dir + "/removable") == "unknown" ? -1 : 1))
            }
            return rows
        }
    }
}
