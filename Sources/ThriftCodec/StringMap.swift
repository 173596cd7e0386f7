/// A Thrift `map<string,string>` kept as its entries, in wire order.
///
/// Query results and route info are lists of small maps (a row of a few
/// columns), decoded and encoded by the thousand. Keeping each as an array of
/// entries costs one allocation and no hashing, and it keeps the order in which
/// a peer sent the columns. Lookup by key is a linear scan, the fastest choice
/// for the handful of columns a row has; convert with ``dictionary`` for many
/// lookups on a large map.
///
/// Like a Thrift map, keys are meant to be unique. If a peer sends a key twice,
/// both entries are kept on the wire (so re-encoding is faithful) and lookups
/// see the last one, as a decoder into a hash map would.
@usableFromInline package struct StringMap: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// One key and its value.
    @usableFromInline package struct Entry: Sendable, Hashable {
        @usableFromInline package var key: ThriftString
        @usableFromInline package var value: ThriftString
        @inlinable
        package init(key: ThriftString, value: ThriftString) {
            self.key = key
            self.value = value
        }
    }

    /// The entries in wire order.
    @usableFromInline package var entries: [Entry]

    /// An empty map.
    @inlinable
    package init() { entries = [] }

    @inlinable
    package init(minimumCapacity: Int) {
        entries = []
        entries.reserveCapacity(minimumCapacity)
    }

    /// The entries of a dictionary, in its iteration order.
    @usableFromInline
    package init(_ dictionary: [ThriftString: ThriftString]) {
        entries = dictionary.map { Entry(key: $0.key, value: $0.value) }
    }

    /// Keys and values of Swift strings.
    @usableFromInline
    package init(_ dictionary: [String: String]) {
        entries = dictionary.map { Entry(key: ThriftString($0.key), value: ThriftString($0.value)) }
    }

    /// A map from `["key": "value", …]`, in the order written.
    /// - Parameter elements: the keys and values.
    @usableFromInline
    package init(dictionaryLiteral elements: (ThriftString, ThriftString)...) {
        entries = elements.map { Entry(key: $0.0, value: $0.1) }
    }

    /// The number of entries.
    @inlinable
    package var count: Int { entries.count }

    @inlinable
    package var isEmpty: Bool { entries.isEmpty }

    /// The keys, in wire order.
    @usableFromInline
    package var keys: [ThriftString] { entries.map(\.key) }

    /// The value for `key` (the last entry with that key), or nil.
    /// Setting replaces the last such entry or appends one; nil removes every entry with the key.
    @inlinable
    package subscript(key: ThriftString) -> ThriftString? {
        get {
            var i = entries.count
            while i > 0 {
                i &-= 1
                if entries[i].key == key { return entries[i].value }
            }
            return nil
        }
        set {
            guard let newValue else {
                entries.removeAll { $0.key == key }
                return
            }
            if let i = entries.lastIndex(where: { $0.key == key }) {
                entries[i].value = newValue
            } else {
                entries.append(Entry(key: key, value: newValue))
            }
        }
    }

    /// Appends an entry without looking for an existing one with the same key:
    /// for producers that know their keys are unique (a table's columns).
    @inlinable
    package mutating func append(_ key: ThriftString, _ value: ThriftString) {
        entries.append(Entry(key: key, value: value))
    }

    /// A dictionary of the entries (later duplicates win).
    @usableFromInline
    package var dictionary: [ThriftString: ThriftString] {
        var d = [ThriftString: ThriftString](minimumCapacity: entries.count)
        for e in entries { d[e.key] = e.value }
        return d
    }

    /// The entries in wire order, as `(key, value)` pairs.
    /// - Returns: an iterator over the entries.
    @usableFromInline
    package func makeIterator() -> some IteratorProtocol<(key: ThriftString, value: ThriftString)> {
        entries.lazy.map { (key: $0.key, value: $0.value) }.makeIterator()
    }

    /// Map equality: the same keys with the same values, whatever the order.
    @usableFromInline
    package static func == (lhs: StringMap, rhs: StringMap) -> Bool {
        if lhs.entries == rhs.entries { return true }
        return lhs.dictionary == rhs.dictionary
    }

    /// Hashes the entries as a dictionary (order and duplicates do not count, as for `==`).
    /// - Parameter hasher: the hasher to feed.
    @usableFromInline
    package func hash(into hasher: inout Hasher) { hasher.combine(dictionary) }

    /// The map as `[key: value, …]`.
    @usableFromInline
    package var description: String {
        "[" + entries.map { "\($0.key.debugDescription): \($0.value.debugDescription)" }.joined(separator: ", ") + "]"
    }
}

