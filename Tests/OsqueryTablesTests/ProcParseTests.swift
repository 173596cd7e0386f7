import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The processes table's byte parsers against a String-based reading of the same bytes (the way
/// the table parsed /proc before), on crafted edge cases and on this machine's live /proc.
@Suite struct ProcParseTests {
    // MARK: String-based reference parsers (the earlier implementation's semantics).

    /// (name, state, [ppid, pgrp, …]) from a stat line; nil when cut short.
    static func referenceStat(_ text: String) -> (name: String, state: String, fields: [Int64])? {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), close > open else { return nil }
        let name = String(text[text.index(after: open)..<close])
        let rest = text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard rest.count >= 22 else { return nil }
        return (name, String(rest[0]), rest.dropFirst().prefix(22).map { Int64($0) ?? 0 })
    }

    static func referenceIDs(_ text: String) -> ProcIDs {
        var ids = ProcIDs()
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard parts.count >= 4 else { continue }
            let v = parts[1...3].map { Int64($0) ?? 0 }
            if parts[0] == "Uid:" { (ids.uid, ids.euid, ids.suid) = (v[0], v[1], v[2]) }
            if parts[0] == "Gid:" { (ids.gid, ids.egid, ids.sgid) = (v[0], v[1], v[2]) }
        }
        return ids
    }

    static func referenceCgroup(_ text: String) -> String {
        let lines = text.split(separator: "\n")
        guard let line = lines.first(where: { $0.hasPrefix("0::") }) ?? lines.first,
              let colon = line.lastIndex(of: ":") else { return "" }
        return String(line[line.index(after: colon)...])
    }

    static func bytes<R>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        Array(text.utf8).withUnsafeBufferPointer(body)
    }

    static func stat(_ text: String) -> ProcStat? { bytes(text) { ProcStat.parse($0) } }

    static let statTail = " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25\n"

    // MARK: Crafted edge cases.

    @Test func statCommWithSpacesAndParentheses() throws {
        for comm in ["a b", "x) (y", "))", "(", "tmux: server", "kworker/0:1-events", ""] {
            let line = "4242 (\(comm)) S" + Self.statTail
            let s = try #require(Self.stat(line), "comm \(comm)")
            let r = try #require(Self.referenceStat(line))
            #expect(s.name == .text(comm))
            #expect(s.state == .text(r.state))
            #expect([s.ppid, s.pgrp, s.utime, s.stime, s.nice, s.threads, s.start, s.vsize, s.rss]
                == [0, 1, 10, 11, 15, 16, 18, 19, 20].map { r.fields[$0] })
        }
    }

    @Test func statZombieNegativeAndShort() throws {
        let zombie = try #require(Self.stat("77 (defunct thing) Z 1 77 77 0 -1 4227084 0 0 0 0 3 1 0 0 20 0 1 0 123456 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"))
        #expect(zombie.state == .text("Z"))
        #expect(zombie.name == .text("defunct thing"))
        #expect(zombie.rss == 0 && zombie.vsize == 0 && zombie.start == 123456 && zombie.nice == 0 && zombie.threads == 1)
        #expect(zombie.utime == 3 && zombie.stime == 1)
        let negative = try #require(Self.stat("9 (n) S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 39 -19 4 0 5 6 7\n"))
        #expect(negative.nice == -19 && negative.threads == 4 && negative.rss == 7)
        #expect(Self.stat("9 (n) S 1 2 3") == nil)
        #expect(Self.stat("no parentheses at all") == nil)
        #expect(Self.stat(")(") == nil)
        #expect(Self.stat("") == nil)
    }

    @Test func statNonUTF8CommIsKeptAsBytes() throws {
        var line = Array("5 (".utf8) + [0xff, 0xfe] + Array((") S" + Self.statTail).utf8)
        let s = try #require(line.withUnsafeBufferPointer { ProcStat.parse($0) })
        #expect(s.name == .blob([0xff, 0xfe]))
        line = Array("5 (é) S".utf8) + Array(Self.statTail.utf8)
        #expect(line.withUnsafeBufferPointer { ProcStat.parse($0) }?.name == .text("é"))
    }

    @Test func statusIDs() {
        let text = "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1001\t1002\t1003\nGid:\t20\t21\t22\t23\nGroups:\t4 24\n"
        #expect(Self.bytes(text) { ProcIDs.parse($0) } == Self.referenceIDs(text))
        #expect(Self.bytes(text) { ProcIDs.parse($0) } == ProcIDs(uid: 1000, euid: 1001, suid: 1002, gid: 20, egid: 21, sgid: 22))
        #expect(Self.bytes("Name:\tx\nUid:\t5\n") { ProcIDs.parse($0) } == ProcIDs())
        #expect(Self.bytes("") { ProcIDs.parse($0) } == ProcIDs())
    }

    @Test func cmdlineExecutableIOAndCgroup() {
        var raw: [UInt8] = Array("/bin/sh\0-c\0echo a  b\0\0".utf8)
        #expect(raw.withUnsafeMutableBufferPointer { ProcParse.cmdline($0) } == .text("/bin/sh -c echo a  b"))
        var empty: [UInt8] = [0, 0]
        #expect(empty.withUnsafeMutableBufferPointer { ProcParse.cmdline($0) } == .text(""))

        let deleted = Self.bytes("/usr/bin/gone (deleted)") { ProcParse.executable($0) }
        #expect(deleted.path == .text("/usr/bin/gone") && deleted.onDisk == 0)
        let present = Self.bytes("/usr/bin/here") { ProcParse.executable($0) }
        #expect(present.path == .text("/usr/bin/here") && present.onDisk == 1)
        let only = Self.bytes(" (deleted)") { ProcParse.executable($0) }
        #expect(only.path == .text(" (deleted)") && only.onDisk == 1)

        let io = "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n"
        #expect(Self.bytes(io) { ProcParse.io($0) } == (4096, 8192))
        #expect(Self.bytes("rchar: 1\n") { ProcParse.io($0) } == (-1, -1))

        for text in ["0::/user.slice/session-1.scope\n", "12:cpu,cpuacct:/a\n0::/b\n", "3:memory:/docker/x\n1:name=systemd:/y\n",
                     "\n\n0::/\n", "", "nocolon\n", "0::/with:colon/in:path\n"] {
            #expect(Self.bytes(text) { ProcParse.cgroup($0) } == .text(Self.referenceCgroup(text)), "cgroup \(text)")
        }
    }

    // MARK: Live /proc.

    /// Every process's stat, status and cgroup through both parsers (the bytes read once, so a
    /// running process's changing counters cannot make them differ). Vanished pids are skipped.
    @Test func liveProcMatchesReference() async throws {
        await onOwnThread {
            let pids = ProcReader().pids()
            #expect(pids.contains(getpid()))
            var compared = 0
            for pid in pids {
                guard let stat = FileIO.readAll("/proc/\(pid)/stat"), let status = FileIO.readAll("/proc/\(pid)/status"),
                      let cgroup = FileIO.readAll("/proc/\(pid)/cgroup") else { continue }
                let statText = String(decoding: stat, as: UTF8.self)
                if let r = Self.referenceStat(statText), let s = stat.withUnsafeBufferPointer({ ProcStat.parse($0) }) {
                    #expect(s.name == .text(r.name) && s.state == .text(r.state), "pid \(pid)")
                    #expect([s.ppid, s.pgrp, s.utime, s.stime, s.nice, s.threads, s.start, s.vsize, s.rss]
                        == [0, 1, 10, 11, 15, 16, 18, 19, 20].map { r.fields[$0] }, "pid \(pid)")
                    compared += 1
                } else {
                    Issue.record("pid \(pid): stat not parsed: \(statText)")
                }
                #expect(status.withUnsafeBufferPointer { ProcIDs.parse($0) } == Self.referenceIDs(String(decoding: status, as: UTF8.self)))
                #expect(cgroup.withUnsafeBufferPointer { ProcParse.cgroup($0) } == .text(Self.referenceCgroup(String(decoding: cgroup, as: UTF8.self))))
            }
            #expect(compared > 0)
        }
    }

    /// The table's rows for this process's tree (itself, its parent and a child it starts) against
    /// values read directly from /proc and the C library.
    @Test func tableRowsForOwnTree() throws {
        let (db, _, _) = try makeTablesDatabase()
        var child: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { for a in argv { free(a) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        Spawn.closeInheritedDescriptors(in: &actions)  // other tests' sockets stay out of the child
        #expect(posix_spawn(&child, "/bin/sleep", &actions, nil, &argv, environ) == 0)
        defer { kill(child, SIGKILL); var st: Int32 = 0; waitpid(child, &st, 0) }
        // The child is ours once its stat names sleep (after exec).
        var ready = false
        for _ in 0..<200 where !ready {
            ready = FileIO.readString("/proc/\(child)/stat")?.contains("(sleep)") ?? false
            if !ready { usleep(10_000) }
        }
        #expect(ready)
        for pid in [getpid(), getppid(), child] {
            let r = try db.execute("SELECT name, state, parent, pgroup, nice, uid, euid, gid, egid, cmdline, path, on_disk, cwd, root, cgroup_path, start_time FROM processes WHERE pid = \(pid)")
            try #require(r.rowCount == 1, "pid \(pid)")
            let statText = try #require(FileIO.readString("/proc/\(pid)/stat"))
            let s = try #require(Self.referenceStat(statText))
            #expect(r[0, "name"] == .text(s.name))
            #expect(r[0, "parent"] == .integer(s.fields[0]) && r[0, "pgroup"] == .integer(s.fields[1]) && r[0, "nice"] == .integer(s.fields[15]))
            let ids = Self.referenceIDs(FileIO.readString("/proc/\(pid)/status") ?? "")
            #expect(r[0, "uid"] == .integer(ids.uid) && r[0, "euid"] == .integer(ids.euid))
            #expect(r[0, "gid"] == .integer(ids.gid) && r[0, "egid"] == .integer(ids.egid))
            let cmdline = (FileIO.readString("/proc/\(pid)/cmdline") ?? "").split(separator: "\0").joined(separator: " ")
            #expect(r[0, "cmdline"] == .text(cmdline))
            let exe = FileIO.readLink("/proc/\(pid)/exe").map { String(decoding: $0, as: UTF8.self) } ?? ""
            #expect(r[0, "path"] == .text(exe) && r[0, "on_disk"] == .integer(1))
            let cwd = FileIO.readLink("/proc/\(pid)/cwd").map { String(decoding: $0, as: UTF8.self) } ?? ""
            #expect(r[0, "cwd"] == .text(cwd))
            #expect(r[0, "root"] == .text("/"))
            #expect(r[0, "cgroup_path"] == .text(Self.referenceCgroup(FileIO.readString("/proc/\(pid)/cgroup") ?? "")))
        }
        #expect(try db.execute("SELECT name FROM processes WHERE pid = \(child)").rows == [["sleep"]])
        #expect(try db.execute("SELECT cmdline FROM processes WHERE pid = \(child)").rows == [["/bin/sleep 30"]])
    }

    /// A pid that has exited (reaped) yields no row and no error.
    @Test func vanishedPidHasNoRow() throws {
        let (db, _, _) = try makeTablesDatabase()
        var child: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for a in argv { free(a) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        Spawn.closeInheritedDescriptors(in: &actions)
        #expect(posix_spawn(&child, "/bin/true", &actions, nil, &argv, environ) == 0)
        var st: Int32 = 0
        waitpid(child, &st, 0)
        #expect(try db.execute("SELECT pid FROM processes WHERE pid = \(child)").rowCount == 0)
        // Pids no process can have: negative, zero, the largest 32-bit value.
        #expect(try db.execute("SELECT pid FROM processes WHERE pid IN (-5, 0, 2147483647)").rowCount == 0)
        #expect(try db.execute("SELECT pid FROM processes WHERE pid = 1").rows == [[1]])
    }

    /// Kernel threads (children of kthreadd, pid 2) have an empty cmdline and no exe.
    @Test func kernelThreadsHaveEmptyCmdlineAndPath() throws {
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT cmdline, path FROM processes WHERE parent = 2 LIMIT 5")
        for i in 0..<r.rowCount {
            #expect(r[i, "cmdline"] == .text("") && r[i, "path"] == .text(""))
        }
    }
}

/// The threaded scan (used for hosts with many processes) gives the same rows as the
/// single-thread one, for the columns that cannot change between two scans.
@Suite struct ProcessScanTests {
    @Test func threadedAndSingleScansAgree() throws {
        let table = ProcessTables.processes()
        let context = QueryContext(schema: table.schema)
        let single = try ProcessTables.generate(context, table.schema)
        let threaded = try ProcessTables.generate(context, table.schema, threadedMinimum: 1)
        #expect(single.columnCount == table.schema.columns.count && threaded.columnCount == single.columnCount)
        let stable = ["pid", "name", "path", "cmdline", "cwd", "root", "uid", "gid", "euid", "egid", "suid", "sgid",
                      "on_disk", "start_time", "parent", "pgroup", "cgroup_path"]
        let indexes = stable.map { name in table.schema.columns.firstIndex { $0.name == name }! }
        func keyed(_ rows: TableRows) -> [Int64: [SQLValue]] {
            var out: [Int64: [SQLValue]] = [:]
            for r in 0..<rows.count {
                guard case .integer(let pid) = rows.values[r * rows.columnCount] else { continue }
                out[pid] = indexes.map { rows.values[r * rows.columnCount + $0] }
            }
            return out
        }
        let a = keyed(single), b = keyed(threaded)
        #expect(a.count > 1)
        // Other processes can start, exit or exec between the scans: compare this process, its
        // parent, init and kernel threads (children of kthreadd, which never exec).
        let me = Int64(getpid())
        #expect(a[me] != nil && b[me] != nil)
        var compared = 0
        let nameAt = stable.firstIndex(of: "name")!
        for (pid, row) in a where pid == me || pid == Int64(getppid()) || pid == 1 || row[stable.firstIndex(of: "parent")!] == .integer(2) {
            guard var other = b[pid] else { continue }
            // Kernel workers rename themselves to show their current work ("kworker/u8:1-writeback").
            if row[stable.firstIndex(of: "parent")!] == .integer(2) { other[nameAt] = row[nameAt] }
            #expect(row == other, "pid \(pid)")
            compared += 1
        }
        #expect(compared >= 2)
    }
}
