import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// iptables: the kernel's x_tables rule sets (the ones `iptables-legacy` edits), read as
/// osquery reads them through libiptc: IPT_SO_GET_INFO and IPT_SO_GET_ENTRIES on a raw socket,
/// for each table /proc/net/ip_tables_names names. Rules made through nf_tables
/// (`iptables-nft`) are not x_tables rules; osquery does not list them either.
enum FirewallTables {
    static let namesPath = "/proc/net/ip_tables_names"
    // <linux/netfilter_ipv4/ip_tables.h>: IPT_BASE_CTL and the layout of its structures on Linux.
    static let getInfo: Int32 = 64, getEntries: Int32 = 65
    static let infoSize = 84, entriesHeader = 40, entrySize = 112, matchHeader = 32
    static let hookNames = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]

    static func iptables(flags: Flags, namesPath: String = namesPath) -> FunctionTable {
        table("iptables", [
            col("filter_name", .text), col("chain", .text), col("policy", .text), col("target", .text),
            col("protocol", .integer), col("src_port", .text), col("dst_port", .text), col("src_ip", .text),
            col("src_mask", .text), col("iniface", .text), col("iniface_mask", .text), col("dst_ip", .text),
            col("dst_mask", .text), col("outiface", .text), col("outiface_mask", .text), col("match", .text),
            col("packets", .integer), col("bytes", .integer),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let names = BoundedFile.text(namesPath, limit: flags[.readMax]) else {
                OnceLog.shared.info("iptables: Error reading \(namesPath) (the ip_tables module is not loaded, or no permission)")
                return rows
            }
            for name in names.split(separator: "\n") {
                let filter = String(name).trimmingASCIIWhitespace()
                guard !filter.isEmpty else { continue }
                guard let blob = entries(of: filter) else { continue }
                appendRules(filter: filter, info: blob.info, entries: blob.entries, to: &rows)
            }
            return rows
        }
    }

    struct Info {
        var validHooks: UInt32 = 0
        var hookEntry = [UInt32](repeating: 0, count: 5), underflow = [UInt32](repeating: 0, count: 5)
        var size: UInt32 = 0
    }

    /// One table's rule blob from the kernel; nil (logged once) when it cannot be read.
    static func entries(of filter: String) -> (info: Info, entries: [UInt8])? {
        let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
        guard fd >= 0 else {
            OnceLog.shared.info("iptables: cannot open a raw socket to read the rules (\(String(cString: strerror(errno)))); root or CAP_NET_RAW is needed")
            return nil
        }
        defer { close(fd) }
        var raw = [UInt8](repeating: 0, count: infoSize)
        writeName(filter, into: &raw)
        var length = socklen_t(infoSize)
        guard raw.withUnsafeMutableBytes({ getsockopt(fd, 0, getInfo, $0.baseAddress, &length) }) == 0 else {
            OnceLog.shared.info("iptables: cannot read table \(filter) (\(String(cString: strerror(errno))))")
            return nil
        }
        var info = Info()
        info.validHooks = u32(raw, 32)
        for h in 0..<5 {
            info.hookEntry[h] = u32(raw, 36 + 4 * h)
            info.underflow[h] = u32(raw, 56 + 4 * h)
        }
        info.size = u32(raw, 80)
        // The blob can change between the two calls; the kernel then refuses the size (EAGAIN).
        var blob = [UInt8](repeating: 0, count: entriesHeader + Int(info.size))
        writeName(filter, into: &blob)
        withUnsafeBytes(of: info.size) { for i in 0..<4 { blob[32 + i] = $0[i] } }
        length = socklen_t(blob.count)
        guard blob.withUnsafeMutableBytes({ getsockopt(fd, 0, getEntries, $0.baseAddress, &length) }) == 0 else {
            OnceLog.shared.info("iptables: cannot read the rules of table \(filter) (\(String(cString: strerror(errno))))")
            return nil
        }
        return (info, Array(blob[entriesHeader...]))
    }

    static func writeName(_ name: String, into raw: inout [UInt8]) {
        for (i, b) in name.utf8.prefix(31).enumerated() { raw[i] = b }
    }

    static func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 { UInt32(u16(b, at)) | UInt32(u16(b, at + 2)) << 16 }
    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { UInt64(u32(b, at)) | UInt64(u32(b, at + 4)) << 32 }

    /// A NUL-terminated name of at most `count` bytes.
    static func cName(_ b: [UInt8], _ at: Int, _ count: Int) -> String {
        let end = min(b.count, at + count)
        var i = at
        while i < end && b[i] != 0 { i += 1 }
        return String(decoding: b[at..<i], as: UTF8.self)
    }

    static func ip(_ b: [UInt8], _ at: Int) -> String { "\(b[at]).\(b[at + 1]).\(b[at + 2]).\(b[at + 3])" }

    /// An interface mask as osquery prints it: upper-case hex of its bytes up to the first zero.
    static func mask(_ b: [UInt8], _ at: Int) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for i in at..<(at + 16) {
            if b[i] == 0 { break }
            out.append(digits[Int(b[i] >> 4)])
            out.append(digits[Int(b[i] & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A standard target's verdict as libiptc names it.
    static func verdictName(_ verdict: Int32) -> String {
        switch verdict {
        case -1: "DROP"
        case -2: "ACCEPT"
        case -4: "QUEUE"
        case -5: "RETURN"
        default: "UNKNOWN"
        }
    }

    /// Walks the blob entry by entry: built-in chains start at their hook entries and end at
    /// their policy (underflow) entry; a user chain starts with an ERROR entry naming it and ends
    /// with a RETURN entry; the final ERROR entry closes the table.
    static func appendRules(filter: String, info: Info, entries b: [UInt8], to rows: inout TableRows) {
        // Entry offsets, and where each user chain's rules start (for jump targets).
        var offsets: [Int] = []
        var chainStart: [Int: String] = [:]
        var offset = 0
        while offset + entrySize <= b.count {
            offsets.append(offset)
            let next = Int(u16(b, offset + 90))
            let target = offset + Int(u16(b, offset + 88))
            if target + matchHeader <= b.count && cName(b, target + 2, 29) == "ERROR" {
                chainStart[offset + next] = cName(b, target + matchHeader, 32)
            }
            guard next >= entrySize else { break }
            offset += next
        }
        func isError(_ at: Int) -> Bool {
            let target = at + Int(u16(b, at + 88))
            return target + matchHeader <= b.count && cName(b, target + 2, 29) == "ERROR"
        }
        var chain = ""
        var builtin = -1
        for (index, at) in offsets.enumerated() {
            for h in 0..<5 where info.validHooks & (1 << h) != 0 && Int(info.hookEntry[h]) == at {
                chain = hookNames[h]
                builtin = h
            }
            let targetAt = at + Int(u16(b, at + 88))
            let next = at + Int(u16(b, at + 90))
            guard targetAt + matchHeader <= b.count else { break }
            let targetName = cName(b, targetAt + 2, 29)
            if targetName == "ERROR" {
                let name = cName(b, targetAt + matchHeader, 32)
                if name == "ERROR" { break }
                chain = name
                builtin = -1
                continue
            }
            if builtin >= 0 && Int(info.underflow[builtin]) == at {
                // The policy entry: a chain row carrying the policy and its counters.
                let verdict = Int32(bitPattern: u32(b, targetAt + matchHeader))
                rows.appendRow([
                    .text(filter), .text(chain), .text(verdictName(verdict)), .null, .null, .null, .null, .null, .null,
                    .null, .null, .null, .null, .null, .null, .null,
                    .integer(Int64(bitPattern: u64(b, at + 96))), .integer(Int64(bitPattern: u64(b, at + 104))),
                ])
                continue
            }
            if builtin < 0 && (index + 1 == offsets.count || isError(offsets[index + 1])) {
                // A user chain's closing RETURN, and its chain row (no policy).
                rows.appendRow([
                    .text(filter), .text(chain), "", .null, .null, .null, .null, .null, .null,
                    .null, .null, .null, .null, .null, .null, .null, 0, 0,
                ])
                continue
            }
            var target = targetName
            if targetName.isEmpty {
                let verdict = Int32(bitPattern: u32(b, targetAt + matchHeader))
                target = verdict < 0 ? verdictName(verdict) : (chainStart[Int(verdict)] ?? (Int(verdict) == next ? "" : "UNKNOWN"))
            }
            appendRule(filter: filter, chain: chain, policy: builtin >= 0 ? policy(of: builtin, info, b) : ("", 0, 0),
                       entry: at, target: target, b, to: &rows)
        }
    }

    static func policy(of hook: Int, _ info: Info, _ b: [UInt8]) -> (String, Int64, Int64) {
        let at = Int(info.underflow[hook])
        guard at + entrySize <= b.count else { return ("", 0, 0) }
        let targetAt = at + Int(u16(b, at + 88))
        guard targetAt + matchHeader + 4 <= b.count else { return ("", 0, 0) }
        return (verdictName(Int32(bitPattern: u32(b, targetAt + matchHeader))),
                Int64(bitPattern: u64(b, at + 96)), Int64(bitPattern: u64(b, at + 104)))
    }

    static func appendRule(filter: String, chain: String, policy: (String, Int64, Int64), entry at: Int, target: String,
                           _ b: [UInt8], to rows: inout TableRows) {
        let invflags = b[at + 83]
        func inv(_ flag: UInt8) -> String { invflags & flag != 0 ? "!" : "" }
        let proto = u16(b, at + 80)
        let targetOffset = Int(u16(b, at + 88))
        // Ports from the first match when it is the tcp or udp match (osquery reads them from
        // the first match of a tcp or udp rule).
        var ports: (String, String)? = nil
        if targetOffset > entrySize, at + entrySize + matchHeader + 8 <= b.count {
            let m = at + entrySize
            let name = cName(b, m + 2, 29)
            if (proto == 6 && name == "tcp") || (proto == 17 && name == "udp") {
                let d = m + matchHeader
                ports = ("\(u16(b, d)):\(u16(b, d + 2))", "\(u16(b, d + 4)):\(u16(b, d + 6))")
            }
        }
        let iniface = cName(b, at + 16, 16), outiface = cName(b, at + 32, 16)
        // IPT_INV_VIA_IN 0x01, VIA_OUT 0x02, SRCIP 0x08, DSTIP 0x10, PROTO 0x40.
        rows.appendRow([
            .text(filter), .text(chain), .text(policy.0), .text(target),
            // osquery's "!" before an inverted protocol does not survive an INTEGER column.
            .integer(Int64(proto)),
            .text(ports?.0 ?? ""), .text(ports?.1 ?? ""),
            .text(inv(0x08) + ip(b, at)), .text(ip(b, at + 8)),
            .text(iniface.isEmpty ? "all" : inv(0x01) + iniface), .text(mask(b, at + 48)),
            .text(inv(0x10) + ip(b, at + 4)), .text(ip(b, at + 12)),
            .text(outiface.isEmpty ? "all" : inv(0x02) + outiface), .text(mask(b, at + 64)),
            // Whether the rule has matches. (osquery tests target_offset, which is never 0, so it
            // says "yes" for every rule and reads a match-less tcp rule's target as ports.)
            .text(targetOffset > entrySize ? "yes" : "no"),
            .integer(policy.1), .integer(policy.2),
        ])
    }
}
