import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Package databases: deb_packages and deb_package_files (dpkg's database), apt_sources (APT's source lists and
/// the Release files APT fetched for them).
enum PackageTables {
    static let dpkgAdminDirectory = "/var/lib/dpkg"

    static func debPackages(flags: Flags) -> FunctionTable {
        table("deb_packages", [
            col("name", .text), col("version", .text, .collateVersionDpkg), col("source", .text), col("size", .bigint),
            col("arch", .text), col("revision", .text), col("status", .text), col("maintainer", .text),
            col("section", .text), col("priority", .text), col("admindir", .text, [.additional, .optimized]),
            pidWithNamespace, mountNamespaceID,
        ], attributes: .cacheable) { context, schema in
            var rows = TableRows(schema: schema)
            var directories = context.equalities(for: "admindir")
            if directories.isEmpty { directories = [dpkgAdminDirectory] }
            for directory in directories where FileIO.exists(directory) {
                let status = directory + "/status"
                guard FileIO.isDirectory(directory), let bytes = BoundedFile.read(status, limit: flags[.readMax]) else {
                    StatusLog.error("deb_packages: Failed to open the dpkg database (admindir='\(directory)')")
                    continue
                }
                DpkgStatus.forEachInstalled(bytes) { package in
                    rows.append(.text(bytes: package.name))
                    rows.append(.text(bytes: package.version))
                    rows.append(.text(bytes: package.source))
                    rows.append(package.size.isEmpty ? .null : .integer(parseInt(package.size)))
                    rows.append(.text(bytes: package.arch))
                    rows.append(.text(bytes: package.revision))
                    rows.append(.text(bytes: package.status))
                    rows.append(.text(bytes: package.maintainer))
                    rows.append(.text(bytes: package.section))
                    rows.append(package.priority.isEmpty ? "unknown" : .text(bytes: package.priority))
                    rows.append(.text(directory))
                    rows.append(.integer(0))
                    rows.append(.null)
                }
            }
            return rows
        }
    }
}

extension PackageTables {
    static func debPackageFiles(flags: Flags) -> FunctionTable {
        table("deb_package_files", [
            col("package", .text, [.index, .optimized]), col("path", .text, .index), col("admindir", .text, [.additional, .optimized]),
        ]) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            var directories = context.equalities(for: "admindir")
            if directories.isEmpty { directories = [dpkgAdminDirectory] }
            // A name with a slash could leave info/; dpkg allows none.
            let wanted = Set(context.equalities(for: "package").filter { !$0.contains("/") && !$0.isEmpty })
            for directory in directories where FileIO.isDirectory(directory) {
                // (name, the .list file names it may have: `name`, or `name:arch` for Multi-Arch: same)
                var packages: [(String, [String])] = []
                if !wanted.isEmpty {
                    let names = Set(FileIO.listDirectoryNames(directory + "/info") ?? [])
                    for name in wanted.sorted() {
                        packages.append((name, names.filter { $0.hasPrefix(name + ":") && $0.hasSuffix(".list") }.sorted()
                            .map { String($0.dropLast(5)) }))
                    }
                } else {
                    guard let bytes = BoundedFile.read(directory + "/status", limit: readMax) else {
                        StatusLog.error("deb_package_files: Failed to open the dpkg database (admindir='\(directory)')")
                        continue
                    }
                    var seen = Set<String>()
                    DpkgStatus.forEachInstalled(bytes) { package in
                        let name = String(decoding: package.name, as: UTF8.self)
                        let qualified = name + ":" + String(decoding: package.arch, as: UTF8.self)
                        if seen.insert(qualified).inserted { packages.append((name, [qualified])) }
                    }
                    packages.sort { $0.0 < $1.0 }
                }
                for (name, qualified) in packages {
                    // osquery reads info/<name>.list only; dpkg keeps Multi-Arch: same packages'
                    // lists as info/<name>:<arch>.list, which are read too.
                    for list in [name] + qualified {
                        guard let content = BoundedFile.read(directory + "/info/" + list + ".list", limit: readMax) else { continue }
                        var start = 0
                        while start < content.count {
                            let end = content[start...].firstIndex(of: 0x0A) ?? content.count
                            if end > start {
                                rows.append(.text(name))
                                rows.append(.text(bytes: content[start..<end]))
                                rows.append(.text(directory))
                            }
                            start = end + 1
                        }
                    }
                }
            }
            return rows
        }
    }
}

extension PackageTables {
    static let aptListsDirectory = "/var/lib/apt/lists"

