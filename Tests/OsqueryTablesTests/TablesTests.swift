import Foundation
import OsqueryEngine
import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One database with every built-in table, private flags and registry.
func makeTablesDatabase() throws -> (Database, Flags, PluginRegistry) {
    let flags = Flags()
    let registry = PluginRegistry()
    BuiltinTables.register(into: registry, flags: flags)
    StatusLog.setSink { _, _ in }
    return (try Database(registry: registry, flags: flags), flags, registry)
}

func readText(_ path: String) -> String { FileIO.readString(path) ?? "" }

/// A scratch directory removed at the end of a test.
final class TempDir {
    let path: String
    init() {
        var template = Array("/tmp/osq-tables-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }
    deinit {
        var all: [String] = []
        collect(path, &all)
        for p in all.reversed() { if rmdir(p) != 0 { unlink(p) } }
    }
    private func collect(_ p: String, _ out: inout [String]) {
        out.append(p)
        var st = stat()
        guard lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return }
        for n in FileIO.listDirectory(p) ?? [] { collect(p + "/" + String(decoding: n, as: UTF8.self), &out) }
    }
    func write(_ name: String, _ text: String) {
        let fd = open(path + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o640)
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
    }
    func mkdir(_ name: String) { _ = Glibc.mkdir(path + "/" + name, 0o755) }
}

@Suite(.serialized) struct BuiltinTableShapeTests {
    /// Tables that may legitimately be empty on a given machine, with the
    /// independent count they must then match.
    static func expectedMinimum(_ table: String) -> Int {
        switch table {
        case "kernel_modules":
            return Text.lineCount("/proc/modules")
        case "logged_in_users":
            return FileIO.exists("/var/run/utmp") ? 0 : 0
        case "process_open_sockets", "listening_ports", "dns_resolvers", "etc_hosts", "etc_services", "routes",
             "crontab", "shadow", "sudoers", "authorized_keys", "known_hosts", "shell_history", "last", "ssh_configs", "user_ssh_keys", "arp_cache", "shared_memory",
             // Services and security modules a machine or container may lack.
             "process_open_pipes", "iptables", "startup_items", "systemd_units", "selinux_settings", "apparmor_profiles":
            return 0
        // Hardware and kernel features a machine or container may lack.
        case "kernel_keys", "memory_map", "block_devices", "pci_devices", "usb_devices",
             "smbios_tables", "platform_info", "memory_devices", "cpu_info", "memory_arrays", "memory_array_mapped_addresses",
             "memory_device_mapped_addresses", "memory_error_info", "oem_strings", "acpi_tables", "cpuid", "md_personalities":
            return 0
        // System tables (firmware, RAID, remote endpoints) a machine may lack or not reach.
        case "certificates", "extended_attributes", "augeas", "curl_certificate", "prometheus_metrics", "ec2_instance_metadata",
             "ec2_instance_tags", "azure_instance_metadata", "azure_instance_tags", "ycloud_instance_metadata", "md_devices", "md_drives",
             "disk_encryption", "secureboot", "secureboot_certificates", "msr", "intel_me_info":
            return 0
        // Asked about a device that does not exist (the sleuthkit tables need one named).
        case "device_partitions", "device_file", "device_hash":
            return 0
        // Package managers, browsers and editors a machine may lack (package tables).
        case "rpm_packages", "rpm_package_files", "yum_sources", "python_packages", "npm_packages", "portage_packages",
             "portage_use", "portage_keywords", "chrome_extensions", "chrome_extension_content_scripts", "firefox_addons",
             "vscode_extensions", "jetbrains_plugins":
            return 0
        // A Docker or LXD daemon a machine may not run.
        case _ where table.hasPrefix("docker_") || table.hasPrefix("lxd_"):
            return 0
        default:
            return 1
        }
    }

