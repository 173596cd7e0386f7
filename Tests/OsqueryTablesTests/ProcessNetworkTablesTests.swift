import Foundation
import OsqueryEngine
@testable import OsqueryTables
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A `sleep` child holding known descriptors: 3 a file read, 4 a file written, 5 a FIFO opened
/// read-write, 6 and 7 the read and write ends of one pipe (no other process holds it).
final class DescriptorChild {
    let pid: pid_t
    let dir: TempDir
    let pipeInode: UInt64

    init() throws {
        let dir = TempDir()
        self.dir = dir
        dir.write("read", "r\n")
        #expect(mkfifo(dir.path + "/fifo", 0o600) == 0)
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        var st = stat()
        fstat(ends[0], &st)
        let inode = UInt64(st.st_ino)
        pipeInode = inode
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        Spawn.closeInheritedDescriptors(in: &actions)
        posix_spawn_file_actions_addopen(&actions, 3, dir.path + "/read", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 4, dir.path + "/written", O_WRONLY | O_CREAT, 0o600)
        posix_spawn_file_actions_addopen(&actions, 5, dir.path + "/fifo", O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, ends[0], 6)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 7)
        var arguments: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("60"), nil]
        defer { for p in arguments { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, "/bin/sleep", &actions, nil, &arguments, environ)
        close(ends[0])
        close(ends[1])
        try #require(rc == 0)
        pid = child
        // Until it has exec'd, the child's maps are still this process's; until it sleeps, it may
        // still hold a locale file it is loading.
        #if arch(arm64)
        let sleeps: Set<Substring> = ["101", "115"]
        #else
        let sleeps: Set<Substring> = ["35", "230"]  // x86_64 nanosleep, clock_nanosleep
        #endif
        var ready = false
        for _ in 0..<500 where !ready {
            let exec = FileIO.readString("/proc/\(child)/stat")?.contains("(sleep)") ?? false
            let call = FileIO.readString("/proc/\(child)/syscall")?.split(separator: " ").first
            ready = exec && call.map(sleeps.contains) == true
            if !ready { usleep(10_000) }
        }
        #expect(ready)
    }

    deinit {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}

@Suite(.serialized) struct ProcessNetworkTablesTests {
    /// lsof's numeric descriptors of a process that name a path: "fd\tpath".
    static func lsofPaths(_ pid: pid_t) async throws -> Set<String> {
        let output = try await toolOutput("/usr/bin/lsof", ["-w", "-n", "-p", String(pid), "-F", "fn"])
        var out = Set<String>()
        var fd: String?
        for line in output.split(separator: "\n") {
            switch line.first {
            case "f": fd = line.dropFirst().allSatisfy(\.isNumber) ? String(line.dropFirst()) : nil
            case "n": if let fd, line.dropFirst().hasPrefix("/") { out.insert(fd + "\t" + line.dropFirst()) }
            default: break
            }
        }
        return out
    }

    /// The child's open files are what lsof(8) reports for it (pipes left out, as osquery does);
    /// `WHERE pid = N` reads that process alone.
    @Test(.enabled(if: installed("/usr/bin/lsof"))) func processOpenFilesMatchLsof() async throws {
        let child = try DescriptorChild()
        let (db, _, _) = try makeTablesDatabase()
        let all = try rowSet(db, "SELECT fd, path FROM process_open_files WHERE pid = \(child.pid)", ["fd", "path"])
        let ours = all.filter { $0.split(separator: "\t").last?.hasPrefix("/") ?? false }
        let theirs = try await Self.lsofPaths(child.pid)
        #expect(ours.isSuperset(of: ["3\t\(child.dir.path)/read", "4\t\(child.dir.path)/written", "5\t\(child.dir.path)/fifo"]))
        #expect(ours == theirs)
        #expect(!all.contains { $0.hasPrefix("6\t") || $0.hasPrefix("7\t") })
        // (DISTINCT is no use here: index columns are declared PRIMARY KEY, as osquery declares them.)
        #expect(try rowSet(db, "SELECT pid FROM process_open_files WHERE pid = \(child.pid)", ["pid"]) == [String(child.pid)])
        #expect(try db.execute("SELECT * FROM process_open_files WHERE pid = 999999999").rowCount == 0)
        // Without a constraint, every process is read, the child among them.
        #expect(try db.execute("SELECT count(*) FROM process_open_files WHERE path = '\(child.dir.path)/read'")[0, 0] == .integer(1))
    }

