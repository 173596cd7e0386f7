import Foundation
import OsqueryEngine
@testable import OsqueryTables
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// md_devices, md_drives, disk_encryption, secureboot, secureboot_certificates and msr: on the
/// kernel's files where this machine has them, on files in their formats where it has not.
@Suite(.serialized) struct SystemStateTablesTests {
    /// /proc/mdstat as the md driver writes it: a resyncing mirror with a bitmap, a RAID 5
    /// rebuilding onto a spare, a failed member.
    static let mdstat = """
        Personalities : [raid1] [raid6] [raid5] [raid4] [linear]
        md1 : active raid5 sdd1[4] sdc1[2] sdb1[1] sde1[3](F)
              2095104 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [UU_]
              [=>...................]  recovery =  8.5% (89600/1047552) finish=0.7min speed=22400K/sec
              bitmap: 1/8 pages [4KB], 65536KB chunk, file: /var/md1.bitmap

        md0 : active raid1 sdb2[1] sda2[0]
              1046528 blocks super 1.2 [2/2] [UU]
              [==>..................]  resync = 12.6% (132352/1046528) finish=0.5min speed=26470K/sec
              bitmap: 0/1 pages [0KB], 65536KB chunk

        unused devices: <none>

        """

    @Test func mdstatParsesAsOsqueryParsesIt() {
        let stat = SystemStateTables.parseMDStat(Self.mdstat)
        #expect(stat.personalities == ["raid1", "raid6", "raid5", "raid4", "linear"])
        #expect(stat.unused == "<none>")
        #expect(stat.devices.count == 2)
        let md1 = stat.devices[0]
        #expect(md1.name == "md1" && md1.status == "active" && md1.raidLevel == "raid5" && md1.usableSize == 2095104)
        #expect(md1.drives.map(\.name) == ["sdd1[4]", "sdc1[2]", "sdb1[1]", "sde1[3](F)"])
        #expect(md1.drives.map(\.position) == [4, 2, 1, 3])
        #expect(md1.other == "super 1.2 level 5, 512k chunk, algorithm 2")
        #expect(md1.healthyDrives == "[3/2]" && md1.driveStatuses == "[UU_]")
        #expect(md1.recovery == .init(progress: "8.5% (89600/1047552)", finish: "0.7min", speed: "22400K/sec"))
        #expect(md1.bitmapOnMem == "1/8 pages [4KB]" && md1.bitmapChunkSize == "65536KB chunk" && md1.bitmapExternalFile == "/var/md1.bitmap")
        let md0 = stat.devices[1]
        #expect(md0.resync == .init(progress: "12.6% (132352/1046528)", finish: "0.5min", speed: "26470K/sec"))
        #expect(md0.other == "super 1.2" && md0.bitmapExternalFile == "")
        // Malformed input: no crash, what can be read is kept.
        for text in ["", "md9 :", "Personalities :\nmd9 : active\n", "garbage\n\u{0}\u{1}", String(repeating: "md", count: 10000)] {
            _ = SystemStateTables.parseMDStat(text)
        }
    }

