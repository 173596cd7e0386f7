import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Tables over system configuration: etc_protocols, shadow, system_controls, crontab, sudoers,
/// ulimit_info.
enum ConfigTables {
    static func etcProtocols(flags: Flags, path: String = "/etc/protocols") -> FunctionTable {
        table("etc_protocols", [col("name", .text), col("number", .integer), col("alias", .text), col("comment", .text)],
              attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            guard let content = BoundedFile.text(path, limit: flags[.readMax]) else {
                StatusLog.info("Error reading \(path)")
                return rows
            }
            for line in osquerySplit(content, "\n") where !line.hasPrefix("#") {
                // name number alias... # comment (a comment's own `#`s are kept as " # ")
                let parts = osquerySplit(line, "#")
                let fields = osquerySplit(parts[0])
                guard fields.count >= 2 else { continue }
                rows.append(.text(fields[0]))
                rows.append(Int32(fields[1]).map { .integer(Int64($0)) } ?? .null)
                rows.append(fields.count > 2 ? .text(fields[2]) : .null)
                rows.append(parts.count > 1 ? .text(parts.dropFirst().joined(separator: " # ")) : .null)
            }
            return rows
        }
    }

    /// /etc/shadow, read as glibc's `files` database reads it (osquery walks `getspent`).
    static func shadow(flags: Flags, path: String = "/etc/shadow") -> FunctionTable {
        table("shadow", [
            col("password_status", .text), col("hash_alg", .text), col("last_change", .bigint), col("min", .bigint),
            col("max", .bigint), col("warning", .bigint), col("inactive", .bigint), col("expire", .bigint),
            col("flag", .bigint), col("username", .text, [.index, .optimized]),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let wanted = Set(context.equalities(for: "username"))
            guard let content = BoundedFile.text(path, limit: flags[.readMax]) else {
                StatusLog.info("Cannot read \(path)")
                return rows
            }
            for line in content.split(separator: "\n") {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                // NIS compat entries (+/-) and malformed lines are skipped, as glibc's parser does.
                guard fields.count == 9, let first = fields[0].first, first != "+", first != "-" else { continue }
                let name = String(fields[0])
                if !wanted.isEmpty && !wanted.contains(name) { continue }
                let password = fields[1]
                let status: String
                if password == "!!" {
                    status = "not_set"
                } else if let c = password.first, c == "!" || c == "*" || c == "x" {
                    status = "locked"
                } else if password.isEmpty {
                    status = "empty"
                } else {
                    status = "active"
                }
                rows.append(.text(status))
                rows.append(hashAlgorithm(password).map { .text($0) } ?? .null)
                // glibc gives -1 for an empty number; an empty flag is ~0UL, which osquery cannot
                // store in a BIGINT (NULL).
                for field in fields[2...7] { rows.append(.integer(field.isEmpty ? -1 : Int64(field) ?? -1)) }
                rows.append(fields[8].isEmpty ? .null : Int64(fields[8]).map { .integer($0) } ?? .null)
                rows.append(.text(name))
            }
            return rows
        }
    }

    /// The `x` of a hash `$x$...` (osquery's `^\$(\w+)\$`).
    static func hashAlgorithm(_ password: Substring) -> String? {
        guard password.first == "$" else { return nil }
        let rest = password.dropFirst()
        let word = rest.prefix { $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) }
        guard !word.isEmpty, rest.dropFirst(word.count).first == "$" else { return nil }
        return String(word)
    }

    static let sysctlRoot = "/proc/sys/"
    static let sysctlConfigFiles = ["/etc/sysctl.conf"]
    static let sysctlConfigDirectories = [
        "/run/sysctl.d", "/etc/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d",
    ]

