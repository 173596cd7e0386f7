public import ServiceLifecycle

extension ExtensionsRuntime {
    /// The runtime as a service of a `ServiceGroup` (osqueryd's worker, osqueryi): it is already
    /// running when the group starts; at the group's graceful shutdown it stops in osquery's
    /// order (see ``stop(grace:)``).
    public var service: some Service { ExtensionsService(runtime: self) }
}

private struct ExtensionsService: Service, CustomStringConvertible {
    let runtime: ExtensionsRuntime
    var description: String { "extensions" }

    func run() async {
        // Cancellation ends the wait too; the runtime is stopped either way.
        try? await gracefulShutdown()
        await runtime.stop()
    }
}
