package import Logging

/// Tunables of the runner; the defaults suit an autoloaded extension.
package struct ExtensionConfiguration: Sendable {
    /// Sent as `sdk_version`.
    package var sdkVersion: String = OsquerySDK.osqueryVersion
    /// Sent as `min_sdk_version`.
    package var minSDKVersion: String = OsquerySDK.minimumCoreVersion
    /// Failed liveness checks in a row before the core counts as gone. A timeout
    /// (core busy) counts 1; a missing or refusing socket counts 2.
    package var strikeLimit: Int = 3
    /// How long the deregistration call and the in-flight calls together may take at shutdown.
    ///
    /// With ``shutdownHookTimeout`` it must fit in the 5 s an osquery core gives an extension
    /// between its `shutdown` call (or SIGTERM) and SIGKILL: 2 s + 2 s by default.
    package var drainTimeout: Duration = .seconds(2)
    /// How long the plugins' shutdown hooks (run at once) may take: a logger's final flush.
    package var shutdownHookTimeout: Duration = .seconds(2)
    /// How long "Duplicate extension registered" is retried (the core reaps a dead
    /// predecessor within about one `--extensions_interval`).
    package var duplicateRetryWindow: Duration = .seconds(10)
    /// Install SIGTERM/SIGINT handlers that shut down gracefully (``Extension/run()`` does).
    package var handleSignals: Bool = false
    /// What the extension's server lets a peer on its socket hold: message size, calls
    /// queued per connection, idle and partial-message timeouts, connections at once. The
    /// command line's `--extensions_max_*` and `--extensions_*_timeout` options override it.
    package var serverLimits: ServerLimits = .default
    /// Where the runner logs; nil: standard error at `warning` level (quiet in a shell's
    /// terminal, as osquery's extensions are; losing the core is a warning), `debug` with `--verbose`.
    package var logger: Logger? = nil

    /// The defaults.
    package init() {}
}
