import CSQLite
import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// rpm_packages and rpm_package_files: the rpm database read as the SQLite file it is since
/// rpm 4.16 (`rpmdb.sqlite`, one header blob per installed package), or the Berkeley DB hash
/// (`Packages`) of older rpm, each header decoded as librpm decodes it for osquery.
extension PackageTables {
    /// Where rpm keeps its database: the distributions' `%_dbpath`, the first that holds one.
    static let rpmDatabaseDirectories = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"]

    static func rpmPackages(flags: Flags, directories: [String] = rpmDatabaseDirectories) -> FunctionTable {
        table("rpm_packages", [
            col("name", .text, [.index, .optimized]), col("version", .text, [.index, .collateVersionRhel]),
            col("release", .text, .index), col("source", .text), col("size", .bigint), col("sha1", .text, .collateNocase),
            col("arch", .text, .index), col("epoch", .integer, .index), col("install_time", .integer), col("vendor", .text),
            col("package_group", .text), pidWithNamespace, mountNamespaceID,
        ], attributes: .cacheable) { context, schema in
            var rows = TableRows(schema: schema)
            let names = Set(context.equalities(for: "name"))
            RPMDatabase.forEachHeader(directories: directories, flags: flags) { header in
                if !names.isEmpty && !names.contains(header.string(RPMTag.name) ?? "") { return }
                for tag in [RPMTag.name, RPMTag.version, RPMTag.release, RPMTag.sourceRPM] {
                    rows.append(.text(header.string(tag) ?? ""))
                }
                rows.append(header.number(RPMTag.size).map { .integer($0) } ?? .null)
                rows.append(.text(header.string(RPMTag.sha1Header) ?? ""))
                rows.append(.text(header.string(RPMTag.arch) ?? ""))
                rows.append(header.number(RPMTag.epoch).map { .integer($0) } ?? .null)
                rows.append(header.number(RPMTag.installTime).map { .integer($0) } ?? .null)
                rows.append(.text(header.string(RPMTag.vendor) ?? ""))
                rows.append(.text(header.string(RPMTag.group) ?? ""))
                rows.append(.integer(0))
                rows.append(.null)
            }
            return rows
        }
    }

    /// osquery skips packages of more files than this (MAX_RPM_FILES).
    static let rpmMaxFiles = 64 * 1024

    static func rpmPackageFiles(flags: Flags, directories: [String] = rpmDatabaseDirectories) -> FunctionTable {
        table("rpm_package_files", [
            col("package", .text, [.index, .optimized]), col("path", .text, .index), col("username", .text),
            col("groupname", .text), col("mode", .text), col("size", .bigint), col("sha256", .text, .collateNocase),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let packages = Set(context.equalities(for: "package"))
            RPMDatabase.forEachHeader(directories: directories, flags: flags) { header in
                let name = header.string(RPMTag.name) ?? ""
                if !packages.isEmpty && !packages.contains(name) { return }
                guard let basenames = header.strings(RPMTag.basenames), let dirnames = header.strings(RPMTag.dirnames),
                      let dirIndexes = header.numbers(RPMTag.dirIndexes),
                      !basenames.isEmpty, !dirnames.isEmpty, dirIndexes.count == basenames.count,
                      dirIndexes.allSatisfy({ $0 >= 0 && $0 < dirnames.count }) else { return }
                guard basenames.count <= rpmMaxFiles else { return }
                let users = header.strings(RPMTag.fileUsername)
                let groups = header.strings(RPMTag.fileGroupname)
                let modes = header.numbers(RPMTag.fileModes)
                let sizes = header.numbers(RPMTag.fileSizes) ?? header.numbers(RPMTag.longFileSizes)
                // librpm's default digest is MD5; only SHA-256 ones are reported.
                var algorithm: Int64 = 1
                if let a = header.numbers(RPMTag.fileDigestAlgo)?.first, [1, 2, 8, 9, 10, 11].contains(a) { algorithm = a }
                let digests = header.strings(RPMTag.fileDigests)
                for i in 0..<basenames.count {
                    rows.append(.text(name))
                    rows.append(.text(dirnames[Int(dirIndexes[i])] + basenames[i]))
                    rows.append(.text(users.flatMap { i < $0.count ? $0[i] : nil } ?? ""))
                    rows.append(.text(groups.flatMap { i < $0.count ? $0[i] : nil } ?? ""))
                    rows.append(.text(lsperms(modes.flatMap { i < $0.count ? $0[i] : nil } ?? 0)))
                    rows.append(.integer(sizes.flatMap { i < $0.count ? $0[i] : nil } ?? 0))
                    if algorithm == 8 {
                        // librpm keeps an empty digest (a directory, a link) as zero bytes.
                        if let digests {
                            let digest = i < digests.count ? digests[i] : ""
                            rows.append(.text(digest.isEmpty ? String(repeating: "0", count: 64) : digest))
                        } else {
                            rows.append("")
                        }
                    } else {
                        rows.append(.null)
                    }
                }
            }
            return rows
        }
    }

    /// osquery's `lsperms`: the permission bits as four octal digits.
    static func lsperms(_ mode: Int64) -> String {
        let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7"]
        return String([9, 6, 3, 0].map { digits[Int((mode >> Int64($0)) & 7)] })
    }
}

/// The header tags the tables read (rpmtag.h).
enum RPMTag {
    static let sha1Header: Int32 = 269
    static let name: Int32 = 1000
    static let version: Int32 = 1001
    static let release: Int32 = 1002
    static let epoch: Int32 = 1003
    static let installTime: Int32 = 1008
    static let size: Int32 = 1009
    static let vendor: Int32 = 1011
    static let group: Int32 = 1016
    static let arch: Int32 = 1022
    static let fileSizes: Int32 = 1028
    static let fileModes: Int32 = 1030
    static let fileDigests: Int32 = 1035
    static let fileUsername: Int32 = 1039
    static let fileGroupname: Int32 = 1040
    static let sourceRPM: Int32 = 1044
    static let dirIndexes: Int32 = 1116
    static let basenames: Int32 = 1117
    static let dirnames: Int32 = 1118
    static let longFileSizes: Int32 = 5008
    static let fileDigestAlgo: Int32 = 5011
}

/// One package header as stored in the database: `il` index entries of (tag, type, offset,
/// count) and `dl` bytes of data, all big-endian. Every entry is checked against the blob
/// before it is read; a header that does not add up is skipped, as librpm skips it.
struct RPMHeader {
    private let blob: [UInt8]
    /// tag → (type, offset into the data, count); an entry after the immutable region (a
    /// "dribble" entry added at install time) replaces one of the same tag.
    private let entries: [Int32: (type: UInt32, offset: Int, count: Int)]
    private let dataStart: Int

