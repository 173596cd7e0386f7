import Foundation
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The package tables (issue 18) through osqueryi, as root and as an unprivileged user: without
/// root they read what that user may read, and never fail.
@Suite(.serialized) struct PackageTablesProcessTests {
    static let tables = [
        "rpm_packages", "rpm_package_files", "yum_sources", "python_packages", "npm_packages", "portage_packages", "portage_use",
        "portage_keywords", "chrome_extensions", "chrome_extension_content_scripts", "firefox_addons", "vscode_extensions",
        "jetbrains_plugins",
    ]

    static func rows(_ args: [String], _ shell: String, _ sql: String) async throws -> [[String: String]] {
        let (status, out, err) = try await Real.run(args.isEmpty ? shell : args[0], (args.isEmpty ? [] : Array(args.dropFirst()) + [shell]) + ["--json", sql])
        #expect(status == 0, "\(sql): \(err)")
        return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: String]], "\(sql): \(out)")
    }

    @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0)) func tablesAnswerAsRootAndAsNobody() async throws {
        let shell = try BuiltProducts.path("osqueryi")
        let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        for table in Self.tables {
            _ = try await Self.rows([], shell, "SELECT * FROM \(table)")
            _ = try await Self.rows(nobody, shell, "SELECT * FROM \(table)")
        }
        // The system's site directories are world-readable: nobody sees the same packages there.
        let sql = "SELECT name, version, path FROM python_packages WHERE directory LIKE '/usr/%'"
        let root = try await Self.rows([], shell, sql)
        let unprivileged = try await Self.rows(nobody, shell, sql)
        #expect(Set(unprivileged.map { $0["path"] ?? "" }) == Set(root.map { $0["path"] ?? "" }))
        #expect(!root.isEmpty || access("/usr/lib/python3/dist-packages", F_OK) != 0)
    }
}