    /// One repository of a source list, as osquery names it.
    struct AptSource {
        var baseURI: String
        /// `host/path suite`
        var name: String
        /// The parts of the name of APT's cached Release file (joined by `_`, `/` as `_`).
        var cacheFile: [String]
    }

    static func aptSources(flags: Flags, etc: String = "/etc/apt", listsDirectory: String = aptListsDirectory) -> FunctionTable {
        table("apt_sources", [
            col("name", .text), col("source", .text), col("base_uri", .text), col("release", .text),
            col("version", .text, .collateVersionDpkg), col("maintainer", .text), col("components", .text),
            col("architectures", .text), pidWithNamespace,
        ]) { _, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            let listNames = (FileIO.listDirectoryNames(listsDirectory) ?? []).sorted()
            func add(_ source: String, _ apt: AptSource) {
                let prefix = apt.cacheFile.joined(separator: "_").replacingSlashesWithUnderscores() + "_"
                // osquery globs `<prefix>%Release` and reads the first match.
                guard let file = listNames.first(where: { $0.hasPrefix(prefix) && $0.hasSuffix("Release") && $0.count >= prefix.count + 7 }),
                      let content = BoundedFile.text(listsDirectory + "/" + file, limit: readMax) else { return }
                var fields: [String: String] = [:]
                for header in osquerySplit(content, "\n") {
                    if header == "-----BEGIN PGP SIGNATURE-----" { break }
                    let parts = osquerySplit(header, ":")
                    if parts.count == 2 { fields[parts[0]] = parts[1] }
                }
                rows.append(.text(apt.name))
                rows.append(.text(source))
                rows.append(.text(apt.baseURI))
                for key in ["Codename", "Version", "Origin", "Components", "Architectures"] {
                    rows.append(fields[key].map { .text($0) } ?? .null)
                }
                rows.append(.integer(0))
            }
            var sourceLists: [String] = []
            if FileIO.exists(etc + "/sources.list") { sourceLists.append(etc + "/sources.list") }
            sourceLists += BoundedFile.files(in: etc + "/sources.list.d").filter { $0.hasSuffix(".list") }
            for source in sourceLists {
                guard let content = BoundedFile.text(source, limit: readMax) else { continue }
                for line in osquerySplit(content, "\n") {
                    if let apt = parseSourceLine(line) { add(source, apt) }
                }
            }
            for source in BoundedFile.files(in: etc + "/sources.list.d").filter({ $0.hasSuffix(".sources") }) {
                guard let content = BoundedFile.text(source, limit: readMax) else { continue }
                for block in content.splitOnBlankLines() {
                    for apt in parseDeb822Block(block) { add(source, apt) }
                }
            }
            return rows
        }
    }

    /// A one-line-style `deb [options] uri suite [components]` entry (deb-src and others: nil).
    static func parseSourceLine(_ input: String) -> AptSource? {
        var line = Substring(input)
        if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
        guard let deb = line.firstRange(of: "deb ") else { return nil }
        let tokens = osquerySplit(line[deb.upperBound...], " ")
        guard tokens.count >= 2 else { return nil }
        var offset = 0
        if tokens[0].hasPrefix("[") {
            if let close = tokens.firstIndex(where: { $0.contains("]") }) { offset = close }
            offset += 1
        }
        guard offset < tokens.count else { return nil }
        var uri = Substring(tokens[offset])
        guard let scheme = uri.firstRange(of: "://") else { return nil }
        while uri.last == "/" { uri = uri.dropLast() }
        offset += 1
        guard offset < tokens.count, uri.endIndex >= scheme.upperBound else { return nil }
        return source(uri: String(uri), host: String(uri[scheme.upperBound...]), suite: tokens[offset])
    }

    /// The sources of one deb822 stanza: every URI with every suite, when it is of type deb
    /// and not disabled.
    static func parseDeb822Block(_ block: Substring) -> [AptSource] {
        var uris: [String] = []
        var suites: [String] = []
        for input in osquerySplit(block, "\n") {
            var line = Substring(input)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].lowercased()
            let value = String(line[line.index(after: colon)...]).trimmingASCIIWhitespace()
            if value.isEmpty { continue }
            if key == "types" && !osquerySplit(value).contains("deb") { return [] }
            if key == "enabled" && value != "on" { return [] }
            if key == "uris" {
                for token in osquerySplit(value) where token.contains("://") {
                    var uri = Substring(token)
                    while uri.last == "/" { uri = uri.dropLast() }
                    uris.append(String(uri))
                }
            }
            if key == "suites" { suites += osquerySplit(value) }
        }
        var out: [AptSource] = []
        for uri in uris {
            guard let scheme = uri.firstRange(of: "://") else { continue }
            for suite in suites { out.append(source(uri: uri, host: String(uri[scheme.upperBound...]), suite: suite)) }
        }
        return out
    }

    static func source(uri: String, host: String, suite: String) -> AptSource {
        let parts = osquerySplit(suite, "/")
        // A plain suite is under dists/; a path suite (`./`, `stable/`) names the directory itself.
        let cache = parts.count == 1 ? [host, "dists", suite] : [host] + parts
        return AptSource(baseURI: uri, name: host + " " + suite, cacheFile: cache)
    }
}

