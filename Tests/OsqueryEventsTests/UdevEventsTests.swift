import Foundation
import OsqueryEngine
import OsqueryEvents
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A block device whose kernel uevent has DEVTYPE and DEVNAME (osquery drops events without a
/// DEVTYPE, so /dev/null's would never show): a loop device, which a "change" leaves alone.
let ueventDevice: (uevent: String, node: String)? = {
    guard getuid() == 0 else { return nil }
    for i in 0..<8 {
        let uevent = "/sys/class/block/loop\(i)/uevent"
        guard let text = try? String(contentsOfFile: uevent, encoding: .utf8), text.contains("DEVTYPE=disk"),
            access(uevent, W_OK) == 0
        else { continue }
        return (uevent, "/dev/loop\(i)")
    }
    return nil
}()

/// A core with events on (the udev publisher always runs then).
final class UdevCore: @unchecked Sendable {  // used by one test at a time
    let hub: EventHub
    let database: Database

    init(flags extra: [String: String] = [:]) throws {
        let core = try startEventsCore(["disable_events": "false"], extra)
        hub = core.hub
        database = core.database
    }

    deinit { hub.stop() }

    func rows(_ filter: String = "1") -> [[String: String]] {
        (try? database.execute("SELECT *, eid FROM hardware_events WHERE \(filter)").rowMaps(nullValue: "NULL")) ?? []
    }

    func counter(_ name: String) -> Int {
        Int((try? database.strings("SELECT events FROM osquery_events WHERE name = 'udev.\(name)'", "events").first) ?? nil ?? "") ?? -1
    }
}

/// Writes `text` to a sysfs uevent file (the kernel then sends that uevent).
func trigger(_ uevent: String, _ text: String) {
    let fd = open(uevent, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
    close(fd)
}

/// Sends `bytes` from a userspace netlink socket to the uevent multicast group 1.
func sendToUeventGroup(_ bytes: [UInt8]) -> Bool {
    struct Address {
        var family: sa_family_t = sa_family_t(AF_NETLINK)
        var pad: UInt16 = 0
        var pid: UInt32 = 0
        var groups: UInt32 = 1
    }
    let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 15)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = Address()
    let n = withUnsafePointer(to: &address) { a in
        a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<Address>.size)) }
        }
    }
    return n == bytes.count
}

