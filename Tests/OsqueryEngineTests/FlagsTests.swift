import OsqueryEngine
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FlagsTests {
    @Test func defaultsAndTypes() {
        let flags = Flags()
        #expect(flags[.configPath] == "/etc/osquery/osquery.conf")
        #expect(flags[.header])
        #expect(!flags[.json])
        #expect(flags[.readMax] == 52_428_800)
        #expect(flags.definition("config_refresh")?.type == .uint64)
        #expect(flags.isDefault(.verbose))
    }

    @Test func commandLineForms() throws {
        let flags = Flags()
        let parsed = try flags.parse([
            "--verbose", "--config_path=/tmp/x.conf", "--logger_path", "/tmp/logs", "-separator=,",
            "--noheader", "--json=false", "SELECT 1", "--", "--not_a_flag",
        ])
        #expect(flags[.verbose])
        #expect(flags[.configPath] == "/tmp/x.conf")
        #expect(flags[.loggerPath] == "/tmp/logs")
        #expect(flags[.separator] == ",")
        #expect(!flags[.header])
        #expect(!flags[.json])
        #expect(parsed.positional == ["SELECT 1", "--not_a_flag"])
        #expect(parsed.setFlags == ["verbose", "config_path", "logger_path", "separator", "header", "json"])
        #expect(!flags.isDefault(.verbose))
        #expect(flags.wasSet(.json))
    }

    @Test func aliasesResolve() throws {
        let flags = Flags()
        try flags.parse(["--db_path=/tmp/db"])
        #expect(flags[.databasePath] == "/tmp/db")
    }

    @Test func errors() {
        let flags = Flags()
        #expect(throws: FlagError("ERROR: unknown command line flag 'no_such_flag'")) {
            try flags.parse(["--no_such_flag=1"])
        }
        #expect(throws: FlagError("ERROR: illegal value 'abc' specified for uint64 flag 'read_max'")) {
            try flags.parse(["--read_max=abc"])
        }
        #expect(throws: FlagError("ERROR: illegal value 'maybe' specified for bool flag 'verbose'")) {
            try flags.parse(["--verbose=maybe"])
        }
        #expect(throws: FlagError.self) { try flags.parse(["--config_path"]) }
    }

    @Test func disableAndEnableTables() throws {
        let registry = PluginRegistry()
        registry.addTable(makeTestTable())
        registry.addTable(makeRequiredTable())
        let disabling = Flags()
        try disabling.parse(["--disable_tables=test_table"])
        let db = try Database(registry: registry, flags: disabling)
        #expect(db.attachedTableNames == ["needs_path"])
        #expect(throws: EngineError(code: 1, message: "no such table: test_table")) { try db.execute("SELECT * FROM test_table") }
        let enabling = Flags()
        try enabling.parse(["--enable_tables=test_table,needs_path", "--disable_tables=needs_path"])
        #expect(try Database(registry: registry, flags: enabling).attachedTableNames == ["test_table"], "disable wins")
    }

    @Test func flagfileWithComments() throws {
        let path = "/tmp/osquery-engine-test-\(getpid()).flags"
        let text = """
            # a comment
            --config_path=/from/flagfile.conf

              --verbose
            --logger_min_status=2
            """
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        defer { unlink(path) }
        let flags = Flags()
        try flags.parse(["--flagfile", path, "--logger_min_status=1"])
        #expect(flags[.configPath] == "/from/flagfile.conf")
        #expect(flags[.verbose])
        #expect(flags[.loggerMinStatus] == 1, "later command-line flags win")
        #expect(throws: FlagError("ERROR: Failed to read flagfile: /nonexistent/flags")) {
            try Flags().parse(["--flagfile=/nonexistent/flags"])
        }
    }
}
