// Rows/s of an extension table written with the Swift SDK vs the same table written with
// PyPI `osquery` (Tests/Peers/python/bench_extension.py), both registered with the same manager.
//
//   sdk-bench [rows] [repeats]              the table below (best of `repeats`)
//   sdk-bench --json [rows] [rounds]        what Benchmarks/run.sh reads: both extensions in their
//                                           own processes (and the `[Row]` twin), `SELECT *` through
//                                           our core alternately (one warm-up each), one JSON line
//   sdk-bench extension NAME ROWS ARGS...   only an extension `NAME` with table `NAME_rows`
//                                           (ARGS: --socket S --timeout T --interval I ...)
//   sdk-bench dictionary-extension NAME ROWS ARGS...
//                                           the same table with a generate returning `[Row]`
//   sdk-bench profile ROWS REPEATS          the Swift table alone, in this process (Profile.swift)
//
// Measurements of the table mode:
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

/// The benchmark table: columns a TEXT, b BIGINT, c DOUBLE, d TEXT, `rowCount` rows (the Python
/// twin in bench_extension.py produces the same values). Its generate writes each row into the
/// reply (`RowWriter`); `dictionaries` gives the same table with a generate that returns `[Row]`
/// (a dictionary literal per row), the other way the SDK offers.
func benchTable(_ name: String, rows rowCount: Int, dictionaries: Bool = false) -> Table {
    let columns: [Column] = [.text("a"), .bigint("b"), .double("c"), .text("d")]
    if dictionaries {
        return Table(name, columns: columns) { _ in
            var rows: [Row] = []
            rows.reserveCapacity(rowCount)
            for i in 0..<rowCount {
                rows.append(["a": "row\(i)", "b": i, "c": Double(i) * 0.5, "d": "constant"])
            }
            return rows
        }
    }
    return Table(name, columns: columns) { _, rows in
        for i in 0..<rowCount {
            rows.add("row\(i)", i, Double(i) * 0.5, "constant")
        }
    }
}

// `sdk-bench extension NAME ROWS ARGS...`: an extension process like any SDK-built one.
// `sdk-bench dictionary-extension NAME ROWS ARGS...`: the same with the `[Row]` generate.
if args.count >= 4, args[1] == "extension" || args[1] == "dictionary-extension", let rows = Int(args[3]), rows >= 0 {
    let name = args[2]
    let ext = Extension(name, plugins: [benchTable("\(name)_rows", rows: rows, dictionaries: args[1] == "dictionary-extension")])
    do {
        try await ext.run(options: try ExtensionOptions.parse(Array(args.dropFirst(4))), signals: true)
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("sdk-bench extension: \(error)\n".utf8))
        exit(1)
    }
}

// `sdk-bench profile ROWS REPEATS`: Profile.swift.
if args.count >= 2, args[1] == "profile" {
    try await runProfile(rows: args.count > 2 ? Int(args[2]) ?? 100_000 : 100_000, repeats: args.count > 3 ? Int(args[3]) ?? 3 : 3)
    exit(0)
}

let json = args.count > 1 && args[1] == "--json"
let positional = Array(args.dropFirst(json ? 2 : 1))
let rowCount = positional.count > 0 ? Int(positional[0]) ?? 100_000 : 100_000
let repeats = positional.count > 1 ? Int(positional[1]) ?? 5 : 5

let socketPath = "/tmp/sdk-bench-\(getpid()).em"
let flags = Flags()
try flags.set("extensions_interval", "5")
try flags.set("thrift_timeout", "600")
let registry = PluginRegistry()
BuiltinTables.register(into: registry, flags: flags)
let manager = try await ExtensionManager.start(socketPath: socketPath, registry: registry, flags: flags, queryThreads: 2)
let client = OsqueryClient(socket: socketPath, callTimeout: .seconds(600))

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

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

/// The rows as the client receives them (`ReplyRows`: checked, indexed, strings built when read),
/// so the figure is the extension's and the core's work; `swift_stringmap_rows_per_s` adds the
/// client's decoding of every cell into `StringMap`s (`queryRows`).
func query(_ table: String) async throws -> Int {
    try await client.queryReplyRows("select * from \(table)").count
}