    @Test func everyTableReturnsRowsWithDeclaredColumnsAndTypes() async throws {
        try await onOwnThread {
            let (db, flags, registry) = try makeTablesDatabase()
            // The cloud tables ask a closed loopback port, never the link-local metadata address.
            try flags.set("cloud_metadata_address", "127.0.0.1:1")
            for table in BuiltinTables.all(registry: registry, flags: flags) {
                let schema = table.schema
                var sql = "SELECT * FROM \(schema.name)"
                if ["file", "hash", "extended_attributes", "magic"].contains(schema.name) { sql += " WHERE path = '/etc/passwd'" }
                if schema.name == "curl" { sql += " WHERE url = 'http://127.0.0.1:1/'" }
                if schema.name == "device_partitions" { sql += " WHERE device = '/nonexistent'" }
                if ["device_file", "device_hash"].contains(schema.name) { sql += " WHERE device = '/nonexistent' AND partition = '0' AND inode = 2" }
                if schema.name == "curl_certificate" { sql += " WHERE hostname = '127.0.0.1:1'" }
                if ["docker_container_processes", "docker_container_stats", "docker_container_fs_changes"].contains(schema.name) { sql += " WHERE id = '0'" }
                if ["lxd_instance_config", "lxd_instance_devices"].contains(schema.name) { sql += " WHERE name = 'none'" }
                let r = try db.execute(sql)
                let visible = schema.columns.filter { !$0.options.contains(.hidden) }
                #expect(r.columns == visible.map(\.name), "\(schema.name) columns")
                let minimum = Self.expectedMinimum(schema.name)
                #expect(r.rowCount >= minimum, "\(schema.name) returned \(r.rowCount) rows")
                for row in 0..<r.rowCount {
                    for (c, column) in visible.enumerated() {
                        let v = r[row, c]
                        switch (column.type, v) {
                        case (_, .null): break
                        case (.text, .text), (.text, .blob): break
                        case (.integer, .integer), (.bigint, .integer), (.unsignedBigint, .integer): break
                        case (.double, .double), (.double, .integer): break
                        default: Issue.record("\(schema.name).\(column.name) declared \(column.type.rawValue) got \(v)")
                        }
                    }
                }
                // Declared types reach SQLite for getQueryColumns.
                let types = try db.queryColumns("SELECT * FROM \(schema.name)")
                #expect(types.map(\.type) == visible.map(\.type.rawValue), "\(schema.name) decltypes")
            }
        }
    }

