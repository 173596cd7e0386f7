// Rows/s of an extension table written with the Swift SDK vs the same table written with
// PyPI `osquery` (Tests/Peers/python/bench_extension.py), both registered with the same manager.
//
//   swift build -c release --product sdk-bench && .build/release/sdk-bench [rows] [repeats]
//
// Two measurements per table:
//   in process — the Swift table's own cost: generate + encoding rows (no socket);
//   wire  — the core's side of one `call(table, generate)` on the extension's socket (what the
//           core does for every query), decode included;
//   query — `SELECT * FROM <table>` through our core (OsqueryManager's ExtensionManager with
//           the built-in tables), end to end: client -> core -> extension -> SQLite -> client.
import Foundation
import OsqueryExtension
import OsqueryManager
import OsqueryEngine
import OsqueryTables

let args = CommandLine.arguments
let rowCount = args.count > 1 ? Int(args[1]) ?? 100_000 : 100_000
let repeats = args.count > 2 ? Int(args[2]) ?? 5 : 5

let swiftTable = Table("swift_bench_rows", columns: [.text("a"), .bigint("b"), .double("c"), .text("d")]) { _ in
    var rows: [Row] = []
    rows.reserveCapacity(rowCount)
    for i in 0..<rowCount {
        rows.append(["a": "row\(i)", "b": i, "c": Double(i) * 0.5, "d": "constant"])
    }
    return rows
}

func measure(_ label: String, _ body: () async throws -> Int) async throws {
    var best = Double.infinity
    var rows = 0
    for _ in 0..<repeats {
        let start = ContinuousClock.now
        rows = try await body()
        let d = ContinuousClock.now - start
        best = min(best, Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }
    let rate = Double(rows) / best
    print(String(format: "%-34@ %9d rows  best %8.3f s  %12.0f rows/s", label as NSString, rows, best, rate))
}

let socketPath = "/tmp/sdk-bench-\(getpid()).em"
let flags = Flags()
try flags.set("extensions_interval", "5")
try flags.set("thrift_timeout", "600")
let registry = PluginRegistry()
BuiltinTables.register(into: registry, flags: flags)
let manager = try await ExtensionManager.start(socketPath: socketPath, registry: registry, flags: flags, queryThreads: 2)
let client = OsqueryClient(socket: socketPath, callTimeout: .seconds(600))
let ext = Extension("swift_bench", plugins: [swiftTable])
try await ext.start(options: try ExtensionOptions.parse(["--socket", socketPath, "--interval", "5"]))

func waitForExtension(named name: String) async throws -> Int64 {
    for _ in 0..<400 {
        if let found = try await client.extensions().values.first(where: { $0.name == name }) { return found.uuid }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw PluginError("\(name) did not register")
}

var repo = URL(fileURLWithPath: #filePath)
for _ in 0..<3 { repo.deleteLastPathComponent() }
let python = repo.path + "/.venv/bin/python3"
let script = repo.path + "/Tests/Peers/python/bench_extension.py"
let py = Process()
py.executableURL = URL(fileURLWithPath: python)
py.arguments = [script, "--socket", socketPath, "--timeout", "5", "--interval", "5"]
py.environment = ProcessInfo.processInfo.environment.merging(["BENCH_ROWS": String(rowCount)]) { $1 }
py.standardError = FileHandle.nullDevice
try py.run()
let pyUUID = try await waitForExtension(named: "py_bench")

print("rows per generate: \(rowCount), best of \(repeats)")
func wire(_ uuid: Int64, _ table: String) async throws -> Int {
    let ext = ExtensionClient(path: "\(socketPath).\(uuid)", options: RPCClientOptions(callTimeout: .seconds(600)))
    defer { ext.close() }
    let r = try await ext.call(registry: "table", item: ThriftString(table), request: ["action": "generate", "context": "{}"])
    return r.response.count
}
func query(_ table: String) async throws -> Int {
    try await client.queryRows("select * from \(table)").count
}
try await measure("Swift SDK  in process (no wire)", {
    try await swiftTable.handle(PluginRequest(["action": "generate", "context": "{}"])).response.count
})
try await measure("Swift SDK  wire  (generate call)", { try await wire(ext.uuid, "swift_bench_rows") })
try await measure("PyPI osquery wire (generate call)", { try await wire(pyUUID, "py_bench_rows") })
try await measure("Swift SDK  query (select *)", { try await query("swift_bench_rows") })
try await measure("PyPI osquery query (select *)", { try await query("py_bench_rows") })

// Stop the Python extension, then leave without a graceful drain: the figures are printed.
kill(py.processIdentifier, SIGKILL)
py.waitUntilExit()
exit(0)
