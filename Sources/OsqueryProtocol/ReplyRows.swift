package import ThriftCodec

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The rows of a `query` (or `call`) reply, left where the reply put them.
///
/// Decoding a big result into ``StringMap``s costs an array per row and a string per cell, and
/// freeing them costs about as much again. `ReplyRows` keeps the reply's bytes and one offset per
/// cell: the walk that finds the offsets checks every length, and a cell's text is built only
/// when it is read. Rows and cells come in wire order.
///
/// ```swift
/// for row in try await client.queryReplyRows("SELECT pid, name FROM processes") {
///     print(row["pid"] ?? "", row["name"] ?? "")
/// }
/// ```
package struct ReplyRows: RandomAccessCollection, @unchecked Sendable {
    // @unchecked: `base` points into bytes that `owner` keeps alive and nobody writes.
    let owner: (any AnyObject & Sendable)?
    let base: UnsafeRawPointer?
    /// Row i's cells are `cells[rowStarts[i]..<rowStarts[i + 1]]`.
    let rowStarts: [UInt32]
    /// Where each cell's key length starts in the reply.
    let cells: [UInt32]

    /// No rows.
    package init() {
        owner = nil
        base = nil
        rowStarts = [0]
        cells = []
    }

    init(owner: any AnyObject & Sendable, base: UnsafeRawPointer?, reader: ReplyRowsReader) {
        self.owner = owner
        self.base = base
        self.rowStarts = reader.rowStarts
        self.cells = reader.cells
    }

    package var startIndex: Int { 0 }
    package var endIndex: Int { rowStarts.count - 1 }

    package subscript(position: Int) -> Row {
        precondition(position >= 0 && position < endIndex, "row index out of range")
        return Row(rows: self, first: Int(rowStarts[position]), end: Int(rowStarts[position + 1]))
    }

    /// Every row as a ``StringMap`` (what ``ExtensionManagerClient/queryRows(_:timeout:)`` returns).
    package var stringMaps: [StringMap] { map(\.stringMap) }

    /// One row: its cells in wire order, looked up by column name.
    package struct Row: RandomAccessCollection, Sendable {
        let rows: ReplyRows
        let first: Int
        package let endIndex: Int

        init(rows: ReplyRows, first: Int, end: Int) {
            self.rows = rows
            self.first = first
            self.endIndex = end
        }

        package var startIndex: Int { first }

        /// The cell at `position` (from ``startIndex`` up to ``endIndex``): its column and value.
        package subscript(position: Int) -> StringMap.Entry {
            let (key, value) = bytes(ofCell: position)
            return StringMap.Entry(key: ThriftString(decoding: key), value: ThriftString(decoding: value))
        }

        /// The value of `column`, or nil when the row has no such cell (the last one when repeated,
        /// as a map decoder keeps it).
        package subscript(column: String) -> ThriftString? {
            var name = column
            return name.withUTF8 { wanted -> ThriftString? in
                var i = endIndex
                while i > first {
                    i -= 1
                    let (key, value) = bytes(ofCell: i)
                    if key.count == wanted.count, key.isEmpty || memcmp(key.baseAddress!, wanted.baseAddress!, key.count) == 0 {
                        return ThriftString(decoding: value)
                    }
                }
                return nil
            }
        }

        /// The row as a ``StringMap``.
        package var stringMap: StringMap {
            var out = StringMap(minimumCapacity: count)
            for entry in self { out.append(entry.key, entry.value) }
            return out
        }

        /// A cell's key and value bytes, valid while the rows live.
        func bytes(ofCell i: Int) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
            precondition(i >= first && i < endIndex, "cell index out of range")
            // The walk that recorded the offset checked both lengths against the reply.
            let at = rows.base! + Int(rows.cells[i])
            let keyCount = Int(UInt32(bigEndian: at.loadUnaligned(as: UInt32.self)))
            let valueAt = at + 4 + keyCount
            let valueCount = Int(UInt32(bigEndian: valueAt.loadUnaligned(as: UInt32.self)))
            return (UnsafeRawBufferPointer(start: at + 4, count: keyCount),
                    UnsafeRawBufferPointer(start: valueAt + 4, count: valueCount))
        }
    }
}

