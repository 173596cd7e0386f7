import Testing
import OsqueryVocabulary

/// LIKE and GLOB matching (issue 22, item 3). `TextPatternSQLiteTests` (OsqueryEngineTests)
/// checks the results against SQLite's own operators.
@Suite struct TextPatternTests {
    // Backtracking over every split of the text takes C(60, 12) ≈ 1.4e12 tries here: the test
    // finishing at all is the proof that matching is not exponential.
    @Test func adversarialPatternsFinish() {
        let aa = String(repeating: "a", count: 60)
        let like = String(repeating: "%a", count: 12) + "%b"
        let glob = String(repeating: "*a", count: 12) + "*b"
        #expect(!TextPattern(like: like).matches(aa))
        #expect(TextPattern(like: like).matches(aa + "b"))
        #expect(!TextPattern(glob: glob).matches(aa))
        #expect(TextPattern(glob: glob).matches(aa + "b"))
        #expect(!TextPattern(like: String(repeating: "%_", count: 30) + "b").matches(aa))
        #expect(!TextPattern(glob: String(repeating: "*[a-z]", count: 30) + "b").matches(aa))
        #expect(!TextPattern(like: "%a%a%a%a%a%a%a%a%b").matches(String(repeating: "a", count: 40)))
    }

    @Test func likeSemantics() {
        #expect(TextPattern(like: "").matches(""))
        #expect(!TextPattern(like: "").matches("a"))
        #expect(TextPattern(like: "%").matches(""))
        #expect(TextPattern(like: "A_c%").matches("abcdef"))
        #expect(TextPattern(like: "%É%").matches("xÉy"))
        #expect(!TextPattern(like: "%é%").matches("xÉy"))  // SQLite folds ASCII only
        #expect(TextPattern(like: "_").matches("é"))
        #expect(!TextPattern(like: "a%b").matches("ab_c"))
    }

    @Test func globSemantics() {
        #expect(TextPattern(glob: "[]a]*").matches("]x"))
        #expect(TextPattern(glob: "[^]a]").matches("b"))
        #expect(TextPattern(glob: "[a-]").matches("-"))
        #expect(TextPattern(glob: "[-a]").matches("-"))
        #expect(!TextPattern(glob: "[a-c").matches("b"))
        #expect(!TextPattern(glob: "A*").matches("abc"))
        #expect(TextPattern(glob: "?*[0-9]").matches("x7"))
    }
}
