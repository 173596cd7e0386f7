import Foundation
import OsqueryEngine
@testable import OsqueryTables
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A tool's exit status and standard output, run on a thread of its own.
func packageTool(_ path: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> (Int32, String) {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Int32, String), any Error>) in
        let thread = Thread {
            do {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: path)
                process.arguments = arguments
                if let environment { process.environment = environment }
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = FileHandle.nullDevice
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
            } catch {
                continuation.resume(throwing: error)
            }
        }
        thread.start()
    }
}

extension TempDir {
    /// Writes a file, making its parent directories.
    func put(_ name: String, _ text: String) {
        var parent = ""
        for part in name.split(separator: "/").dropLast() {
            parent += (parent.isEmpty ? "" : "/") + part
            mkdir(parent)
        }
        write(name, text)
    }

    func link(_ name: String, to target: String) { _ = symlink(target, path + "/" + name) }
}

/// A database of only the given tables.
func packageDatabase(_ tables: [FunctionTable], flags: Flags = Flags()) throws -> Database {
    let registry = PluginRegistry()
    for t in tables { registry.addTable(t) }
    StatusLog.setSink { _, _ in }
    return try Database(registry: registry, flags: flags)
}

@Suite(.serialized) struct PackageTablesTests {
    // MARK: rpm

    static let specs = [
        ("tinypkg", """
            Name: tinypkg
            Version: 1.2
            Release: 3
            Epoch: 2
            Summary: tiny
            License: MIT
            Group: Test/Group
            Vendor: Test Vendor
            BuildArch: noarch
            %description
            tiny
            %install
            mkdir -p %{buildroot}/opt/tiny/sub
            echo hello > %{buildroot}/opt/tiny/file.txt
            cp %{buildroot}/opt/tiny/file.txt %{buildroot}/opt/tiny/setuid
            ln -s file.txt %{buildroot}/opt/tiny/link
            %files
            %attr(0640,root,root) /opt/tiny/file.txt
            %attr(4755,root,root) /opt/tiny/setuid
            /opt/tiny/link
            %dir /opt/tiny/sub
            %dir /opt/tiny
            """),
        ("other", """
            Name: other
            Version: 0.9~rc1
            Release: 1.el9
            Summary: other
            License: GPL
            BuildArch: noarch
            %description
            other
            %install
            mkdir -p %{buildroot}/usr/share/other
            head -c 5000 /dev/zero > %{buildroot}/usr/share/other/zeros
            %files
            /usr/share/other/zeros
            """),
    ]

    /// Builds the spec packages with rpmbuild and records them in a new rpm database in `dir/db`
    /// (`--justdb`: nothing is installed on this machine).
    static func makeRPMDatabase(_ dir: TempDir) async throws -> String {
        for (name, spec) in specs {
            dir.put("top/SPECS/\(name).spec", spec + "\n")
            let (status, _) = try await packageTool("/usr/bin/rpmbuild", [
                "--define", "_topdir \(dir.path)/top", "--define", "_tmppath \(dir.path)/tmp", "--quiet", "-bb", "\(dir.path)/top/SPECS/\(name).spec",
            ])
            #expect(status == 0, "rpmbuild \(name)")
        }
        let db = dir.path + "/db"
        dir.mkdir("db")
        let rpms = (FileIO.listDirectoryNames(dir.path + "/top/RPMS/noarch") ?? []).map { dir.path + "/top/RPMS/noarch/" + $0 }
        #expect(rpms.count == 2)
        let (status, _) = try await packageTool("/usr/bin/rpm", ["--dbpath", db, "-i", "--justdb", "--nodeps", "--noscripts", "--notriggers"] + rpms)
        #expect(status == 0)
        return db
    }

