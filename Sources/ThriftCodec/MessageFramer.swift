/// Finds where one Thrift message ends in an unframed byte stream.
///
/// osquery's transport is "buffered", not framed: nothing on the wire says how
/// long a message is, so the receiver has to walk its structure. The framer does
/// that incrementally and without allocating values: feed it the bytes received
/// so far (always starting at the message's first byte) and it either returns
/// the message length, asks for more bytes, or throws. It remembers how far it
/// got, so a large message arriving in many small reads is walked once, not once
/// per read. Limits are enforced as soon as a length is seen: a declared 2 GiB
/// string is refused before its bytes arrive.
package struct MessageFramer: Sendable {
    enum Frame: Sendable {
        case structFields
        /// `start`: the offset of the list's header; `stringMaps`: every element so far was a
        /// `map<string,string>` (the rows of a reply).
        case list(element: TType, remaining: Int, start: Int, stringMaps: Bool)
        case map(key: TType, value: TType, remaining: Int)  // remaining counts keys and values
    }

    package let limits: ThriftLimits
    var bodyStart: Int?
    var offset = 0
    var stack: [Frame] = []
    var pending: TType?
    var rowsList: StringMapList?

    /// Where a message's `list<map<string,string>>` is, once the framer has walked and checked
    /// all of it: every element a map of strings, every length within the message.
    package struct StringMapList: Sendable, Equatable {
        /// The offset of the list's header (from the message's first byte).
        package var start: Int
        /// The offset just past its last element.
        package var end: Int
        /// The number of elements.
        package var count: Int

        package init(start: Int, end: Int, count: Int) {
            self.start = start
            self.end = end
            self.count = count
        }
    }

    /// The last such list of the message ``scan(_:)`` last returned (nil if it had none):
    /// a decoder can take the list's shape as checked and skip to its end.
    package private(set) var lastStringMapList: StringMapList?

    package init(limits: ThriftLimits = .default) {
        self.limits = limits
        stack.reserveCapacity(8)
    }

    /// Forgets any partial progress; call after each complete message.
    package mutating func reset() {
        bodyStart = nil
        offset = 0
        stack.removeAll(keepingCapacity: true)
        pending = nil
        rowsList = nil
    }

    /// Scans `bytes`, which must start at the first byte of the message and
    /// extend the bytes passed last time. Returns the message's length once all
    /// of it is present, or nil when more bytes are needed.
    package mutating func scan(_ bytes: UnsafeRawBufferPointer) throws(ThriftError) -> Int? {
        if bodyStart == nil {
            guard let start = try Self.headerLength(bytes, limits: limits) else { return nil }
            bodyStart = start
            offset = start
            pending = .struct
        }
        while true {
            if let type = pending {
                guard try consumeValue(type, bytes) else { return nil }
                pending = nil
                continue
            }
            guard let top = stack.last else {
                let length = offset
                lastStringMapList = rowsList
                reset()
                return length
            }
            switch top {
            case .structFields:
                guard offset < bytes.count else { return nil }
                let raw = bytes[offset]
                if raw == 0 {
                    offset += 1
                    stack.removeLast()
                    continue
                }
                guard let type = TType(rawValue: raw), type.isValueType else { throw .invalidType(raw) }
                guard offset + 3 <= bytes.count else { return nil }
                offset += 3
                pending = type
            case .list(let element, var remaining, let start, let stringMaps):
                if remaining > 0 && element == .map {
                    // Rows: walk whole map<string,string>s in one loop; a row that is not
                    // complete yet (or not of strings) takes the general path below.
                    remaining = skipCompleteStringMaps(remaining, bytes)
                }
                if remaining == 0 {
                    stack.removeLast()
                    if stringMaps {
                        let count = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: start &+ 1, as: Int32.self)))
                        rowsList = StringMapList(start: start, end: offset, count: count)
                    }
                    continue
                }
                stack[stack.count - 1] = .list(element: element, remaining: remaining - 1, start: start, stringMaps: stringMaps)
                pending = element
            case .map(let key, let value, let remaining):
                if remaining == 0 {
                    stack.removeLast()
                    continue
                }
                if key == .string && value == .string {
                    // Rows are maps of strings: walk their lengths in one tight loop.
                    let left = try skipStrings(remaining, bytes)
                    stack[stack.count - 1] = .map(key: key, value: value, remaining: left)
                    if left > 0 { return nil }
                    continue
                }
                stack[stack.count - 1] = .map(key: key, value: value, remaining: remaining - 1)
                pending = remaining % 2 == 0 ? key : value
            }
        }
    }

    /// Consumes one value (or a container's header); false if bytes are missing.
    mutating func consumeValue(_ type: TType, _ bytes: UnsafeRawBufferPointer) throws(ThriftError) -> Bool {
        guard offset <= limits.maxMessageSize else {
            throw .sizeLimit(declared: Int64(offset), limit: Int64(limits.maxMessageSize))
        }
        let available = bytes.count - offset
        switch type {
        case .stop, .void:
            throw .invalidType(type.rawValue)
        case .bool, .byte, .i16, .i32, .i64, .double:
            let size = type.minimumEncodedSize
            guard available >= size else { return false }
            offset += size
        case .string:
            guard available >= 4 else { return false }
            let n = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
            guard n >= 0 else { throw .negativeSize(Int64(n)) }
            try checkFits(n, after: offset + 4)
            guard available >= 4 + n else { return false }
            offset += 4 + n
        case .struct:
            try push(.structFields)
        case .map:
            guard available >= 6 else { return false }
            let k = bytes[offset], v = bytes[offset + 1]
            let n = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset + 2, as: Int32.self)))
            guard n >= 0 else { throw .negativeSize(Int64(n)) }
            var key = TType.stop, value = TType.stop
            if n > 0 {
                guard let kt = TType(rawValue: k), kt.isValueType else { throw .invalidType(k) }
                guard let vt = TType(rawValue: v), vt.isValueType else { throw .invalidType(v) }
                key = kt
                value = vt
                try checkFits(n * (kt.minimumEncodedSize + vt.minimumEncodedSize), after: offset + 6)
                // A map of other types in a list: the list is not rows.
                if kt != .string || vt != .string, case .list(let e, let r, let s, true)? = stack.last {
                    stack[stack.count - 1] = .list(element: e, remaining: r, start: s, stringMaps: false)
                }
            }
            offset += 6
            try push(.map(key: key, value: value, remaining: n * 2))
        case .set, .list:
            guard available >= 5 else { return false }
            let e = bytes[offset]
            let n = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset + 1, as: Int32.self)))
            guard n >= 0 else { throw .negativeSize(Int64(n)) }
            var element = TType.stop
            if n > 0 {
                guard let et = TType(rawValue: e), et.isValueType else { throw .invalidType(e) }
                element = et
                try checkFits(n * et.minimumEncodedSize, after: offset + 5)
            }
            try push(.list(element: element, remaining: n, start: offset, stringMaps: type == .list && element == .map))
            offset += 5
        }
        return true
    }

    /// Consumes up to `count` whole `map<string,string>`s (a list's rows), stopping before the
    /// first that is incomplete, of other types, or malformed, which the general path then
    /// takes (and rejects with its error); returns how many are left. Nothing past the message
    /// size limit is consumed here.
    mutating func skipCompleteStringMaps(_ count: Int, _ bytes: UnsafeRawBufferPointer) -> Int {
        let (at, left) = walkStringMaps(
            bytes, from: offset, count: count, end: min(bytes.count, limits.maxMessageSize), maxLength: Int.max)
        offset = at
        return left
    }

    /// Consumes up to `count` strings, as many as are complete; returns how many are left.
    /// The same checks as ``consumeValue(_:_:)`` makes for each string.
    mutating func skipStrings(_ count: Int, _ bytes: UnsafeRawBufferPointer) throws(ThriftError) -> Int {
        var left = count
        var at = offset
        let end = bytes.count
        let limit = limits.maxMessageSize
        while left > 0 {
            guard at <= limit else { throw .sizeLimit(declared: Int64(at), limit: Int64(limit)) }
            guard end &- at >= 4 else { break }
            let n = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: at, as: Int32.self)))
            guard n >= 0 else { throw .negativeSize(Int64(n)) }
            try checkFits(n, after: at &+ 4)
            guard end &- at &- 4 >= n else { break }
            at &+= 4 &+ n
            left &-= 1
        }
        offset = at
        return left
    }

    func checkFits(_ size: Int, after position: Int) throws(ThriftError) {
        let left = limits.maxMessageSize - position
        guard size <= left else { throw .sizeLimit(declared: Int64(size), limit: Int64(limits.maxMessageSize)) }
    }

    mutating func push(_ frame: Frame) throws(ThriftError) {
        guard stack.count < limits.maxDepth else { throw .depthLimit(limits.maxDepth) }
        stack.append(frame)
    }

    /// The header's length, nil if incomplete. Headers are tiny, so they are
    /// re-parsed from the start rather than resumed.
    static func headerLength(_ bytes: UnsafeRawBufferPointer, limits: ThriftLimits) throws(ThriftError) -> Int? {
        guard bytes.count >= 4 else { return nil }
        let first = Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: Int32.self))
        if first < 0 {
            let word = UInt32(bitPattern: first)
            guard word & 0xFFFF_0000 == 0x8001_0000 else { throw .badVersion(word & 0xFFFF_0000) }
            let rawType = UInt8(truncatingIfNeeded: word & 0xFF)
            guard TMessageType(rawValue: rawType) != nil else { throw .invalidMessageType(rawType) }
            guard bytes.count >= 8 else { return nil }
            let n = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: Int32.self)))
            guard n >= 0 else { throw .negativeSize(Int64(n)) }
            guard n <= limits.maxMessageSize - 12 else {
                throw .sizeLimit(declared: Int64(n), limit: Int64(limits.maxMessageSize))
            }
            let end = 8 + n + 4
            return bytes.count >= end ? end : nil
        } else {
            let n = Int(first)
            guard n <= limits.maxMessageSize - 9 else {
                throw .sizeLimit(declared: Int64(n), limit: Int64(limits.maxMessageSize))
            }
            guard bytes.count >= 4 + n + 1 else { return nil }
            let rawType = bytes[4 + n]
            guard TMessageType(rawValue: rawType) != nil else { throw .invalidMessageType(rawType) }
            let end = 4 + n + 1 + 4
            return bytes.count >= end ? end : nil
        }
    }
}

