#if canImport(Glibc)
import Glibc
#endif
public import Logging
import OsqueryEngine

/// Why an extension path was not accepted for autoload (or launch). Cases are listed in the order
/// osquery checks them (protocol.md §4.2): existence, then the permission checks
/// (`safePermissions`: sticky parent, directory, owner, owner-execute, world-writable), then the
/// suffix. `allowUnsafe` skips the permission checks only.
public enum AutoloadRefusal: Sendable, Hashable, CustomStringConvertible {
    /// The path does not exist (or cannot be stat'ed).
    case missing
    /// The parent directory has the sticky bit (a /tmp-like directory anyone can write into).
    case stickyParentDirectory
    /// The path is a directory (only reachable through `safeToLaunch`; autoload expands directories).
    case isDirectory
    /// The owner is neither root nor the current real uid.
    case unsafeOwner(uid: UInt32)
    /// The owner-execute bit is not set.
    case notExecutable
    /// The file is writable by others (group-write is allowed).
    case worldWritable
    /// The name does not end in `.ext`.
    case badSuffix

    public var description: String {
        switch self {
        case .missing: "does not exist"
        case .stickyParentDirectory: "parent directory has the sticky bit"
        case .isDirectory: "is a directory"
        case .unsafeOwner(let uid): "owned by uid \(uid), neither root nor the current user"
        case .notExecutable: "not executable by its owner"
        case .worldWritable: "world-writable"
        case .badSuffix: "name does not end in .ext"
        }
    }
}

/// One refused autoload entry: the file (after directory expansion) and why.
public struct AutoloadRejection: Sendable, Hashable {
    public let path: String
    public let reason: AutoloadRefusal

    public init(path: String, reason: AutoloadRefusal) {
        self.path = path
        self.reason = reason
    }
}

/// The outcome of reading an autoload file: accepted paths in file order (directory entries sorted
/// by name), and every refusal.
public struct AutoloadResult: Sendable, Equatable {
    public var accepted: [String]
    public var refused: [AutoloadRejection]

    public init(accepted: [String] = [], refused: [AutoloadRejection] = []) {
        self.accepted = accepted
        self.refused = refused
    }
}

/// The autoload file itself could not be read.
public struct AutoloadError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let errno: Int32

    public var description: String {
        "cannot read extensions autoload file \(path): \(String(cString: strerror(errno)))"
    }
}

/// `--extensions_autoload` handling: parse the file, expand directories, check each file.
public enum Autoload {
    /// The suffix an autoloaded extension must carry on Linux.
    public static let suffix = ".ext"

    /// Reads and checks the autoload file at `file`. Refusals are logged at warning level with the
    /// path and the reason; throws `AutoloadError` only when the file itself cannot be read.
    public static func load(
        file: String,
        allowUnsafe: Bool = false,
        logger: Logger = Logger(label: "osquery.extensions.autoload")
    ) throws(AutoloadError) -> AutoloadResult {
        guard let bytes = FileIO.readAll(file, limit: 1 << 20) else {
            let code = errno
            throw AutoloadError(path: file, errno: code)
        }
        return parse(contents: String(decoding: bytes, as: UTF8.self), allowUnsafe: allowUnsafe, logger: logger)
    }

    /// Applies the autoload rules to the text of an autoload file: each line is trimmed; empty
    /// lines and lines starting with `#` or `;` are skipped; a directory expands recursively to
    /// every file under it; every file is checked on its own.
    public static func parse(
        contents: String,
        allowUnsafe: Bool = false,
        logger: Logger = Logger(label: "osquery.extensions.autoload")
    ) -> AutoloadResult {
        var result = AutoloadResult()
        // "\r\n" is a single Character in Swift, so split on it explicitly.
        let lines = contents.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for rawLine in lines {
            let line = trim(rawLine)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            let candidates = FileIO.isDirectory(line) ? filesUnder(directory: line) : [line]
            for path in candidates {
                if let reason = refusal(path: path, allowUnsafe: allowUnsafe) {
                    logger.warning(
                        "Will not autoload extension \(path): \(reason)",
                        metadata: ["path": "\(path)", "reason": "\(reason)"]
                    )
                    result.refused.append(AutoloadRejection(path: path, reason: reason))
                } else {
                    result.accepted.append(path)
                }
            }
        }
        return result
    }

    /// The full discovery check for one file, in osquery's order: exists, permissions (unless
    /// `allowUnsafe`), suffix. `nil` means accepted.
    public static func refusal(path: String, allowUnsafe: Bool) -> AutoloadRefusal? {
        if let reason = launchRefusal(path: path, allowUnsafe: allowUnsafe) { return reason }
        if !path.hasSuffix(suffix) { return .badSuffix }
        return nil
    }

    /// The check made before every (re)launch, as osquery's watcher does: the file exists and,
    /// unless `allowUnsafe`, has safe permissions. The suffix is not checked here.
    public static func launchRefusal(path: String, allowUnsafe: Bool) -> AutoloadRefusal? {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        if allowUnsafe { return nil }
        var parentStat = stat()
        if stat(parentDirectory(of: path), &parentStat) == 0, parentStat.st_mode & 0o1000 != 0 {
            return .stickyParentDirectory
        }
        if st.st_mode & 0o170000 == 0o040000 { return .isDirectory }
        if st.st_uid != 0 && st.st_uid != getuid() { return .unsafeOwner(uid: st.st_uid) }
        if st.st_mode & 0o100 == 0 { return .notExecutable }
        if st.st_mode & 0o002 != 0 { return .worldWritable }
        return nil
    }

    /// True when `path` may be launched now (see `launchRefusal`).
    public static func safeToLaunch(path: String, allowUnsafe: Bool) -> Bool {
        launchRefusal(path: path, allowUnsafe: allowUnsafe) == nil
    }

    // MARK: - Helpers

    static func trim(_ s: Substring) -> String {
        let ws: Set<Character> = [" ", "\t", "\r", "\n", "\u{0B}", "\u{0C}"]
        var slice = s[...]
        while let c = slice.first, ws.contains(c) { slice = slice.dropFirst() }
        while let c = slice.last, ws.contains(c) { slice = slice.dropLast() }
        return String(slice)
    }

    static func parentDirectory(of path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        if slash == p.startIndex { return "/" }
        return String(p[..<slash])
    }

    /// Every non-directory entry under `directory`, recursively, sorted by name at each level.
    /// Symbolic links to directories are not followed (no cycles); links to files are listed.
    static func filesUnder(directory: String) -> [String] {
        var out: [String] = []
        var visited = 0
        func walk(_ dir: String, depth: Int) {
            guard depth < 64, visited < 100_000, let names = FileIO.listDirectoryNames(dir) else { return }
            let base = dir.hasSuffix("/") ? dir : dir + "/"
            for name in names.sorted() {
                visited += 1
                let child = base + name
                var st = stat()
                guard lstat(child, &st) == 0 else { continue }
                if st.st_mode & 0o170000 == 0o040000 {
                    walk(child, depth: depth + 1)
                } else {
                    out.append(child)
                }
            }
        }
        walk(directory, depth: 0)
        return out
    }
}
