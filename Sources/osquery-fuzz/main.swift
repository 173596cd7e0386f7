// Runs the wire fuzzer (OsqueryFuzz) for a number of inputs and prints what it found.
//
//   osquery-fuzz [--seed S] [--count N] [--from I] [--verbose]
//
// Input i of seed S is the same on every run: a finding is replayed with --from i --count 1.
// --verbose prints each input's index before running it, so a crash names its input.
import Foundation
import OsqueryFuzz

var seed: UInt64 = 1
var count = 1_000_000
var from = 0
var verbose = false
var args = CommandLine.arguments.dropFirst()
while let arg = args.popFirst() {
    switch arg {
    case "--seed": seed = UInt64(args.popFirst() ?? "") ?? seed
    case "--count": count = Int(args.popFirst() ?? "") ?? count
    case "--from": from = Int(args.popFirst() ?? "") ?? from
    case "--verbose": verbose = true
    default:
        FileHandle.standardError.write(Data("usage: osquery-fuzz [--seed S] [--count N] [--from I] [--verbose]\n".utf8))
        exit(2)
    }
}

let fuzzer = WireFuzzer(seed: seed)
let clock = ContinuousClock()
let start = clock.now
var findings = 0
for index in from..<(from + count) {
    if verbose { print("input \(index)") }
    let bytes = fuzzer.input(index)
    if let finding = await fuzzer.run(bytes) {
        findings += 1
        let hex = bytes.prefix(512).map { String(format: "%02x", $0) }.joined()
        print("FINDING seed \(seed) input \(index): \(finding)\n  bytes (\(bytes.count)): \(hex)")
    }
    if !verbose, (index - from + 1) % 100_000 == 0 {
        print("\(index - from + 1) inputs, \(findings) findings, \(clock.now - start)")
    }
}
let elapsed = clock.now - start
print(
    "osquery-fuzz: seed \(seed), inputs \(count) (from \(from)), findings \(findings), time \(elapsed); "
        + "\(fuzzer.framed) whole messages, \(fuzzer.registered) registrations accepted, "
        + "\(fuzzer.rowReplies) replies' rows decoded both ways")
exit(findings == 0 ? 0 : 1)
