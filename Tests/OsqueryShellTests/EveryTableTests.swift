import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 18: every table the built osqueryi registers answers `SELECT *` once, as root and as
/// nobody: no crash, no hang past the deadline, and a table that needs a constraint gives
/// osquery's required-column error rather than anything else. A table with nothing to read
/// here (no hardware, no daemon) answers with no rows.
@Suite struct EveryTableTests {
    @Test func everyTableAnswersOnce() async {
        await queryEveryTable(as: [], who: "as \(getuid() == 0 ? "root" : "this user")")
    }

    @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0))
    func everyTableAnswersOnceAsNobody() async {
        await queryEveryTable(as: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], who: "as nobody")
    }

    func queryEveryTable(as prefix: [String], who: String) async {
        let osqueryi = builtBinary()
        // The cloud tables get a closed loopback port instead of the link-local metadata address;
        // --verbose lets through the info lines that say why a table has nothing here.
        let common = ["--disable_extensions", "--list", "--cloud_metadata_address", "127.0.0.1:1"]
        let listing = await onOwnThread {
            spawn("/usr/bin/timeout", ["-s", "KILL", "60"] + prefix + [osqueryi] + common + [
                "--header=false", "SELECT name FROM osquery_registry WHERE registry = 'table' ORDER BY name",
            ])
        }
        let tables = listing.out.split(separator: "\n").map(String.init)
        #expect(tables.count >= 135, "osqueryi listed \(tables.count) tables: \(listing.err)")
        // One process runs them all, each statement on its own line after a marker naming it:
        // the last marker printed names a table that crashed or hung.
        var script = ""
        for table in tables {
            script += "SELECT 'begin \(table)' AS marker;\nSELECT * FROM \(table);\n"
        }
        script += "SELECT 'every-table-done' AS marker;\n"
        let run = await onOwnThread {
            spawn("/usr/bin/timeout", ["-s", "KILL", "240"] + prefix + [osqueryi, "--verbose"] + common, stdin: script)
        }
        let last = run.out.split(separator: "\n").last { $0.hasPrefix("begin ") }.map { String($0.dropFirst(6)) } ?? "?"
        #expect(run.out.hasSuffix("\nevery-table-done\n"),
                "osqueryi stopped \(who) (rc \(run.rc)) in \(last): \(run.err.suffix(2000))")
        var failures: [String] = []
        for line in run.err.split(separator: "\n") where line.hasPrefix("Error: near line ") {
            let rest = line.dropFirst("Error: near line ".count)
            guard let number = Int(rest.prefix { $0.isNumber }) else { continue }
            let message = String(rest.drop { $0.isNumber }.dropFirst(": ".count))
            let table = number % 2 == 0 && number / 2 - 1 < tables.count ? tables[number / 2 - 1] : "line \(number)"
            if message != "Table \(table) was queried without a required column in the WHERE clause" {
                failures.append("\(table): \(message)")
            }
        }
        #expect(failures.isEmpty, "\(who): \(failures.joined(separator: "\n"))")
        // Why a table has nothing here is logged once per process, not once per row.
        var seen: [Substring: Int] = [:]
        for line in run.err.split(separator: "\n") where !line.hasPrefix("Error: ") {
            // A status line's text follows its "file:line] " header.
            let text = line.firstRange(of: "] ").map { line[$0.upperBound...] } ?? line
            seen[text, default: 0] += 1
        }
        let repeated = seen.filter { $0.value > 1 }.map { "\($0.value)× \($0.key)" }.sorted()
        #expect(repeated.isEmpty, "\(who): logged more than once:\n\(repeated.joined(separator: "\n"))")
        print("EveryTableTests: \(tables.count) tables queried \(who); \(failures.count) unexpected errors")
    }
}
