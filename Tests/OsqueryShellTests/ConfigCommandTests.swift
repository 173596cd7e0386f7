import Foundation
import Testing

/// `--config_check` and `--config_dump` on the real osqueryi, as osquery's shell answers them.
@Suite struct ShellConfigCommandTests {
    @Test func checkAndDumpExitCodesAndOutput() throws {
        let dir = NSTemporaryDirectory() + "osqi-config-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = dir + "/good.conf", bad = dir + "/bad.conf", missing = dir + "/missing.conf"
        let text = "{\"schedule\": {\"one\": {\"query\": \"SELECT 1\", \"interval\": 60}}}\n"
        try text.write(toFile: good, atomically: true, encoding: .utf8)
        try "{bad".write(toFile: bad, atomically: true, encoding: .utf8)
        let osqueryi = builtBinary()

        let fine = spawn(osqueryi, ["--config_check", "--config_path", good])
        #expect(fine.rc == 0 && fine.out.isEmpty, "\(fine)")
        let absent = spawn(osqueryi, ["--config_check", "--config_path", missing])
        #expect(absent.rc == 1)
        #expect(absent.err.contains("config file does not exist: \(missing)"), "\(absent.err)")
        let unparsable = spawn(osqueryi, ["--config_check", "--config_path", bad])
        #expect(unparsable.rc == 1 && !unparsable.err.isEmpty)
        let noPlugin = spawn(osqueryi, ["--config_check", "--config_plugin", "nowhere"])
        #expect(noPlugin.rc == 78)
        let dump = spawn(osqueryi, ["--config_dump", "--config_path", good])
        #expect(dump.rc == 0)
        #expect(dump.out == "{\"\(good)\": \(text)}\n")
    }
}
