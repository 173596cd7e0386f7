import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Reads of configuration and database files for tables: regular files only (a FIFO or
/// device in their place is refused without blocking on open) and at most `read_max`
/// bytes, as osquery's `readFile`.
enum BoundedFile {
    /// The file's bytes; nil when it is missing, unreadable, not a regular file or larger
    /// than `limit` (0: no limit). /proc and /sys files, whose size is 0, read to their end.
    static func read(_ path: String, limit: UInt64) -> [UInt8]? {
        // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            StatusLog.info("Cannot read \(path): not a regular file")
            return nil
        }
        let cap = limit == 0 ? Int.max : Int(clamping: limit)
        if st.st_size > 0 && Int64(st.st_size) > Int64(clamping: cap) {
            StatusLog.info("Cannot read \(path): larger than read_max (\(limit) bytes)")
            return nil
        }
        var out = [UInt8](repeating: 0, count: st.st_size > 0 ? Int(st.st_size) + 1 : 4096)
        var count = 0
        while true {
            if count == out.count {
                if count > cap {
                    StatusLog.info("Cannot read \(path): larger than read_max (\(limit) bytes)")
                    return nil
                }
                out.append(contentsOf: repeatElement(0, count: min(out.count, 1 << 20)))
            }
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            count += n
        }
        if count > cap {
            StatusLog.info("Cannot read \(path): larger than read_max (\(limit) bytes)")
            return nil
        }
        out.removeSubrange(count...)
        return out
    }

    /// The file as text (invalid UTF-8 repaired), or nil as `read`.
    static func text(_ path: String, limit: UInt64) -> String? {
        read(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The regular files directly in a directory (symbolic links followed), sorted by name.
    static func files(in directory: String) -> [String] {
        var out: [String] = []
        for name in FileIO.listDirectoryNames(directory) ?? [] {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            var st = stat()
            if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { out.append(path) }
        }
        return out.sorted()
    }
}

/// osquery's `split(text, delimiters)`: tokens between any of the delimiters, each trimmed of
/// ASCII whitespace, empty tokens dropped. Split by scalars, as osquery splits bytes: Swift
/// holds `\r\n` as one Character, which a `\n` delimiter would not match.
func osquerySplit<S: StringProtocol>(_ text: S, _ delimiters: String = " \t") -> [String] {
    let set = Set(delimiters.unicodeScalars)
    return Substring(text).unicodeScalars.split(whereSeparator: { set.contains($0) }).compactMap { token in
        let trimmed = String(Substring(token)).trimmingASCIIWhitespace()
        return trimmed.isEmpty ? nil : trimmed
    }
}
