import Testing
@testable import OsqueryVocabulary

@Suite struct JSONWritingTests {
    /// osquery writes JSON with rapidjson, whose escape table gives backspace, tab, newline,
    /// form feed and carriage return their short escapes and every other control character
    /// `\u00XX` in upper-case hex; DEL, `/` and non-ASCII text stay as they are.
    @Test func escapesAsRapidJSON() {
        let text = "a\u{08}b\u{0C}c\n\r\t\u{01}\u{1F}\u{0B}\u{7F}\"\\/é"
        let expected = #""a\bb\fc\n\r\t\u0001\u001F\u000B"# + "\u{7F}" + #"\"\\/é""#
        #expect(JSON.quoted(text) == expected)
        // The SDK's value type writes strings with the same escaper.
        #expect(JSONValue.string(text).serialized == expected)
        #expect(JSONValue.object([(text, .null)]).serialized == "{\(expected):null}")
        #expect(JSON.quoted("plain") == #""plain""#)
    }

    @Test func readsBackWhatItWrites() throws {
        var all = ""
        for b in UInt8(0)..<0x80 { all.unicodeScalars.append(Unicode.Scalar(b)) }
        all += "é😀"
        #expect(try JSONValue.parse(JSON.quoted(all)) == .string(all))
    }
}

@Suite struct JSONReadingTests {
    @Test func parsesValuesInOrder() throws {
        let v = try JSONValue.parse(#" {"a": [1, -2.5e3, true, null], "b": "x\u00e9\ud83d\ude00", "a": 18446744073709551615} "#)
        #expect(v.members?.map(\.0) == ["a", "b", "a"])
        #expect(v["a"]?.uint64 == UInt64.max)  // the last duplicate wins for look-ups
        #expect(v.members?[0].1 == .array([.number("1"), .number("-2.5e3"), .bool(true), .null]))
        #expect(v["b"] == .string("xé😀"))
    }

    @Test(arguments: [
        ("", "the document is empty"), ("{} 1", "the document root must not be followed by other values"),
        ("[1,]", "invalid value"), ("{\"a\":1,}", "expected a quoted member name"),
        ("\"a\u{01}\"", "invalid control character in string"), ("\"\\x\"", "invalid escape character in string"),
        ("\"\\ud800\"", "the surrogate pair in string is invalid"), ("01", "the document root must not be followed by other values"),
        ("-", "a number needs digits after '-'"), ("1e999", "number too big to be stored in double"),
        ("\"abc", "missing a closing quotation mark in string"), ("[1 2]", "expected ',' or ']' after an array element"),
    ])
    func refusesWhatRapidJSONRefuses(text: String, reason: String) {
        #expect(throws: JSONError.self) { try JSONValue.parse(text) }
        do {
            _ = try JSONValue.parse(text)
        } catch {
            #expect(error.reason == reason)
        }
    }

    @Test func nestingIsBounded() throws {
        let ok = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        #expect(throws: Never.self) { try JSONValue.parse(ok) }
        let deep = String(repeating: "[", count: 100_000)
        do {
            _ = try JSONValue.parse(deep)
            Issue.record("a 100000-deep document parsed")
        } catch {
            #expect(error.isDepthLimit && error.offset == 128)
        }
    }

    @Test func positionsAreLineAndColumn() {
        do {
            _ = try JSONValue.parse("{\n  \"a\": tru\n}")
        } catch {
            #expect(error.position == JSONPosition(offset: 9, line: 1, column: 7))
        }
    }

    @Test func flatStringObjects() {
        func pairs(_ text: String) -> [String]? {
            var reader = JSONReader(bytes: Array(text.utf8), maxDepth: 1)
            return reader.flatStringObject()?.map { "\($0)=\($1)" }
        }
        #expect(pairs(#"{"b":"1","a":"x\"\n\u0001é","b":""}"#) == ["b=1", "a=x\"\n\u{01}é", "b="])
        #expect(pairs(" { } ") == [])
        for bad in [#"{"a":1}"#, #"{"a":{"b":"c"}}"#, #"{"a":"b",}"#, #"{"a":"b"} x"#, "[]", "", #"{"a":"b""#] {
            #expect(pairs(bad) == nil, "\(bad)")
        }
    }
}
