// Wire benchmarks, side by side with libthrift (C++) built from the same IDL.
//   swift run -c release wire-bench            (or scripts/bench-wire.sh)
// Rows: ping round trip vs a raw Unix-socket ping-pong; query() of 1000 rows x 6
// columns (rows/s) served by us vs by libthrift to the same C++ client; codec
// encode+decode of that reply in MB/s. Each pair runs alternately for several
// rounds after a warm-up; the table shows medians and the ratio of medians.
// `--json` prints every sample as one JSON line instead (what Benchmarks/run.sh reads).
import Foundation
import OsqueryProtocol
import ProtocolFixture
import ThriftCodec

let arguments = CommandLine.arguments
let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
let peers = URL(fileURLWithPath: ProcessInfo.processInfo.environment["OSQ_PEERS_DIR"] ?? repo.appendingPathComponent(".build-peers").path)

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("wire-bench: \(message)\n".utf8))
    exit(1)
}

// `wire-bench serve PATH`: our fixture server, in its own process like a real core.
if arguments.count == 3, arguments[1] == "serve" {
    let path = arguments[2]
    let server = try await RPCServer.start(path: path, service: .manager(FixtureManager()), limits: .default)
    FileHandle.standardOutput.write(Data("READY\n".utf8))
    await server.waitUntilStopped()
    exit(0)
}

// `wire-bench ping SOCKET N`: only our client's ping loop, for strace/perf.
if arguments.count == 4, arguments[1] == "ping", let n = Int(arguments[3]) {
    let client = ExtensionManagerClient(path: arguments[2])
    let clock = ContinuousClock()
    let start = clock.now
    for _ in 0..<n { _ = try await client.ping() }
    print("\((clock.now - start) / n)")
    exit(0)
}

// `wire-bench profile-codec N`: only the Swift codec loop, for callgrind/perf.
if arguments.count == 3, arguments[1] == "profile-codec", let n = Int(arguments[2]) {
    let reply = ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: fixtureRows(1000))
    var total = 0
    for _ in 0..<n {
        var w = ThriftWriter(reservingCapacity: 128 * 1024)
        reply.write(to: &w)
        total &+= try ThriftReader.read(w.bytes) { try ExtensionResponse(from: &$0) }.response.count
    }
    print(total)
    exit(0)
}

func option(_ name: String, _ fallback: Int) -> Int {
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count, let v = Int(arguments[i + 1]) else {
        return fallback
    }
    return v
}
let quick = arguments.contains("--quick")
let rounds = option("--rounds", quick ? 3 : 7)
let pings = option("--pings", quick ? 5_000 : 20_000)
let queries = option("--queries", quick ? 50 : 200)
let codecOps = option("--codec", quick ? 100 : 400)
let pin = !arguments.contains("--no-pin")

// Cross-CPU wake-ups cost ~100 µs on small VMs and would swamp every figure, so
// by default the whole run (this process, its threads, every child) shares CPU 0.
if pin, ProcessInfo.processInfo.environment["OSQ_BENCH_PINNED"] == nil {
    setenv("OSQ_BENCH_PINNED", "1", 1)
    let argv = ["taskset", "-c", "0"] + arguments
    let cArgs = argv.map { strdup($0) } + [nil]
    execvp("taskset", cArgs)
    fail("could not exec taskset (util-linux); run with --no-pin")
}

for tool in ["cpp/fixture_peer", "raw_pingpong"] where !FileManager.default.fileExists(atPath: peers.appendingPathComponent(tool).path) {
    fail("\(peers.appendingPathComponent(tool).path) is missing: run scripts/build-peers.sh")
}

/// A child process that prints READY once it serves.
final class Child {
    let process = Process()
    init(_ executable: String, _ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("READY") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { fail("\(executable) exited before READY") }
            seen += chunk
        }
    }
    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

/// Runs a peer benchmark mode and returns its JSON line.
func runJSON(_ executable: String, _ args: [String]) -> [String: Any] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    do { try p.run() } catch { fail("cannot run \(executable): \(error)") }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0,
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
        let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    else { fail("\(executable) \(args.joined(separator: " ")) failed: \(String(decoding: data, as: UTF8.self))") }
    return json
}

