import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's filesystem walks as the package and browser tables use them: `%` globs
/// (`resolveFilePattern`), directory listings (`listDirectoriesInDirectory`, recursive with
/// loop protection) and the file reads, all bounded.
enum PackageFS {
    /// osquery's recursion limit for `**` walks (kMaxRecursiveGlobs).
    static let maxRecursion = 64
    /// Brace groups a glob may expand (osquery's glob expands any number).
    static let maxBraces = 4

    /// `resolveFilePattern`: `%` is `*`; the part before the first wildcard is made canonical
    /// (symbolic links resolved) when it exists; directories carry a trailing `/` (GLOB_MARK).
    /// Matches are sorted, as glob(3) returns them.
    static func glob(_ pattern: String) -> [String] {
        var pattern = String(pattern.map { $0 == "%" ? "*" : $0 })
        if let star = pattern.firstIndex(of: "*") {
            let base = String(pattern[..<star])
            if !base.isEmpty, let canonical = realPath(base), canonical != base {
                let rest = pattern[star...]
                pattern = canonical + (FileIO.isDirectory(canonical) ? "/" : "") + rest
            }
        } else if let canonical = realPath(pattern), canonical != pattern {
            pattern = canonical + (FileIO.isDirectory(canonical) ? "/" : "")
        }
        // Braces multiply: `{a,b}` thirty times over (a `directory` constraint) would be 2^30 patterns.
        var flags = GLOB_MARK | GLOB_TILDE
        if pattern.utf8.count(where: { $0 == UInt8(ascii: "{") }) <= maxBraces { flags |= GLOB_BRACE }
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, flags, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
        }
        return out
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The directories in `path` (symbolic links to directories count), without a trailing
    /// `/`; recursive walks descend at most `maxRecursion` levels and enter each directory
    /// once (by the inode it resolves to, as osquery's walk of `dir/` paths does), so a link
    /// back up the tree ends.
    static func directories(in path: String, recursive: Bool) -> [String] {
        guard FileIO.isDirectory(path) else { return [] }
        let root = path.hasSuffix("/") ? String(path.dropLast()) : path
        var out: [String] = []
        var visited = Set<DirectoryID>()
        func walk(_ directory: String, depth: Int) {
            // A recursive walk keeps readdir's order, as osquery's directory_iterator; a flat
            // listing is a glob, sorted.
            var children = subdirectories(of: directory)
            if !recursive { children.sort() }
            for child in children {
                out.append(child)
                if recursive && depth < maxRecursion, let id = DirectoryID(stat: child), visited.insert(id).inserted {
                    walk(child, depth: depth + 1)
                }
            }
        }
        if recursive, let id = DirectoryID(stat: root) { visited.insert(id) }
        walk(root, depth: 0)
        return out
    }

    /// The directories directly in `directory` (links to directories too); readdir's entry
    /// type spares a stat for all but links and file systems that do not report it.
    static func subdirectories(of directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let type = entry.pointee.d_type
            if type != UInt8(DT_DIR) && type != UInt8(DT_LNK) && type != UInt8(DT_UNKNOWN) { continue }
            let name: String? = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                let n = bytes.firstIndex(of: 0) ?? bytes.count
                if (n == 1 && bytes[0] == 0x2E) || (n == 2 && bytes[0] == 0x2E && bytes[1] == 0x2E) { return nil }
                return String(decoding: bytes[0..<n], as: UTF8.self)
            }
            guard let name else { continue }
            let child = directory + "/" + name
            if type == UInt8(DT_DIR) || FileIO.isDirectory(child) { out.append(child) }
        }
        return out
    }

    /// The regular files (links followed) directly in `path`, sorted.
    static func files(in path: String) -> [String] {
        guard let names = FileIO.listDirectoryNames(path) else { return [] }
        let root = path.hasSuffix("/") ? String(path.dropLast()) : path
        return names.sorted().map { root + "/" + $0 }.filter { p in
            var st = stat()
            return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        }
    }

    /// A file's text, bounded by `read_max` and refused when not a regular file.
    static func text(_ path: String, flags: Flags) -> String? {
        BoundedFile.text(path, limit: flags[.readMax])
    }
}

/// A directory's identity (device, inode), osquery's `DirIdentifier`.
struct DirectoryID: Hashable {
    var device: UInt64
    var inode: UInt64

    init?(lstat path: String) {
        guard let id = fileIdentity(path, follow: false) else { return nil }
        (device, inode) = id
    }

    init?(stat path: String) {
        guard let id = fileIdentity(path, follow: true) else { return nil }
        (device, inode) = id
    }
}

private func fileIdentity(_ path: String, follow: Bool) -> (UInt64, UInt64)? {
    var st = stat()
    guard (follow ? stat(path, &st) : lstat(path, &st)) == 0 else { return nil }
    return (UInt64(st.st_dev), UInt64(st.st_ino))
}

extension JSONValue {
    /// rapidjson's `FindMember`: the first member of that name (our subscript takes the last).
    func firstMember(_ key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.0 == key })?.1
    }

    var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    var isObject: Bool { if case .object = self { true } else { false } }
}

/// A JSON document read from a file with osquery's limits: nil when unreadable or malformed.
func readJSONFile(_ path: String, flags: Flags) -> JSONValue? {
    guard let bytes = BoundedFile.read(path, limit: flags[.readMax]) else { return nil }
    return try? JSONValue.parse(String(decoding: bytes, as: UTF8.self))
}

/// osquery's `usersFromContext` for the user-data tables (packages, browsers, SSH files,
/// shell_history): the users named by `uid =` constraints (as `users JOIN t USING (uid)` passes
/// them), else only the user running the query; osquery reads no one else's files unless asked.
enum ContextUsers {
    /// - Parameter table: the package tables name themselves to get osquery's warning when root
    ///   queries without a `uid` constraint; the SSH tables and shell_history give none.
    static func fromContext(_ context: QueryContext, table: String? = nil) -> [HomeUser] {
        let uids = context.equalities(for: "uid")
        if uids.isEmpty {
            if let table, getuid() == 0 {
                StatusLog.warning("The \(table) table returns data based on the current user by default, consider JOINing against the users table")
            }
            return user(getuid()).map { [$0] } ?? []
        }
        return uids.compactMap { UInt32($0).flatMap(user) }
    }

    /// One passwd entry (getpwuid_r: query threads run tables at once).
    static func user(_ uid: uid_t) -> HomeUser? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let dir = entry.pw_dir else { return nil }
        return HomeUser(uid: Int64(uid), directory: String(cString: dir))
    }
}
