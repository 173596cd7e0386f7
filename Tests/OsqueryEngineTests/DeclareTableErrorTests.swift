import OsqueryEngine
import Testing

/// Issue 22 item 4: when SQLite cannot declare a table, the error says why.
@Suite struct DeclareTableErrorTests {
    @Test func declareFailureCarriesSQLitesReason() throws {
        let table = RecordingTable(
            schema: TableSchema(name: "dup_decl", columns: [TableColumn("a", .text), TableColumn("A", .integer)]), rows: [])
        let db = try makeDatabase([table])
        #expect {
            try db.execute("select * from dup_decl")
        } throws: { error in
            "\(error)".contains("Failed to declare table dup_decl: duplicate column name: A")
        }
        #expect(try db.execute("select 1")[0, 0] == 1)
    }
}
