import Foundation
import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The sleuthkit tables against The Sleuth Kit's own tools (`mmls`, `fls`, `istat`) and the
/// coreutils digests, on disk images the test makes: a DOS partition table made by `sfdisk` with
/// an ext4 filesystem made by `mkfs.ext4 -d` from a directory, and a bare filesystem.
@Suite struct DeviceTablesTests {
    static let tools = ["/usr/sbin/sfdisk", "/usr/sbin/mkfs.ext4", "/usr/bin/mmls", "/usr/bin/fls", "/usr/bin/istat", "/usr/bin/fsstat", "/usr/bin/sha256sum"]
    static let available = tools.allSatisfy { access($0, X_OK) == 0 }

    /// Runs a tool (stdin from `input`), off the pool; its stdout, or a thrown error with stderr.
    static func run(_ path: String, _ arguments: [String], input: String? = nil) async throws -> String {
        try await offPool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            let out = Pipe(), err = Pipe(), stdin = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = stdin
            try process.run()
            if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
            try stdin.fileHandleForWriting.close()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            let errors = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw DeviceTestError("\(path) \(arguments) exited \(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))")
            }
            return String(decoding: data, as: UTF8.self)
        }
    }

    struct DeviceTestError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// A tree to put in the filesystem: small files, one of several hash chunks, an empty one,
    /// a setuid one, a symlink and a nested directory.
    static func makeTree(_ root: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/sub/deeper", withIntermediateDirectories: true)
        try "hello\n".write(toFile: root + "/hello.txt", atomically: false, encoding: .utf8)
        try "deep\n".write(toFile: root + "/sub/deep.txt", atomically: false, encoding: .utf8)
        try Data().write(to: URL(fileURLWithPath: root + "/sub/deeper/empty"))
        var big = [UInt8](repeating: 0, count: 200 * 1024 + 17)
        for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
        try Data(big).write(to: URL(fileURLWithPath: root + "/big.bin"))
        try "#!/bin/sh\n".write(toFile: root + "/tool", atomically: false, encoding: .utf8)
        chmod(root + "/tool", 0o4755)
        try fm.createSymbolicLink(atPath: root + "/link", withDestinationPath: "hello.txt")
    }

    /// A 64 MiB image: DOS partition table, one Linux partition at sector 2048 holding ext4 with `tree`.
    static func makeDisk(_ dir: String, tree: String) async throws -> String {
        let image = dir + "/disk.img"
        guard truncate(image, 64 << 20) == 0 || (FileManager.default.createFile(atPath: image, contents: nil) && truncate(image, 64 << 20) == 0) else {
            throw DeviceTestError("cannot size \(image)")
        }
        _ = try await run("/usr/sbin/sfdisk", ["-q", image], input: "label: dos\nstart=2048, size=65536, type=83\n")
        _ = try await run("/usr/sbin/mkfs.ext4", ["-q", "-F", "-d", tree, "-E", "offset=1048576", image, "32M"])
        return image
    }

    @Test(.enabled(if: available, "needs sleuthkit, fdisk and e2fsprogs")) func partitionsFilesAndHashesMatchTheSleuthKit() async throws {
        let dir = try scratchDirectory("device")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.makeTree(dir + "/tree")
        let image = try await Self.makeDisk(dir, tree: dir + "/tree")
        let (db, _, _) = try makeTablesDatabase()

        // device_partitions: mmls's slots, starts and lengths; the ext4 partition as its filesystem.
        var theirs = Set<String>()
        for line in try await Self.run("/usr/bin/mmls", [image]).split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard words.count == 6, words[0].hasSuffix(":"), let slot = Int(words[0].dropLast()) else { continue }
            let start = Int(words[2])!, length = Int(words[4])!
            let description = String(words[5].drop { $0 == " " })
            if description.hasPrefix("Linux") {
                theirs.insert("\(slot)\t\(description)\text4\t\(start * 512)")
            } else {
                theirs.insert("\(slot)\t\(description)\t\(words[1] == "Meta" ? "meta" : "unallocated")\t\(start * 512)\t512\t\(length)\t-1")
            }
        }
        #expect(theirs.count == 4)
        let fsRow = try rowSet(db, "SELECT partition, label, type, offset, blocks_size, blocks, inodes FROM device_partitions WHERE device = '\(image)' AND type = 'ext4'",
                               ["partition", "label", "type", "offset", "blocks_size", "blocks", "inodes"])
        let others = try rowSet(db, "SELECT partition, label, type, offset, blocks_size, blocks, inodes FROM device_partitions WHERE device = '\(image)' AND type != 'ext4'",
                                ["partition", "label", "type", "offset", "blocks_size", "blocks", "inodes"])
        #expect(others.union(fsRow.map { $0.split(separator: "\t").prefix(4).joined(separator: "\t") }) == theirs)
        // 32 MiB of 1 KiB blocks, and the inode count fsstat gives.
        let fsstat = try await Self.run("/usr/bin/fsstat", ["-o", "2048", image])
        let inodeRange = fsstat.split(separator: "\n").first { $0.hasPrefix("Inode Range:") }?.split(separator: " ").last.map(String.init)
        #expect(fsRow.first?.hasSuffix("\t1024\t32768\t\(inodeRange ?? "?")") == true, "\(fsRow) vs inode range \(inodeRange ?? "?")")

        // device_file: fls's regular files (path and inode), each as istat describes it.
        var listed = Set<String>()
        for line in try await Self.run("/usr/bin/fls", ["-r", "-p", "-o", "2048", image]).split(separator: "\n") {
            guard line.hasPrefix("r/r "), !line.contains("*") else { continue }
            let parts = line.dropFirst(4).split(separator: "\t", maxSplits: 1)
            listed.insert("/\(parts[1])\t\(parts[0].dropLast())")
        }
        let files = "SELECT * FROM device_file WHERE device = '\(image)' AND partition = '2'"
        #expect(try rowSet(db, files, ["path", "inode"]) == listed)
        #expect(listed.count == 5)
        for row in try rowSet(db, files, ["inode", "size", "uid", "gid", "hard_links", "mode", "type", "filename", "path"]) {
            let f = row.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            let istat = try await Self.run("/usr/bin/istat", ["-o", "2048", image, f[0]])
            func field(_ name: String) -> String {
                istat.split(separator: "\n").first { $0.hasPrefix(name) }.map { String($0.dropFirst(name.count)) } ?? "?"
            }
            #expect(field("size: ") == f[1], "\(f[8])")
            #expect(field("uid / gid: ") == "\(f[2]) / \(f[3])", "\(f[8])")
            #expect(field("num of links: ") == f[4], "\(f[8])")
            // istat: "rrw-r--r--" (type letter, then the permissions, s for setuid).
            let mode = Int(f[5]) ?? -1
            var perms = ""
            for (i, letter) in ["r", "w", "x", "r", "w", "x", "r", "w", "x"].enumerated() {
                let bit = 0o400 >> i
                var c = mode & bit != 0 ? letter : "-"
                if i == 2, mode & 0o4000 != 0 { c = c == "x" ? "s" : "S" }
                perms += c
            }
            #expect(field("mode: ") == "r" + perms, "\(f[8])")
            #expect(f[6] == "regular" && f[7] == String(f[8].split(separator: "/").last ?? ""))
        }
        #expect(try rowSet(db, files + " AND path = '/tool'", ["mode"]) == [String(0o4755)])
        #expect(try rowSet(db, files + " AND path = '/sub/deep.txt'", ["filename", "size"]) == ["deep.txt\t5"])
        // An inode asked for by number (ext4 keeps no name in it: the path is "").
        let bigInode = try #require(listed.first { $0.hasPrefix("/big.bin\t") }?.split(separator: "\t").last)
        #expect(try rowSet(db, files + " AND inode = \(bigInode)", ["inode", "size", "path"]) == ["\(bigInode)\t\(200 * 1024 + 17)\t"])

        // device_hash: the three digests of each file's content, as coreutils computes them from
        // the tree the filesystem was made from; an empty file hashes to "".
        for (path, inode) in listed.map({ ($0.split(separator: "\t")[0], $0.split(separator: "\t")[1]) }) {
            let source = dir + "/tree" + path
            let row = try rowSet(db, "SELECT md5, sha1, sha256 FROM device_hash WHERE device = '\(image)' AND partition = '2' AND inode = \(inode)",
                                 ["md5", "sha1", "sha256"])
            if path.hasSuffix("/empty") {
                #expect(row == ["\t\t"])
                continue
            }
            var digests: [String] = []
            for tool in ["md5sum", "sha1sum", "sha256sum"] {
                digests.append(String(try await Self.run("/usr/bin/" + tool, [source]).prefix { $0 != " " }))
            }
            #expect(row == [digests.joined(separator: "\t")], "\(path)")
        }
    }

    /// A device with no partition table (a bare filesystem, like a partition's own node) is
    /// partition 0; osquery shows nothing for it.
    @Test(.enabled(if: available, "needs sleuthkit, fdisk and e2fsprogs")) func aBareFilesystemIsPartitionZero() async throws {
        let dir = try scratchDirectory("device-bare")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.makeTree(dir + "/tree")
        _ = try await Self.run("/usr/sbin/mkfs.ext4", ["-q", "-F", "-d", dir + "/tree", dir + "/fs.img", "8M"])
        let (db, _, _) = try makeTablesDatabase()
        #expect(try rowSet(db, "SELECT partition, type, label FROM device_partitions WHERE device = '\(dir)/fs.img'", ["partition", "type", "label"])
                == ["0\text4\t"])
        let fls = try await Self.run("/usr/bin/fls", ["-r", "-p", dir + "/fs.img"])
        let regular = fls.split(separator: "\n").filter { $0.hasPrefix("r/r ") }.count
        #expect(try db.execute("SELECT path FROM device_file WHERE device = '\(dir)/fs.img' AND partition = '0'").rowCount == regular)
    }

    /// What a root daemon may be pointed at: a FIFO (opening it would block), a character device
    /// that never ends, garbage, a truncated image, a missing path, and constraints osquery
    /// refuses. Each gives no rows (a log line, not a hang or a crash) and the table keeps answering.
    @Test(.enabled(if: available, "needs sleuthkit, fdisk and e2fsprogs")) func hostileDevicesGiveNoRowsAndTheTablesKeepAnswering() async throws {
        let dir = try scratchDirectory("device-hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.makeTree(dir + "/tree")
        let image = try await Self.makeDisk(dir, tree: dir + "/tree")
        mkfifo(dir + "/fifo", 0o600)
        var garbage = [UInt8](repeating: 0, count: 1 << 20)
        for i in garbage.indices { garbage[i] = UInt8(truncatingIfNeeded: (i &* 7919) ^ (i >> 3)) }
        try Data(garbage).write(to: URL(fileURLWithPath: dir + "/garbage.img"))
        // The partition table survives, the filesystem is cut after its first 2 MiB.
        let cut = dir + "/cut.img"
        try FileManager.default.copyItem(atPath: image, toPath: cut)
        #expect(truncate(cut, 3 << 20) == 0)
        let log = OnceLog()
        let db = try packageDatabase([
            DeviceTables.devicePartitions(log: log), DeviceTables.deviceFile(log: log), DeviceTables.deviceHash(flags: Flags(), log: log),
        ])
        for device in [dir + "/fifo", "/dev/zero", dir + "/garbage.img", dir + "/missing.img"] {
            #expect(try db.execute("SELECT * FROM device_partitions WHERE device = '\(device)'").rowCount == 0, "\(device)")
            #expect(try db.execute("SELECT * FROM device_file WHERE device = '\(device)' AND partition = '0'").rowCount == 0, "\(device)")
        }
        #expect(log.messages.contains("Cannot open device \(dir)/fifo: not a regular file or block device"))
        #expect(log.messages.contains("Cannot open device /dev/zero: not a regular file or block device"))
        #expect(log.messages.contains { $0.hasPrefix("Cannot open device \(dir)/missing.img: ") })
        // The cut image: whatever TSK can still read of it.
        _ = try db.execute("SELECT * FROM device_partitions WHERE device = '\(cut)'")
        _ = try db.execute("SELECT * FROM device_file WHERE device = '\(cut)' AND partition = '2'")
        _ = try db.execute("SELECT * FROM device_hash WHERE device = '\(cut)' AND partition = '2' AND inode = 12")
        // osquery's rules: one partition at a time; any one required column lets the query run,
        // and a table missing the others answers nothing (osquery's device_hash reads past an
        // empty partition list there).
        #expect(try db.execute("SELECT * FROM device_file WHERE device = '\(image)'").rowCount == 0)
        #expect(log.messages.contains("Device files require at least one device and a single partition"))
        #expect(try db.execute("SELECT * FROM device_hash WHERE device = '\(image)' AND partition = '2'").rowCount == 0)
        #expect(try db.execute("SELECT * FROM device_hash WHERE device = '\(image)' AND inode = 12").rowCount == 0)
        // Still answering.
        #expect(try db.execute("SELECT * FROM device_file WHERE device = '\(image)' AND partition = '2'").rowCount == 5)
    }
}
