import Foundation
import OsqueryEngine
public import OsqueryManager
package import OsqueryProtocol
import ThriftCodec
#if canImport(Glibc)
import Glibc
#endif

/// Where a config comes from: osquery's config plugin (`--config_plugin`).
///
/// Both calls may block (file reads, an RPC to an extension): call them from a
/// thread of your own, never from a task on the cooperative pool.
public protocol ConfigSource: Sendable {
    /// The plugin's name (`filesystem`, or the extension's plugin name).
    var name: String { get }
    /// osquery's `genConfig`: every source's raw JSON text by source name, in
    /// the order osquery merges them (by name, as its `std::map` does).
    func genConfig() throws(DaemonError) -> [(name: String, text: String)]
    /// osquery's `genPack`: the JSON text of pack `name` given in the config as
    /// the string `value` (for `"*"`, an object of packs by name).
    func genPack(name: String, value: String) throws(DaemonError) -> String
}

/// osquery's built-in `filesystem` config plugin: `--config_path` plus every
/// `<config_path>.d/*.conf`; packs given as strings are file paths, and
/// `"*": "<glob>"` loads every matching file as a pack named by its stem.
public struct FilesystemConfigSource: ConfigSource {
    public var name: String { "filesystem" }
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public func genConfig() throws(DaemonError) -> [(name: String, text: String)] {
        guard FilesystemConfigSource.isRegularFile(path) else {
            throw DaemonError("config file does not exist: \(path)")
        }
        // The main file and the .d files, keyed by path: osquery's map puts the
        // main file first (its path is a prefix of theirs), then the .d files.
        var files = FilesystemConfigSource.glob(path + ".d/*.conf")
        files.append(path)
        var out: [(name: String, text: String)] = []
        for file in Set(files).sorted() {
            guard let bytes = FilesystemConfigSource.read(file) else { continue }
            out.append((file, String(decoding: bytes, as: UTF8.self)))
        }
        return out
    }

    public func genPack(name: String, value: String) throws(DaemonError) -> String {
        if name == "*" {
            var packs: [ConfigValue.Member] = []
            for file in FilesystemConfigSource.glob(value) {
                guard let bytes = FilesystemConfigSource.read(file) else {
                    StatusLog.warning("Cannot read multi-pack file: \(file)")
                    continue
                }
                guard let pack = try? ConfigJSON.parseAny(bytes: bytes, source: file), pack.members != nil else {
                    StatusLog.warning("Cannot read multi-pack JSON: \(file)")
                    continue
                }
                let base = (file as NSString).lastPathComponent
                let stem = base.hasPrefix(".") || !base.contains(".") ? base : String(base[..<base.lastIndex(of: ".")!])
                packs.append(ConfigValue.Member(key: stem, value: pack))
            }
            return ConfigValue(.object(packs)).jsonText
        }
        guard FilesystemConfigSource.isRegularFile(value) else {
            throw DaemonError("\(value) is not a valid path")
        }
        guard let bytes = FilesystemConfigSource.read(value) else {
            throw DaemonError("Cannot read pack file: \(value)")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads at most `limit` bytes of a file in one buffer (a larger file
    /// fails the 4 MiB source limit anyway, so the cut never matters).
    package static func read(_ path: String, limit: Int = 64 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        var capacity = min(max(Int(st.st_size), 0) + 1, limit)
        var out = [UInt8]()
        while out.count < limit {
            let before = out.count
            var failed = false
            out.append(contentsOf: [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                var n = 0
                repeat { n = Glibc.read(fd, buffer.baseAddress, buffer.count) } while n < 0 && errno == EINTR
                failed = n < 0
                count = max(n, 0)
            })
            if failed { return nil }
            if out.count == before { break }
            capacity = min(max(capacity, 65536), limit - out.count)
        }
        return out
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Regular files matching a pattern, sorted; osquery's `%` wildcard is `*`.
    /// The directory part is resolved through symlinks, as osquery canonicalizes it.
    package static func glob(_ pattern: String) -> [String] {
        var p = pattern.replacingOccurrences(of: "%", with: "*")
        if !p.hasPrefix("/"), !p.hasPrefix("~") {
            p = FileManager.default.currentDirectoryPath + "/" + p
        }
        if let star = p.firstIndex(of: "*"), let slash = p[..<star].lastIndex(of: "/") {
            let dir = String(p[..<slash])
            if !dir.isEmpty, let real = realpath(dir, nil) {
                p = String(cString: real) + String(p[slash...])
                free(real)
            }
        }
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(p, GLOB_MARK, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            guard let c = g.gl_pathv[i] else { continue }
            let path = String(cString: c)
            if path.hasSuffix("/") || !isRegularFile(path) { continue }
            out.append(path)
        }
        return out.sorted()
    }
}

/// A config plugin served by an extension: `{"action":"genConfig"}` and
/// `{"action":"genPack","name":…,"value":…}` over the extension's socket
/// (protocol.md §3.4). Blocks the calling thread for each call.
public struct ExtensionConfigSource: ConfigSource {
    public let caller: ExtensionCaller
    package let uuid: ExtensionRouteUUID
    public let plugin: String
    public var name: String { plugin }

    package init(caller: ExtensionCaller, uuid: ExtensionRouteUUID, plugin: String) {
        self.caller = caller
        self.uuid = uuid
        self.plugin = plugin
    }

    func call(_ request: ExtensionPluginRequest) throws(DaemonError) -> ExtensionResponse {
        do {
            return try caller.callBlocking(uuid: uuid, registry: "config", item: ThriftString(plugin), request: request)
        } catch {
            throw DaemonError("config plugin \(plugin): \(error)")
        }
    }

    public func genConfig() throws(DaemonError) -> [(name: String, text: String)] {
        let response = try call(["action": "genConfig"])
        guard response.status.isSuccess else {
            let message = response.status.message.lossyString
            throw DaemonError("config plugin \(plugin) failed: \(message.isEmpty ? "code \(response.status.code)" : message)")
        }
        // Only the first row counts, as in osquery.
        guard let first = response.response.first else { return [] }
        var out: [(name: String, text: String)] = []
        out.reserveCapacity(first.count)
        for entry in first.entries { out.append((entry.key.lossyString, entry.value.lossyString)) }
        // A repeated key: the last one wins, as when osquery fills its map.
        var seen: [String: Int] = [:]
        var unique: [(name: String, text: String)] = []
        for item in out {
            if let i = seen[item.name] { unique[i] = item } else {
                seen[item.name] = unique.count
                unique.append(item)
            }
        }
        return unique.sorted { $0.name < $1.name }
    }

    public func genPack(name: String, value: String) throws(DaemonError) -> String {
        let response = try call(["action": "genPack", "name": ThriftString(name), "value": ThriftString(value)])
        guard let first = response.response.first, let pack = first[ThriftString(name)] else {
            throw DaemonError("Invalid plugin response")
        }
        return pack.lossyString
    }
}
