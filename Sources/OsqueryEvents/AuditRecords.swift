import Foundation

/// Audit record types the publisher reads (linux/audit.h).
enum AuditType {
    static let get: UInt16 = 1000
    static let set: UInt16 = 1001
    static let signalInfo: UInt16 = 1010
    static let addRule: UInt16 = 1011
    static let deleteRule: UInt16 = 1012
    static let listRules: UInt16 = 1013
    static let firstUser: UInt16 = 1100, lastUser: UInt16 = 1199
    static let daemonStart: UInt16 = 1200, daemonConfig: UInt16 = 1203
    static let syscall: UInt16 = 1300
    static let path: UInt16 = 1302
    static let configChange: UInt16 = 1305
    static let sockaddr: UInt16 = 1306
    static let cwd: UInt16 = 1307
    static let execve: UInt16 = 1309
    static let objPID: UInt16 = 1318
    static let eoe: UInt16 = 1320
    static let bprmFcaps: UInt16 = 1321
    static let seccomp: UInt16 = 1326
    static let proctitle: UInt16 = 1327
    static let replace: UInt16 = 1329
    static let avc: UInt16 = 1400
    static let userAVC: UInt16 = 1107
    static let firstUser2: UInt16 = 2100, lastUser2: UInt16 = 2999

    /// osquery's SELinux record labels (kSELinuxRecordLabels).
    static let selinuxLabels: [UInt16: String] = [
        1107: "USER_AVC", 1400: "AVC", 1401: "SELINUX_ERR", 1402: "AVC_PATH", 1403: "MAC_POLICY_LOAD", 1404: "MAC_STATUS",
        1405: "MAC_CONFIG_CHANGE", 1406: "MAC_UNLBL_ALLOW", 1407: "MAC_CIPSOV4_ADD", 1408: "MAC_CIPSOV4_DEL", 1409: "MAC_MAP_ADD",
        1410: "MAC_MAP_DEL", 1411: "MAC_IPSEC_ADDSA", 1412: "MAC_IPSEC_DELSA", 1413: "MAC_IPSEC_ADDSPD", 1414: "MAC_IPSEC_DELSPD",
        1415: "MAC_IPSEC_EVENT", 1416: "MAC_UNLBL_STCADD", 1417: "MAC_UNLBL_STCDEL",
    ]

    static func isUser(_ t: UInt16) -> Bool { (firstUser...lastUser).contains(t) }
}