    static func systemControls(flags: Flags) -> FunctionTable {
        table("system_controls", [
            col("name", .text, .index), col("oid", .text, .additional), col("subsystem", .text, .additional),
            col("current_value", .text), col("config_value", .text), col("type", .text), col("field_name", .text, .hidden),
        ]) { context, schema in
            let readMax = flags[.readMax]
            var config: [String: String] = [:]
            var configPaths = sysctlConfigFiles
            for directory in sysctlConfigDirectories {
                configPaths += BoundedFile.files(in: directory).filter { $0.hasSuffix(".conf") }
            }
            for path in configPaths {
                guard let content = BoundedFile.text(path, limit: readMax) else { continue }
                for line in osquerySplit(content, "\n") where !line.hasPrefix("#") && !line.hasPrefix(";") {
                    let detail = osquerySplit(line, "=")
                    if detail.count == 2 { config[detail[0]] = detail[1] }
                }
            }
            var rows = TableRows(schema: schema)
            func leaf(_ path: String) {
                let name = String(path.dropFirst(sysctlRoot.count)).replacingSlashes()
                rows.append(.text(name))
                rows.append(.null)
                rows.append(.text(String(name.prefix { $0 != "." })))
                if access(path, R_OK) == 0 {
                    let content = BoundedFile.text(path, limit: readMax) ?? ""
                    rows.append(.text(content.trimmingASCIIWhitespace()))
                } else {
                    rows.append(.null)
                }
                rows.append(config[name].map { .text($0) } ?? .null)
                rows.append("string")
                rows.append(.null)
            }
            func walk(_ path: String, depth: Int) {
                var st = stat()
                guard lstat(path, &st) == 0 else { return }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    // /proc/sys has no links and is shallow; the depth bound is a guard only.
                    guard depth < 16 else { return }
                    let names = (FileIO.listDirectoryNames(path) ?? []).sorted()
                    var files: [String] = []
                    for name in names {
                        let child = path + "/" + name
                        if FileIO.isDirectory(child) { walk(child, depth: depth + 1) } else { files.append(child) }
                    }
                    for file in files { leaf(file) }
                } else if (st.st_mode & S_IFMT) == S_IFREG {
                    leaf(path)
                }
            }
            let names = context.equalities(for: "name")
            if !names.isEmpty {
                // A name is a path below /proc/sys with `.` for `/`; one that could leave it is no sysctl.
                for name in names where !name.contains("/") && !name.isEmpty {
                    walk(sysctlRoot + name.replacingDots(), depth: 0)
                }
            } else if context.hasConstraint("oid", op: .equals) {
                // Linux has no numeric sysctl interface any more (osquery's sysctl(2) call fails).
                return rows
            } else {
                let subsystems = Set(context.equalities(for: "subsystem"))
                for name in (FileIO.listDirectoryNames(String(sysctlRoot.dropLast())) ?? []).sorted()
                where subsystems.isEmpty || subsystems.contains(name) {
                    let path = sysctlRoot + name
                    if FileIO.isDirectory(path) { walk(path, depth: 0) }
                }
            }
            return rows
        }
    }

    static let cronFiles = ["/etc/crontab"]
    static let cronDirectories = ["/etc/cron.d/", "/var/at/tabs/", "/var/spool/cron/", "/var/spool/cron/crontabs/"]

    static func crontab(flags: Flags) -> FunctionTable {
        table("crontab", [
            col("event", .text), col("minute", .text), col("hour", .text), col("day_of_month", .text), col("month", .text),
            col("day_of_week", .text), col("command", .text), col("path", .text), pidWithNamespace,
        ], attributes: .cacheable) { _, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            var paths = cronFiles
            for directory in cronDirectories { paths += BoundedFile.files(in: directory) }
            for path in paths where access(path, R_OK) == 0 {
                guard let content = BoundedFile.text(path, limit: readMax) else {
                    StatusLog.warning("Cannot read \(path)")
                    continue
                }
                for line in osquerySplit(content, "\n") where !line.hasPrefix("#") {
                    appendCronLine(line, path: path, to: &rows)
                }
            }
            return rows
        }
    }

    /// One crontab line as osquery reads it: five time fields or an `@event`, then the command
    /// (in /etc/crontab and /etc/cron.d, the user field stays part of the command, as in osquery).
    /// A line without a command (a variable assignment) gives no row.
    static func appendCronLine(_ line: String, path: String, to rows: inout TableRows) {
        let tokens = osquerySplit(line)
        var fields: [String?] = [nil, nil, nil, nil, nil, nil]
        var command: [String] = []
        var index = 0
        for token in tokens {
            if index == 0 && token.hasPrefix("@") {
                fields[0] = token
                index = 5
            } else if index < 5 {
                fields[index + 1] = token
                index += 1
            } else {
                command.append(token)
            }
        }
        guard !command.isEmpty else { return }
        for field in fields { rows.append(field.map { .text($0) } ?? .null) }
        rows.append(.text(command.joined(separator: " ")))
        rows.append(.text(path))
        rows.append(.integer(0))
    }
}

extension ConfigTables {
    /// osquery's resource names (its std::map order) for the limits Linux has, with Linux's
    /// resource numbers (glibc's RLIMIT_* values; not all are visible to Swift).
    static let resourceLimits: [(String, UInt32)] = [
        ("as", 9), ("core", 4), ("cpu", 0), ("data", 2), ("fsize", 1), ("locks", 10), ("memlock", 8), ("msgqueue", 12),
        ("nice", 13), ("nofile", 7), ("nproc", 6), ("rss", 5), ("rtprio", 14), ("sigpending", 11), ("stack", 3),
    ]

