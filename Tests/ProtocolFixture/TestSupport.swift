import Foundation

/// Runs blocking work on its own thread, never on the cooperative pool: a
/// blocked pool thread (there are only as many as cores) would starve the very
/// server or scheduler the test is waiting for.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// A fresh directory under /tmp for one test (`/tmp/osq-<tag>-<pid>-<random>`).
public func scratchDirectory(_ tag: String) throws -> String {
    let dir = "/tmp/osq-\(tag)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Polls `condition` every 100 ms for up to `seconds` (a bound, not a timing
/// assertion); true as soon as it holds.
public func waitUntil(_ seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}

/// Doubles for formatting tests: `fixed` first, then for each of `count` rounds a decimal of up
/// to 15 digits at a random scale (what tables hold; the fast paths' domain) and a random bit
/// pattern (anything at all, NaN and infinities included).
public func sampleDoubles(_ fixed: [Double], count: Int = 30_000) -> [Double] {
    var values = fixed
    var rng = SystemRandomNumberGenerator()
    let scales: [Double] = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e8, 1e12, 1e17]
    for _ in 0..<count {
        let m = Double(UInt64.random(in: 1...999_999_999_999_999, using: &rng) >> UInt64.random(in: 0...50, using: &rng))
        values.append((Bool.random(using: &rng) ? 1 : -1) * m / scales[Int.random(in: 0..<scales.count, using: &rng)])
        values.append(Double(bitPattern: rng.next()))
    }
    return values
}
