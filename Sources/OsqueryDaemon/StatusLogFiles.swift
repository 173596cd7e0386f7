import Foundation
import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Status logs as glog writes them for osqueryd's filesystem logger: files
/// `<dir>/<binary>.<SEVERITY>.<YYYYMMDD-HHMMSS>.<pid>` created at the first
/// line of that severity, with symlinks `<dir>/<binary>.<SEVERITY>` pointing
/// at the current file. As in glog, the INFO file holds every line, WARNING
/// warnings and errors, ERROR errors only.
final class StatusLogFiles: Sendable {
    let directory: String
    let binary: String
    let mode: mode_t
    private let fds = Mutex<[Int32]>([-1, -1, -1])

    static let severityNames = ["INFO", "WARNING", "ERROR"]

    init(directory: String, binary: String = "osqueryd", mode: mode_t) {
        self.directory = directory
        self.binary = binary
        self.mode = mode
    }

    /// Whether the status files can be written there (osquery falls back to
    /// stderr when not).
    static func writable(_ directory: String) -> Bool {
        _ = try? FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) && isDir.boolValue
            && access(directory, W_OK) == 0
    }

    /// Writes one formatted glog line (no newline) at `severity`; false when a
    /// file could not take it (ENOSPC, EIO). A file that could not be created
    /// is tried again at the next line.
    @discardableResult
    func write(_ severity: StatusLog.Severity, _ line: String) -> Bool {
        var text = line
        text += "\n"
        return fds.withLock { fds in
            var ok = true
            for level in 0...severity.rawValue {
                if fds[level] < 0 { fds[level] = create(level) }
                guard fds[level] >= 0 else {
                    ok = false
                    continue
                }
                if !text.withUTF8({ buf in writeAll(fds[level], buf) }) { ok = false }
            }
            return ok
        }
    }

    /// The path of the file currently written for `severity`, if any.
    func currentPath(_ severity: StatusLog.Severity) -> String? {
        let link = "\(directory)/\(binary).\(Self.severityNames[severity.rawValue])"
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else { return nil }
        return target.hasPrefix("/") ? target : "\(directory)/\(target)"
    }

    func close() {
        fds.withLock { fds in
            for i in fds.indices where fds[i] >= 0 {
                Glibc.close(fds[i])
                fds[i] = -1
            }
        }
    }

    private func create(_ level: Int) -> Int32 {
        var now = time(nil)
        var tmv = tm()
        localtime_r(&now, &tmv)
        func pad(_ v: Int32, _ w: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let stamp = pad(tmv.tm_year + 1900, 4) + pad(tmv.tm_mon + 1) + pad(tmv.tm_mday) + "-" + pad(tmv.tm_hour)
            + pad(tmv.tm_min) + pad(tmv.tm_sec)
        let name = "\(binary).\(Self.severityNames[level]).\(stamp).\(getpid())"
        let path = "\(directory)/\(name)"
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode)
        guard fd >= 0 else { return -1 }
        fchmod(fd, mode)
        var hostname = [CChar](repeating: 0, count: 256)
        gethostname(&hostname, 255)
        let host = String(decoding: hostname.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var header = "Log file created at: " + pad(tmv.tm_year + 1900, 4) + "/" + pad(tmv.tm_mon + 1) + "/" + pad(tmv.tm_mday)
        header += " " + pad(tmv.tm_hour) + ":" + pad(tmv.tm_min) + ":" + pad(tmv.tm_sec) + "\n"
        header += "Running on machine: \(host)\n"
        header += "Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg\n"
        header.withUTF8 { buf in _ = writeAll(fd, buf) }
        let link = "\(directory)/\(binary).\(Self.severityNames[level])"
        unlink(link)
        symlink(name, link)
        return fd
    }
}

/// Writes the whole buffer, retrying short writes and EINTR; false on error.
@discardableResult
func writeAll(_ fd: Int32, _ buf: UnsafeBufferPointer<UInt8>) -> Bool {
    guard var p = buf.baseAddress else { return true }
    var left = buf.count
    while left > 0 {
        let n = Glibc.write(fd, p, left)
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        p += n
        left -= n
    }
    return true
}
