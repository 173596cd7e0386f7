import Foundation
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

@Suite struct ConfigJSONTests {
    func parse(_ text: String) throws(DaemonError) -> ConfigValue {
        try ConfigJSON.parse(text, source: "/etc/osquery/osquery.conf")
    }

    func error(_ text: String) -> String {
        do {
            _ = try parse(text)
            return "no error"
        } catch {
            return error.message
        }
    }

    @Test func valuesKeepOrderPositionsAndTypes() throws {
        let v = try parse(
            """
            {
              "b": 1, "a": -2,
              "big": 18446744073709551615, "huge": 123456789012345678901234,
              "d": 1.5e2, "t": true, "f": false, "n": null,
              "s": "x", "arr": [1, "two", {"k": []}]
            }
            """)
        let members = try #require(v.members)
        #expect(members.map(\.key) == ["b", "a", "big", "huge", "d", "t", "f", "n", "s", "arr"])
        #expect(v["b"]?.kind == .int(1))
        #expect(v["a"]?.kind == .int(-2))
        #expect(v["big"]?.kind == .uint(UInt64.max))
        #expect(v["huge"]?.kind == .double(123456789012345678901234.0))
        #expect(v["d"]?.kind == .double(150))
        #expect(v["t"]?.kind == .bool(true) && v["f"]?.kind == .bool(false) && v["n"]?.isNull == true)
        #expect(v["b"]?.line == 2 && v["b"]?.column == 8)
        #expect(v["big"]?.line == 3)
        #expect(v["arr"]?.elements?.count == 3)
        #expect(v["arr"]?.elements?[2]["k"]?.elements == [])
        #expect(v.line == 1 && v.column == 1)
    }

