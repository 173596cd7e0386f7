import OsqueryProtocol
import ThriftCodec

/// The rows of `sql` asked through a running core's extension socket (osqueryd's or osqueryi's),
/// as column-to-text maps; nil while the core does not answer or when the query fails.
package func coreQuery(_ socket: String, _ sql: String) async -> [[String: String]]? {
    let client = ExtensionManagerClient(path: socket)
    defer { client.close() }
    guard let response = try? await client.query(ThriftString(sql), timeout: .seconds(10)), response.status.code == 0 else {
        return nil
    }
    return response.response.map { row in
        Dictionary(row.entries.map { ($0.key.lossyString, $0.value.lossyString) }, uniquingKeysWith: { a, _ in a })
    }
}
