import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// jetbrains_plugins: the plugins of JetBrains IDEs under `~/.local/share/JetBrains/<IDE><version>`,
/// named by the `META-INF/plugin.xml` inside a plugin's jar.
extension PackageTables {
    /// osquery's Linux product directories (kLinuxPathList) and the product names it reports.
    static let jetbrainsProducts: [(String, String)] = [
        ("clion", "CLion%"), ("datagrip", "DataGrip%"), ("goland", "GoLand%"), ("intellij_idea", "IntelliJIdea%"),
        ("intellij_idea_community_edition", "IdeaIC%"), ("phpstorm", "PhpStorm%"), ("pycharm", "PyCharm%"),
        ("pycharm_community_edition", "PyCharmCE%"), ("resharper", "ReSharper%"), ("rider", "Rider%"),
        ("rubymine", "RubyMine%"), ("rust_rov", "RustRover%"), ("webstorm", "WebStorm%"),
    ]

    static func jetbrainsPlugins(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0, table: "jetbrains_plugins") }) -> FunctionTable {
        table("jetbrains_plugins", [
            col("product_type", .text), col("uid", .bigint, .index), col("name", .text), col("version", .text, .collateVersion),
            col("vendor", .text), col("path", .text),
        ], attributes: .userBased) { context, schema in
            var rows = TableRows(schema: schema)
            let limit = flags[.readMax] == 0 ? Int.max : Int(clamping: flags[.readMax])
            func add(_ product: String, _ uid: Int64, _ path: String, _ xml: PluginXML) {
                rows.appendRow([.text(product), .integer(uid), .text(xml.name), .text(xml.version), .text(xml.vendor), .text(path)])
            }
            var found = false
            defer { if !found { OnceLog.shared.info("jetbrains_plugins: no JetBrains IDE directory in the users' home directories") } }
            for user in users(context) {
                for (product, pattern) in jetbrainsProducts {
                    for pluginsDirectory in PackageFS.glob(user.directory + "/.local/share/JetBrains/" + pattern) {
                        found = true
                        // A plugin without dependencies is a jar of its own.
                        for jar in PackageFS.files(in: pluginsDirectory) {
                            guard let xml = PluginXML(jar: jar, limit: limit) else { continue }
                            add(product, user.uid, jar, xml)
                        }
                        // Otherwise a directory whose lib/ holds its jar among the libraries it bundles.
                        for directory in PackageFS.directories(in: pluginsDirectory, recursive: false) {
                            let name = String(directory.split(separator: "/").last ?? "")
                            let jars = likelyPluginJarsFirst(name, PackageFS.files(in: directory + "/lib"))
                            guard let xml = jars.lazy.compactMap({ PluginXML(jar: $0, limit: limit) }).first else { continue }
                            add(product, user.uid, directory, xml)
                        }
                    }
                }
            }
            return rows
        }
    }

    /// IntelliJ's order for finding a plugin's own jar (as osquery sorts): `resources*` last,
    /// versioned library names (`-1.2`) last, names starting with the directory's first,
    /// `-idea.jar` last, database-plugin.jar last, then shorter names first.
    static func likelyPluginJarsFirst(_ directoryName: String, _ paths: [String]) -> [String] {
        func versioned(_ name: String) -> Bool {
            let b = Array(name.utf8)
            guard let i = b.lastIndex(of: UInt8(ascii: "-")), i + 1 < b.count else { return false }
            let c = b[i + 1]
            if c >= 48 && c <= 57 { return true }
            return (c == UInt8(ascii: "m") || c == UInt8(ascii: "M")) && i + 2 < b.count && b[i + 2] >= 48 && b[i + 2] <= 57
        }
        let lowerDirectory = directoryName.lowercased()
        func key(_ path: String) -> (Int, Int, Int, Int, Int, Int) {
            let name = String(path.split(separator: "/").last ?? "")
            let lower = name.lowercased()
            return (name.hasPrefix("resources") ? 1 : 0, versioned(name) ? 1 : 0, lower.hasPrefix(lowerDirectory) ? 0 : 1,
                    lower.hasSuffix("-idea.jar") ? 1 : 0, name == "database-plugin.jar" ? 1 : 0, name.utf8.count)
        }
        return paths.map { (key($0), $0) }.sorted { $0.0 < $1.0 }.map(\.1)
    }
}

/// The name, vendor and version of a plugin.xml, found as osquery's regular expression
/// `<tag[^>]*?>(.*?)</tag>` finds them (first match, contents as written).
struct PluginXML {
    var name = ""
    var vendor = ""
    var version = ""

