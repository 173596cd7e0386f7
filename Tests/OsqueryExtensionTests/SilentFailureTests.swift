import Testing
import Foundation
import Logging
import Synchronization
import OsqueryExtension
import OsqueryExtensionTesting
#if canImport(Glibc)
import Glibc
#endif

/// Every message the runner logs, captured.
final class LogLines: Sendable {
    let lines = Mutex<[String]>([])
    var logger: Logger {
        Logger(label: "capture") { [self] _ in Handler(box: self) }
    }
    var all: [String] { lines.withLock { $0 } }

    struct Handler: LogHandler {
        let box: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            box.lines.withLock { $0.append("\(event.level): \(event.message)") }
        }
    }
}

/// Issue 22 item 5: what used to fail silently says so, once.
@Suite struct SilentFailureTests {
    struct DiskOnFire: LocalizedError {
        var errorDescription: String? { "the disk is on fire" }
    }

    @Test func thrownErrorsShowTheirLocalizedDescription() async throws {
        let table = Table("fire_t", columns: [.text("a")]) { _ in throw DiskOnFire() }
        let tester = try TableTester(table)
        await #expect {
            _ = try await tester.query("select a from fire_t")
        } throws: { error in
            "\(error)".contains("the disk is on fire")
        }
    }

    /// The core dying is logged at the default level (warning), and the extension exits 0.
    @Test func coreDeathIsLoggedAtTheDefaultLevel() async throws {
        let dir = try #require(productsDir)
        let core = try await FakeCore.start()
        let ext = try Child(dir + "/example-pressure-table", ["--socket", core.socket, "--timeout", "5", "--interval", "0.5"])
        defer { ext.kill9() }
        #expect(await eventually(timeout: .seconds(60)) { !core.registrations.isEmpty })
        await core.stop()
        let status = await ext.wait(timeout: .seconds(30))
        #expect(status == 0)
        #expect(ext.stderrText.contains("the osquery core has gone away"), "stderr: \(ext.stderrText)")
    }

    /// `--supervised` with no core says it is waiting; a stop ends the wait.
    @Test func supervisedWaitSaysSo() async throws {
        let log = LogLines()
        var configuration = ExtensionConfiguration()
        configuration.logger = log.logger
        let socket = FakeCore.temporarySocketPath()
        let ext = Extension("waiting_ext", plugins: [Table("w_t", columns: [.text("a")]) { _ in [] }], configuration: configuration)
        let started = Task { try await ext.start(options: try options(socket, supervised: true)) }
        #expect(await eventually(timeout: .seconds(60)) { log.all.contains { $0.contains("no osquery core at \(socket) yet; waiting for one (--supervised)") } })
        // A core that comes up is found and registered with.
        let core = try await FakeCore.start(socket: socket)
        try await started.value
        #expect(core.registrations.values.contains { $0.name == "waiting_ext" })
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    /// A row key that is no column and a non-number in an INTEGER column are logged once per
    /// table and column however many rows and queries have them; the rows are still served.
    @Test func rowMistakesAreLoggedOnce() async throws {
        let log = LogLines()
        var configuration = ExtensionConfiguration()
        configuration.logger = log.logger
        let core = try await FakeCore.start()
        let table = Table("mistakes_t", columns: [.integer("n"), .text("s")]) { _ in
            (0..<50).map { i -> Row in ["n": "not-a-number", "s": "x\(i)", "bogus": "y"] }
        }
        let ext = Extension("mistakes_ext", plugins: [table], configuration: configuration)
        try await ext.start(options: try options(core.socket))
        for _ in 0..<3 {
            let rows = try await OsqueryClient(socket: core.socket).query("select n, s from mistakes_t")
            #expect(rows.count == 50 && rows[0]["s"] == "x0")
        }
        // The same through a RowWriter's positional rows.
        let written = Table("written_t", columns: [.text("s"), .bigint("big")]) { _, rows in
            for i in 0..<50 { rows.add("x\(i)", "12abc") }
        }
        try await ext.add(written)
        for _ in 0..<2 {
            let rows = try await OsqueryClient(socket: core.socket).query("select s, big from written_t")
            #expect(rows.count == 50 && rows[0]["s"] == "x0")
        }
        #expect(log.all.filter { $0.contains("table written_t: column big is BIGINT but a row has \"12abc\"") }.count == 1, "\(log.all)")
        let unknown = log.all.filter { $0.contains("rows have key \"bogus\", which is not a column") }
        let notNumber = log.all.filter { $0.contains("column n is INTEGER but a row has \"not-a-number\"") }
        #expect(unknown.count == 1 && notNumber.count == 1, "\(log.all)")
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }

    /// Permission denied on the core's socket fails at once with that reason, not after the
    /// whole `--timeout` as "no core answered". Run as `nobody` (root is never denied).
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") && othersCanRunExamples))
    func permissionDeniedFailsAtOnce() async throws {
        let dir = try #require(productsDir)
        let core = try await FakeCore.start()
        chmod(core.socket, 0o600)
        chmod((core.socket as NSString).deletingLastPathComponent, 0o755)
        let ext = try Child(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", dir + "/example-pressure-table", "--socket", core.socket,
             "--timeout", "600"])
        defer { ext.kill9() }
        let status = await ext.wait(timeout: .seconds(60))
        #expect(status == 1, "stderr: \(ext.stderrText)")
        #expect(ext.stderrText.contains("permission denied connecting to \(core.socket)"), "stderr: \(ext.stderrText)")
        #expect(!ext.stderrText.contains("no osquery core answered"))
        #expect(try await OsqueryClient(socket: core.socket).pingStatus().code == 0)
        await core.stop()
    }
}

