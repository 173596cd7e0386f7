import Foundation
import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// osquery's TLS remote API as its plugins use it (osquery/remote/utility.h, enroll.cpp,
/// plugins/remote/enroll/tls_enroll.cpp): the node key (kept in the store's
/// `persistent_settings` as `nodeKey`, enrolled for when missing), requests that carry it and
/// retry with i² s between attempts, and re-enrollment when the server says `node_invalid`.
/// Every call blocks: call it from a thread of its own, never from the cooperative pool.
final class RemoteAPI: Sendable {
    let transport: RemoteTransport
    let flags: Flags
    let store: DaemonStore
    let hostIdentifier: @Sendable () -> String
    /// The tables osquery sends as `host_details`, first row each.
    let hostDetails: @Sendable () -> [String: [String: String]]
    /// Held while a node key is read or enrolled for: one enrollment at a time.
    private let enrollLock = NSLock()
    private let stopping = StopGate()

    static let nodeKeyName = "nodeKey"
    /// osquery's kPlatformType on Linux: TYPE_POSIX | TYPE_LINUX.
    static let platformType = "9"

    init(
        transport: RemoteTransport, flags: Flags, store: DaemonStore, hostIdentifier: @escaping @Sendable () -> String,
        hostDetails: @escaping @Sendable () -> [String: [String: String]]
    ) {
        self.transport = transport
        self.flags = flags
        self.store = store
        self.hostIdentifier = hostIdentifier
        self.hostDetails = hostDetails
        if flags[.enrollAlways], !flags[.disableEnrollment] { clearNodeKey() }
    }

    /// Whether any of the plugins in use speaks the TLS API.
    static func isNeeded(flags: Flags) -> Bool {
        flags[.configPlugin] == "tls"
            || loggerNames(flags).contains("tls")
            || (!flags[.disableDistributed] && flags[.distributedPlugin] == "tls")
            || (!flags[.disableCarver] && !flags[.carverStartEndpoint].isEmpty)
    }

    /// Wakes every wait (retries, back-off) and makes further ones return at once.
    func stopWaiting() {
        stopping.stop()
    }

    var isStopping: Bool { stopping.isStopped }

    // MARK: Enrollment

    func clearNodeKey() {
        enrollLock.lock()
        defer { enrollLock.unlock() }
        try? store.delete(DaemonStore.Domain.persistentSettings, Self.nodeKeyName)
    }

    /// The node key: the stored one, else a new enrollment's (empty when that failed).
    func nodeKey() -> String {
        enrollLock.lock()
        defer { enrollLock.unlock() }
        if let key = try? store.get(DaemonStore.Domain.persistentSettings, Self.nodeKeyName), !key.isEmpty {
            return key
        }
        if flags[.disableEnrollment] { return "" }
        let requestTime = String(Int(Date().timeIntervalSince1970))
        let key = enroll()
        if !key.isEmpty {
            try? store.put(DaemonStore.Domain.persistentSettings, Self.nodeKeyName, key)
            try? store.put(DaemonStore.Domain.persistentSettings, "nodeKeyTime", requestTime)
        }
        return key
    }

    /// osquery's TLSEnrollPlugin::enroll: up to `--tls_enroll_max_attempts` (0: forever), waiting
    /// min(step², `--tls_enroll_max_interval`) s between them.
    private func enroll() -> String {
        if stopping.isStopped {
            StatusLog.warning("Enrollment won't be attempted due to a shutdown request")
            return ""
        }
        let uri = transport.uri(flags[.enrollTlsEndpoint])
        let maxAttempts = flags[.tlsEnrollMaxAttempts], maxInterval = flags[.tlsEnrollMaxInterval]
        var attempt: UInt64 = 1
        var step: UInt64 = 1
        while maxAttempts == 0 || attempt <= maxAttempts {
            let outcome = requestKey()
            if case .success(let key) = outcome { return key }
            if attempt == maxAttempts {
                if case .failure(let error) = outcome {
                    StatusLog.error("Failed enrollment request to \(uri) (\(error.message)), giving up after \(attempt) attempts")
                }
                break
            }
            if maxAttempts > 0 { attempt += 1 }
            if case .failure(let error) = outcome {
                StatusLog.warning("Failed enrollment request to \(uri) (\(error.message)) retrying...")
            }
            let interval = min(step * step, maxInterval)
            if interval < maxInterval { step += 1 }
            if stopping.wait(seconds: Double(interval)) {
                StatusLog.warning("Enrollment attempts interrupted due to a shutdown request")
                break
            }
        }
        return ""
    }

