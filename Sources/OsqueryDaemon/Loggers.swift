import Foundation
public import OsqueryEngine
public import OsqueryManager
import OsqueryProtocol
import Synchronization
import ThriftCodec
#if canImport(Glibc)
import Glibc
#endif

/// A logger other than `filesystem` (whose result files the pipeline drives
/// itself for exactly-once delivery).
protocol ResultLogger: Sendable {
    var name: String { get }
    /// Result lines (one call per line, as osquery's `logString`).
    func logResult(_ line: String) throws(DaemonError)
    /// A snapshot line (osquery's `logSnapshot`).
    func logSnapshot(_ line: String) throws(DaemonError)
    /// A status line (extension loggers get theirs from PluginActivation).
    func logStatus(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt)
    /// Whether statuses reaching this logger stop going to stderr (osquery's
    /// stdout logger turns glog's stderr output off).
    var silencesStderr: Bool { get }
    func stop()
}

extension ResultLogger {
    var silencesStderr: Bool { false }
    func stop() {}
}

/// A logger that takes one run's lines at once, all or none (the TLS logger: one store
/// transaction instead of one per line).
protocol BatchResultLogger: ResultLogger {
    func logLines(_ lines: [Substring], snapshot: Bool) throws(DaemonError)
}

/// `severity=N location=file:line message=...`, the status form of osquery's
/// stdout and syslog loggers.
func statusText(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt) -> String {
    "severity=\(severity.rawValue) location=\(file):\(line) message=\(message)"
}

/// `stdout`: results as JSON lines, statuses as `severity=N location=… message=…`.
final class StdoutLogger: ResultLogger {
    let name = "stdout"
    let fd: Int32
    private let lock = Mutex(())

    init(fd: Int32 = 1) { self.fd = fd }

    var silencesStderr: Bool { true }

    private func write(_ line: String) throws(DaemonError) {
        var text = line
        text += "\n"
        let ok = lock.withLock { _ in text.withUTF8 { writeAll(fd, $0) } }
        if !ok { throw DaemonError("Cannot write results to stdout: \(String(cString: strerror(errno)))") }
    }

    func logResult(_ line: String) throws(DaemonError) { try write(line) }
    func logSnapshot(_ line: String) throws(DaemonError) { try write(line) }
    func logStatus(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt) {
        try? write(statusText(severity, message, file: file, line: line))
    }
}

/// `syslog`: syslog(3) with `--logger_syslog_facility` (0–23, else 19 =
/// local3); results at LOG_INFO (optionally `@cee:`-prefixed), statuses at
/// NOTICE/WARNING/ERR.
final class SyslogLogger: ResultLogger {
    let name = "syslog"
    let prependCEE: Bool
    let facility: Int32
    /// openlog keeps the pointer: it must outlive every syslog call.
    nonisolated(unsafe) private static let ident: UnsafeMutablePointer<CChar>? = strdup("osqueryd")

    init(facility requested: Int64, prependCEE: Bool) {
        facility = (0...23).contains(requested) ? Int32(requested) : 19
        self.prependCEE = prependCEE
        closelog()
        openlog(Self.ident, LOG_PID | LOG_CONS, facility << 3)
    }

    private func send(_ priority: Int32, _ text: String) {
        text.withCString { c in withVaList([c]) { args in vsyslog(priority, "%s", args) } }
    }

    func logResult(_ line: String) throws(DaemonError) {
        send(LOG_INFO, prependCEE ? "@cee:" + line : line)
    }

    func logSnapshot(_ line: String) throws(DaemonError) { try logResult(line) }

    func logStatus(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt) {
        let priority: Int32
        switch severity {
        case .info: priority = LOG_NOTICE
        case .warning: priority = LOG_WARNING
        case .error: priority = LOG_ERR
        }
        send(priority, statusText(severity, message, file: file, line: line))
    }

    func stop() { closelog() }
}

/// `none`: discards everything.
final class NullLogger: ResultLogger {
    let name = "none"
    func logResult(_ line: String) throws(DaemonError) {}
    func logSnapshot(_ line: String) throws(DaemonError) {}
    func logStatus(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt) {}
}

/// A logger plugin served by an extension: results as
/// `{"string": line, "category": "event"}`, snapshots as `{"snapshot": line}`.
/// The uuid is looked up for every call, so a relaunched extension (new
/// uuid) keeps receiving lines. Status lines reach it through
/// `PluginActivation`, not here. Calls block: never from the cooperative pool.
final class ExtensionLogger: ResultLogger {
    let name: String
    let registry: PluginRegistry
    let caller: ExtensionCaller

