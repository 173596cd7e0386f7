import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Language package managers' installs: python_packages (site directories' `.dist-info` /
/// `.egg-info` metadata) and npm_packages (`node_modules` package.json files).
extension PackageTables {
    typealias Users = @Sendable (QueryContext) -> [HomeUser]

    /// osquery's system site directories (kPythonPath, in its std::set order).
    static let pythonSystemPaths = [
        "/Library/Python/%/site-packages",
        "/opt/anaconda3/lib/python%/site-packages",
        "/opt/conda/lib/python%/dist-packages",
        "/opt/conda/lib/python%/site-packages",
        "/opt/homebrew/lib/python%/dist-packages",
        "/opt/homebrew/lib/python%/site-packages",
        "/opt/miniconda3/lib/python%/site-packages",
        "/usr/lib/python%/dist-packages",
        "/usr/lib/python%/site-packages",
        "/usr/local/lib/python%/dist-packages",
        "/usr/local/lib/python%/site-packages",
        "/usr/local/lib64/python%/site-packages",
    ]

    /// Per-user places (kUserDirectoryPaths, in its std::set order): version managers' trees,
    /// virtualenv homes, `--user` installs.
    static let pythonUserPaths = [
        ".asdf/installs/python", ".cache/pypoetry/virtualenvs", ".local/lib/python%", ".local/pipx/venvs",
        ".local/share/mise/installs/python", ".local/share/pipx/venvs", ".local/share/uv/tools",
        ".local/share/virtualenvs", ".pyenv/versions", ".virtualenvs", "anaconda3/envs", "anaconda3/lib/python%",
        "mambaforge/envs", "mambaforge/lib/python%", "miniconda3/envs", "miniconda3/lib/python%",
        "miniforge3/envs", "miniforge3/lib/python%",
    ]

    static func pythonPackages(flags: Flags, systemPaths: [String] = pythonSystemPaths,
                               users: @escaping Users = { ContextUsers.fromContext($0, table: "python_packages") }) -> FunctionTable {
        table("python_packages", [
            col("name", .text), col("uid", .bigint, .index), col("version", .text, .collateVersion), col("summary", .text),
            col("author", .text), col("license", .text), col("path", .text), col("directory", .text, [.index, .optimized]),
            pidWithNamespace,
        ], attributes: .userBased) { context, schema in
            var rows = TableRows(schema: schema)
            let directories = context.equalities(for: "directory")
            if !directories.isEmpty {
                for site in Set(directories).sorted() { addPythonSite(site, uid: 0, flags: flags, to: &rows) }
                return rows
            }
            var sites = Set<String>()
            for pattern in systemPaths { sites.formUnion(PackageFS.glob(pattern)) }
            for site in sites.sorted() { addPythonSite(site, uid: 0, flags: flags, to: &rows) }
            var found = !sites.isEmpty
            defer { if !found { OnceLog.shared.info("python_packages: no Python site directory on this system or in the users' home directories") } }
            for user in users(context) {
                for suffix in pythonUserPaths {
                    let base = user.directory + "/" + suffix + "/"
                    // A version manager's tree holds `<version>/lib/python*/site-packages`.
                    var sites: [String] = []
                    for version in PackageFS.directories(in: base, recursive: false) {
                        var st = stat()
                        if lstat(version, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK { continue }
                        sites += PackageFS.glob(version + "/lib/python%/site-packages")
                    }
                    if sites.isEmpty { sites = PackageFS.glob(base) }
                    for site in sites { addPythonSite(site, uid: user.uid, flags: flags, to: &rows) }
                    if !sites.isEmpty { found = true }
                }
            }
            return rows
        }
    }

    /// Every `.dist-info` / `.egg-info` directory under a site directory, at any depth.
    static func addPythonSite(_ site: String, uid: Int64, flags: Flags, to rows: inout TableRows) {
        for directory in PackageFS.directories(in: site, recursive: true) {
            let metadata: String
            if directory.hasSuffix(".dist-info") {
                metadata = directory + "/METADATA"
            } else if directory.hasSuffix(".egg-info") {
                metadata = directory + "/PKG-INFO"
            } else {
                continue
            }
            var fields: [String: String] = [:]
            if let content = PackageFS.text(metadata, flags: flags) {
                // osquery keeps `Key: value` lines whose value has no further colon, up to License.
                for line in osquerySplit(content, "\n") {
                    let parts = osquerySplit(line, ":")
                    guard parts.count == 2 else { continue }
                    if ["Name", "Version", "Summary", "Author", "License"].contains(parts[0]) { fields[parts[0]] = parts[1] }
                    if parts[0] == "License" { break }
                }
            } else {
                OnceLog.shared.info("python_packages: Cannot find info file: \(metadata)")
            }
            rows.append(fields["Name"].map { .text($0) } ?? .null)
            rows.append(.integer(uid))
            for key in ["Version", "Summary", "Author", "License"] { rows.append(fields[key].map { .text($0) } ?? .null) }
            rows.append(.text(directory))
            rows.append(.text(site))
            rows.append(.integer(0))
        }
    }
}

extension PackageTables {
    /// osquery's global node_modules parents (kNodeModulesPath, in its std::set order).
    static let nodeModulesPaths = [
        "/home/%/.asdf/installs/nodejs/%/lib", "/home/%/.local/share/fnm/node-versions/%/installation/lib",
        "/home/%/.local/share/mise/installs/node/%/lib", "/home/%/.npm-global/lib", "/home/%/.nvm/versions/node/%/lib",
        "/home/%/.volta/tools/image/node/%/lib", "/opt/homebrew/lib", "/usr/lib", "/usr/local/lib",
    ]

