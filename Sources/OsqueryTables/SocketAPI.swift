import OsqueryEngine

/// One table scan's conversation with a JSON API on a local Unix socket (the Docker Engine
/// API on `--docker_socket`, LXD's on `--lxd_socket`): each request bounded by
/// `--table_http_timeout` and `--table_http_max_bytes`; after a request that cannot reach the
/// server or times out, the rest of the scan asks nothing more, so a hung server costs one
/// timeout per scan, not one per object. Messages are osquery's, with the product's name.
final class SocketAPI {
    let product: String
    let socket: String
    let timeout: Double
    let maxBytes: Int
    let maxObjects: Int
    let maxObjectsFlag: String
    let okStatuses: [Int]
    let log: OnceLog
    private var broken = false

    init(product: String, socket: String, maxObjects: UInt64, maxObjectsFlag: String, okStatuses: [Int], flags: Flags, log: OnceLog) {
        self.product = product
        self.socket = socket
        self.maxObjects = Int(clamping: maxObjects)
        self.maxObjectsFlag = maxObjectsFlag
        self.okStatuses = okStatuses
        timeout = Double(flags[.tableHttpTimeout])
        maxBytes = Int(clamping: flags[.tableHttpMaxBytes])
        self.log = log
    }

    /// The Docker Engine API (osquery accepts only 200).
    static func docker(flags: Flags, log: OnceLog = .shared) -> SocketAPI {
        SocketAPI(
            product: "docker", socket: flags[.dockerSocket], maxObjects: flags[.dockerMaxObjects], maxObjectsFlag: "docker_max_objects",
            okStatuses: [200], flags: flags, log: log)
    }

    /// The JSON document a GET of `uri` answers with; nil (after logging why, as osquery's
    /// "Error getting <product> <what>: …") when there is none.
    func get(_ uri: String, what: String) -> JSONValue? {
        guard !broken else { return nil }
        // A path the server handed out that cannot go on a request line is that object's
        // problem only, not the connection's.
        guard uri.hasPrefix("/"), uri.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }) else {
            log.info("Error getting \(product) \(what): Invalid request target: \(uri.debugDescription)")
            return nil
        }
        let response: HTTPFetch.Response
        do {
            response = try HTTPFetch.request(unixSocket: socket, target: uri, headers: [("Accept", "*/*")], timeout: timeout, maxBytes: maxBytes)
        } catch let failure as HTTPFetch.Failure {
            broken = true
            let reason = failure.unreachable ? "Error connecting to \(product) sock: \(failure)" : "Error calling \(product) API: \(failure)"
            log.info("Error getting \(product) \(what): \(reason)")
            return nil
        } catch {
            broken = true
            log.info("Error getting \(product) \(what): Error calling \(product) API: \(error)")
            return nil
        }
        guard okStatuses.contains(response.status) else {
            let document = try? JSONValue.parse(String(decoding: response.body, as: UTF8.self))
            // The server's own reason, when its error body has one (LXD's `error`, Docker's `message`).
            let said = [document?["error"]?.text, document?["message"]?.text].compactMap { $0 }.first { !$0.isEmpty }
            log.info("Error getting \(product) \(what): Invalid \(product) API response for \(uri): HTTP status \(response.status)"
                + (said.map { " (\($0.prefix(200)))" } ?? ""))
            return nil
        }
        do {
            return try JSONValue.parse(String(decoding: response.body, as: UTF8.self))
        } catch {
            log.info("Error getting \(product) \(what): Error reading \(product) API response for \(uri): \(error)")
            return nil
        }
    }

    /// The first `maxObjects` elements of a list the scan walks with a request each.
    func walked(_ list: [JSONValue], what: String) -> ArraySlice<JSONValue> {
        if list.count > maxObjects {
            log.info("Walking the first \(maxObjects) of \(list.count) \(product) \(what) (--\(maxObjectsFlag))")
        }
        return list.prefix(maxObjects)
    }
}
