import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's audit state (`struct audit_status`, the fields this core reads).
package struct AuditStatus: Sendable, Equatable {
    package var enabled: UInt32 = 0
    package var failure: UInt32 = 0
    package var pid: UInt32 = 0
    package var backlogLimit: UInt32 = 0
    package var lost: UInt32 = 0
    package var backlog: UInt32 = 0
    package var backlogWaitTime: UInt32 = 0

    static let maskEnabled: UInt32 = 0x1, maskFailure: UInt32 = 0x2, maskPID: UInt32 = 0x4
    static let maskBacklogLimit: UInt32 = 0x10, maskBacklogWaitTime: UInt32 = 0x20

    /// From an AUDIT_GET reply; nil when it is too short.
    init?(payload: ArraySlice<UInt8>) {
        guard payload.count >= 32 else { return nil }
        func u32(_ i: Int) -> UInt32 {
            let b = payload.startIndex + i * 4
            return UInt32(payload[b]) | UInt32(payload[b + 1]) << 8 | UInt32(payload[b + 2]) << 16 | UInt32(payload[b + 3]) << 24
        }
        enabled = u32(1)
        failure = u32(2)
        pid = u32(3)
        backlogLimit = u32(5)
        lost = u32(6)
        backlog = u32(7)
        backlogWaitTime = payload.count >= 40 ? u32(9) : 0
    }

    init() {}

    /// An AUDIT_SET payload changing the fields in `mask`.
    static func setPayload(mask: UInt32, enabled: UInt32 = 0, failure: UInt32 = 0, pid: UInt32 = 0, backlogLimit: UInt32 = 0, backlogWaitTime: UInt32 = 0)
        -> [UInt8]
    {
        var words = [UInt32](repeating: 0, count: 10)
        words[0] = mask
        words[1] = enabled
        words[2] = failure
        words[3] = pid
        words[5] = backlogLimit
        words[9] = backlogWaitTime
        return words.flatMap(littleEndianBytes)
    }
}

func littleEndianBytes(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)] }

/// `struct audit_rule_data`: an exit-filter "always" rule on syscalls, for one architecture, with
/// a key naming this core (so rules it left behind are recognised at the next start).
package enum AuditRule {
    static let filterExit: UInt32 = 4, actionAlways: UInt32 = 2
    static let fieldArch: UInt32 = 11, fieldFilterKey: UInt32 = 210, opEqual: UInt32 = 0x4000_0000
    /// Fields whose value is a length into the rule's string buffer.
    static let stringFields: Set<UInt32> = [13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 105, 107, 112, 210]
    static let headerSize = 12 + 4 * 64 * 4 + 4

    static var nativeArch: UInt32 {
        #if arch(x86_64)
        return 0xC000_003E
        #elseif arch(arm64)
        return 0xC000_00B7
        #else
        return 0
        #endif
    }

    package static func data(syscalls: [Int], key: String, arch: UInt32 = nativeArch) -> [UInt8] {
        var mask = [UInt32](repeating: 0, count: 64)
        for s in syscalls where s >= 0 && s < 2048 { mask[s / 32] |= 1 << UInt32(s % 32) }
        var fields = [UInt32](repeating: 0, count: 64)
        var values = [UInt32](repeating: 0, count: 64)
        var flags = [UInt32](repeating: 0, count: 64)
        let keyBytes = Array(key.utf8.prefix(256))
        var count = 0
        if arch != 0 {
            (fields[0], values[0], flags[0]) = (fieldArch, arch, opEqual)
            count = 1
        }
        (fields[count], values[count], flags[count]) = (fieldFilterKey, UInt32(keyBytes.count), opEqual)
        count += 1
        var out: [UInt8] = []
        out.reserveCapacity(headerSize + keyBytes.count)
        for w in [filterExit, actionAlways, UInt32(count)] + mask + fields + values + flags + [UInt32(keyBytes.count)] {
            out += littleEndianBytes(w)
        }
        return out + keyBytes
    }

    /// The key of a rule from AUDIT_LIST_RULES; nil when it has none or is malformed.
    package static func key(of rule: ArraySlice<UInt8>) -> String? {
        guard rule.count >= headerSize else { return nil }
        func u32(_ offset: Int) -> UInt32 {
            let b = rule.startIndex + offset
            return UInt32(rule[b]) | UInt32(rule[b + 1]) << 8 | UInt32(rule[b + 2]) << 16 | UInt32(rule[b + 3]) << 24
        }
        let count = min(Int(u32(8)), 64)
        let fieldsAt = 12 + 64 * 4, valuesAt = fieldsAt + 64 * 4
        let bufLen = Int(u32(headerSize - 4))
        guard rule.count >= headerSize + bufLen else { return nil }
        var offset = 0
        for i in 0..<count {
            let field = u32(fieldsAt + i * 4)
            guard stringFields.contains(field) else { continue }
            let len = Int(u32(valuesAt + i * 4))
            guard offset + len <= bufLen else { return nil }
            if field == fieldFilterKey {
                let start = rule.startIndex + headerSize + offset
                return String(decoding: rule[start..<start + len], as: UTF8.self)
            }
            offset += len
        }
        return nil
    }
}

