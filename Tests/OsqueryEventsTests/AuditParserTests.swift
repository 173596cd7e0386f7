import Foundation
import OsqueryEngine
import OsqueryEvents
import Testing

/// A netlink datagram as the kernel sends an audit record (`nlmsg_len` is the text's length).
func auditDatagram(_ type: UInt16, _ text: String) -> [UInt8] {
    let body = Array(text.utf8)
    var out: [UInt8] = []
    out += withUnsafeBytes(of: UInt32(body.count).littleEndian, Array.init)
    out += withUnsafeBytes(of: type.littleEndian, Array.init)
    out += [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    return out + body
}

/// The records of one execve, as this kernel writes them, with a long argument split in pieces.
func execRecords(serial: Int, pid: Int = 4242, exe: String = "/usr/bin/true", cwd: String = "/tmp/w d") -> [[UInt8]] {
    let now = Int(Date().timeIntervalSince1970)
    let h = "audit(\(now).100:\(serial)): "
    let hexCwd = cwd.utf8.map { String(format: "%02X", $0) }.joined()
    return [
        auditDatagram(
            1300,
            h + "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=8 items=2 ppid=77 pid=\(pid) auid=1000 uid=1001 gid=1002 euid=1003 suid=1004 fsuid=1005 egid=1006 sgid=1007 fsgid=1008 tty=(none) ses=3 comm=\"true\" exe=\"\(exe)\" key=\"k\""
        ),
        auditDatagram(1309, h + "argc=4 a0=\"true\" a1=\"hello\" a2_len=6 a2[0]=666F6F a2[1]=626172 a3=7769746820737061636573"),
        auditDatagram(1307, h + "cwd=" + hexCwd),
        auditDatagram(1302, h + "item=0 name=\"\(exe)\" inode=1 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL"),
        auditDatagram(1327, h + "proctitle=7472756500"),
        auditDatagram(1320, h),
    ]
}

/// An in-memory core with the audit publisher (not started: the test feeds it datagrams).
final class AuditFeed: @unchecked Sendable {  // used by one test at a time
    let hub: EventHub
    let publisher: AuditPublisher
    let database: Database
    var assembler: AuditAssembler

    init(_ extra: [String: String] = [:]) throws {
        var values = ["disable_events": "false", "disable_audit": "false", "audit_allow_sockets": "true"]
        values.merge(extra) { $1 }
        let flags = try makeFlags(values)
        let registry = PluginRegistry()
        hub = EventsRuntime.make(flags: flags, registry: registry, database: InMemoryEventDatabase(), isDaemon: false)
        publisher = hub.publishers.compactMap { $0 as? AuditPublisher }.first!
        database = try Database(registry: registry, flags: flags)
        assembler = AuditAssembler(maxPartial: Int(flags[.auditMaxPartialEvents]), maxArgumentBytes: Int(flags[.auditMaxEventBytes]))
    }

    func feed(_ datagrams: [[UInt8]]) {
        var completed: [AuditEvent] = []
        for d in datagrams {
            d.withUnsafeBytes { publisher.consume($0, socket: nil, assembler: &assembler, into: &completed) }
        }
        publisher.emit(&completed)
        publisher.noteAssembly(assembler.counters)
    }

    func counter(_ name: String) -> Int {
        Int((try? database.strings("SELECT events FROM osquery_events WHERE name = 'auditeventpublisher.\(name)'", "events").first) ?? "") ?? -1
    }
}

@Suite struct AuditParserTests {
    @Test func recordHeaderFieldsAndHexValues() throws {
        let text = "audit(1502125323.756:6): argc=2 a0=\"sh\" exe=2F746D702F6120622F63 name=(null) msg='op=login acct=\"x y\" res=success'"
        let r = try #require(AuditRecord.parse(type: 1309, text: Substring(text).utf8))
        #expect(r.seconds == 1_502_125_323 && r.serial == 6)
        #expect(r.text("a0") == "sh")
        #expect(r.text("exe") == "/tmp/a b/c")
        #expect(r.text("name") == "(null)")
        #expect(r.raw("msg") == "'op=login acct=\"x y\" res=success'")
        for bad in ["", "audit(", "audit(1.2:): x=1", "audit(x.2:3): a=1", "nonsense", "audit(1.2:3)x a=1", "audit(99999999999999999999.1:1): a=1"] {
            #expect(AuditRecord.parse(type: 1300, text: Substring(bad).utf8) == nil, "\(bad)")
        }
    }

    @Test func execveIsAssembledIntoAProcessEventsRow() throws {
        let core = try AuditFeed()
        core.feed(execRecords(serial: 10))
        let rows = try core.database.execute(
            "SELECT pid, parent, path, cmdline, cmdline_size, cwd, uid, auid, euid, gid, egid, suid, fsuid, sgid, fsgid, mode, owner_uid, syscall, overflows, eid, time FROM process_events"
        ).rowMaps()
        let row = try #require(rows.first)
        #expect(rows.count == 1)
        #expect(row["pid"] == "4242" && row["parent"] == "77" && row["path"] == "/usr/bin/true")
        #expect(row["cmdline"] == "true hello foobar with spaces")
        #expect(row["cmdline_size"] == "29")
        #expect(row["cwd"] == "/tmp/w d")
        #expect(row["uid"] == "1001" && row["auid"] == "1000" && row["euid"] == "1003" && row["gid"] == "1002")
        #expect(row["egid"] == "1006" && row["suid"] == "1004" && row["fsuid"] == "1005" && row["sgid"] == "1007" && row["fsgid"] == "1008")
        #expect(row["mode"] == "0100755" && row["owner_uid"] == "0" && row["syscall"] == "execve" && row["overflows"] == "")
        #expect(row["eid"]?.count == 10 && row["time"] != "")
        // osquery's column order: time sits between parent and uptime, eid before fsuid.
        let columns = try core.database.execute("SELECT * FROM process_events").columns
        #expect(columns.firstIndex(of: "parent")! + 1 == columns.firstIndex(of: "time")!)
    }

    /// An executable is stat'ed once per batch for its times, but a file replaced within the
    /// batch (the PATH record names another inode) is stat'ed again; a path that cannot be
    /// stat'ed stays without times.
    @Test func executableStatsFollowThePathRecordsInode() throws {
        let dir = NSTemporaryDirectory() + "osq-exestat-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/tool"
        func install(mtime: Int) throws -> UInt64 {
            let staged = dir + "/staged"
            try Data("x".utf8).write(to: URL(fileURLWithPath: staged))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: TimeInterval(mtime))], ofItemAtPath: staged)
            #expect(rename(staged, path) == 0)
            var st = stat()
            #expect(stat(path, &st) == 0)
            return UInt64(st.st_ino)
        }
        var stats = ExecutableStats()
        let first = try install(mtime: 1000)
        #expect(stats.lookup(path, inode: first)?.mtime == 1000)
        let second = try install(mtime: 2000)
        #expect(second != first)
        #expect(stats.lookup(path, inode: second)?.mtime == 2000)
        #expect(stats.lookup(path, inode: nil)?.mtime == 2000)
        #expect(stats.lookup(dir + "/missing", inode: nil) == nil)
        #expect(stats.lookup(dir + "/missing", inode: 7) == nil)
    }

    /// process_events and socket_events rows are filled by column position: the positions must
    /// follow the schemas' order.
    @Test func positionalRowColumnsFollowTheSchemas() {
        #expect(AuditPublisher.positionalColumnsFollowSchemas)
    }

    @Test func argumentsSplitOverSeveralExecveRecords() throws {
        let core = try AuditFeed()
        let h = "audit(\(Int(Date().timeIntervalSince1970)).1:20): "
        var records = execRecords(serial: 20)
        records[1] = auditDatagram(1309, h + "argc=3 a0=\"x\" a1_len=4 a1[0]=6162")
        records.insert(auditDatagram(1309, h + " a1[1]=6364 a2=\"z\""), at: 2)
        core.feed(records)
        #expect(try core.database.strings("SELECT cmdline FROM process_events", "cmdline") == ["x abcd z"])
    }

    /// The reader hands events to the tables a batch at a time: an event whose records straddle
    /// two batches (its EXECVE split over two datagrams, one in each) waits for the second, and
    /// the rows of one batch keep their order within each table.
    @Test func eventsStraddlingBatchesAndMixedTables() throws {
        let core = try AuditFeed()
        let h = "audit(\(Int(Date().timeIntervalSince1970)).1:31): "
        var straddling = execRecords(serial: 31, pid: 3131)
        straddling[1] = auditDatagram(1309, h + "argc=3 a0=\"x\" a1_len=4 a1[0]=6162")
        straddling.insert(auditDatagram(1309, h + "a1[1]=6364 a2=\"z\""), at: 2)
        let connect = [
            auditDatagram(
                1300,
                "audit(\(Int(Date().timeIntervalSince1970)).1:32): arch=c000003e syscall=42 success=yes exit=0 a0=5 a1=2 items=0 ppid=1 pid=99 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 comm=\"nc\" exe=\"/usr/bin/nc\""
            ),
            auditDatagram(1306, "audit(\(Int(Date().timeIntervalSince1970)).1:32): saddr=02001F907F0000010000000000000000"),
            auditDatagram(1320, "audit(\(Int(Date().timeIntervalSince1970)).1:32): "),
        ]
        core.feed(execRecords(serial: 30, pid: 3030) + Array(straddling[0..<2]) + connect + execRecords(serial: 33, pid: 3333))
        #expect(core.assembler.inFlight == 1)
        #expect(try core.database.strings("SELECT pid FROM process_events ORDER BY eid", "pid") == ["3030", "3333"])
        #expect(try core.database.strings("SELECT pid FROM socket_events", "pid") == ["99"])
        core.feed(Array(straddling[2...]))
        #expect(core.assembler.inFlight == 0)
        #expect(try core.database.strings("SELECT pid FROM process_events ORDER BY eid", "pid") == ["3030", "3333", "3131"])
        #expect(try core.database.strings("SELECT cmdline FROM process_events WHERE pid = 3131", "cmdline") == ["x abcd z"])
        #expect(core.publisher.status.events == 4)
    }

    /// A record's `nlmsg_len` is its payload's length (the kernel's quirk) or, as in replies,
    /// header included; NUL padding is not part of the text; a length past the datagram is
    /// malformed. Arguments with a gap keep their order.
    @Test func recordLengthsAndArgumentGaps() throws {
        let core = try AuditFeed()
        var records = execRecords(serial: 40, pid: 4040)
        // The SYSCALL record with the header counted in its length and NUL padding after it.
        let syscall = records[0]
        var padded = syscall + [0, 0, 0]
        let total = UInt32(padded.count)
        padded.replaceSubrange(0..<4, with: withUnsafeBytes(of: total.littleEndian, Array.init))
        records[0] = padded
        let h = "audit(\(Int(Date().timeIntervalSince1970)).1:40): "
        records[1] = auditDatagram(1309, h + "argc=3 a0=\"x\" a2=\"z\"")
        core.feed(records)
        #expect(try core.database.strings("SELECT cmdline FROM process_events WHERE pid = 4040", "cmdline") == ["x z"])
        let before = core.counter("malformed_messages")
        var overlong = auditDatagram(1320, h)
        overlong.replaceSubrange(0..<4, with: withUnsafeBytes(of: UInt32(overlong.count + 1).littleEndian, Array.init))
        core.feed([overlong])
        #expect(core.counter("malformed_messages") == before + 1)
    }

    @Test func socketEventsFromSockaddr() throws {
        let core = try AuditFeed()
        let now = Int(Date().timeIntervalSince1970)
        func event(_ serial: Int, syscall: Int, saddr: String, success: String = "yes", exit: Int = 0) -> [[UInt8]] {
            let h = "audit(\(now).1:\(serial)): "
            return [
                auditDatagram(
                    1300,
                    h + "arch=c000003e syscall=\(syscall) success=\(success) exit=\(exit) a0=5 a1=2 items=0 ppid=1 pid=99 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 comm=\"nc\" exe=\"/usr/bin/nc\""
                ),
                auditDatagram(1306, h + "saddr=\(saddr)"), auditDatagram(1320, h),
            ]
        }
        core.feed(
            event(1, syscall: 42, saddr: "02001F907F0000010000000000000000") + event(2, syscall: 49, saddr: "0A000050000000000000000000000000000000000000000100000000")
                + event(3, syscall: 42, saddr: "01002F746D702F736F636B00") + event(4, syscall: 42, saddr: "100000000000000000000000")
                + event(5, syscall: 42, saddr: "02001F907F000001", success: "no", exit: -115)
                + event(6, syscall: 42, saddr: "02001F907F000001", success: "no", exit: -111))
        let rows = try core.database.execute(
            "SELECT action, pid, path, fd, family, local_address, local_port, remote_address, remote_port, status, success, auid FROM socket_events ORDER BY eid"
        ).rowMaps()
        #expect(rows.count == 3)
        #expect(rows[0]["action"] == "connect" && rows[0]["remote_address"] == "127.0.0.1" && rows[0]["remote_port"] == "8080")
        #expect(rows[0]["family"] == "2" && rows[0]["fd"] == "5" && rows[0]["status"] == "succeeded" && rows[0]["path"] == "/usr/bin/nc")
        #expect(rows[0]["auid"] == "4294967295")
        #expect(rows[1]["action"] == "bind" && rows[1]["local_address"] == "0000:0000:0000:0000:0000:0000:0000:0001" && rows[1]["local_port"] == "80")
        // A UNIX socket (without --audit_allow_unix) and netlink are not shown; EINPROGRESS is.
        #expect(rows[2]["status"] == "in_progress" && rows[2]["success"] == "1")
    }

    @Test func userSelinuxAppArmorAndSeccompRecords() throws {
        let core = try AuditFeed([
            "audit_allow_selinux_events": "true", "audit_allow_apparmor_events": "true", "audit_allow_seccomp_events": "true",
        ])
        let h = "audit(\(Int(Date().timeIntervalSince1970)).1:5): "
        core.feed([
            auditDatagram(1112, h + "pid=12 uid=0 auid=1000 ses=1 msg='op=login acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=? addr=10.0.0.1 terminal=ssh res=success'"),
            auditDatagram(1400, h + "avc:  denied  { read } for  pid=5 comm=\"cat\" name=\"x\" scontext=a tcontext=b tclass=file"),
            auditDatagram(
                1400, h + "apparmor=\"DENIED\" operation=\"open\" profile=\"/usr/bin/x\" name=\"/etc/shadow\" pid=7 comm=\"x\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"),
            auditDatagram(1326, h + "auid=1000 uid=1000 gid=1000 ses=2 pid=9 comm=\"a\" exe=\"/tmp/a\" sig=31 arch=c000003e syscall=39 compat=0 ip=0x7f00 code=0x80000000"),
        ])
        let user = try #require(try core.database.execute("SELECT uid, auid, pid, type, message, path, address, terminal FROM user_events").rowMaps().first)
        #expect(user["type"] == "1112" && user["pid"] == "12" && user["auid"] == "1000")
        #expect(user["message"] == "op=login acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=? addr=10.0.0.1 terminal=ssh res=success")
        #expect(user["path"] == "/usr/sbin/sshd" && user["address"] == "10.0.0.1" && user["terminal"] == "ssh")
        #expect(try core.database.strings("SELECT type FROM selinux_events", "type") == ["AVC"])
        let aa = try #require(try core.database.execute("SELECT type, apparmor, operation, profile, name, pid FROM apparmor_events").rowMaps().first)
        #expect(aa["type"] == "AA" && aa["apparmor"] == "DENIED" && aa["operation"] == "open" && aa["name"] == "/etc/shadow" && aa["pid"] == "7")
        let sc = try #require(try core.database.execute("SELECT arch, syscall, code, sig, exe, pid FROM seccomp_events").rowMaps().first)
        #expect(sc == ["arch": "X86_64", "syscall": "getpid", "code": "KILL_PROCESS", "sig": "31", "exe": "/tmp/a", "pid": "9"])
    }

    @Test func processFileEventsFollowFilePaths() throws {
        let core = try AuditFeed(["audit_allow_fim_events": "true"])
        var c = EventsConfiguration()
        c.filePaths = ["etc": ["/watched/%%"]]
        core.publisher.configure(c)
        let now = Int(Date().timeIntervalSince1970)
        func event(_ serial: Int, syscall: Int, a1: String, paths: [(String, String)]) -> [[UInt8]] {
            let h = "audit(\(now).1:\(serial)): "
            return [
                auditDatagram(
                    1300,
                    h + "arch=c000003e syscall=\(syscall) success=yes exit=3 a0=ffffff9c a1=\(a1) a2=241 items=\(paths.count) ppid=1 pid=50 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 comm=\"sh\" exe=\"/bin/sh\""
                ),
                auditDatagram(1307, h + "cwd=\"/watched\""),
            ] + paths.enumerated().map { auditDatagram(1302, h + "item=\($0.offset) name=\"\($0.element.0)\" nametype=\($0.element.1)") }
                + [auditDatagram(1320, h)]
        }
        core.feed(
            event(1, syscall: 257, a1: "0", paths: [("/watched", "PARENT"), ("a.txt", "CREATE")])  // openat O_WRONLY|O_CREAT|O_TRUNC (a2=241)
                + event(2, syscall: 87, a1: "0", paths: [("/watched/", "PARENT"), ("/watched/b", "DELETE")])
                + event(3, syscall: 87, a1: "0", paths: [("/elsewhere/", "PARENT"), ("/elsewhere/c", "DELETE")]))
        let rows = try core.database.execute("SELECT operation, path, executable, partial, pid FROM process_file_events ORDER BY eid").rowMaps()
        #expect(rows.map { $0["operation"] ?? "" } == ["open+truncate", "unlink"])
        #expect(rows.map { $0["path"] ?? "" } == ["/watched/a.txt", "/watched/b"])
        #expect(rows.first?["partial"] == "false" && rows.first?["executable"] == "/bin/sh")
    }

    /// Hostile input: truncated and malformed datagrams, records outside any event, a flood of
    /// events that never end, and an EXECVE with a huge argument count: each counted, memory
    /// bounded, and the next good event still gives its row.
    @Test func hostileInputIsCountedAndBounded() throws {
        let core = try AuditFeed(["audit_max_partial_events": "16", "audit_max_event_bytes": "1000"])
        var bad: [[UInt8]] = [[1, 2, 3], Array(repeating: 0xff, count: 15), [200, 0, 0, 0, 0x14, 0x05] + Array(repeating: 0, count: 10)]
        // A control message whose length runs past the datagram.
        bad.append([64, 0, 0, 0, 0xe8, 0x03] + Array(repeating: 0, count: 10))
        bad.append(auditDatagram(1300, "garbage without a header"))
        bad.append(auditDatagram(1300, "audit(1.1:1): pid=1"))  // SYSCALL without exe/syscall
        bad.append(auditDatagram(1320, "audit(1.1:1): "))
        // A syscall number past Int's range.
        bad.append(auditDatagram(1300, "audit(1.1:2): syscall=18446744073709551615 success=yes ppid=1 pid=1 exe=\"/x\""))
        bad.append(auditDatagram(1320, "audit(1.1:2): "))
        bad.append(auditDatagram(1999, "audit(1.1:77): whatever=1"))  // unknown type, no event
        core.feed(bad)
        // 100 SYSCALL records that never see their EOE: at most 16 stay in flight.
        let now = Int(Date().timeIntervalSince1970)
        core.feed((0..<100).map { i in
            auditDatagram(1300, "audit(\(now).1:\(1000 + i)): syscall=59 success=yes exit=0 ppid=1 pid=2 uid=0 auid=0 exe=\"/bin/x\"")
        })
        #expect(core.assembler.inFlight <= 16)
        // Events that complete leave nothing behind either.
        var completed: [AuditEvent] = []
        for i in 0..<5000 {
            for type in [UInt16(1300), 1320] {
                let text = "audit(\(now).1:\(20000 + i)): syscall=59 success=yes exit=0 ppid=1 pid=2 uid=0 auid=0 exe=\"/bin/x\""
                core.assembler.add(AuditRecord.parse(type: type, text: Substring(text).utf8)!, into: &completed)
            }
        }
        #expect(completed.count == 5000 && core.assembler.inFlight <= 16 && core.assembler.tracked <= 2 * 16 + 64)
        // An EXECVE claiming a million arguments, with ten thousand present: cut at 1000 bytes.
        var records = execRecords(serial: 5000)
        let h = "audit(\(now).1:5000): "
        records[1] = auditDatagram(1309, h + "argc=1000000 " + (0..<10000).map { "a\($0)=\"arg\($0)\"" }.joined(separator: " "))
        core.feed(records)
        let row = try #require(try core.database.execute("SELECT cmdline, overflows FROM process_events").rowMaps().first)
        #expect(row["overflows"] == "cmdline")
        #expect((row["cmdline"]?.utf8.count ?? 0) <= 1000)
        #expect(core.counter("malformed_messages") >= 3)
        #expect(core.counter("malformed_records") >= 2)
        #expect(core.counter("unknown_records") >= 1)
        #expect(core.counter("partial_events_dropped") >= 84)
        #expect(core.counter("argument_overflows") == 1)
        // Still serving: a good event after all that.
        core.feed(execRecords(serial: 6000, pid: 6000))
        #expect(try core.database.strings("SELECT pid FROM process_events WHERE pid = 6000", "pid") == ["6000"])
    }

    /// The kernel's lost count (its backlog overflowed) growing between two status replies, and
    /// another process holding the audit pid: both counted (and logged).
    @Test func kernelLostGrowthAndLostControlAreCounted() throws {
        let core = try AuditFeed()
        func status(pid: UInt32, lost: UInt32) -> [UInt8] {
            let words: [UInt32] = [0, 1, 1, pid, 0, 4096, lost, 0, 127, 0]
            let payload = words.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
            var out = withUnsafeBytes(of: UInt32(16 + payload.count).littleEndian, Array.init)
            out += withUnsafeBytes(of: UInt16(1000).littleEndian, Array.init)
            out += Array(repeating: 0, count: 10)
            return out + payload
        }
        let me = UInt32(getpid())
        core.feed([status(pid: me, lost: 5), status(pid: me, lost: 12), status(pid: me, lost: 12), status(pid: 1, lost: 40)])
        #expect(core.counter("kernel_lost") == 35)
        #expect(core.counter("control_lost") == 1)
        core.feed(execRecords(serial: 7, pid: 7007))
        #expect(try core.database.strings("SELECT pid FROM process_events", "pid") == ["7007"])
    }

    /// osquery's flags pick the rule's syscalls: exec always (process events on), fork/vfork/clone
    /// and kill/tkill/tgkill behind their flags, sockets (accept unless turned off), FIM syscalls.
    @Test func flagsPickTheRuleSyscalls() throws {
        #expect(try AuditFeed(["audit_allow_sockets": "false"]).publisher.ruleSyscalls() == [59, 322])
        let all = try AuditFeed([
            "audit_allow_fork_process_events": "true", "audit_allow_kill_process_events": "true", "audit_allow_accept_socket_events": "false",
        ]).publisher.ruleSyscalls()
        #expect(Set([56, 57, 58, 62, 200, 234, 42, 49]).isSubset(of: Set(all)) && !all.contains(43) && !all.contains(288))
        let fim = try AuditFeed(["audit_allow_fim_events": "true", "audit_allow_process_events": "false", "audit_allow_sockets": "false"])
        #expect(Set(fim.publisher.ruleSyscalls()) == Set([2, 257, 85, 76, 87, 263, 82, 264, 316, 86, 265, 88, 266]))
    }

    /// fork/clone/kill rows: a thread's clone (CLONE_THREAD) is not a process; a fork's pid is its
    /// return value and its parent the caller.
    @Test func forkCloneAndKillRows() throws {
        let core = try AuditFeed()
        let now = Int(Date().timeIntervalSince1970)
        func event(_ serial: Int, syscall: Int, a0: String, exit: Int) -> [[UInt8]] {
            let h = "audit(\(now).1:\(serial)): "
            return [
                auditDatagram(
                    1300,
                    h + "arch=c000003e syscall=\(syscall) success=yes exit=\(exit) a0=\(a0) items=0 ppid=10 pid=20 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 comm=\"x\" exe=\"/bin/x\""
                ),
                auditDatagram(1320, h),
            ]
        }
        core.feed(
            event(1, syscall: 57, a0: "0", exit: 21) + event(2, syscall: 56, a0: "3d0f00", exit: 22) + event(3, syscall: 56, a0: "1200011", exit: 23)
                + event(4, syscall: 62, a0: "15", exit: 0))
        let rows = try core.database.execute("SELECT syscall, pid, parent, cmdline FROM process_events ORDER BY eid").rowMaps(nullValue: "NULL")
        #expect(rows.map { $0["syscall"] ?? "" } == ["fork", "clone", "kill"])
        #expect(rows[0]["pid"] == "21" && rows[0]["parent"] == "20" && rows[0]["cmdline"] == "")
        #expect(rows[1]["pid"] == "23" && rows[1]["parent"] == "20")
        #expect(rows[2]["pid"] == "20" && rows[2]["parent"] == "10")
    }

    /// Seeded random records built from audit-like pieces (and random bytes): no crash, and the
    /// core still serves.
    @Test func randomRecordsNeverCrashTheParser() throws {
        let core = try AuditFeed(["audit_allow_fim_events": "true", "audit_allow_seccomp_events": "true", "audit_allow_apparmor_events": "true"])
        var c = EventsConfiguration()
        c.filePaths = ["all": ["/%%"]]
        core.publisher.configure(c)
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ n: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(max(1, n)))
        }
        let keys = ["syscall", "exe", "pid", "ppid", "uid", "auid", "a0", "a1", "a2", "argc", "a1_len", "a1[0]", "a1[1]", "saddr", "cwd", "name", "nametype", "mode", "msg", "apparmor", "arch", "code", "exit", "success", "items"]
        let values = ["59", "42", "49", "56", "57", "62", "257", "82", "\"/bin/x\"", "2F746D70", "ZZ", "", "\"", "'", "-1", "18446744073709551615", "0200", "0A00", "01", "10", "yes", "no", "c000003e", "0x7fff0000", "DELETE", "CREATE", "PARENT", "99999999999"]
        let types: [UInt16] = [1300, 1302, 1306, 1307, 1309, 1320, 1326, 1400, 1112, 1318, 1327, 1999, 1000, 2, 3]
        var batch: [[UInt8]] = []
        for _ in 0..<4000 {
            let type = types[next(types.count)]
            if next(10) == 0 {
                batch.append((0..<next(64)).map { _ in UInt8(truncatingIfNeeded: next(256)) })
                continue
            }
            let fields = (0..<next(12)).map { _ in keys[next(keys.count)] + "=" + values[next(values.count)] }.joined(separator: " ")
            batch.append(auditDatagram(type, "audit(\(1 + next(3)).1:\(next(20))): " + fields))
        }
        core.feed(batch)
        core.feed(execRecords(serial: 90000, pid: 9090))
        #expect(try core.database.strings("SELECT pid FROM process_events WHERE pid = 9090", "pid") == ["9090"])
    }

    @Test func ruleKeyRoundTripsThroughTheRuleData() {
        let data = AuditRule.data(syscalls: [59, 322], key: "osquery-swift enabled=0 backlog_limit=64")
        #expect(AuditRule.key(of: data[...]) == "osquery-swift enabled=0 backlog_limit=64")
        #expect(AuditRule.key(of: data.prefix(100)) == nil)
        #expect(AuditRule.key(of: data.dropLast(3)) == nil)
    }
}