/// Walks up to `count` well-formed `map<string,string>`s in `bytes` from `at`, stopping before
/// the first that is incomplete before `end`, of other types, negative or longer than `maxLength`
/// somewhere: where it stopped and how many maps are left. The framer and the reader's skip
/// share it; whatever it stops at, their checked paths take over.
@inline(__always)
func walkStringMaps(
    _ bytes: UnsafeRawBufferPointer, from start: Int, count: Int, end: Int, maxLength: Int
) -> (at: Int, left: Int) {
    // Rows repeat their keys, so the previous row's key length at the same position says where
    // this entry's value length is: both lengths are loaded at once, and each entry waits on one
    // load instead of two in a row. The key's length is still read and compared; a wrong guess
    // takes the plain path, and every check is made either way.
    withUnsafeTemporaryAllocation(of: Int.self, capacity: 32) { guesses in
        guesses.initialize(repeating: -1)
        var left = count
        var at = start
        let string = TType.string.rawValue
        @inline(__always) func length(_ offset: Int) -> Int {
            Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
        }
        rows: while left > 0 {
            guard end &- at >= 6 else { break }
            let n = length(at &+ 2)
            guard n >= 0 else { break }
            if n > 0 {
                guard bytes[at] == string, bytes[at &+ 1] == string else { break }
            }
            var p = at &+ 6
            var entry = 0
            while entry < n {
                let guess = entry < 32 ? guesses[entry] : -1
                // The guessed value length lies within the bytes (so loading it is safe).
                if guess >= 0, end &- p &- 8 >= guess {
                    let valueAt = p &+ 4 &+ guess
                    let valueLength = length(valueAt)
                    if length(p) == guess {
                        guard valueLength >= 0, valueLength <= maxLength, end &- valueAt &- 4 >= valueLength else { break rows }
                        p = valueAt &+ 4 &+ valueLength
                        entry &+= 1
                        continue
                    }
                }
                guard end &- p >= 4 else { break rows }
                let keyLength = length(p)
                guard keyLength >= 0, keyLength <= maxLength, end &- p &- 4 >= keyLength else { break rows }
                if entry < 32 { guesses[entry] = keyLength }
                p &+= 4 &+ keyLength
                guard end &- p >= 4 else { break rows }
                let valueLength = length(p)
                guard valueLength >= 0, valueLength <= maxLength, end &- p &- 4 >= valueLength else { break rows }
                p &+= 4 &+ valueLength
                entry &+= 1
            }
            at = p
            left &-= 1
        }
        return (at, left)
    }
}