/// One netlink message from an audit socket datagram.
struct AuditMessage: Sendable {
    var type: UInt16
    var sequence: UInt32
    var payload: ArraySlice<UInt8>
}

enum AuditDatagram {
    /// The datagram's message when it is an audit record (type ≥ 1100, always alone in its
    /// datagram) that `messages` would accept; nil otherwise (then `messages` decides).
    static func singleRecord(_ data: ArraySlice<UInt8>) -> AuditMessage? {
        guard data.count >= 16 else { return nil }
        let o = data.startIndex
        let type = UInt16(data[o + 4]) | UInt16(data[o + 5]) << 8
        guard type >= AuditType.firstUser else { return nil }
        return record(data, at: o, type: type)
    }

    /// The record at `offset` (the datagram's last message); nil when its length runs past the end.
    private static func record(_ data: ArraySlice<UInt8>, at offset: Int, type: UInt16) -> AuditMessage? {
        let length = Int(UInt32(data[offset]) | UInt32(data[offset + 1]) << 8 | UInt32(data[offset + 2]) << 16 | UInt32(data[offset + 3]) << 24)
        let sequence = UInt32(data[offset + 8]) | UInt32(data[offset + 9]) << 8 | UInt32(data[offset + 10]) << 16 | UInt32(data[offset + 11]) << 24
        let available = data.endIndex - offset - 16
        let payloadLength = length <= available ? length : (length >= 16 && length - 16 <= available ? length - 16 : -1)
        guard payloadLength >= 0 else { return nil }
        var end = offset + 16 + payloadLength
        while end > offset + 16, data[end - 1] == 0 { end -= 1 }
        return AuditMessage(type: type, sequence: sequence, payload: data[(offset + 16)..<end])
    }