    /// md_devices and md_drives over the mdstat above and a sysfs-shaped md directory.
    @Test func mdTablesReadMdstatAndSysfs() throws {
        let dir = TempDir()
        dir.write("mdstat", Self.mdstat)
        for d in ["block", "block/md0", "block/md0/md", "block/md0/md/dev-sda2", "block/md0/md/dev-sdb2"] { dir.mkdir(d) }
        for (file, text) in [("level", "raid1\n"), ("raid_disks", "3\n"), ("chunk_size", "0\n"), ("array_state", "clean\n"), ("metadata_version", "1.2\n"),
                             ("dev-sda2/slot", "0\n"), ("dev-sda2/state", "in_sync\n"), ("dev-sdb2/slot", "none\n"), ("dev-sdb2/state", "faulty\n")] {
            dir.write("block/md0/md/" + file, text)
        }
        let flags = Flags()
        let db = try systemTablesDatabase(
            SystemStateTables.mdDevices(flags: flags, mdstat: dir.path + "/mdstat", sysBlock: dir.path + "/block", log: OnceLog()),
            SystemStateTables.mdDrives(flags: flags, mdstat: dir.path + "/mdstat", sysBlock: dir.path + "/block", log: OnceLog()), flags: flags)
        // md1 has no sysfs directory: osquery stops at it (md_devices) or skips it (md_drives).
        #expect(try db.execute("SELECT * FROM md_devices").rowCount == 0)
        dir.mkdir("block/md1")
        dir.mkdir("block/md1/md")
        dir.write("block/md1/md/level", "raid5\n")
        #expect(try rowSet(db, "SELECT * FROM md_devices", [
            "device_name", "status", "raid_level", "size", "raid_disks", "nr_raid_disks", "active_disks", "failed_disks",
            "superblock_state", "superblock_version", "resync_progress", "recovery_speed", "bitmap_chunk_size", "unused_devices", "other",
        ]) == [
            "md1\tactive\t5\t2095104\t\t0\t0\t0\tunknown\t\t\t22400K/sec\t65536KB chunk\t<none>\tsuper 1.2 level 5, 512k chunk, algorithm 2",
            "md0\tactive\t1\t1046528\t3\t2\t1\t1\tclean\t1.2\t12.6% (132352/1046528)\t\t65536KB chunk\t<none>\tsuper 1.2",
        ])
        #expect(try rowSet(db, "SELECT * FROM md_drives", ["md_device_name", "drive_name", "slot", "state"]) == [
            "md0\t/dev/sda2\t0\tactive sync", "md0\t/dev/sdb2\t\tfaulty", "md0\tunknown\t1\tremoved", "md0\tunknown\t2\tremoved",
        ])
    }

    /// Without the md driver (no /proc/mdstat, or a FIFO or an oversized file in its place):
    /// no rows, the reason said once.
    @Test func mdTablesWithoutTheDriverSayWhyOnce() throws {
        let dir = TempDir()
        #expect(mkfifo(dir.path + "/fifo", 0o600) == 0)
        dir.write("big", Self.mdstat + String(repeating: "x", count: 8192))
        let flags = Flags()
        try flags.set("read_max", "4096")
        for path in [dir.path + "/missing", dir.path + "/fifo", dir.path + "/big"] {
            let log = OnceLog()
            let db = try systemTablesDatabase(SystemStateTables.mdDevices(flags: flags, mdstat: path, log: log),
                                              SystemStateTables.mdDrives(flags: flags, mdstat: path, log: log), flags: flags)
            for _ in 0..<2 {
                #expect(try db.execute("SELECT * FROM md_devices").rowCount == 0)
                #expect(try db.execute("SELECT * FROM md_drives").rowCount == 0)
            }
            #expect(log.messages.count == 2)
        }
        if !FileIO.exists("/proc/mdstat") {
            let log = OnceLog()
            let db = try systemTablesDatabase(SystemStateTables.mdDevices(flags: Flags(), log: log))
            #expect(try db.execute("SELECT * FROM md_devices").rowCount == 0)
            #expect(log.messages.count == 1)
        }
    }

    /// Every block device lsblk lists, encrypted exactly when it or a device below it is a
    /// dm-crypt mapping (lsblk's TYPE crypt).
    @Test(.enabled(if: getuid() == 0 && installed("/usr/bin/lsblk"))) func diskEncryptionMatchesLsblk() async throws {
        let db = try systemTablesDatabase(SystemStateTables.diskEncryption(flags: Flags(), log: OnceLog()))
        let r = try db.execute("SELECT name, encrypted, encryption_status FROM disk_encryption")
        var ours: [String: Int64] = [:]
        for row in 0..<r.rowCount {
            if case .integer(let e) = r[row, 1] { ours[r[row, 0].text ?? ""] = e }
            #expect(r[row, 2].text == (r[row, 1] == .integer(1) ? "encrypted" : "not encrypted"))
        }
        var type: [String: String] = [:], parent: [String: String] = [:]
        for line in try await toolOutput("/usr/bin/lsblk", ["-rno", "NAME,TYPE,PKNAME"]).split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 2 else { continue }
            type["/dev/" + f[0]] = f[1]
            if f.count > 2, !f[2].isEmpty { parent["/dev/" + f[0]] = "/dev/" + f[2] }
        }
        #expect(!type.isEmpty)
        func crypt(_ name: String) -> Bool {
            var current: String? = name
            while let c = current {
                if type[c] == "crypt" { return true }
                current = parent[c]
            }
            return false
        }
        for name in type.keys {
            #expect(ours[name] == (crypt(name) ? 1 : 0), "\(name)")
        }
    }

    /// A sysfs-shaped tree with a LUKS mapping on a partition and a volume on top of it.
    @Test(.enabled(if: getuid() == 0)) func diskEncryptionFollowsDeviceMapper() throws {
        let dir = TempDir()
        for d in ["devices", "devices/vda", "devices/vda/vda2", "devices/dm-0", "devices/dm-0/dm", "devices/dm-0/slaves",
                  "devices/dm-0/slaves/vda2", "devices/dm-1", "devices/dm-1/dm", "devices/dm-1/slaves", "devices/dm-1/slaves/dm-0",
                  "devices/block", "class"] { dir.mkdir(d) }
        // The disk sits in a "block" directory, as in sysfs; its partition inside it.
        dir.mkdir("devices/block/vda")
        dir.mkdir("devices/block/vda/vda2")
        dir.mkdir("devices/block/dm-0")
        dir.mkdir("devices/block/dm-0/dm")
        dir.mkdir("devices/block/dm-0/slaves")
        dir.mkdir("devices/block/dm-0/slaves/vda2")
        dir.mkdir("devices/block/dm-1")
        dir.mkdir("devices/block/dm-1/slaves")
        dir.mkdir("devices/block/dm-1/slaves/dm-0")
        dir.mkdir("devices/block/dm-1/dm")
        dir.write("devices/block/dm-0/dm/uuid", "CRYPT-LUKS2-0123456789abcdef-osqtestcrypt\n")
        dir.write("devices/block/dm-0/dm/name", "osqtestcrypt\n")
        dir.write("devices/block/dm-1/dm/uuid", "LVM-abcdef\n")
        for (name, target) in [("vda", "devices/block/vda"), ("vda2", "devices/block/vda/vda2"), ("dm-0", "devices/block/dm-0"), ("dm-1", "devices/block/dm-1")] {
            #expect(symlink(dir.path + "/" + target, dir.path + "/class/" + name) == 0)
        }
        let db = try systemTablesDatabase(SystemStateTables.diskEncryption(flags: Flags(), classBlock: dir.path + "/class", log: OnceLog()))
        #expect(try rowSet(db, "SELECT name, encrypted, type, encryption_status FROM disk_encryption", ["name", "encrypted", "type", "encryption_status"]) == [
            "/dev/vda\t0\t\tnot encrypted", "/dev/vda2\t0\t\tnot encrypted", "/dev/dm-0\t1\tLUKS2\tencrypted", "/dev/dm-1\t1\tLUKS2\tencrypted",
        ])
        #expect(try db.execute("SELECT * FROM disk_encryption WHERE name = '/dev/dm-1'").rowCount == 1)
    }

    /// efivarfs-shaped files: four attribute bytes, then the value.
    @Test func securebootReadsEfiVariables() throws {
        let dir = TempDir()
        dir.mkdir("efivars")
        let guid = SystemStateTables.efiGlobalGUID
        func write(_ name: String, _ bytes: [UInt8]) {
            let fd = open(dir.path + "/efivars/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        write("SecureBoot-" + guid, [6, 0, 0, 0, 1])
        write("SetupMode-" + guid, [6, 0, 0, 0, 0])
        let db = try systemTablesDatabase(SystemStateTables.secureboot(flags: Flags(), efi: dir.path, log: OnceLog()))
        #expect(try rowSet(db, "SELECT secure_boot, setup_mode FROM secureboot", ["secure_boot", "setup_mode"]) == ["1\t0"])
        write("SetupMode-" + guid, [6, 0, 0, 0, 7])
        write("SecureBoot-" + guid, [6, 0, 0])
        #expect(try rowSet(db, "SELECT secure_boot, setup_mode FROM secureboot", ["secure_boot", "setup_mode"]) == ["\t-1"])
        #expect(mkfifo(dir.path + "/efivars/SetupMode-" + guid + ".fifo", 0o600) == 0)

        let log = OnceLog()
        let absent = try systemTablesDatabase(SystemStateTables.secureboot(flags: Flags(), efi: dir.path + "/none", log: log))
        for _ in 0..<2 { #expect(try absent.execute("SELECT * FROM secureboot").rowCount == 0) }
        #expect(log.messages.count == 1)
        if !FileIO.exists("/sys/firmware/efi") {
            let live = OnceLog()
            let db = try systemTablesDatabase(SystemStateTables.secureboot(flags: Flags(), log: live))
            #expect(try db.execute("SELECT * FROM secureboot").rowCount == 0 && live.messages.count == 1)
        }
    }

    /// EFI signature lists written as firmware keeps them (db with a SHA-256 list and an X.509
    /// list, dbx with one certificate, and a truncated list): the certificates as openssl
    /// reads them; dbx's are revoked.
    @Test(.enabled(if: installed("/usr/bin/openssl"))) func securebootCertificatesReadSignatureLists() async throws {
        let dir = TempDir()
        try await makeTestCertificates(dir)
        _ = try await openssl(["x509", "-in", dir.path + "/ca.pem", "-outform", "DER", "-out", dir.path + "/ca.der"])
        _ = try await openssl(["x509", "-in", dir.path + "/leaf.pem", "-outform", "DER", "-out", dir.path + "/leaf.der"])
        let ca = Array(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/ca.der")))
        let leaf = Array(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/leaf.der")))
        func le(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24 & 0xff)] }
        let x509GUID: [UInt8] = [0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72]
        let sha256GUID: [UInt8] = [0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28]
        let owner = [UInt8](repeating: 0x77, count: 16)
        func list(_ type: [UInt8], _ entries: [[UInt8]]) -> [UInt8] {
            let size = 16 + entries[0].count
            return type + le(28 + size * entries.count) + le(0) + le(size) + entries.flatMap { owner + $0 }
        }
        let hashes = list(sha256GUID, [[UInt8](repeating: 0xab, count: 32), [UInt8](repeating: 0xcd, count: 32)])
        dir.mkdir("efivars")
        let db = [7, 0, 0, 0] + hashes + list(x509GUID, [ca])
        let dbx = [7, 0, 0, 0] + list(x509GUID, [leaf]) + Array(list(x509GUID, [ca]).prefix(40))
        for (name, bytes) in [("db-d719b2cb-3d3a-4596-a3bc-dad00e67656f", db), ("dbx-d719b2cb-3d3a-4596-a3bc-dad00e67656f", dbx),
                              ("KEK-8be4df61-93ca-11d2-aa0d-00e098032b8c", [7, 0, 0, 0] + list(x509GUID, [ca]))] {
            try Data(bytes).write(to: URL(fileURLWithPath: dir.path + "/efivars/" + name))
        }
        let table = try systemTablesDatabase(SystemStateTables.securebootCertificates(flags: Flags(), efivars: dir.path + "/efivars", log: OnceLog()))
        let ours = try rowSet(table, "SELECT * FROM secureboot_certificates", ["common_name", "sha1", "serial", "revoked", "is_ca", "self_signed", "key_strength"])
        var theirs = Set<String>()
        for (file, name, revoked, isCA, strength) in [("ca.pem", "Osquery Test CA", 0, 1, "2048"), ("leaf.pem", "localhost", 1, 0, "prime256v1")] {
            let text = try await openssl(["x509", "-in", dir.path + "/" + file, "-noout", "-serial", "-fingerprint", "-sha1"])
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            let sha1 = (fields["sha1 Fingerprint"] ?? fields["SHA1 Fingerprint"] ?? "").replacingOccurrences(of: ":", with: "").lowercased()
            theirs.insert("\(name)\t\(sha1)\t\(fields["serial"] ?? "")\t\(revoked)\t\(isCA)\t\(isCA)\t\(strength)")
        }
        #expect(ours == theirs)
        // Hostile lists: sizes pointing past the end, zero sizes, garbage; no crash, no rows.
        for bytes: [UInt8] in [[7, 0, 0, 0] + x509GUID + le(1 << 30) + le(0) + le(64), [7, 0, 0, 0] + x509GUID + le(0) + le(0) + le(0) + [1, 2, 3],
                               [7, 0, 0, 0] + x509GUID + le(44) + le(1 << 30) + le(17) + [UInt8](repeating: 0, count: 16), [1, 2]] {
            #expect(SystemStateTables.efiCertificates(bytes).isEmpty)
        }
        let log = OnceLog()
        let absent = try systemTablesDatabase(SystemStateTables.securebootCertificates(flags: Flags(), efivars: dir.path + "/none", log: log))
        for _ in 0..<2 { #expect(try absent.execute("SELECT * FROM secureboot_certificates").rowCount == 0) }
        #expect(log.messages.count == 1)
    }

    /// Register values at their offsets in a file standing in for /dev/cpu/N/msr; without the
    /// msr driver (here), no rows and the reason once; a FIFO in the device's place is not waited on.
    @Test func msrReadsRegistersOrSaysWhyOnce() throws {
        let dir = TempDir()
        dir.mkdir("0")
        dir.mkdir("1")
        let fd = open(dir.path + "/0/msr", O_RDWR | O_CREAT | O_TRUNC, 0o600)
        for (offset, value) in [(0x1a0, UInt64(1) << 38 | 1), (0xce, 0x8000_0000_0000_0001 as UInt64), (0x199, 0x1234_5678)] {
            var v = value
            _ = pwrite(fd, &v, 8, off_t(offset))
        }
        close(fd)
        #expect(mkfifo(dir.path + "/1/msr", 0o600) == 0)
        let log = OnceLog()
        let db = try systemTablesDatabase(SystemStateTables.msr(cpuDirectory: dir.path, log: log))
        #expect(try rowSet(db, "SELECT processor_number, turbo_disabled, platform_info, perf_ctl, rapl_power_units FROM msr",
                           ["processor_number", "turbo_disabled", "platform_info", "perf_ctl", "rapl_power_units"]) == [
            "0\t1\t\(Int64(bitPattern: 0x8000_0000_0000_0001))\t\(0x5678)\t",
        ])
        #expect(log.messages.count == 1)
        let live = OnceLog()
        let liveDB = try systemTablesDatabase(SystemStateTables.msr(log: live))
        if !FileIO.exists("/dev/cpu/0/msr") {
            for _ in 0..<2 { #expect(try liveDB.execute("SELECT * FROM msr").rowCount == 0) }
            #expect(live.messages.count >= 1)
        }
    }
}
