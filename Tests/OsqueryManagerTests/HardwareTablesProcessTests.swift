import Foundation
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hardware and kernel tables (issue 18) through osqueryi, as root and as an unprivileged
/// user: without root they degrade (fewer rows, hidden addresses), never fail.
@Suite(.serialized) struct HardwareTablesProcessTests {
    static let tables = [
        "kernel_keys", "memory_map", "block_devices", "pci_devices", "usb_devices", "smbios_tables", "platform_info",
        "memory_devices", "cpu_info", "memory_arrays", "memory_array_mapped_addresses", "memory_device_mapped_addresses",
        "memory_error_info", "oem_strings", "acpi_tables", "cpuid", "md_personalities",
    ]

    static func rows(_ args: [String], _ shell: String, _ table: String) async throws -> [[String: String]] {
        let (status, out, err) = try await Real.run(args.isEmpty ? shell : args[0], (args.isEmpty ? [] : Array(args.dropFirst()) + [shell]) + ["--json", "SELECT * FROM \(table)"])
        #expect(status == 0, "\(table): \(err)")
        return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: String]], "\(table): \(out)")
    }

    @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0)) func tablesAnswerAsRootAndAsNobody() async throws {
        let shell = try BuiltProducts.path("osqueryi")
        let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        var root: [String: [[String: String]]] = [:]
        var unprivileged: [String: [[String: String]]] = [:]
        for table in Self.tables {
            root[table] = try await Self.rows([], shell, table)
            unprivileged[table] = try await Self.rows(nobody, shell, table)
        }
        // Devices are listed to anyone; only what needs root (filesystem probes, addresses) is lost.
        #expect(Set(unprivileged["block_devices"]!.map { $0["name"] ?? "" }) == Set(root["block_devices"]!.map { $0["name"] ?? "" }))
        #expect(Set(unprivileged["pci_devices"]!.map { $0["pci_slot"] ?? "" }) == Set(root["pci_devices"]!.map { $0["pci_slot"] ?? "" }))
        #expect(unprivileged["memory_map"]!.count == root["memory_map"]!.count)
        #expect(unprivileged["memory_map"]!.allSatisfy { $0["start"]?.trimmingCharacters(in: CharacterSet(charactersIn: "0x")) == "" })
        // The kernel's firmware tables are root's alone.
        #expect(unprivileged["smbios_tables"]!.isEmpty)
    }
}
