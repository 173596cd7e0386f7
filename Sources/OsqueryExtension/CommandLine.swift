public import ArgumentParser
package import OsqueryProtocol

/// The extension's command line: exactly what osquery's autoloader passes
/// (`--socket S --timeout T --interval I [--verbose]`, also in `--flag=value`
/// form), plus developer conveniences. Unknown flags are tolerated and kept in
/// `unrecognized`, so a newer core passing a new flag never kills an extension.
public struct ExtensionOptions: ParsableArguments, Sendable {
    /// The core's extension manager socket.
    @Option(help: "Path of the osquery extension manager socket.")
    public var socket: String = "/var/osquery/osquery.em"

    /// Seconds to wait for the core's socket at start.
    @Option(help: "Seconds to wait for the core's socket to answer.")
    package var timeout: Double = 3

    /// Seconds between liveness checks.
    @Option(help: "Seconds between liveness checks of the core.")
    package var interval: Double = 3

    /// Log debug details (to standard error).
    @Flag(help: "Log debug details to standard error.")
    package var verbose: Bool = false

    /// Survive core restarts: wait for the core to come back and register again.
    @Flag(help: "Keep running when the core goes away; re-register when it returns (for extensions not started by osquery).")
    package var supervised: Bool = false

    /// Print the spec JSON of every table, then exit.
    @Flag(name: .customLong("spec"), help: "Print the JSON spec of every table and exit.")
    package var printSpec: Bool = false

    /// Print the plugins (registry and name), then exit.
    @Flag(name: .customLong("list"), help: "List the plugins this extension provides and exit.")
    package var listPlugins: Bool = false

    /// Overrides `ServerLimits.maxMessageSize` of ``ExtensionConfiguration/serverLimits``
    /// (the core's flag of the same name).
    @Option(name: .customLong("extensions_max_message_size"), help: "Largest message in bytes the extension accepts or sends.")
    package var maxMessageSize: Int?

    /// Overrides `ServerLimits.maxPipelinedCalls`.
    @Option(name: .customLong("extensions_max_pipelined_calls"), help: "Calls queued per connection before it is no longer read.")
    package var maxPipelinedCalls: Int?

    /// Overrides `ServerLimits.idleTimeout`, in seconds.
    @Option(name: .customLong("extensions_idle_timeout"), help: "Seconds a connection may stay open with no call.")
    package var idleTimeout: Int?

    /// Overrides `ServerLimits.partialMessageTimeout`, in seconds.
    @Option(name: .customLong("extensions_partial_message_timeout"), help: "Seconds a message may take to arrive, or a reply to be read.")
    package var partialMessageTimeout: Int?

    /// Overrides `ServerLimits.maxConnections`.
    @Option(name: .customLong("extensions_max_connections"), help: "Connections served at once.")
    package var maxConnections: Int?

    /// `base` with the limits given on the command line in place of its own.
    /// - Parameter base: the limits to start from (usually ``ExtensionConfiguration/serverLimits``).
    /// - Returns: `base` with each `--extensions_*` option that was given put in.
    package func serverLimits(over base: ServerLimits) -> ServerLimits {
        var limits = base
        if let maxMessageSize { limits.maxMessageSize = maxMessageSize }
        if let maxPipelinedCalls { limits.maxPipelinedCalls = maxPipelinedCalls }
        if let idleTimeout { limits.idleTimeout = .seconds(idleTimeout) }
        if let partialMessageTimeout { limits.partialMessageTimeout = .seconds(partialMessageTimeout) }
        if let maxConnections { limits.maxConnections = maxConnections }
        return limits
    }

    /// Flags and arguments this parser did not recognise (tolerated, not used).
    @Argument(parsing: .allUnrecognized, help: .hidden)
    package var unrecognized: [String] = []

    /// Options with the defaults (as if no arguments were given).
    public init() {}
}

/// The command wrapper that gives `--help` the executable's own name.
struct ExtensionCommand: ParsableCommand {
    static var configuration: CommandConfiguration {
        let name = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "extension") } ?? "extension"
        return CommandConfiguration(commandName: name, abstract: "An osquery extension (Swift SDK \(OsquerySDK.version)).")
    }

    @OptionGroup var options: ExtensionOptions

    init() {}
}
