import Testing
@testable import OsqueryVocabulary

@Suite struct VocabularyTests {
    @Test func columnTypeNames() {
        #expect(ColumnType(name: "UNSIGNED BIGINT") == .unsignedBigint)
        #expect(ColumnType(name: "text") == .text)
        #expect(ColumnType(name: "weird") == .unknown)
        #expect(ColumnType.allCases.filter(\.isNumeric) == [.integer, .bigint, .unsignedBigint, .double])
    }

    @Test func routesRoundTrip() {
        let routes: [TableRoute] = [
            .column(name: "a", type: .text, options: [.index, .collateNocase]), .alias("t2"),
            .columnAlias(name: "b", target: "a"), .attributes([.cacheable, .userBased]),
        ]
        for route in routes {
            var pairs: [(String, String)] = []
            route.forEachPair { pairs.append(($0, $1)) }
            #expect(pairs.count == route.pairCount)
            let dict = Dictionary(uniqueKeysWithValues: pairs)
            #expect(TableRoute({ dict[$0] }) == route)
        }
        var first: [String] = []
        routes[0].forEachPair { first.append("\($0)=\($1)") }
        #expect(first == ["id=column", "name=a", "type=TEXT", "op=65"])
        #expect(TableRoute({ ["id": "column", "name": "x", "type": "nonsense"][$0] }) == .column(name: "x", type: .unknown, options: []))
        #expect(TableRoute({ ["name": "x"][$0] }) == nil)
        #expect(TableRoute({ ["id": "alias"][$0] }) == nil)
    }

    /// Hostile: an extension's event epoch is stored by the core per scheduled query, so only a
    /// short name of letters, digits, `-` and `_` is taken; anything else is no route at all.
    @Test func eventEpochsAreShortNamesOrRefused() {
        func epoch(_ value: String?) -> TableRoute? {
            TableRoute({ key in key == "id" ? "eventEpoch" : key == "epoch" ? value : nil })
        }
        #expect(epoch("a-Z_09") == .eventEpoch("a-Z_09"))
        #expect(epoch(String(repeating: "e", count: 64)) == .eventEpoch(String(repeating: "e", count: 64)))
        for hostile in [nil, "", String(repeating: "e", count: 65), "a=b", "a,b", "a b", "../x", "é", "a\u{0}", "[", "@", "`", "{"] {
            #expect(epoch(hostile) == nil, "\(String(describing: hostile))")
        }
        var pairs: [String: String] = [:]
        TableRoute.eventEpoch("e1").forEachPair { pairs[$0] = $1 }
        #expect(pairs == ["id": "eventEpoch", "epoch": "e1"])
    }

    @Test func queryContextRoundTrips() throws {
        var writer = QueryContextJSON.Writer()
        writer.beginColumn("a\"b")
        writer.constraint(.equals, "x", index: 0)
        writer.constraint(.like, "%y\n", index: 1)
        writer.endColumn(affinity: .text)
        writer.beginColumn("n")
        writer.endColumn(affinity: .bigint)
        let json = writer.finish(usedColumns: ["a\"b", "n"], bitset: 3)
        #expect(json == #"{"constraints":[{"name":"a\"b","list":[{"op":2,"expr":"x"},{"op":65,"expr":"%y\n"}],"affinity":"TEXT"},{"name":"n","list":[],"affinity":"BIGINT"}],"colsUsed":["a\"b","n"],"colsUsedBitset":3}"#)
        let parsed = try QueryContextJSON.parse(json)
        #expect(parsed.constraints["a\"b"] == ColumnConstraints(affinity: .text, list: [Constraint(.equals, "x"), Constraint(.like, "%y\n")]))
        #expect(parsed.constraints["n"] == ColumnConstraints(affinity: .bigint))
        #expect(parsed.usedColumns == ["a\"b", "n"])
        #expect(parsed.usedColumnsBitset == 3)
        var empty = QueryContextJSON.Writer()
        #expect(empty.finish(usedColumns: nil, bitset: nil) == #"{"constraints":[]}"#)
    }

    @Test func asciiScan() {
        for text in ["", "a", "abcdefgh", "abcdefghi", "abcdefgé", "é", String(repeating: "x", count: 17) + "é"] {
            var copy = text
            let ascii = copy.withUTF8 { isASCII(UnsafeRawBufferPointer($0)) }
            #expect(ascii == text.utf8.allSatisfy { $0 < 0x80 })
        }
    }
}
