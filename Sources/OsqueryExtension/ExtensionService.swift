public import ServiceLifecycle

extension Extension {
    /// This extension as a `Service` for a `ServiceGroup` of your own: the group's graceful
    /// shutdown (its SIGTERM/SIGINT handling, or another service ending) stops it as
    /// ``stop()`` does, also while it still waits for the core.
    ///
    /// ```swift
    /// let hello = Extension("hello", plugins: [table])
    /// let options = try ExtensionOptions.parse(Array(CommandLine.arguments.dropFirst()))
    /// let group = ServiceGroup(
    ///     services: [hello.service(options: options), myOtherService],
    ///     gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    /// try await group.run()
    /// ```
    ///
    /// The service returns whenever the extension stops, also on its own (the core asked it to
    /// or went away): the group then does what its termination behaviour for it says.
    ///
    /// - Parameter options: The command-line options the extension runs with.
    /// - Returns: A service whose `run()` starts the extension, serves until it stops, and
    ///   returns once it has deregistered and removed its socket.
    public func service(options: ExtensionOptions) -> some Service {
        ExtensionService(extension: self, options: options)
    }
}

/// An ``Extension`` run by a `ServiceGroup`; see ``Extension/service(options:)``.
package struct ExtensionService: Service, CustomStringConvertible {
    /// The extension this service runs.
    package let `extension`: Extension
    /// The options it runs with.
    package let options: ExtensionOptions

    /// The extension's name.
    package var description: String { "extension \(`extension`.name)" }

    /// Starts the extension and serves until it stops (the group's graceful shutdown, the
    /// core's shutdown call or the core going away).
    ///
    /// - Throws: What ``Extension/start(options:signals:)`` throws when the extension
    ///   cannot start (the core never came, a bad socket path, a duplicate plugin).
    package func run() async throws {
        let running = `extension`
        // The group owns the process's signals; the extension installs none of its own.
        _ = try await withGracefulShutdownHandler {
            try await running.run(options: options, signals: false)
        } onGracefulShutdown: {
            running.stop()
        }
    }
}
