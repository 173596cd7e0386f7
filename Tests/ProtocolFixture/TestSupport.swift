import Dispatch
import Foundation
package import Testing

/// Runs blocking work on its own thread, never on the cooperative pool: a
/// blocked pool thread (there are only as many as cores) would starve the very
/// server or scheduler the test is waiting for.
package func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Runs a test's CPU-heavy or blocking body on a thread of its own instead of the cooperative
/// pool, still as the test's task (so `#expect` reports to the test): sync tests run on the pool,
/// which has one thread per core, and a few seconds of work there stalls every other suite's
/// servers, watchers and timeouts in this process.
package func onOwnThread<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
    try await withTaskExecutorPreference(OwnThreadExecutor()) { try await body() }
}

/// A suite trait: each of the suite's tests runs on a thread of its own (``onOwnThread``), for
/// suites whose synchronous tests block on child processes, sleeps or long CPU work.
package struct OwnThreadTrait: SuiteTrait, TestTrait, TestScoping {
    package var isRecursive: Bool { true }

    package func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil else { return try await function() }
        try await onOwnThread { try await function() }
    }
}

extension Trait where Self == OwnThreadTrait {
    /// Runs each test on a thread of its own instead of the cooperative pool.
    package static var ownThread: Self { OwnThreadTrait() }
}

/// Runs its jobs on a serial dispatch queue (which draws threads outside the cooperative pool).
final class OwnThreadExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "test.own-thread")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// A fresh directory under /tmp for one test (`/tmp/osq-<tag>-<pid>-<random>`).
package func scratchDirectory(_ tag: String) throws -> String {
    let dir = "/tmp/osq-\(tag)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Polls `condition` every 100 ms for up to `seconds` (a bound, not a timing
/// assertion); true as soon as it holds.
package func waitUntil(_ seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
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
package func sampleDoubles(_ fixed: [Double], count: Int = 30_000) -> [Double] {
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

/// A blocking, connected Unix socket (close-on-exec). Its reads time out after `readTimeout`
/// seconds: a safety net only (a read that never ends fails the test), generous because the
/// full suite can hold a server's loop for seconds on two cores.
package func connectUnix(_ path: String, readTimeout: Int = 60) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
    }
    var tv = timeval(tv_sec: readTimeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard rc == 0 else {
        let code = errno
        close(fd)
        throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
    }
    return fd
}

/// Signals `pid` only while it is still a child of this process whose command name starts with
/// `name`: pids are reused quickly (pid_max 32768), and a stale pid may be another test's process.
package func signalOurChild(_ pid: Int32, named name: String, _ signo: Int32) {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
    else { return }
    let comm = stat[stat.index(after: open)..<close]
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard comm.hasPrefix(name), fields.count > 1, Int32(fields[1]) == getpid() else { return }
    kill(pid, signo)
}

/// Runs `path` with `arguments` to completion off the cooperative pool, `environment` added to
/// ours; returns (exit status, stdout, stderr).
package func runToCompletion(
    _ path: String, _ arguments: [String], environment: [String: String] = [:]
) async throws -> (Int32, String, String) {
    try await offPool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

/// Copies the executable `source` to `destination` (mode 0755) with `cp` in a child process:
/// a copy written by this process holds a write descriptor that a child another test forks
/// meanwhile inherits until it execs, and running the copy then fails with ETXTBSY.
package func copyExecutable(_ source: String, to destination: String) async throws {
    let (status, _, err) = try await runToCompletion("/bin/cp", ["--", source, destination])
    guard status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cp \(source): \(err)"]) }
    chmod(destination, 0o755)
}
