#if canImport(Glibc)
import Glibc
#endif

/// Small, allocation-conscious file helpers (no Foundation).
public enum FileIO {
    /// Read a whole file. Works for /proc and /sys files whose size is 0. `openFlags` are added
    /// to `O_RDONLY | O_CLOEXEC` (`O_NOFOLLOW`, say).
    public static func readAll(_ path: String, limit: Int = 64 << 20, openFlags: Int32 = 0) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | openFlags)
        if fd < 0 { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = 4096
        var st = stat()
        if fstat(fd, &st) == 0, st.st_size > 0 { chunk = min(Int(st.st_size) + 1, limit + 1) }
        while out.count < limit {
            let before = out.count
            let want = min(chunk, limit - before)
            var got = 0
            out.append(contentsOf: repeatElement(0, count: want))
            got = out.withUnsafeMutableBytes { buf in
                Glibc.read(fd, buf.baseAddress! + before, want)
            }
            if got < 0 {
                if errno == EINTR { out.removeLast(want); continue }
                return nil
            }
            out.removeLast(want - got)
            if got == 0 { break }
            chunk = max(chunk, 4096)
        }
        return out
    }

    /// Read a file into a caller-owned buffer (reused across calls);
    /// returns the number of bytes read or -1.
    public static func read(_ path: UnsafePointer<CChar>, into buffer: inout [UInt8]) -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return -1 }
        defer { close(fd) }
        if buffer.count < 4096 { buffer = [UInt8](repeating: 0, count: 4096) }
        var total = 0
        while true {
            if total == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
            let n = buffer.withUnsafeMutableBytes { buf in
                Glibc.read(fd, buf.baseAddress! + total, buf.count - total)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return total > 0 ? total : -1
            }
            if n == 0 { break }
            total += n
        }
        return total
    }

    public static func readString(_ path: String) -> String? {
        guard let bytes = readAll(path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// First line of a file without the trailing newline/whitespace.
    public static func readLine(_ path: String) -> String? {
        guard let s = readString(path) else { return nil }
        let line = s.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return line.trimmingASCIIWhitespace()
    }

    /// readlink(2) as raw bytes.
    public static func readLink(_ path: String) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBufferPointer { b in
            Glibc.readlink(path, UnsafeMutableRawPointer(b.baseAddress!).assumingMemoryBound(to: CChar.self), b.count)
        }
        if n < 0 { return nil }
        return Array(buf[0..<n])
    }

    /// Names in a directory (without . and ..), as raw bytes.
    public static func listDirectory(_ path: String) -> [[UInt8]]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var out: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name: [UInt8] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                let n = bytes.firstIndex(of: 0) ?? bytes.count
                return Array(bytes[0..<n])
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            out.append(name)
        }
        return out
    }

    public static func listDirectoryNames(_ path: String) -> [String]? {
        listDirectory(path)?.map { String(decoding: $0, as: UTF8.self) }
    }

    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}
