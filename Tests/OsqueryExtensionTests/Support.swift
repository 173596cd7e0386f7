import Foundation
import OsqueryExtension
#if canImport(Glibc)
import Glibc
#endif

/// The repository root (this file is Tests/OsqueryExtensionTests/Support.swift).
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The directory holding the built example executables (the test bundle's build directory).
let productsDir: String? = {
    if let env = ProcessInfo.processInfo.environment["OSQ_SDK_PRODUCTS"] { return env }
    var candidates: [URL] = []
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
    }
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
    for var dir in candidates {
        for _ in 0..<5 {
            if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("example-pressure-table").path) {
                return dir.path
            }
            dir.deleteLastPathComponent()
        }
    }
    return nil
}()

let python = repoRoot + "/.venv/bin/python3"
let referenceManagerScript = repoRoot + "/Tests/Peers/python/reference_manager.py"
let haveReferenceManager: Bool = {
    FileManager.default.isExecutableFile(atPath: python) && productsDir != nil
}()

/// A short unique socket path in a fresh private directory.
func tempSocket() -> String { FakeCoreSupport.path() }

enum FakeCoreSupport {
    static func path() -> String {
        var template = Array("/tmp/osq-sdkt-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        return dir + "/osq.em"
    }
}

/// A child process with captured output.
final class Child: @unchecked Sendable {
    let process = Process()
    let stderrPipe = Pipe()
    let stdoutPipe = Pipe()

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = stderrPipe
        process.standardOutput = stdoutPipe
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits up to `timeout` for exit; returns the status (nil if still running).
    func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Ends the process if it is still running (by its pid).
    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    var stderrText: String {
        String(decoding: stderrPipe.fileHandleForReading.availableDataNonBlocking(), as: UTF8.self)
    }
    func stdoutText() -> String {
        String(decoding: stdoutPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}

extension FileHandle {
    /// Whatever is buffered, without blocking (only for a finished process's pipe).
    func availableDataNonBlocking() -> Data {
        let fd = fileDescriptor
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var out = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }
}

/// Waits until `condition` holds, polling.
func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(25))
    }
    return try await condition()
}

func fileMode(_ path: String) -> mode_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode & 0o777 : nil
}

func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

func options(_ socket: String, interval: Double = 0.2, timeout: Double = 3, supervised: Bool = false) throws -> ExtensionOptions {
    var args = ["--socket", socket, "--timeout", String(timeout), "--interval", String(interval)]
    if supervised { args.append("--supervised") }
    return try ExtensionOptions.parse(args)
}
