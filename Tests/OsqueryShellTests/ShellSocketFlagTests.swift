import OsqueryEngine
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 22 item 7: osqueryi reports the socket it listens on, not the flag's default.
@Suite struct ShellSocketFlagTests {
    @Test func osqueryFlagsNamesTheShellsSocket() throws {
        let binary = builtBinary()
        try #require(FileIO.exists(binary), "build osqueryi first: \(binary)")
        var template = Array("/tmp/osq-home-XXXXXX".utf8CString)
        let home = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        defer { _ = spawn("/bin/rm", ["-rf", home]) }
        let sql =
            "select (select value from osquery_flags where name = 'extensions_socket') as flag,"
            + " (select path from osquery_extensions where uuid = 0) as core"
        let r = spawn(
            binary, ["--extensions_autoload=" + home + "/none.load", "--line", sql])
        #expect(r.rc == 0, "\(r.err)")
        func value(_ name: String) -> String? {
            r.out.split(separator: "\n").first { $0.trimmingPrefix(while: { $0 == " " }).hasPrefix(name + " = ") }
                .map { String($0.split(separator: "=", maxSplits: 1)[1].dropFirst()) }
        }
        let flag = try #require(value("flag"), "\(r.out)")
        // ~/.osquery/shell.em (with a number appended when another shell holds it), as osquery.
        #expect(flag != "/var/osquery/osquery.em" && flag.contains("/.osquery/shell.em"), "\(r.out)")
        #expect(value("core") == flag, "\(r.out)")
    }
}