if json {
    // Both extensions in their own processes, like any deployment.
    let swiftExt = Process()
    swiftExt.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    swiftExt.arguments = ["extension", "swift_bench", String(rowCount), "--socket", socketPath, "--timeout", "5", "--interval", "5"]
    try swiftExt.run()
    let dictExt = Process()
    dictExt.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    dictExt.arguments = ["dictionary-extension", "swift_dict_bench", String(rowCount), "--socket", socketPath, "--timeout", "5", "--interval", "5"]
    try dictExt.run()
    _ = try await waitForExtension(named: "swift_bench")
    _ = try await waitForExtension(named: "swift_dict_bench")
    _ = try await waitForExtension(named: "py_bench")
    func timed(_ table: String, maps: Bool = false) async throws -> Double {
        let start = ContinuousClock.now
        let n = maps ? try await client.queryRows("select * from \(table)").count : try await query(table)
        guard n == rowCount else { throw PluginError("\(table) returned \(n) rows, expected \(rowCount)") }
        return Double(n) / seconds(ContinuousClock.now - start)
    }
    _ = try await timed("swift_bench_rows")
    _ = try await timed("swift_dict_bench_rows")
    _ = try await timed("py_bench_rows")
    var ours: [Double] = []
    var theirs: [Double] = []
    var oursMaps: [Double] = []
    var oursDicts: [Double] = []
    for _ in 0..<repeats {
        ours.append(try await timed("swift_bench_rows"))
        theirs.append(try await timed("py_bench_rows"))
        oursMaps.append(try await timed("swift_bench_rows", maps: true))
        oursDicts.append(try await timed("swift_dict_bench_rows"))
    }
    func list(_ xs: [Double]) -> String { "[" + xs.map { String(format: "%.1f", $0) }.joined(separator: ",") + "]" }
    print("{\"bench\":\"extension\",\"rows\":\(rowCount),\"swift_rows_per_s\":\(list(ours)),\"python_rows_per_s\":\(list(theirs)),\"swift_stringmap_rows_per_s\":\(list(oursMaps)),\"swift_dictionary_rows_per_s\":\(list(oursDicts))}")
    kill(swiftExt.processIdentifier, SIGKILL)
    kill(dictExt.processIdentifier, SIGKILL)
    dictExt.waitUntilExit()
    kill(py.processIdentifier, SIGKILL)
    swiftExt.waitUntilExit()
    py.waitUntilExit()
    unlink(socketPath)
    exit(0)
}

let swiftTable = benchTable("swift_bench_rows", rows: rowCount)
let ext = Extension("swift_bench", plugins: [swiftTable])
try await ext.start(options: try ExtensionOptions.parse(["--socket", socketPath, "--interval", "5"]))
let pyUUID = try await waitForExtension(named: "py_bench")

func measure(_ label: String, _ body: () async throws -> Int) async throws {
    var best = Double.infinity
    var rows = 0
    for _ in 0..<repeats {
        let start = ContinuousClock.now
        rows = try await body()
        best = min(best, seconds(ContinuousClock.now - start))
    }
    let rate = Double(rows) / best
    print(String(format: "%-34@ %9d rows  best %8.3f s  %12.0f rows/s", label as NSString, rows, best, rate))
}

print("rows per generate: \(rowCount), best of \(repeats)")
func wire(_ uuid: Int64, _ table: String) async throws -> Int {
    let ext = ExtensionClient(path: "\(socketPath).\(uuid)", options: RPCClientOptions(callTimeout: .seconds(600)))
    defer { ext.close() }
    let r = try await ext.call(registry: "table", item: ThriftString(table), request: ["action": "generate", "context": "{}"])
    return r.response.count
}
try await measure("Swift SDK  in process (no wire)", {
    try await swiftTable.wireResponse(PluginRequest(["action": "generate", "context": "{}"])).response.count
})
try await measure("Swift SDK  wire  (generate call)", { try await wire(ext.uuid, "swift_bench_rows") })
try await measure("PyPI osquery wire (generate call)", { try await wire(pyUUID, "py_bench_rows") })
try await measure("Swift SDK  query (select *)", { try await query("swift_bench_rows") })
try await measure("PyPI osquery query (select *)", { try await query("py_bench_rows") })
// Where the query's time goes: without the reply to the client, and the client's decode alone.
try await measure("Swift SDK  query (count(*))", {
    Int(try await client.queryRows("select count(*) as n from swift_bench_rows").first?["n"]?.string ?? "0") ?? 0
})

// Stop the Python extension, then leave without a graceful drain: the figures are printed.
kill(py.processIdentifier, SIGKILL)
py.waitUntilExit()
exit(0)
