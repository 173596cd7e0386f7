import Foundation
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The system tables (issue 18) through osqueryi, as root and as an unprivileged user: without
/// root they degrade (no rows where osquery needs root), never fail. The cloud tables ask a
/// closed loopback port, never the link-local metadata address.
@Suite(.serialized) struct SystemTablesProcessTests {
    static let queries: [(table: String, sql: String)] = [
        ("certificates", "SELECT * FROM certificates"),
        ("extended_attributes", "SELECT * FROM extended_attributes WHERE path = '/etc/passwd'"),
        ("magic", "SELECT * FROM magic WHERE path = '/etc/passwd'"),
        ("augeas", "SELECT * FROM augeas WHERE path = '/etc/hosts'"),
        ("curl", "SELECT * FROM curl WHERE url = 'http://127.0.0.1:1/'"),
        ("curl_certificate", "SELECT * FROM curl_certificate WHERE hostname = '127.0.0.1:1'"),
        ("prometheus_metrics", "SELECT * FROM prometheus_metrics"),
        ("ec2_instance_metadata", "SELECT * FROM ec2_instance_metadata"),
        ("ec2_instance_tags", "SELECT * FROM ec2_instance_tags"),
        ("azure_instance_metadata", "SELECT * FROM azure_instance_metadata"),
        ("azure_instance_tags", "SELECT * FROM azure_instance_tags"),
        ("ycloud_instance_metadata", "SELECT * FROM ycloud_instance_metadata"),
        ("md_devices", "SELECT * FROM md_devices"),
        ("md_drives", "SELECT * FROM md_drives"),
        ("disk_encryption", "SELECT * FROM disk_encryption"),
        ("secureboot", "SELECT * FROM secureboot"),
        ("secureboot_certificates", "SELECT * FROM secureboot_certificates"),
        ("msr", "SELECT * FROM msr"),
    ]

    static func rows(_ prefix: [String], _ shell: String, _ sql: String) async throws -> [[String: String]] {
        let flags = ["--cloud_metadata_address=127.0.0.1:1", "--json", sql]
        let (status, out, err) = try await Real.run(prefix.isEmpty ? shell : prefix[0], (prefix.isEmpty ? [] : Array(prefix.dropFirst()) + [shell]) + flags)
        #expect(status == 0, "\(sql): \(err)")
        return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: String]], "\(sql): \(out)")
    }

    @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0)) func tablesAnswerAsRootAndAsNobody() async throws {
        let shell = try BuiltProducts.path("osqueryi")
        let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        var root: [String: [[String: String]]] = [:]
        var unprivileged: [String: [[String: String]]] = [:]
        for (table, sql) in Self.queries {
            root[table] = try await Self.rows([], shell, sql)
            unprivileged[table] = try await Self.rows(nobody, shell, sql)
        }
        // The CA bundle and a file's type are anyone's to read.
        #expect(unprivileged["certificates"]!.count == root["certificates"]!.count)
        #expect(unprivileged["magic"]!.map { $0["data"] } == root["magic"]!.map { $0["data"] })
        #expect(root["curl"]!.count == 1 && (root["curl"]![0]["response_code"] ?? "") == "")
        // osquery gives disk encryption to root only.
        #expect(unprivileged["disk_encryption"]!.isEmpty)
        #expect(root["disk_encryption"]!.count >= (access("/sys/class/block/vda", F_OK) == 0 ? 1 : 0))
        for table in ["ec2_instance_metadata", "ec2_instance_tags", "ycloud_instance_metadata", "curl_certificate"] {
            #expect(root[table]!.isEmpty && unprivileged[table]!.isEmpty, "\(table)")
        }
    }

    /// The config's `prometheus_targets` reach the table: osqueryi with a config naming a
    /// local `python3 -m http.server` that serves exposition text.
    @Test(.enabled(if: access("/usr/bin/env", X_OK) == 0)) func prometheusTargetsFromTheConfig() async throws {
        let dir = try scratchDirectory("prometheus")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "# TYPE jobs gauge\njobs 4\nqueue_depth{queue=\"mail\"} 17\n".write(toFile: dir + "/metrics", atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", dir]
        let output = Pipe()
        server.standardOutput = output
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            if server.isRunning { kill(server.processIdentifier, SIGKILL) }
            server.waitUntilExit()
        }
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let line = try await offPool { () -> String in
            var bytes = [UInt8]()
            while bytes.count < 256, let byte = try output.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { bytes.append(byte) }
            return String(decoding: bytes, as: UTF8.self)
        }
        let words = line.split(separator: " ")
        let port = try #require(words.firstIndex(of: "port").flatMap { Int(words[$0 + 1]) }, "\(line)")
        let url = "http://127.0.0.1:\(port)/metrics"
        try #"{"prometheus_targets": {"timeout": 2, "urls": ["\#(url)"]}}"#.write(toFile: dir + "/osquery.conf", atomically: true, encoding: .utf8)
        let shell = try BuiltProducts.path("osqueryi")
        let (status, out, err) = try await Real.run(shell, ["--config_path=" + dir + "/osquery.conf", "--json",
                                                            "SELECT target_name, metric_name, metric_value FROM prometheus_metrics"])
        #expect(status == 0, "\(err)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: String]], "\(out)")
        #expect(Set(rows.map { "\($0["target_name"] ?? "") \($0["metric_name"] ?? "") \($0["metric_value"] ?? "")" }) == [
            "\(url) jobs 4.0", "\(url) queue_depth{queue=\"mail\"} 17.0",
        ])
    }
}
