import Foundation
import ProtocolFixture
import Testing

@Suite struct ShellEventsTests {
    /// osqueryi's events are off by default: an event table answers no rows and osquery's warning.
    @Test func shellWarnsThatEventsAreDisabled() async throws {
        let binary = try BuiltProducts.path("osqueryi")
        let run = try await runToCompletion(
            binary, ["--config_path=/nonexistent/osquery.conf", "--disable_extensions", "--json", "SELECT * FROM file_events;"])
        #expect(run.0 == 0)
        #expect(run.1.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || run.1.trimmingCharacters(in: .whitespacesAndNewlines) == "[]"
            || run.1.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        let lines = run.2.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("W") && $0.hasSuffix("] Table file_events is event-based but events are disabled") })
        #expect(lines.contains { $0.hasSuffix("] Please see the table documentation: https://osquery.io/schema/#file_events") })
    }
}