    init(name: String, registry: PluginRegistry, caller: ExtensionCaller) {
        self.name = name
        self.registry = registry
        self.caller = caller
    }

    /// Failures here are not catastrophic: an extension that crashed is
    /// relaunched by the supervisor, and until then the lines wait in the
    /// pipeline's outbox. osquery shuts down with 78 instead, so one crashing
    /// logger extension took the whole daemon down.
    private func call(_ request: ExtensionPluginRequest) throws(DaemonError) {
        guard let owner = registry.item(registry: "logger", name: name)?.ownerUUID, owner != 0 else {
            throw DaemonError("Logger plugin \(name) is not registered", exitCode: 1)
        }
        let response: ExtensionResponse
        do {
            response = try caller.callBlocking(
                uuid: ExtensionRouteUUID(owner), registry: "logger", item: ThriftString(name), request: request)
        } catch {
            throw DaemonError("Logger plugin \(name): \(error)", exitCode: 1)
        }
        if !response.status.isSuccess {
            throw DaemonError("Logger plugin \(name) failed: \(response.status.message)", exitCode: 1)
        }
    }

    func logResult(_ line: String) throws(DaemonError) {
        try call(["string": ThriftString(line), "category": "event"])
    }

    func logSnapshot(_ line: String) throws(DaemonError) {
        try call(["snapshot": ThriftString(line)])
    }

    func logStatus(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt) {}
}

/// The loggers named by `--logger_plugin` (a comma list; each gets every line).
public final class LoggerSet: Sendable {
    /// The plugin names, in order.
    public let names: [String]
    /// `--disable_logging`: no results or statuses reach the plugins.
    public let disabled: Bool
    let filesystem: FilesystemLogger?
    let others: [any ResultLogger]
    private let status = Mutex<StatusRouting?>(nil)

    init(names: [String], disabled: Bool, filesystem: FilesystemLogger?, others: [any ResultLogger]) {
        self.names = names
        self.disabled = disabled
        self.filesystem = filesystem
        self.others = others
    }

    /// Builds the set from `--logger_plugin`. A name that is neither built in
    /// nor a logger registered by an extension (in `registry`, owner uuid ≠ 0)
    /// is a missing required plugin: DaemonError with exit code 78.
    public static func make(flags: Flags, registry: PluginRegistry, caller: ExtensionCaller?) throws(DaemonError) -> LoggerSet {
        try make(flags: flags, registry: registry, caller: caller, tls: nil)
    }

    /// As above; `tls` is the `tls` logger, when the daemon has the TLS remote API.
    static func make(flags: Flags, registry: PluginRegistry, caller: ExtensionCaller?, tls: TLSLogger?) throws(DaemonError) -> LoggerSet {
        var names: [String] = []
        for part in flags[.loggerPlugin].split(separator: ",") {
            let n = part.trimmingCharacters(in: .whitespaces)
            if !n.isEmpty && !names.contains(n) { names.append(n) }
        }
        var filesystem: FilesystemLogger?
        var others: [any ResultLogger] = []
        for name in names {
            switch name {
            case "filesystem": filesystem = FilesystemLogger(flags: flags)
            case "stdout": others.append(StdoutLogger())
            case "syslog":
                others.append(
                    SyslogLogger(facility: flags[.loggerSyslogFacility], prependCEE: flags[.loggerSyslogPrependCee]))
            case "none": others.append(NullLogger())
            case "tls" where tls != nil: others.append(tls!)
            default:
                guard (registry.item(registry: "logger", name: name)?.ownerUUID ?? 0) != 0, let caller else {
                    throw DaemonError("Cannot activate \(name) logger plugin: Unknown registry plugin: \(name)", exitCode: 78)
                }
                others.append(ExtensionLogger(name: name, registry: registry, caller: caller))
            }
        }
        // As osquery's filesystem logger, the results log exists from the start
        // (an unwritable path is reported by the first write, with exit code 78).
        _ = try? filesystem?.prepare(.results)
        return LoggerSet(names: names, disabled: flags[.disableLogging], filesystem: filesystem, others: others)
    }

    /// Whether result lines go anywhere.
    var logsResults: Bool { !disabled && (filesystem != nil || !others.isEmpty) }

    /// Routes status lines (StatusLog): to glog files in `--logger_path` (the
    /// filesystem logger, from `--logger_min_status`), to the stdout and syslog
    /// loggers, and to stderr per `--logger_stderr`, `--logger_min_stderr` and
    /// `--verbose`. When the filesystem logger cannot write `--logger_path`, or
    /// is not in use, status lines go to stderr instead (as glog's
    /// logtostderr). Extension loggers get statuses from `PluginActivation`.
    public func installStatusLogging(flags: Flags, hostIdentifier: String) {
        installStatusLogging(flags: flags, hostIdentifier: hostIdentifier, earlier: nil)
    }

