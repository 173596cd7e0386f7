/// Why an extension could not start.
///
/// ``Extension/start(options:signals:)`` and the `run` methods throw it; ``Extension/run()``
/// logs it and exits with status 1.
public enum ExtensionError: Error, Sendable, CustomStringConvertible {
    /// The `--socket` path is empty, or too long for a Unix socket once `.<uuid>` is added.
    case badSocketPath(String)
    /// No core answered at the socket within `--timeout`, or the registration call got no answer.
    case coreUnavailable(String)
    /// The core answered `registerExtension` with a non-zero status: its code and message (a
    /// name still taken after ten seconds of retries, an unknown registry, …).
    case registrationRefused(code: Int32, message: String)
    /// Two plugins have the same registry and name.
    case duplicatePlugin(registry: String, name: String)
    /// A table the core would refuse to declare: the message says why (an invalid
    /// name, no columns, a column name used twice).
    case invalidTable(String)
    /// The extension's own socket (`<socket>.<uuid>`) could not be bound or moved into place.
    case cannotListen(String)
    /// The extension is not running. No method of this SDK version throws it.
    case notRunning

    /// The failure as one line (`registration refused (1): Duplicate extension registered`).
    public var description: String {
        switch self {
        case .badSocketPath(let s): "bad socket path: \(s)"
        case .coreUnavailable(let s): s
        case .registrationRefused(let code, let message): "registration refused (\(code)): \(message)"
        case .duplicatePlugin(let r, let n): "two plugins named \(n) in registry \(r)"
        case .invalidTable(let problem): problem
        case .cannotListen(let s): "cannot listen: \(s)"
        case .notRunning: "the extension is not running"
        }
    }
}
