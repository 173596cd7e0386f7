import Foundation
import OsqueryExtension
import OsqueryManager
import OsqueryEngine

/// `sdk-bench profile ROWS REPEATS`: only the Swift table, in this process, `SELECT *` through our
/// core `REPEATS` times, no Python peer. Meant for `valgrind --tool=callgrind`, whose instruction
/// counts per function show where each stage of the pipeline spends (generate and encoding in the
/// SDK, framing and decoding in the core, conversion, SQLite, result rows, the client's decode).
/// With `SDK_BENCH_DICTIONARIES` set, the table's generate returns `[Row]` instead of writing
/// into a `RowWriter`.
func runProfile(rows rowCount: Int, repeats: Int) async throws {
    let socketPath = "/tmp/sdk-bench-profile-\(getpid()).em"
    let flags = Flags()
    try flags.set("extensions_interval", "5")
    try flags.set("thrift_timeout", "600")
    let registry = PluginRegistry()
    let manager = try await ExtensionManager.start(socketPath: socketPath, registry: registry, flags: flags, queryThreads: 1)
    _ = manager
    let client = OsqueryClient(socket: socketPath, callTimeout: .seconds(600))
    let ext = Extension("swift_bench", plugins: [benchTable("swift_bench_rows", rows: rowCount, dictionaries: getenv("SDK_BENCH_DICTIONARIES") != nil)])
    try await ext.start(options: try ExtensionOptions.parse(["--socket", socketPath, "--interval", "5"]))
    for _ in 0..<400 {
        if try await client.extensions().values.contains(where: { $0.name == "swift_bench" }) { break }
        try await Task.sleep(for: .milliseconds(50))
    }
    for _ in 0..<repeats {
        let start = ContinuousClock.now
        let rows = try await client.queryReplyRows("select * from swift_bench_rows")
        let d = ContinuousClock.now - start
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        print("select *: \(rows.count) rows in \(String(format: "%.3f", s)) s, \(Int(Double(rows.count) / s)) rows/s")
    }
    unlink(socketPath)
}