    init?(jar: String, limit: Int) {
        guard let bytes = ZipFile.read(jar, entry: "META-INF/plugin.xml", limit: limit), !bytes.isEmpty else { return nil }
        let xml = Array(bytes)
        func find(_ needle: String) -> Bool { xml.firstRange(of: Array(needle.utf8)) != nil }
        if find("<name>") { name = Self.contents(xml, "name") }
        if find("<vendor") { vendor = Self.contents(xml, "vendor") }
        if find("<version>") { version = Self.contents(xml, "version") }
    }

    static func contents(_ xml: [UInt8], _ tag: String) -> String {
        let open = Array(("<" + tag).utf8), close = Array(("</" + tag + ">").utf8)
        var from = 0
        while let start = xml[from...].firstRange(of: open) {
            // `<tag[\s\S]*?>`: the nearest `>` after the name closes the opening tag.
            guard let gt = xml[start.upperBound...].firstIndex(of: UInt8(ascii: ">")) else { return "" }
            if let end = xml[(gt + 1)...].firstRange(of: close) {
                return String(decoding: xml[(gt + 1)..<end.lowerBound], as: UTF8.self)
            }
            from = start.upperBound
        }
        return ""
    }
}

/// One member of a zip archive (a jar), read through its central directory with every
/// offset and size checked against the file and `limit`; stored or deflated members.
enum ZipFile {
    static func read(_ path: String, entry wanted: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int(st.st_size)
        func pread(_ offset: Int, _ count: Int) -> [UInt8]? {
            guard offset >= 0, count >= 0, offset + count <= size else { return nil }
            var out = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let n = out.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return nil }
                done += n
            }
            return out
        }
        func u16(_ b: [UInt8], _ at: Int) -> Int { Int(b[at]) | Int(b[at + 1]) << 8 }
        func u32(_ b: [UInt8], _ at: Int) -> Int { u16(b, at) | u16(b, at + 2) << 16 }
        // The end record sits in the last 22 bytes plus at most a 64 KiB comment.
        let tailSize = min(size, 22 + 0xFFFF)
        guard tailSize >= 22, let tail = pread(size - tailSize, tailSize) else { return nil }
        var eocd = -1
        var i = tail.count - 22
        while i >= 0 {
            if tail[i] == 0x50 && tail[i + 1] == 0x4B && tail[i + 2] == 5 && tail[i + 3] == 6 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { return nil }
        let entries = u16(tail, eocd + 10), directorySize = u32(tail, eocd + 12), directoryOffset = u32(tail, eocd + 16)
        guard directorySize <= 64 << 20, let directory = pread(directoryOffset, directorySize) else { return nil }
        let name = Array(wanted.utf8)
        var at = 0
        for _ in 0..<entries {
            guard at + 46 <= directory.count, u32(directory, at) == 0x0201_4B50 else { return nil }
            let method = u16(directory, at + 10), compressed = u32(directory, at + 20), uncompressed = u32(directory, at + 24)
            let nameLength = u16(directory, at + 28), extra = u16(directory, at + 30), comment = u16(directory, at + 32)
            let local = u32(directory, at + 42)
            guard at + 46 + nameLength <= directory.count else { return nil }
            if directory[(at + 46)..<(at + 46 + nameLength)].elementsEqual(name) {
                // Deflate may grow incompressible data by a few bytes per 16 KiB block.
                guard uncompressed <= limit, compressed <= uncompressed + uncompressed / 1024 + 64,
                      let header = pread(local, 30), u32(header, 0) == 0x0403_4B50 else { return nil }
                let dataOffset = local + 30 + u16(header, 26) + u16(header, 28)
                guard let data = pread(dataOffset, compressed) else { return nil }
                switch method {
                case 0: return data
                case 8:
                    var inflater = Inflater(input: data, limit: min(limit, max(uncompressed, 1)))
                    return try? inflater.run()
                default: return nil
                }
            }
            at += 46 + nameLength + extra + comment
        }
        return nil
    }
}

/// A raw DEFLATE (RFC 1951) decoder that stops at `limit` output bytes or at the end of its
/// input with an error, never reading outside either.
struct Inflater {
    struct Failure: Error {}
    let input: [UInt8]
    let limit: Int
    var position = 0
    var bitBuffer = 0
    var bitCount = 0
    var output: [UInt8] = []

    init(input: [UInt8], limit: Int) {
        self.input = input
        self.limit = limit
    }