    @Test(.enabled(if: installed("/usr/bin/rpm", "/usr/bin/rpmbuild")))
    func rpmTablesMatchRpmQuery() async throws {
        let dir = TempDir()
        let dbpath = try await Self.makeRPMDatabase(dir)
        let db = try packageDatabase([
            PackageTables.rpmPackages(flags: Flags(), directories: [dbpath]), PackageTables.rpmPackageFiles(flags: Flags(), directories: [dbpath]),
        ])
        let columns = ["name", "version", "release", "source", "size", "sha1", "arch", "epoch", "install_time", "vendor", "package_group"]
        let ours = try rowSet(db, "SELECT * FROM rpm_packages", columns)
        let format = "%{NAME}\t%{VERSION}\t%{RELEASE}\t%{SOURCERPM}\t%{SIZE}\t%{SHA1HEADER}\t%{ARCH}\t%{EPOCH}\t%{INSTALLTIME}\t%{VENDOR}\t%{GROUP}\n"
        let (_, listed) = try await packageTool("/usr/bin/rpm", ["--dbpath", dbpath, "-qa", "--qf", format])
        // rpm prints a missing tag as "(none)"; librpm hands osquery nothing.
        let theirs = Set(listed.split(separator: "\n").map { $0.replacingOccurrences(of: "(none)", with: "") })
        #expect(theirs.count == 2)
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs)); only rpm: \(theirs.subtracting(ours))")
        #expect(try db.execute("SELECT epoch, vendor, package_group FROM rpm_packages WHERE name = 'tinypkg'")[0, 0] == .integer(2))
        #expect(try db.execute("SELECT count(*) FROM rpm_packages WHERE name = 'nope'")[0, 0] == .integer(0))
        #expect(try rowSet(db, "SELECT name FROM rpm_packages WHERE name IN ('tinypkg', 'other', 'nope')", ["name"]) == ["tinypkg", "other"])

        let fileColumns = ["package", "path", "username", "groupname", "mode", "size", "sha256"]
        let files = try rowSet(db, "SELECT * FROM rpm_package_files", fileColumns)
        let fileFormat = "[%{=NAME}\t%{FILENAMES}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEMODES:octal}\t%{FILESIZES}\t%{FILEDIGESTS}\n]"
        let (_, fileList) = try await packageTool("/usr/bin/rpm", ["--dbpath", dbpath, "-qa", "--qf", fileFormat])
        let expected = Set(fileList.split(separator: "\n").map { line -> String in
            var f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            // osquery's lsperms: the permission bits as four octal digits.
            let mode = Int(f[4], radix: 8) ?? 0
            f[4] = String(String(mode & 0o7777, radix: 8).reversed()).padding(toLength: 4, withPad: "0", startingAt: 0).reversed().map(String.init).joined()
            // librpm keeps an empty SHA-256 digest as zero bytes.
            if f[6].isEmpty { f[6] = String(repeating: "0", count: 64) }
            return f.joined(separator: "\t")
        })
        #expect(expected.count == 6)
        #expect(files == expected, "only ours: \(files.subtracting(expected)); only rpm: \(expected.subtracting(files))")
        let (_, tinyFiles) = try await packageTool("/usr/bin/rpm", ["--dbpath", dbpath, "-ql", "tinypkg"])
        #expect(try rowSet(db, "SELECT path FROM rpm_package_files WHERE package = 'tinypkg'", ["path"])
            == Set(tinyFiles.split(separator: "\n").map(String.init)))
        #expect(try rowSet(db, "SELECT mode FROM rpm_package_files WHERE path = '/opt/tiny/setuid'", ["mode"]) == ["4755"])
    }

    /// Damaged databases: garbage in the file, a FIFO in its place, a view named Packages that
    /// would compute rows without end, headers whose sizes lie. None hangs; good headers stay.
    @Test(.enabled(if: installed("/usr/bin/rpm", "/usr/bin/rpmbuild", "/usr/bin/sqlite3")))
    func rpmDatabaseHostileInputs() async throws {
        let dir = TempDir()
        let good = try await Self.makeRPMDatabase(dir)
        func count(_ directory: String) throws -> SQLValue {
            let db = try packageDatabase([PackageTables.rpmPackages(flags: Flags(), directories: [directory])])
            return try db.execute("SELECT count(*) FROM rpm_packages")[0, 0]
        }
        dir.put("garbage/rpmdb.sqlite", String(repeating: "not a database ", count: 100))
        #expect(try count(dir.path + "/garbage") == .integer(0))
        dir.mkdir("fifo")
        #expect(mkfifo(dir.path + "/fifo/rpmdb.sqlite", 0o644) == 0)
        #expect(try count(dir.path + "/fifo") == .integer(0))
        dir.mkdir("view")
        let (viewStatus, _) = try await packageTool("/usr/bin/sqlite3", [dir.path + "/view/rpmdb.sqlite",
            "CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x AS hnum, x'00' AS blob FROM c;"])
        #expect(viewStatus == 0)
        #expect(try count(dir.path + "/view") == .integer(0))
        // Headers claiming more tags or data than they hold, one whose string has no end.
        let (status, _) = try await packageTool("/usr/bin/sqlite3", [good + "/rpmdb.sqlite", """
            INSERT INTO Packages(blob) VALUES (x'00ffffff00000010'), (x'0000000100ffffff'), (x'00000001000000100000000300000006000000007fffffff00'),
            (x'0000000100000004000003e800000006000000000000000141424344');
            """])
        #expect(status == 0)
        #expect(try count(good) == .integer(2))
        let db = try packageDatabase([PackageTables.rpmPackageFiles(flags: Flags(), directories: [good])])
        #expect(try db.execute("SELECT count(*) FROM rpm_package_files")[0, 0] == .integer(6))
        // No database at all: no rows, the reason logged once.
        #expect(try count(dir.path + "/missing") == .integer(0))
        #expect(OnceLog.shared.messages.contains { $0.contains("no rpm database") })
    }

    /// The same packages in the Berkeley DB hash older rpm keeps (`Packages`), written by
    /// db_load with small pages (so headers span overflow pages), against rpm's own read-only
    /// Berkeley DB reader; then the file overwritten with garbage: no rows, no hang.
    @Test(.enabled(if: installed("/usr/bin/rpm", "/usr/bin/rpmbuild", "/usr/bin/sqlite3", "/usr/bin/db5.3_load")))
    func rpmBerkeleyDatabaseMatchesRpm() async throws {
        let dir = TempDir()
        let sqlite = try await Self.makeRPMDatabase(dir)
        let (_, blobs) = try await packageTool("/usr/bin/sqlite3", [sqlite + "/rpmdb.sqlite", "SELECT hnum, lower(hex(blob)) FROM Packages"])
        var dump = "VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=512\nHEADER=END\n 00000000\n 03000000\n"
        for line in blobs.split(separator: "\n") {
            let parts = line.split(separator: "|")
            let hnum = UInt32(parts[0])!
            let key = withUnsafeBytes(of: hnum.littleEndian) { $0.map { String(format: "%02x", $0) }.joined() }
            dump += " \(key)\n \(parts[1])\n"
        }
        dir.put("dump.txt", dump + "DATA=END\n")
        dir.mkdir("bdb")
        let (loaded, _) = try await packageTool("/usr/bin/db5.3_load", ["-f", dir.path + "/dump.txt", dir.path + "/bdb/Packages"])
        #expect(loaded == 0)
        let bdb = dir.path + "/bdb"
        let db = try packageDatabase([
            PackageTables.rpmPackages(flags: Flags(), directories: [bdb]), PackageTables.rpmPackageFiles(flags: Flags(), directories: [bdb]),
        ])
        let format = "%{NAME}\t%{VERSION}\t%{RELEASE}\t%{EPOCH}\t%{SHA1HEADER}\t%{INSTALLTIME}\n"
        let (_, listed) = try await packageTool("/usr/bin/rpm", ["--dbpath", bdb, "--define", "_db_backend bdb_ro", "-qa", "--qf", format])
        let theirs = Set(listed.split(separator: "\n").map { $0.replacingOccurrences(of: "(none)", with: "") })
        #expect(theirs.count == 2)
        #expect(try rowSet(db, "SELECT * FROM rpm_packages", ["name", "version", "release", "epoch", "sha1", "install_time"]) == theirs)
        let (_, files) = try await packageTool("/usr/bin/rpm", ["--dbpath", bdb, "--define", "_db_backend bdb_ro", "-qal"])
        #expect(try rowSet(db, "SELECT path FROM rpm_package_files", ["path"]) == Set(files.split(separator: "\n").map(String.init)))
        // Garbage over every page after the first: headers, offsets and chains all fail their checks.
        let fd = open(bdb + "/Packages", O_WRONLY)
        var st = stat()
        fstat(fd, &st)
        let garbage = [UInt8](repeating: 0x01, count: Int(st.st_size) - 512)
        _ = garbage.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 512) }
        close(fd)
        #expect(try db.execute("SELECT count(*) FROM rpm_packages")[0, 0] == .integer(0))
    }

    /// Every package table pointed at places without its source answers no rows and says why
    /// once, whatever the number of queries.
    @Test func absentSourcesAnswerNoRowsAndLogWhy() throws {
        let dir = TempDir()
        let home = dir.path
        let users: PackageTables.Users = { _ in [HomeUser(uid: 1, directory: home)] }
        let f = Flags()
        let db = try packageDatabase([
            PackageTables.rpmPackages(flags: f, directories: [home]), PackageTables.yumSources(flags: f, root: home),
            PackageTables.pythonPackages(flags: f, systemPaths: [], users: users), PackageTables.npmPackages(flags: f, systemPaths: []),
            PackageTables.portagePackages(flags: f, root: home), PackageTables.portageUse(flags: f, root: home),
            PackageTables.portageKeywords(flags: f, root: home), PackageTables.chromeExtensions(flags: f, users: users),
            PackageTables.chromeExtensionContentScripts(flags: f, users: users), PackageTables.firefoxAddons(flags: f, users: users),
            PackageTables.vscodeExtensions(flags: f, users: users), PackageTables.jetbrainsPlugins(flags: f, users: users),
        ])
        let tables = ["rpm_packages", "yum_sources", "python_packages", "npm_packages", "portage_packages", "portage_use", "portage_keywords",
                      "chrome_extensions", "chrome_extension_content_scripts", "firefox_addons", "vscode_extensions", "jetbrains_plugins"]
        for _ in 0..<2 {
            for table in tables { #expect(try db.execute("SELECT count(*) FROM \(table)")[0, 0] == .integer(0), "\(table)") }
        }
        let messages = OnceLog.shared.messages
        for table in tables {
            #expect(messages.contains { $0.hasPrefix(table + ": no ") }, "\(table) says why it has no rows")
        }
    }

    // MARK: python_packages

    static let python = "/usr/bin/python3"

    /// importlib.metadata's distributions in one site directory (directories only: osquery
    /// skips a `.egg-info` that is a file), as name, version and path.
    static func importlibRows(_ site: String) async throws -> Set<String> {
        let script = """
            import importlib.metadata as m, os, sys
            for d in m.distributions(path=[sys.argv[1]]):
                p = str(d._path)
                if os.path.isdir(p) and os.path.dirname(p) == sys.argv[1].rstrip('/'):
                    print(d.metadata['Name'], d.version, p, sep='\\t')
            """
        let (_, out) = try await packageTool(python, ["-c", script, site])
        return Set(out.split(separator: "\n").map(String.init))
    }

    /// The repository's venv (the test peers'), written by pip: `pip list` over its site directory.
    static let venvSite: String? = {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        return (FileIO.listDirectoryNames(repo + "/.venv/lib") ?? []).filter { $0.hasPrefix("python3") }.sorted().first
            .map { repo + "/.venv/lib/" + $0 + "/site-packages" }.flatMap { FileIO.isDirectory($0) ? $0 : nil }
    }()

    /// The top-level distributions of a site directory in our table (osquery also reports ones
    /// vendored deeper in the tree), as name, version and path.
    static func topLevelRows(_ db: Database, _ site: String) throws -> Set<String> {
        let r = try db.execute("SELECT name, version, path FROM python_packages WHERE directory = '\(site)'")
        return Set((0..<r.rowCount).compactMap { row -> String? in
            let path = r[row, 2].text ?? ""
            guard path.hasPrefix(site + "/"), !path.dropFirst(site.count + 1).contains("/") else { return nil }
            return [r[row, 0].text ?? "", r[row, 1].text ?? "", path].joined(separator: "\t")
        })
    }

    @Test(.enabled(if: installed(python)))
    func pythonPackagesMatchImportlibAndPip() async throws {
        let db = try packageDatabase([PackageTables.pythonPackages(flags: Flags(), users: { _ in [] })])
        let system = "/usr/lib/python3/dist-packages"
        let ours = try Self.topLevelRows(db, system)
        let theirs = try await Self.importlibRows(system)
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs).prefix(5)); only importlib: \(theirs.subtracting(ours).prefix(5))")
        // Without a directory the system's site directories are all read, this one among them.
        let all = try db.execute("SELECT count(*) FROM python_packages WHERE directory LIKE '\(system)%'")
        let direct = try db.execute("SELECT count(*) FROM python_packages WHERE directory = '\(system)'")
        #expect(all[0, 0] == direct[0, 0])
        if let site = Self.venvSite {
            let (status, listed) = try await packageTool(site.components(separatedBy: "/lib/python3")[0] + "/bin/python3",
                                                        ["-m", "pip", "list", "--path", site, "--format=freeze", "--disable-pip-version-check"])
            #expect(status == 0)
            let pip = Set(listed.split(separator: "\n").map { $0.replacingOccurrences(of: "==", with: "\t") })
            let venv = try Self.topLevelRows(db, site)
            #expect(!pip.isEmpty && Set(venv.map { $0.split(separator: "\t").prefix(2).joined(separator: "\t") }) == pip, "\(venv) vs \(pip)")
            #expect(venv == (try await Self.importlibRows(site)))
        }
    }

    /// A user's installs in the layouts pip, pyenv and pipx write, with hostile entries among
    /// them: a FIFO for METADATA, one over read_max, a symbolic link back up the tree.
    @Test(.enabled(if: installed(python)))
    func pythonPackagesReadUserTrees() async throws {
        let dir = TempDir()
        let home = dir.path
        func dist(_ site: String, _ name: String, _ version: String, extra: String = "") {
            dir.put("\(site)/\(name)-\(version).dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: \(name)\nVersion: \(version)\nSummary: the \(name)\nAuthor: A. Person\nLicense: MIT\n\(extra)\nName: ignored-after-license\n")
        }
        let local = ".local/lib/python3.11/site-packages"
        dist(local, "alpha", "1.0")
        dir.put("\(local)/crlf-3.dist-info/METADATA", "Metadata-Version: 2.1\r\nName: crlf\r\nVersion: 3\r\nLicense: BSD\r\n")
        dist(local, "beta", "2.0b1", extra: "Home-page: https://example.org")
        dir.put("\(local)/gamma.egg-info/PKG-INFO", "Metadata-Version: 1.1\nName: gamma\nVersion: 0.1\nSummary: has: a colon\n")
        dist(".pyenv/versions/3.12.1/lib/python3.12/site-packages", "delta", "4")
        dist(".local/share/pipx/venvs/black/lib/python3.11/site-packages", "black", "24.1.0")
        let sitePath = home + "/" + local
        let py = home + "/.pyenv/versions/3.12.1/lib/python3.12/site-packages/"
        let px = home + "/.local/share/pipx/venvs/black/lib/python3.11/site-packages/"
        // importlib reads before the FIFO exists (it would wait on it for ever).
        var theirs: [String: Set<String>] = [:]
        for site in [sitePath, py, px] { theirs[site] = try await Self.importlibRows(site) }
        dir.mkdir("\(local)/fifo-1.dist-info")
        #expect(mkfifo(home + "/\(local)/fifo-1.dist-info/METADATA", 0o644) == 0)
        dir.put("\(local)/huge-1.dist-info/METADATA", "Name: huge\nVersion: 1\n" + String(repeating: "x", count: 8192))
        dir.link("\(local)/loop", to: "..")
        let flags = Flags()
        try flags.set("read_max", "4096")
        let table = PackageTables.pythonPackages(flags: flags, systemPaths: [], users: { _ in [HomeUser(uid: 1234, directory: home)] })
        let db = try packageDatabase([table], flags: flags)
        let rows = try rowSet(db, "SELECT name, uid, version, summary, author, license, path, directory FROM python_packages",
                              ["name", "uid", "version", "summary", "author", "license", "path", "directory"])
        let l = home + "/.local/lib/python3.11/"
        #expect(rows == [
            "alpha\t1234\t1.0\tthe alpha\tA. Person\tMIT\t\(sitePath)/alpha-1.0.dist-info\t\(l)",
            "beta\t1234\t2.0b1\tthe beta\tA. Person\tMIT\t\(sitePath)/beta-2.0b1.dist-info\t\(l)",
            "gamma\t1234\t0.1\t\t\t\t\(sitePath)/gamma.egg-info\t\(l)",
            "crlf\t1234\t3\t\t\tBSD\t\(sitePath)/crlf-3.dist-info\t\(l)",
            "\t1234\t\t\t\t\t\(sitePath)/fifo-1.dist-info\t\(l)",
            "\t1234\t\t\t\t\t\(sitePath)/huge-1.dist-info\t\(l)",
            "delta\t1234\t4\tthe delta\tA. Person\tMIT\t\(py)delta-4.dist-info\t\(py)",
            "black\t1234\t24.1.0\tthe black\tA. Person\tMIT\t\(px)black-24.1.0.dist-info\t\(px)",
        ], "\(rows.sorted())")
        // importlib reads the same site directories to the same names and versions.
        for site in [sitePath, py, px] {
            let ours = try rowSet(db, "SELECT name, version, path FROM python_packages WHERE directory = '\(site)' AND name != '' AND name != 'huge'",
                                  ["name", "version", "path"])
            #expect(!ours.isEmpty && ours == theirs[site], "\(site)")
        }
    }

    // MARK: npm_packages

    /// A project tree in npm's layout against `npm ls`: plain, scoped and nested packages,
    /// with a link back up the tree, malformed and oversized manifests, a FIFO manifest.
    @Test(.enabled(if: installed("/usr/bin/npm")))
    func npmPackagesMatchNpmLs() async throws {
        let dir = TempDir()
        dir.put("package.json", #"{"name":"root","version":"1.0.0","dependencies":{"a":"1.0.0","@s/b":"2.0.0"}}"#)
        dir.put("node_modules/a/package.json",
                #"{"name":"a","version":"1.0.0","description":"pkg a","author":"Ann <a@example.org>","license":"MIT","homepage":"https://a.example","dependencies":{"c":"3.0.0"}}"#)
        dir.put("node_modules/a/node_modules/c/package.json", #"{"name":"c","version":"3.0.0","license":{"type":"BSD","url":"https://c.example/license"},"author":{"name":"Cee"}}"#)
        dir.put("node_modules/@s/b/package.json", #"{"name":"@s/b","version":"2.0.0","description":7,"author":{"email":"x@example.org"}}"#)
        dir.put("node_modules/.bin/ignored", "")
        let db = try packageDatabase([PackageTables.npmPackages(flags: Flags(), systemPaths: [])])
        let columns = ["name", "version", "description", "author", "license", "homepage", "path", "depth"]
        let sql = "SELECT * FROM npm_packages WHERE directory = '\(dir.path)'"
        let p = dir.path + "/node_modules/"
        #expect(try rowSet(db, sql, columns) == [
            "a\t1.0.0\tpkg a\tAnn <a@example.org>\tMIT\thttps://a.example\t\(p)a/package.json\t0",
            "@s/b\t2.0.0\t\t\t\t\t\(p)@s/b/package.json\t0",
            "c\t3.0.0\t\tCee\thttps://c.example/license\t\t\(p)a/node_modules/c/package.json\t1",
        ])
        // npm's own listing of the tree: each package's directory, name and version.
        let (status, listing) = try await packageTool("/usr/bin/npm", ["ls", "--all", "--parseable", "--long", "--prefix", dir.path],
                                                      environment: ["PATH": "/usr/bin:/bin", "HOME": dir.path])
        #expect(status == 0)
        let theirs = Set(listing.split(separator: "\n").dropFirst().map { line -> String in
            let parts = line.split(separator: ":")
            let nameVersion = parts[1]
            let at = nameVersion.lastIndex(of: "@")!
            return "\(nameVersion[..<at])\t\(nameVersion[nameVersion.index(after: at)...])\t\(parts[0])/package.json"
        })
        #expect(try rowSet(db, sql, ["name", "version", "path"]) == theirs)
        #expect(try rowSet(db, sql + " AND max_depth = 0", ["name"]) == ["a", "@s/b"])

        // Hostile entries: each still a row (osquery's), none read without bound or blocking.
        dir.link("node_modules/a/node_modules/c/node_modules", to: dir.path + "/node_modules")
        dir.put("node_modules/broken/package.json", "{not json")
        dir.put("node_modules/huge/package.json", "{\"name\":\"huge\",\"pad\":\"" + String(repeating: "x", count: 8192) + "\"}")
        dir.mkdir("node_modules/fifo")
        #expect(mkfifo(dir.path + "/node_modules/fifo/package.json", 0o644) == 0)
        let flags = Flags()
        try flags.set("read_max", "4096")
        let bounded = try packageDatabase([PackageTables.npmPackages(flags: flags, systemPaths: [])], flags: flags)
        let r = try bounded.execute("SELECT path, name, depth FROM npm_packages WHERE directory = '\(dir.path)'")
        let paths = (0..<r.rowCount).map { r[$0, 0].text ?? "" }
        #expect(Set(paths).isSuperset(of: [p + "broken/package.json", p + "huge/package.json", p + "fifo/package.json"]))
        #expect(try rowSet(bounded, "SELECT name FROM npm_packages WHERE directory = '\(dir.path)' AND name = ''", ["name"]) == [""])
        // The link leads to node_modules already walked: each package's directory is entered once.
        #expect(r.rowCount < 20)
        // A directory of thirty brace groups is taken literally rather than expanded 2^30 ways.
        let braces = String(repeating: "{a,b}", count: 30)
        #expect(try bounded.execute("SELECT count(*) FROM npm_packages WHERE directory = '/tmp/\(braces)'")[0, 0] == .integer(0))
    }

    // MARK: yum_sources

    @Test func yumSourcesReadYumConfAndRepoFiles() async throws {
        let dir = TempDir()
        dir.put("etc/yum.conf", "[main]\ngpgcheck=1\nreposdir=/etc/repos\n\n[from-conf]\nname=In yum.conf\nbaseurl=http://conf.example/\n")
        dir.put("etc/repos/base.repo", """
            # comment
            [baseos]
            name = BaseOS $releasever
            mirrorlist=https://mirrors.example/?repo=baseos
            enabled=1
            gpgcheck=1
            gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY
            ; another comment
            [appstream]
            name=AppStream
            metalink=https://mirrors.example/metalink?repo=appstream
            enabled=0
            skip_if_unavailable=False

            """)
        // Boost's INI reader refuses these whole: a continuation line, a duplicate key.
        dir.put("etc/repos/multi.repo", "[multi]\nname=Multi\nbaseurl=http://a.example/\n  http://b.example/\n")
        dir.put("etc/repos/dup.repo", "[dup]\nname=One\nname=Two\n")
        dir.put("etc/repos/ignored.conf", "[ignored]\nname=not a .repo\n")
        dir.put("etc/repos/crlf.repo", "[crlf]\r\nname=Written on Windows\r\nenabled=1\r\n")
        #expect(mkfifo(dir.path + "/etc/repos/fifo.repo", 0o644) == 0)
        let db = try packageDatabase([PackageTables.yumSources(flags: Flags(), root: dir.path)])
        let columns = ["name", "source", "baseurl", "mirrorlist", "metalink", "enabled", "gpgcheck", "gpgkey"]
        let rows = try rowSet(db, "SELECT * FROM yum_sources", columns)
        let base = dir.path + "/etc/repos/base.repo"
        #expect(rows == [
            "In yum.conf\t\(dir.path)/etc/yum.conf\thttp://conf.example/\t\t\t\t\t",
            "BaseOS $releasever\t\(base)\t\thttps://mirrors.example/?repo=baseos\t\t1\t1\tfile:///etc/pki/rpm-gpg/RPM-GPG-KEY",
            "AppStream\t\(base)\t\t\thttps://mirrors.example/metalink?repo=appstream\t0\t\t",
            "Written on Windows\t\(dir.path)/etc/repos/crlf.repo\t\t\t\t1\t\t",
        ])
        // Python's strict configparser reads the accepted file to the same sections and values.
        if installed(Self.python) {
            let script = """
                import configparser, sys
                c = configparser.ConfigParser(interpolation=None, strict=True)
                c.read(sys.argv[1])
                for s in c.sections():
                    print(s, c[s].get('name', ''), c[s].get('enabled', ''), sep='\\t')
                """
            let (_, out) = try await packageTool(Self.python, ["-c", script, base])
            #expect(Set(out.split(separator: "\n").map(String.init)) == ["baseos\tBaseOS $releasever\t1", "appstream\tAppStream\t0"])
        }
    }

    // MARK: portage

    @Test func portageTablesReadTheirFiles() throws {
        let dir = TempDir()
        dir.put("var/db/pkg/dev-lang/python-3.11.7-r1/SLOT", "3.11\n")
        dir.put("var/db/pkg/dev-lang/python-3.11.7-r1/BUILD_TIME", "1700000000\n")
        dir.put("var/db/pkg/dev-lang/python-3.11.7-r1/repository", "gentoo\n")
        dir.put("var/db/pkg/dev-lang/python-3.11.7-r1/EAPI", "8\n")
        dir.put("var/db/pkg/dev-lang/python-3.11.7-r1/SIZE", "123456\n")
        dir.put("var/db/pkg/dev-lang/python-3.11.7-r1/USE", "ssl  readline sqlite\n")
        dir.put("var/db/pkg/app-misc/foo-bar-1.0/SLOT", "0")
        dir.put("var/lib/portage/world", "# world\ndev-lang/python\n>=app-misc/other-2\n")
        dir.put("etc/portage/package.keywords", "=app-misc/foo-bar-1.0 ~amd64\n# c\ndev-lang/python #comment\n")
        dir.put("etc/portage/package.mask", ">=dev-lang/python-3.12\n=app-misc/foo-bar-1.0\n")
        dir.put("etc/portage/package.unmask", "<dev-lang/python-3.13_rc1\n")
        let db = try packageDatabase([
            PackageTables.portagePackages(flags: Flags(), root: dir.path), PackageTables.portageUse(flags: Flags(), root: dir.path),
            PackageTables.portageKeywords(flags: Flags(), root: dir.path),
        ])
        #expect(try rowSet(db, "SELECT * FROM portage_packages", ["package", "version", "slot", "build_time", "repository", "eapi", "size", "world"]) == [
            "dev-lang/python\t3.11.7-r1\t3.11\t1700000000\tgentoo\t8\t123456\t1",
            "app-misc/foo-bar\t1.0\t0\t\t\t\t\t0",
        ])
        #expect(try rowSet(db, "SELECT * FROM portage_use", ["package", "version", "use"]) == [
            "dev-lang/python\t3.11.7-r1\tssl", "dev-lang/python\t3.11.7-r1\treadline", "dev-lang/python\t3.11.7-r1\tsqlite",
        ])
        #expect(try rowSet(db, "SELECT * FROM portage_keywords", ["package", "version", "keyword", "mask", "unmask"]) == [
            "app-misc/foo-bar\t1.0\t~amd64\t1\t0",
            "dev-lang/python\t>=3.12\t\t1\t0",
            "dev-lang/python\t<3.13_rc1\t\t0\t1",
        ])
        #expect(PackageTables.portageSplit("=sys-libs/glibc-2.38-r10") == ("sys-libs/glibc", "2.38-r10"))
        #expect(PackageTables.portageSplit("nocategory-1.0") == ("nocategory-1.0", ""))
        // Without a Portage database: no rows.
        let empty = TempDir()
        let none = try packageDatabase([PackageTables.portagePackages(flags: Flags(), root: empty.path)])
        #expect(try none.execute("SELECT count(*) FROM portage_packages")[0, 0] == .integer(0))
    }
}