/// One audit record: `audit(<sec>.<ms>:<serial>): key=value ...`, its fields kept as written
/// (a quoted value keeps its quotes, so hex-encoded and quoted values stay apart).
package struct AuditRecord: Sendable {
    var type: UInt16
    package var seconds: UInt64
    package var serial: UInt64
    var fields: [(key: String, value: String)]
    /// The text after the header (SELinux and AppArmor rows show it whole).
    var body: String

    package func raw(_ key: String) -> String? {
        for f in fields where f.key == key { return f.value }
        return nil
    }

    /// A numeric field (decimal, or hex with `base` 16).
    func integer(_ key: String, base: Int = 10) -> UInt64? {
        guard let v = raw(key) else { return nil }
        return UInt64(v, radix: base)
    }

    /// A field as text: quotes stripped, hex-encoded values decoded (osquery's
    /// DecodeAuditPathValues).
    package func text(_ key: String) -> String? { raw(key).map(AuditRecord.decode) }

    static func decode(_ value: String) -> String {
        if value.utf8.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
            return String(value.dropFirst().dropLast())
        }
        return hexDecoded(value) ?? value
    }

    /// Hex text as the bytes it encodes (UTF-8, invalid sequences repaired); nil when it is not hex.
    static func hexDecoded(_ value: String) -> String? {
        var bytes: [UInt8] = []
        guard appendHex(value, to: &bytes, limit: Int.max) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the bytes `value` encodes in hex, at most `limit`; false when it is not hex.
    static func appendHex(_ value: String, to bytes: inout [UInt8], limit: Int) -> Bool {
        let u = value.utf8
        guard !u.isEmpty, u.count % 2 == 0, u.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) || ($0 >= 0x61 && $0 <= 0x66) })
        else { return false }
        var high: UInt8 = 0
        var odd = false
        for c in u {
            let n: UInt8
            switch c {
            case 0x30...0x39: n = c - 0x30
            case 0x41...0x46: n = c - 0x41 + 10
            case 0x61...0x66: n = c - 0x61 + 10
            default: return false
            }
            if odd {
                if bytes.count < limit { bytes.append(high << 4 | n) }
            } else {
                high = n
            }
            odd.toggle()
        }
        return true
    }

    /// Parses a record's text; nil when the header is malformed.
    package static func parse(type: UInt16, text: Substring.UTF8View, fields wanted: Bool = true) -> AuditRecord? {
        // audit(1502125323.756:6): ...
        let prefix = Array("audit(".utf8)
        guard text.count > prefix.count, text.starts(with: prefix) else { return nil }
        var i = text.index(text.startIndex, offsetBy: prefix.count)
        func number(_ stop: UInt8) -> UInt64? {
            var n: UInt64 = 0
            var digits = 0
            while i < text.endIndex, text[i] != stop {
                let c = text[i]
                guard c >= 0x30, c <= 0x39, digits < 19 else { return nil }
                n = n * 10 + UInt64(c - 0x30)
                digits += 1
                i = text.index(after: i)
            }
            guard digits > 0, i < text.endIndex else { return nil }
            i = text.index(after: i)
            return n
        }
        guard let seconds = number(UInt8(ascii: ".")), number(UInt8(ascii: ":")) != nil else { return nil }
        // The serial ends with "): ".
        var serial: UInt64 = 0
        var digits = 0
        while i < text.endIndex, text[i] >= 0x30, text[i] <= 0x39, digits < 19 {
            serial = serial * 10 + UInt64(text[i] - 0x30)
            digits += 1
            i = text.index(after: i)
        }
        guard digits > 0, i < text.endIndex, text[i] == UInt8(ascii: ")") else { return nil }
        i = text.index(after: i)
        guard i < text.endIndex, text[i] == UInt8(ascii: ":") else { return nil }
        i = text.index(after: i)
        let body = Substring(text[i...])
        guard wanted else { return AuditRecord(type: type, seconds: seconds, serial: serial, fields: [], body: "") }
        return AuditRecord(type: type, seconds: seconds, serial: serial, fields: tokenize(body), body: String(body.drop { $0 == " " }))
    }

    /// `key=value` pairs separated by spaces; a value may be a quoted string with spaces.
    static func tokenize(_ body: Substring) -> [(key: String, value: String)] {
        var fields: [(key: String, value: String)] = []
        let u = body.utf8
        var i = u.startIndex
        while i < u.endIndex {
            while i < u.endIndex, u[i] == UInt8(ascii: " ") { i = u.index(after: i) }
            guard i < u.endIndex else { break }
            let keyStart = i
            while i < u.endIndex, u[i] != UInt8(ascii: "="), u[i] != UInt8(ascii: " ") { i = u.index(after: i) }
            let key = String(Substring(u[keyStart..<i]))
            guard i < u.endIndex, u[i] == UInt8(ascii: "=") else { continue }
            i = u.index(after: i)
            let valueStart = i
            if i < u.endIndex, u[i] == UInt8(ascii: "\"") {
                i = u.index(after: i)
                while i < u.endIndex, u[i] != UInt8(ascii: "\"") { i = u.index(after: i) }
                if i < u.endIndex { i = u.index(after: i) }
            } else if i < u.endIndex, u[i] == UInt8(ascii: "'") {
                // msg='...' in user records: the whole quoted list is one value.
                i = u.index(after: i)
                while i < u.endIndex, u[i] != UInt8(ascii: "'") { i = u.index(after: i) }
                if i < u.endIndex { i = u.index(after: i) }
            } else {
                while i < u.endIndex, u[i] != UInt8(ascii: " ") { i = u.index(after: i) }
            }
            if !key.isEmpty { fields.append((key, String(Substring(u[valueStart..<i])))) }
        }
        return fields
    }
}

