#if canImport(Glibc)
import Glibc
#endif
public import Logging
import OsqueryEngine

/// Why an extension path was not accepted for autoload (or launch). Cases are listed in the order
/// osquery checks them (protocol.md §4.2): existence, then the permission checks
/// (`safePermissions`: sticky parent, directory, owner, owner-execute, world-writable), then the
/// suffix. Stricter than osquery: the file must not be a symbolic link, a non-regular file or
/// group-writable, and no directory above it may be writable or owned by anyone but root and the
/// current user (a sticky, world-writable directory such as /tmp is allowed above the parent).
/// `allowUnsafe` skips the permission checks only.
public enum AutoloadRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// The path does not exist (or cannot be opened).
    case missing
    /// The parent directory has the sticky bit (a /tmp-like directory anyone can write into).
    case stickyParentDirectory
    /// A directory on the way (after symbolic links in it are resolved) could be changed by
    /// another user: owned by neither root nor the current user, or writable by group or others
    /// without the sticky bit.
    case unsafeDirectory(String)
    /// The path is a directory (only reachable through `safeToLaunch`; autoload expands directories).
    case isDirectory
    /// The last component is a symbolic link (what it points to could change after the check).
    case symbolicLink
    /// Not a regular file (a device, FIFO or socket).
    case notRegularFile
    /// The owner is neither root nor the current real uid.
    case unsafeOwner(uid: UInt32)
    /// The owner-execute bit is not set.
    case notExecutable
    /// The file is writable by others.
    case worldWritable
    /// The file is writable by its group.
    case groupWritable
    /// The name does not end in `.ext`.
    case badSuffix

    public var description: String {
        switch self {
        case .missing: "does not exist"
        case .stickyParentDirectory: "parent directory has the sticky bit"
        case .unsafeDirectory(let dir): "directory \(dir) may be changed by another user"
        case .isDirectory: "is a directory"
        case .symbolicLink: "is a symbolic link"
        case .notRegularFile: "not a regular file"
        case .unsafeOwner(let uid): "owned by uid \(uid), neither root nor the current user"
        case .notExecutable: "not executable by its owner"
        case .worldWritable: "world-writable"
        case .groupWritable: "group-writable"
        case .badSuffix: "name does not end in .ext"
        }
    }
}

/// Linux's `O_PATH` (not exported to Swift without _GNU_SOURCE): a descriptor that names a file
/// without opening it for reading (so a FIFO does not block, and an execute-only file opens).
let openPathOnly: Int32 = 0o10_000_000

/// An extension file opened once (`openPathOnly | O_NOFOLLOW`) and checked through its descriptor:
/// what runs is this descriptor (``ExtensionSupervisor``), so replacing the file after the check
/// changes nothing.
package final class OpenedExtension: Sendable {
    /// The descriptor (close-on-exec), valid while this object lives.
    package let descriptor: Int32

    init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { close(descriptor) }
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
        switch open(path: path, allowUnsafe: allowUnsafe) {
        case .success: return nil
        case .failure(let reason): return reason
        }
    }

    /// True when `path` may be launched now (see `launchRefusal`).
    public static func safeToLaunch(path: String, allowUnsafe: Bool) -> Bool {
        launchRefusal(path: path, allowUnsafe: allowUnsafe) == nil
    }

    /// Opens the file to launch and checks it: the directories above it one by one from `/`
    /// (each opened relative to the one before, without following links, after the path's
    /// directory is resolved once), then the file itself through its own descriptor. Nothing is
    /// looked up by name twice. With `allowUnsafe` only existence is checked, and a symbolic link
    /// is followed.
    package static func open(path: String, allowUnsafe: Bool) -> Result<OpenedExtension, AutoloadRefusal> {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        if allowUnsafe || trimmed.isEmpty || trimmed.hasSuffix("/") {
            // Without the checks the path may name anything (a directory fails when it runs).
            let fd = Glibc.open(String(trimmed.isEmpty ? "." : trimmed), openPathOnly | O_CLOEXEC)
            guard fd >= 0 else { return .failure(.missing) }
            if !allowUnsafe { close(fd); return .failure(.isDirectory) }
            return .success(OpenedExtension(descriptor: fd))
        }
        let name = trimmed.lastIndex(of: "/").map { String(trimmed[trimmed.index(after: $0)...]) } ?? String(trimmed)
        guard name != ".", name != ".." else { return .failure(.isDirectory) }
        guard let directory = realPath(parentDirectory(of: path)) else { return .failure(.missing) }
        let uid = getuid()
        var dirFD = Glibc.open("/", openPathOnly | O_DIRECTORY | O_CLOEXEC)
        guard dirFD >= 0 else { return .failure(.missing) }
        defer { close(dirFD) }
        let components = directory.split(separator: "/").map(String.init)
        var walked = ""
        for index in 0...components.count {
            var st = stat()
            guard fstat(dirFD, &st) == 0 else { return .failure(.missing) }
            let isParent = index == components.count
            if isParent, st.st_mode & 0o1000 != 0 { return .failure(.stickyParentDirectory) }
            let sticky = st.st_mode & 0o1000 != 0
            if (st.st_uid != 0 && st.st_uid != uid) || (st.st_mode & 0o022 != 0 && !sticky) {
                return .failure(.unsafeDirectory(walked.isEmpty ? "/" : walked))
            }
            if isParent { break }
            let next = openat(dirFD, components[index], openPathOnly | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else { return .failure(.missing) }
            close(dirFD)
            dirFD = next
            walked += "/" + components[index]
        }
        let fd = openat(dirFD, name, openPathOnly | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return .failure(.missing) }
        let opened = OpenedExtension(descriptor: fd)
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.missing) }
        switch st.st_mode & 0o170000 {
        case 0o100000: break
        case 0o040000: return .failure(.isDirectory)
        case 0o120000: return .failure(.symbolicLink)
        default: return .failure(.notRegularFile)
        }
        if st.st_uid != 0 && st.st_uid != uid { return .failure(.unsafeOwner(uid: st.st_uid)) }
        if st.st_mode & 0o100 == 0 { return .failure(.notExecutable) }
        if st.st_mode & 0o002 != 0 { return .failure(.worldWritable) }
        if st.st_mode & 0o020 != 0 { return .failure(.groupWritable) }
        return .success(opened)
    }

    /// The canonical form of a directory path (symbolic links resolved), nil when it cannot be resolved.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
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
