import Foundation
import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// The operator's path: scripts/build-deb.sh makes the .deb (from this test run's debug osqueryd,
/// to spare a release build of minutes), dpkg installs it into a fresh root of its own (its own
/// dpkg database, maintainer scripts run with DPKG_ROOT, so this machine's /etc and /var are not
/// touched), and then: `--config_check` and a foreground run from the installed paths, osqueryctl,
/// `systemd-analyze verify` of the unit, an upgrade that keeps a changed config, remove (configs,
/// store and logs stay) and purge (nothing stays), as Debian policy asks.
@Suite(.enabled(if: getuid() == 0, "dpkg installs as root only"), .serialized)
struct DebPackageTests {
    @Test func installRunUpgradeRemovePurge() async throws {
        let dir = URL(fileURLWithPath: try scratchDirectory("deb"))
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("log.txt")
        for tool in ["dpkg", "dpkg-deb", "readelf", "strip"] {
            let (found, _) = try await Shipping.run("sh", ["-c", "command -v \(tool)"], log: log, check: false)
            try #require(found == 0, "\(tool) is missing")
        }
        let root = dir.appendingPathComponent("root").path
        let binDir = URL(fileURLWithPath: try BuiltProducts.path("osqueryd")).deletingLastPathComponent().path

        // Build, and check that this machine provides every package it depends on.
        let (_, built) = try await Shipping.run(
            "bash", [Shipping.repoRoot.appendingPathComponent("scripts/build-deb.sh").path,
                     "--bin-dir", binDir, "--out", dir.appendingPathComponent("out").path, "--compress", "none"],
            log: log)
        let deb = try #require(built.split(separator: "\n").last(where: { $0.hasSuffix(".deb") }).map(String.init))
        let (_, fields) = try await Shipping.run("dpkg-deb", ["-f", deb, "Package", "Version", "Depends"], log: log)
        #expect(fields.contains("Package: osquery-swift"))
        let depends = fields.split(separator: "\n").first { $0.hasPrefix("Depends: ") }?.dropFirst("Depends: ".count) ?? ""
        for package in depends.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !package.isEmpty {
            let (status, _) = try await Shipping.run("dpkg-query", ["-W", package], log: log, check: false)
            #expect(status == 0, "Depends names \(package), which is not installed here")
        }

        // A fresh root with an empty dpkg database. --force-depends: that database knows no libc.
        for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(sub)", withIntermediateDirectories: true)
        }
        _ = FileManager.default.createFile(atPath: "\(root)/var/lib/dpkg/status", contents: nil)
        let dpkg = ["--root=\(root)", "--force-script-chrootless", "--force-depends"]
        try await Shipping.run("dpkg", dpkg + ["-i", deb], log: log, environment: Self.noninteractive)

        for path in ["/usr/bin/osqueryd", "/usr/bin/osqueryi", "/usr/bin/osqueryctl", "/etc/osquery/osquery.conf",
                     "/etc/osquery/osquery.flags", "/usr/share/osquery/osquery.example.conf", "/lib/systemd/system/osqueryd.service"] {
            #expect(FileManager.default.fileExists(atPath: root + path), "\(path) not installed")
        }
        #expect(Self.mode(root + "/var/log/osquery") == 0o750)
        #expect(Self.mode(root + "/var/osquery") == 0o750)
        let conffiles = try String(contentsOfFile: "\(root)/var/lib/dpkg/info/osquery-swift.conffiles", encoding: .utf8)
        #expect(conffiles.contains("/etc/osquery/osquery.conf") && conffiles.contains("/etc/osquery/osquery.flags"))

        // The installed flagfile with every path moved under the root: what the service reads.
        let flags = try String(contentsOfFile: root + "/etc/osquery/osquery.flags", encoding: .utf8)
            .replacingOccurrences(of: "=/", with: "=\(root)/")
        let flagfile = dir.appendingPathComponent("rooted.flags").path
        try flags.write(toFile: flagfile, atomically: true, encoding: .utf8)
        let osqueryd = root + "/usr/bin/osqueryd"
        try await Shipping.run(osqueryd, ["--flagfile=\(flagfile)", "--config_check"], log: log)
        let ctlEnvironment = ["OSQUERY_FLAGFILE": flagfile, "OSQUERYD": osqueryd, "OSQUERYCTL_SYSTEMD": "no"]
        try await Shipping.run(root + "/usr/bin/osqueryctl", ["config-check"], log: log, environment: ctlEnvironment)

