import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

enum NetworkTables {
    /// Numeric host text of a sockaddr (IPv6 link-local keeps its %scope).
    static func address(_ sa: UnsafeMutablePointer<sockaddr>?) -> String {
        guard let sa else { return "" }
        let family = Int32(sa.pointee.sa_family)
        let length: socklen_t
        switch family {
        case AF_INET: length = socklen_t(MemoryLayout<sockaddr_in>.size)
        case AF_INET6: length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        default: return ""
        }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(sa, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { return "" }
        return cString(host)
    }

    static func interfaceAddresses() -> FunctionTable {
        table("interface_addresses", [
            col("interface", .text), col("address", .text), col("mask", .text), col("broadcast", .text),
            col("point_to_point", .text), col("type", .text), col("friendly_name", .text, .hidden),
        ], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            var list: UnsafeMutablePointer<ifaddrs>?
            guard getifaddrs(&list) == 0 else {
                StatusLog.warning("interface_addresses: getifaddrs failed")
                return rows
            }
            defer { freeifaddrs(list) }
            var cursor = list
            while let entry = cursor {
                defer { cursor = entry.pointee.ifa_next }
                guard let addr = entry.pointee.ifa_addr else { continue }
                let family = Int32(addr.pointee.sa_family)
                guard family == AF_INET || family == AF_INET6 else { continue }
                let flags = entry.pointee.ifa_flags
                let isP2P = flags & UInt32(IFF_POINTOPOINT) != 0
                let other = address(entry.pointee.ifa_ifu.ifu_broadaddr)
                rows.appendRow([
                    .text(String(cString: entry.pointee.ifa_name)), .text(address(addr)), .text(address(entry.pointee.ifa_netmask)),
                    .text(isP2P ? "" : other), .text(isP2P ? other : ""), "unknown", .null,
                ])
            }
            return rows
        }
    }

    static func interfaceDetails() -> FunctionTable {
        table("interface_details", [
            col("interface", .text), col("mac", .text, .collateNocase), col("type", .integer), col("mtu", .integer), col("metric", .integer),
            col("flags", .integer), col("ipackets", .bigint), col("opackets", .bigint), col("ibytes", .bigint),
            col("obytes", .bigint), col("ierrors", .bigint), col("oerrors", .bigint), col("idrops", .bigint),
            col("odrops", .bigint), col("collisions", .bigint), col("last_change", .bigint), col("link_speed", .bigint),
            col("pci_slot", .text),
            // osquery's columns of other platforms, hidden on Linux.
            col("friendly_name", .text, .hidden), col("description", .text, .hidden), col("manufacturer", .text, .hidden),
            col("connection_id", .text, .hidden), col("connection_status", .text, .hidden), col("enabled", .integer, .hidden),
            col("physical_adapter", .integer, .hidden), col("speed", .integer, .hidden), col("service", .text, .hidden),
            col("dhcp_enabled", .integer, .hidden), col("dhcp_lease_expires", .text, .hidden),
            col("dhcp_lease_obtained", .text, .hidden), col("dhcp_server", .text, .hidden), col("dns_domain", .text, .hidden),
            col("dns_domain_suffix_search_order", .text, .hidden), col("dns_host_name", .text, .hidden),
            col("dns_server_search_order", .text, .hidden),
        ], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            for name in (FileIO.listDirectoryNames("/sys/class/net") ?? []).sorted() {
                let base = "/sys/class/net/" + name + "/"
                func num(_ file: String) -> SQLValue {
                    guard let s = FileIO.readLine(base + file) else { return .null }
                    if s.hasPrefix("0x") { return Int64(s.dropFirst(2), radix: 16).map { .integer($0) } ?? .null }
                    return Int64(s).map { .integer($0) } ?? .null
                }
                let pci = FileIO.readLink(base + "device").map { String(decoding: $0, as: UTF8.self) }
                    .map { String($0.split(separator: "/").last ?? "") } ?? ""
                var speed = num("speed")
                if case .integer(let v) = speed, v < 0 { speed = .null }
                rows.appendRow([
                    .text(name), .text(FileIO.readLine(base + "address") ?? ""), num("type"), num("mtu"), 0, num("flags"),
                    num("statistics/rx_packets"), num("statistics/tx_packets"), num("statistics/rx_bytes"),
                    num("statistics/tx_bytes"), num("statistics/rx_errors"), num("statistics/tx_errors"),
                    num("statistics/rx_dropped"), num("statistics/tx_dropped"), num("statistics/collisions"),
                    -1, speed, .text(pci), .null, .null, .null, .null, .null, .null, .null, .null, .null, .null, .null, .null,
                    .null, .null, .null, .null, .null,
                ])
            }
            return rows
        }
    }

    static func ipv4(hexLittleEndian s: Substring) -> String {
        guard let v = UInt32(s, radix: 16) else { return "" }
        return "\(v & 0xff).\(v >> 8 & 0xff).\(v >> 16 & 0xff).\(v >> 24)"
    }

    static func ipv6(hex s: Substring) -> String {
        var bytes: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex, let j = s.index(i, offsetBy: 2, limitedBy: s.endIndex) {
            bytes.append(UInt8(s[i..<j], radix: 16) ?? 0)
            i = j
        }
        guard bytes.count == 16 else { return "" }
        var addr = in6_addr()
        withUnsafeMutableBytes(of: &addr) { raw in for k in 0..<16 { raw[k] = bytes[k] } }
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(AF_INET6, &addr, &out, socklen_t(out.count))
        return cString(out)
    }

    /// /proc/net/tcp6 words are four little-endian 32-bit groups.
    static func ipv6(procWords s: Substring) -> String {
        guard s.count == 32 else { return "" }
        var hex = ""
        var i = s.startIndex
        for _ in 0..<4 {
            let j = s.index(i, offsetBy: 8)
            let word = s[i..<j]
            var k = word.endIndex
            while k > word.startIndex {
                let p = word.index(k, offsetBy: -2)
                hex += word[p..<k]
                k = p
            }
            i = j
        }
        return ipv6(hex: Substring(hex))
    }

    static func routes() -> FunctionTable {
        table("routes", [
            col("destination", .text), col("netmask", .integer), col("gateway", .text), col("source", .text), col("flags", .integer),
            col("interface", .text), col("mtu", .integer), col("metric", .integer), col("type", .text, .additional), col("hopcount", .integer),
        ], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            for line in Text.lines("/proc/net/route").dropFirst() {
                let f = Text.fields(line)
                guard f.count >= 11, let mask = UInt32(f[7], radix: 16) else { continue }
                let flags = Int64(f[3], radix: 16) ?? 0
                let gateway = ipv4(hexLittleEndian: f[2])
                rows.appendRow([
                    .text(ipv4(hexLittleEndian: f[1])), .integer(Int64(mask.nonzeroBitCount)), .text(gateway), "",
                    .integer(flags), .text(String(f[0])), .integer(Int64(f[8]) ?? 0), .integer(Int64(f[6]) ?? 0),
                    .text(gateway == "0.0.0.0" ? "local" : "gateway"), 0,
                ])
            }
            for line in Text.lines("/proc/net/ipv6_route") {
                let f = Text.fields(line)
                guard f.count >= 10 else { continue }
                let gateway = ipv6(hex: f[4])
                rows.appendRow([
                    .text(ipv6(hex: f[0])), .integer(Int64(f[1], radix: 16) ?? 0), .text(gateway), .text(ipv6(hex: f[2])),
                    .integer(Int64(f[8], radix: 16) ?? 0), .text(String(f[9])), 0, .integer(Int64(f[5], radix: 16) ?? 0),
                    .text(gateway == "::" ? "local" : "gateway"), 0,
                ])
            }
            return rows
        }
    }

    static func etcHosts() -> FunctionTable {
        table("etc_hosts", [col("address", .text), col("hostnames", .text), pidWithNamespace], aliases: ["hosts"], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            for raw in Text.lines("/etc/hosts") {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                let f = Text.fields(line)
                guard f.count >= 2 else { continue }
                rows.appendRow([.text(String(f[0])), .text(f[1...].joined(separator: " ")), .null])
            }
            return rows
        }
    }

    static func etcServices() -> FunctionTable {
        table("etc_services", [col("name", .text), col("port", .integer), col("protocol", .text), col("aliases", .text), col("comment", .text)], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            for raw in Text.lines("/etc/services") {
                let parts = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
                let f = Text.fields(parts[0])
                guard f.count >= 2 else { continue }
                let portProto = f[1].split(separator: "/")
                guard portProto.count == 2, let port = Int64(portProto[0]) else { continue }
                let comment = parts.count > 1 ? parts[1].trimmingCharacters() : ""
                rows.appendRow([.text(String(f[0])), .integer(port), .text(String(portProto[1])), .text(f.dropFirst(2).joined(separator: " ")), .text(comment)])
            }
            return rows
        }
    }

    static func dnsResolvers() -> FunctionTable {
        table("dns_resolvers", [
            col("id", .integer), col("type", .text), col("address", .text), col("netmask", .text), col("options", .bigint), pidWithNamespace,
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            var counts: [String: Int64] = [:]
            for raw in Text.lines("/etc/resolv.conf") {
                let line = raw.trimmingCharacters()
                if line.hasPrefix("#") || line.hasPrefix(";") { continue }
                let f = Text.fields(line)
                guard f.count >= 2 else { continue }
                let type = String(f[0])
                guard ["nameserver", "search", "sortlist", "domain"].contains(type) else { continue }
                for value in f.dropFirst() {
                    let id = counts[type, default: 0]
                    counts[type] = id + 1
                    var address = String(value), netmask = ""
                    if type == "sortlist", let slash = value.firstIndex(of: "/") {
                        address = String(value[..<slash])
                        netmask = String(value[value.index(after: slash)...])
                    }
                    if type == "nameserver" && address.contains(":") { netmask = "128" } else if type == "nameserver" { netmask = "32" }
                    rows.appendRow([.integer(id), .text(type), .text(address), .text(netmask), 0, .null])
                    if type == "nameserver" { break }
                }
            }
            return rows
        }
    }

    // MARK: Sockets

    struct SocketRow {
        var pid: Int64 = -1
        var fd: Int64 = -1
        var inode: Int64
        var family: Int64
        var proto: Int64
        var local = "", remote = ""
        var localPort: Int64 = 0, remotePort: Int64 = 0
        var path = ""
        var state = ""
        var listening = false
    }

    static let tcpStates = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"]

    static func readSockets() -> [SocketRow] {
        var rows: [SocketRow] = []
        for (file, family, proto) in [("tcp", AF_INET, IPPROTO_TCP), ("tcp6", AF_INET6, IPPROTO_TCP), ("udp", AF_INET, IPPROTO_UDP), ("udp6", AF_INET6, IPPROTO_UDP)] {
            for line in Text.lines("/proc/net/" + file).dropFirst() {
                let f = Text.fields(line)
                guard f.count >= 10 else { continue }
                let l = f[1].split(separator: ":"), r = f[2].split(separator: ":")
                guard l.count == 2, r.count == 2 else { continue }
                var row = SocketRow(inode: Int64(f[9]) ?? 0, family: Int64(family), proto: Int64(proto))
                row.local = family == AF_INET ? ipv4(hexLittleEndian: l[0]) : ipv6(procWords: l[0])
                row.remote = family == AF_INET ? ipv4(hexLittleEndian: r[0]) : ipv6(procWords: r[0])
                row.localPort = Int64(l[1], radix: 16) ?? 0
                row.remotePort = Int64(r[1], radix: 16) ?? 0
                let st = Int(f[3], radix: 16) ?? 0
                if proto == IPPROTO_TCP {
                    row.state = st < tcpStates.count ? tcpStates[st] : ""
                    row.listening = st == 10
                } else {
                    row.listening = row.remotePort == 0
                }
                rows.append(row)
            }
        }
        for line in Text.lines("/proc/net/unix").dropFirst() {
            let f = Text.fields(line)
            guard f.count >= 7 else { continue }
            var row = SocketRow(inode: Int64(f[6]) ?? 0, family: Int64(AF_UNIX), proto: 0)
            row.path = f.count >= 8 ? String(f[7]) : ""
            let flags = Int64(f[3], radix: 16) ?? 0
            row.listening = flags & 0x10000 != 0
            rows.append(row)
        }
        // Map socket inodes to the processes holding them (others' fds need root).
        var byInode: [Int64: Int] = [:]
        for (i, r) in rows.enumerated() where r.inode != 0 { byInode[r.inode] = i }
        let reader = ProcReader()
        let prefix = Array("socket:[".utf8)
        for pid in reader.pids() {
            let fdDir = "/proc/\(pid)/fd"
            guard let fds = FileIO.listDirectoryNames(fdDir) else { continue }
            for fd in fds {
                guard let target = reader.link("\(pid)/fd/\(fd)"), target.starts(with: prefix) else { continue }
                let inode = parseInt(target.dropFirst(prefix.count))
                if let i = byInode[inode] {
                    rows[i].pid = Int64(pid)
                    rows[i].fd = Int64(fd) ?? -1
                }
            }
        }
        return rows
    }

    static func netNamespace() -> String {
        guard let link = FileIO.readLink("/proc/self/ns/net") else { return "" }
        let s = String(decoding: link, as: UTF8.self)
        guard let open = s.firstIndex(of: "["), let close = s.lastIndex(of: "]") else { return "" }
        return String(s[s.index(after: open)..<close])
    }

    static func processOpenSockets() -> FunctionTable {
        table("process_open_sockets", [
            col("pid", .integer, .additional), col("fd", .bigint), col("socket", .bigint), col("family", .integer),
            col("protocol", .integer), col("local_address", .text), col("remote_address", .text), col("local_port", .integer),
            col("remote_port", .integer), col("path", .text), col("state", .text), col("net_namespace", .text),
        ]) { context, schema in
            let ns = netNamespace()
            let pids = Set(context.equalities(for: "pid").compactMap { Int64($0) })
            var rows = TableRows(schema: schema)
            for s in readSockets() where pids.isEmpty || pids.contains(s.pid) {
                rows.appendRow([
                    .integer(s.pid), .integer(s.fd), .integer(s.inode), .integer(s.family), .integer(s.proto), .text(s.local),
                    .text(s.remote), .integer(s.localPort), .integer(s.remotePort), .text(s.path), .text(s.state), .text(ns),
                ])
            }
            return rows
        }
    }

    static func listeningPorts() -> FunctionTable {
        table("listening_ports", [
            col("pid", .integer), col("port", .integer), col("protocol", .integer), col("family", .integer), col("address", .text),
            col("fd", .bigint), col("socket", .bigint), col("path", .text), col("net_namespace", .text),
        ], attributes: .cacheable) { _, schema in
            let ns = netNamespace()
            var rows = TableRows(schema: schema)
            for s in readSockets() where s.listening {
                if s.family == Int64(AF_UNIX) && s.path.isEmpty { continue }
                rows.appendRow([
                    .integer(s.pid), .integer(s.localPort), .integer(s.proto), .integer(s.family), .text(s.local),
                    .integer(s.fd), .integer(s.inode), .text(s.path), .text(ns),
                ])
            }
            return rows
        }
    }
}
