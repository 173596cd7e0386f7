import Crypto
import Dispatch
import Foundation
package import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// osquery's file carver (osquery/carver/carver.cpp, tables/forensic/carves.cpp): a query on
/// `carves` with `carve=1` and a `path` (`=` or `LIKE`) records a carve (`carves` domain,
/// `carves.<guid>`); a thread copies the files into a tar archive and sends it in
/// `--carver_block_size` blocks: `--carver_start_endpoint` gets
/// `{block_count, block_size, carve_size, carve_id, request_id}` and answers a `session_id`,
/// `--carver_continue_endpoint` gets `{block_id, session_id, request_id, data: base64}` per
/// block. `--disable_carver` (default true) turns requests off; the table lists carves anyway.
/// Without the remote API (osqueryi, whose store is ephemeral) the table lists the store's
/// carves and refuses requests: nothing could send them.
final class Carver: Sendable {
    let api: RemoteAPI?
    let store: DaemonStore
    let flags: Flags
    /// One carve at a time, in request order.
    private let queue = DispatchQueue(label: "osquery.carver")

    static let keyPrefix = "carves."

    static let schema = TableSchema(
        name: "carves",
        columns: [
            TableColumn("time", .bigint), TableColumn("sha256", .text, .collateNocase), TableColumn("size", .bigint),
            TableColumn("path", .text, .additional), TableColumn("status", .text),
            TableColumn("carve_guid", .text, [.index, .collateNocase]),
            TableColumn("request_id", .text), TableColumn("carve", .integer, .additional),
        ],
        attributes: [])

    private let refusalLogged = Mutex(false)

    init(api: RemoteAPI?, store: DaemonStore, flags: Flags) {
        self.api = api
        self.store = store
        self.flags = flags
    }

    func register(into registry: PluginRegistry) {
        _ = registry.remove(registry: "table", name: Self.schema.name)
        registry.addTable(FunctionTable(Self.schema) { [self] context in generate(context) })
    }

    func generate(_ context: QueryContext) -> TableRows {
        var paths = Set(context.equalities(for: "path"))
        for c in context.constraints(for: "path") where c.op == .like {
            paths.formUnion(FilesystemConfigSource.glob(c.expr))
        }
        var newGuid = ""
        if !flags[.disableCarver], context.equalities(for: "carve").contains("1"), !paths.isEmpty {
            if api != nil {
                newGuid = schedule(paths.sorted())
            } else if refusalLogged.withLock({ logged in defer { logged = true }; return !logged }) {
                StatusLog.warning("Carving needs osqueryd with the TLS remote API (--carver_start_endpoint): carves are only listed here")
            }
        }
        var rows = TableRows(schema: Self.schema)
        let keys = (try? store.keys(DaemonStore.Domain.carves, prefix: Self.keyPrefix)) ?? []
        for key in keys {
            guard let text = try? store.get(DaemonStore.Domain.carves, key),
                let carve = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
            else { continue }
            let guid = carve["carve_guid"] as? String ?? ""
            rows.append((carve["time"] as? NSNumber)?.int64Value ?? 0)
            rows.append(carve["sha256"] as? String ?? "")
            rows.append((carve["size"] as? NSNumber)?.int64Value ?? -1)
            rows.append(carve["path"] as? String ?? "")
            rows.append(carve["status"] as? String ?? "")
            rows.append(guid)
            rows.append(carve["request_id"] as? String ?? "")
            rows.append(guid == newGuid && !newGuid.isEmpty ? 1 : 0)
        }
        return rows
    }

    /// Records a carve of `paths` and queues it; returns its guid.
    private func schedule(_ paths: [String]) -> String {
        let guid = UUID().uuidString.lowercased()
        let requestId = UUID().uuidString.lowercased()
        update(guid) { carve in
            carve = [
                "carve_guid": guid, "request_id": requestId, "time": Int(Date().timeIntervalSince1970), "status": "STARTING",
                "sha256": "", "size": -1, "path": paths.joined(separator: ","),
            ]
        }
        queue.async { [self] in carve(paths, guid: guid, requestId: requestId) }
        return guid
    }

    private func update(_ guid: String, _ change: (inout [String: Any]) -> Void) {
        let key = Self.keyPrefix + guid
        var carve = (try? store.get(DaemonStore.Domain.carves, key)).flatMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        } ?? [:]
        change(&carve)
        guard let data = try? JSONSerialization.data(withJSONObject: carve, options: [.sortedKeys]) else { return }
        try? store.put(DaemonStore.Domain.carves, key, String(decoding: data, as: UTF8.self))
    }

    private func setStatus(_ guid: String, _ status: String) { update(guid) { $0["status"] = status } }

    private func carve(_ paths: [String], guid: String, requestId: String) {
        let dir = NSTemporaryDirectory() + "/osquery-carve-" + guid
        guard mkdir(dir, 0o700) == 0 else {
            setStatus(guid, "CREATE PATHS FAILED")
            return
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        setStatus(guid, "PENDING")
        let archive = dir + "/carve_" + guid + ".tar"
        let size: Int
        let digest: String
        do {
            (size, digest) = try TarWriter.write(paths: paths, to: archive, hashLimit: Int(clamping: flags[.readMax]))
        } catch {
            StatusLog.warning("Failed to create carve archive: \(error.message)")
            setStatus(guid, "ARCHIVE FAILED")
            return
        }
        update(guid) {
            $0["size"] = size
            $0["sha256"] = digest
        }
        do {
            try post(archive, size: size, guid: guid, requestId: requestId)
            setStatus(guid, "SUCCESS")
        } catch {
            StatusLog.warning("Failed to post carve: \(error.message)")
            setStatus(guid, "DATA POST FAILED")
        }
    }

    private func post(_ archive: String, size: Int, guid: String, requestId: String) throws(DaemonError) {
        let blockSize = Int(clamping: max(flags[.carverBlockSize], 1))
        let blockCount = (size + blockSize - 1) / blockSize
        guard let api else { throw DaemonError("No carver remote API") }
        let start = try api.request(
            flags[.carverStartEndpoint],
            params: [
                "block_count": blockCount, "block_size": blockSize, "carve_size": size, "carve_id": guid,
                "request_id": requestId,
            ], attempts: 3)
        guard let session = start.object["session_id"] as? String, !session.isEmpty else {
            throw DaemonError("No session_id received from remote endpoint")
        }
        guard let file = FileHandle(forReadingAtPath: archive) else { throw DaemonError("Cannot read \(archive)") }
        defer { try? file.close() }
        for block in 0..<blockCount {
            let data: Data
            do {
                data = try file.read(upToCount: blockSize) ?? Data()
            } catch {
                throw DaemonError("Cannot read \(archive): \(error)")
            }
            _ = try api.request(
                flags[.carverContinueEndpoint],
                params: ["block_id": block, "session_id": session, "request_id": requestId, "data": data.base64EncodedString()],
                attempts: 3)
        }
    }
}