    /// osquery's default nesting limit (kDefaultMaxDepth).
    static let npmDefaultMaxDepth = 100

    static func npmPackages(flags: Flags, systemPaths: [String] = nodeModulesPaths) -> FunctionTable {
        table("npm_packages", [
            col("name", .text), col("version", .text, .collateVersion), col("description", .text), col("author", .text),
            col("license", .text), col("homepage", .text), col("path", .text), col("directory", .text, [.index, .optimized]),
            col("depth", .integer), col("max_depth", .integer, [.additional, .hidden]), pidWithNamespace, mountNamespaceID,
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            var maxDepth = npmDefaultMaxDepth
            if let first = context.equalities(for: "max_depth").first { maxDepth = Int(first) ?? npmDefaultMaxDepth }
            var sites = Set(context.equalities(for: "directory"))
            if sites.isEmpty {
                for pattern in systemPaths { sites.formUnion(PackageFS.glob(pattern)) }
            }
            if sites.isEmpty { OnceLog.shared.info("npm_packages: no global node_modules parent directory on this system") }
            for site in sites.sorted() { addNodeSite(site, maxDepth: maxDepth, flags: flags, to: &rows) }
            return rows
        }
    }

    /// The packages under `site/node_modules` (scoped ones too), then theirs, depth first,
    /// each directory once (a link back up the tree ends) and at most `maxDepth` levels.
    static func addNodeSite(_ site: String, maxDepth: Int, flags: Flags, to rows: inout TableRows) {
        var stack: [(String, Int)] = [(site, 0)]
        var visited = Set<DirectoryID>()
        while let (directory, depth) = stack.popLast() {
            if directory.isEmpty { continue }
            if let id = DirectoryID(lstat: directory), !visited.insert(id).inserted { continue }
            let base = directory.hasSuffix("/") ? directory : directory + "/"
            let manifests = PackageFS.glob(base + "node_modules/%/package.json") + PackageFS.glob(base + "node_modules/@%/%/package.json")
            for path in manifests {
                var fields: [String: SQLValue] = [:]
                if let document = readJSONFile(path, flags: flags), document.isObject {
                    for key in ["name", "version", "description", "homepage"] {
                        if let value = document.firstMember(key) { fields[key] = .text(value.stringValue ?? "") }
                    }
                    if let author = document.firstMember("author") {
                        if let name = author.stringValue {
                            fields["author"] = .text(name)
                        } else if author.isObject, let name = author.firstMember("name") {
                            fields["author"] = .text(name.stringValue ?? "")
                        }
                    }
                    // A license is a string, or (deprecated) an object with its url.
                    if let license = document.firstMember("license") {
                        if let text = license.stringValue {
                            fields["license"] = .text(text)
                        } else if let url = license.firstMember("url")?.stringValue {
                            fields["license"] = .text(url)
                        }
                    }
                } else {
                    OnceLog.shared.info("npm_packages: Could not parse package.json from: \(path)")
                }
                for key in ["name", "version", "description", "author", "license", "homepage"] { rows.append(fields[key] ?? .null) }
                rows.append(.text(path))
                rows.append(.text(site))
                rows.append(.integer(Int64(depth)))
                rows.append(.integer(Int64(maxDepth)))
                rows.append(.integer(0))
                rows.append(.null)
                if maxDepth == -1 || depth < maxDepth {
                    var packageDirectory = Substring(path)
                    if let slash = packageDirectory.lastIndex(of: "/") { packageDirectory = packageDirectory[..<slash] }
                    if FileIO.isDirectory(packageDirectory + "/node_modules") { stack.append((String(packageDirectory), depth + 1)) }
                }
            }
        }
    }
}
