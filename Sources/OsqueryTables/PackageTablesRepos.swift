import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// yum_sources (yum.conf and the `.repo` files of its reposdir) and the Portage tables
/// (portage_packages, portage_use from /var/db/pkg; portage_keywords from /etc/portage).
extension PackageTables {
    static func yumSources(flags: Flags, root: String = "") -> FunctionTable {
        table("yum_sources", [
            col("name", .text), col("source", .text), col("baseurl", .text), col("mirrorlist", .text), col("metalink", .text),
            col("enabled", .text), col("gpgcheck", .text), col("gpgkey", .text), pidWithNamespace,
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let conf = root + "/etc/yum.conf"
            var reposDirectory = root + "/etc/yum.repos.d"
            func add(_ source: String) -> [INISection]? {
                guard let text = PackageFS.text(source, flags: flags) else {
                    OnceLog.shared.info("yum_sources: File \(source) cannot be read")
                    return nil
                }
                guard let sections = INIFile.parse(text) else {
                    StatusLog.info("File \(source) either cannot be read or cannot be parsed as ini")
                    return nil
                }
                for section in sections where section.name != "main" {
                    var fields: [String: String] = [:]
                    for (key, value) in section.values {
                        if ["baseurl", "enabled", "gpgcheck", "name", "gpgkey", "mirrorlist", "metalink"].contains(key) { fields[key] = value }
                    }
                    rows.append(fields["name"].map { .text($0) } ?? .null)
                    rows.append(.text(source))
                    for key in ["baseurl", "mirrorlist", "metalink", "enabled", "gpgcheck", "gpgkey"] {
                        rows.append(fields[key].map { .text($0) } ?? .null)
                    }
                    rows.append(.integer(0))
                }
                return sections
            }
            if FileIO.exists(conf), let sections = add(conf),
               let main = sections.first(where: { $0.name == "main" }), let dir = main.values.first(where: { $0.0 == "reposdir" }) {
                // yum.conf's reposdir is a path on the host; a test root keeps it inside.
                reposDirectory = root + dir.1
            }
            let repos = PackageFS.glob(reposDirectory + "/%.repo").filter { !$0.hasSuffix("/") }
            if repos.isEmpty && !FileIO.exists(conf) { OnceLog.shared.info("yum_sources: no \(conf) and no .repo file in \(reposDirectory)") }
            for source in repos { _ = add(source) }
            return rows
        }
    }
}

/// One `[section]` of an INI file and its `key = value` lines in order.
struct INISection {
    var name: String
    var values: [(String, String)]
}

/// Boost.PropertyTree's INI reader, which osquery's yum_sources uses: `;` and `#` start
/// comment lines; every other line is a `[section]` or `key=value` (both trimmed); a line
/// without `=`, an unmatched `[`, a duplicate section or a duplicate key in one section
/// makes the whole file unreadable. Keys before any section are sections of their own
/// without values (as they appear when osquery walks the tree).
enum INIFile {
    static func parse(_ text: String) -> [INISection]? {
        var sections: [INISection] = []
        var names = Set<String>()
        var current: Int?
        var keys = Set<String>()
        // By scalars: a `\r\n` line end is one Character, and Boost trims the `\r`.
        for raw in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(Substring(raw)).trimmingASCIIWhitespace()
            if line.isEmpty || line.hasPrefix(";") || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count >= 2 else { return nil }
                let name = String(line.dropFirst().dropLast()).trimmingASCIIWhitespace()
                guard names.insert(name).inserted else { return nil }
                sections.append(INISection(name: name, values: []))
                current = sections.count - 1
                keys = []
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { return nil }
            let key = String(line[..<equals]).trimmingASCIIWhitespace()
            let value = String(line[line.index(after: equals)...]).trimmingASCIIWhitespace()
            guard !key.isEmpty else { return nil }
            if let current {
                guard keys.insert(key).inserted else { return nil }
                sections[current].values.append((key, value))
            } else {
                guard names.insert(key).inserted else { return nil }
                sections.append(INISection(name: key, values: []))
            }
        }
        return sections
    }
}

extension PackageTables {
    /// osquery's `portageSplitPackageVersion`: `[<>=]cat/name-version` into the atom and its
    /// version (a leading `=` alone is dropped; `-r1` revisions stay with the version).
    static func portageSplit(_ atom: String) -> (package: String, version: String) {
        var s = Array(atom.utf8)
        if s.last == UInt8(ascii: "/") { s.removeLast() }
        var version: [UInt8] = []
        while let first = s.first, first == UInt8(ascii: ">") || first == UInt8(ascii: "<") || first == UInt8(ascii: "=") {
            if !(version.isEmpty && first == UInt8(ascii: "=")) { version.append(first) }
            s.removeFirst()
        }
        let divider = s.firstIndex(of: UInt8(ascii: "/"))
        func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
        func lastHyphen(atOrBefore limit: Int) -> Int? {
            guard !s.isEmpty else { return nil }
            return s[...min(limit, s.count - 1)].lastIndex(of: UInt8(ascii: "-"))
        }
        func splits(_ at: Int?) -> Bool {
            guard let at, let divider, at > divider, at < s.count - 1, isDigit(s[at + 1]) else { return false }
            version += s[(at + 1)...]
            s.removeSubrange(at...)
            return true
        }
        let last = lastHyphen(atOrBefore: s.count - 1)
        if !splits(last) {
            // std::string's `pos - 1` from npos or 0 searches the whole string again.
            let limit = last.map { $0 == 0 ? s.count - 1 : $0 - 1 } ?? s.count - 1
            _ = splits(lastHyphen(atOrBefore: limit))
        }
        return (String(decoding: s, as: UTF8.self), String(decoding: version, as: UTF8.self))
    }

