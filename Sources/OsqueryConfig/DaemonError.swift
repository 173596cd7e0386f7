/// An error of the config or the daemon's services, with the exit code osquery uses for it.
public struct DaemonError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    /// 1 (EXIT_FAILURE) or 78 (EXIT_CATASTROPHIC), as osquery.
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}