/// Whether a user with no rights here (`nobody`) can run the built examples: every directory on
/// the way searchable, the binary readable and executable by others.
let othersCanRunExamples: Bool = {
    guard let dir = productsDir else { return false }
    var path = ""
    for part in (dir + "/example-pressure-table").split(separator: "/") {
        path += "/" + part
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & 0o001 != 0 else { return false }
    }
    return true
}()

/// Issue 22 item 6: the stop fits in the core's 5 s grace by default.
@Suite struct ShutdownGraceTests {
    @Test func defaultStopFitsTheCoresGrace() {
        let c = ExtensionConfiguration()
        #expect(c.drainTimeout + c.shutdownHookTimeout < .seconds(5))
    }
}

/// Issue 22 item 6: a generate is cancelled when the core gives up on the call (its call
/// timed out, it closed the connection), with or without a table deadline.
@Suite struct GenerateCancellationTests {
    @Test(arguments: [nil, Duration.seconds(600)])
    func generateIsCancelledWhenTheCoreGivesUp(_ deadline: Duration?) async throws {
        let cancelled = Flag()
        let entered = Flag()
        let core = try await FakeCore.start()
        let table = Table("slow_t", columns: [.text("a")], limits: TableLimits(deadline: deadline)) { _ in
            entered.set()
            // Sleeps until cancelled (600 s otherwise: the test would time out).
            do { try await Task.sleep(for: .seconds(600)) } catch { cancelled.set() }
            return []
        }
        let ext = Extension("slow_ext", plugins: [table])
        try await ext.start(options: try options(core.socket))
        let client = ExtensionClient(path: try #require(ext.listenPath))
        await #expect(throws: RPCClientError.self) {
            // Long enough for a loaded machine to reach generate first (CI runs every suite at once).
            _ = try await client.call(registry: "table", item: "slow_t", request: ["action": "generate"], timeout: .seconds(3))
        }
        #expect(await eventually(timeout: .seconds(60)) { entered.isSet })
        #expect(await eventually(timeout: .seconds(60)) { cancelled.isSet })
        // The extension keeps serving.
        #expect(try await ExtensionClient(path: try #require(ext.listenPath)).ping().code == 0)
        ext.stop()
        _ = await ext.waitUntilStopped()
        await core.stop()
    }
}
