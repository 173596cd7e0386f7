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

    /// Whether `t` is one of `selinuxLabels` (without hashing: every record asks).
    static func isSELinux(_ t: UInt16) -> Bool { t == userAVC || (avc...1417).contains(t) }
}

/// One audit record: `audit(<sec>.<ms>:<serial>): key=value ...`, its fields kept as written
/// (a quoted value keeps its quotes, so hex-encoded and quoted values stay apart). The text after
/// the header is kept once, as bytes, with where each key and value sit in it: a record costs
/// two allocations however many fields it has (an exec brings seven records).
package struct AuditRecord: Sendable {
    var type: UInt16
    package var seconds: UInt64
    package var serial: UInt64
    /// The text after the header (valid UTF-8: invalid input was repaired when parsed).
    private var bytes: [UInt8]
    private var spans: [FieldSpan]
    /// Whether `bytes` is all ASCII (kernel records are: the kernel hex-encodes the rest); the
    /// quote checks then work on bytes, else on characters as Swift's String does.
    private var ascii: Bool

    struct FieldSpan: Sendable {
        var keyStart: Int32, keyEnd: Int32, valueStart: Int32, valueEnd: Int32
    }

    /// A record without fields (only its header counts).
    init(type: UInt16, seconds: UInt64, serial: UInt64) {
        self.type = type
        self.seconds = seconds
        self.serial = serial
        bytes = []
        spans = []
        ascii = true
    }

    /// The text after the header (SELinux and AppArmor rows show it whole).
    var body: String {
        guard !bytes.isEmpty else { return "" }
        return String(Substring(decoding: bytes, as: UTF8.self).drop { $0 == " " })
    }

    /// The fields, in order (the assembler walks EXECVE's).
    var fieldCount: Int { spans.count }

    /// Runs `body` with field `i`'s key and value bytes.
    func withField<T>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> T) -> T {
        let s = spans[i]
        return bytes.withUnsafeBufferPointer { b in
            body(
                UnsafeBufferPointer(rebasing: b[Int(s.keyStart)..<Int(s.keyEnd)]),
                UnsafeBufferPointer(rebasing: b[Int(s.valueStart)..<Int(s.valueEnd)]))
        }
    }

    /// Where the first field named `key` has its value.
    private func valueRange(_ key: String) -> Range<Int>? {
        var key = key
        return key.withUTF8 { k in
            bytes.withUnsafeBufferPointer { b in
                for s in spans where Int(s.keyEnd - s.keyStart) == k.count {
                    if k.count == 0 || memcmp(b.baseAddress! + Int(s.keyStart), k.baseAddress!, k.count) == 0 {
                        return Int(s.valueStart)..<Int(s.valueEnd)
                    }
                }
                return nil
            }
        }
    }

    package func raw(_ key: String) -> String? {
        guard let r = valueRange(key) else { return nil }
        return String(decoding: bytes[r], as: UTF8.self)
    }

    /// Whether the first field named `key` is exactly `value` (no String made).
    func rawEquals(_ key: String, _ value: StaticString) -> Bool {
        guard let r = valueRange(key), r.count == value.utf8CodeUnitCount else { return false }
        return bytes.withUnsafeBufferPointer { b in r.isEmpty || memcmp(b.baseAddress! + r.lowerBound, value.utf8Start, r.count) == 0 }
    }

    /// A numeric field (decimal, or hex with `base` 16).
    func integer(_ key: String, base: Int = 10) -> UInt64? {
        guard let r = valueRange(key) else { return nil }
        return bytes.withUnsafeBufferPointer { b in Self.unsigned(UnsafeBufferPointer(rebasing: b[r]), base: base) }
    }

    /// `UInt64(text, radix: base)` without making the String when the text is plain digits.
    static func unsigned(_ v: UnsafeBufferPointer<UInt8>, base: Int) -> UInt64? {
        var n: UInt64 = 0
        for c in v {
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x61...0x7a where base > 10: d = c - 0x61 + 10
            case 0x41...0x5a where base > 10: d = c - 0x41 + 10
            default: return UInt64(String(decoding: v, as: UTF8.self), radix: base)
            }
            guard Int(d) < base else { return nil }
            let (m, o1) = n.multipliedReportingOverflow(by: UInt64(base))
            let (a, o2) = m.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return nil }
            n = a
        }
        return v.isEmpty ? nil : n
    }

    /// A field as text: quotes stripped, hex-encoded values decoded (osquery's
    /// DecodeAuditPathValues).
    package func text(_ key: String) -> String? {
        guard let r = valueRange(key) else { return nil }
        guard ascii else { return AuditRecord.decode(String(decoding: bytes[r], as: UTF8.self)) }
        return bytes.withUnsafeBufferPointer { b in Self.decodeASCII(UnsafeBufferPointer(rebasing: b[r])) }
    }

    static func decode(_ value: String) -> String {
        if value.utf8.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
            return String(value.dropFirst().dropLast())
        }
        return hexDecoded(value) ?? value
    }

    /// `decode` of an ASCII value, on its bytes (for ASCII, characters are bytes).
    static func decodeASCII(_ v: UnsafeBufferPointer<UInt8>) -> String {
        if v.count >= 2, v[0] == UInt8(ascii: "\""), v[v.count - 1] == UInt8(ascii: "\"") {
            return String(decoding: UnsafeBufferPointer(rebasing: v[1..<(v.count - 1)]), as: UTF8.self)
        }
        if isHex(v) {
            var out: [UInt8] = []
            out.reserveCapacity(v.count / 2)
            appendHexDigits(v, to: &out, limit: Int.max)
            return String(decoding: out, as: UTF8.self)
        }
        return String(decoding: v, as: UTF8.self)
    }

    /// Hex text as the bytes it encodes (UTF-8, invalid sequences repaired); nil when it is not hex.
    static func hexDecoded(_ value: String) -> String? {
        var bytes: [UInt8] = []
        guard appendHex(value, to: &bytes, limit: Int.max) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the bytes `value` encodes in hex, at most `limit`; false when it is not hex.
    static func appendHex(_ value: String, to bytes: inout [UInt8], limit: Int) -> Bool {
        var value = value
        return value.withUTF8 { u in
            guard isHex(u) else { return false }
            appendHexDigits(u, to: &bytes, limit: limit)
            return true
        }
    }

    /// Non-empty, of even length, hex digits only.
    static func isHex(_ u: UnsafeBufferPointer<UInt8>) -> Bool {
        !u.isEmpty && u.count % 2 == 0 && u.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Appends what hex digits (`isHex`) encode, while `bytes` is shorter than `limit`.
    static func appendHexDigits(_ u: UnsafeBufferPointer<UInt8>, to bytes: inout [UInt8], limit: Int) {
        var i = 0
        while i + 1 < u.count {
            if bytes.count < limit { bytes.append(hexNibble(u[i]) << 4 | hexNibble(u[i + 1])) }
            i += 2
        }
    }

    private static func hexNibble(_ c: UInt8) -> UInt8 {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        default: c - 0x61 + 10
        }
    }

    /// Parses a record's text; nil when the header is malformed.
    package static func parse(type: UInt16, text: Substring.UTF8View, fields wanted: Bool = true) -> AuditRecord? {
        let bytes = Array(text)
        return bytes.withUnsafeBufferPointer { parse(type: type, utf8: $0, fields: wanted) }
    }

    /// Parses a record's payload as the kernel sent it: invalid UTF-8 is repaired first (as
    /// decoding it into a String does), ASCII (the usual case) is read as is.
    static func parse(type: UInt16, payload: ArraySlice<UInt8>, fields wanted: Bool = true) -> AuditRecord? {
        payload.withUnsafeBufferPointer { p in
            if p.allSatisfy({ $0 < 0x80 }) { return parse(type: type, utf8: p, fields: wanted) }
            let repaired = Array(String(decoding: p, as: UTF8.self).utf8)
            return repaired.withUnsafeBufferPointer { parse(type: type, utf8: $0, fields: wanted) }
        }
    }

    /// `text` is valid UTF-8.
    private static func parse(type: UInt16, utf8 text: UnsafeBufferPointer<UInt8>, fields wanted: Bool) -> AuditRecord? {
        // audit(1502125323.756:6): ...
        let prefix: StaticString = "audit("
        let prefixCount = prefix.utf8CodeUnitCount
        guard text.count > prefixCount, memcmp(text.baseAddress!, prefix.utf8Start, prefixCount) == 0 else { return nil }
        var i = prefixCount
        func number(_ stop: UInt8) -> UInt64? {
            var n: UInt64 = 0
            var digits = 0
            while i < text.count, text[i] != stop {
                let c = text[i]
                guard c >= 0x30, c <= 0x39, digits < 19 else { return nil }
                n = n * 10 + UInt64(c - 0x30)
                digits += 1
                i += 1
            }
            guard digits > 0, i < text.count else { return nil }
            i += 1
            return n
        }
        guard let seconds = number(UInt8(ascii: ".")), number(UInt8(ascii: ":")) != nil else { return nil }
        // The serial ends with "): ".
        var serial: UInt64 = 0
        var digits = 0
        while i < text.count, text[i] >= 0x30, text[i] <= 0x39, digits < 19 {
            serial = serial * 10 + UInt64(text[i] - 0x30)
            digits += 1
            i += 1
        }
        guard digits > 0, i < text.count, text[i] == UInt8(ascii: ")") else { return nil }
        i += 1
        guard i < text.count, text[i] == UInt8(ascii: ":") else { return nil }
        i += 1
        var record = AuditRecord(type: type, seconds: seconds, serial: serial)
        guard wanted else { return record }
        let body = UnsafeBufferPointer(rebasing: text[i...])
        record.bytes = Array(body)
        record.ascii = body.allSatisfy { $0 < 0x80 }
        record.spans = tokenize(body)
        return record
    }

    /// The fields of `text` after a user record's own (`msg='…'` holds more key=value pairs);
    /// the record's own come first, so they win a lookup.
    func appendingFields(of text: String) -> AuditRecord {
        var copy = self
        let offset = Int32(bytes.count)
        var text = text
        text.withUTF8 { u in
            copy.bytes.append(contentsOf: u)
            copy.ascii = ascii && u.allSatisfy { $0 < 0x80 }
            for s in Self.tokenize(u) {
                copy.spans.append(FieldSpan(keyStart: s.keyStart + offset, keyEnd: s.keyEnd + offset, valueStart: s.valueStart + offset, valueEnd: s.valueEnd + offset))
            }
        }
        return copy
    }

    /// `key=value` pairs separated by spaces; a value may be a quoted string with spaces.
    static func tokenize(_ u: UnsafeBufferPointer<UInt8>) -> [FieldSpan] {
        var fields: [FieldSpan] = []
        fields.reserveCapacity(32)
        var i = 0
        let end = u.count
        while i < end {
            while i < end, u[i] == UInt8(ascii: " ") { i += 1 }
            guard i < end else { break }
            let keyStart = i
            while i < end, u[i] != UInt8(ascii: "="), u[i] != UInt8(ascii: " ") { i += 1 }
            let keyEnd = i
            guard i < end, u[i] == UInt8(ascii: "=") else { continue }
            i += 1
            let valueStart = i
            if i < end, u[i] == UInt8(ascii: "\"") {
                i += 1
                while i < end, u[i] != UInt8(ascii: "\"") { i += 1 }
                if i < end { i += 1 }
            } else if i < end, u[i] == UInt8(ascii: "'") {
                // msg='...' in user records: the whole quoted list is one value.
                i += 1
                while i < end, u[i] != UInt8(ascii: "'") { i += 1 }
                if i < end { i += 1 }
            } else {
                while i < end, u[i] != UInt8(ascii: " ") { i += 1 }
            }
            if keyEnd > keyStart {
                fields.append(FieldSpan(keyStart: Int32(keyStart), keyEnd: Int32(keyEnd), valueStart: Int32(valueStart), valueEnd: Int32(i)))
            }
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
        out.reserveCapacity(argumentBytes)
        // Arguments 0..<count, the usual case, need no sort.
        if (0..<arguments.count).allSatisfy({ arguments[$0] != nil }) {
            for n in 0..<arguments.count {
                if n > 0 { out.append(UInt8(ascii: " ")) }
                out += arguments[n] ?? []
            }
            return String(decoding: out, as: UTF8.self)
        }
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
    /// Records fed (the publisher adds them to its counters once per read batch).
    package var records = 0
    /// The event opened last: the kernel sends an event's records together, so they go to it
    /// without a dictionary lookup each; `partial` holds the ones another event interrupted.
    private var current: AuditEvent?
    private var partial: [UInt64: AuditEvent] = [:]
    private var order: [UInt64] = []
    private var orderHead = 0

    package init(maxPartial: Int, maxArgumentBytes: Int) {
        self.maxPartial = max(1, maxPartial)
        self.maxArgumentBytes = max(0, maxArgumentBytes)
    }

    package var inFlight: Int { partial.count + (current == nil ? 0 : 1) }

    /// Feeds one record; completed events are appended to `out`.
    package mutating func add(_ record: AuditRecord, into out: inout [AuditEvent]) {
        let t = record.type
        if AuditType.isUser(t) || AuditType.isSELinux(t) || t == AuditType.seccomp
            || (AuditType.firstUser2...AuditType.lastUser2).contains(t)
        {
            out.append(AuditEvent(serial: record.serial, seconds: record.seconds, records: [record]))
            return
        }
        switch t {
        case AuditType.syscall:
            if current?.serial == record.serial || partial[record.serial] != nil {
                // osquery: "Received a duplicated event" (the earlier one is dropped).
                counters.malformed += 1
                if current?.serial == record.serial { current = nil } else { partial[record.serial] = nil }
            }
            var event = AuditEvent(serial: record.serial, seconds: record.seconds, records: [])
            // SYSCALL, EXECVE, CWD, PATH × 2, PROCTITLE: one allocation for an exec's records.
            event.records.reserveCapacity(8)
            event.records.append(record)
            open(event)
        case AuditType.eoe:
            if current?.serial == record.serial {
                out.append(current.take()!)
            } else if let event = partial.removeValue(forKey: record.serial) {
                out.append(event)
            }
        default:
            if current?.serial == record.serial {
                Self.append(record, to: &current!, maxArgumentBytes: maxArgumentBytes, maxRecords: maxRecords, counters: &counters)
                return
            }
            // Taken out while it grows, so its records are not copied (the dictionary would
            // otherwise share them).
            guard var event = partial.removeValue(forKey: record.serial) else {
                counters.unknown += 1
                return
            }
            Self.append(record, to: &event, maxArgumentBytes: maxArgumentBytes, maxRecords: maxRecords, counters: &counters)
            partial[record.serial] = event
        }
    }

    private static func append(
        _ record: AuditRecord, to event: inout AuditEvent, maxArgumentBytes: Int, maxRecords: Int, counters: inout AuditAssemblyCounters
    ) {
        if record.type == AuditType.execve {
            addArguments(record, to: &event, maxArgumentBytes: maxArgumentBytes, counters: &counters)
            // The arguments are kept assembled; the record itself only for argc.
            if event.first(AuditType.execve) == nil {
                event.records.append(AuditRecord(type: record.type, seconds: record.seconds, serial: record.serial))
            }
        } else if event.records.count < maxRecords {
            event.records.append(record)
        } else {
            counters.recordOverflows += 1
        }
    }

    private mutating func open(_ event: AuditEvent) {
        if let interrupted = current.take() { partial[interrupted.serial] = interrupted }
        current = event
        order.append(event.serial)
        while inFlight > maxPartial, orderHead < order.count {
            let oldest = order[orderHead]
            orderHead += 1
            if current?.serial == oldest {
                current = nil
                counters.partialDropped += 1
            } else if partial.removeValue(forKey: oldest) != nil {
                counters.partialDropped += 1
            }
        }
        compactOrder()
    }

    /// Serials of completed events stay in `order` until swept: a sweep whenever it holds more
    /// than twice the cap keeps it bounded at amortized constant cost per event.
    private mutating func compactOrder() {
        guard order.count - orderHead > maxPartial * 2 + 64 else { return }
        let open = current?.serial
        order = order[orderHead...].filter { partial[$0] != nil || $0 == open }
        orderHead = 0
    }

    /// Serials the eviction order holds (tests: it stays bounded).
    package var tracked: Int { order.count - orderHead }

    /// Drops events that waited more than `maxAge` seconds for their EOE (lost to the kernel's
    /// backlog); returns how many.
    @discardableResult
    mutating func expire(now: UInt64) -> Int {
        var dropped = 0
        if let c = current, c.seconds + maxAge < now {
            current = nil
            dropped += 1
        }
        if !partial.isEmpty {
            let old = partial.values.filter { $0.seconds + maxAge < now }.map(\.serial)
            for s in old { partial[s] = nil }
            dropped += old.count
        }
        counters.incomplete += dropped
        return dropped
    }

    /// EXECVE: `argc=N a0="x" a1=HEX a2_len=L a2[0]=HEX a2[1]=HEX …`, possibly over several records.
    private static func addArguments(_ record: AuditRecord, to event: inout AuditEvent, maxArgumentBytes: Int, counters: inout AuditAssemblyCounters) {
        for f in 0..<record.fieldCount {
            record.withField(f) { key, value in
                if key.elementsEqual("argc".utf8) {
                    event.argc = min(Int(String(decoding: value, as: UTF8.self)) ?? 0, 1 << 20)
                    return
                }
                guard key.first == UInt8(ascii: "a"), let (index, piece) = argumentKey(key) else { return }
                if piece == -2 { return }  // aN_len
                let remaining = maxArgumentBytes - event.argumentBytes
                guard remaining > 0 else {
                    if !event.argumentsOverflowed {
                        event.argumentsOverflowed = true
                        counters.argumentOverflows += 1
                    }
                    return
                }
                // Bounded: at most `maxArgumentBytes` distinct argument slots too.
                guard event.arguments[index] != nil || event.arguments.count < maxArgumentBytes else { return }
                var bytes = event.arguments.removeValue(forKey: index) ?? []
                let before = bytes.count
                // A quoted value's first character is the quote alone (for ASCII, its byte is).
                let quoted =
                    value.count >= 2 && value[0] == UInt8(ascii: "\"")
                    && (value[1] < 0x80 || String(decoding: value, as: UTF8.self).hasPrefix("\""))
                if quoted {
                    bytes += UnsafeBufferPointer(rebasing: value[1..<(value.count - 1)]).prefix(remaining)
                } else if AuditRecord.isHex(value) {
                    AuditRecord.appendHexDigits(value, to: &bytes, limit: before + remaining)
                } else {
                    bytes += value.prefix(remaining)
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
    }

    /// `aN` → (N, -1); `aN[k]` → (N, k); `aN_len` → (N, -2).
    static func argumentKey(_ key: UnsafeBufferPointer<UInt8>) -> (Int, Int)? {
        let u = UnsafeBufferPointer(rebasing: key.dropFirst())
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
