import Foundation
import OsqueryEngine
@testable import OsqueryShell
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under /tmp, 0700.
private func scratch(_ tag: String) -> String {
    var template = Array("/tmp/osqsh-\(tag).XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(made != nil, "mkdtemp failed")
    return String(cString: made!)
}

/// Issue 14: hostile values and hostile files around osqueryi.
@Suite(.serialized) struct ShellHardeningTests {
    /// Item 5: the query from the issue (2.2 GB of text) is an error; the shell goes on.
    @Test func aResultPast2GiBIsAnErrorAndTheShellGoesOn() {
        let sql = "SELECT length(concat(zeroblob(1000000000), zeroblob(1000000000), zeroblob(200000000)));\nSELECT 42 AS x;\n"
        let run = spawn(builtBinary(), ["--list"], stdin: sql)
        #expect(run.err.contains("too big"), "\(run.err)")
        #expect(run.out.contains("42"), "\(run.out) \(run.err)")
    }

    /// Item 15: the history file is a link to another file, which must stay intact: it is not
    /// read as history, and saving replaces the link instead of writing through it.
    @Test func aHistoryLinkIsReplacedNotFollowed() throws {
        let dir = scratch("history")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        try "do not touch\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let history = dir + "/.history"
        #expect(symlink(victim, history) == 0)
        let editor = LineEditor(historyPath: history)
        #expect(editor.history.isEmpty)
        editor.addHistory("select 1;")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "do not touch\n")
        var st = stat()
        #expect(lstat(history, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFREG)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(try String(contentsOfFile: history, encoding: .utf8) == "select 1;\n")
        editor.addHistory("select 2;")
        #expect(LineEditor(historyPath: history).history == ["select 1;", "select 2;"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == [".history", "victim"])
    }
}
