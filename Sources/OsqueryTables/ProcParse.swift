import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

// Allocation-free parsers for the /proc/<pid> files the processes table reads. Each takes the
// file's bytes as read (a view into the reader's reused buffer) and produces the exact values the
// earlier String/Array-based parsing did, so the table's output does not change.

/// Text from bytes read out of /proc: a `String` when the bytes are valid UTF-8, the bytes
/// themselves otherwise (as `SQLValue.text(bytes:)`, without its generic initializer's runtime
/// metadata lookup on every call).
@inline(__always)
func procText(_ bytes: UnsafeBufferPointer<UInt8>) -> SQLValue {
    var ascii = true
    for b in bytes where b >= 0x80 { ascii = false; break }
    let text = String(decoding: bytes, as: UTF8.self)
    if ascii { return .text(text) }
    // Decoding repairs invalid UTF-8, so the input was valid exactly when nothing changed.
    var copy = text
    let same = copy.withUTF8 { out in
        out.count == bytes.count && (bytes.isEmpty || memcmp(out.baseAddress!, bytes.baseAddress!, bytes.count) == 0)
    }
    return same ? .text(text) : .blob(Array(bytes))
}

/// A decimal integer at `bytes[from..<to]`, optional leading '-', stopping at the first non-digit
/// (as `parseInt`).
@inline(__always)
func procInt(_ b: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> Int64 {
    var i = from
    var negative = false
    if i < to && b[i] == UInt8(ascii: "-") { negative = true; i += 1 }
    var v: Int64 = 0
    while i < to {
        let d = b[i]
        guard d >= 48 && d <= 57 else { break }
        v = v &* 10 &+ Int64(d &- 48)
        i += 1
    }
    return negative ? -v : v
}

/// The fields of /proc/<pid>/stat the processes table uses.
struct ProcStat {
    var name: SQLValue
    var state: SQLValue
    var ppid: Int64 = 0, pgrp: Int64 = 0
    var utime: Int64 = 0, stime: Int64 = 0
    var nice: Int64 = 0, threads: Int64 = 0
    var start: Int64 = 0, vsize: Int64 = 0, rss: Int64 = 0

    /// Parse "pid (comm) S ppid pgrp …". comm may hold spaces and ')', so it runs from the first
    /// '(' to the last ')'. Nil when the text is cut short (fewer than 21 fields after the state).
    static func parse(_ b: UnsafeBufferPointer<UInt8>) -> ProcStat? {
        let n = b.count
        var open = -1
        for i in 0..<n where b[i] == 40 { open = i; break }
        var close = -1
        var k = n - 1
        while k >= 0 { if b[k] == 41 { close = k; break }; k -= 1 }
        guard open >= 0, close > open else { return nil }
        var stat = ProcStat(name: procText(UnsafeBufferPointer(rebasing: b[(open + 1)..<close])), state: .text(""))
        var i = close + 2
        if i < n { stat.state = .text(String(UnicodeScalar(b[i]))) }
        i += 2
        // Field 0 is ppid (stat's 4th field); the table needs fields 0, 1, 10, 11, 15, 16, 18, 19, 20.
        var field = 0
        while i < n && field < 22 {
            var j = i
            while j < n && b[j] != 32 && b[j] != 10 { j += 1 }
            switch field {
            case 0: stat.ppid = procInt(b, i, j)
            case 1: stat.pgrp = procInt(b, i, j)
            case 10: stat.utime = procInt(b, i, j)
            case 11: stat.stime = procInt(b, i, j)
            case 15: stat.nice = procInt(b, i, j)
            case 16: stat.threads = procInt(b, i, j)
            case 18: stat.start = procInt(b, i, j)
            case 19: stat.vsize = procInt(b, i, j)
            case 20: stat.rss = procInt(b, i, j)
            default: break
            }
            field += 1
            i = j + 1
        }
        return field >= 21 ? stat : nil
    }
}

/// Real, effective and saved uid and gid from /proc/<pid>/status ("Uid:\tR\tE\tS\tFS"); -1 for
/// any line missing or short.
struct ProcIDs: Equatable {
    var uid: Int64 = -1, euid: Int64 = -1, suid: Int64 = -1
    var gid: Int64 = -1, egid: Int64 = -1, sgid: Int64 = -1

    static func parse(_ b: UnsafeBufferPointer<UInt8>) -> ProcIDs {
        var ids = ProcIDs()
        let m = b.count
        var lineStart = 0
        var found = 0
        while lineStart < m && found < 2 {
            var end = lineStart
            while end < m && b[end] != 10 { end += 1 }
            let long = end - lineStart > 4 && b[lineStart + 1] == 105 && b[lineStart + 2] == 100 && b[lineStart + 3] == 58
            let isUid = long && b[lineStart] == 85  // "Uid:"
            let isGid = long && b[lineStart] == 71  // "Gid:"
            if isUid || isGid {
                var values: (Int64, Int64, Int64) = (0, 0, 0)
                var count = 0
                var i = lineStart + 4
                while i < end && count < 3 {
                    while i < end && (b[i] == 9 || b[i] == 32) { i += 1 }
                    var j = i
                    while j < end && b[j] != 9 && b[j] != 32 { j += 1 }
                    if j > i {
                        let v = procInt(b, i, j)
                        switch count {
                        case 0: values.0 = v
                        case 1: values.1 = v
                        default: values.2 = v
                        }
                        count += 1
                    }
                    i = j
                }
                if count == 3 {
                    if isUid {
                        ids.uid = values.0; ids.euid = values.1; ids.suid = values.2
                    } else {
                        ids.gid = values.0; ids.egid = values.1; ids.sgid = values.2
                    }
                }
                found += 1
            }
            lineStart = end + 1
        }
        return ids
    }
}

enum ProcParse {
    /// /proc/<pid>/cmdline with the NUL separators as spaces and trailing NULs dropped
    /// (rewrites the buffer in place). Kernel threads have an empty one.
    static func cmdline(_ b: UnsafeMutableBufferPointer<UInt8>) -> SQLValue {
        var end = b.count
        while end > 0 && b[end - 1] == 0 { end -= 1 }
        for i in 0..<end where b[i] == 0 { b[i] = 32 }
        return procText(UnsafeBufferPointer(rebasing: b[0..<end]))
    }

    /// The exe link target without the kernel's " (deleted)" suffix, and whether it was absent
    /// from disk (on_disk 0) or present (1).
    static func executable(_ b: UnsafeBufferPointer<UInt8>) -> (path: SQLValue, onDisk: Int64) {
        let suffix: StaticString = " (deleted)"
        let s = suffix.utf8CodeUnitCount
        if b.count > s && memcmp(b.baseAddress! + (b.count - s), suffix.utf8Start, s) == 0 {
            return (procText(UnsafeBufferPointer(rebasing: b[0..<(b.count - s)])), 0)
        }
        return (procText(b), 1)
    }

    /// read_bytes and write_bytes: the values of /proc/<pid>/io's 5th and 6th lines
    /// ("name: value"); -1 when absent.
    static func io(_ b: UnsafeBufferPointer<UInt8>) -> (read: Int64, written: Int64) {
        var readBytes: Int64 = -1, writeBytes: Int64 = -1
        let m = b.count
        var line = 0, i = 0
        while i < m && line < 6 {
            var j = i
            while j < m && b[j] != 10 { j += 1 }
            if line == 4 || line == 5 {
                var colon = i
                while colon < j && b[colon] != 58 { colon += 1 }
                if colon < j {
                    let v = procInt(b, min(colon + 2, j), j)
                    if line == 4 { readBytes = v } else { writeBytes = v }
                }
            }
            line += 1
            i = j + 1
        }
        return (readBytes, writeBytes)
    }

    /// The cgroup v2 path: after the last ':' of the "0::" line, else of the first line.
    static func cgroup(_ b: UnsafeBufferPointer<UInt8>) -> SQLValue {
        let m = b.count
        var chosen: Range<Int>? = nil
        var i = 0
        while i < m {
            var j = i
            while j < m && b[j] != 10 { j += 1 }
            if j > i {  // empty lines do not count, as with split(separator:)
                if chosen == nil { chosen = i..<j }
                if j - i >= 3 && b[i] == 48 && b[i + 1] == 58 && b[i + 2] == 58 { chosen = i..<j; break }
            }
            i = j + 1
        }
        guard let line = chosen else { return .text("") }
        var colon = line.upperBound - 1
        while colon >= line.lowerBound && b[colon] != 58 { colon -= 1 }
        guard colon >= line.lowerBound else { return .text("") }
        // Invalid UTF-8 is repaired here, as the String-based parse did.
        return .text(String(decoding: UnsafeBufferPointer(rebasing: b[(colon + 1)..<line.upperBound]), as: UTF8.self))
    }
}