/// Records where the cells of a reply's rows are, for ``ReplyRows``: one walk over the lengths,
/// checked as ``StringMap`` decoding checks them, no strings built.
package struct ReplyRowsReader: ResponseRowsReader {
    var rowStarts: [UInt32] = [0]
    var cells: [UInt32] = []

    package init() {}

    package mutating func discardRows() {
        rowStarts = [0]
        cells = []
    }

    package mutating func readRows(from r: inout ThriftReader, checked: MessageFramer.StringMapList?) throws(ThriftError) {
        guard let checked, checked.start == r.offset, r.buffer.count <= Int(UInt32.max), let base = r.buffer.baseAddress else {
            return try readRows(from: &r)
        }
        // The framer checked every map and length of this list as it arrived: only the offsets
        // are taken here.
        @inline(__always) func length(at offset: Int) -> Int {
            Int(UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        }
        var at = checked.start &+ 5
        rowStarts.reserveCapacity(checked.count &+ 1)
        // The previous row's key lengths, by position: the value's length is loaded with the
        // key's instead of after it (rows repeat their keys), and the guess checked.
        var guesses = [Int](repeating: -1, count: 32)
        for _ in 0..<checked.count {
            let entries = length(at: at &+ 2)
            at &+= 6
            if cells.isEmpty, entries > 0 {
                cells.reserveCapacity(min(entries &* checked.count, (checked.end &- at) / 8 &+ entries))
            }
            for entry in 0..<entries {
                cells.append(UInt32(truncatingIfNeeded: at))
                let guess = entry < 32 ? guesses[entry] : -1
                let keyLength = length(at: at)
                // A guess is used only where the value length it points at is inside the list.
                if guess >= 0, checked.end &- at &- 8 >= guess {
                    let valueLength = length(at: at &+ 4 &+ guess)
                    if keyLength == guess {
                        at &+= 8 &+ guess &+ valueLength
                        continue
                    }
                }
                if entry < 32 { guesses[entry] = keyLength }
                at &+= 4 &+ keyLength
                at &+= 4 &+ length(at: at)
            }
            rowStarts.append(UInt32(truncatingIfNeeded: cells.count))
        }
        r.offset = checked.end
    }

    package mutating func readRows(from r: inout ThriftReader) throws(ThriftError) {
        // Offsets are 32-bit: a reply over 4 GiB is refused rather than mis-indexed.
        guard r.buffer.count <= Int(UInt32.max) else {
            throw .sizeLimit(declared: Int64(r.buffer.count), limit: Int64(UInt32.max))
        }
        let header = try r.readListBegin()
        guard header.count == 0 || header.element == .map else { throw .invalidData("expected list<map<string,string>>") }
        try r.enter()
        defer { r.leave() }
        rowStarts.reserveCapacity(header.count + 1)
        for _ in 0..<header.count {
            let map = try r.readMapBegin()
            guard map.count == 0 || (map.key == .string && map.value == .string) else {
                throw .invalidData("expected map<string,string>")
            }
            if cells.isEmpty, map.count > 0 {
                // Rows of one query have the same columns; every cell takes at least 8 bytes.
                cells.reserveCapacity(min(map.count &* header.count, r.remaining / 8 + map.count))
            }
            for _ in 0..<map.count {
                cells.append(UInt32(truncatingIfNeeded: r.offset))
                _ = try r.readStringBytes()
                _ = try r.readStringBytes()
            }
            rowStarts.append(UInt32(truncatingIfNeeded: cells.count))
        }
    }
}

extension RawReply {
    /// Decodes a `query` or `call` reply, its rows as ``ReplyRows`` that keep the reply's bytes.
    package func decodeReplyRows() throws(RPCClientError) -> (status: ExtensionStatus, rows: ReplyRows) {
        var reader = ReplyRowsReader()
        let status = try decodeResponse(rows: &reader)
        let (owner, bytes) = pinnedBytes()
        return (status, ReplyRows(owner: owner, base: bytes.baseAddress, reader: reader))
    }
}