    /// rpm's own limits on a header (hdrchkTags / hdrchkData).
    static let maxTags = 0x00FF_FFFF
    static let maxData = 0x0FFF_FFFF

    init?(_ blob: [UInt8]) {
        func be32(_ at: Int) -> UInt32 {
            UInt32(blob[at]) << 24 | UInt32(blob[at + 1]) << 16 | UInt32(blob[at + 2]) << 8 | UInt32(blob[at + 3])
        }
        guard blob.count >= 8 else { return nil }
        let il = Int(be32(0)), dl = Int(be32(4))
        guard il >= 1, il <= Self.maxTags, dl <= Self.maxData, 8 + il * 16 + dl <= blob.count else { return nil }
        let start = 8 + il * 16
        var entries: [Int32: (type: UInt32, offset: Int, count: Int)] = [:]
        for i in 0..<il {
            let at = 8 + i * 16
            let tag = Int32(bitPattern: be32(at)), type = be32(at + 4)
            let offset = Int(Int32(bitPattern: be32(at + 8))), count = Int(be32(at + 12))
            guard offset >= 0, offset <= dl, count <= dl + 1 else { continue }
            // Fixed-width values must lie inside the data; strings are bounded as they are read.
            let width: Int
            switch type {
            case 1, 2, 7: width = 1
            case 3: width = 2
            case 4: width = 4
            case 5: width = 8
            default: width = 0  // strings (6, 8, 9) are checked below
            }
            guard offset + width * count <= dl else { continue }
            if width == 0 {
                // librpm refuses a header whose strings are not terminated inside its data.
                let strings = type == 6 ? 1 : count
                var at = start + offset, found = 0
                while found < strings, at < start + dl, let nul = blob[at..<(start + dl)].firstIndex(of: 0) {
                    found += 1
                    at = nul + 1
                }
                if [6, 8, 9].contains(type) && found < strings { return nil }
            }
            entries[tag] = (type, offset, count)
        }
        self.blob = blob
        self.entries = entries
        dataStart = start
        dataEnd = start + dl
    }

    private let dataEnd: Int

    /// The strings of a STRING, STRING_ARRAY or I18NSTRING entry (the first translation).
    func strings(_ tag: Int32) -> [String]? {
        guard let e = entries[tag], [6, 8, 9].contains(e.type) else { return nil }
        let count = e.type == 6 ? 1 : e.count
        var out: [String] = []
        out.reserveCapacity(min(count, 1 << 16))
        var at = dataStart + e.offset
        for _ in 0..<count {
            guard at < dataEnd, let end = blob[at..<dataEnd].firstIndex(of: 0) else { return nil }
            out.append(String(decoding: blob[at..<end], as: UTF8.self))
            at = end + 1
        }
        return out
    }

