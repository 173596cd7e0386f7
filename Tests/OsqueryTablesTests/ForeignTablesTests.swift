import OsqueryEngine
@testable import OsqueryTables
import Testing

@Suite struct ForeignTablesTests {
    /// Every generated declaration reads back as a schema of known types, and
    /// none names (or aliases) one of our own tables.
    @Test func theGeneratedSpecsAreWellFormed() {
        let builtin = Set(BuiltinTables.all(registry: PluginRegistry(), flags: Flags()).map(\.schema.name))
        var seen: Set<String> = []
        for spec in foreignTableSpecs {
            let schema = spec.schema
            #expect(!schema.columns.isEmpty, "\(spec.name)")
            #expect(schema.columns.allSatisfy { $0.type != .unknown && !$0.name.isEmpty }, "\(spec.name)")
            #expect(!spec.platforms.split(separator: ",").contains("linux"), "\(spec.name)")
            for name in [spec.name] + spec.aliases {
                #expect(!builtin.contains(name) && seen.insert(name).inserted, "\(name)")
            }
            for alias in schema.columnAliases {
                #expect(schema.columns.contains { $0.name == alias.target }, "\(spec.name).\(alias.alias)")
            }
        }
        let launchd = foreignTableSpecs.first { $0.name == "launchd" }?.schema
        #expect(launchd?.columns.first == TableColumn("path", .text, .index))
    }

    /// Registered only with --enable_foreign; each answers no rows.
    @Test func registeredOnlyWhenEnabled() throws {
        let plain = PluginRegistry()
        BuiltinTables.register(into: plain, flags: Flags())
        #expect(plain.item(registry: "table", name: "launchd") == nil)
        let flags = Flags()
        try flags.set("enable_foreign", "true")
        let foreign = PluginRegistry()
        BuiltinTables.register(into: foreign, flags: flags)
        #expect(foreign.items(registry: "table").count == plain.items(registry: "table").count + foreignTableSpecs.count)
        let table = try #require(foreign.item(registry: "table", name: "launchd")?.table)
        #expect(try table.generate(QueryContext(schema: table.schema)).count == 0)
    }
}