    @Test func stringEscapesIncludingSurrogatePairs() throws {
        let v = try parse(#"{"s": "q\" b\\ s\/ \b\f\n\r\t \u00e9 \u20AC \ud83d\ude00 end"}"#)
        #expect(v["s"]?.string == "q\" b\\ s/ \u{08}\u{0C}\n\r\t é € 😀 end")
        // Raw UTF-8 passes through.
        #expect(try parse(#"{"s": "日本"}"#)["s"]?.string == "日本")
        #expect(error(#"{"s": "\ud83d"}"#).contains("surrogate pair"))
        #expect(error(#"{"s": "\ud83d\u0041"}"#).contains("surrogate pair"))
        #expect(error(#"{"s": "\ude00"}"#).contains("surrogate pair"))
        #expect(error(#"{"s": "\x41"}"#).contains("invalid escape"))
        #expect(error(#"{"s": "\u12G4"}"#).contains("hex digit"))
        #expect(error("{\"s\": \"a\tb\"}").contains("control character"))
    }

    @Test func commentLinesAreRemovedAndLineNumbersKept() throws {
        let text = """
            # a comment
            {
              // another
                 # indented comment
              "options": {
                "host_identifier": "uuid"
              },
              "schedule": {
                "q": {"query": "SELECT 1", "interval": oops}
              }
            }
            """
        let message = error(text)
        #expect(message.hasPrefix("config /etc/osquery/osquery.conf line 9 column "), "\(message)")
        #expect(message.contains("Error parsing the config JSON"))
        let ok = try parse(text.replacingOccurrences(of: "oops", with: "60"))
        #expect(ok["options"]?["host_identifier"]?.string == "uuid")
        #expect(ok["schedule"]?["q"]?["interval"]?.line == 9)
        // A '#' inside a line is not a comment; '/' alone does not start one.
        #expect(try parse("{\"a\": \"#x // y\"}")["a"]?.string == "#x // y")
        #expect(error("{\n/ \"a\": 1}").contains("line 2"))
    }

    @Test func backslashNewlineJoinsLines() throws {
        let v = try parse("{\"q\": \"SELECT \\\n* FROM t\",\n\"x\":\n1}")
        #expect(v["q"]?.string == "SELECT * FROM t")
        // Lines after a join keep their numbers ("x"'s value is on physical line 4).
        #expect(v["x"]?.line == 4)
        #expect(error("{\"q\": \"a\\\nb\",\n\n\"x\": }").contains("line 4"))
    }

    @Test func strictJSONOnly() {
        #expect(error(#"{"a": 1,}"#).contains("expected a quoted member name"))
        #expect(error(#"{"a": [1,]}"#).contains("invalid value"))
        #expect(error(#"{"a": 1 /* c */}"#).contains("expected ',' or '}'"))
        #expect(error(#"{'a': 1}"#).contains("quoted member name"))
        #expect(error(#"{"a": 01}"#).contains("expected ',' or '}'"))
        #expect(error(#"{"a": NaN}"#).contains("invalid value"))
        #expect(error(#"{"a": -}"#).contains("digits"))
        #expect(error(#"{"a": 1.}"#).contains("decimal point"))
        #expect(error(#"{"a": 1e}"#).contains("exponent"))
        #expect(error(#"{"a": tru}"#).contains("invalid value"))
        #expect(error(#"{"a": 1} {}"#).contains("must not be followed"))
        #expect(error(#"{"a": 1e999}"#).contains("too big"))
    }

    @Test func rootMustBeAnObjectAndNotEmpty() {
        #expect(error("[1, 2]").contains("has to be an object"))
        #expect(error("\"x\"").contains("has to be an object"))
        #expect(error("").contains("document is empty"))
        #expect(error("# only a comment\n// and another\n").contains("document is empty"))
    }

    @Test func truncatedInputsFailWithTheirLine() {
        let full = "{\n  \"schedule\": {\n    \"q\": {\"query\": \"SELECT 1\", \"interval\": 60}\n  }\n}\n"
        let bytes = Array(full.utf8)
        // Every proper prefix is an error (never a crash), naming a line within the text.
        for cut in 0..<(bytes.count - 2) {
            let text = String(decoding: bytes[..<cut], as: UTF8.self)
            let message = error(text)
            #expect(message != "no error", "prefix \(cut)")
            #expect(message.hasPrefix("config /etc/osquery/osquery.conf"), "\(message)")
        }
        #expect(error("{\"a\": \"unterminated").contains("closing quotation mark"))
        #expect(error("{\"a\": [1, 2").contains("line 1"))
    }

    @Test func depthLimitIsOsquerys() throws {
        // 32 nested objects with an empty innermost one: the deepest value is at level 32.
        func nested(_ n: Int, inner: String) -> String {
            String(repeating: "{\"a\":", count: n - 1) + inner + String(repeating: "}", count: n - 1)
        }
        _ = try parse(nested(32, inner: "{}"))
        // One more level (or a scalar inside level 32) is refused.
        #expect(error(nested(33, inner: "{}")).contains("too many nesting levels"))
        #expect(error(nested(32, inner: "{\"x\": 1}")).contains("too many nesting levels"))
        #expect(error(nested(31, inner: "[[1]]")).contains("too many nesting levels"))
        // Hostile depth: an error, not a stack overflow.
        let hostile = String(repeating: "[", count: 200_000)
        #expect(error("{\"a\":" + hostile).contains("too many nesting levels"))
    }

    @Test func sizeLimitCountsTextAfterCommentsAreRemoved() throws {
        let filler = String(repeating: "x", count: 5 * 1024 * 1024)
        let big = "{\"a\": \"\(filler)\"}"
        let message = error(big)
        #expect(message == "config /etc/osquery/osquery.conf: Error parsing the config JSON: the config size exceeds the limit of 4194304 bytes")
        // 5 MiB of comment lines do not count.
        let commentLine = "# " + String(repeating: "c", count: 1000) + "\n"
        let commented = String(repeating: commentLine, count: 5 * 1100) + "{\"a\": 1}"
        #expect(commented.utf8.count > 5 * 1024 * 1024)
        #expect(try parse(commented)["a"]?.kind == .int(1))
    }

    @Test func mutatedConfigsParseOrFailCleanly() {
        let valid = Array(
            """
            # comment
            {"options": {"host_identifier": "uuid", "x": [1, 2.5e3, true, null]},
             "schedule": {"q": {"query": "SELECT \\"a\\" \\u00e9 \\ud83d\\ude00", "interval": 60}},
             // comment
             "packs": {"p": {"queries": {}}, "s": "/nowhere"}}
            """.utf8)
        let alphabet = Array("{}[]\",:\\/#\nu0123456789abcdef-+.eEtrnl \t".utf8)
        // A fixed-seed generator: the same mutations every run.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        var parsed = 0
        var failed = 0
        for _ in 0..<3000 {
            var bytes = valid
            for _ in 0..<(1 + next(4)) {
                let at = next(bytes.count)
                switch next(3) {
                case 0: bytes[at] = alphabet[next(alphabet.count)]
                case 1: bytes.remove(at: at)
                default: bytes.insert(alphabet[next(alphabet.count)], at: at)
                }
            }
            do {
                _ = try ConfigJSON.parse(bytes: bytes, source: "fuzz")
                parsed += 1
            } catch {
                #expect(error.message.hasPrefix("config fuzz"), "\(error.message)")
                failed += 1
            }
        }
        #expect(parsed + failed == 3000)
        #expect(failed > 0)
    }

    @Test func duplicateKeysAreKeptAndLookupFindsTheFirst() throws {
        let v = try parse(#"{"a": 1, "a": 2}"#)
        #expect(v.members?.count == 2)
        #expect(v["a"]?.kind == .int(1))
    }

    @Test func jsonTextRoundTrips() throws {
        let text = #"{"b":[1,-2,1.5,true,null,"q\"\n\u0001"],"a":{"x":18446744073709551615}}"#
        #expect(try parse(text).jsonText == text)
    }

    @Test func conversionsFollowOsquery() throws {
        let v = try parse(#"{"n": 60, "s": "3600", "bad": "1h", "neg": -5, "b": true, "t": "T", "z": 0, "o": {}}"#)
        #expect(v["n"]?.unsignedValue == 60)
        #expect(v["s"]?.unsignedValue == 3600)
        #expect(v["bad"]?.unsignedValue == nil)
        #expect(v["neg"]?.unsignedValue == nil)
        #expect(v["b"]?.boolValue == true && v["t"]?.boolValue == true && v["z"]?.boolValue == false)
        #expect(v["n"]?.boolValue == true && v["o"]?.boolValue == false)
    }
}
