import Foundation
import OsqueryEngine

/// osquery's `tls` config plugin (plugins/config/tls_config.cpp): POSTs `{"node_key": …}` to
/// `--config_tls_endpoint` (up to `--config_tls_max_attempts` times); the answer is the config,
/// kept as the server wrote it (key order is the schedule's order) under the name `tls_plugin`.
/// `--config_refresh` and `--config_accelerated_refresh` are the refresher's, as for any source.
struct TLSConfigSource: ConfigSource {
    let api: RemoteAPI
    var name: String { "tls" }

    func genConfig() throws(DaemonError) -> [(name: String, text: String)] {
        let answer = try api.request(api.flags[.configTlsEndpoint], params: [:], attempts: api.flags[.configTlsMaxAttempts])
        // --tls_node_api servers send the config JSON-escaped under "config".
        if api.flags[.tlsNodeApi], let text = answer.object["config"] as? String {
            return [("tls_plugin", text)]
        }
        return [("tls_plugin", answer.text)]
    }

    func genPack(name: String, value: String) throws(DaemonError) -> String {
        throw DaemonError("Pack \(name): the tls config plugin has no packs by reference; send them inline")
    }
}

/// The first row of each table osquery sends as `host_details` at enrollment.
enum HostDetails {
    static let tables = ["os_version", "osquery_info", "system_info", "platform_info"]

    static func collect(registry: PluginRegistry, flags: Flags) -> [String: [String: String]] {
        guard let database = try? Database(registry: registry, flags: flags) else { return [:] }
        database.refreshTables()
        var out: [String: [String: String]] = [:]
        for table in tables {
            guard let result = try? database.execute("SELECT * FROM \(table)"), let first = result.rowMaps().first else { continue }
            out[table] = first
        }
        return out
    }
}
