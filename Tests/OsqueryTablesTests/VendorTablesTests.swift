import Foundation
import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// carbon_black_info over a sensor directory the test writes as the sensor lays it out, and
/// intel_me_info where no ME answers (these machines have no mei device).
@Suite struct VendorTablesTests {
    static let columns = [
        "sensor_id", "config_name", "collect_store_files", "collect_module_loads", "collect_processes", "collect_cross_processes",
        "collect_emet_events", "collect_data_file_writes", "protection_disabled", "sensor_ip_addr", "sensor_backend_server",
        "event_queue", "binary_queue",
    ]

    @Test func carbonBlackInfoReadsTheSensorsFiles() throws {
        let dir = try scratchDirectory("cb")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "0000000000b00c3f".write(toFile: dir + "/sensor.id", atomically: false, encoding: .utf8)
        try """
            ; Carbon Black sensor settings
            [CB]
            ConfigName=Default%20Group
            CollectStoreFiles=1
            CollectModuleLoads=0
            CollectProcesses=1
            CollectCrossProcess=1
            SensorBackendServer=https%3A//cb.example.com%3A443
            [Other]
            CollectEmetEvents=1
            """.write(toFile: dir + "/sensorsettings.ini", atomically: false, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/store/abc", withIntermediateDirectories: true)
        try Data(count: 100).write(to: URL(fileURLWithPath: dir + "/store/abc/filedata"))
        try Data(count: 20).write(to: URL(fileURLWithPath: dir + "/store/abc/metadata"))
        try Data(count: 7).write(to: URL(fileURLWithPath: dir + "/events.1"))
        try Data(count: 5).write(to: URL(fileURLWithPath: dir + "/store/events.bin"))
        try Data(count: 1000).write(to: URL(fileURLWithPath: dir + "/eventsnot"))
        let db = try packageDatabase([VendorTables.carbonBlackInfo(root: dir)])
        // 0xc3f from the twelfth character; settings missing from [CB] are -1; collect_processes
        // is the file's (osquery overwrites it with 0); the columns osquery fixes are 0 and "".
        #expect(try rowSet(db, "SELECT * FROM cb_info", Self.columns) == [
            "3135\tDefault Group\t1\t0\t1\t1\t-1\t0\t0\t\thttps://cb.example.com:443\t12\t120",
        ])
    }

    /// No sensor: one row, as osquery gives, with nothing in it; an unparsable settings file is
    /// logged and left out; a FIFO in its place is not opened.
    @Test func carbonBlackInfoWithoutASensorIsOneEmptyRow() throws {
        let dir = try scratchDirectory("cb-none")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = OnceLog()
        let db = try packageDatabase([VendorTables.carbonBlackInfo(root: dir + "/absent", log: log)])
        #expect(try rowSet(db, "SELECT * FROM carbon_black_info", Self.columns) == [String(repeating: "\t", count: Self.columns.count - 1)])
        try "[CB\nnot ini".write(toFile: dir + "/sensorsettings.ini", atomically: false, encoding: .utf8)
        mkfifo(dir + "/sensor.id", 0o600)
        let broken = try packageDatabase([VendorTables.carbonBlackInfo(root: dir, log: log)])
        #expect(try rowSet(broken, "SELECT config_name, sensor_id, event_queue FROM carbon_black_info", ["config_name", "sensor_id", "event_queue"]) == ["\t\t0"])
        #expect(log.messages.contains("Error parsing ini file: \(dir)/sensorsettings.ini"))
    }

    /// intel_me_info opens the mei device, connects to the ME's update client and asks its
    /// version. Without the device, or with something else in its place, no rows and the reason.
    @Test func intelMEInfoWithoutAnMEIDeviceHasNoRowsAndSaysWhy() throws {
        let dir = try scratchDirectory("mei")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = OnceLog()
        try "x".write(toFile: dir + "/file", atomically: false, encoding: .utf8)
        for device in [dir + "/mei0", dir + "/file", "/dev/null"] {
            let db = try packageDatabase([VendorTables.intelMEInfo(device: device, log: log)])
            #expect(try db.execute("SELECT * FROM intel_me_info").rowCount == 0)
        }
        #expect(log.messages.contains("Cannot open MEI device \(dir)/mei0: No such file or directory"))
        #expect(log.messages.contains("Cannot open MEI device \(dir)/file: not a character device"))
        #expect(log.messages.contains { $0.hasPrefix("Intel MEI is not accessible: ") })
    }
}
