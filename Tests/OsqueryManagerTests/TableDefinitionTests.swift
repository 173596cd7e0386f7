import OsqueryEngine
import OsqueryManager
import OsqueryProtocol
import Testing
import ThriftCodec

/// Issue 22 item 4: a table the core cannot declare is refused at registration with the reason,
/// and the core keeps serving.
@Suite struct TableDefinitionTests {
    @Test func undeclarableTablesAreRefusedWithTheReason() async throws {
        let core = try await TestCore.start("tabledef")
        let cases: [(ThriftString, ExtensionPluginResponse, String)] = [
            ("my-table", t1Routes, "Invalid table name my-table (ASCII letters, digits and _, not starting with a digit)"),
            ("no_cols", [["id": "alias", "alias": "no_cols_v"]], "Table no_cols has no columns"),
            ("dup_cols", t1Routes + [["id": "column", "name": "A", "type": "TEXT", "op": "0"]], "Duplicate column name in dup_cols: A"),
        ]
        for (table, routes, message) in cases {
            let status = try await core.client.registerExtension(
                info: InternalExtensionInfo(name: "tabledef", version: "1.0", sdkVersion: "1.7.7", minSDKVersion: "1.0.0"),
                registry: ["table": [table: routes]])
            #expect(status == ExtensionStatus(code: 1, message: ThriftString("Failed adding registry: \(message)")))
        }
        #expect(try await core.client.extensions().isEmpty)
        let time = try await core.client.query("select * from time").response
        #expect(time.count == 1 && time[0]["unix_time"] != nil)
        await core.stop()
    }
}