    private func requestKey() -> Result<String, DaemonError> {
        var params: [String: Any] = [
            flags[.tlsEnrollOverride]: enrollSecret(),
            "host_identifier": hostIdentifier(),
            "platform_type": Self.platformType,
        ]
        params["host_details"] = hostDetails()
        let object: [String: Any]
        do {
            object = try exchange(flags[.enrollTlsEndpoint], params: params, nodeKey: "", compress: false).object
        } catch {
            return .failure(error)
        }
        if object["node_invalid"] as? Bool == true {
            return .failure(DaemonError("Request failed: Invalid node key" + ((object["error"] as? String).map { ": " + $0 } ?? "")))
        }
        let key = (object["node_key"] ?? object["id"]) as? String ?? ""
        if key.isEmpty { return .failure(DaemonError("No node key returned from TLS enroll plugin")) }
        return .success(key)
    }

    /// osquery's getEnrollSecret: the trimmed file at `--enroll_secret_path`, else the variable
    /// named by `--enroll_secret_env`.
    func enrollSecret() -> String {
        let path = flags[.enrollSecretPath]
        if !path.isEmpty {
            guard let bytes = FilesystemConfigSource.read(path, limit: 1 << 20) else {
                StatusLog.warning("Could not read the enroll secret file at \(path), error: \(String(cString: strerror(errno)))")
                return ""
            }
            return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let name = flags[.enrollSecretEnv]
        if !name.isEmpty {
            guard let value = ProcessInfo.processInfo.environment[name] else {
                StatusLog.warning("Could not get enroll secret from environment variable: \(name)")
                return ""
            }
            return value
        }
        return ""
    }

    // MARK: Requests

    /// One answer of the API: the body as received and parsed.
    struct Answer {
        let text: String
        let object: [String: Any]
    }

    /// One POST of `params` as JSON; the answer must be a JSON object (whatever the HTTP status:
    /// servers answer `node_invalid` with 401).
    func exchange(_ endpoint: String, params: [String: Any], nodeKey: String, compress: Bool) throws(DaemonError) -> Answer {
        var params = params
        if flags[.tlsSecretAlways] { params[flags[.tlsEnrollOverride]] = params[flags[.tlsEnrollOverride]] ?? enrollSecret() }
        let body: Data
        do {
            body = try JSONSerialization.data(withJSONObject: params, options: [.sortedKeys, .withoutEscapingSlashes])
        } catch {
            throw DaemonError("Request error: cannot encode the request: \(error)")
        }
        let response = try transport.postBlocking(endpoint, body: body, nodeKey: nodeKey, compress: compress)
        guard let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] else {
            throw DaemonError("Request error: the answer (HTTP \(response.status), \(response.body.count) bytes) is not a JSON object")
        }
        return Answer(text: String(decoding: response.body, as: UTF8.self), object: object)
    }

    /// osquery's TLSRequestHelper::go with attempts: `node_key` added to `params`; a
    /// `node_invalid` answer forgets the key (unless `--disable_reenrollment`), so the next
    /// attempt enrolls again; an `error` member fails the attempt.
    func request(_ endpoint: String, params: [String: Any], attempts: UInt64, compress: Bool = false) throws(DaemonError) -> Answer {
        var last = DaemonError("Request error: no attempt made")
        let attempts = max(attempts, 1)
        for i in 1...attempts {
            if stopping.isStopped { throw DaemonError("Request error: shutting down") }
            do {
                return try attempt(endpoint, params: params, compress: compress)
            } catch {
                last = error
            }
            if i == attempts { break }
            StatusLog.info("HTTP(S) request failed: \(last.message), retrying in \(i * i) seconds...")
            if stopping.wait(seconds: Double(i * i)) { break }
        }
        throw last
    }

    private func attempt(_ endpoint: String, params: [String: Any], compress: Bool) throws(DaemonError) -> Answer {
        let key = nodeKey()
        var params = params
        params["node_key"] = key
        let answer = try exchange(endpoint, params: params, nodeKey: key, compress: compress)
        if answer.object["node_invalid"] as? Bool == true {
            if !flags[.disableReenrollment] {
                enrollLock.lock()
                // Only the key that was refused: another thread may have enrolled meanwhile.
                if (try? store.get(DaemonStore.Domain.persistentSettings, Self.nodeKeyName)) == key {
                    try? store.delete(DaemonStore.Domain.persistentSettings, Self.nodeKeyName)
                }
                enrollLock.unlock()
            }
            throw DaemonError("Request failed: Invalid node key" + ((answer.object["error"] as? String).map { ": " + $0 } ?? ""))
        }
        if let error = answer.object["error"] {
            throw DaemonError("Request failed: " + ((error as? String) ?? "<unknown>"))
        }
        return answer
    }
}

/// A stop flag that also ends interruptible waits.
final class StopGate: @unchecked Sendable {  // every use of `stopped` holds `condition`
    private let condition = NSCondition()
    private var stopped = false

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// Waits up to `seconds`; true when stopped.
    func wait(seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !stopped, condition.wait(until: end) {}
        return stopped
    }
}
