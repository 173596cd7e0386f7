import Foundation
import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Which file a result line goes to.
public enum ResultKind: String, Sendable {
    /// Differential results: `osqueryd.results.log`.
    case results
    /// Snapshot queries: `osqueryd.snapshots.log`.
    case snapshot
}

/// The `filesystem` logger's result files, with the primitives the result
/// pipeline needs to append exactly once across crashes: the size before an
/// append, the append (fsynced), and checking or repairing the bytes at an
/// offset. Errors (ENOSPC, EIO, …) are thrown, never fatal: the pipeline
/// keeps the lines and retries.
///
/// Rotation (`--logger_rotate`): before a write, a file at or above
/// `--logger_rotate_size` becomes `.1`, older ones shift up to
/// `--logger_rotate_max_files`. Rotated files are not zstd-compressed.
final class FilesystemLogger: Sendable {
    let directory: String
    let mode: mode_t
    let rotate: Bool
    let rotateSize: UInt64
    let maxFiles: Int
    private let lock = Mutex(())

    static let resultsFile = "osqueryd.results.log"
    static let snapshotsFile = "osqueryd.snapshots.log"

    init(directory: String, mode: mode_t, rotate: Bool = false, rotateSize: UInt64 = 26_214_400, maxFiles: Int = 25) {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.mode = mode
        self.rotate = rotate
        self.rotateSize = max(1, rotateSize)
        self.maxFiles = max(1, maxFiles)
    }

    convenience init(flags: Flags) {
        self.init(
            directory: flags[.loggerPath], mode: Self.parseMode(flags[.loggerMode]),
            rotate: flags[.loggerRotate], rotateSize: flags[.loggerRotateSize],
            maxFiles: Int(clamping: flags[.loggerRotateMaxFiles]))
    }

    /// `--logger_mode` is an octal string ("0640"); anything else gives 0640.
    static func parseMode(_ text: String) -> mode_t {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty, let v = UInt32(t, radix: 8), v <= 0o7777 else { return 0o640 }
        return mode_t(v)
    }

    func path(_ kind: ResultKind) -> String {
        "\(directory)/\(kind == .results ? Self.resultsFile : Self.snapshotsFile)"
    }

    private func failure(_ what: String, _ path: String) -> DaemonError {
        DaemonError("Cannot \(what) \(path): \(String(cString: strerror(errno)))")
    }

    /// Creates the directory and the file when missing, rotates when due, and
    /// returns the file's size: where the next append starts.
    func prepare(_ kind: ResultKind) throws(DaemonError) -> UInt64 {
        try lock.withLock { (_: inout ()) throws(DaemonError) -> UInt64 in
            let p = path(kind)
            if !FileManager.default.fileExists(atPath: directory) {
                do {
                    try FileManager.default.createDirectory(
                        atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
                } catch {
                    throw DaemonError("Cannot create logger directory \(directory): \(error.localizedDescription)")
                }
            }
            var st = stat()
            if rotate, stat(p, &st) == 0, UInt64(st.st_size) >= rotateSize { rotateFiles(p) }
            let fd = try openFile(p)
            defer { close(fd) }
            guard fstat(fd, &st) == 0 else { throw failure("stat", p) }
            return UInt64(st.st_size)
        }
    }

    private func openFile(_ p: String) throws(DaemonError) -> Int32 {
        let created = access(p, F_OK) != 0
        let fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode)
        guard fd >= 0 else { throw failure("open", p) }
        // The umask must not loosen or tighten --logger_mode.
        if created { fchmod(fd, mode) }
        return fd
    }

    /// `.N` → `.N+1` from the oldest, the oldest beyond the limit removed, then
    /// the file → `.1`.
    private func rotateFiles(_ p: String) {
        unlink("\(p).\(maxFiles)")
        if maxFiles > 1 {
            for n in stride(from: maxFiles - 1, through: 1, by: -1) {
                rename("\(p).\(n)", "\(p).\(n + 1)")
            }
        }
        rename(p, "\(p).1")
    }

    /// Appends `text`. `midway`, for crash tests, runs after half the bytes.
    func append(_ kind: ResultKind, _ text: String, midway: (() throws(DaemonError) -> Void)? = nil) throws(DaemonError) {
        try lock.withLock { (_: inout ()) throws(DaemonError) in
            let p = path(kind)
            let fd = try openFile(p)
            defer { close(fd) }
            let bytes = Array(text.utf8)
            let half = midway == nil ? bytes.count : bytes.count / 2
            var ok = bytes.withUnsafeBufferPointer { writeAll(fd, UnsafeBufferPointer(rebasing: $0[0..<half])) }
            if ok, let midway {
                try midway()
                ok = bytes.withUnsafeBufferPointer { writeAll(fd, UnsafeBufferPointer(rebasing: $0[half...])) }
            }
            if !ok { throw failure("write", p) }
            try sync(fd, p)
        }
    }

    /// The pipeline moves its cursor past an entry only once the entry's bytes
    /// are on disk.
    private func sync(_ fd: Int32, _ p: String) throws(DaemonError) {
        while fsync(fd) != 0 {
            if errno != EINTR { throw failure("sync", p) }
        }
    }

    /// After a crash: whether the file already holds exactly `text` at
    /// `offset`; if it holds something else there (a torn write), it is cut
    /// back to `offset` and `text` written. A file shorter than `offset` was
    /// replaced by someone else (logrotate), so `text` is appended.
    func reconcile(_ kind: ResultKind, offset: UInt64, _ text: String) throws(DaemonError) {
        try lock.withLock { (_: inout ()) throws(DaemonError) in
            let p = path(kind)
            let fd = open(p, O_RDWR | O_CLOEXEC)
            if fd < 0 {
                // Gone: write it afresh.
                let w = try openFile(p)
                defer { close(w) }
                var copy = text
                if !copy.withUTF8({ writeAll(w, $0) }) { throw failure("write", p) }
                try sync(w, p)
                return
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw failure("stat", p) }
            let size = UInt64(st.st_size)
            var copy = text
            let expected = copy.withUTF8 { Array($0) }
            if size >= offset + UInt64(expected.count) {
                var have = [UInt8](repeating: 0, count: expected.count)
                let n = have.withUnsafeMutableBytes { pread(fd, $0.baseAddress, expected.count, off_t(offset)) }
                if n == expected.count && have == expected {
                    // Written before a crash, perhaps not yet on disk.
                    try sync(fd, p)
                    return
                }
            }
            if size >= offset {
                guard ftruncate(fd, off_t(offset)) == 0 else { throw failure("truncate", p) }
            }
            let w = try openFile(p)
            defer { close(w) }
            if !expected.withUnsafeBufferPointer({ writeAll(w, $0) }) { throw failure("write", p) }
            try sync(w, p)
        }
    }
}
