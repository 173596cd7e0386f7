import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Status logging (glog-style lines on stderr). Tables use it to say why
/// they returned less than everything, e.g. unreadable files as non-root.
public enum StatusLog {
    public enum Severity: Int, Sendable {
        case info = 0, warning = 1, error = 2
        var letter: String {
            switch self {
            case .info: return "I"
            case .warning: return "W"
            case .error: return "E"
            }
        }
    }

    public typealias Sink = @Sendable (Severity, String) -> Void
    /// Receives every status line, whatever `minimumSeverity` is, with its
    /// source file and line: how status logs reach logger plugins.
    public typealias Forwarder = @Sendable (Severity, String, String, UInt) -> Void

    private static let forwarder = Mutex<Forwarder?>(nil)

    /// Installs (or, with nil, removes) the forwarder.
    public static func setForwarder(_ f: Forwarder?) {
        forwarder.withLock { $0 = f }
    }

    private static let state = Mutex<(minimum: Severity, sink: Sink?)>((.warning, nil))

    /// Receives every status line with its source file and line, whatever
    /// `minimumSeverity` is, in place of the default output: how osqueryd's
    /// loggers route status lines to glog files, stderr, stdout and syslog.
    public typealias LineSink = @Sendable (Severity, String, String, UInt) -> Void

    private static let lineSink = Mutex<LineSink?>(nil)

    /// Installs (or, with nil, removes) the line sink; while one is installed
    /// neither `setSink`'s sink nor stderr gets lines from here.
    public static func setLineSink(_ s: LineSink?) {
        lineSink.withLock { $0 = s }
    }

    /// The glog line for a message (without the newline), as written to stderr.
    public static func glogLine(_ severity: Severity, _ message: String, file: String, line: UInt) -> String {
        format(severity, message, file: file, line: line)
    }

    /// Lowest severity written (the shell shows WARNING and ERROR unless --verbose).
    public static var minimumSeverity: Severity {
        get { state.withLock { $0.minimum } }
        set { state.withLock { $0.minimum = newValue } }
    }

    /// Replace the output (nil = stderr).
    public static func setSink(_ sink: Sink?) {
        state.withLock { $0.sink = sink }
    }

    public static func info(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
        log(.info, message(), file: file, line: line)
    }

    public static func warning(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
        log(.warning, message(), file: file, line: line)
    }

    public static func error(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
        log(.error, message(), file: file, line: line)
    }

    public static func log(_ severity: Severity, _ message: String, file: StaticString = #fileID, line: UInt = #line) {
        let forward = forwarder.withLock { $0 }
        let routed = lineSink.withLock { $0 }
        if forward != nil || routed != nil {
            let base = "\(file)".split(separator: "/").last.map(String.init) ?? "\(file)"
            forward?(severity, message, base, line)
            if let routed {
                routed(severity, message, base, line)
                return
            }
        }
        let (minimum, sink) = state.withLock { ($0.minimum, $0.sink) }
        guard severity.rawValue >= minimum.rawValue else { return }
        if let sink {
            sink(severity, message)
            return
        }
        let text = format(severity, message, file: "\(file)", line: line) + "\n"
        var copy = text
        copy.withUTF8 { buf in _ = write(2, buf.baseAddress, buf.count) }
    }

    /// `W1130 17:37:30.123456 12345 file.swift:101] message`
    static func format(_ severity: Severity, _ message: String, file: String, line: UInt) -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmv = tm()
        localtime_r(&t, &tmv)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let base = file.split(separator: "/").last.map(String.init) ?? file
        var out = severity.letter
        out += pad(tmv.tm_mon + 1, 2)
        out += pad(tmv.tm_mday, 2)
        out += " " + pad(tmv.tm_hour, 2)
        out += ":" + pad(tmv.tm_min, 2)
        out += ":" + pad(tmv.tm_sec, 2)
        out += "." + pad(Int32(ts.tv_nsec / 1000), 6)
        out += " " + String(getpid())
        out += " " + base + ":" + String(line) + "] "
        out += message
        return out
    }
}