@Suite struct UdevEventsTests {
    @Test(.enabled(if: ueventDevice != nil, "needs root and a loop block device whose sysfs uevent file is writable"))
    func aUeventWrittenThroughSysfsAppearsInHardwareEvents() async throws {
        let device = try #require(ueventDevice)
        let core = try UdevCore()
        // The socket is bound before start() returns; each poll writes again in case the
        // first event raced a slow start of the reader.
        #expect(
            await eventually {
                trigger(device.uevent, "change")
                return !core.rows("action = 'change' AND path = '\(device.node)'").isEmpty
            })
        let row = try #require(core.rows("action = 'change' AND path = '\(device.node)'").first)
        #expect(row["type"] == "disk")
        #expect(Int(row["time"] ?? "") ?? 0 > 0)
        #expect(row["eid"]?.count == 10)
        let publisher = try core.database.execute("SELECT active, subscriptions FROM osquery_events WHERE name = 'udev'").rowMaps()
        #expect(publisher.first?["active"] == "1")
    }

    @Test(.enabled(if: ueventDevice != nil, "needs root (to send to the uevent multicast group) and a loop block device"))
    func forgedAndOversizedDatagramsAreCountedAndTheKernelsStillArrive() async throws {
        let device = try #require(ueventDevice)
        let core = try UdevCore()
        let forged = Array("add@/devices/forged\0ACTION=add\0DEVNAME=forged\0DEVTYPE=disk\0".utf8)
        let oversized = [UInt8](repeating: 0x41, count: 40_000)
        #expect(
            await eventually {
                _ = sendToUeventGroup(forged)
                _ = sendToUeventGroup(oversized)
                return core.counter("foreign_senders") > 0 && core.counter("oversized_messages") > 0
            })
        #expect(core.rows("path = '/dev/forged'").isEmpty)
        #expect(
            await eventually {
                trigger(device.uevent, "change")
                return !core.rows("path = '\(device.node)'").isEmpty
            })
    }

    @Test func hostileUeventsAreRefusedByTheParser() {
        func parse(_ bytes: [UInt8]) -> Result<KernelUevent, KernelUevent.Failure> {
            bytes.withUnsafeBytes { KernelUevent.parse($0) }
        }
        #expect(parse(Array("change@/devices/virtual/mem/null".utf8)) == .failure(.noHeader))
        #expect(parse(Array(repeating: 0x41, count: 9000)) == .failure(.noHeader))
        #expect(parse(Array("nothing-here\0A=b\0".utf8)) == .failure(.badHeader))
        #expect(parse(Array("@/x\0".utf8)) == .failure(.badHeader))
        #expect(parse(Array("add@/x\0NOEQUALS\0".utf8)) == .failure(.badProperty))
        #expect(parse(Array("add@/x\0=value\0".utf8)) == .failure(.badProperty))
        #expect(parse(Array("add@/x\0ACTION=remove\0".utf8)) == .failure(.badHeader))
        #expect(parse(Array("libudev\0\u{fe}\u{ed}\u{ca}\u{fe}".utf8)) == .failure(.udevdFormat))
        var many = Array("add@/x\0".utf8)
        for i in 0..<300 { many += Array("K\(i)=v\0".utf8) }
        #expect(parse(many) == .failure(.badProperty))
        // A last property without its NUL and bytes that are not UTF-8 still parse.
        let ok = parse(Array("add@/devices/x\0ACTION=add\0DEVNAME=bus/usb/001/002\0NAME=\u{ff}".utf8) + [0xff])
        guard case .success(let event) = ok else {
            Issue.record("parse failed: \(ok)")
            return
        }
        #expect(event.action == "add" && event.devpath == "/devices/x")
        #expect(event.properties["DEVNAME"] == "bus/usb/001/002")
    }

    @Test func rowsFollowOsquerysFiltersAndKernelIdentifiers() throws {
        let flags = try makeFlags(["hardware_disabled_types": "partition"])
        let hub = EventHub(flags: flags, database: InMemoryEventDatabase(), isDaemon: false)
        let publisher = UdevPublisher(subscriber: UdevPublisher.makeSubscriber(hub: hub), flags: flags, udevDataDirectory: "/nonexistent")
        func event(_ properties: [String: String]) -> KernelUevent {
            KernelUevent(action: properties["ACTION"] ?? "add", devpath: "/devices/x", properties: properties)
        }
        // No DEVTYPE, a disabled type, neither devnode nor driver: dropped as osquery drops them.
        #expect(publisher.row(event(["DEVNAME": "null"])) == nil)
        #expect(publisher.row(event(["DEVNAME": "vda1", "DEVTYPE": "partition"])) == nil)
        #expect(publisher.row(event(["DEVTYPE": "usb_interface"])) == nil)
        // A driver but no devnode and no model: osquery drops it too.
        #expect(publisher.row(event(["DEVTYPE": "usb_interface", "DRIVER": "usbhid"])) == nil)
        let usb = try #require(
            publisher.row(event(["DEVNAME": "bus/usb/001/002", "DEVTYPE": "usb_device", "DRIVER": "usb", "PRODUCT": "46d/c52b/1201"])))
        #expect(usb == ["add", "/dev/bus/usb/001/002", "usb_device", "usb", "", "046d", "", "c52b", "", "1201"])
        let pci = try #require(publisher.row(event(["DEVNAME": "/dev/x", "DEVTYPE": "t", "PCI_ID": "8086:100E"])))
        #expect(pci[5] == "8086" && pci[7] == "100e")
    }
}
