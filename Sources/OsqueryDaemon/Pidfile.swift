import Foundation
import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osqueryd's pidfile (`--pidfile`): one daemon per pidfile. The file is
/// locked with flock(2) for the daemon's lifetime, so a stale file left by a
/// killed daemon never blocks a new one (osquery reads the pid and checks
/// the process instead, which a recycled pid can fool).
public final class Pidfile: Sendable {
    public let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Takes the pidfile. When another daemon holds it: with `force`, that
    /// daemon is terminated if its process name starts with `osqueryd`, and
    /// the lock is retried 5 times 2 s apart (osquery's `--force`); otherwise
    /// `Pidfile check failed`, exit code 1.
    public static func acquire(path: String, force: Bool, retryDelay: Duration = .seconds(2)) throws(DaemonError) -> Pidfile {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw DaemonError("Pidfile check failed: cannot open \(path): \(String(cString: strerror(errno)))")
        }
        var attempts = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = Self.readPid(fd)
            guard force, attempts < 5 else {
                close(fd)
                throw DaemonError("Pidfile check failed: \(path) is held by another osqueryd (pid \(holder.map(String.init) ?? "unknown"))")
            }
            if let pid = holder, Self.processName(pid).hasPrefix("osqueryd") {
                StatusLog.warning("Killing the osqueryd holding \(path) (pid \(pid))")
                kill(pid, SIGTERM)
            }
            attempts += 1
            let d = retryDelay.components
            usleep(UInt32(d.seconds * 1_000_000 + d.attoseconds / 1_000_000_000_000))
        }
        let text = "\(getpid())\n"
        ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return Pidfile(path: path, fd: fd)
    }

    /// Removes the file and drops the lock.
    public func release() {
        unlink(path)
        close(fd)
    }

    static func readPid(_ fd: Int32) -> pid_t? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, 31, 0)
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return pid_t(text)
    }

    static func processName(_ pid: pid_t) -> String {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    }
}
