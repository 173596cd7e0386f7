import Foundation
import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The output of an admin's tool, run on a thread of its own (blocking calls stay off the pool).
func toolOutput(_ path: String, _ arguments: [String]) async throws -> String {
    try await packageTool(path, arguments).1
}

/// Whether the admin tools a test compares with are installed here.
func installed(_ tools: String...) -> Bool { tools.allSatisfy { access($0, X_OK) == 0 } }

/// A query's rows as tab-joined text of the named columns (NULL as "").
/// The rows of `sql` in order, the first `columns` columns of each joined with "|".
func rowLines(_ db: Database, _ sql: String, columns: Int) throws -> [String] {
    let r = try db.execute(sql)
    return (0..<r.rowCount).map { row in (0..<columns).map { r[row, $0].text ?? "" }.joined(separator: "|") }
}

func rowSet(_ db: Database, _ sql: String, _ columns: [String]) throws -> Set<String> {
    let r = try db.execute(sql)
    return Set((0..<r.rowCount).map { row in
        columns.map { r[row, $0]?.text ?? "" }.joined(separator: "\t")
    })
}

extension SQLValue {
    var text: String? {
        switch self {
        case .null: nil
        case .integer(let v): String(v)
        case .double(let d): String(d)
        case .text(let s): s
        case .blob(let b): String(decoding: b, as: UTF8.self)
        }
    }
}

@Suite(.serialized) struct CatalogueTablesTests {
    static let dpkgFormat = "${Package}\\t${Version}\\t${Architecture}\\t${Status}\\t${Installed-Size}\\t${Source}\\t${Priority}\\n"
    static let debColumns = ["name", "version", "arch", "status", "size", "source", "priority"]

    /// dpkg-query's lines; libdpkg names a missing priority "unknown" where dpkg-query prints "".
    static func dpkgRows(_ output: String) -> Set<String> {
        Set(output.split(separator: "\n").map { line in
            var fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            if fields.count == 7 && fields[6].isEmpty { fields[6] = "unknown" }
            return fields.joined(separator: "\t")
        })
    }

