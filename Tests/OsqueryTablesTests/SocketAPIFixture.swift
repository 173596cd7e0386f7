import Foundation
import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Tables over a Unix-socket HTTP API (docker_*, lxd_*): a private daemon of the real API for the
// tests that compare the tables with its CLI, stand-in servers for the hostile ones.

struct DaemonCLIError: Error, CustomStringConvertible {
    let output: String
    var description: String { output }
}

/// A daemon serving its API on a Unix socket in a scratch directory, for one test (a private lxd
/// or dockerd). `stop()` is idempotent: `willStop()` (a subclass removes what the test made
/// while the daemon still answers), SIGTERM and, after a bounded wait, SIGKILL, `didStop()`,
/// then the mounts left under the directory detached.
class PrivateAPIDaemon: @unchecked Sendable {
    /// What a test image's root holds: enough to run /bin/sleep.
    static let rootfsFiles = ["/bin/sleep", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
    static var rootfsReadable: Bool { rootfsFiles.allSatisfy { access($0, R_OK) == 0 } }

    let dir: TempDir
    let process = Process()
    let socket: String
    private let childEnvironment: [String: String]
    private var stopped = false

    /// Starts `executable` (its output in `daemon.out`) and waits, bounded, until `ping` on
    /// `socket` answers 200; CLI children get `childEnvironment`.
    init(dir: TempDir, executable: String, arguments: [String], environment: [String: String]? = nil, socket: String, ping: String,
         childEnvironment: [String: String]) throws {
        self.dir = dir
        self.socket = socket
        self.childEnvironment = childEnvironment
        let output = dir.path + "/daemon.out"
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let log = FileHandle(forWritingAtPath: output)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // The daemon listens after a few seconds.
        for _ in 0..<300 {
            if (try? HTTPFetch.request(unixSocket: socket, target: ping, timeout: 2, maxBytes: 1 << 20))?.status == 200 { return }
            guard process.isRunning else { break }
            usleep(200_000)
        }
        stop()
        throw DaemonCLIError(output: "\((executable as NSString).lastPathComponent) did not answer: " + readText(output).suffix(2000))
    }

    /// `path` with `arguments` against this daemon; its stdout, or it throws with its stderr.
    @discardableResult
    func run(_ path: String, _ arguments: [String]) throws -> String {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: path)
        child.arguments = arguments
        child.environment = childEnvironment
        let out = Pipe(), err = Pipe()
        child.standardOutput = out
        child.standardError = err
        child.standardInput = FileHandle.nullDevice
        try child.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        guard child.terminationStatus == 0 else {
            throw DaemonCLIError(output: "\(arguments.joined(separator: " ")): " + String(decoding: errors, as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Copies `rootfsFiles` under `root` (their contents, links followed: ld.so is a link to
    /// /lib/x86_64-linux-gnu).
    func copyRootfs(to root: String) throws {
        for file in Self.rootfsFiles {
            let target = root + file
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(contentsOf: URL(fileURLWithPath: file)).write(to: URL(fileURLWithPath: target))
            chmod(target, 0o755)
        }
    }

    func willStop() {}
    func didStop() {}

    func stop() {
        guard !stopped else { return }
        stopped = true
        willStop()
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        for _ in 0..<300 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        if process.processIdentifier > 0 { process.waitUntilExit() }
        didStop()
        // Mounts under the scratch directory (network namespaces, volumes) before it is removed.
        let mounts = readText("/proc/self/mountinfo").split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(dir.path) ? String(fields[4]) : nil
        }
        for mount in mounts.reversed() { umount2(mount, Int32(MNT_DETACH)) }
    }

    deinit { stop() }
}

/// A stand-in of one API (`python3 Tests/Peers/python/unix_http_standin.py API DIRECTORY`: a
/// socket per behaviour, `ready` once all listen, until its stdin closes) and that API's tables
/// with short limits (a 1 s timeout, 64 KiB bodies), so each hostile server costs one timeout or
/// 64 KiB at most; `log` holds what the tables said.
final class StandInAPI {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
        + "/Peers/python/unix_http_standin.py"
    static var available: Bool { installed("/usr/bin/python3") }

    let dir = TempDir()
    let flags = Flags()
    let log = OnceLog()
    let db: Database
    private let process = Process()
    private let input = Pipe()
    private let socketFlag: String
    /// The first line the stand-in printed (`ready` once it listens).
    private(set) var firstLine = ""

    init(_ api: String, socketFlag: String, tables: (Flags, OnceLog) throws -> Database) throws {
        self.socketFlag = socketFlag
        try flags.set("table_http_timeout", "1")
        try flags.set("table_http_max_bytes", "65536")
        db = try tables(flags, log)
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [Self.script, api, dir.path]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = [UInt8]()
        do {
            while line.count < 16, let byte = try output.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { line.append(byte) }
        } catch {
            stop()
            throw error
        }
        firstLine = String(decoding: line, as: UTF8.self)
    }

    /// Points the API's socket flag at `name` in the scratch directory.
    func use(_ name: String) throws { try flags.set(socketFlag, dir.path + "/" + name) }

    /// The request targets the behaviour `name` was sent, in order.
    func requests(_ name: String) -> [String] {
        readText(dir.path + "/" + name + ".requests").split(separator: "\n").map(String.init)
    }

    /// `sql` gives no rows with the socket at each of `names`, and the log then holds each of `reasons`.
    func expectNoRows(_ sql: String, at names: [String], saying reasons: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        for name in names {
            try use(name)
            #expect(try db.execute(sql).rowCount == 0, "\(name)", sourceLocation: sourceLocation)
        }
        let said = log.messages
        for reason in reasons {
            #expect(said.contains(reason), "\(reason) not in \(said)", sourceLocation: sourceLocation)
        }
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        if process.processIdentifier > 0 { process.waitUntilExit() }
    }

    deinit { stop() }
}