    /// Splits a datagram into messages. Audit records (type ≥ 1100) carry the kernel's
    /// long-standing quirk: `nlmsg_len` is the payload's length, header excluded; replies to
    /// requests use the normal length. Returns nil when the datagram is malformed (truncated
    /// header, length past the end).
    static func messages(_ data: ArraySlice<UInt8>) -> [AuditMessage]? {
        var out: [AuditMessage] = []
        var offset = data.startIndex
        while data.endIndex - offset >= 16 {
            func u32(_ i: Int) -> UInt32 {
                UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
            }
            let length = Int(u32(offset))
            let type = UInt16(data[offset + 4]) | UInt16(data[offset + 5]) << 8
            let sequence = u32(offset + 8)
            let available = data.endIndex - offset - 16
            if type >= AuditType.firstUser {
                // One record per datagram.
                guard let m = record(data, at: offset, type: type) else { return nil }
                out.append(m)
                return out
            }
            guard length >= 16, length - 16 <= available else { return nil }
            out.append(AuditMessage(type: type, sequence: sequence, payload: data[(offset + 16)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        guard offset == data.endIndex || out.count > 0 else { return nil }
        return out
    }
}

/// `struct sockaddr_nl` (the kernel, port 0, no groups); Glibc's module does not export it.
struct NetlinkAddress {
    var family = UInt16(AF_NETLINK)
    var pad: UInt16 = 0
    var pid: UInt32 = 0
    var groups: UInt32 = 0
}

/// The NETLINK_AUDIT socket.
package final class AuditSocket: @unchecked Sendable {  // used by one thread at a time (setup, then the reader)
    let fd: Int32
    private var sequence: UInt32 = 0
    /// Records that arrived while a request waited for its reply.
    var onRecord: ((AuditMessage) -> Void)?

    package init() throws(EventError) {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 9)
        guard fd >= 0 else { throw EventError("Could not open the audit netlink socket: \(String(cString: strerror(errno)))") }
        var address = NetlinkAddress()
        let bound = withUnsafeBytes(of: &address) { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw EventError("Could not bind the audit netlink socket: \(String(cString: strerror(e)))")
        }
        // A large receive buffer absorbs bursts (an exec storm) while the reader is busy.
        var size: Int32 = 8 << 20
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Sends a request; returns its sequence number.
    @discardableResult
    package func send(_ type: UInt16, _ payload: [UInt8], ack: Bool = true) -> Result<UInt32, EventError> {
        sequence &+= 1
        let length = 16 + payload.count
        var message: [UInt8] = []
        message.reserveCapacity((length + 3) & ~3)
        message += littleEndianBytes(UInt32(length))
        message += [UInt8(type & 0xff), UInt8(type >> 8)]
        let flags: UInt16 = ack ? 0x1 | 0x4 : 0x1
        message += [UInt8(flags & 0xff), UInt8(flags >> 8)]
        message += littleEndianBytes(sequence)
        message += littleEndianBytes(0)
        message += payload
        var address = NetlinkAddress()
        while true {
            let sent = message.withUnsafeBytes { raw in
                withUnsafeBytes(of: &address) { a in
                    sendto(fd, raw.baseAddress, raw.count, 0, a.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(a.count))
                }
            }
            if sent >= 0 { return .success(sequence) }
            if errno != EINTR { return .failure(EventError(String(cString: strerror(errno)))) }
        }
    }

    /// Reads one datagram into `buffer` (waiting at most `timeout` ms); its length, 0 on timeout,
    /// or -errno.
    func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Int32) -> Int {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let rc = poll(&p, 1, timeout)
        if rc == 0 { return 0 }
        if rc < 0 { return errno == EINTR ? 0 : -Int(errno) }
        let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
        if n < 0 { return errno == EAGAIN || errno == EINTR ? 0 : -Int(errno) }
        return n
    }

    /// Sends a request and waits for its acknowledgement (and, for `expecting`, its reply
    /// payloads, until NLMSG_DONE for a dump). Records arriving meanwhile go to `onRecord`.
    package func request(_ type: UInt16, _ payload: [UInt8], expecting reply: UInt16? = nil, dump: Bool = false)
        -> Result<[ArraySlice<UInt8>], EventError>
    {
        let seq: UInt32
        switch send(type, payload, ack: !dump) {
        case .success(let s): seq = s
        case .failure(let e): return .failure(e)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
        defer { buffer.deallocate() }
        var replies: [ArraySlice<UInt8>] = []
        var acknowledged = false
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            let n = receive(into: buffer, timeout: 500)
            if n < 0 { return .failure(EventError(String(cString: strerror(Int32(-n))))) }
            if n == 0 { continue }
            let bytes = Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            guard let messages = AuditDatagram.messages(bytes[...]) else { continue }
            for m in messages {
                if m.sequence != seq || m.type >= AuditType.firstUser && m.type != reply {
                    onRecord?(m)
                    continue
                }
                switch m.type {
                case 2:  // NLMSG_ERROR: an acknowledgement when its code is 0
                    guard m.payload.count >= 4 else { return .failure(EventError("short netlink acknowledgement")) }
                    let b = m.payload.startIndex
                    let code = Int32(bitPattern: UInt32(m.payload[b]) | UInt32(m.payload[b + 1]) << 8 | UInt32(m.payload[b + 2]) << 16 | UInt32(m.payload[b + 3]) << 24)
                    if code != 0 { return .failure(EventError(String(cString: strerror(-code)))) }
                    acknowledged = true
                case 3:  // NLMSG_DONE
                    return .success(replies)
                default:
                    if m.type == reply { replies.append(m.payload) }
                }
            }
            if acknowledged && (reply == nil || !replies.isEmpty) && !dump { return .success(replies) }
        }
        return .failure(EventError("the kernel did not answer audit request \(type)"))
    }

    package func status() -> Result<AuditStatus, EventError> {
        switch request(AuditType.get, [], expecting: AuditType.get) {
        case .success(let replies):
            guard let first = replies.first, let status = AuditStatus(payload: first) else {
                return .failure(EventError("malformed audit status"))
            }
            return .success(status)
        case .failure(let e): return .failure(e)
        }
    }

    func set(_ payload: [UInt8]) -> EventError? {
        if case .failure(let e) = request(AuditType.set, payload) { return e }
        return nil
    }
}
