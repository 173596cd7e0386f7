import Foundation
package import OsqueryEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `hardware_events`' columns before `time` and `eid` (specs/posix/hardware_events.table).
enum HardwareEventsSchema {
    static let columns: [TableColumn] = [
        TableColumn("action", .text), TableColumn("path", .text), TableColumn("type", .text), TableColumn("driver", .text),
        TableColumn("vendor", .text), TableColumn("vendor_id", .text, .collateNocase), TableColumn("model", .text),
        TableColumn("model_id", .text, .collateNocase), TableColumn("serial", .text), TableColumn("revision", .text),
    ]
}

/// One kernel uevent (`ACTION@DEVPATH\0KEY=VALUE\0…`, what NETLINK_KOBJECT_UEVENT group 1
/// carries), parsed without trusting the sender's lengths or terminators.
package struct KernelUevent: Sendable, Equatable {
    package var action: String
    package var devpath: String
    package var properties: [String: String]

    package init(action: String, devpath: String, properties: [String: String]) {
        self.action = action
        self.devpath = devpath
        self.properties = properties
    }

    package enum Failure: Error, Equatable { case noHeader, badHeader, badProperty, udevdFormat }

    /// At most this many properties (the kernel sends at most 64: `UEVENT_NUM_ENVP`).
    static let maxProperties = 256

    package static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<KernelUevent, Failure> {
        // udevd's messages (group 2) start with "libudev\0"; this publisher only reads the kernel's.
        if bytes.starts(with: Array("libudev\0".utf8)) { return .failure(.udevdFormat) }
        guard let headerEnd = bytes.firstIndex(of: 0) else { return .failure(.noHeader) }
        let header = bytes[..<headerEnd]
        guard let at = header.firstIndex(of: UInt8(ascii: "@")), at > 0, at + 1 < headerEnd else { return .failure(.badHeader) }
        var event = KernelUevent(
            action: String(decoding: bytes[..<at], as: UTF8.self), devpath: String(decoding: bytes[(at + 1)..<headerEnd], as: UTF8.self),
            properties: [:])
        var start = headerEnd + 1
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 0) ?? bytes.count
            defer { start = end + 1 }
            if end == start { continue }
            let field = bytes[start..<end]
            guard let eq = field.firstIndex(of: UInt8(ascii: "=")), eq > start else { return .failure(.badProperty) }
            guard event.properties.count < maxProperties else { return .failure(.badProperty) }
            event.properties[String(decoding: bytes[start..<eq], as: UTF8.self)] = String(decoding: bytes[(eq + 1)..<end], as: UTF8.self)
        }
        if let action = event.properties["ACTION"], action != event.action { return .failure(.badHeader) }
        return .success(event)
    }

    /// libudev's devnode: DEVNAME under /dev unless absolute.
    var devnode: String {
        guard let name = properties["DEVNAME"], !name.isEmpty else { return "" }
        return name.hasPrefix("/") ? name : "/dev/" + name
    }
}