    /// The limits of this process.
    static func ulimitInfo() -> FunctionTable {
        table("ulimit_info", [col("type", .text), col("soft_limit", .text), col("hard_limit", .text)]) { _, schema in
            var rows = TableRows(schema: schema)
            for (name, resource) in resourceLimits {
                var limit = rlimit()
                guard getrlimit(__rlimit_resource_t(resource), &limit) == 0 else {
                    StatusLog.info("Failed to get limit for \(name): \(String(cString: strerror(errno)))")
                    continue
                }
                rows.append(.text(name))
                // RLIM_INFINITY is all ones (Swift cannot import the macro's -1).
                rows.append(.text(limit.rlim_cur == rlim_t.max ? "unlimited" : String(limit.rlim_cur)))
                rows.append(.text(limit.rlim_max == rlim_t.max ? "unlimited" : String(limit.rlim_max)))
            }
            return rows
        }
    }

    static func sudoers(flags: Flags, path: String = "/etc/sudoers") -> FunctionTable {
        table("sudoers", [col("source", .text), col("header", .text), col("rule_details", .text)]) { _, schema in
            var reader = SudoersReader(readMax: flags[.readMax])
            if access(path, R_OK) == 0 { reader.read(path, level: 1) }
            var rows = TableRows(schema: schema, reservingRows: reader.rows.count)
            for row in reader.rows {
                rows.append(.text(row.source))
                rows.append(.text(row.header))
                rows.append(.text(row.details))
            }
            return rows
        }
    }
}

/// sudoers files as osquery reads them: one row per rule (continued lines joined), and the
/// files that `#include`/`@include` and `#includedir`/`@includedir` name, at most 128 deep.
struct SudoersReader {
    struct Row {
        var source: String
        var header: String
        var details: String
    }

    static let maxNesting = 128
    let readMax: UInt64
    var rows: [Row] = []

    init(readMax: UInt64) { self.readMax = readMax }

    static func isSudoSpace(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\u{0B}" }

    static func trimmed<S: StringProtocol>(_ s: S) -> String {
        var t = Substring(s)
        while let f = t.first, isSudoSpace(f) { t = t.dropFirst() }
        while let l = t.last, isSudoSpace(l) { t = t.dropLast() }
        return String(t)
    }

    mutating func read(_ file: String, level: Int) {
        var level = level
        if level > Self.maxNesting {
            StatusLog.info("sudoers file recursion maximum reached")
            return
        }
        guard let content = BoundedFile.text(file, limit: readMax) else {
            StatusLog.info("couldn't read sudoers file: \(file)")
            return
        }
        var continued = false
        for raw in osquerySplit(content, "\n") {
            let line = Self.trimmed(raw)
            if line.isEmpty { continue }
            if continued, !rows.isEmpty {
                continued = line.hasSuffix("\\")
                if rows[rows.count - 1].details.isEmpty {
                    rows[rows.count - 1].header.removeLast()
                } else {
                    rows[rows.count - 1].details.removeLast()
                }
                rows[rows.count - 1].details += line
                continue
            }
            let headerEnd = line.firstIndex(where: Self.isSudoSpace) ?? line.endIndex
            let header = String(line[..<headerEnd])
            let isInclude = header == "#include" || header == "@include"
            let isIncludeDirectory = header == "#includedir" || header == "@includedir"
            if line.hasPrefix("#") && !isInclude && !isIncludeDirectory { continue }
            var details = Self.trimmed(line[headerEnd...])
            if details.isEmpty && (isInclude || isIncludeDirectory) { continue }
            if !isInclude && !isIncludeDirectory && line.hasSuffix("\\") { continued = true }
            rows.append(Row(source: file, header: header, details: details))
            if isInclude || isIncludeDirectory, !details.hasPrefix("/") {
                let parent = file.lastIndex(of: "/").map { String(file[..<$0]) } ?? "."
                details = parent + "/" + details
            }
            if isIncludeDirectory {
                guard FileIO.isDirectory(details) else {
                    StatusLog.info("Could not list includedir: \(details)")
                    continue
                }
                // sudo skips names with a dot or ending in `~` (editor and package backups).
                for included in BoundedFile.files(in: details) {
                    let base = included.split(separator: "/").last.map(String.init) ?? ""
                    if base.isEmpty || base.contains(".") || base.hasSuffix("~") { continue }
                    level += 1
                    read(included, level: level)
                }
            }
            if isInclude {
                level += 1
                read(details, level: level)
            }
        }
    }
}

extension String {
    fileprivate func replacingSlashes() -> String { String(map { $0 == "/" ? "." : $0 }) }
    fileprivate func replacingDots() -> String { String(map { $0 == "." ? "/" : $0 }) }
}