    @Test(.enabled(if: installed("/usr/bin/dpkg-query"))) func debPackagesMatchDpkgQuery() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let ours = try rowSet(db, "SELECT * FROM deb_packages", Self.debColumns)
        let theirs = Self.dpkgRows(try await toolOutput("/usr/bin/dpkg-query", ["-W", "-f=" + Self.dpkgFormat]))
        #expect(!theirs.isEmpty)
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs).prefix(5)); only dpkg-query: \(theirs.subtracting(ours).prefix(5))")
        let revisions = try db.execute("SELECT version, revision FROM deb_packages WHERE admindir = '/var/lib/dpkg'")
        #expect(revisions.rowCount == ours.count)
        for row in 0..<revisions.rowCount {
            let version = revisions[row, 0].text ?? "", revision = revisions[row, 1].text ?? ""
            #expect(version.contains("-") ? version.hasSuffix("-" + revision) : revision.isEmpty)
        }
    }

    /// An admin directory the test writes: states libdpkg keeps or drops, epochs, multi-arch twins.
    @Test(.enabled(if: installed("/usr/bin/dpkg-query"))) func debPackagesReadTheChosenAdminDirectory() async throws {
        let dir = TempDir()
        dir.write("status", """
            Package: kept
            Status: install ok installed
            Priority: optional
            Section: utils
            Installed-Size: 12
            Maintainer: A <a@example.org>
            Architecture: amd64
            Source: kept-src (1.0-1)
            Version: 2:1.0-1+b1
            Description: one
             more lines
             .

            Package: purged
            Status: purge ok not-installed
            Architecture: amd64

            Package: leftover
            Status: deinstall ok config-files
            Architecture: all
            Version: 3
            Conffiles:
             /etc/leftover abc

            Package: twin
            Status: install ok installed
            Architecture: amd64
            Multi-Arch: same
            Version: 1-2-3

            Package: twin
            Status: install ok installed
            Architecture: i386
            Multi-Arch: same
            Version: 1-2-3

            Package: nostatus
            Architecture: all
            Version: 1

            """)
        let (db, _, _) = try makeTablesDatabase()
        let sql = "SELECT * FROM deb_packages WHERE admindir = '\(dir.path)'"
        let ours = try rowSet(db, sql, Self.debColumns)
        let theirs = Self.dpkgRows(try await toolOutput("/usr/bin/dpkg-query", ["--admindir=" + dir.path, "-W", "-f=" + Self.dpkgFormat]))
        #expect(ours == theirs)
        #expect(try rowSet(db, sql, ["name", "arch", "revision", "admindir"]) == [
            "kept\tamd64\t1+b1\t\(dir.path)", "leftover\tall\t\t\(dir.path)", "twin\tamd64\t3\t\(dir.path)", "twin\ti386\t3\t\(dir.path)",
        ])
    }

    /// A FIFO where the status file should be is refused at once (a read would wait for a
    /// writer forever), and the table keeps answering.
    @Test func debPackagesRefuseAFifoStatus() throws {
        let dir = TempDir()
        #expect(mkfifo(dir.path + "/status", 0o644) == 0)
        let (db, _, _) = try makeTablesDatabase()
        #expect(try db.execute("SELECT * FROM deb_packages WHERE admindir = '\(dir.path)'").rowCount == 0)
        #expect(try db.execute("SELECT count(*) FROM deb_packages WHERE admindir = '/var/lib/dpkg'")[0, 0] != .integer(0))
    }

    /// A status file over read_max is refused (logged, not read), and the table keeps answering.
    @Test func debPackagesRespectReadMax() throws {
        let dir = TempDir()
        var text = ""
        for i in 0..<200 { text += "Package: p\(i)\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\n" }
        dir.write("status", text)
        let (db, flags, _) = try makeTablesDatabase()
        let sql = "SELECT count(*) FROM deb_packages WHERE admindir = '\(dir.path)'"
        #expect(try db.execute(sql)[0, 0] == .integer(200))
        try flags.set("read_max", "4096")
        #expect(try db.execute(sql)[0, 0] == .integer(0))
        try flags.set("read_max", String(1 << 20))
        #expect(try db.execute(sql)[0, 0] == .integer(200))
    }

    /// deb_package_files against `dpkg-query -L`: every installed package's files, and one
    /// package (Multi-Arch: same libc6 among them) through the pushed-down constraint.
    @Test(.enabled(if: installed("/usr/bin/dpkg-query"))) func debPackageFilesMatchDpkgQuery() async throws {
        try await onOwnThread {
            let (db, _, _) = try makeTablesDatabase()
            func listed(_ packages: [String]) async throws -> Set<String> {
                let output = try await toolOutput("/usr/bin/dpkg-query", ["-L"] + packages)
                // Diversion notes ("diverted by ...") and package separators are not paths.
                return Set(output.split(separator: "\n").filter { $0.hasPrefix("/") }.map(String.init))
            }
            for package in ["coreutils", "libc6", "dpkg"] {
                let ours = try rowSet(db, "SELECT path FROM deb_package_files WHERE package = '\(package)'", ["path"])
                let theirs = try await listed([package])
                #expect(!ours.isEmpty && ours == theirs, "\(package)")
            }
            let names = try await toolOutput("/usr/bin/dpkg-query", ["-W", "-f=${binary:Package}\\n"]).split(separator: "\n").map(String.init)
            let all = try rowSet(db, "SELECT path FROM deb_package_files", ["path"])
            let everything = try await listed(names)
            #expect(all == everything)
            #expect(try db.execute("SELECT * FROM deb_package_files WHERE package = '../../../etc/passwd'").rowCount == 0)
        }
    }

    /// This process's limits against prlimit(1) asked about this process (RTTIME, which
    /// osquery does not list, aside).
    @Test(.enabled(if: installed("/usr/bin/prlimit"))) func ulimitInfoMatchesPrlimit() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let ours = try rowSet(db, "SELECT type, soft_limit, hard_limit FROM ulimit_info", ["type", "soft_limit", "hard_limit"])
        let output = try await toolOutput("/usr/bin/prlimit", ["--pid", String(getpid()), "--raw", "--noheadings", "--output", "RESOURCE,SOFT,HARD"])
        let theirs = Set(output.split(separator: "\n").map { line in
            line.split(separator: " ").map { String($0).lowercased() }.joined(separator: "\t")
        }.filter { !$0.hasPrefix("rttime\t") })
        #expect(theirs.count == 15)
        #expect(ours == theirs)
    }

    /// arp_cache against `ip -4 neigh`: the complete entries (with a link-layer address).
    @Test(.enabled(if: installed("/usr/sbin/ip"))) func arpCacheMatchesIpNeigh() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let ours = try rowSet(db, "SELECT address, mac, interface FROM arp_cache WHERE mac != '00:00:00:00:00:00'",
                              ["address", "mac", "interface"])
        let output = try await toolOutput("/usr/sbin/ip", ["-4", "neigh", "show"])
        let theirs = Set(output.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ").map(String.init)
            guard let dev = words.firstIndex(of: "dev"), let mac = words.firstIndex(of: "lladdr"), mac + 1 < words.count else { return nil }
            return [words[0], words[mac + 1], words[dev + 1]].joined(separator: "\t")
        })
        #expect(ours == theirs)
    }

    /// A segment the test creates, seen by ipcs(1) and by shared_memory alike.
    @Test(.enabled(if: installed("/usr/bin/ipcs"))) func sharedMemoryMatchesIpcs() async throws {
        let id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0o640)
        #expect(id >= 0)
        defer { shmctl(id, IPC_RMID, nil) }
        let (db, _, _) = try makeTablesDatabase()
        let ours = try rowSet(db, "SELECT shmid, permissions, size, attached FROM shared_memory", ["shmid", "permissions", "size", "attached"])
        let output = try await toolOutput("/usr/bin/ipcs", ["-m"])
        // key shmid owner perms bytes nattch status
        let theirs = Set(output.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ").map(String.init)
            guard words.count >= 6, words[0].hasPrefix("0x"), let perms = Int(words[3], radix: 8) else { return nil }
            let dest = words.count > 6 && words[6] == "dest" ? 1 : 0
            let locked = words.count > 6 && words.dropFirst(6).contains("locked") ? 2 : 0
            return [words[1], "\(dest + locked)" + String(perms, radix: 8).leftPadded(3), words[4], words[5]].joined(separator: "\t")
        })
        #expect(ours.contains { $0.hasPrefix("\(id)\t0640\t8192\t0") })
        #expect(ours == theirs)
    }

    /// A child started with a known environment (entries with `=` in the value, an empty
    /// value, none at all) is read back exactly; lsns(8) agrees on this process's namespaces.
    @Test(.enabled(if: installed("/usr/bin/lsns"))) func processEnvsAndNamespacesMatchTheProcess() async throws {
        var child: pid_t = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        Spawn.closeInheritedDescriptors(in: &actions)
        var arguments: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("60"), nil]
        var environment: [UnsafeMutablePointer<CChar>?] = [strdup("A=1"), strdup("B=x=y"), strdup("EMPTY="), strdup("NOEQUALS"), nil]
        defer { for p in arguments + environment { free(p) } }
        #expect(posix_spawn(&child, "/bin/sleep", &actions, nil, &arguments, &environment) == 0)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        // Until it has exec'd, the child's environment is still this process's.
        var ready = false
        for _ in 0..<500 where !ready {
            ready = FileIO.readString("/proc/\(child)/stat")?.contains("(sleep)") ?? false
            if !ready { usleep(10_000) }
        }
        #expect(ready)
        let (db, _, _) = try makeTablesDatabase()
        let envs = try rowSet(db, "SELECT key, value FROM process_envs WHERE pid = \(child)", ["key", "value"])
        #expect(envs == ["A\t1", "B\tx=y", "EMPTY\t", "NOEQUALS\tNOEQUALS"])
        let all = try db.execute("SELECT count(*) FROM process_envs WHERE key = 'B' AND value = 'x=y'")[0, 0]
        #expect(all != .integer(0))

        let me = getpid()
        let ns = try db.execute("SELECT * FROM process_namespaces WHERE pid = \(me)")
        #expect(ns.rowCount == 1)
        var ours = Set<String>()
        for (i, kind) in KernelStateTables.namespaceKinds.enumerated() { ours.insert(kind + "\t" + (ns[0, i + 1].text ?? "")) }
        let output = try await toolOutput("/usr/bin/lsns", ["-p", String(me), "-n", "-o", "TYPE,NS"])
        let theirs = Set(output.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ").map(String.init)
            guard words.count == 2, KernelStateTables.namespaceKinds.contains(words[0]) else { return nil }
            return words[0] + "\t" + words[1]
        })
        #expect(ours == theirs)
        #expect(try db.execute("SELECT * FROM process_namespaces WHERE pid = 999999999").rowCount == 0)
    }

    /// interface_ipv6 against the settings sysctl(8) reports for each interface and `all`.
    @Test(.enabled(if: installed("/usr/sbin/sysctl", "/usr/sbin/ip"))) func interfaceIPv6MatchesSysctl() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT interface, hop_limit, forwarding_enabled, redirect_accept, rtadv_accept FROM interface_ipv6")
        var ours: [String: [Int64]] = [:]
        for row in 0..<r.rowCount {
            ours[r[row, 0].text ?? ""] = (1..<5).map { if case .integer(let v) = r[row, $0] { v } else { -99 } }
        }
        let links = try await toolOutput("/usr/sbin/ip", ["-o", "link", "show"]).split(separator: "\n").compactMap { line in
            line.split(separator: ":").dropFirst().first.map { String($0.split(separator: "@")[0]).trimmingASCIIWhitespace() }
        }
        #expect(Set(ours.keys) == Set(links))
        func value(_ name: String) async throws -> Int64 {
            let text = try await toolOutput("/usr/sbin/sysctl", ["-n", name]).trimmingASCIIWhitespace()
            return Int64(text) ?? -1
        }
        guard FileIO.isDirectory("/proc/sys/net/ipv6") else { return }
        let allRedirects = try await value("net.ipv6.conf.all.accept_redirects")
        for link in links {
            let base = "net.ipv6.conf.\(link)."
            let forwarding = try await value(base + "forwarding"), redirects = try await value(base + "accept_redirects")
            let ra = try await value(base + "accept_ra")
            let redirect: Int64 = forwarding != 0 ? (allRedirects != 0 && redirects != 0 ? 1 : 0) : (allRedirects != 0 || redirects != 0 ? 1 : 0)
            let expected: [Int64] = [try await value(base + "hop_limit"), forwarding, redirect, ra == 2 ? 1 : (ra != 0 && forwarding == 0 ? 1 : 0)]
            #expect(ours[link] == expected, "\(link)")
        }
    }

    @Test(.enabled(if: installed("/usr/bin/getent"))) func etcProtocolsMatchGetent() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let ours = try rowSet(db, "SELECT name, number, alias FROM etc_protocols", ["name", "number", "alias"])
        let theirs = Set(try await toolOutput("/usr/bin/getent", ["protocols"]).split(separator: "\n").map { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return ([fields[0], fields[1]] + (fields.count > 2 ? [fields[2]] : [""])).joined(separator: "\t")
        })
        #expect(!theirs.isEmpty)
        #expect(ours == theirs)
        let tcp = try db.execute("SELECT number, alias, comment FROM etc_protocols WHERE name = 'tcp'")
        #expect(tcp.rowCount == 1 && tcp[0, 0] == .integer(6) && tcp[0, 1] == .text("TCP"))
    }

    @Test(.enabled(if: installed("/usr/bin/getent"))) func shadowMatchesGetent() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let columns = ["username", "last_change", "min", "max", "warning", "inactive", "expire"]
        // Without root both see nothing: the table degrades, it does not fail.
        let ours = try rowSet(db, "SELECT * FROM shadow", columns)
        let theirs = Set(try await toolOutput("/usr/bin/getent", ["shadow"]).split(separator: "\n").map { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            return ([f[0]] + f[2...7].map { $0.isEmpty ? "-1" : $0 }).joined(separator: "\t")
        })
        #expect(getuid() != 0 || !theirs.isEmpty)
        #expect(ours == theirs)
        let root = try db.execute("SELECT username, password_status FROM shadow WHERE username = 'root'")
        #expect(root.rowCount == (getuid() == 0 ? 1 : 0))
    }

    @Test func shadowPasswordStatusAndHashAlgorithm() throws {
        let dir = TempDir()
        dir.write("shadow", """
            a:$6$salt$hash:19000:0:99999:7:::
            b:!$y$j9T$salt$hash:19000::::::
            c:!!:19000:0:99999:7:::
            d::19000:0:99999:7::1:5
            e:*:19000:0:99999:7:::
            +nis::::::::

            """)
        let registry = PluginRegistry()
        registry.addTable(ConfigTables.shadow(flags: Flags(), path: dir.path + "/shadow"))
        let db = try Database(registry: registry, flags: Flags())
        let rows = try rowSet(db, "SELECT * FROM shadow", ["username", "password_status", "hash_alg", "min", "expire", "flag"])
        #expect(rows == [
            "a\tactive\t6\t0\t-1\t", "b\tlocked\t\t-1\t-1\t", "c\tnot_set\t\t0\t-1\t", "d\tempty\t\t0\t1\t5", "e\tlocked\t\t0\t-1\t",
        ])
    }

    @Test(.enabled(if: installed("/usr/sbin/sysctl"))) func systemControlsMatchSysctl() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT name, current_value FROM system_controls")
        var ours: [String: String?] = [:]
        for row in 0..<r.rowCount { ours[r[row, 0].text ?? ""] = r[row, 1].text }
        var theirs: [String: String] = [:]
        for line in try await toolOutput("/usr/sbin/sysctl", ["-a", "--deprecated"]).split(separator: "\n") {
            guard let separator = line.range(of: " = ") else { continue }
            theirs[String(line[..<separator.lowerBound])] = String(line[separator.upperBound...])
        }
        #expect(theirs.count > 100)
        let missing = Set(theirs.keys).subtracting(ours.keys)
        #expect(missing.isEmpty, "sysctl names we lack: \(missing.sorted().prefix(10))")
        // What only we list is what sysctl cannot read (write-only, or refused by the kernel).
        let extra = ours.filter { theirs[$0.key] == nil && !($0.value ?? "").isEmpty }
        #expect(extra.isEmpty, "names only we read: \(extra.keys.sorted().prefix(10))")
        for name in ["kernel.ostype", "kernel.osrelease", "kernel.pid_max", "vm.swappiness", "net.ipv4.ip_forward"] {
            let one = try db.execute("SELECT current_value, subsystem, type FROM system_controls WHERE name = '\(name)'")
            #expect(one.rowCount == 1 && one[0, 0].text == theirs[name] && one[0, 2] == .text("string"), "\(name)")
            #expect(one.rowCount == 1 && one[0, 1].text == String(name.prefix { $0 != "." }))
        }
        #expect(try db.execute("SELECT * FROM system_controls WHERE name = 'kernel/../../../etc/shadow'").rowCount == 0)
        let kernel = try rowSet(db, "SELECT name FROM system_controls WHERE subsystem = 'kernel'", ["name"])
        #expect(kernel == Set(ours.keys.filter { $0.hasPrefix("kernel.") }))
    }

    /// A drop-in under /run/sysctl.d (the test's own file) gives config_value without applying it.
    @Test(.enabled(if: getuid() == 0)) func systemControlsShowConfiguredValues() throws {
        let path = "/run/sysctl.d/zz-osquery-tables-test-\(getpid()).conf"
        _ = mkdir("/run/sysctl.d", 0o755)
        let text = "# test\nvm.swappiness = 17\n; other\nkernel.osquery_no_such = 1\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
        defer { unlink(path) }
        let (db, _, _) = try makeTablesDatabase()
        let r = try db.execute("SELECT config_value FROM system_controls WHERE name = 'vm.swappiness'")
        #expect(r.rowCount == 1 && r[0, 0] == .text("17"))
    }

    /// crontab reads fixed paths; the test installs its own file in /etc/cron.d (a schedule
    /// that never fires: 31 February).
    @Test(.enabled(if: getuid() == 0)) func crontabReadsInstalledFiles() throws {
        let path = "/etc/cron.d/osquery-tables-test-\(getpid())"
        let text = """
            # a comment
            SHELL=/bin/sh
            MAILTO = root
            0 0 31 2 * root /bin/true  first\tjob
            @reboot root /bin/true second

            """
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
        defer { unlink(path) }
        let (db, _, _) = try makeTablesDatabase()
        let rows = try rowSet(db, "SELECT * FROM crontab WHERE path = '\(path)'",
                              ["event", "minute", "hour", "day_of_month", "month", "day_of_week", "command"])
        #expect(rows == ["\t0\t0\t31\t2\t*\troot /bin/true first job", "@reboot\t\t\t\t\t\troot /bin/true second"])
        // Every file of the cron directories is read: e2scrub_all and others present here.
        for file in BoundedFile.files(in: "/etc/cron.d") where file != path {
            let lines = (FileIO.readString(file) ?? "").split(separator: "\n").filter {
                let t = String($0).trimmingASCIIWhitespace()
                return !t.isEmpty && !t.hasPrefix("#") && t.split(whereSeparator: { $0 == " " || $0 == "\t" }).count > 5
            }
            #expect(try db.execute("SELECT * FROM crontab WHERE path = '\(file)'").rowCount == lines.count, "\(file)")
        }
    }

    /// apt_sources against `apt-cache policy`: each repository APT fetched a Release file for,
    /// with its suite, version, origin and codename.
    @Test(.enabled(if: installed("/usr/bin/apt-cache"))) func aptSourcesMatchAptCachePolicy() async throws {
        let (db, _, _) = try makeTablesDatabase()
        let ours = try rowSet(db, "SELECT * FROM apt_sources", ["base_uri", "name", "version", "maintainer", "release"])
        var theirs = Set<String>()
        var current: (uri: String, suite: String)?
        for line in try await toolOutput("/usr/bin/apt-cache", ["policy"]).split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if words.count >= 3, words[1].contains("://") {
                current = (words[1], String(words[2].split(separator: "/").first ?? ""))
            } else if words.first == "release", let (uri, suite) = current, words.count == 2 {
                var facts: [String: String] = [:]
                for pair in words[1].split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                    if kv.count == 2 { facts[kv[0]] = kv[1] }
                }
                let host = uri.split(separator: "://", maxSplits: 1).last.map(String.init) ?? ""
                theirs.insert([uri, host + " " + suite, facts["v"] ?? "", facts["o"] ?? "", facts["n"] ?? ""].joined(separator: "\t"))
                current = nil
            }
        }
        #expect(ours == theirs)
    }

    /// Source lists the test writes, in both formats, with the Release files APT would have.
    @Test func aptSourcesParseBothFormats() throws {
        let dir = TempDir()
        dir.mkdir("etc")
        dir.mkdir("etc/sources.list.d")
        dir.mkdir("lists")
        dir.write("etc/sources.list", """
            # comment
            deb http://example.org/debian/ stable main contrib # trailing
            deb-src http://example.org/debian stable main
            deb [arch=amd64 signed-by=/k.gpg] https://repo.example.com/apt stable main
            deb http://nolist.example.org/x stable main

            """)
        dir.write("etc/sources.list.d/a.sources", """
            Types: deb deb-src
            URIs: http://one.example.net/d/
            Suites: s1 s2
            Components: main

            Types: deb
            Enabled: no
            URIs: http://off.example.net/d
            Suites: s3

            """)
        dir.write("etc/sources.list.d/b.list.disabled", "deb http://ignored.example.org/x stable main\n")
        let release = "Origin: Example\nCodename: cn\nVersion: 1.2\nComponents: main contrib\nArchitectures: amd64 arm64\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n-----BEGIN PGP SIGNATURE-----\nVersion: 9\n"
        for name in ["example.org_debian_dists_stable_InRelease", "repo.example.com_apt_dists_stable_Release",
                     "one.example.net_d_dists_s1_InRelease", "one.example.net_d_dists_s2_Release", "off.example.net_d_dists_s3_Release"] {
            dir.write("lists/" + name, release)
        }
        let registry = PluginRegistry()
        registry.addTable(PackageTables.aptSources(flags: Flags(), etc: dir.path + "/etc", listsDirectory: dir.path + "/lists"))
        let db = try Database(registry: registry, flags: Flags())
        let rows = try rowSet(db, "SELECT * FROM apt_sources", ["name", "source", "base_uri", "release", "version", "maintainer", "components", "architectures"])
        let facts = "cn\t1.2\tExample\tmain contrib\tamd64 arm64"
        #expect(rows == [
            "example.org/debian stable\t\(dir.path)/etc/sources.list\thttp://example.org/debian\t\(facts)",
            "repo.example.com/apt stable\t\(dir.path)/etc/sources.list\thttps://repo.example.com/apt\t\(facts)",
            "one.example.net/d s1\t\(dir.path)/etc/sources.list.d/a.sources\thttp://one.example.net/d\t\(facts)",
            "one.example.net/d s2\t\(dir.path)/etc/sources.list.d/a.sources\thttp://one.example.net/d\t\(facts)",
        ])
    }

    /// sudoers files the test writes (sudo is not installed here): rules, continued lines,
    /// comments, both include forms, the names an includedir skips, and an include loop that
    /// stops at osquery's nesting bound.
    @Test func sudoersFollowsIncludes() throws {
        let dir = TempDir()
        dir.mkdir("sudoers.d")
        dir.write("sudoers", """
            # comment
            Defaults\tenv_reset
            root ALL=(ALL:ALL) ALL
            Cmnd_Alias SHUT = /sbin/halt, \\
            \t/sbin/reboot
            @includedir sudoers.d
            #include \(dir.path)/extra
            #includedir

            """)
        dir.write("sudoers.d/admins", "%admin ALL=(ALL) NOPASSWD: ALL\n")
        dir.write("sudoers.d/skip.bak", "skipped ALL=ALL\n")
        dir.write("sudoers.d/skip~", "skipped ALL=ALL\n")
        dir.write("extra", "@include extra\n")
        let registry = PluginRegistry()
        registry.addTable(ConfigTables.sudoers(flags: Flags(), path: dir.path + "/sudoers"))
        let db = try Database(registry: registry, flags: Flags())
        let rows = try rowLines(db, "SELECT source, header, rule_details FROM sudoers", columns: 3)
        let main = dir.path + "/sudoers", extra = dir.path + "/extra"
        #expect(Array(rows.prefix(6)) == [
            "\(main)|Defaults|env_reset",
            "\(main)|root|ALL=(ALL:ALL) ALL",
            "\(main)|Cmnd_Alias|SHUT = /sbin/halt, /sbin/reboot",
            "\(main)|@includedir|sudoers.d",
            "\(dir.path)/sudoers.d/admins|%admin|ALL=(ALL) NOPASSWD: ALL",
            "\(main)|#include|\(extra)",
        ])
        // The self-including file recurses until the bound, then the table answers.
        #expect(rows.dropFirst(6).allSatisfy { $0 == "\(extra)|@include|extra" })
        #expect(rows.count > 6 + 100 && rows.count < 6 + 200)
    }

    /// authorized_keys and known_hosts of a home directory the test writes, checked against
    /// `ssh-keygen -l` (which reads both formats).
    @Test(.enabled(if: installed("/usr/bin/ssh-keygen"))) func sshKeyFilesMatchSshKeygen() async throws {
        let dir = TempDir()
        dir.mkdir(".ssh")
        let ed = "AAAAC3NzaC1lZDI1NTE5AAAAIMOOlIL5RVLNSVr1fD9eUmdimwkNvyftO0Mu63KX3xGx"
        let ecdsa = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCZXbS3GzfOD69sNHwl7CjBmqM9IUgaAWanLtewV2crgpUAsjBWP8UNZJMqIY7nFnJuf7ONMyXqlULTKULw6YDw="
        dir.write(".ssh/authorized_keys", """
            # comment
            ssh-ed25519 \(ed) alice@example
            from="10.0.0.1",no-pty ecdsa-sha2-nistp256 \(ecdsa)
            ssh-ed25519 \(ed)   two words

            """)
        dir.write(".ssh/known_hosts", "host.example,10.0.0.2 ssh-ed25519 \(ed)\n# c\n\n[other]:2222 ecdsa-sha2-nistp256 \(ecdsa)\n")
        let home = dir.path
        let users: SSHTables.Users = { _ in [HomeUser(uid: 4242, directory: home)] }
        let registry = PluginRegistry()
        registry.addTable(SSHTables.authorizedKeys(flags: Flags(), users: users))
        registry.addTable(SSHTables.knownHosts(flags: Flags(), users: users))
        let db = try Database(registry: registry, flags: Flags())
        let keys = try rowSet(db, "SELECT * FROM authorized_keys", ["uid", "algorithm", "key", "options", "comment", "key_file"])
        let file = home + "/.ssh/authorized_keys"
        #expect(keys == [
            "4242\tssh-ed25519\t\(ed)\t\talice@example\t\(file)",
            "4242\tecdsa-sha2-nistp256\t\(ecdsa)\tfrom=\"10.0.0.1\",no-pty\t\t\(file)",
            "4242\tssh-ed25519\t\(ed)\t\ttwo words\t\(file)",
        ])
        // ssh-keygen lists one fingerprint line per key, its type in parentheses.
        let listed = try await toolOutput("/usr/bin/ssh-keygen", ["-l", "-f", file]).split(separator: "\n")
        let types = listed.compactMap { $0.split(separator: " ").last.map(String.init) }.sorted()
        #expect(types == ["(ECDSA)", "(ED25519)", "(ED25519)"])
        #expect(try db.execute("SELECT count(*) FROM authorized_keys")[0, 0] == .integer(Int64(listed.count)))
        let hosts = try rowSet(db, "SELECT * FROM known_hosts", ["uid", "key"])
        #expect(hosts == ["4242\thost.example,10.0.0.2 ssh-ed25519 \(ed)", "4242\t[other]:2222 ecdsa-sha2-nistp256 \(ecdsa)"])
        let hostKeys = try await toolOutput("/usr/bin/ssh-keygen", ["-l", "-f", home + "/.ssh/known_hosts"]).split(separator: "\n")
        #expect(hostKeys.count == hosts.count)
    }

    /// The real users' files, through getpwent: the `uid` constraint picks one user.
    @Test func sshTablesReadHomeDirectories() throws {
        let (db, _, _) = try makeTablesDatabase()
        _ = try db.execute("SELECT * FROM authorized_keys")
        let r = try db.execute("SELECT count(*) FROM known_hosts WHERE uid = 0")
        let root = FileIO.readString((String(cString: getpwuid(0).pointee.pw_dir)) + "/.ssh/known_hosts") ?? ""
        let expected = root.split(separator: "\n").filter { let t = String($0).trimmingASCIIWhitespace(); return !t.isEmpty && !t.hasPrefix("#") }.count
        #expect(r[0, 0] == .integer(Int64(expected)))
    }

    /// As osquery's usersFromContext: without a uid constraint the SSH tables and shell_history
    /// read only the querying user's files; `uid =` picks others (as `users JOIN` hands them down).
    @Test func sshTablesReadOnlyTheQueryingUserUnlessAsked() throws {
        var context = QueryContext(schema: SSHTables.authorizedKeys(flags: Flags()).schema)
        let me = try #require(ContextUsers.user(getuid()))
        #expect(ContextUsers.fromContext(context).map(\.uid) == [Int64(getuid())])
        #expect(ContextUsers.fromContext(context).map(\.directory) == [me.directory])
        context.add(Constraint(op: .equals, expr: "0"), to: "uid")
        context.add(Constraint(op: .equals, expr: "65534"), to: "uid")
        context.add(Constraint(op: .equals, expr: "not-a-uid"), to: "uid")
        #expect(ContextUsers.fromContext(context).map(\.uid).sorted() == [0, 65534])
    }

    @Test func shellHistoryReadsBashAndZshFormats() throws {
        let dir = TempDir()
        dir.write(".bash_history", "#1700000000\nls -la\n#notanumber\nplain\n\n#1700000002\n#1700000003\n")
        dir.write(".zsh_history", ": 1700000001:0;echo hi\n:  12:3;x;y\nno stamp")
        dir.mkdir(".bash_sessions")
        dir.write(".bash_sessions/A.history", "from session\n")
        dir.write(".bash_sessions/A.historynew", "ignored\n")
        let home = dir.path
        let registry = PluginRegistry()
        registry.addTable(ShellTables.shellHistory(flags: Flags(), users: { _ in [HomeUser(uid: 7, directory: home)] }))
        let db = try Database(registry: registry, flags: Flags())
        let rows = try rowLines(db, "SELECT uid, time, command, history_file FROM shell_history", columns: 4)
        #expect(rows == [
            "7|1700000000|ls -la|\(home)/.bash_history",
            "7|0|#notanumber|\(home)/.bash_history",
            "7|0|plain|\(home)/.bash_history",
            "7|0||\(home)/.bash_history",
            "7|1700000002|#1700000003|\(home)/.bash_history",
            "7|1700000001|echo hi|\(home)/.zsh_history",
            "7|12|x;y|\(home)/.zsh_history",
            "7|0|no stamp|\(home)/.zsh_history",
            "7|0|from session|\(home)/.bash_sessions/A.history",
        ])
    }

    /// suid_bin against find(1) over the same directories: every set-id regular file find
    /// reports, and besides them only links to set-id files (osquery follows those).
    @Test(.enabled(if: installed("/usr/bin/find"))) func suidBinMatchesFind() async throws {
        try await onOwnThread {
            let (db, _, _) = try makeTablesDatabase()
            let ours = try rowSet(db, "SELECT path, permissions FROM suid_bin", ["path", "permissions"])
            let directories = ShellTables.binaryDirectories.filter { FileIO.exists($0) }
            let found = try await toolOutput("/usr/bin/find", ["-H"] + directories + ["-type", "f", "-perm", "/6000", "-printf", "%p\t%m\n"])
            let theirs = Set(found.split(separator: "\n").map { line -> String in
                let parts = line.split(separator: "\t")
                let mode = Int(parts[1], radix: 8) ?? 0
                return String(parts[0]) + "\t" + (mode & 0o4000 != 0 ? "S" : "") + (mode & 0o2000 != 0 ? "G" : "")
            })
            #expect(!theirs.isEmpty)
            #expect(theirs.isSubset(of: ours))
            for extra in ours.subtracting(theirs) {
                let path = String(extra.split(separator: "\t")[0])
                var st = stat()
                #expect(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK, "\(path)")
            }
            let su = try db.execute("SELECT username, groupname FROM suid_bin WHERE path = '/usr/bin/su'")
            if FileIO.exists("/usr/bin/su") { #expect(su.rowCount == 1 && su[0, 0] == .text("root")) }
        }
    }

    @Test func sshConfigsReadUserAndSystemFiles() throws {
        let dir = TempDir()
        dir.mkdir(".ssh")
        dir.write(".ssh/config", "# c\nCompression yes\nHost Example\n  User Alice\nMatch host x\n\tPort 22\n")
        dir.write("ssh_config", "Host *\n    SendEnv LANG LC_*\n")
        let home = dir.path
        let registry = PluginRegistry()
        registry.addTable(SSHTables.sshConfigs(flags: Flags(), users: { _ in [HomeUser(uid: 9, directory: home)] },
                                               systemFile: home + "/ssh_config"))
        let db = try Database(registry: registry, flags: Flags())
        let rows = try rowLines(db, "SELECT uid, block, option, ssh_config_file FROM ssh_configs", columns: 4)
        #expect(rows == [
            "9||compression yes|\(home)/.ssh/config",
            "9|host example|user alice|\(home)/.ssh/config",
            "9|match host x|port 22|\(home)/.ssh/config",
            "0|host *|sendenv lang lc_*|\(home)/ssh_config",
        ])
    }

    /// A wtmp file the test writes with glibc's updwtmp, read back by utmpdump: logins and
    /// logouts are rows, boot records are not.
    @Test(.enabled(if: installed("/usr/bin/utmpdump"))) func lastMatchesUtmpdump() async throws {
        let dir = TempDir()
        let file = dir.path + "/wtmp"
        dir.write("wtmp", "")  // updwtmp appends to an existing file only
        func record(_ type: Int32, _ pid: Int32, _ user: String, _ line: String, _ host: String, _ time: Int32) {
            var ut = utmp()
            ut.ut_type = Int16(type)
            ut.ut_pid = pid
            func set<T>(_ field: inout T, _ text: String) {
                withUnsafeMutableBytes(of: &field) { raw in
                    for (i, b) in text.utf8.prefix(raw.count).enumerated() { raw[i] = b }
                }
            }
            set(&ut.ut_user, user)
            set(&ut.ut_line, line)
            set(&ut.ut_host, host)
            ut.ut_tv.tv_sec = time
            updwtmp(file, &ut)
        }
        record(BOOT_TIME, 0, "reboot", "~", "6.1.0", 1_699_999_000)
        record(USER_PROCESS, 1234, "alice", "pts/1", "host.example", 1_700_000_000)
        record(DEAD_PROCESS, 1234, "", "pts/1", "", 1_700_000_100)
        record(USER_PROCESS, 99, "a-user-name-of-exactly-32-bytes!", "tty2", "", 1_700_000_200)
        let registry = PluginRegistry()
        registry.addTable(ShellTables.last(flags: Flags(), path: file))
        let db = try Database(registry: registry, flags: Flags())
        let ours = try rowSet(db, "SELECT * FROM last", ["type", "pid", "username", "tty", "host"])
        var theirs = Set<String>()
        for line in try await toolOutput("/usr/bin/utmpdump", [file]).split(separator: "\n") {
            // [type] [pid] [id] [user] [line] [host] [address] [time]
            let fields = line.split(separator: "]").map { String($0.drop { $0 == " " || $0 == "[" }).trimmingASCIIWhitespace() }
            guard fields.count >= 8, let type = Int32(fields[0]), type == USER_PROCESS || type == DEAD_PROCESS else { continue }
            theirs.insert([String(type), String(Int(fields[1]) ?? -1), fields[3], fields[4], fields[5]].joined(separator: "\t"))
        }
        #expect(theirs.count == 3)
        #expect(ours == theirs)
        let times = try rowSet(db, "SELECT type_name, time FROM last", ["type_name", "time"])
        #expect(times == ["user-process\t1700000000", "dead-process\t1700000100", "user-process\t1700000200"])
        let (system, _, _) = try makeTablesDatabase()
        let wtmpRecords = try await toolOutput("/usr/bin/utmpdump", ["/var/log/wtmp"]).split(separator: "\n")
            .filter { $0.hasPrefix("[7]") || $0.hasPrefix("[8]") }.count
        #expect(try system.execute("SELECT count(*) FROM last")[0, 0] == .integer(Int64(wtmpRecords)))
    }

    /// Keys made by ssh-keygen and openssl in every format a home holds, read back by
    /// `openssl pkey` where OpenSSL reads them (osquery learns the details through OpenSSL).
    @Test(.enabled(if: installed("/usr/bin/openssl", "/usr/bin/ssh-keygen"))) func userSSHKeysMatchOpenSSL() async throws {
        let dir = TempDir()
        dir.mkdir(".ssh")
        let ssh = dir.path + "/.ssh/"
        func keygen(_ arguments: [String]) async throws {
            _ = try await toolOutput("/usr/bin/ssh-keygen", ["-q"] + arguments)
        }
        try await keygen(["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", ssh + "rsa_pem"])
        try await keygen(["-t", "ecdsa", "-b", "384", "-m", "PEM", "-N", "", "-f", ssh + "ec_pem"])
        try await keygen(["-t", "ecdsa", "-b", "256", "-m", "PKCS8", "-N", "", "-f", ssh + "ec_pkcs8"])
        try await keygen(["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "secret", "-f", ssh + "rsa_locked"])
        try await keygen(["-t", "ed25519", "-N", "", "-f", ssh + "ed_openssh"])
        try await keygen(["-t", "ed25519", "-N", "secret", "-f", ssh + "ed_openssh_locked"])
        _ = try await toolOutput("/usr/bin/openssl", ["genpkey", "-algorithm", "ed25519", "-out", ssh + "ed_pkcs8"])
        dir.write(".ssh/config", "Host x\n")
        let home = dir.path
        let registry = PluginRegistry()
        registry.addTable(SSHTables.userSSHKeys(flags: Flags(), users: { _ in [HomeUser(uid: 5, directory: home)] }))
        let db = try Database(registry: registry, flags: Flags())
        let r = try db.execute("SELECT path, encrypted, key_type, key_group_name, key_length, key_security_bits, uid FROM user_ssh_keys")
        var rows: [String: String] = [:]
        for row in 0..<r.rowCount {
            let path = r[row, 0].text ?? ""
            rows[String(path.dropFirst(ssh.count))] = (1..<7).map { r[row, $0].text ?? "" }.joined(separator: "|")
        }
        #expect(rows == [
            "rsa_pem": "0|rsa||2048|112|5", "ec_pem": "0|ec|secp384r1|384|192|5", "ec_pkcs8": "0|ec|prime256v1|256|128|5",
            "rsa_locked": "1|||-1|-1|5", "ed_openssh": "0|||-1|-1|5",
            "ed_openssh_locked": "1|||-1|-1|5", "ed_pkcs8": "0|||256|128|5",
        ])
        // OpenSSL's own reading of the keys it can read.
        for name in ["rsa_pem", "ec_pem", "ec_pkcs8"] {
            let text = try await toolOutput("/usr/bin/openssl", ["pkey", "-in", ssh + name, "-noout", "-text"])
            let fields = (rows[name] ?? "").split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            #expect(text.contains("Private-Key: (\(fields[3]) bit"), "\(name)")
            if !fields[2].isEmpty { #expect(text.contains("ASN1 OID: \(fields[2])"), "\(name)") }
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
