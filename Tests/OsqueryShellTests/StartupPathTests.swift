@testable import OsqueryShell
import Testing

/// The start-up path's byte-level argv[0] check and one-shot statements built from arguments.
@Suite struct StartupPathTests {
    @Test func argv0NamesTheMode() {
        #expect(OsqueryShellMain.namesDaemon("osqueryd"))
        #expect(OsqueryShellMain.namesDaemon("/usr/bin/osqueryd"))
        #expect(OsqueryShellMain.namesDaemon("./my-osqueryd-test"))
        #expect(!OsqueryShellMain.namesDaemon("osqueryi"))
        #expect(!OsqueryShellMain.namesDaemon("/opt/osqueryd/bin/osqueryi"))
        #expect(!OsqueryShellMain.namesDaemon("/usr/bin/osquery"))
        #expect(!OsqueryShellMain.namesDaemon(""))
        #expect(!OsqueryShellMain.namesDaemon("/"))
        #expect(!OsqueryShellMain.namesDaemon("osqueryd/"))
        #expect(OsqueryShellMain.namesDaemon("é/ososqueryd"))
    }

    /// Several positional arguments are one statement joined by spaces; one is used as is.
    @Test func positionalArgumentsFormOneStatement() {
        let several = osqueryi(["SELECT", "1", "AS", "x;"])
        #expect(several.rc == 0)
        #expect(several.out == "+---+\n| x |\n+---+\n| 1 |\n+---+\n")
        let one = osqueryi(["SELECT 2 AS y;"])
        #expect(one.out == "+---+\n| y |\n+---+\n| 2 |\n+---+\n")
    }

    /// In-process runs (tests) leave swift-log alone: nothing is pending without `main()`.
    @Test func loggingBootstrapIsOnlyForMain() {
        OsqueryShellMain.bootstrapLoggingIfRequested()
        OsqueryShellMain.bootstrapLoggingIfRequested()
    }
}