/// The udev publisher and the `hardware_events` subscriber. osquery reads udevd's enriched
/// messages through libudev (group 2, so nothing without a running udevd); this reads the
/// kernel's own (group 1, also in containers), adds the properties udevd recorded for the
/// device in its database (/run/udev/data) when there is one, and derives vendor/model ids
/// and the revision from the kernel's PRODUCT (USB) and PCI_ID (PCI) otherwise.
package final class UdevPublisher: EventPublisher, @unchecked Sendable {  // mutable state under `counters` (the reader thread is its own)
    package let name = "udev"
    package let subscriber: EventSubscriber
    private let flags: Flags
    /// Where udevd keeps its device database (tests point it elsewhere).
    private let udevDataDirectory: String

    private struct Counters {
        var events = 0
        var messages = 0
        var malformed = 0
        var oversized = 0
        var foreignSenders = 0
        var receiveOverflows = 0
    }
    private let counters = Mutex(Counters())
    private let reader = ReaderThread()

    /// The largest datagram read; the kernel's are at most 2 KiB of properties plus the header.
    static let bufferSize = 16 * 1024

    package init(subscriber: EventSubscriber, flags: Flags, udevDataDirectory: String = "/run/udev/data") {
        self.subscriber = subscriber
        self.flags = flags
        self.udevDataDirectory = udevDataDirectory
    }

    package static func makeSubscriber(hub: EventHub) -> EventSubscriber {
        EventSubscriber(
            name: "hardware_events", publisher: "udev", columns: HardwareEventsSchema.columns, database: hub.database, flags: hub.flags,
            isDaemon: hub.isDaemon)
    }

    /// As osquery: udev runs whenever events are enabled.
    package func isEnabled(_ flags: Flags) -> Bool { true }

    package var status: PublisherStatus {
        var s = PublisherStatus()
        s.active = reader.isRunning
        s.subscriptions = 1
        counters.withLock { c in
            s.events = c.events
            s.counters = [
                ("messages", c.messages), ("malformed_messages", c.malformed), ("oversized_messages", c.oversized),
                ("foreign_senders", c.foreignSenders), ("receive_overflows", c.receiveOverflows),
            ]
        }
        return s
    }

    package func configure(_ configuration: EventsConfiguration) {
        subscriber.setSubscriptions(1)
    }

    package func start() throws(EventError) {
        guard !reader.isRunning else { return }
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 15)
        guard fd >= 0 else { throw EventError("Could not create udev monitor: \(String(cString: strerror(errno)))") }
        // A burst of hotplug events should not overflow the socket (ENOBUFS, counted when it does).
        var size: Int32 = 1 << 20
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = NetlinkAddress(groups: 1)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<NetlinkAddress>.size)) }
        }
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw EventError("Could not create udev monitor: bind NETLINK_KOBJECT_UEVENT: \(String(cString: strerror(e)))")
        }
        try reader.start(name: "udev publisher", source: fd) { [self] stopFD in readLoop(fd: fd, stopFD: stopFD) }
        subscriber.setSubscriptions(1)
    }

    package func stop() { reader.stop() }

    private func readLoop(fd: Int32, stopFD: Int32) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                StatusLog.error("udev monitor failed: \(String(cString: strerror(errno)))")
                return
            }
            if fds[1].revents != 0 { return }
            while true {
                var sender = NetlinkAddress()
                var senderLength = socklen_t(MemoryLayout<NetlinkAddress>.size)
                // MSG_TRUNC: the datagram's real length, so an oversized one is recognized.
                let n = withUnsafeMutablePointer(to: &sender) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, buffer.baseAddress, buffer.count, Int32(MSG_TRUNC), $0, &senderLength)
                    }
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == ENOBUFS {
                        report(\.receiveOverflows, "udev socket overflowed (ENOBUFS): hardware events were lost")
                        continue
                    }
                    break  // EAGAIN: drained
                }
                handle(Int(n), sender: sender, buffer: buffer)
            }
        }
    }

    /// Counts a trouble and logs the first and every 10 000th.
    private func report(_ counter: WritableKeyPath<Counters, Int>, _ message: String) {
        let count = counters.withLock { c -> Int in
            c[keyPath: counter] += 1
            return c[keyPath: counter]
        }
        if count == 1 || count % 10000 == 0 { StatusLog.warning(message + (count > 1 ? " (\(count) so far)" : "")) }
    }

    private func handle(_ length: Int, sender: NetlinkAddress, buffer: UnsafeMutableRawBufferPointer) {
        counters.withLock { $0.messages += 1 }
        guard length <= buffer.count else {
            report(\.oversized, "udev: ignored an oversized uevent (\(length) bytes)")
            return
        }
        // Only the kernel (port 0) speaks on group 1; anything else is someone's forgery.
        guard sender.pid == 0 else {
            report(\.foreignSenders, "udev: ignored a uevent not sent by the kernel (netlink port \(sender.pid))")
            return
        }
        switch KernelUevent.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<length])) {
        case .success(let event):
            if let row = row(event) {
                counters.withLock { $0.events += 1 }
                subscriber.add(row)
            }
        case .failure:
            report(\.malformed, "udev: ignored a malformed uevent (\(length) bytes)")
        }
    }

    /// osquery's HardwareEventSubscriber::Callback filters, then the row; nil when filtered.
    package func row(_ event: KernelUevent) -> [SQLValue]? {
        let type = event.properties["DEVTYPE"] ?? ""
        let path = event.devnode
        let driver = event.properties["DRIVER"] ?? ""
        if type.isEmpty || (path.isEmpty && driver.isEmpty) { return nil }
        let disabled = flags[.hardwareDisabledTypes].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if disabled.contains(type) { return nil }
        var properties = event.properties
        for (k, v) in udevProperties(event) where properties[k] == nil { properties[k] = v }
        let model = properties["ID_MODEL_FROM_DATABASE"] ?? ""
        if path.isEmpty && model.isEmpty { return nil }
        var vendorID = properties["ID_VENDOR_ID"] ?? ""
        var modelID = properties["ID_MODEL_ID"] ?? ""
        var revision = properties["ID_REVISION"] ?? ""
        if let product = properties["PRODUCT"], vendorID.isEmpty || modelID.isEmpty {
            // USB: PRODUCT=idVendor/idProduct/bcdDevice in unpadded hex.
            let parts = product.split(separator: "/").map { Self.hex4(String($0)) }
            if parts.count == 3 {
                if vendorID.isEmpty { vendorID = parts[0] }
                if modelID.isEmpty { modelID = parts[1] }
                if revision.isEmpty { revision = parts[2] }
            }
        } else if let pci = properties["PCI_ID"], vendorID.isEmpty || modelID.isEmpty {
            let parts = pci.split(separator: ":").map { Self.hex4(String($0)) }
            if parts.count == 2 {
                if vendorID.isEmpty { vendorID = parts[0] }
                if modelID.isEmpty { modelID = parts[1] }
            }
        }
        return [
            .text(event.action), .text(path), .text(type), .text(driver), .text(properties["ID_VENDOR_FROM_DATABASE"] ?? ""),
            .text(vendorID), .text(model), .text(modelID), .text(properties["ID_SERIAL_SHORT"] ?? ""), .text(revision),
        ]
    }

    static func hex4(_ s: String) -> String {
        let lower = s.lowercased()
        guard !lower.isEmpty, lower.count <= 4, lower.allSatisfy(\.isHexDigit) else { return lower }
        return String(repeating: "0", count: 4 - lower.count) + lower
    }

    /// The `E:` properties udevd stored for the device (`b`/`c` major:minor), if any; at most
    /// 64 KiB are read.
    private func udevProperties(_ event: KernelUevent) -> [String: String] {
        guard let major = event.properties["MAJOR"], let minor = event.properties["MINOR"], UInt32(major) != nil, UInt32(minor) != nil
        else { return [:] }
        let kind = event.properties["SUBSYSTEM"] == "block" ? "b" : "c"
        let fd = open(udevDataDirectory + "/" + kind + major + ":" + minor, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return [:] }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64 * 1024)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return [:] }
        var out: [String: String] = [:]
        for line in bytes[0..<n].split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("E:".utf8)) {
            let field = line.dropFirst(2)
            guard let eq = field.firstIndex(of: UInt8(ascii: "=")) else { continue }
            out[String(decoding: field[..<eq], as: UTF8.self)] = String(decoding: field[(eq + 1)...], as: UTF8.self)
        }
        return out
    }
}