    @Test func schemaIsOsqueryCreateTable() throws {
        let (_, flags, registry) = try makeTablesDatabase()
        let users = try #require(BuiltinTables.all(registry: registry, flags: flags).first { $0.schema.name == "users" })
        #expect(users.schema.createStatement == "CREATE TABLE users(`uid` BIGINT, `gid` BIGINT, `uid_signed` BIGINT, `gid_signed` BIGINT, `username` TEXT, `description` TEXT, `directory` TEXT, `shell` TEXT, `uuid` TEXT COLLATE NOCASE, `type` TEXT HIDDEN, `is_hidden` INTEGER HIDDEN, `pid_with_namespace` INTEGER HIDDEN, `include_remote` INTEGER HIDDEN, PRIMARY KEY (`uid`, `username`, `uuid`, `pid_with_namespace`, `include_remote`)) WITHOUT ROWID;")
    }
}

extension Text {
    static func lineCount(_ path: String) -> Int {
        readText(path).split(separator: "\n").count
    }
}

enum Text {}

@Suite(.serialized) struct BuiltinTableContentTests {
    @Test func processesSeesThisProcess() throws {
        let (db, _, _) = try makeTablesDatabase()
        let me = getpid()
        let r = try db.execute("SELECT pid, parent, uid, euid, name, cmdline, state, threads, start_time, resident_size, path, on_disk FROM processes WHERE pid = \(me)")
        #expect(r.rowCount == 1)
        #expect(r[0, "parent"] == .integer(Int64(getppid())))
        #expect(r[0, "uid"] == .integer(Int64(getuid())))
        #expect(r[0, "euid"] == .integer(Int64(geteuid())))
        let stat = readText("/proc/\(me)/stat")
        let comm = stat.split(separator: "(", maxSplits: 1)[1].split(separator: ")")[0]
        #expect(r[0, "name"] == .text(String(comm)))
        let cmdline = readText("/proc/\(me)/cmdline").split(separator: "\0").joined(separator: " ")
        #expect(r[0, "cmdline"] == .text(cmdline))
        if case .integer(let threads) = r[0, "threads"] { #expect(threads >= 1) } else { Issue.record("threads") }
        if case .integer(let rss) = r[0, "resident_size"] { #expect(rss > 0) } else { Issue.record("rss") }
        let exe = FileIO.readLink("/proc/self/exe").map { String(decoding: $0, as: UTF8.self) }
        #expect(r[0, "path"] == .text(exe ?? ""))
        #expect(r[0, "on_disk"] == .integer(1))
    }

    @Test func processesInListAndCountMatchProc() throws {
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT pid FROM processes WHERE pid IN (1, \(getpid()), 999999999) ORDER BY pid")
        #expect(r.rows == [[1], [.integer(Int64(getpid()))]])
        // Other tests start and end processes meanwhile: a few tries, one close match suffices.
        var seen: [(table: Int, proc: Int)] = []
        for _ in 0..<5 {
            let all = try db.execute("SELECT count(*) FROM processes")
            let procCount = (FileIO.listDirectoryNames("/proc") ?? []).filter { Int($0) != nil }.count
            guard case .integer(let n) = all[0, 0] else { break }
            seen.append((Int(n), procCount))
            if abs(Int(n) - procCount) <= 5 { break }
        }
        #expect(seen.contains { abs($0.table - $0.proc) <= 5 }, "processes vs /proc: \(seen)")
    }

    @Test func usersGroupsAndMembership() throws {
        let (db, _, _) = try makeTablesDatabase()
        #expect(try db.execute("SELECT username, directory FROM users WHERE uid = 0").rows == [["root", "/root"]])
        #expect(try db.execute("SELECT groupname FROM groups WHERE gid = 0").rows == [["root"]])
        let passwdLines = readText("/etc/passwd").split(separator: "\n").filter { !$0.hasPrefix("#") }.count
        let users = try db.execute("SELECT count(*) FROM users")
        #expect(users[0, 0] == .integer(Int64(passwdLines)))
        let joined = try db.execute("SELECT g.groupname FROM users u JOIN user_groups ug USING (uid) JOIN groups g ON g.gid = ug.gid WHERE u.username = 'root'")
        #expect(joined.rows.contains(["root"]))
    }

    @Test func fileTableResolvesPathsDirectoriesAndLikePatterns() throws {
        let dir = TempDir()
        dir.write("a.txt", "hello")
        dir.write("b.log", "")
        dir.mkdir("sub")
        dir.write("sub/c.txt", "abc")
        _ = symlink(dir.path + "/a.txt", dir.path + "/link")
        let (db, _, _) = try makeTablesDatabase()
        let exact = try db.execute("SELECT filename, directory, size, mode, type, symlink FROM file WHERE path = '\(dir.path)/a.txt'")
        #expect(exact.rows == [["a.txt", .text(dir.path), 5, "0640", "regular", 0]])
        let link = try db.execute("SELECT type, symlink, symlink_target_path FROM file WHERE path = '\(dir.path)/link'")
        #expect(link.rows == [["regular", 1, .text(dir.path + "/a.txt")]])
        let like = try db.execute("SELECT filename FROM file WHERE path LIKE '\(dir.path)/%.txt' ORDER BY 1")
        #expect(like.rows == [["a.txt"]])
        let recursive = try db.execute("SELECT path FROM file WHERE path LIKE '\(dir.path)/%%' ORDER BY 1")
        #expect(recursive.rows.map { $0[0] } == ["a.txt", "b.log", "link", "sub", "sub/c.txt"].map { .text(dir.path + "/" + $0) })
        let inDirectory = try db.execute("SELECT filename, type FROM file WHERE directory = '\(dir.path)' ORDER BY 1")
        #expect(inDirectory.rows == [["a.txt", "regular"], ["b.log", "regular"], ["link", "regular"], ["sub", "directory"]])
        // A trailing slash is kept in `directory`, not in `path` (osquery's hardware-monitoring
        // pack asks `directory = '/dev/'`); `hash` lists the same rows.
        let slashed = try db.execute("SELECT filename, directory, path FROM file WHERE directory = '\(dir.path)/' ORDER BY 1")
        #expect(slashed.rows.map { $0[0] } == ["a.txt", "b.log", "link", "sub"])
        #expect(slashed.rows.allSatisfy { $0[1] == .text(dir.path + "/") })
        #expect(slashed.rows.first?[2] == .text(dir.path + "/a.txt"))
        let hashed = try db.execute("SELECT count(*) FROM hash WHERE directory = '\(dir.path)/'")
        #expect(hashed.rows == [[.integer(3)]])  // the three files; a directory has no hash row
        let missing = try db.execute("SELECT * FROM file WHERE path = '\(dir.path)/nope'")
        #expect(missing.rowCount == 0)
    }

    @Test func nonUTF8FileNamesArePreserved() throws {
        let dir = TempDir()
        let name: [UInt8] = [0x61, 0xff, 0x62]
        let path = Array(dir.path.utf8) + [0x2f] + name + [0]
        let fd = path.withUnsafeBufferPointer { $0.baseAddress!.withMemoryRebound(to: CChar.self, capacity: path.count) { open($0, O_WRONLY | O_CREAT, 0o600) } }
        #expect(fd >= 0)
        close(fd)
        let (db, _, _) = try makeTablesDatabase()
        let listed = try db.execute("SELECT hex(filename), hex(path) FROM file WHERE directory = '\(dir.path)'")
        let hexPath = (Array(dir.path.utf8) + [0x2f] + name).map { b -> String in
            let h = String(b, radix: 16, uppercase: true)
            return h.count == 1 ? "0" + h : h
        }.joined()
        #expect(listed.rows == [["61FF62", .text(hexPath)]])
        // The exact bytes also work as an = constraint.
        let exact = try db.execute("SELECT count(*) FROM file WHERE path = CAST(x'\(hexPath)' AS TEXT)")
        #expect(exact.rows == [[1]])
    }

    @Test func hashTableAndJoinWithFile() throws {
        let dir = TempDir()
        dir.write("abc", "abc")
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT md5, sha1, sha256 FROM hash WHERE path = '\(dir.path)/abc'")
        #expect(r.rows == [[
            "900150983cd24fb0d6963f7d28e17f72", "a9993e364706816aba3e25717850c26c9cd0d89d",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ]])
        let joined = try db.execute("SELECT f.filename, h.md5 FROM file f JOIN hash h USING (path) WHERE f.directory = '\(dir.path)'")
        #expect(joined.rows == [["abc", "900150983cd24fb0d6963f7d28e17f72"]])
        // Directories are not hashed.
        #expect(try db.execute("SELECT count(*) FROM hash WHERE path = '\(dir.path)'").rows == [[0]])
    }

