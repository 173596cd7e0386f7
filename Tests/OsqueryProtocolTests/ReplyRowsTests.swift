@testable import OsqueryProtocol
import ProtocolFixture
import Testing
import ThriftCodec

/// `ReplyRows` keeps a reply's bytes and one offset per cell: every row and cell must read back
/// as `StringMap` decoding gives them, and malformed rows must be refused by the walk.
@Suite struct ReplyRowsTests {
    /// Bytes that outlive the test's scope, as a reply's frame does.
    final class Bytes: Sendable {
        nonisolated(unsafe) let memory: UnsafeMutableRawBufferPointer
        init(_ bytes: [UInt8]) {
            memory = .allocate(byteCount: max(bytes.count, 1), alignment: 1)
            memory.copyBytes(from: bytes)
        }
        deinit { memory.deallocate() }
    }

    /// With `checked`, the rows are read as after a framer checked them (no second check).
    func replyRows(_ bytes: [UInt8], checked: MessageFramer.StringMapList? = nil) throws -> (ReplyRows, Int32) {
        let owner = Bytes(bytes)
        var reader = ReplyRowsReader()
        var r = ThriftReader(UnsafeRawBufferPointer(owner.memory))
        try reader.readRows(from: &r, checked: checked)
        let after = try r.readI32()
        return (ReplyRows(owner: owner, base: UnsafeRawPointer(owner.memory.baseAddress), reader: reader), after)
    }

    func encode(_ rows: [StringMap]) -> [UInt8] {
        var w = ThriftWriter()
        w.writeStringMapList(rows)
        w.writeI32(0x1234_5678)  // what follows the list must still be read
        return w.bytes
    }

    let rows: [StringMap] = [
        ["a": "row0", "b": "0"],
        [:],
        ["b": "reordered", "a": ThriftString(bytes: [0xFF, 0x01])],
        ["ünï": "cödé", "": "empty key"],
        ["a": "first", "a": "last"],
    ]

    @Test(arguments: [false, true])
    func cellsReadBackAsTheMapsWereWritten(framerChecked: Bool) throws {
        let bytes = encode(rows)
        let list = MessageFramer.StringMapList(start: 0, end: bytes.count - 4, count: rows.count)
        let (got, after) = try replyRows(bytes, checked: framerChecked ? list : nil)
        #expect(after == 0x1234_5678)
        #expect(got.count == rows.count)
        #expect(got.stringMaps == rows)
        #expect(got.map { Array($0) } == rows.map(\.entries))
        #expect(got[0]["a"] == "row0" && got[0]["b"] == "0" && got[0]["c"] == nil)
        #expect(got[1].isEmpty && got[1]["a"] == nil)
        #expect(got[2]["a"] == ThriftString(bytes: [0xFF, 0x01]), "bytes kept as they are")
        #expect(got[3]["ünï"] == "cödé" && got[3][""] == "empty key")
        #expect(got[4]["a"] == "last", "a repeated column reads as a map decoder keeps it")
        #expect(ReplyRows().isEmpty)
    }

    @Test func malformedRowsAreRefused() throws {
        var retyped = encode(rows)
        var w = ThriftWriter()
        w.writeStringMapList(Array(rows[..<2]))
        retyped[w.byteCount + 1] = TType.i32.rawValue  // row 2's map header: map<string,i32>
        #expect(throws: ThriftError.self) { try replyRows(retyped) }
        var longer = encode(rows)
        longer[5 + 6] = 0x7F  // row 0's first key length: far past the end
        #expect(throws: ThriftError.self) { try replyRows(longer) }
        let bytes = encode(rows)
        #expect(throws: ThriftError.self) { try replyRows(Array(bytes[..<(bytes.count - 8)])) }
    }

    /// Through a real socket: the same rows as `queryRows`, big replies and status errors included.
    @Test func queryReplyRowsMatchesQueryRows() async throws {
        let path = tempSocketPath("replyrows")
        let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()))
        let client = ExtensionManagerClient(path: path)
        for sql in ["rows:0", "rows:3", "rows:20000", "select 'ü'", "error"] {
            let lazy = try await client.queryReplyRows(ThriftString(sql))
            let maps = try await client.queryRows(ThriftString(sql))
            #expect(lazy.status == maps.status, "\(sql)")
            #expect(lazy.rows.stringMaps == maps.rows, "\(sql)")
        }
        let invalid = ThriftString(bytes: Array("select 'ü' ".utf8) + [0xFF])
        #expect(try await client.queryReplyRows(invalid).rows.first?["sql"] == invalid)
        await server.close()
    }
}