extension String {
    fileprivate func replacingSlashesWithUnderscores() -> String { String(map { $0 == "/" ? "_" : $0 }) }

    /// Blocks separated by an empty line (`\n\n`), as osquery splits deb822 files.
    fileprivate func splitOnBlankLines() -> [Substring] {
        var out: [Substring] = []
        var start = startIndex
        while let range = self[start...].firstRange(of: "\n\n") {
            out.append(self[start..<range.lowerBound])
            start = range.upperBound
        }
        out.append(self[start...])
        return out.filter { !$0.isEmpty }
    }
}

/// dpkg's status file (deb822 stanzas), read as libdpkg presents it to osquery.
enum DpkgStatus {
    /// The fields of one stanza, as slices of the file.
    struct Package {
        var name: ArraySlice<UInt8> = []
        var version: ArraySlice<UInt8> = []
        var revision: ArraySlice<UInt8> = []
        var source: ArraySlice<UInt8> = []
        var size: ArraySlice<UInt8> = []
        var arch: ArraySlice<UInt8> = []
        var status: ArraySlice<UInt8> = []
        var maintainer: ArraySlice<UInt8> = []
        var section: ArraySlice<UInt8> = []
        var priority: ArraySlice<UInt8> = []
    }

    /// Calls `body` for each package whose status is not `not-installed` (libdpkg drops those).
    static func forEachInstalled(_ bytes: [UInt8], _ body: (Package) -> Void) {
        var package = Package()
        var hasName = false
        func finish() {
            if hasName && !isNotInstalled(package.status) { body(package) }
            package = Package()
            hasName = false
        }
        var start = bytes.startIndex
        while start < bytes.endIndex {
            // memchr: most of the file is description text, skipped a line at a time.
            let end = bytes.withUnsafeBufferPointer { buffer -> Int in
                guard let found = memchr(buffer.baseAddress! + start, 0x0A, buffer.count - start) else { return buffer.count }
                return buffer.baseAddress!.distance(to: found.assumingMemoryBound(to: UInt8.self))
            }
            var line = bytes[start..<end]
            start = end < bytes.endIndex ? end + 1 : end
            if line.last == 0x0D { line = line.dropLast() }
            if line.isEmpty {
                finish()
                continue
            }
            // Continuation lines (descriptions, conffiles) carry nothing osquery reports.
            if line.first == 0x20 || line.first == 0x09 { continue }
            guard let colon = line.firstIndex(of: 0x3A) else { continue }
            let key = line[line.startIndex..<colon]
            let value = trimmed(line[(colon + 1)...])
            switch key.count {
            case 6 where key.elementsEqual("Status".utf8): package.status = value
            case 6 where key.elementsEqual("Source".utf8): package.source = value
            case 7 where key.elementsEqual("Package".utf8):
                package.name = value
                hasName = true
            case 7 where key.elementsEqual("Version".utf8):
                package.version = value
                // dpkg's revision is what follows the last hyphen of the version.
                if let hyphen = value.lastIndex(of: 0x2D) { package.revision = value[(hyphen + 1)...] }
            case 7 where key.elementsEqual("Section".utf8): package.section = value
            case 8 where key.elementsEqual("Priority".utf8): package.priority = value
            case 10 where key.elementsEqual("Maintainer".utf8): package.maintainer = value
            case 12 where key.elementsEqual("Architecture".utf8): package.arch = value
            case 14 where key.elementsEqual("Installed-Size".utf8): package.size = value
            default: break
            }
        }
        finish()
    }

    /// Whether a `want eflag status` value's status is `not-installed`.
    static func isNotInstalled(_ status: ArraySlice<UInt8>) -> Bool {
        // A stanza without Status is not installed for libdpkg either.
        guard let word = status.split(separator: 0x20).last else { return true }
        return word.elementsEqual("not-installed".utf8)
    }

    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var s = s
        while let f = s.first, f == 0x20 || f == 0x09 { s = s.dropFirst() }
        while let l = s.last, l == 0x20 || l == 0x09 { s = s.dropLast() }
        return s
    }
}