/// osqueryi's `carves`: osquery's shell runs on an ephemeral database (none unless
/// `--database_path` names one), so it lists the carves of its own session, none, and has no
/// remote API to send one. The store is made on the table's first use, not at every start.
package enum ShellCarves {
    package static func register(into registry: PluginRegistry, flags: Flags) {
        final class Lazy: Sendable {
            let carver = Mutex<Carver?>(nil)
        }
        let lazy = Lazy()
        _ = registry.remove(registry: "table", name: Carver.schema.name)
        registry.addTable(FunctionTable(Carver.schema) { context in
            let carver = lazy.carver.withLock { carver in
                if let carver { return carver }
                let made = Carver(api: nil, store: DaemonStore.inMemory(), flags: flags)
                carver = made
                return made
            }
            return carver.generate(context)
        })
    }
}

/// A ustar archive of regular files, written as it reads them (no file is held in memory).
enum TarWriter {
    /// Writes the archive; returns its size and SHA-256 (`-1` past `hashLimit` bytes, as osquery).
    static func write(paths: [String], to archive: String, hashLimit: Int) throws(DaemonError) -> (Int, String) {
        guard FileManager.default.createFile(atPath: archive, contents: nil, attributes: [.posixPermissions: 0o600]),
            let out = FileHandle(forWritingAtPath: archive)
        else { throw DaemonError("Cannot create \(archive)") }
        defer { try? out.close() }
        var hasher = SHA256()
        var size = 0
        func emit(_ data: Data) throws(DaemonError) {
            do { try out.write(contentsOf: data) } catch { throw DaemonError("Cannot write \(archive): \(error)") }
            hasher.update(data: data)
            size += data.count
        }
        for path in paths {
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, let input = FileHandle(forReadingAtPath: path) else {
                continue
            }
            defer { try? input.close() }
            let name = String(path.drop { $0 == "/" })
            guard let header = header(name: name, size: Int(st.st_size), mode: Int(st.st_mode & 0o7777), mtime: Int(st.st_mtim.tv_sec))
            else { continue }
            try emit(header)
            var written = 0
            while written < Int(st.st_size) {
                let chunk: Data
                do { chunk = try input.read(upToCount: min(1 << 20, Int(st.st_size) - written)) ?? Data() } catch {
                    throw DaemonError("Cannot read \(path): \(error)")
                }
                if chunk.isEmpty { break }
                try emit(chunk)
                written += chunk.count
            }
            // A file that shrank while read is padded to the size its header announced.
            if written < Int(st.st_size) { try emit(Data(count: Int(st.st_size) - written)) }
            let pad = (512 - Int(st.st_size) % 512) % 512
            if pad > 0 { try emit(Data(count: pad)) }
        }
        try emit(Data(count: 1024))
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return (size, size > hashLimit ? "-1" : digest)
    }

    /// A ustar header; nil for a name ustar cannot hold (over 255 bytes, or no split at a `/`).
    static func header(name: String, size: Int, mode: Int, mtime: Int) -> Data? {
        var block = [UInt8](repeating: 0, count: 512)
        var bytes = Array(name.utf8)
        var prefix: [UInt8] = []
        if bytes.count > 100 {
            guard bytes.count <= 255,
                let split = bytes.indices.last(where: { bytes[$0] == UInt8(ascii: "/") && $0 <= 155 && bytes.count - $0 - 1 <= 100 })
            else { return nil }
            prefix = Array(bytes[..<split])
            bytes = Array(bytes[(split + 1)...])
        }
        func put(_ field: [UInt8], at offset: Int) { for (i, b) in field.enumerated() { block[offset + i] = b } }
        func octal(_ value: Int, width: Int) -> [UInt8] {
            let digits = String(value, radix: 8)
            return Array((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8)
        }
        put(bytes, at: 0)
        put(octal(mode, width: 8), at: 100)
        put(octal(0, width: 8), at: 108)
        put(octal(0, width: 8), at: 116)
        put(octal(size, width: 12), at: 124)
        put(octal(mtime, width: 12), at: 136)
        put(Array(repeating: UInt8(ascii: " "), count: 8), at: 148)
        block[156] = UInt8(ascii: "0")
        put(Array("ustar\u{0}00".utf8), at: 257)
        put(prefix, at: 345)
        let sum = block.reduce(0) { $0 + Int($1) }
        put(octal(sum, width: 7) + [0], at: 148)
        return Data(block)
    }
}
