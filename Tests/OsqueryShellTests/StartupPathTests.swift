import OsqueryEngine
@testable import OsqueryShell
import Synchronization
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

/// The pretty table written as bytes (osqueryi's stdout path) is the same as through `out`.
@Suite struct ByteOutputTests {
    final class Sink: Sendable {
        let text = Mutex("")
        let bytes = Mutex<[UInt8]>([])
    }

    func run(_ args: [String], bytes: Bool) -> (rc: Int32, text: String, bytes: [UInt8]) {
        StatusLog.setSink { _, _ in }
        let sink = Sink()
        var io = ShellIO(out: { s in sink.text.withLock { $0 += s } }, err: { _ in })
        if bytes {
            // Everything in one stream, so ordering between the two paths is checked too.
            io.out = { s in sink.bytes.withLock { $0 += Array(s.utf8) } }
            io.outBytes = { b in sink.bytes.withLock { $0 += Array(b) } }
        }
        let rc = OsqueryShellMain.run(
            ["osqueryi"] + args, io: io, registry: PluginRegistry(), flags: Flags(),
            readStandardInput: { nil }, standardInputIsTerminal: false)
        return (rc, sink.text.withLock { $0 }, sink.bytes.withLock { $0 })
    }

    @Test func prettyBytesMatchTheStringPath() {
        let sql = "SELECT 1 AS a, 'é x' AS b, NULL AS c UNION ALL SELECT 22, 'y', 3.5; SELECT 'second' AS s WHERE 0; SELECT 'third' AS t;"
        let viaString = run([sql], bytes: false)
        let viaBytes = run([sql], bytes: true)
        #expect(viaString.rc == 0 && viaBytes.rc == 0)
        #expect(viaString.text.hasPrefix("+----+-----+-----+\n| a  | b   | c   |\n"))
        #expect(viaString.text.contains("| third |"))
        #expect(viaBytes.bytes == Array(viaString.text.utf8))
        #expect(viaBytes.text.isEmpty)
    }

    @Test func otherModesStillUseTheStringPath() {
        let viaBytes = run(["--json", "SELECT 1 AS a"], bytes: true)
        #expect(String(decoding: viaBytes.bytes, as: UTF8.self) == "[\n  {\"a\":\"1\"}\n]\n")
    }
}