    /// The child's pipe ends name each other; its FIFO, held by nobody else, has no partner.
    @Test func processOpenPipesPairTheChildsEnds() throws {
        let child = try DescriptorChild()
        let (db, _, _) = try makeTablesDatabase()
        let sql = "SELECT * FROM process_open_pipes WHERE pid = \(child.pid) AND fd IN (5, 6, 7)"
        let columns = ["fd", "mode", "inode", "type", "partner_pid", "partner_fd", "partner_mode"]
        var st = stat()
        #expect(stat(child.dir.path + "/fifo", &st) == 0)
        #expect(try rowSet(db, sql, columns) == [
            "5\trw\t\(st.st_ino)\tnamed\t\t\t",
            "6\tr\t\(child.pipeInode)\tanonymous\t\(child.pid)\t7\tw",
            "7\tw\t\(child.pipeInode)\tanonymous\t\(child.pid)\t6\tr",
        ])
    }

    /// The child's mappings are pmap(1)'s: address, permissions, offset, inode and file name.
    @Test(.enabled(if: installed("/usr/bin/pmap"))) func processMemoryMapMatchesPmap() async throws {
        let child = try DescriptorChild()
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT start, end, permissions, offset, inode, path, pseudo, device FROM process_memory_map WHERE pid = \(child.pid)")
        var ours = Set<String>()
        var sawSleep = false, sawStack = false
        for row in 0..<r.rowCount {
            let start = (r[row, 0].text ?? "").dropFirst(2), end = (r[row, 1].text ?? "").dropFirst(2)
            let size = ((UInt64(end, radix: 16) ?? 0) - (UInt64(start, radix: 16) ?? 0)) / 1024
            let path = r[row, 5].text ?? ""
            let name = path.hasPrefix("/") ? String(path.split(separator: "/").last ?? "") : path
            ours.insert([String(start), r[row, 2].text ?? "", r[row, 3].text ?? "", r[row, 4].text ?? "", String(size), name].joined(separator: "\t"))
            if path == "/usr/bin/sleep" || path == "/bin/sleep" { sawSleep = r[row, 6] == .integer(0) }
            if path == "[stack]" { sawStack = r[row, 6] == .integer(1) && r[row, 7] == .text("00:00") }
        }
        #expect(sawSleep && sawStack)
        let output = try await toolOutput("/usr/bin/pmap", ["-X", String(child.pid)])
        let lines = output.split(separator: "\n")
        let header = lines.dropFirst().first.map { $0.split(separator: " ") } ?? []
        try #require(header.first == "Address" && header.last == "Mapping")
        var theirs = Set<String>()
        for line in lines.dropFirst(2) {
            let words = line.split(separator: " ").map(String.init)
            guard words.count >= header.count - 1, words[0].allSatisfy(\.isHexDigit), words[1].count == 4,
                  words[1].first == "r" || words[1].first == "-" else { continue }
            let name = words.dropFirst(header.count - 1).joined(separator: " ")
            theirs.insert([words[0], words[1], String(Int64(words[2], radix: 16) ?? -1), words[4], words[5], name].joined(separator: "\t"))
        }
        #expect(!theirs.isEmpty)
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs).prefix(5)); only pmap: \(theirs.subtracting(ours).prefix(5))")
    }

    /// A maps file over read_max is refused (logged, not read), and the table keeps answering.
    @Test func processMemoryMapRespectsReadMax() throws {
        let child = try DescriptorChild()
        let (db, flags, _) = try makeTablesDatabase()
        let sql = "SELECT count(*) FROM process_memory_map WHERE pid = \(child.pid)"
        let whole = try db.execute(sql)[0, 0]
        #expect(whole != .integer(0))
        try flags.set("read_max", "256")
        #expect(try db.execute(sql)[0, 0] == .integer(0))
        try flags.set("read_max", String(1 << 20))
        #expect(try db.execute(sql)[0, 0] == whole)
    }

    /// A mapped file whose name holds spaces keeps its whole name.
    @Test func processMemoryMapKeepsPathsWithSpaces() {
        let maps = Array("7f00-7f10 r--p 00001000 fe:00 42                         /tmp/a b c\n7f10-7f20 rw-p 00000000 00:00 0 \n".utf8)
        var rows = TableRows(columnCount: 9, reservingRows: 2)
        ProcessFileTables.appendMaps(pid: 1, maps, to: &rows)
        #expect(rows.count == 2)
        #expect(rows[0, 7] == .text("/tmp/a b c"))
        #expect(rows[0, 4] == .integer(4096))
        #expect(rows[0, 8] == .integer(0))
        #expect(rows[1, 7] == .text(""))
        #expect(rows[1, 8] == .integer(0))
        #expect(rows[1, 1] == .text("0x7f10"))
    }

    // MARK: iptables

    static let ruleColumns = ["chain", "target", "protocol", "src_ip", "src_mask", "dst_ip", "dst_mask", "iniface", "outiface", "src_port", "dst_port"]

    /// One `-A` line of iptables-save as the iptables table's key columns.
    static func savedRule(_ line: Substring) -> String {
        var words = line.split(separator: " ").map(String.init)[...]
        var chain = "", target = "", proto = "0", src = "0.0.0.0", smask = "0.0.0.0", dst = "0.0.0.0", dmask = "0.0.0.0"
        var inface = "all", outface = "all", sport = "", dport = ""
        var negate = ""
        func address(_ text: String) -> (String, String) {
            let parts = text.split(separator: "/")
            let bits = parts.count > 1 ? Int(parts[1]) ?? 32 : 32
            let m: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
            return (String(parts[0]), "\(m >> 24).\(m >> 16 & 255).\(m >> 8 & 255).\(m & 255)")
        }
        func range(_ text: String) -> String { text.contains(":") ? text : text + ":" + text }
        while let word = words.popFirst() {
            switch word {
            case "!": negate = "!"; continue
            case "-A": chain = words.popFirst() ?? ""
            case "-j": target = words.popFirst() ?? ""
            case "-p": proto = ["tcp": "6", "udp": "17", "icmp": "1"][words.popFirst() ?? ""] ?? "?"
            case "-s": (src, smask) = address(words.popFirst() ?? ""); src = negate + src
            case "-d": (dst, dmask) = address(words.popFirst() ?? ""); dst = negate + dst
            case "-i": inface = negate + (words.popFirst() ?? "")
            case "-o": outface = negate + (words.popFirst() ?? "")
            case "-m":
                if let module = words.popFirst(), module == "tcp" || module == "udp" { sport = "0:65535"; dport = "0:65535" }
            case "--sport": sport = range(words.popFirst() ?? "")
            case "--dport": dport = range(words.popFirst() ?? "")
            default: break
            }
            negate = ""
        }
        return [chain, target, proto, src, smask, dst, dmask, inface, outface, sport, dport].joined(separator: "\t")
    }

    /// Rules the test adds to chains of its own (x_tables, through iptables-legacy) are read
    /// back as iptables-save prints them, and every chain of the filter table with its policy.
    @Test(.enabled(if: getuid() == 0 && installed("/usr/sbin/iptables-legacy", "/usr/sbin/iptables-legacy-save")))
    func iptablesMatchesIptablesSave() async throws {
        let chain = "OSQ\(getpid())", other = "OSQ\(getpid())B"
        let tool = "/usr/sbin/iptables-legacy"
        func run(_ arguments: String) async throws { _ = try await toolOutput(tool, arguments.split(separator: " ").map(String.init)) }
        try await run("-N \(chain)")
        try await run("-N \(other)")
        do {
            try await run("-A \(chain) -p tcp --dport 1234 -j ACCEPT")
            try await run("-A \(chain) -s 10.1.2.0/24 -i lo -p udp --sport 53:54 -j DROP")
            try await run("-A \(chain) ! -d 192.168.0.1/32 -o eth+ -j RETURN")
            try await run("-A \(chain) -j \(other)")
            try await run("-A \(chain) ! -i lo -p icmp -j ACCEPT")
            try await run("-A \(other) -p tcp -j DROP")
            let saved = try await toolOutput("/usr/sbin/iptables-legacy-save", ["-t", "filter"])
            let lines = saved.split(separator: "\n")
            let theirRules = Set(lines.filter { $0.hasPrefix("-A \(chain) ") || $0.hasPrefix("-A \(other) ") }.map(Self.savedRule))
            // Every chain of every table, with its policy.
            var theirChains = Set<String>()
            var table = ""
            for line in try await toolOutput("/usr/sbin/iptables-legacy-save", []).split(separator: "\n") {
                if line.hasPrefix("*") { table = String(line.dropFirst()) }
                guard line.hasPrefix(":") else { continue }
                let words = line.dropFirst().split(separator: " ")
                theirChains.insert(table + "\t" + words[0] + "\t" + (words[1] == "-" ? "" : words[1]))
            }
            #expect(theirRules.count == 6)
            let (db, _, _) = try makeTablesDatabase()
            let ours = try rowSet(db, "SELECT * FROM iptables WHERE filter_name = 'filter' AND chain IN ('\(chain)', '\(other)') AND protocol IS NOT NULL", Self.ruleColumns)
            #expect(ours == theirRules, "only ours: \(ours.subtracting(theirRules)); only iptables-save: \(theirRules.subtracting(ours))")
            let chains = try rowSet(db, "SELECT filter_name, chain, policy FROM iptables WHERE protocol IS NULL", ["filter_name", "chain", "policy"])
            #expect(chains == theirChains)
            #expect(try rowSet(db, "SELECT iniface_mask, match FROM iptables WHERE chain = '\(chain)' AND target = 'DROP'", ["iniface_mask", "match"]) == ["FFFFFF\tyes"])
            #expect(try rowSet(db, "SELECT match, src_port FROM iptables WHERE chain = '\(chain)' AND target = '\(other)'", ["match", "src_port"]) == ["no\t"])
        } catch {
            Issue.record(error)
        }
        try await run("-F \(chain)")
        try await run("-F \(other)")
        try await run("-X \(chain)")
        try await run("-X \(other)")
    }

    /// Without the ip_tables names file (module not loaded) the table answers no rows and says why once.
    @Test func iptablesWithoutTheModuleSaysWhy() throws {
        let path = "/nonexistent/ip_tables_names"
        let table = FirewallTables.iptables(flags: Flags(), namesPath: path)
        #expect(try table.generate(QueryContext(schema: table.schema)).count == 0)
        #expect(try table.generate(QueryContext(schema: table.schema)).count == 0)
        #expect(OnceLog.shared.messages.contains("iptables: Error reading \(path) (the ip_tables module is not loaded, or no permission)"))
    }

    // MARK: services and security modules

    /// systemd is not PID 1 here: the table loads, answers no rows and says why.
    @Test(.enabled(if: !ServiceTables.systemdRuns())) func systemdUnitsWithoutSystemdSaysWhy() throws {
        let (db, _, _) = try makeTablesDatabase()
        #expect(try db.execute("SELECT * FROM systemd_units").rowCount == 0)
        #expect(try db.execute("SELECT * FROM systemd_units").rowCount == 0)
        #expect(OnceLog.shared.messages.contains(ServiceTables.noSystemdReason("systemd_units")))
    }

    @Test(.enabled(if: ServiceTables.mountPoint(ofType: "selinuxfs") == nil)) func selinuxSettingsWithoutSELinuxSaysWhy() throws {
        let (db, _, _) = try makeTablesDatabase()
        #expect(try db.execute("SELECT * FROM selinux_settings").rowCount == 0)
        #expect(OnceLog.shared.messages.contains(ServiceTables.noSELinuxReason))
    }

    /// selinuxfs's layout, written by the test and named in a mounts file as the kernel lists it.
    @Test func selinuxSettingsReadTheSelinuxfsTree() throws {
        let dir = TempDir()
        for sub in ["fs", "fs/booleans", "fs/policy_capabilities", "fs/initial_contexts", "fs/class", "fs/class/file", "fs/class/file/perms"] {
            mkdir(dir.path + "/" + sub, 0o755)
        }
        for (file, text) in [("fs/enforce", "1"), ("fs/mls", "0"), ("fs/policyvers", "33"), ("fs/booleans/httpd_can", "1 1"),
                             ("fs/booleans/ftp_home", "0 0"), ("fs/booleans/pending", "0 1"), ("fs/policy_capabilities/open_perms", "1"),
                             ("fs/initial_contexts/kernel", "system_u:system_r:kernel_t:s0"), ("fs/class/file/index", "6"),
                             ("fs/class/file/perms/read", "1"), ("fs/class/file/perms/write", "2")] {
            dir.write(file, text)
        }
        dir.write("mounts", "proc /proc proc rw 0 0\nselinuxfs \(dir.path)/fs selinuxfs rw,relatime 0 0\n")
        let table = ServiceTables.selinuxSettings(mounts: dir.path + "/mounts", flags: Flags())
        let rows = try table.generate(QueryContext(schema: table.schema))
        var out = Set<String>()
        for r in 0..<rows.count { out.insert((0..<3).map { rows[r, $0].text ?? "-" }.joined(separator: " ")) }
        #expect(out == [
            " checkreqprot -", " deny_unknown -", " enforce 1", " mls 0", " policyvers 33", " reject_unknown -",
            "booleans httpd_can on", "booleans ftp_home off", "policy_capabilities open_perms 1",
            "initial_contexts kernel system_u:system_r:kernel_t:s0", "class file/perms read", "class file/perms write",
        ])
    }

    @Test(.enabled(if: !FileIO.exists("/sys/kernel/security/apparmor/policy/profiles")))
    func apparmorProfilesWithoutAppArmorSaysWhy() throws {
        let (db, _, _) = try makeTablesDatabase()
        #expect(try db.execute("SELECT * FROM apparmor_profiles").rowCount == 0)
        #expect(OnceLog.shared.messages.contains(ServiceTables.noAppArmorReason))
    }

    /// AppArmor's securityfs layout, written by the test: nested profiles are named parent//child.
    @Test func apparmorProfilesReadTheProfileTree() throws {
        let dir = TempDir()
        for sub in ["p1", "p1/profiles", "p1/profiles/c1", "p2"] { mkdir(dir.path + "/" + sub, 0o755) }
        for (file, text) in [("p1/name", "/usr/bin/a\n"), ("p1/mode", "enforce\n"), ("p1/attach", "/usr/bin/a\n"), ("p1/sha256", "ab\n"),
                             ("p1/profiles/c1/name", "hat\n"), ("p1/profiles/c1/mode", "complain\n"), ("p1/profiles/c1/sha1", "cd\n"),
                             ("p2/name", "plain\n"), ("p2/mode", "unconfined\n")] {
            dir.write(file, text)
        }
        let table = ServiceTables.apparmorProfiles(root: dir.path, flags: Flags())
        let rows = try table.generate(QueryContext(schema: table.schema))
        var out = Set<String>()
        for r in 0..<rows.count { out.insert((0..<6).map { rows[r, $0].text ?? "-" }.joined(separator: " ")) }
        #expect(out == ["/usr/bin/a /usr/bin/a /usr/bin/a enforce - ab", "/usr/bin/a//hat hat - complain cd -", "plain plain - unconfined - -"])
    }

    /// startup_items' scripts and XDG entries are the files find(1) lists in each source
    /// directory; a .desktop entry gives its Name and Exec.
    @Test(.enabled(if: installed("/usr/bin/find"))) func startupItemsMatchTheSourceDirectories() async throws {
        let dir = TempDir()
        for sub in ["home", "home/.config", "home/.config/autostart", "home/.config/autostart-scripts", "init.d", "xdg"] {
            mkdir(dir.path + "/" + sub, 0o755)
        }
        dir.write("init.d/one", "#!/bin/sh\n")
        dir.write("init.d/two", "#!/bin/sh\n")
        dir.write("home/.config/autostart-scripts/mine.sh", "#!/bin/sh\n")
        dir.write("xdg/x.desktop", "[Desktop Entry]\nName=X Tool\nExec=/usr/bin/x --start\n")
        dir.write("home/.config/autostart/y.desktop", "[Desktop Entry]\nName=Y\nExec=env A=B y\n")
        // A FIFO among the entries is passed over: reading it would wait for a writer forever.
        #expect(mkfifo(dir.path + "/xdg/hang.desktop", 0o644) == 0)
        #expect(mkfifo(dir.path + "/init.d/hang", 0o644) == 0)
        let home = dir.path + "/home"
        let table = ServiceTables.startupItems(homes: { [home] }, scriptDirectories: [dir.path + "/init.d/"],
                                               itemDirectories: [dir.path + "/xdg/"], readMax: { 1 << 20 })
        let rows = try table.generate(QueryContext(schema: table.schema))
        var ours = Set<String>()
        for r in 0..<rows.count { ours.insert((0..<7).map { rows[r, $0].text ?? "-" }.joined(separator: "|")) }
        #expect(ours == [
            "one|\(dir.path)/init.d/one|-|Startup Item|\(dir.path)/init.d/|enabled|-",
            "two|\(dir.path)/init.d/two|-|Startup Item|\(dir.path)/init.d/|enabled|-",
            "mine.sh|\(home)/.config/autostart-scripts/mine.sh|-|Startup Item|\(home)/.config/autostart-scripts/|enabled|-",
            "X Tool|/usr/bin/x --start|-|Startup Item|\(dir.path)/xdg/|enabled|-",
            "Y|-|-|Startup Item|\(home)/.config/autostart/|enabled|-",
        ])
        // This machine's /etc/init.d, as find(1) lists it.
        let (db, _, _) = try makeTablesDatabase()
        let scripts = try rowSet(db, "SELECT path FROM startup_items WHERE source = '/etc/init.d/'", ["path"])
        let found = try await toolOutput("/usr/bin/find", ["-L", "/etc/init.d", "-mindepth", "1", "-maxdepth", "1", "-type", "f"])
        let listed: Set<String> = Set(found.split(separator: "\n").map { (line: Substring) -> String in
            "/etc/init.d/" + String(line.split(separator: "/").last ?? "")
        })
        #expect(scripts == listed)
    }

    // MARK: without root

    /// The built osqueryi, found up from this test binary's directory.
    static func osqueryi() -> String? {
        var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("osqueryi").path
            if access(candidate, X_OK) == 0 { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// As an unprivileged user (setpriv), the tables degrade without failing: no rules without
    /// CAP_NET_RAW, no descriptors or mappings of root's processes, the user's own descriptors.
    @Test(.enabled(if: getuid() == 0 && installed("/usr/bin/setpriv") && osqueryi() != nil))
    func unprivilegedQueriesDegradeWithoutFailing() async throws {
        let child = try DescriptorChild()
        func count(_ sql: String) async throws -> String {
            let output = try await toolOutput("/usr/bin/setpriv", [
                "--reuid=65534", "--regid=65534", "--clear-groups", Self.osqueryi()!, "--json", sql,
            ])
            return output.filter { $0.isNumber }
        }
        #expect(try await count("SELECT count(*) AS n FROM iptables") == "0")
        #expect(try await count("SELECT count(*) AS n FROM process_open_files WHERE pid = \(child.pid)") == "0")
        #expect(try await count("SELECT count(*) AS n FROM process_memory_map WHERE pid = \(child.pid)") == "0")
        #expect(try await count("SELECT count(*) AS n FROM process_open_pipes WHERE pid = \(child.pid)") == "0")
        #expect(try await count("SELECT count(*) > 0 AS n FROM process_open_files") == "1")
        #expect(try await count("SELECT count(*) AS n FROM startup_items WHERE source = '/etc/init.d/'") ==
                String(BoundedFile.files(in: "/etc/init.d/").count))
    }
}
