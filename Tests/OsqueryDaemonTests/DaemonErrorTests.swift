import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

@Suite struct DaemonErrorTests {
    @Test func carriesExitCode() {
        let e = DaemonError("results cannot be written", exitCode: 78)
        #expect(e.exitCode == 78)
        #expect("\(e)" == "results cannot be written")
    }
}
