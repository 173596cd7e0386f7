import OsqueryEngine
internal import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// A path as raw bytes (file names need not be UTF-8).
typealias PathBytes = [UInt8]

/// Call `body` with a NUL-terminated copy of a byte path.
func withCPath<R>(_ path: PathBytes, _ body: (UnsafePointer<CChar>) -> R) -> R {
    var z = path
    z.append(0)
    return z.withUnsafeBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { body($0) }
    }
}

func isDirectory(_ path: PathBytes) -> Bool {
    var st = stat()
    return withCPath(path) { stat($0, &st) } == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

func joinPath(_ dir: PathBytes, _ name: PathBytes) -> PathBytes {
    var out = dir
    if out.last != UInt8(ascii: "/") { out.append(UInt8(ascii: "/")) }
    out += name
    return out
}

/// Path resolution shared by `file` and `hash`: `=` is an exact path, LIKE
/// patterns become filesystem globs (`%` one level, `%%` recursive).
enum PathResolver {
    /// Paths for the `path` column's constraints.
    static func paths(_ context: QueryContext, column: String = "path") -> [PathBytes] {
        var out: [PathBytes] = []
        var seen = Set<PathBytes>()
        for c in context.constraints(for: column) {
            var found: [PathBytes] = []
            switch c.op {
            case .equals: found = [rawBytes(c)]
            case .like: found = expandLike(c.expr)
            case .glob: found = glob(c.expr)
            default: continue
            }
            for p in found where seen.insert(p).inserted { out.append(p) }
        }
        return out
    }

    /// The constraint's value as bytes (exact, even when not UTF-8).
    static func rawBytes(_ c: Constraint) -> PathBytes {
        if case .blob(let b) = c.value { return b }
        return Array(c.expr.utf8)
    }

    /// Entries directly inside each directory named by the `directory` column.
    static func directoryEntries(_ context: QueryContext) -> [(directory: PathBytes, path: PathBytes)] {
        var dirs: [PathBytes] = []
        for c in context.constraints(for: "directory") {
            switch c.op {
            case .equals: dirs.append(rawBytes(c))
            case .like: dirs += expandLike(c.expr).filter(isDirectory)
            case .glob: dirs += glob(c.expr).filter(isDirectory)
            default: continue
            }
        }
        var out: [(PathBytes, PathBytes)] = []
        for dir in dirs {
            var base = dir
            if base.count > 1 && base.last == UInt8(ascii: "/") { base.removeLast() }
            guard let names = listRaw(base) else {
                StatusLog.info("Cannot list directory \(String(decoding: base, as: UTF8.self))")
                continue
            }
            // `directory` is reported as the query gave it (osquery does): SQLite re-checks
            // `directory = '/dev/'` against each row, so a trimmed '/dev' would drop them all.
            for name in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                out.append((dir, joinPath(base, name)))
            }
        }
        return out
    }

    /// readdir on a byte path.
    static func listRaw(_ path: PathBytes) -> [PathBytes]? {
        guard let dir = withCPath(path, { opendir($0) }) else { return nil }
        defer { closedir(dir) }
        var out: [PathBytes] = []
        while let entry = readdir(dir) {
            let name: PathBytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                return Array(bytes[0..<(bytes.firstIndex(of: 0) ?? bytes.count)])
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            out.append(name)
        }
        return out
    }

    /// A LIKE pattern as a filesystem walk. A trailing `%%` recurses.
    static func expandLike(_ pattern: String) -> [PathBytes] {
        if pattern.hasSuffix("%%") {
            let prefix = String(pattern.dropLast(2))
            var out: [PathBytes] = []
            for root in glob(likeToGlob(prefix.isEmpty ? "/" : prefix)) {
                walk(root, into: &out)
            }
            return out
        }
        return glob(likeToGlob(pattern))
    }

    static func likeToGlob(_ pattern: String) -> String {
        var out = ""
        for ch in pattern {
            switch ch {
            case "%": out.append("*")
            case "_": out.append("?")
            case "*", "?", "[": out.append("\\"); out.append(ch)
            default: out.append(ch)
            }
        }
        return out.replacingDoubleStars()
    }

    static func glob(_ pattern: String) -> [PathBytes] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, GLOB_NOSORT | GLOB_BRACE, nil, &g) == 0 else { return [] }
        var out: [PathBytes] = []
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] {
                out.append(Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p))))
            }
        }
        return out.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Everything below `root` (root itself included when it is a file).
    static func walk(_ root: PathBytes, into out: inout [PathBytes]) {
        guard isDirectory(root) else {
            out.append(root)
            return
        }
        var stack = [root]
        while let dir = stack.popLast() {
            guard let names = listRaw(dir) else { continue }
            for name in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                let path = joinPath(dir, name)
                out.append(path)
                var st = stat()
                if withCPath(path, { lstat($0, &st) }) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { stack.append(path) }
            }
        }
    }
}

extension String {
    fileprivate func replacingDoubleStars() -> String {
        var s = self
        while let r = s.range(of: "**") { s.replaceSubrange(r, with: "*") }
        return s
    }

