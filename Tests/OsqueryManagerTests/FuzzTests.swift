import OsqueryFuzz
import Testing

/// The wire fuzzer for a bounded run (scripts/fuzz.sh runs a long one): the framer, the codec,
/// clients' reply decoding and registerExtension through the manager, with a fixed seed.
@Suite struct FuzzTests {
    @Test func twentyThousandInputsFindNothing() async {
        let fuzzer = WireFuzzer(seed: 20_141)
        var findings: [String] = []
        for index in 0..<20_000 {
            // Most inputs never suspend: yield so the suite's other tasks share the pool meanwhile.
            if index % 64 == 0 { await Task.yield() }
            if let finding = await fuzzer.run(fuzzer.input(index)) { findings.append("input \(index): \(finding)") }
        }
        #expect(findings.isEmpty, "\(findings.prefix(5))")
    }
}