func number(_ json: [String: Any], _ key: String) -> Double {
    guard let value = (json[key] as? NSNumber)?.doubleValue else { fail("missing \(key) in \(json)") }
    return value
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

let cpp = peers.appendingPathComponent("cpp/fixture_peer").path
let raw = peers.appendingPathComponent("raw_pingpong").path
let me = URL(fileURLWithPath: CommandLine.arguments[0]).path
let tag = "\(getpid())"
let swiftSock = "/tmp/osqb-swift-\(tag).em"
let cppSock = "/tmp/osqb-cpp-\(tag).em"

let swiftServer = try Child(me, ["serve", swiftSock])
let cppServer = try Child(cpp, ["server", cppSock])
defer {
    swiftServer.stop()
    cppServer.stop()
}

let client = ExtensionManagerClient(path: swiftSock)
// Warm-up: connections, allocator, caches.
for _ in 0..<1000 { _ = try await client.ping() }
_ = try await client.query("rows:1000")

@MainActor func swiftPingNs() async throws -> Double {
    let clock = ContinuousClock()
    let start = clock.now
    for _ in 0..<pings { _ = try await client.ping() }
    let d = clock.now - start
    return Double(d.components.seconds) * 1e9 / Double(pings) + Double(d.components.attoseconds) / 1e9 / Double(pings)
}

func rawPingNs() throws -> Double {
    let sock = "/tmp/osqb-raw-\(tag)-\(UInt32.random(in: 0...UInt32.max)).em"
    let server = try Child(raw, ["server", sock])
    defer { server.stop(); unlink(sock) }
    return number(runJSON(raw, ["client", sock, String(pings)]), "ns_per_op")
}

let rows = fixtureRows(1000)
let reply = ExtensionResponse(status: ExtensionStatus(code: 0, message: "OK"), response: rows)
var codecBytes = 0

@MainActor func swiftCodecMBps() throws -> Double {
    let clock = ContinuousClock()
    let start = clock.now
    var checksum = 0
    for _ in 0..<codecOps {
        var w = ThriftWriter(reservingCapacity: 128 * 1024)
        reply.write(to: &w)
        codecBytes = w.bytes.count
        let back = try ThriftReader.read(w.bytes) { try ExtensionResponse(from: &$0) }
        checksum &+= back.response.count
    }
    let d = clock.now - start
    precondition(checksum == codecOps * 1000)
    let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    return Double(codecBytes * codecOps) / seconds / 1e6
}

var samples: [String: [Double]] = [:]
@MainActor func record(_ key: String, _ value: Double) { samples[key, default: []].append(value) }

for round in 1...rounds {
    FileHandle.standardError.write(Data("round \(round)/\(rounds)\n".utf8))
    record("raw ping", try rawPingNs())
    record("swift→swift ping", try await swiftPingNs())
    record("c++→swift ping", number(runJSON(cpp, ["bench-ping", swiftSock, String(pings)]), "ns_per_op"))
    record("c++→c++ ping", number(runJSON(cpp, ["bench-ping", cppSock, String(pings)]), "ns_per_op"))
    record("c++←swift rows/s", number(runJSON(cpp, ["bench-query", swiftSock, "rows:1000", String(queries)]), "rows_per_s"))
    record("c++←c++ rows/s", number(runJSON(cpp, ["bench-query", cppSock, "rows:1000", String(queries)]), "rows_per_s"))
    record("swift codec MB/s", try swiftCodecMBps())
    let cppCodec = runJSON(cpp, ["bench-codec", String(codecOps)])
    record("c++ codec MB/s", number(cppCodec, "mb_per_s"))
    if Int(number(cppCodec, "bytes_per_op")) != codecBytes {
        fail("codec byte counts differ: swift \(codecBytes), c++ \(number(cppCodec, "bytes_per_op"))")
    }
}

if arguments.contains("--json") {
    let fields = samples.keys.sorted().map { key in
        "\"\(key)\":[" + samples[key]!.map { String(format: "%.1f", $0) }.joined(separator: ",") + "]"
    }
    print("{\"bench\":\"wire\",\"pinned\":\(pin),\"codec_bytes\":\(codecBytes)," + fields.joined(separator: ",") + "}")
    client.close()
    // exit() skips the top-level defer: stop the servers here, or they outlive us holding our stdio.
    swiftServer.stop()
    cppServer.stop()
    unlink(swiftSock)
    unlink(cppSock)
    exit(0)
}

@MainActor func m(_ key: String) -> Double { median(samples[key]!) }
func fmt(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

let cores = ProcessInfo.processInfo.activeProcessorCount
let memory = Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824
print("machine: \(cores) cores, \(fmt(memory)) GiB; \(pin ? "all processes pinned to CPU 0" : "not pinned"); "
    + "\(rounds) rounds, medians")
print("")
func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
let header = [pad("row", 38), pad("ours", 14), pad("compared with", 22), pad("ratio", 8), "goal"]
print(header.joined(separator: " "))
func row(_ name: String, _ ours: String, _ theirs: String, _ ratio: Double, _ goal: String, _ ok: Bool) {
    print([pad(name, 38), pad(ours, 14), pad(theirs, 22), pad(fmt(ratio, 2) + "x", 8), goal + (ok ? "  ok" : "  MISSED")]
        .joined(separator: " "))
}
let rawPing = m("raw ping") / 1000
let swiftPing = m("swift→swift ping") / 1000
row("ping µs: swift client → swift server", fmt(swiftPing, 2), "raw ping-pong " + fmt(rawPing, 2), swiftPing / rawPing,
    "≤ 1.15x", swiftPing / rawPing <= 1.15)
let cppSwift = m("c++→swift ping") / 1000, cppCpp = m("c++→c++ ping") / 1000
row("ping µs: c++ client → swift server", fmt(cppSwift, 2), "c++ → c++ " + fmt(cppCpp, 2), cppSwift / cppCpp,
    "≤ 1.0x (info)", cppSwift <= cppCpp)
let oursRows = m("c++←swift rows/s"), theirRows = m("c++←c++ rows/s")
row("query 1000×6 rows/s: c++ ← swift", fmt(oursRows, 0), "c++ ← c++ " + fmt(theirRows, 0), oursRows / theirRows,
    "≥ 1.5x", oursRows / theirRows >= 1.5)
let oursCodec = m("swift codec MB/s"), theirCodec = m("c++ codec MB/s")
row("codec encode+decode MB/s (\(codecBytes) B)", fmt(oursCodec), "libthrift " + fmt(theirCodec), oursCodec / theirCodec,
    "≥ 1.0x", oursCodec / theirCodec >= 1.0)
client.close()
unlink(swiftSock)
unlink(cppSock)
