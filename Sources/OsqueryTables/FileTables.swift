import OsqueryEngine
internal import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// Path resolution shared by `file` and `hash`: `=` is an exact path, LIKE
/// patterns become filesystem globs (`%` one level, `%%` recursive).
enum PathResolver {
    /// Paths for the `path` column's constraints.
    static func paths(_ context: QueryContext, column: String = "path") -> [String] {
        var out: [String] = []
        var seen = Set<String>()
        for c in context.constraints(for: column) {
            var found: [String] = []
            switch c.op {
            case .equals: found = [c.expr]
            case .like: found = expandLike(c.expr)
            case .glob: found = glob(c.expr)
            default: continue
            }
            for p in found where seen.insert(p).inserted { out.append(p) }
        }
        return out
    }

    /// Files directly inside each directory named by the `directory` column.
    static func directoryEntries(_ context: QueryContext) -> [(directory: String, path: String)] {
        var dirs: [String] = []
        for c in context.constraints(for: "directory") {
            switch c.op {
            case .equals: dirs.append(c.expr)
            case .like: dirs += expandLike(c.expr).filter(FileIO.isDirectory)
            case .glob: dirs += glob(c.expr).filter(FileIO.isDirectory)
            default: continue
            }
        }
        var out: [(String, String)] = []
        for dir in dirs {
            let base = dir.count > 1 && dir.hasSuffix("/") ? String(dir.dropLast()) : dir
            guard let names = FileIO.listDirectoryNames(base) else {
                StatusLog.info("Cannot list directory \(base)")
                continue
            }
            for name in names.sorted() {
                out.append((base, base == "/" ? "/" + name : base + "/" + name))
            }
        }
        return out
    }

    /// A LIKE pattern as a filesystem walk. A trailing `%%` recurses.
    static func expandLike(_ pattern: String) -> [String] {
        if pattern.hasSuffix("%%") {
            let prefix = String(pattern.dropLast(2))
            var out: [String] = []
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

    static func glob(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, GLOB_NOSORT | GLOB_BRACE, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
        }
        return out.sorted()
    }

    /// Everything below `root` (root itself included when it is a file).
    static func walk(_ root: String, into out: inout [String]) {
        guard FileIO.isDirectory(root) else {
            out.append(root)
            return
        }
        var stack = [root]
        while let dir = stack.popLast() {
            guard let names = FileIO.listDirectoryNames(dir) else { continue }
            for name in names.sorted() {
                let path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
                out.append(path)
                var st = stat()
                if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { stack.append(path) }
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

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    static func file() -> FunctionTable {
        table("file", [
            col("path", .text, [.required, .index, .optimized]), col("directory", .text, [.required, .optimized]),
            col("filename", .text), col("inode", .bigint), col("uid", .bigint), col("gid", .bigint), col("mode", .text),
            col("device", .bigint), col("size", .bigint), col("block_size", .integer), col("atime", .bigint),
            col("mtime", .bigint), col("ctime", .bigint), col("btime", .bigint), col("hard_links", .integer),
            col("symlink", .integer), col("type", .text), col("symlink_target_path", .text), pidWithNamespace, mountNamespaceID,
        ], attributes: .utility) { context, schema in
            var rows = TableRows(schema: schema)
            var targets: [(directory: String, path: String)] = PathResolver.paths(context).map { (parent($0), $0) }
            targets += PathResolver.directoryEntries(context)
            for (directory, path) in targets {
                var lst = stat()
                guard lstat(path, &lst) == 0 else { continue }
                let isLink = (lst.st_mode & S_IFMT) == S_IFLNK
                var st = lst
                var target = ""
                if isLink {
                    if stat(path, &st) != 0 { st = lst }
                    target = FileIO.readLink(path).map { String(decoding: $0, as: UTF8.self) } ?? ""
                }
                let name = path.split(separator: "/").last.map(String.init) ?? path
                rows.appendRow([
                    .text(path), .text(directory), .text(name), .integer(Int64(st.st_ino)), .integer(Int64(st.st_uid)),
                    .integer(Int64(st.st_gid)), .text(octalMode(st.st_mode)), .integer(Int64(st.st_rdev)),
                    .integer(Int64(st.st_size)), .integer(Int64(st.st_blksize)), .integer(Int64(st.st_atim.tv_sec)),
                    .integer(Int64(st.st_mtim.tv_sec)), .integer(Int64(st.st_ctim.tv_sec)), 0,
                    .integer(Int64(st.st_nlink)), .integer(isLink ? 1 : 0), .text(fileType(st.st_mode)),
                    .text(target), .null, .null,
                ])
            }
            return rows
        }
    }

    /// md5, sha1 and sha256 of a regular file in one pass; nil if unreadable.
    static func hashFile(_ path: String, readMax: UInt64) -> (String, String, String)? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        if readMax > 0 && UInt64(st.st_size) > readMax {
            StatusLog.info("Cannot hash \(path): larger than read_max (\(readMax) bytes)")
            return nil
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            StatusLog.info("Cannot open \(path) for hashing")
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
        return (hex(md5.finalize()), hex(sha1.finalize()), hex(sha256.finalize()))
    }

    static func hex<D: Sequence>(_ d: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in d {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hash(flags: Flags) -> FunctionTable {
        table("hash", [
            col("path", .text, [.required, .index, .optimized]), col("directory", .text, [.required, .optimized]),
            col("md5", .text), col("sha1", .text), col("sha256", .text), pidWithNamespace, mountNamespaceID,
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let readMax = flags.uint("read_max")
            var targets: [(directory: String, path: String)] = PathResolver.paths(context).map { (parent($0), $0) }
            targets += PathResolver.directoryEntries(context)
            for (directory, path) in targets {
                guard let (md5, sha1, sha256) = hashFile(path, readMax: readMax) else { continue }
                rows.appendRow([.text(path), .text(directory), .text(md5), .text(sha1), .text(sha256), .null, .null])
            }
            return rows
        }
    }
}