    /// The installed packages' directories, `<root>/var/db/pkg/<category>/<name-version>/`.
    static func portagePackageDirectories(_ root: String) -> [String]? {
        let base = root + "/var/db/pkg"
        guard FileIO.isDirectory(base) else { return nil }
        return PackageFS.glob(base + "/*/*").filter { $0.hasSuffix("/") }
    }

    static func trimmedFile(_ path: String, flags: Flags) -> String? {
        PackageFS.text(path, flags: flags)?.trimmingASCIIWhitespace()
    }

    static func portagePackages(flags: Flags, root: String = "") -> FunctionTable {
        table("portage_packages", [
            col("package", .text), col("version", .text, .collateVersion), col("slot", .text), col("build_time", .bigint),
            col("repository", .text), col("eapi", .bigint), col("size", .bigint), col("world", .integer),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let directories = portagePackageDirectories(root), let worldText = PackageFS.text(root + "/var/lib/portage/world", flags: flags) else {
                OnceLog.shared.info("portage_packages: no Portage database (\(root)/var/db/pkg and \(root)/var/lib/portage/world)")
                return rows
            }
            var world = Set<String>()
            for line in osquerySplit(worldText, "\n") {
                guard let atom = osquerySplit(line).first, !atom.hasPrefix("#") else { continue }
                world.insert(portageSplit(atom).package)
            }
            let prefix = (root + "/var/db/pkg/").utf8.count
            for directory in directories {
                let (package, version) = portageSplit(String(decoding: directory.utf8.dropFirst(prefix), as: UTF8.self))
                rows.append(.text(package))
                rows.append(.text(version))
                rows.append(trimmedFile(directory + "/SLOT", flags: flags).map { .text($0) } ?? .null)
                for (name, text) in [("BUILD_TIME", false), ("repository", true), ("EAPI", false), ("SIZE", false)] {
                    let value = trimmedFile(directory + "/" + name, flags: flags)
                    rows.append(value.map { text ? .text($0) : (Int64($0).map { .integer($0) } ?? .null) } ?? .null)
                }
                rows.append(.integer(world.contains(package) ? 1 : 0))
            }
            return rows
        }
    }

    static func portageUse(flags: Flags, root: String = "") -> FunctionTable {
        table("portage_use", [col("package", .text), col("version", .text, .collateVersion), col("use", .text)]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let directories = portagePackageDirectories(root) else {
                OnceLog.shared.info("portage_use: no Portage database (\(root)/var/db/pkg)")
                return rows
            }
            let prefix = (root + "/var/db/pkg/").utf8.count
            for directory in directories {
                guard let use = trimmedFile(directory + "/USE", flags: flags), !use.isEmpty else { continue }
                let (package, version) = portageSplit(String(decoding: directory.utf8.dropFirst(prefix), as: UTF8.self))
                for flag in osquerySplit(use, " ") {
                    rows.append(.text(package))
                    rows.append(.text(version))
                    rows.append(.text(flag))
                }
            }
            return rows
        }
    }

    static func portageKeywords(flags: Flags, root: String = "") -> FunctionTable {
        table("portage_keywords", [
            col("package", .text), col("version", .text, .collateVersion), col("keyword", .text), col("mask", .integer),
            col("unmask", .integer),
        ]) { _, schema in
            struct Entry { var package: String, version: String, keyword = "", mask = 0, unmask = 0 }
            var entries: [String: Entry] = [:]
            func lines(_ name: String) -> [[String]] {
                let text = PackageFS.text(root + "/etc/portage/" + name, flags: flags) ?? ""
                return osquerySplit(text, "\n").map { osquerySplit($0) }.filter { !$0.isEmpty && !$0[0].hasPrefix("#") }
            }
            if !["package.keywords", "package.mask", "package.unmask"].contains(where: { FileIO.exists(root + "/etc/portage/" + $0) }) {
                OnceLog.shared.info("portage_keywords: no \(root)/etc/portage/package.keywords, package.mask or package.unmask")
            }
            for line in lines("package.keywords") {
                let (package, version) = portageSplit(line[0])
                let keyword = line.count > 1 ? line[1] : ""
                // A commented-out keyword drops the line; the first line of an atom wins.
                if !keyword.hasPrefix("#") && entries[line[0]] == nil {
                    entries[line[0]] = Entry(package: package, version: version, keyword: keyword)
                }
            }
            for (file, isMask) in [("package.mask", true), ("package.unmask", false)] {
                for line in lines(file) {
                    var entry = entries[line[0]] ?? {
                        let (package, version) = portageSplit(line[0])
                        return Entry(package: package, version: version)
                    }()
                    if isMask { entry.mask = 1 } else { entry.unmask = 1 }
                    entries[line[0]] = entry
                }
            }
            var rows = TableRows(schema: schema)
            for key in entries.keys.sorted() {
                let e = entries[key]!
                rows.appendRow([.text(e.package), .text(e.version), .text(e.keyword), .integer(Int64(e.mask)), .integer(Int64(e.unmask))])
            }
            return rows
        }
    }
}