    /// A string entry's value (an array's first element, as rpmtdGetString).
    func string(_ tag: Int32) -> String? { strings(tag)?.first }

    /// The values of an integer entry, unsigned as librpm reads them.
    func numbers(_ tag: Int32) -> [Int64]? {
        guard let e = entries[tag] else { return nil }
        let base = dataStart + e.offset
        var out: [Int64] = []
        out.reserveCapacity(e.count)
        switch e.type {
        case 1, 2: for i in 0..<e.count { out.append(Int64(blob[base + i])) }
        case 3: for i in 0..<e.count { out.append(Int64(UInt16(blob[base + 2 * i]) << 8 | UInt16(blob[base + 2 * i + 1]))) }
        case 4:
            for i in 0..<e.count {
                let at = base + 4 * i
                out.append(Int64(UInt32(blob[at]) << 24 | UInt32(blob[at + 1]) << 16 | UInt32(blob[at + 2]) << 8 | UInt32(blob[at + 3])))
            }
        case 5:
            for i in 0..<e.count {
                var v: UInt64 = 0
                for b in 0..<8 { v = v << 8 | UInt64(blob[base + 8 * i + b]) }
                out.append(Int64(bitPattern: v))
            }
        default: return nil
        }
        return out
    }

    func number(_ tag: Int32) -> Int64? { numbers(tag)?.first }
}

/// The SQLite rpm database (`rpmdb.sqlite`), opened read-only.
enum RPMDatabase {
    static func forEachHeader(directories: [String], flags: Flags, _ body: (RPMHeader) -> Void) {
        guard let directory = directories.first(where: { FileIO.exists($0 + "/rpmdb.sqlite") }) else {
            // rpm before 4.16 (RHEL/CentOS 7 and 8, Amazon Linux 2) keeps a Berkeley DB hash.
            if let directory = directories.first(where: { FileIO.exists($0 + "/Packages") }) {
                BerkeleyHash.forEachValue(directory + "/Packages", limit: flags[.readMax]) { key, value in
                    // Key 0 holds rpm's next instance number, not a header.
                    guard key.count == 4, key.contains(where: { $0 != 0 }) else { return }
                    if let header = RPMHeader(value) { body(header) }
                }
            } else if directories.contains(where: { FileIO.exists($0 + "/Packages.db") }) {
                OnceLog.shared.info("rpm_packages: rpm's ndb database (Packages.db) is not read")
            } else {
                OnceLog.shared.info("rpm_packages: no rpm database (rpmdb.sqlite or Packages) in \(directories.joined(separator: ", "))")
            }
            return
        }
        let path = directory + "/rpmdb.sqlite"
        // A FIFO or device named like the database must not be opened by SQLite (it would block).
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            StatusLog.error("rpm_packages: \(path) is not a regular file")
            return
        }
        // rpm keeps the database in WAL mode; a reader that cannot use the -shm file (no
        // write access to the directory) reads the main file alone.
        if !read(path, immutable: false, flags: flags, body) {
            if !read(path, immutable: true, flags: flags, body) {
                StatusLog.error("rpm_packages: cannot read the rpm database \(path)")
            }
        }
    }

    /// False when the database could not be opened or queried at all (nothing was read).
    private static func read(_ path: String, immutable: Bool, flags: Flags, _ body: (RPMHeader) -> Void) -> Bool {
        Database.configureSQLite()
        var uri = "file:"
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "%"):
                uri += "%" + String(byte, radix: 16, uppercase: true)
            default: uri.unicodeScalars.append(Unicode.Scalar(byte))
            }
        }
        uri += immutable ? "?mode=ro&immutable=1" : "?mode=ro"
        var db: OpaquePointer?
        defer { sqlite3_close_v2(db) }
        guard sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE, nil) == SQLITE_OK,
              let db else { return false }
        sqlite3_busy_timeout(db, 1000)
        _ = sqlite3_exec(db, "PRAGMA query_only = 1", nil, nil, nil)
        // Only a real table is scanned: a view in its place could compute rows without end.
        var statement: OpaquePointer?
        defer { sqlite3_finalize(statement) }
        guard sqlite3_prepare_v2(db, "SELECT type FROM sqlite_master WHERE name = 'Packages'", -1, &statement, nil) == SQLITE_OK,
              sqlite3_step(statement) == SQLITE_ROW, let type = sqlite3_column_text(statement, 0),
              String(cString: type) == "table" else { return false }
        sqlite3_finalize(statement)
        statement = nil
        guard sqlite3_prepare_v2(db, "SELECT blob FROM Packages ORDER BY hnum", -1, &statement, nil) == SQLITE_OK else { return false }
        let cap = flags[.readMax] == 0 ? Int.max : Int(clamping: flags[.readMax])
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return true }
            guard rc == SQLITE_ROW else {
                StatusLog.error("rpm_packages: reading \(path): \(String(cString: sqlite3_errmsg(db)))")
                return true
            }
            let length = Int(sqlite3_column_bytes(statement, 0))
            guard length > 0, length <= cap, let bytes = sqlite3_column_blob(statement, 0) else { continue }
            let blob = [UInt8](UnsafeRawBufferPointer(start: bytes, count: length))
            if let header = RPMHeader(blob) {
                body(header)
            } else {
                StatusLog.info("rpm_packages: skipping a damaged header in \(path)")
            }
        }
    }
}

