import Foundation
import ProtocolFixture
import Testing

/// osqueryi with `--enable_foreign`, as osquery's: the tables osquery declares
/// for other platforms only exist with their columns and answer no rows.
@Suite struct ForeignTablesProcessTests {
    func count(_ output: String) -> Int? {
        let rows = (try? JSONSerialization.jsonObject(with: Data(output.utf8))) as? [[String: String]]
        return rows?.first?["n"].flatMap { Int($0) }
    }

    @Test func enableForeignRegistersOtherPlatformsTablesThatAnswerNoRows() async throws {
        let shell = try BuiltProducts.path("osqueryi")
        let registry = "SELECT count(1) AS n FROM osquery_registry"
        let (plainStatus, plain, plainErr) = try await Real.run(shell, ["--json", registry])
        let (foreignStatus, foreign, foreignErr) = try await Real.run(shell, ["--json", "--enable_foreign", registry])
        #expect(plainStatus == 0 && foreignStatus == 0, "\(plainErr)\(foreignErr)")
        let before = try #require(count(plain), "\(plain)")
        let after = try #require(count(foreign), "\(foreign)")
        #expect(after > before + 100, "\(before) -> \(after)")

        // A macOS table and a Windows one (by its alias): no rows, osquery's columns.
        let (launchdStatus, launchd, launchdErr) = try await Real.run(
            shell, ["--json", "--enable_foreign", "SELECT path, label, program_arguments FROM launchd"])
        #expect(launchdStatus == 0 && launchd.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]", "\(launchd)\(launchdErr)")
        let (columnsStatus, columns, _) = try await Real.run(
            shell, ["--csv", "--enable_foreign", "SELECT name, type FROM pragma_table_info('programs_and_features') LIMIT 3"])
        #expect(columnsStatus == 0 && columns == "name|type\nname|TEXT\nversion|TEXT\ninstall_location|TEXT\n", "\(columns)")

        let (missingStatus, _, missingErr) = try await Real.run(shell, ["--json", "SELECT * FROM launchd"])
        #expect(missingStatus != 0 && missingErr.contains("no such table: launchd"), "\(missingErr)")
    }
}
