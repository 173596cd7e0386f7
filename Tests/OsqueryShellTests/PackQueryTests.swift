import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 18: every Linux query of osquery's shipped packs (PackQueries.swift, written by
/// scripts/gen-pack-queries.py) runs without error on the built osqueryi.
@Suite struct PackQueryTests {
    /// Queries that fail here, each with the error it gives and why. A known failure that
    /// starts to pass fails the test, so the list stays exact.
    static let knownFailures: [String: (error: String, reason: String)] = [
        "vuln-management/opera_extensions": (
            "no such table: opera_extensions", "osquery has no such table either (issue 18 excludes it)"),
    ]

    @Test func everyLinuxPackQueryRuns() async {
        await runPackQueries(as: [], who: "as \(getuid() == 0 ? "root" : "this user")")
    }

    /// osquery's tables degrade without root (fewer rows), they do not fail.
    @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0))
    func everyLinuxPackQueryRunsAsNobody() async {
        await runPackQueries(as: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], who: "as nobody")
    }

    func runPackQueries(as prefix: [String], who: String) async {
        let queries = osqueryLinuxPackQueries
        #expect(queries.count == 113)
        let names = Set(queries.map { "\($0.pack)/\($0.name)" })
        #expect(Set(Self.knownFailures.keys).subtracting(names).isEmpty, "a known failure names no pack query")
        // One statement per line: the shell names a failed statement's line ("near line N"),
        // so a single process runs them all; the last line proves the script ran to its end.
        var script = ""
        for query in queries {
            let sql = query.sql.trimmingWhitespace()
            script += sql.hasSuffix(";") ? sql : sql + ";"
            script += "\n"
        }
        script += "SELECT 'pack-queries-done' AS done;\n"
        let osqueryi = builtBinary()
        // No query scans the whole disk: the widest, suid_bin, walks osquery's seven binary
        // directories, /tmp among them (seconds when /tmp holds other tests' scratch trees).
        // `timeout` bounds a hang; the cloud tables get a closed loopback port instead of the
        // link-local metadata address.
        let run = await onOwnThread {
            spawn("/usr/bin/timeout", ["-s", "KILL", "300"] + prefix + [
                osqueryi, "--disable_extensions", "--list",
                "--cloud_metadata_address", "127.0.0.1:1",
            ], stdin: script)
        }
        #expect(run.out.hasSuffix("\npack-queries-done\n"), "osqueryi stopped early: rc \(run.rc), stderr \(run.err)")

        var errors: [Int: String] = [:]
        for line in run.err.split(separator: "\n") where line.hasPrefix("Error: near line ") {
            let rest = line.dropFirst("Error: near line ".count)
            guard let number = Int(rest.prefix { $0.isNumber }) else { continue }
            errors[number] = String(rest.drop { $0.isNumber }.dropFirst(": ".count))
        }
        var passed = 0
        for (index, query) in queries.enumerated() {
            let key = "\(query.pack)/\(query.name)"
            let error = errors[index + 1]
            if let known = Self.knownFailures[key] {
                #expect(error == known.error, "\(key): expected \"\(known.error)\" (\(known.reason)), got \(error ?? "no error"): remove it from knownFailures if it now runs")
            } else if let error {
                Issue.record("\(key): \(error)\n  \(query.sql)")
            } else {
                passed += 1
            }
        }
        print("PackQueryTests: \(passed) of \(queries.count) Linux pack queries ran without error \(who); \(Self.knownFailures.count) known failures")
        #expect(passed == queries.count - Self.knownFailures.count)
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