extension ThriftWriter {
    /// Writes a `map<string,string>` from its entries.
    @inlinable
    package mutating func writeStringMap(_ map: StringMap) {
        writeMapBegin(key: .string, value: .string, count: map.entries.count)
        // Through the buffer: entries are borrowed, not copied (retained) one by one.
        map.entries.withUnsafeBufferPointer { entries in
            for i in entries.indices {
                writeString(entries[i].key)
                writeString(entries[i].value)
            }
        }
    }

    /// Writes a `list<map<string,string>>`.
    @inlinable
    package mutating func writeStringMapList(_ rows: [StringMap]) {
        writeListBegin(element: .map, count: rows.count)
        rows.withUnsafeBufferPointer { rows in
            for i in rows.indices { writeStringMap(rows[i]) }
        }
    }
}

extension ThriftReader {
    /// Reads a `map<string,string>` into a ``StringMap``, in wire order.
    @inlinable
    package mutating func readStringMapEntries() throws(ThriftError) -> StringMap {
        let header = try readMapBegin()
        guard header.count == 0 || (header.key == .string && header.value == .string) else {
            throw .invalidData("expected map<string,string>")
        }
        var map = StringMap(minimumCapacity: header.count)
        for _ in 0..<header.count {
            let k = try readString()
            map.append(k, try readString())
        }
        return map
    }

    /// Reads a `list<map<string,string>>`.
    ///
    /// Rows repeat their keys in the same order, so a key whose bytes equal the previous row's
    /// key at the same position shares that row's value instead of building a new string.
    package mutating func readStringMapList() throws(ThriftError) -> [StringMap] {
        let header = try readListBegin()
        guard header.count == 0 || header.element == .map else {
            throw .invalidData("expected list<map<string,string>>")
        }
        try enter()
        defer { leave() }
        return try readStringMaps(header.count)
    }

    /// Reads `count` `map<string,string>`s back to back (a list's elements, without its header).
    package mutating func readStringMaps(_ count: Int) throws(ThriftError) -> [StringMap] {
        var rows = [StringMap]()
        rows.reserveCapacity(count)
        var previous: [(at: Int, count: Int, key: ThriftString)] = []
        for _ in 0..<count {
            let map = try readMapBegin()
            guard map.count == 0 || (map.key == .string && map.value == .string) else {
                throw .invalidData("expected map<string,string>")
            }
            var row = StringMap(minimumCapacity: map.count)
            for j in 0..<map.count {
                let n = try readLength()
                let at = offset
                offset = at &+ n
                let key: ThriftString
                if j < previous.count, previous[j].count == n,
                    n == 0 || memcmp(buffer.baseAddress! + previous[j].at, buffer.baseAddress! + at, n) == 0
                {
                    key = previous[j].key
                } else {
                    key = ThriftString(decoding: UnsafeRawBufferPointer(rebasing: buffer[at..<(at &+ n)]))
                    if j < previous.count { previous[j] = (at, n, key) } else { previous.append((at, n, key)) }
                }
                row.append(key, try readString())
            }
            rows.append(row)
        }
        return rows
    }

    /// Skips `count` `map<string,string>`s, checking their shape and lengths as
    /// ``readStringMaps(_:)`` would, without building them.
    package mutating func skipStringMaps(_ count: Int) throws(ThriftError) {
        // A tight walk over well-formed maps first (a big reply's rows); it stops at anything
        // unusual, which the checked loop below then reads and rejects with its error.
        let (at, left) = walkStringMaps(buffer, from: offset, count: count, end: buffer.count, maxLength: limits.maxMessageSize)
        offset = at
        for _ in 0..<left {
            let map = try readMapBegin()
            guard map.count == 0 || (map.key == .string && map.value == .string) else {
                throw .invalidData("expected map<string,string>")
            }
            for _ in 0..<(map.count &* 2) {
                let n = try readLength()
                offset &+= n
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