/// Browser and editor profiles in the layouts those programs write, under a test HOME.
@Suite(.serialized) struct BrowserExtensionTablesTests {
    static let python = "/usr/bin/python3"
    static let key = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx1dGZXh0ZW5zaW9ua2V5Zm9ydGVzdGluZ29ubHk="

    /// Chromium's extension id for a manifest key, computed by Python from its definition.
    static func chromiumID(_ key: String) async throws -> String {
        let script = "import base64,hashlib,sys;h=hashlib.sha256(base64.b64decode(sys.argv[1])).hexdigest()[:32];print(''.join(chr(97+int(c,16)) for c in h))"
        return try await packageTool(python, ["-c", script, key]).1.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(.enabled(if: installed(python, "/usr/bin/sha256sum")))
    func chromeExtensionsReadProfiles() async throws {
        let dir = TempDir()
        let home = dir.path
        let root = ".config/google-chrome"
        let id = "abcdefghijklmnopabcdefghijklmnop"
        dir.put("external/manifest.json", #"{"name":"External","version":"3"}"#)
        dir.put("\(root)/Default/Preferences", """
            {"profile":{"name":"Person 1"},"extensions":{"settings":{
              "\(id)":{"path":"\(id)/1.0_0","from_webstore":true,"state":1,"install_time":"13350000000000000"},
              "externalid":{"path":"\(home)/external","state":0}}}}
            """)
        dir.put("\(root)/Default/Secure Preferences", #"{"extensions":{"settings":{}}}"#)
        let manifest = """
            {"name":"__MSG_appName__","version":"1.0","default_locale":"en","description":"d/e \\"q\\"",
             "permissions":["tabs","storage",{"fileSystem":["write"]}],"background":{"persistent":false},"key":"\(Self.key)",
             "content_scripts":[{"matches":["https://*.example.com/*","https://b.example/*"],"js":["a.js","b.js"]},{"matches":["x"]}],
             "author":{"email":"x@example.org"}}
            """
        dir.put("\(root)/Default/Extensions/\(id)/1.0_0/manifest.json", manifest)
        dir.put("\(root)/Default/Extensions/\(id)/1.0_0/_locales/en/messages.json", #"{"appName":{"message":"My Extension"}}"#)
        dir.put("\(root)/Default/Extensions/zzz/2.0/manifest.json", #"{"Name":"Unref","version":2.0,"optional_permissions":[]}"#)
        dir.put("\(root)/Default/Extensions/bad/1/manifest.json", "{broken")
        // A profile without Secure Preferences is skipped, as osquery skips it.
        dir.put("\(root)/Profile 1/Preferences", #"{"profile":{"name":"Second"}}"#)
        dir.put("\(root)/Profile 1/Extensions/yyy/1/manifest.json", #"{"name":"Hidden","version":"1"}"#)
        let users: PackageTables.Users = { _ in [HomeUser(uid: 501, directory: home)] }
        let db = try packageDatabase([
            PackageTables.chromeExtensions(flags: Flags(), users: users), PackageTables.chromeExtensionContentScripts(flags: Flags(), users: users),
        ])
        let profile = home + "/" + root + "/Default"
        let ext = profile + "/Extensions/\(id)/1.0_0"
        let columns = ["browser_type", "uid", "name", "profile", "profile_path", "referenced_identifier", "identifier", "version",
                       "description", "default_locale", "persistent", "path", "permissions", "permissions_json",
                       "optional_permissions", "optional_permissions_json", "referenced", "from_webstore", "state",
                       "install_time", "install_timestamp", "author", "locale"]
        let expectedID = try await Self.chromiumID(Self.key)
        #expect(expectedID.count == 32)
        let rows = try rowSet(db, "SELECT \(columns.joined(separator: ", ")) FROM chrome_extensions", columns)
        #expect(rows == [
            "chrome\t501\tMy Extension\tPerson 1\t\(profile)\t\(id)\t\(expectedID)\t1.0\td/e \"q\"\ten\t0\t\(ext)\ttabs, storage, \t"
                + "[\"tabs\",\"storage\",{\"fileSystem\":[\"write\"]}]\n\t\t{}\t1\ttrue\t1\t13350000000000000\t1705526400\t\ten",
            "chrome\t501\tUnref\tPerson 1\t\(profile)\t\t\t2.0\t\t\t0\t\(profile)/Extensions/zzz/2.0\t\t{}\t\t\"\"\n\t0\t\t\t\t0\t\t",
            "chrome\t501\tExternal\tPerson 1\t\(profile)\texternalid\t\t3\t\t\t0\t\(home)/external\t\t{}\t\t{}\t1\t\t0\t\t0\t\t",
        ], "\(rows.sorted())")
        // manifest_hash is the SHA-256 of the file as sha256sum reads it; manifest_json is
        // Boost's compact form (every value a string, `/` escaped).
        let (_, sum) = try await packageTool("/usr/bin/sha256sum", [ext + "/manifest.json"])
        let hashed = try db.execute("SELECT manifest_hash, manifest_json FROM chrome_extensions WHERE path = '\(ext)'")
        #expect(hashed[0, 0].text == String(sum.prefix(64)))
        #expect(hashed[0, 1].text?.hasPrefix(#"{"name":"__MSG_appName__","version":"1.0","default_locale":"en","description":"d\/e \"q\"","#) == true)
        #expect(hashed[0, 1].text?.contains(#""background":{"persistent":"false"}"#) == true)
        #expect(try rowSet(db, "SELECT * FROM chrome_extension_content_scripts", ["browser_type", "uid", "identifier", "version", "script", "match", "path", "referenced"]) == [
            "chrome\t501\t\t1.0\ta.js\thttps://*.example.com/*\t\(ext)\t1", "chrome\t501\t\t1.0\tb.js\thttps://*.example.com/*\t\(ext)\t1",
            "chrome\t501\t\t1.0\ta.js\thttps://b.example/*\t\(ext)\t1", "chrome\t501\t\t1.0\tb.js\thttps://b.example/*\t\(ext)\t1",
        ])
        // A manifest over read_max is not read; the profile's other extensions still are.
        dir.put("\(root)/Default/Extensions/big/1/manifest.json", "{\"name\":\"" + String(repeating: "b", count: 8192) + "\",\"version\":\"1\"}")
        #expect(mkfifo(profile + "/Extensions/zzz/fifo", 0o644) == 0)
        let flags = Flags()
        try flags.set("read_max", "4096")
        let bounded = try packageDatabase([PackageTables.chromeExtensions(flags: flags, users: users)], flags: flags)
        #expect(try bounded.execute("SELECT count(*) FROM chrome_extensions")[0, 0] == .integer(3))
    }

    @Test func firefoxAddonsReadExtensionsJSON() throws {
        let dir = TempDir()
        let home = dir.path
        dir.put(".mozilla/firefox/abcd.default-release/extensions.json", """
            {"schemaVersion":35,"addons":[
             {"id":"ext@example.org","type":"extension","version":"1.2.3","defaultLocale":{"name":"Ext","creator":"Me","description":"Desc"},
              "sourceURI":"https://addons.example/ext.xpi","visible":true,"active":false,"userDisabled":true,"applyBackgroundUpdates":1,
              "location":"app-profile","path":"/x/ext.xpi"},
             {"id":"theme@x","type":"theme","visible":false,"active":true,"softDisable":"T","applyBackgroundUpdates":2,"defaultLocale":null},
             5]}
            """)
        dir.put(".mozilla/firefox/Crash Reports/extensions.json", #"{"addons":[{"id":"crash"}]}"#)
        dir.put(".config/mozilla/firefox/xdg.default/extensions.json", #"{"addons":[{"id":"xdg@x","version":"9"}]}"#)
        dir.put(".mozilla/firefox/broken.default/extensions.json", "[1,2")
        let db = try packageDatabase([PackageTables.firefoxAddons(flags: Flags(), users: { _ in [HomeUser(uid: 42, directory: home)] })])
        let columns = ["uid", "name", "identifier", "creator", "type", "version", "description", "source_url", "visible", "active",
                       "disabled", "autoupdate", "location", "path"]
        #expect(try rowSet(db, "SELECT * FROM firefox_addons", columns) == [
            "42\tExt\text@example.org\tMe\textension\t1.2.3\tDesc\thttps://addons.example/ext.xpi\t1\t0\t1\t1\tapp-profile\t/x/ext.xpi",
            "42\t\ttheme@x\t\ttheme\t\t\t\t0\t1\t1\t2\t\t",
            "42\t\txdg@x\t\t\t9\t\t\t\t\t0\t\t\t",
        ])
    }

    /// osquery's user selection: without a uid constraint only the querying user's home is read;
    /// `users JOIN … USING (uid)` hands each user's uid down. Homes come from passwd, as getent has them.
    @Test(.enabled(if: installed("/usr/bin/getent"))) func userTablesReadTheQueryingUserOrTheJoinedOnes() async throws {
        let (_, passwd) = try await packageTool("/usr/bin/getent", ["passwd", "0", "65534"])
        let homes = Dictionary(uniqueKeysWithValues: passwd.split(separator: "\n").map { line -> (Int64, String) in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            return (Int64(f[2])!, String(f[5]))
        })
        var context = QueryContext(schema: PackageTables.firefoxAddons(flags: Flags()).schema)
        #expect(ContextUsers.fromContext(context, table: "firefox_addons").map(\.uid) == [Int64(getuid())])
        context.add(Constraint(op: .equals, expr: "0"), to: "uid")
        context.add(Constraint(op: .equals, expr: "65534"), to: "uid")
        let users = ContextUsers.fromContext(context, table: "firefox_addons")
        #expect(Dictionary(uniqueKeysWithValues: users.map { ($0.uid, $0.directory) }) == homes)

        // The same selection with each home moved into a scratch tree.
        let dir = TempDir()
        let root = dir.path
        for uid in homes.keys {
            dir.put("home\(uid)/.mozilla/firefox/p.default/extensions.json", "{\"addons\":[{\"id\":\"addon-of-\(uid)\"}]}")
        }
        let registry = PluginRegistry()
        registry.addTable(UserTables.users())
        registry.addTable(PackageTables.firefoxAddons(flags: Flags(), users: { context in
            ContextUsers.fromContext(context, table: "firefox_addons").map { HomeUser(uid: $0.uid, directory: root + "/home\($0.uid)") }
        }))
        let db = try Database(registry: registry, flags: Flags())
        #expect(try rowSet(db, "SELECT uid, identifier FROM firefox_addons", ["uid", "identifier"]) == ["\(getuid())\taddon-of-\(getuid())"])
        #expect(try rowSet(db, "SELECT uid, identifier FROM users JOIN firefox_addons USING (uid) WHERE uid IN (0, 65534)", ["uid", "identifier"])
            == Set(homes.keys.map { "\($0)\taddon-of-\($0)" }))
    }

    @Test func vscodeExtensionsReadEveryEdition() throws {
        let dir = TempDir()
        let home = dir.path
        dir.put(".vscode/extensions/extensions.json", """
            [{"identifier":{"id":"ms-python.python","uuid":"u"},"version":"2024.1.0",
              "location":{"$mid":1,"path":"/h/.vscode/extensions/ms-python.python-2024.1.0","scheme":"file"},
              "metadata":{"id":"f1f59ae4","publisherId":"pid","publisherDisplayName":"Microsoft","installedTimestamp":1700000000000,"isPreReleaseVersion":false}},
             {"identifier":{"id":"no.metadata"},"location":{}},
             "not an object"]
            """)
        dir.put(".cursor-server/extensions/extensions.json", #"[{"identifier":{"id":"a.b"},"metadata":{"isPreReleaseVersion":true,"installedTimestamp":1.5},"location":{"path":"/p"}}]"#)
        dir.put(".vscode-oss/extensions/extensions.json", "{not an array}")
        let db = try packageDatabase([PackageTables.vscodeExtensions(flags: Flags(), users: { _ in [HomeUser(uid: 7, directory: home)] })])
        #expect(try rowSet(db, "SELECT * FROM vscode_extensions", ["name", "uuid", "version", "path", "publisher", "publisher_id", "installed_at", "prerelease", "uid", "vscode_edition"]) == [
            "ms-python.python\tf1f59ae4\t2024.1.0\t/h/.vscode/extensions/ms-python.python-2024.1.0\tMicrosoft\tpid\t1700000000000\t0\t7\tvscode",
            "a.b\t\t\t/p\t\t\t\t1\t7\tcursor",
        ])
    }

    /// Jars written by Python's zipfile (deflated and stored): a plugin jar of its own, a plugin
    /// directory whose lib/ holds libraries too, a corrupt jar, a FIFO, a deflate bomb.
    @Test(.enabled(if: installed(python)))
    func jetbrainsPluginsReadPluginXML() async throws {
        let dir = TempDir()
        let home = dir.path
        let ide = home + "/.local/share/JetBrains/IntelliJIdea2024.3"
        dir.put(".local/share/JetBrains/IntelliJIdea2024.3/withlib/lib/.keep", "")
        dir.put(".local/share/JetBrains/GoLand2023.1/broken.jar", "PK not really a zip")
        let script = """
            import sys, zipfile
            def jar(path, xml, method=zipfile.ZIP_DEFLATED, other=None):
                with zipfile.ZipFile(path, 'w', method) as z:
                    z.writestr('META-INF/MANIFEST.MF', 'Manifest-Version: 1.0\\n')
                    if xml is not None: z.writestr('META-INF/plugin.xml', xml)
                    if other: z.writestr('other.txt', other)
            ide = sys.argv[1]
            jar(ide + '/plain.jar', '<idea-plugin>\\n  <name>Plain</name>\\n  <vendor url="https://acme.example" email="a@acme.example">\\n    ACME\\n  </vendor>\\n  <version>1.0.2</version>\\n' + 'x' * 3000 + '</idea-plugin>')
            jar(ide + '/withlib/lib/withlib.jar', '<idea-plugin><name>WithLib</name><vendor>V</vendor><version>2</version></idea-plugin>', zipfile.ZIP_STORED)
            jar(ide + '/withlib/lib/gson-2.8.0.jar', '<idea-plugin><name>Wrong</name></idea-plugin>')
            jar(ide + '/withlib/lib/resources_en.jar', None, other='x')
            jar(ide + '/bomb.jar', '<idea-plugin><name>Bomb</name>' + ' ' * 2000000 + '</idea-plugin>')
            """
        let (status, _) = try await packageTool(Self.python, ["-c", script, ide])
        #expect(status == 0)
        #expect(mkfifo(ide + "/fifo.jar", 0o644) == 0)
        let flags = Flags()
        try flags.set("read_max", String(1 << 20))
        let db = try packageDatabase([PackageTables.jetbrainsPlugins(flags: flags, users: { _ in [HomeUser(uid: 3, directory: home)] })], flags: flags)
        #expect(try rowSet(db, "SELECT * FROM jetbrains_plugins", ["product_type", "uid", "name", "version", "vendor", "path"]) == [
            "intellij_idea\t3\tPlain\t1.0.2\t\n    ACME\n  \t\(ide)/plain.jar",
            "intellij_idea\t3\tWithLib\t2\tV\t\(ide)/withlib",
        ])
        // The bomb is read once read_max allows its size.
        try flags.set("read_max", String(4 << 20))
        #expect(try db.execute("SELECT count(*) FROM jetbrains_plugins WHERE name = 'Bomb'")[0, 0] == .integer(1))
        #expect(PackageTables.likelyPluginJarsFirst("kotlin", ["/l/resources_en.jar", "/l/gson-2.8.0.jar", "/l/all-open.jar", "/l/kotlin-plugin.jar", "/l/a.jar"])
            == ["/l/kotlin-plugin.jar", "/l/a.jar", "/l/all-open.jar", "/l/gson-2.8.0.jar", "/l/resources_en.jar"])
    }
}
