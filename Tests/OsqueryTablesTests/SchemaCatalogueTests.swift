import OsqueryConfig
import OsqueryEngine
import OsqueryTables
import ProtocolFixture
import Testing

/// osquery's Linux schemas (LinuxSchemas.swift, generated from osquery's specs) as our schemas.
enum OsqueryLinuxCatalogue {
    static let schemas: [String: TableSchema] = {
        var out: [String: TableSchema] = [:]
        var current: TableSchema?
        func finish() {
            if let schema = current { out[schema.name] = schema }
        }
        for line in osqueryLinuxSchemas.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            switch words[0] {
            case "table":
                finish()
                current = TableSchema(name: words[1], columns: [])
            case "attributes":
                current?.attributes = words.dropFirst().reduce(into: TableAttributes()) { $0.formUnion(attribute($1)) }
            case "alias":
                current?.aliases.append(words[1])
            case "column":
                let options = words.dropFirst(3).reduce(into: ColumnOptions()) { $0.formUnion(option($1)) }
                current?.columns.append(TableColumn(words[1], type(words[2]), options))
            case "column_alias":
                current?.columnAliases.append((alias: words[1], target: words[2]))
            default:
                Issue.record("unexpected schema line \(line)")
            }
        }
        finish()
        return out
    }()

    static func attribute(_ word: String) -> TableAttributes {
        switch word {
        case "utility": .utility
        case "cacheable": .cacheable
        case "event_subscriber": .eventBased
        case "user_data": .userBased
        case "kernel_required": .kernelRequired
        default: []
        }
    }

    static func type(_ word: String) -> ColumnType {
        word == "UNSIGNED_BIGINT" ? .unsignedBigint : ColumnType(name: word)
    }

    static func option(_ word: String) -> ColumnOptions {
        .specWord(word)
    }

    /// One line per difference between two schemas of a table.
    static func differences(_ ours: TableSchema, _ theirs: TableSchema) -> [String] {
        var out: [String] = []
        func describe(_ c: TableColumn) -> String { "\(c.name) \(c.type.rawValue) op=\(c.options.rawValue)" }
        let count = max(ours.columns.count, theirs.columns.count)
        for i in 0..<count {
            let a = i < ours.columns.count ? describe(ours.columns[i]) : "-"
            let b = i < theirs.columns.count ? describe(theirs.columns[i]) : "-"
            if a != b { out.append("column \(i): ours \(a), osquery \(b)") }
        }
        if ours.aliases != theirs.aliases { out.append("aliases: ours \(ours.aliases), osquery \(theirs.aliases)") }
        let ourColumnAliases = ours.columnAliases.map { "\($0.alias)->\($0.target)" }
        let theirColumnAliases = theirs.columnAliases.map { "\($0.alias)->\($0.target)" }
        if ourColumnAliases != theirColumnAliases { out.append("column aliases: ours \(ourColumnAliases), osquery \(theirColumnAliases)") }
        if ours.attributes != theirs.attributes {
            out.append("attributes: ours \(ours.attributes.rawValue), osquery \(theirs.attributes.rawValue)")
        }
        return out
    }
}

@Suite struct SchemaCatalogueTests {
    @Test func catalogueHasOsquerysLinuxTables() {
        let schemas = OsqueryLinuxCatalogue.schemas
        #expect(schemas.count == 145)
        #expect(schemas["deb_packages"]?.columns.first?.name == "name")
        #expect(schemas["processes"]?.columns.first { $0.name == "pid" }?.options.contains(.index) == true)
        #expect(schemas["osquery_info"]?.attributes == .utility)
        let events = ["apparmor_events", "file_events", "hardware_events", "process_events", "process_file_events", "seccomp_events",
                      "selinux_events", "socket_events", "syslog_events", "user_events", "yara_events"]
        #expect(events.allSatisfy { schemas[$0] == nil }, "event tables are left out")
    }

    /// Every built-in table has osquery's schema, as `.schema`, `osquery_registry` and the
    /// extension protocol show it; the tables of the catalogue still missing are listed.
    @Test func builtinTablesHaveOsquerysSchemas() throws {
        let (db, flags, registry) = try makeTablesDatabase()
        let catalogue = OsqueryLinuxCatalogue.schemas
        var ours = Set<String>()
        // osquery_schedule and osquery_packs come with the config (both programs register them).
        ScheduleTables.register(into: registry, scheduler: nil, packs: nil)
        let configTables = [ScheduleTables.scheduleSchema, ScheduleTables.packsSchema]
        for schema in BuiltinTables.all(registry: registry, flags: flags).map(\.schema) + configTables {
            ours.insert(schema.name)
            guard let expected = catalogue[schema.name] else {
                Issue.record("\(schema.name) is not one of osquery's Linux tables")
                continue
            }
            let differences = OsqueryLinuxCatalogue.differences(schema, expected)
            #expect(differences.isEmpty, "\(schema.name): \(differences.joined(separator: "; "))")
            #expect(schema.createStatement == expected.createStatement)
            #expect(schema.routeInfo == expected.routeInfo)
        }
        let registered = try db.execute("SELECT name FROM osquery_registry WHERE registry = 'table'")
        let names = Set((0..<registered.rowCount).compactMap { row -> String? in
            if case .text(let name) = registered[row, 0] { return name }
            return nil
        })
        #expect(ours.isSubset(of: names))
    }

    /// What the built osqueryi really has: every catalogue table `osquery_registry` lists there
    /// (events, the daemon's carves and the config's tables included), each with osquery's
    /// `CREATE TABLE` as `.schema` prints it.
    @Test func osqueryiRegistryListsTheCatalogue() async throws {
        let osqueryi = try BuiltProducts.path("osqueryi")
        let (rc, out, err) = try await runToCompletion(
            osqueryi, ["--disable_extensions", "--list", "--header=false", "SELECT name FROM osquery_registry WHERE registry = 'table'"])
        #expect(rc == 0, "osqueryi: \(err)")
        let listed = Set(out.split(separator: "\n").map(String.init))
        let (schemaRC, schemaOut, schemaErr) = try await runToCompletion(osqueryi, ["--disable_extensions", ".schema"])
        #expect(schemaRC == 0, "osqueryi .schema: \(schemaErr)")
        var statements: [String: String] = [:]
        for line in schemaOut.split(separator: "\n") where line.hasPrefix("CREATE TABLE ") {
            let name = line.dropFirst("CREATE TABLE ".count).prefix { $0 != "(" }
            statements[String(name)] = String(line)
        }
        let catalogue = OsqueryLinuxCatalogue.schemas
        for (name, expected) in catalogue where listed.contains(name) {
            #expect(statements[name] == expected.createStatement, "\(name): osqueryi's .schema differs from osquery's")
        }
        let missing = Set(catalogue.keys).subtracting(listed)
        let report = missing.sorted().joined(separator: " ")
        print("osquery Linux tables in osqueryi's osquery_registry: \(catalogue.count - missing.count) of \(catalogue.count); \(missing.count) missing: \(report)")
        #expect(missing.isEmpty, "missing from osqueryi: \(report)")
    }
}