    mutating func bits(_ n: Int) throws(Failure) -> Int {
        while bitCount < n {
            guard position < input.count else { throw Failure() }
            bitBuffer |= Int(input[position]) << bitCount
            position += 1
            bitCount += 8
        }
        let value = bitBuffer & ((1 << n) - 1)
        bitBuffer >>= n
        bitCount -= n
        return value
    }

    /// Canonical Huffman code: how many codes of each length, and the symbols in code order.
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int]

        init?(lengths: [Int]) {
            symbols = [Int](repeating: 0, count: lengths.count)
            for l in lengths { counts[l] += 1 }
            var left = 1
            for l in 1..<16 {
                left <<= 1
                left -= counts[l]
                if left < 0 { return nil }
            }
            var offsets = [Int](repeating: 0, count: 16)
            for l in 1..<15 { offsets[l + 1] = offsets[l] + counts[l] }
            for (symbol, l) in lengths.enumerated() where l != 0 {
                symbols[offsets[l]] = symbol
                offsets[l] += 1
            }
        }
    }

    mutating func decode(_ h: Huffman) throws(Failure) -> Int {
        var code = 0, first = 0, index = 0
        for l in 1..<16 {
            code |= try bits(1)
            let count = h.counts[l]
            if code - count < first { return h.symbols[index + (code - first)] }
            index += count
            first += count
            first <<= 1
            code <<= 1
        }
        throw Failure()
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                               4097, 6145, 8193, 12289, 16385, 24577]
    static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    mutating func codes(_ lengths: Huffman, _ distances: Huffman) throws(Failure) {
        while true {
            let symbol = try decode(lengths)
            if symbol < 256 {
                guard output.count < limit else { throw Failure() }
                output.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let s = symbol - 257
                guard s < 29 else { throw Failure() }
                let length = Self.lengthBase[s] + (try bits(Self.lengthExtra[s]))
                let d = try decode(distances)
                guard d < 30 else { throw Failure() }
                let distance = Self.distanceBase[d] + (try bits(Self.distanceExtra[d]))
                guard distance <= output.count, output.count + length <= limit else { throw Failure() }
                let start = output.count - distance
                for k in 0..<length { output.append(output[start + k]) }
            }
        }
    }

    mutating func run() throws(Failure) -> [UInt8] {
        var last = 0
        repeat {
            last = try bits(1)
            switch try bits(2) {
            case 0:
                bitBuffer = 0
                bitCount = 0
                guard position + 4 <= input.count else { throw Failure() }
                let length = Int(input[position]) | Int(input[position + 1]) << 8
                let complement = Int(input[position + 2]) | Int(input[position + 3]) << 8
                position += 4
                guard length == (~complement & 0xFFFF), position + length <= input.count, output.count + length <= limit else { throw Failure() }
                output += input[position..<(position + length)]
                position += length
            case 1:
                var l = [Int](repeating: 8, count: 288)
                for i in 144..<256 { l[i] = 9 }
                for i in 256..<280 { l[i] = 7 }
                guard let lengths = Huffman(lengths: l), let distances = Huffman(lengths: [Int](repeating: 5, count: 30)) else { throw Failure() }
                try codes(lengths, distances)
            case 2:
                let nlen = try bits(5) + 257, ndist = try bits(5) + 1, ncode = try bits(4) + 4
                guard nlen <= 286, ndist <= 30 else { throw Failure() }
                let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
                var codeLengths = [Int](repeating: 0, count: 19)
                for i in 0..<ncode { codeLengths[order[i]] = try bits(3) }
                guard let lencode = Huffman(lengths: codeLengths) else { throw Failure() }
                var lengths: [Int] = []
                while lengths.count < nlen + ndist {
                    let symbol = try decode(lencode)
                    if symbol < 16 {
                        lengths.append(symbol)
                    } else {
                        var value = 0, repeatCount: Int
                        if symbol == 16 {
                            guard let previous = lengths.last else { throw Failure() }
                            value = previous
                            repeatCount = 3 + (try bits(2))
                        } else if symbol == 17 {
                            repeatCount = 3 + (try bits(3))
                        } else {
                            repeatCount = 11 + (try bits(7))
                        }
                        guard lengths.count + repeatCount <= nlen + ndist else { throw Failure() }
                        lengths += [Int](repeating: value, count: repeatCount)
                    }
                }
                guard lengths[256] != 0, let lengthCode = Huffman(lengths: Array(lengths[0..<nlen])),
                      let distanceCode = Huffman(lengths: Array(lengths[nlen...])) else { throw Failure() }
                try codes(lengthCode, distanceCode)
            default:
                throw Failure()
            }
        } while last == 0
        return output
    }
}