    @Test func systemFactsMatchTheMachine() throws {
        let (db, _, _) = try makeTablesDatabase()
        let info = try db.execute("SELECT cpu_logical_cores, physical_memory, cpu_type FROM system_info")
        #expect(info[0, 0] == .integer(Int64(sysconf(Int32(_SC_NPROCESSORS_CONF)))))
        #expect(info[0, 1] == .integer(Int64(sysconf(Int32(_SC_PHYS_PAGES))) * Int64(sysconf(Int32(_SC_PAGESIZE)))))
        var u = utsname()
        uname(&u)
        let machine = withUnsafeBytes(of: u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #expect(info[0, 2] == .text(machine))

        let idLine = readText("/etc/os-release").split(separator: "\n").first { $0.hasPrefix("ID=") }
        let id = idLine.map { String($0.dropFirst(3)).replacingQuotes() } ?? ""
        #expect(try db.execute("SELECT platform, arch FROM os_version").rows == [[.text(id), .text(machine)]])

        let memTotal = readText("/proc/meminfo").split(separator: "\n").first { $0.hasPrefix("MemTotal:") }!
        let kb = Int64(memTotal.split(separator: " ")[1])!
        #expect(try db.execute("SELECT memory_total FROM memory_info").rows == [[.integer(kb * 1024)]])

        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #expect(try db.execute("SELECT version FROM kernel_info").rows == [[.text(release)]])

        let up = try db.execute("SELECT total_seconds, days * 86400 + hours * 3600 + minutes * 60 + seconds FROM uptime")
        #expect(up[0, 0] == up[0, 1])
        #expect(try db.execute("SELECT period FROM load_average").rows == [["1m"], ["5m"], ["15m"]])
        let cores = readText("/proc/stat").split(separator: "\n").filter { $0.hasPrefix("cpu") && !$0.hasPrefix("cpu ") }.count
        #expect(try db.execute("SELECT count(*) FROM cpu_time").rows == [[.integer(Int64(cores))]])
    }

    @Test func timeIsNowInUTC() throws {
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT unix_time, timezone, datetime, date_time, iso_8601 FROM time")
        guard case .integer(let t) = r[0, 0] else { Issue.record("unix_time"); return }
        #expect(abs(t - Int64(Glibc.time(nil))) < 60)
        #expect(r[0, 1] == "UTC")
        #expect(r[0, 2] == r[0, 3], "date_time aliases datetime")
        #expect(r[0, 2] == r[0, 4])
    }

    @Test func utilityTablesReflectFlagsRegistryAndExtensions() throws {
        let (db, flags, registry) = try makeTablesDatabase()
        try flags.set("logger_path", "/tmp/custom-logs")
        let f = try db.execute("SELECT type, default_value, value, shell_only FROM osquery_flags WHERE name = 'logger_path'")
        #expect(f.rows == [["string", "/var/log/osquery/", "/tmp/custom-logs", 0]])
        #expect(try db.execute("SELECT shell_only FROM osquery_flags WHERE name = 'json'").rows == [[1]])
        let tables = try db.execute("SELECT name FROM osquery_registry WHERE registry = 'table' ORDER BY name")
        #expect(tables.rows.map { $0[0] } == registry.tableNames().map { .text($0) })
        #expect(try db.execute("SELECT uuid, name, type, sdk_version FROM osquery_extensions").rows == [[0, "core", "core", "0.0.0"]])
        registry.addExtension(ExtensionInfo(uuid: 7, name: "ext", version: "1.0", sdkVersion: "5.0", minSdkVersion: "4.0", path: "/tmp/s.em.7"))
        #expect(try db.execute("SELECT name, sdk_version, type FROM osquery_extensions WHERE uuid = 7").rows == [["ext", "4.0", "extension"]])
        let info = try db.execute("SELECT pid, version, platform_mask, watcher FROM osquery_info")
        #expect(info.rows == [[.integer(Int64(getpid())), .text(OsqueryVersion.version), 9, -1]])
    }

    @Test func fileBasedTablesMatchTheirSources() throws {
        let (db, _, _) = try makeTablesDatabase()
        let hostsLines = readText("/etc/hosts").split(separator: "\n").filter {
            let t = $0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            return t.split(whereSeparator: { $0 == " " || $0 == "\t" }).count >= 2
        }.count
        #expect(try db.execute("SELECT count(*) FROM etc_hosts").rows == [[.integer(Int64(hostsLines))]])
        #expect(try db.execute("SELECT count(*) FROM hosts").rows == [[.integer(Int64(hostsLines))]], "hosts is an alias view")
        if FileIO.exists("/etc/services") {
            let ssh = try db.execute("SELECT port, protocol FROM etc_services WHERE name = 'ssh' ORDER BY protocol")
            #expect(ssh.rows.first == [22, "tcp"])
        }
        let mountLines = Text.lineCount("/proc/mounts")
        #expect(try db.execute("SELECT count(*) FROM mounts").rows == [[.integer(Int64(mountLines))]])
        #expect(try db.execute("SELECT count(*) FROM mounts WHERE path = '/'").rows == [[1]])
        let ifaces = (FileIO.listDirectoryNames("/sys/class/net") ?? []).count
        #expect(try db.execute("SELECT count(*) FROM interface_details").rows == [[.integer(Int64(ifaces))]])
        #expect(try db.execute("SELECT count(*) FROM interface_addresses WHERE address = '127.0.0.1' AND interface = 'lo'").rows == [[1]])
        let routeLines = Text.lineCount("/proc/net/route") - 1 + Text.lineCount("/proc/net/ipv6_route")
        #expect(try db.execute("SELECT count(*) FROM routes").rows == [[.integer(Int64(routeLines))]])
    }

    @Test func socketsOfThisProcessAreFound() throws {
        // Open a listening TCP socket and find it through process_open_sockets and listening_ports.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0)
        #expect(listen(fd, 1) == 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int64(UInt16(bigEndian: addr.sin_port))
        let (db, _, _) = try makeTablesDatabase()
        let open = try db.execute("SELECT fd, state, local_address FROM process_open_sockets WHERE pid = \(getpid()) AND local_port = \(port)")
        #expect(open.rows == [[.integer(Int64(fd)), "LISTEN", "127.0.0.1"]])
        let listening = try db.execute("SELECT pid, protocol, address FROM listening_ports WHERE port = \(port)")
        #expect(listening.rows == [[.integer(Int64(getpid())), 6, "127.0.0.1"]])
    }
}

extension String {
    func replacingQuotes() -> String { String(self.filter { $0 != "\"" }) }
}
