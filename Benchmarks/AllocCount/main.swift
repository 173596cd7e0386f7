// Heap allocations per 100 000 rows on the row paths (the SDK's RowWriter, the core's row
// converter, the core's query encoder), counted by CAllocCounter's malloc
// (this process alone links it). Timings are noisy on a 2-core machine; counts are not, so a
// per-row allocation added to any of these paths shows here as +100 000 and fails
// AllocationCountTests, which runs this executable. The extension runs in this process, so
// one count covers both sides of the socket.
//
//   alloc-count            one JSON line per path: {"path":..., "allocations_per_100k_rows":...}
//
// Each figure is marginal: allocations at 100 000 rows minus those at 50 000, doubled, so the
// fixed cost of a call (connections, the statement, the reply's buffers) drops out and what is
// left is what grows with the rows.
import CAllocCounter
import Synchronization
import Foundation
import OsqueryExtension
import OsqueryManager
import OsqueryEngine

/// The benchmark table of sdk-bench: a TEXT, b BIGINT, c DOUBLE, d TEXT, written with `RowWriter`.
/// The row count is read at generate time, so one registered table serves both sizes.
let rowCount = Mutex(0)
let table = Table("alloc_rows", columns: [.text("a"), .bigint("b"), .double("c"), .text("d")]) { _, rows in
    let n = rowCount.withLock { $0 }
    for i in 0..<n {
        rows.add("row\(i)", i, Double(i) * 0.5, "constant")
    }
}

let socketPath = "/tmp/alloc-count-\(getpid()).em"
let flags = Flags()
// No health checks or liveness pings during a measurement.
try flags.set("extensions_interval", "3600")
try flags.set("thrift_timeout", "600")
let manager = try await ExtensionManager.start(socketPath: socketPath, registry: PluginRegistry(), flags: flags, queryThreads: 1)
let client = OsqueryClient(socket: socketPath, callTimeout: .seconds(600))
let ext = Extension("alloc_count", plugins: [table])
try await ext.start(options: try ExtensionOptions.parse(["--socket", socketPath, "--interval", "3600"]))
for _ in 0..<400 {
    if try await client.extensions().values.contains(where: { $0.name == "alloc_count" }) { break }
    try await Task.sleep(for: .milliseconds(50))
}

/// Allocations of one run of `body` over `rows` rows (the second of two: the first warms caches).
func allocations(rows: Int, _ body: () async throws -> Int) async throws -> UInt64 {
    rowCount.withLock { $0 = rows }
    var counted: UInt64 = 0
    for _ in 0..<2 {
        let before = alloc_counter_allocations()
        let n = try await body()
        counted = alloc_counter_allocations() - before
        guard n == rows else { throw PluginError("expected \(rows) rows, got \(n)") }
    }
    return counted
}

let paths: [(String, () async throws -> Int)] = [
    // The extension's generate into a RowWriter and its reply encoding, the socket, the
    // core's reply framing and row converter, SQLite's scan (the count is one row back).
    ("core_count_through_extension", {
        Int(try await client.queryRows("select count(*) as n from alloc_rows").first?["n"]?.string ?? "0") ?? 0
    }),
    // + the core's query encoder and the client's reply index.
    ("core_select_star_through_extension", {
        try await client.queryReplyRows("select * from alloc_rows").count
    }),
]
for (name, body) in paths {
    let half = try await allocations(rows: 50_000, body)
    let full = try await allocations(rows: 100_000, body)
    let marginal = (Int64(full) - Int64(half)) * 2
    print("{\"path\":\"\(name)\",\"allocations_per_100k_rows\":\(marginal),\"allocations_at_100k\":\(full)}")
}

/// Allocations per call of a whole round trip through the core's socket (client and server
/// both, as this process is both), over `calls` calls after a warm-up.
func perCall(_ calls: Int, _ body: () async throws -> Void) async throws -> Double {
    for _ in 0..<200 { try await body() }
    let before = alloc_counter_allocations()
    for _ in 0..<calls { try await body() }
    return Double(alloc_counter_allocations() - before) / Double(calls)
}
// The client's default path (on the caller's thread) and the event loop's, side by side. The
// direct client's budget is generous so that a loaded machine (the test suite runs this) does
// not hand calls to the event loop and change what is counted.
let directClient = OsqueryClient(socket: socketPath, callTimeout: .seconds(600), syncBudget: .seconds(5))
let loopClient = ExtensionManagerClient(path: socketPath, options: RPCClientOptions(syncBudget: .zero))
let calls: [(String, () async throws -> Void)] = [
    ("ping", { _ = try await directClient.ping() }),
    ("ping_event_loop", { _ = try await loopClient.ping() }),
    ("query_one_row", { _ = try await directClient.queryRows("select 1 as n") }),
]
for (name, body) in calls {
    let n = try await perCall(2_000, body)
    print("{\"call\":\"\(name)\",\"allocations_per_call\":\(String(format: "%.1f", n))}")
}
unlink(socketPath)
exit(0)
