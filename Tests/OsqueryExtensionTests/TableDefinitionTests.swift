import Testing
import OsqueryExtension
import OsqueryExtensionTesting

/// Issue 22 item 4: what the core refuses to declare is refused by the SDK and the testing kit
/// too, with the core's message, before anything is registered.
@Suite struct TableDefinitionTests {
    static let refused: [(Table, String)] = [
        (Table("my-table", columns: [.text("a")]) { _ in [] },
         "Invalid table name my-table (ASCII letters, digits and _, not starting with a digit)"),
        (Table("empty_t", columns: []) { _ in [] }, "Table empty_t has no columns"),
        (Table("dup_t", columns: [.text("a"), .integer("b"), .text("A")]) { _ in [] }, "Duplicate column name in dup_t: A"),
        (Table("alias_dup_t", columns: [.text("a")], columnAliases: [.init("a", target: "a")]) { _ in [] },
         "Duplicate column name in alias_dup_t: a"),
        (Table("col_t", columns: [.text("a b")]) { _ in [] },
         "Invalid column name in col_t: a b (ASCII letters, digits and _, not starting with a digit)"),
    ]

    @Test func schemaSaysWhyTheCoreWouldRefuseIt() {
        for (table, message) in Self.refused { #expect(table.schema.problem == message) }
        #expect(Table("fine_t", columns: [.text("a"), .integer("b")], aliases: ["fine_v"]) { _ in [] }.schema.problem == nil)
    }

    @Test func tableTesterRefusesWhatTheCoreRefuses() async throws {
        for (table, message) in Self.refused {
            #expect {
                _ = try TableTester(table)
            } throws: { error in
                "\(error)" == message
            }
        }
        let fine = try TableTester(Table("fine_t", columns: [.text("a")]) { _ in [["a": "x"]] })
        #expect(try await fine.query("select a from fine_t") == [["a": "x"]])
    }

    /// The extension refuses to start (before registering) and the fake core, asked directly,
    /// refuses the routes with the core's status; it keeps serving afterwards.
    @Test func extensionAndFakeCoreRefuseBeforeRegistering() async throws {
        let core = try await FakeCore.start()
        for (table, message) in Self.refused {
            let ext = Extension("bad_ext", plugins: [table])
            await #expect {
                try await ext.start(options: try options(core.socket))
            } throws: { error in
                "\(error)" == message
            }
            let status = try await core.registerExtension(
                info: InternalExtensionInfo(name: "raw_ext", version: "1", sdkVersion: "5.16.0", minSDKVersion: "1.7.7"),
                registry: ["table": [ThriftString(table.name): table.schema.routes]])
            #expect(status.code == 1 && status.message.lossyString == "Failed adding registry: \(message)")
        }
        #expect(core.registrations.isEmpty)
        let good = Extension("good_ext", plugins: [Table("fine_t", columns: [.text("a")]) { _ in [["a": "x"]] }])
        try await good.start(options: try options(core.socket))
        #expect(try await OsqueryClient(socket: core.socket).query("select a from fine_t") == [["a": "x"]])
        good.stop()
        _ = await good.waitUntilStopped()
        await core.stop()
    }
}
