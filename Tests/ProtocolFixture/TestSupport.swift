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
