import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Services, start-up items and security modules: systemd_units, startup_items,
/// selinux_settings and apparmor_profiles.
enum ServiceTables {
    /// Whether systemd is the init system (sd_booted(3)'s test).
    static func systemdRuns(_ runDirectory: String = "/run/systemd/system") -> Bool {
        var st = stat()
        return lstat(runDirectory, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func initName() -> String {
        FileIO.readString("/proc/1/comm")?.trimmingASCIIWhitespace() ?? "unknown"
    }

    static func noSystemdReason(_ table: String) -> String {
        "\(table): systemd is not running here (PID 1 is \(initName())), so there are no systemd units"
    }

    static func systemdUnits(runDirectory: String = "/run/systemd/system") -> FunctionTable {
        table("systemd_units", [
            col("id", .text), col("description", .text), col("load_state", .text), col("active_state", .text),
            col("sub_state", .text), col("unit_file_state", .text), col("following", .text), col("object_path", .text),
            col("job_id", .bigint), col("job_type", .text), col("job_path", .text), col("fragment_path", .text),
            col("user", .text), col("source_path", .text),
        ]) { _, schema in
            if systemdRuns(runDirectory) {
                OnceLog.shared.info("systemd_units: reading units from systemd's D-Bus interface is not supported yet")
            } else {
                OnceLog.shared.info(noSystemdReason("systemd_units"))
            }
            return TableRows(schema: schema)
        }
    }

    static let startupColumns = [
        col("name", .text), col("path", .text), col("args", .text), col("type", .text), col("source", .text),
        col("status", .text), col("username", .text),
    ]

    /// osquery's sources: each home's ~/.config/autostart (XDG .desktop entries) and
    /// ~/.config/autostart-scripts, then /etc/init.d and /etc/xdg/autostart, then systemd's units.
    static func startupItems(
        homes: @escaping @Sendable () -> [String] = { homeDirectories() },
        scriptDirectories: [String] = ["/etc/init.d/"], itemDirectories: [String] = ["/etc/xdg/autostart/"],
        runDirectory: String = "/run/systemd/system", readMax: @escaping @Sendable () -> UInt64
    ) -> FunctionTable {
        table("startup_items", startupColumns, attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            let limit = readMax()
            for home in homes() {
                let base = home.hasSuffix("/") ? String(home.dropLast()) : home
                appendItems(base + "/.config/autostart/", limit: limit, to: &rows)
                appendScripts(base + "/.config/autostart-scripts/", to: &rows)
            }
            for dir in scriptDirectories { appendScripts(dir, to: &rows) }
            for dir in itemDirectories { appendItems(dir, limit: limit, to: &rows) }
            if systemdRuns(runDirectory) {
                OnceLog.shared.info("startup_items: reading systemd's units over D-Bus is not supported yet")
            } else {
                OnceLog.shared.info(noSystemdReason("startup_items"))
            }
            return rows
        }
    }

    /// Every user's home directory, each once (osquery's getHomeDirectories).
    static func homeDirectories() -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        setpwent()
        while let p = getpwent() {
            let dir = String(cString: p.pointee.pw_dir)
            if seen.insert(dir).inserted { out.append(dir) }
        }
        endpwent()
        return out
    }

    /// The user a source directory belongs to: the second component under /home.
    static func username(_ source: String) -> SQLValue {
        let parts = source.split(separator: "/")
        return parts.count > 1 && parts[0] == "home" ? .text(String(parts[1])) : .null
    }

    static func appendScripts(_ dir: String, to rows: inout TableRows) {
        for path in BoundedFile.files(in: dir) {
            rows.appendRow([
                .text(String(path.split(separator: "/").last ?? "")), .text(path), .null, "Startup Item", .text(dir),
                "enabled", username(dir),
            ])
        }
    }

    static func appendItems(_ dir: String, limit: UInt64, to rows: inout TableRows) {
        for path in BoundedFile.files(in: dir) {
            var name: SQLValue = .null, exec: SQLValue = .null
            for line in (BoundedFile.text(path, limit: limit) ?? "").split(separator: "\n") {
                // osquery keeps a value only when the line splits on '=' into exactly two words.
                if line.hasPrefix("Name=") || line.hasPrefix("Exec=") {
                    let words = osquerySplit(line, "=")
                    guard words.count == 2 else { continue }
                    if line.hasPrefix("Name=") { name = .text(words[1]) } else { exec = .text(words[1]) }
                }
            }
            rows.appendRow([name, exec, .null, "Startup Item", .text(dir), "enabled", username(dir)])
        }
    }

    /// The mount point of a filesystem of `type` in a mounts file, if any.
    static func mountPoint(ofType type: String, mounts: String = "/proc/mounts") -> String? {
        for line in Text.lines(mounts) {
            let f = Text.fields(line)
            if f.count >= 3 && f[2] == type { return String(f[1]) }
        }
        return nil
    }

    static let noSELinuxReason = "selinux_settings: no selinuxfs is mounted (SELinux is not enabled on this kernel)"

    static let selinuxRootKeys = ["checkreqprot", "deny_unknown", "enforce", "mls", "policyvers", "reject_unknown"]
    static let selinuxScopes = ["booleans", "policy_capabilities", "initial_contexts"]

    /// The files under a directory, at any depth (symbolic links not followed), sorted.
    static func filesBelow(_ dir: String, depth: Int = 8) -> [String] {
        var out: [String] = []
        for name in (FileIO.listDirectoryNames(dir) ?? []).sorted() {
            let path = dir + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                if depth > 0 { out += filesBelow(path, depth: depth - 1) }
            } else {
                out.append(path)
            }
        }
        return out
    }