        // A foreground run: the schedule from the installed config, then a clean stop on SIGTERM.
        let socket = root + "/var/osquery/osquery.em"
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: osqueryd)
        daemon.arguments = ["--flagfile=\(flagfile)"]
        daemon.standardOutput = FileHandle.nullDevice
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        let scheduled = await waitUntil(60) {
            let rows = await coreQuery(socket, "select name from osquery_schedule") ?? []
            return Set(rows.compactMap { $0["name"] }) == ["system_info", "listening_ports", "users"]
        }
        #expect(scheduled, "the installed config's schedule was not served")
        signalOurChild(daemon.processIdentifier, named: "osqueryd", SIGTERM)
        try await offPool { daemon.waitUntilExit() }
        #expect(daemon.terminationStatus == 0)
        #expect(FileManager.default.fileExists(atPath: root + "/var/log/osquery/osqueryd.INFO"))

        // osqueryctl without systemd: start, status, clean refused while running, stop, clean.
        let ctl = root + "/usr/bin/osqueryctl"
        try await Shipping.run(ctl, ["start"], log: log, environment: ctlEnvironment)
        let started = try await waitUntil(60) {
            try await Shipping.run(ctl, ["status"], log: log, check: false, environment: ctlEnvironment).0 == 0
        }
        #expect(started)
        #expect(try await Shipping.run(ctl, ["clean"], log: log, check: false, environment: ctlEnvironment).0 != 0)
        try await Shipping.run(ctl, ["stop"], log: log, environment: ctlEnvironment)
        #expect(try await Shipping.run(ctl, ["status"], log: log, check: false, environment: ctlEnvironment).0 == 3)
        try await Shipping.run(ctl, ["clean"], log: log, environment: ctlEnvironment)
        #expect(!FileManager.default.fileExists(atPath: root + "/var/osquery/osquery.db"))

        // The unit as systemd reads it (no systemd as PID 1 needed), its ExecStart moved under the root.
        let (hasAnalyze, _) = try await Shipping.run("sh", ["-c", "command -v systemd-analyze"], log: log, check: false)
        if hasAnalyze == 0 {
            let unit = try String(contentsOfFile: root + "/lib/systemd/system/osqueryd.service", encoding: .utf8)
                .replacingOccurrences(of: "/usr/bin/osqueryd", with: osqueryd)
                .replacingOccurrences(of: "/etc/osquery/osquery.flags", with: flagfile)
            let unitPath = dir.appendingPathComponent("osqueryd.service").path
            try unit.write(toFile: unitPath, atomically: true, encoding: .utf8)
            let (status, output) = try await Shipping.run("systemd-analyze", ["verify", unitPath], log: log, check: false)
            #expect(status == 0 && !output.contains("osqueryd.service:"), "systemd-analyze verify:\n\(output)")
        }

        // Upgrade (the same package again): a changed config stays as the operator left it.
        let config = root + "/etc/osquery/osquery.conf"
        let changed = try String(contentsOfFile: config, encoding: .utf8) + "// changed by the operator\n"
        try changed.write(toFile: config, atomically: true, encoding: .utf8)
        try await Shipping.run("dpkg", dpkg + ["-i", deb], log: log, environment: Self.noninteractive)
        #expect(try String(contentsOfFile: config, encoding: .utf8) == changed)

        // Remove: programs go; configs, logs and the store's directory stay.
        try await Shipping.run("dpkg", dpkg + ["-r", "osquery-swift"], log: log, environment: Self.noninteractive)
        #expect(!FileManager.default.fileExists(atPath: osqueryd))
        #expect(!FileManager.default.fileExists(atPath: root + "/lib/systemd/system/osqueryd.service"))
        #expect(try String(contentsOfFile: config, encoding: .utf8) == changed)
        #expect(FileManager.default.fileExists(atPath: root + "/etc/osquery/osquery.flags"))
        #expect(FileManager.default.fileExists(atPath: root + "/var/log/osquery/osqueryd.INFO"))

        // Purge: nothing of it stays.
        try await Shipping.run("dpkg", dpkg + ["--purge", "osquery-swift"], log: log, environment: Self.noninteractive)
        for path in ["/etc/osquery/osquery.conf", "/etc/osquery/osquery.flags", "/var/log/osquery", "/var/osquery", "/usr/share/osquery"] {
            #expect(!FileManager.default.fileExists(atPath: root + path), "\(path) left after purge")
        }
    }

    static let noninteractive = ["DEBIAN_FRONTEND": "noninteractive"]

    static func mode(_ path: String) -> Int? {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? NSNumber)?.intValue
    }

}
