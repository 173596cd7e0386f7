import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Shorthand for table declarations.
func col(_ name: String, _ type: ColumnType, _ options: ColumnOptions = []) -> TableColumn {
    TableColumn(name, type, options)
}

/// Hidden container-introspection columns osquery declares on many tables.
/// (Running a table in another process's mount namespace is not supported
/// yet; the columns exist so queries naming them still parse.)
let pidWithNamespace = col("pid_with_namespace", .integer, [.additional, .hidden])
let mountNamespaceID = col("mount_namespace_id", .text, .hidden)

/// A table built from a closure.
func table(
    _ name: String,
    _ columns: [TableColumn],
    aliases: [String] = [],
    columnAliases: [(alias: String, target: String)] = [],
    attributes: TableAttributes = [],
    generate: @escaping @Sendable (QueryContext, TableSchema) throws -> TableRows
) -> FunctionTable {
    let schema = TableSchema(name: name, columns: columns, aliases: aliases, columnAliases: columnAliases, attributes: attributes)
    return FunctionTable(schema) { context in try generate(context, schema) }
}

enum Text {
    /// Lines of a text file (empty when unreadable).
    static func lines(_ path: String) -> [Substring] {
        guard let s = FileIO.readString(path) else { return [] }
        return s.split(separator: "\n", omittingEmptySubsequences: true)
    }

    /// `key: value` / `key=value` pairs.
    static func keyValues(_ path: String, separator: Character) -> [String: String] {
        var out: [String: String] = [:]
        for line in lines(path) {
            guard let i = line.firstIndex(of: separator) else { continue }
            let key = String(line[..<i]).trimmingASCIIWhitespace()
            let value = String(line[line.index(after: i)...]).trimmingASCIIWhitespace()
            if out[key] == nil { out[key] = value }
        }
        return out
    }

    static func unquote(_ s: String) -> String {
        var v = Substring(s)
        if v.count >= 2, let f = v.first, f == "\"" || f == "'", v.last == f {
            v = v.dropFirst().dropLast()
        }
        return String(v)
    }

    /// Whitespace-separated fields.
    static func fields<S: StringProtocol>(_ line: S) -> [Substring] {
        line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { Substring($0) }
    }
}

enum Host {
    static func uname() -> (sysname: String, release: String, version: String, machine: String, nodename: String) {
        var u = utsname()
        Glibc.uname(&u)
        func s<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                let n = bytes.firstIndex(of: 0) ?? bytes.count
                return String(decoding: bytes[0..<n], as: UTF8.self)
            }
        }
        return (s(u.sysname), s(u.release), s(u.version), s(u.machine), s(u.nodename))
    }

    static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, 255)
        return cString(buf)
    }

    /// The host UUID: DMI product UUID when readable, else /etc/machine-id as a UUID.
    static let uuid: String = {
        if let v = FileIO.readLine("/sys/class/dmi/id/product_uuid"), !v.isEmpty { return v.uppercased() }
        if let id = FileIO.readLine("/etc/machine-id"), id.count == 32 {
            let c = Array(id.uppercased())
            return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
        }
        return ""
    }()

    /// A random UUID (v4) from /dev/urandom.
    static func randomUUID() -> String {
        var bytes = FileIO.readAll("/dev/urandom", limit: 16) ?? []
        if bytes.count < 16 { bytes = (0..<16).map { _ in UInt8.random(in: 0...255) } }
        bytes[6] = bytes[6] & 0x0f | 0x40
        bytes[8] = bytes[8] & 0x3f | 0x80
        let hex = bytes.map { b -> String in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    static let clockTicks: Int64 = Int64(sysconf(Int32(_SC_CLK_TCK)))
    static let pageSize: Int64 = Int64(sysconf(Int32(_SC_PAGESIZE)))

    /// Boot time (Unix seconds) from /proc/stat's btime.
    static var bootTime: Int64 {
        for line in Text.lines("/proc/stat") where line.hasPrefix("btime ") {
            return Int64(line.dropFirst(6).trimmingCharacters()) ?? 0
        }
        return 0
    }

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }
}

extension Substring {
    func trimmingCharacters() -> String { String(self).trimmingASCIIWhitespace() }
}

/// A simple numeric parse of a byte slice (ASCII decimal, optional minus).
@inline(__always)
func parseInt<C: Collection>(_ bytes: C) -> Int64 where C.Element == UInt8 {
    var v: Int64 = 0
    var negative = false
    var first = true
    for b in bytes {
        if first && b == UInt8(ascii: "-") { negative = true; first = false; continue }
        first = false
        guard b >= 48 && b <= 57 else { break }
        v = v &* 10 &+ Int64(b - 48)
    }
    return negative ? -v : v
}

/// A NUL-terminated C buffer as a String.
func cString(_ buffer: [CChar]) -> String {
    let n = buffer.firstIndex(of: 0) ?? buffer.count
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