    /// As above; `earlier` lines (logged before the loggers existed, already on stderr) go to the
    /// files and plugins first, as osquery relays its buffered status logs.
    func installStatusLogging(flags: Flags, hostIdentifier: String, earlier: EarlyStatusLines?) {
        let verbose = flags[.verbose]
        let minStatus = verbose ? 0 : Int(clamping: flags[.loggerMinStatus])
        var files: StatusLogFiles?
        if !disabled, let filesystem, StatusLogFiles.writable(filesystem.directory) {
            files = StatusLogFiles(directory: filesystem.directory, mode: filesystem.mode)
        }
        let plugins = disabled ? [] : others.filter { !($0 is ExtensionLogger) }
        var stderrMin: Int?
        if plugins.contains(where: { $0.silencesStderr }) {
            stderrMin = nil
        } else if files == nil {
            // Nowhere else to go: everything that passes --logger_min_status.
            stderrMin = minStatus
        } else if flags[.loggerStderr] {
            stderrMin = verbose ? 0 : Int(clamping: flags[.loggerMinStderr])
        }
        let routing = StatusRouting(
            files: files, minStatus: minStatus, stderrMin: stderrMin, plugins: plugins, hostIdentifier: hostIdentifier)
        let previous = status.withLock { s -> StatusRouting? in
            let old = s
            s = routing
            return old
        }
        previous?.files?.close()
        for l in earlier?.take() ?? [] { routing.route(l.severity, l.message, file: l.file, line: l.line, stderr: false) }
        StatusLog.setLineSink { severity, message, file, line in routing.route(severity, message, file: file, line: line) }
    }

    /// Stops status routing and closes files and syslog.
    public func stop() {
        let routing = status.withLock { s -> StatusRouting? in
            let old = s
            s = nil
            return old
        }
        if routing != nil { StatusLog.setLineSink(nil) }
        routing?.files?.close()
        for o in others { o.stop() }
    }

    /// The glog files in use (tests).
    var statusFiles: StatusLogFiles? { status.withLock { $0?.files } }

    /// The routing installed (tests).
    var statusRouting: StatusRouting? { status.withLock { $0 } }
}

/// Where status lines go, fixed at `installStatusLogging`.
struct StatusRouting: Sendable {
    let files: StatusLogFiles?
    let minStatus: Int
    let stderrMin: Int?
    let plugins: [any ResultLogger]
    let hostIdentifier: String

    func route(_ severity: StatusLog.Severity, _ message: String, file: String, line: UInt, stderr: Bool = true) {
        let level = severity.rawValue
        let toFiles = files != nil && level >= minStatus
        let toStderr = stderr && (stderrMin.map { level >= $0 } ?? false)
        if toFiles || toStderr {
            let text = StatusLog.glogLine(severity, message, file: file, line: line)
            // A status file that cannot be written (disk full) must not hide
            // the line: it goes to stderr instead.
            let filed = toFiles ? files?.write(severity, text) ?? false : false
            if toStderr || (toFiles && !filed) {
                var copy = text
                copy += "\n"
                copy.withUTF8 { _ = writeAll(2, $0) }
            }
        }
        guard level >= minStatus else { return }
        for p in plugins { p.logStatus(severity, message, file: file, line: line) }
    }
}

/// Status lines logged before the loggers are set up (while the config, whose options may choose
/// them, is read): written to stderr as they come, as before any routing, and kept for the
/// loggers' files. Bounded: past `limit` lines the rest only reach stderr.
final class EarlyStatusLines: Sendable {
    struct Line: Sendable {
        let severity: StatusLog.Severity
        let message: String
        let file: String
        let line: UInt
    }

    private let lines = Mutex<[Line]>([])
    let limit: Int

    init(limit: Int = 10_000) { self.limit = limit }

    /// Collects status lines from now until `LoggerSet.installStatusLogging` takes them.
    func install() {
        StatusLog.setLineSink { [self] severity, message, file, line in
            if severity.rawValue >= StatusLog.minimumSeverity.rawValue {
                var text = StatusLog.glogLine(severity, message, file: file, line: line) + "\n"
                text.withUTF8 { _ = writeAll(2, $0) }
            }
            lines.withLock { if $0.count < limit { $0.append(Line(severity: severity, message: message, file: file, line: line)) } }
        }
    }

    func take() -> [Line] {
        lines.withLock { l in
            defer { l = [] }
            return l
        }
    }
}
