import OsqueryConformance
import Testing

@Suite struct ReportTests {
    @Test func summaryLineAndExitCode() {
        var report = Report(mode: "core")
        report.results = [
            CheckResult(id: "a", status: .pass, cite: "§6 #1"),
            CheckResult(id: "b", status: .fail, cite: "§6 #2", detail: "expected x; saw y"),
            CheckResult(id: "c", status: .skip, cite: "§1.3", detail: "why"),
            CheckResult(id: "d", status: .pass, cite: "§2.3", differsOnPurpose: "reason"),
        ]
        let lines = report.text.split(separator: "\n")
        #expect(lines.last == "2 passed, 1 failed, 1 skipped")
        #expect(lines[1] == "b FAIL [docs/protocol.md §6 #2] expected x; saw y")
        #expect(lines[3] == "d PASS [docs/protocol.md §2.3] (differs on purpose: reason)")
        #expect(report.exitCode == 1)
        report.results.remove(at: 1)
        #expect(report.exitCode == 0)
        #expect(report.text.hasSuffix("2 passed, 0 failed, 1 skipped\n"))
    }
}
