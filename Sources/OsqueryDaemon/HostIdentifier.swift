import Foundation
public import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The `hostIdentifier` of result and status lines (`--host_identifier`).
public enum HostIdentifier {
    /// Key of the host UUID in `persistent_settings` (osquery's name).
    static let hostUUIDKey = "host_uuid_v3"
    /// Key of the instance UUID in `persistent_settings` (osquery's name).
    static let instanceUUIDKey = "instance_uuid_v1"
    static let dmiPath = "/sys/class/dmi/id/product_uuid"
    /// UUIDs some firmware reports for every machine.
    static let placeholders: Set<String> = [
        "00000000-0000-0000-0000-000000000000",
        "03000200-0400-0500-0006-000700080009",
        "03020100-0504-0706-0809-0a0b0c0d0e0f",
        "10000000-0000-8000-0040-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
    ]
    private static let ephemeral = UUID().uuidString.lowercased()

    /// - `hostname` (default): the current hostname, read each time.
    /// - `uuid`: the DMI product UUID when readable and not a placeholder, else a
    ///   generated one; either way stored as `host_uuid_v3` and reused.
    /// - `instance`: a random UUID stored as `instance_uuid_v1` and reused.
    /// - `ephemeral`: a random UUID for this process.
    /// - `specified`: `--specified_identifier`.
    /// Anything unusable (unknown mode, empty specified identifier) falls back to
    /// the hostname, as osquery does.
    public static func resolve(flags: Flags, store: DaemonStore) -> String {
        fixed(flags: flags, store: store) ?? hostname()
    }

    /// The identifier the flags name when it is not the hostname (which may
    /// change while the daemon runs, so it is never kept); nil otherwise.
    static func fixed(flags: Flags, store: DaemonStore) -> String? {
        switch flags[.hostIdentifier] {
        case "uuid": return hostUUID(store: store)
        case "instance": return stored(instanceUUIDKey, store: store) { newUUID() }
        case "ephemeral": return ephemeral
        case "specified":
            let s = flags[.specifiedIdentifier]
            return s.isEmpty ? nil : s
        default: return nil
        }
    }

    static func hostUUID(store: DaemonStore, dmiPath: String = dmiPath) -> String {
        stored(hostUUIDKey, store: store) { hardwareUUID(dmiPath) ?? newUUID() }
    }

    private static func stored(_ key: String, store: DaemonStore, make: () -> String) -> String {
        let domain = DaemonStore.Domain.persistentSettings
        let saved: String?
        do {
            saved = try store.get(domain, key)
        } catch {
            // Unreadable is not missing: a new identifier must not replace the stored one.
            StatusLog.warning("Cannot read the stored host identifier: \(error.message)")
            return make()
        }
        if let v = saved, !v.isEmpty { return v }
        let v = make()
        do {
            try store.put(domain, key, v)
        } catch {
            StatusLog.warning("Cannot store the host identifier: \(error)")
        }
        return v
    }

    /// The DMI product UUID, trimmed; nil when unreadable, empty or a placeholder.
    static func hardwareUUID(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines.union(CharacterSet(charactersIn: "\0")))
        guard !text.isEmpty, !placeholders.contains(text.lowercased()) else { return nil }
        return text
    }

    static func newUUID() -> String { UUID().uuidString.lowercased() }

    /// gethostname(2), trimmed.
    public static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, 255)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }
}

/// The daemon's identifier as osquery's `getHostIdentifier`: resolved when a
/// line is written, so `host_identifier` and `specified_identifier` from the
/// config's `options` take effect; the first identifier that is not the
/// hostname is kept for the life of the process (a uuid must not change
/// between lines), the hostname is read each time.
final class HostIdentity: Sendable {
    private let flags: Flags
    private let store: DaemonStore
    private let kept = Mutex<String?>(nil)

    init(flags: Flags, store: DaemonStore) {
        self.flags = flags
        self.store = store
    }

    /// Called per log batch (a query run or a status line), never per row.
    func current() -> String {
        if let id = kept.withLock({ $0 }) { return id }
        guard let id = HostIdentifier.fixed(flags: flags, store: store) else { return HostIdentifier.hostname() }
        return kept.withLock { kept in
            if kept == nil { kept = id }
            return kept ?? id
        }
    }
}
