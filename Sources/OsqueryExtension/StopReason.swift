/// Why an extension stopped.
public enum StopReason: Sendable, Equatable, CustomStringConvertible {
    /// The core sent the `shutdown` RPC.
    case shutdownRequested
    /// SIGTERM or SIGINT.
    case signal(Int32)
    /// The core stopped answering (default mode).
    case coreGone
    /// The core no longer lists this extension (default mode).
    case deregistered
    /// ``Extension/stop()`` was called.
    case stopped

    /// The reason as a phrase for logs (`signal 15`, `the osquery core has gone away`).
    public var description: String {
        switch self {
        case .shutdownRequested: "the core requested shutdown"
        case .signal(let s): "signal \(s)"
        case .coreGone: "the osquery core has gone away"
        case .deregistered: "the core no longer lists this extension"
        case .stopped: "stopped"
        }
    }
}
