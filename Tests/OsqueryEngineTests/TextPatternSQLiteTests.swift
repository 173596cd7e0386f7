import OsqueryEngine
import Testing

/// The SDK's LIKE and GLOB matchers agree with SQLite's operators (issue 22, item 3).
@Suite struct TextPatternSQLiteTests {
    /// A fixed-seed generator (SplitMix64) so a failure reproduces.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func random(_ alphabet: [Character], _ maxLength: Int, _ rng: inout Seeded) -> String {
        String((0..<Int.random(in: 0...maxLength, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
    }

    static func sqlite(_ db: Database, _ text: String, _ op: String, _ pattern: String) throws -> Bool {
        let quote = { (s: String) in "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
        return try db.execute("SELECT \(quote(text)) \(op) \(quote(pattern))")[0, 0] == 1
    }

    @Test func agreesWithSQLiteOnRandomPatterns() throws {
        let db = try makeDatabase([])
        var rng = Seeded(state: 22)
        let likeText: [Character] = ["a", "A", "b", "é", "É", "_", "%"]
        let likePattern: [Character] = ["a", "A", "b", "é", "É", "%", "_", "%"]
        let globText: [Character] = ["a", "b", "A", "-", "]", "[", "^", "c", "*"]
        let globPattern: [Character] = ["a", "b", "A", "*", "?", "[", "]", "^", "-", "c"]
        for _ in 0..<3000 {
            let text = Self.random(likeText, 10, &rng)
            let pattern = Self.random(likePattern, 8, &rng)
            let expected = try Self.sqlite(db, text, "LIKE", pattern)
            #expect(TextPattern(like: pattern).matches(text) == expected, "'\(text)' LIKE '\(pattern)'")
        }
        for _ in 0..<3000 {
            let text = Self.random(globText, 8, &rng)
            let pattern = Self.random(globPattern, 9, &rng)
            let expected = try Self.sqlite(db, text, "GLOB", pattern)
            #expect(TextPattern(glob: pattern).matches(text) == expected, "'\(text)' GLOB '\(pattern)'")
        }
    }
}