/// A multi-record event (SYSCALL … EOE) being assembled, or a single record.
package struct AuditEvent: Sendable {
    var serial: UInt64
    var seconds: UInt64
    var records: [AuditRecord]
    /// EXECVE arguments assembled across records and `aN[k]` pieces, bounded.
    var arguments: [Int: [UInt8]] = [:]
    var argc = 0
    var argumentBytes = 0
    var argumentsOverflowed = false

    func first(_ type: UInt16) -> AuditRecord? { records.first { $0.type == type } }

    /// The command line: arguments joined by spaces, in order.
    var cmdline: String {
        var out: [UInt8] = []
        for (i, n) in arguments.keys.sorted().enumerated() {
            if i > 0 { out.append(UInt8(ascii: " ")) }
            out += arguments[n] ?? []
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// What the assembler counted (each also reported by the publisher).
package struct AuditAssemblyCounters: Sendable, Equatable {
    var malformed = 0
    var unknown = 0
    var partialDropped = 0
    var incomplete = 0
    var argumentOverflows = 0
    var recordOverflows = 0
}

/// Groups records by serial into events (osquery's AuditEventPublisher::ProcessEvents): a
/// SYSCALL record opens an event, EOE closes it; user, SELinux/AppArmor and seccomp records are
/// events by themselves. Memory is bounded: at most `maxPartial` events in flight (the oldest is
/// dropped past it), `maxRecords` records and `maxArgumentBytes` argument bytes per event.
package struct AuditAssembler {
    var maxPartial: Int
    var maxArgumentBytes: Int
    var maxRecords = 64
    /// Seconds an event may wait for its EOE before it is dropped as incomplete.
    var maxAge: UInt64 = 300
    package var counters = AuditAssemblyCounters()
    private var partial: [UInt64: AuditEvent] = [:]
    private var order: [UInt64] = []
    private var orderHead = 0

    package init(maxPartial: Int, maxArgumentBytes: Int) {
        self.maxPartial = max(1, maxPartial)
        self.maxArgumentBytes = max(0, maxArgumentBytes)
    }

    package var inFlight: Int { partial.count }

    /// Feeds one record; completed events are appended to `out`.
    package mutating func add(_ record: AuditRecord, into out: inout [AuditEvent]) {
        let t = record.type
        if AuditType.isUser(t) || AuditType.selinuxLabels[t] != nil || t == AuditType.seccomp
            || (AuditType.firstUser2...AuditType.lastUser2).contains(t)
        {
            out.append(AuditEvent(serial: record.serial, seconds: record.seconds, records: [record]))
            return
        }
        switch t {
        case AuditType.syscall:
            if partial[record.serial] != nil {
                // osquery: "Received a duplicated event" (the earlier one is dropped).
                counters.malformed += 1
                partial[record.serial] = nil
            }
            open(AuditEvent(serial: record.serial, seconds: record.seconds, records: [record]))
        case AuditType.eoe:
            if let event = partial.removeValue(forKey: record.serial) { out.append(event) }
        default:
            guard var event = partial[record.serial] else {
                counters.unknown += 1
                return
            }
            if t == AuditType.execve {
                addArguments(record, to: &event)
                // The arguments are kept assembled; the record itself only for argc.
                if event.first(AuditType.execve) == nil {
                    event.records.append(AuditRecord(type: t, seconds: record.seconds, serial: record.serial, fields: [], body: ""))
                }
            } else if event.records.count < maxRecords {
                event.records.append(record)
            } else {
                counters.recordOverflows += 1
            }
            partial[record.serial] = event
        }
    }

    private mutating func open(_ event: AuditEvent) {
        partial[event.serial] = event
        order.append(event.serial)
        while partial.count > maxPartial, orderHead < order.count {
            let oldest = order[orderHead]
            orderHead += 1
            if partial.removeValue(forKey: oldest) != nil { counters.partialDropped += 1 }
        }
        compactOrder()
    }

    /// Serials of completed events stay in `order` until swept: a sweep whenever it holds more
    /// than twice the cap keeps it bounded at amortized constant cost per event.
    private mutating func compactOrder() {
        guard order.count - orderHead > maxPartial * 2 + 64 else { return }
        order = order[orderHead...].filter { partial[$0] != nil }
        orderHead = 0
    }

    /// Serials the eviction order holds (tests: it stays bounded).
    package var tracked: Int { order.count - orderHead }

    /// Drops events that waited more than `maxAge` seconds for their EOE (lost to the kernel's
    /// backlog); returns how many.
    @discardableResult
    mutating func expire(now: UInt64) -> Int {
        guard !partial.isEmpty else { return 0 }
        let old = partial.values.filter { $0.seconds + maxAge < now }.map(\.serial)
        for s in old { partial[s] = nil }
        counters.incomplete += old.count
        return old.count
    }

    /// EXECVE: `argc=N a0="x" a1=HEX a2_len=L a2[0]=HEX a2[1]=HEX …`, possibly over several records.
    private mutating func addArguments(_ record: AuditRecord, to event: inout AuditEvent) {
        for (key, value) in record.fields {
            if key == "argc" {
                event.argc = min(Int(value) ?? 0, 1 << 20)
                continue
            }
            guard key.hasPrefix("a"), let (index, piece) = Self.argumentKey(key) else { continue }
            if piece == -2 { continue }  // aN_len
            let remaining = maxArgumentBytes - event.argumentBytes
            guard remaining > 0 else {
                if !event.argumentsOverflowed {
                    event.argumentsOverflowed = true
                    counters.argumentOverflows += 1
                }
                continue
            }
            // Bounded: at most `maxArgumentBytes` distinct argument slots too.
            guard event.arguments[index] != nil || event.arguments.count < maxArgumentBytes else { continue }
            var bytes = event.arguments[index] ?? []
            let before = bytes.count
            if value.utf8.count >= 2, value.hasPrefix("\"") {
                bytes += value.utf8.dropFirst().dropLast().prefix(remaining)
            } else if !AuditRecord.appendHex(value, to: &bytes, limit: before + remaining) {
                bytes += value.utf8.prefix(remaining)
            }
            let added = bytes.count - before
            event.argumentBytes += added + 1
            if event.argumentBytes >= maxArgumentBytes, !event.argumentsOverflowed {
                event.argumentsOverflowed = true
                counters.argumentOverflows += 1
            }
            event.arguments[index] = bytes
        }
    }

    /// `aN` → (N, -1); `aN[k]` → (N, k); `aN_len` → (N, -2).
    static func argumentKey(_ key: String) -> (Int, Int)? {
        let u = Array(key.utf8.dropFirst())
        var i = 0
        var n = 0
        while i < u.count, u[i] >= 0x30, u[i] <= 0x39, i < 9 {
            n = n * 10 + Int(u[i] - 0x30)
            i += 1
        }
        guard i > 0 else { return nil }
        if i == u.count { return (n, -1) }
        let rest = u[i...]
        if rest.elementsEqual("_len".utf8) { return (n, -2) }
        if rest.first == UInt8(ascii: "["), rest.last == UInt8(ascii: "]") {
            guard let k = Int(String(decoding: rest.dropFirst().dropLast(), as: UTF8.self)) else { return nil }
            return (n, k)
        }
        return nil
    }
}