    fileprivate func range(of needle: String) -> Range<String.Index>? {
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}

enum FileTables {
    static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "regular"
        case S_IFDIR: return "directory"
        case S_IFLNK: return "symlink"
        case S_IFBLK: return "block"
        case S_IFCHR: return "character"
        case S_IFIFO: return "fifo"
        case S_IFSOCK: return "socket"
        default: return "unknown"
        }
    }

    static func octalMode(_ mode: mode_t) -> String {
        let s = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    static func parent(_ path: PathBytes) -> PathBytes {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return [UInt8(ascii: ".")] }
        if slash == 0 { return [UInt8(ascii: "/")] }
        return Array(path[..<slash])
    }

    static func file() -> FunctionTable {
        table("file", [
            col("path", .text, [.required, .index, .optimized]), col("directory", .text, [.required, .optimized]),
            col("filename", .text), col("inode", .bigint), col("uid", .bigint), col("gid", .bigint), col("mode", .text),
            col("device", .bigint), col("size", .bigint), col("block_size", .integer), col("atime", .bigint),
            col("mtime", .bigint), col("ctime", .bigint), col("btime", .bigint), col("hard_links", .integer),
            col("symlink", .integer), col("type", .text), col("symlink_target_path", .text),
            // osquery's columns of other platforms, hidden on Linux.
            col("attributes", .text, .hidden), col("volume_serial", .text, .hidden), col("file_id", .text, .hidden),
            col("file_version", .text, [.hidden, .collateVersion]), col("product_version", .text, [.hidden, .collateVersion]),
            col("original_filename", .text, .hidden), col("shortcut_target_path", .text, .hidden),
            col("shortcut_target_type", .text, .hidden), col("shortcut_target_location", .text, .hidden),
            col("shortcut_start_in", .text, .hidden), col("shortcut_run", .text, .hidden), col("shortcut_comment", .text, .hidden),
            col("bsd_flags", .text, .hidden), pidWithNamespace, mountNamespaceID,
        ], attributes: .utility) { context, schema in
            var rows = TableRows(schema: schema)
            var targets: [(directory: PathBytes, path: PathBytes)] = PathResolver.paths(context).map { (parent($0), $0) }
            targets += PathResolver.directoryEntries(context)
            for (directory, path) in targets {
                var lst = stat()
                guard withCPath(path, { lstat($0, &lst) }) == 0 else { continue }
                let isLink = (lst.st_mode & S_IFMT) == S_IFLNK
                var st = lst
                var target: PathBytes = []
                if isLink {
                    if withCPath(path, { stat($0, &st) }) != 0 { st = lst }
                    target = withCPath(path) { p -> PathBytes in
                        var buf = [UInt8](repeating: 0, count: 4096)
                        let n = buf.withUnsafeMutableBufferPointer { b in
                            readlink(p, UnsafeMutableRawPointer(b.baseAddress!).assumingMemoryBound(to: CChar.self), b.count)
                        }
                        return n > 0 ? Array(buf[0..<n]) : []
                    }
                }
                let name = path.split(separator: UInt8(ascii: "/")).last.map(Array.init) ?? path
                rows.appendRow([
                    .text(bytes: path), .text(bytes: directory), .text(bytes: name), .integer(Int64(st.st_ino)), .integer(Int64(st.st_uid)),
                    .integer(Int64(st.st_gid)), .text(octalMode(st.st_mode)), .integer(Int64(st.st_rdev)),
                    .integer(Int64(st.st_size)), .integer(Int64(st.st_blksize)), .integer(Int64(st.st_atim.tv_sec)),
                    .integer(Int64(st.st_mtim.tv_sec)), .integer(Int64(st.st_ctim.tv_sec)), 0,
                    .integer(Int64(st.st_nlink)), .integer(isLink ? 1 : 0), .text(fileType(st.st_mode)),
                    .text(bytes: target), .null, .null, .null, .null, .null, .null, .null, .null, .null, .null, .null, .null, .null,
                    .null, .null,
                ])
            }
            return rows
        }
    }

    /// md5, sha1 and sha256 of a regular file in one pass; nil if unreadable.
    static func hashFile(_ path: PathBytes, readMax: UInt64) -> (String, String, String)? {
        var st = stat()
        guard withCPath(path, { stat($0, &st) }) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let shown = String(decoding: path, as: UTF8.self)
        if readMax > 0 && UInt64(st.st_size) > readMax {
            StatusLog.info("Cannot hash \(shown): larger than read_max (\(readMax) bytes)")
            return nil
        }
        let fd = withCPath(path) { open($0, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else {
            StatusLog.info("Cannot open \(shown) for hashing")
            return nil
        }
        defer { close(fd) }
        var md5 = Insecure.MD5()
        var sha1 = Insecure.SHA1()
        var sha256 = SHA256()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                md5.update(bufferPointer: chunk)
                sha1.update(bufferPointer: chunk)
                sha256.update(bufferPointer: chunk)
            }
        }
        return (Hex.lowercase(md5.finalize()), Hex.lowercase(sha1.finalize()), Hex.lowercase(sha256.finalize()))
    }


    static func hash(flags: Flags) -> FunctionTable {
        table("hash", [
            col("path", .text, [.required, .index, .optimized]), col("directory", .text, [.required, .optimized]),
            col("md5", .text, .collateNocase), col("sha1", .text, .collateNocase), col("sha256", .text, .collateNocase),
            pidWithNamespace, mountNamespaceID,
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let readMax = flags[.readMax]
            var targets: [(directory: PathBytes, path: PathBytes)] = PathResolver.paths(context).map { (parent($0), $0) }
            targets += PathResolver.directoryEntries(context)
            for (directory, path) in targets {
                guard let (md5, sha1, sha256) = hashFile(path, readMax: readMax) else { continue }
                rows.appendRow([.text(bytes: path), .text(bytes: directory), .text(md5), .text(sha1), .text(sha256), .null, .null])
            }
            return rows
        }
    }
}
