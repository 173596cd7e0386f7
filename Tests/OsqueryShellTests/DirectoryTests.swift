import Foundation
import Testing

/// osquery's hardware-monitoring pack lists devices with `directory = '/dev/'`: the real
/// osqueryi answers it (the directory is kept as given, so SQLite's re-check keeps the rows).
@Suite struct DirectoryAsGivenTests {
    @Test func devWithATrailingSlashListsDevices() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtBinary())
        process.arguments = ["--json", "SELECT count(*) AS n, min(directory) AS d FROM file WHERE directory = '/dev/'"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let row = (try JSONSerialization.jsonObject(with: data) as? [[String: Any]])?.first
        #expect(Int(row.map { "\($0["n"] ?? "")" } ?? "").map { $0 > 0 } == true, "\(String(decoding: data, as: UTF8.self))")
        #expect(row?["d"] as? String == "/dev/")
    }
}