    /// osquery's rows: the root keys, the files of each scope (booleans as on/off) and the
    /// permissions of each class (key class/perms, value the permission).
    static func selinuxSettings(mounts: String = "/proc/mounts", flags: Flags) -> FunctionTable {
        table("selinux_settings", [col("scope", .text), col("key", .text), col("value", .text)]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let root = mountPoint(ofType: "selinuxfs", mounts: mounts) else {
                OnceLog.shared.info(noSELinuxReason)
                return rows
            }
            let limit = flags[.readMax]
            for key in selinuxRootKeys {
                rows.appendRow(["", .text(key), BoundedFile.text(root + "/" + key, limit: limit).map { .text($0) } ?? .null])
            }
            for scope in selinuxScopes {
                for path in filesBelow(root + "/" + scope) {
                    guard let raw = BoundedFile.text(path, limit: limit) else { continue }
                    var value = raw
                    if scope == "booleans" {
                        // "current pending": only settled values are reported.
                        guard raw == "0 0" || raw == "1 1" else {
                            StatusLog.warning("Failed to retrieve SELinux key value: \(path). Error: Invalid raw value for boolean key")
                            continue
                        }
                        value = raw == "1 1" ? "on" : "off"
                    }
                    rows.appendRow([.text(scope), .text(String(path.split(separator: "/").last ?? "")), .text(value)])
                }
            }
            let classes = root + "/class"
            for path in filesBelow(classes) {
                guard let slash = path.lastIndex(of: "/") else { continue }
                let value = String(path[path.index(after: slash)...])
                guard !value.isEmpty, value != "index", path.count > classes.count + 1 else { continue }
                let key = String(path[path.index(path.startIndex, offsetBy: classes.count + 1)..<slash])
                rows.appendRow(["class", .text(key), .text(value)])
            }
            return rows
        }
    }

    static let noAppArmorReason = "apparmor_profiles: AppArmor is not enabled on this kernel (no /sys/kernel/security/apparmor/policy/profiles)"

    static func apparmorProfiles(root: String = "/sys/kernel/security/apparmor/policy/profiles", flags: Flags) -> FunctionTable {
        table("apparmor_profiles", [
            col("path", .text, .index), col("name", .text), col("attach", .text), col("mode", .text),
            col("sha1", .text, .collateNocase), col("sha256", .text, .collateNocase),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard FileIO.listDirectoryNames(root) != nil else {
                OnceLog.shared.info(noAppArmorReason)
                return rows
            }
            let limit = flags[.readMax]
            func read(_ path: String) -> String? { BoundedFile.text(path, limit: limit)?.trimmingASCIIWhitespace() }
            // Profiles nest (a hat or child profile sits under its parent's profiles/ directory);
            // the path names the chain as parent//child.
            var queue: [(parent: String, dir: String)] = []
            for name in (FileIO.listDirectoryNames(root) ?? []).sorted() { queue.append(("", root + "/" + name)) }
            var next = 0
            while next < queue.count {
                let (parent, dir) = queue[next]
                next += 1
                guard let name = read(dir + "/name") else { continue }
                let path = parent.isEmpty ? name : parent + "//" + name
                let sha256 = read(dir + "/sha256")
                rows.appendRow([
                    .text(path), .text(name), read(dir + "/attach").map { .text($0) } ?? .null,
                    read(dir + "/mode").map { .text($0) } ?? .null,
                    sha256 == nil ? (read(dir + "/sha1").map { .text($0) } ?? .null) : .null,
                    sha256.map { .text($0) } ?? .null,
                ])
                for child in (FileIO.listDirectoryNames(dir + "/profiles") ?? []).sorted() {
                    queue.append((path, dir + "/profiles/" + child))
                }
            }
            return rows
        }
    }
}