/// The values of a Berkeley DB hash database (format of db 4 and 5, as rpm's `Packages`), read
/// page by page as rpm's own read-only reader does: every hash page's key/data pairs, a big
/// value from its chain of overflow pages. Offsets and chains are checked against the file;
/// encrypted or checksummed databases are refused.
enum BerkeleyHash {
    static func forEachValue(_ path: String, limit: UInt64, _ body: ([UInt8], [UInt8]) -> Void) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            StatusLog.error("rpm_packages: cannot open \(path)")
            return
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            StatusLog.error("rpm_packages: \(path) is not a regular file")
            return
        }
        let fileSize = Int(st.st_size)
        func read(_ offset: Int, _ count: Int) -> [UInt8]? {
            guard offset >= 0, count > 0, offset + count <= fileSize else { return nil }
            var out = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return nil }
                done += n
            }
            return out
        }
        guard let meta = read(0, 512) else {
            StatusLog.error("rpm_packages: \(path) is not a Berkeley DB hash database")
            return
        }
        // The magic tells the byte order of the machine that wrote the file.
        let little = meta[12] == 0x61 && meta[13] == 0x15 && meta[14] == 0x06 && meta[15] == 0
        let big = meta[12] == 0 && meta[13] == 0x06 && meta[14] == 0x15 && meta[15] == 0x61
        func u16(_ b: [UInt8], _ at: Int) -> Int { little ? Int(b[at]) | Int(b[at + 1]) << 8 : Int(b[at]) << 8 | Int(b[at + 1]) }
        func u32(_ b: [UInt8], _ at: Int) -> Int { little ? u16(b, at) | u16(b, at + 2) << 16 : u16(b, at) << 16 | u16(b, at + 2) }
        guard little || big, meta[25] == 8 else {
            StatusLog.error("rpm_packages: \(path) is not a Berkeley DB hash database")
            return
        }
        let pageSize = u32(meta, 20), lastPage = u32(meta, 32)
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0, meta[24] == 0, meta[26] & 1 == 0 else {
            StatusLog.error("rpm_packages: \(path): encrypted, checksummed or unknown Berkeley DB layout")
            return
        }
        let cap = limit == 0 ? Int.max : Int(clamping: limit)
        let header = 26
        /// A value stored on overflow pages: `total` bytes along the chain from `page`.
        func overflow(_ page: Int, _ total: Int) -> [UInt8]? {
            guard total <= cap else { return nil }
            var out: [UInt8] = []
            var next = page, steps = 0
            while next != 0 && out.count < total {
                steps += 1
                guard next <= lastPage, steps <= lastPage, let p = read(next * pageSize, pageSize), p[25] == 7 else { return nil }
                let length = u16(p, 22)
                guard header + length <= pageSize else { return nil }
                out += p[header..<(header + length)]
                next = u32(p, 16)
            }
            return out.count == total ? out : nil
        }
        /// An item of a hash page: inline bytes, or a reference to overflow pages.
        func item(_ page: [UInt8], _ index: Int, _ offsets: [Int]) -> [UInt8]? {
            let start = offsets[index], end = index == 0 ? pageSize : offsets[index - 1]
            guard start < end, end <= pageSize else { return nil }
            switch page[start] {
            case 1: return Array(page[(start + 1)..<end])
            case 3:
                guard start + 12 <= end else { return nil }
                return overflow(u32(page, start + 4), u32(page, start + 8))
            default: return nil  // duplicates: rpm's Packages has none
            }
        }
        guard lastPage > 0 else { return }
        for number in 1...lastPage {
            guard let page = read(number * pageSize, pageSize) else { break }
            // P_HASH_UNSORTED (2) and P_HASH (13) hold key/data pairs.
            guard page[25] == 2 || page[25] == 13 else { continue }
            let entries = u16(page, 20)
            guard header + 2 * entries <= pageSize else { continue }
            let offsets = (0..<entries).map { u16(page, header + 2 * $0) }
            guard offsets.allSatisfy({ $0 >= header + 2 * entries && $0 < pageSize }) else { continue }
            var i = 0
            while i + 1 < entries {
                if let key = item(page, i, offsets), let value = item(page, i + 1, offsets) { body(key, value) }
                i += 2
            }
        }
    }
}
