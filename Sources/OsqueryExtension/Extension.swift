public import Logging
import Synchronization
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// An extension process: its plugins and the runner that registers them with a
/// core and serves the core's calls.
///
/// ```swift
/// import OsqueryExtension
/// let hello = Table("hello", columns: [.text("greeting")]) { _ in [["greeting": "hello"]] }
/// await Extension("hello", plugins: [hello]).run()
/// ```
public final class Extension: Sendable {
    /// The extension's name (unique among a core's extensions).
    public let name: String
    /// The extension's version.
    package let version: String
    /// The runner's tunables.
    package let configuration: ExtensionConfiguration
    let state: Mutex<State>
    let router: Router
    let stopStream: AsyncStream<StopReason>
    let stopSink: AsyncStream<StopReason>.Continuation

    struct State {
        var options = ExtensionOptions()
        var logger = Logger(label: "osquery.extension")
        var core: OsqueryClient?
        var server: RPCServer?
        var liveness: Task<Void, Never>?
        var startup: Task<Void, any Error>?
        var earlyStop: StopReason?
        /// A stop asked for before `start`: it ends the next start-up before it waits for the core.
        var pendingStop: StopReason?
        var running = false
        var stopReason: StopReason?
        var finished: [CheckedContinuation<StopReason, Never>] = []
    }

    /// An extension named `name` serving `plugins`. Nothing runs until ``run()`` or
    /// ``start(options:signals:)``.
    /// - Parameters:
    ///   - name: the extension's name, unique among the core's extensions.
    ///   - version: the extension's version, sent at registration.
    ///   - plugins: the plugins to serve (tables, loggers, config and distributed plugins, …).
    ///   - logger: where the runner logs; nil: standard error at `warning` level (quiet in a
    ///     shell's terminal, as osquery's extensions are; losing the core is a warning), `debug`
    ///     with `--verbose`.
    public convenience init(
        _ name: String, version: String = "1.0.0", plugins: [any ExtensionPlugin], logger: Logger? = nil
    ) {
        var configuration = ExtensionConfiguration()
        configuration.logger = logger
        self.init(name, version: version, plugins: plugins, configuration: configuration)
    }

    /// An extension with the runner's tunables (timeouts, limits, retries) set.
    /// - Parameters:
    ///   - name: the extension's name, unique among the core's extensions.
    ///   - version: the extension's version, sent at registration.
    ///   - plugins: the plugins to serve.
    ///   - configuration: the runner's tunables.
    package init(
        _ name: String, version: String = "1.0.0", plugins: [any ExtensionPlugin],
        configuration: ExtensionConfiguration
    ) {
        self.name = name
        self.version = version
        self.configuration = configuration
        self.state = Mutex(State())
        self.router = Router(name: name, plugins: plugins)
        (stopStream, stopSink) = AsyncStream.makeStream(of: StopReason.self, bufferingPolicy: .bufferingNewest(8))
    }

    /// The plugins currently served.
    package var plugins: [any ExtensionPlugin] { router.all() }

    /// The uuid the core gave this extension (0 before registration).
    package var uuid: Int64 { router.uuid.load(ordering: .relaxed) }

    /// The socket this extension listens on (`<socket>.<uuid>`), when running.
    package var listenPath: String? { state.withLock { $0.server?.path } }

    /// The spec JSON of every table, as a JSON array.
    package var specJSON: String {
        JSONValue.array(router.all().compactMap { tableOf($0)?.spec }).serialized
    }

    // MARK: - Running

    /// Runs the extension as an executable: parses the command line, waits for the core,
    /// registers, serves until shutdown (RPC, SIGTERM/SIGINT, or the core going away), then
    /// drains, calls every plugin's shutdown hook, deregisters and removes its socket.
    /// Returns on a clean stop (exit 0); exits 1 when it cannot start.
    public func run() async {
        let options = ExtensionCommand.parseOrExit(Array(CommandLine.arguments.dropFirst())).options
        if options.printSpec {
            print(specJSON)
            return
        }
        if options.listPlugins {
            for p in router.all() { print("\(p.registry)\t\(p.name)") }
            return
        }
        do {
            _ = try await run(options: options, signals: true)
        } catch {
            let logger = state.withLock { $0.logger }
            logger.error("extension \(name) cannot start: \(describe(error))")
            exit(1)
        }
    }

    /// Runs with parsed options until stopped; returns why it stopped. Throws when it cannot start.
    ///
    /// A stop asked for during start-up (a signal, ``stop()``) is no error: it returns that reason.
    /// - Parameters:
    ///   - options: the command line's options (socket, timeouts, mode).
    ///   - signals: whether SIGTERM/SIGINT stop it gracefully; nil: ``ExtensionConfiguration/handleSignals``.
    /// - Returns: why the extension stopped.
    /// - Throws: ``ExtensionError``: ``ExtensionError/badSocketPath(_:)`` when the socket path is
    ///   unusable, ``ExtensionError/duplicatePlugin(registry:name:)`` when two plugins share a registry
    ///   and name, ``ExtensionError/invalidTable(_:)`` when the core would refuse a table's name or
    ///   schema, ``ExtensionError/coreUnavailable(_:)`` when no core answers within `--timeout` (with
    ///   `--supervised` it keeps waiting), ``ExtensionError/cannotListen(_:)`` when its own socket
    ///   cannot be bound, ``ExtensionError/registrationRefused(code:message:)`` when the core refuses it.
    @discardableResult
    package func run(options: ExtensionOptions, signals: Bool? = nil) async throws -> StopReason {
        try await start(options: options, signals: signals ?? configuration.handleSignals)
        return await waitUntilStopped()
    }

    /// Parses `arguments` (without the program name) and runs until stopped.
    /// - Parameter arguments: the command line after the program name (`--socket`, `--timeout`, …).
    /// - Returns: why the extension stopped.
    /// - Throws: ArgumentParser's error when `arguments` do not parse (a bad value such as
    ///   `--timeout abc`, or `--help`); then what ``run(options:signals:)`` throws.
    @discardableResult
    package func run(arguments: [String]) async throws -> StopReason {
        try await run(options: try ExtensionOptions.parse(arguments))
    }

    /// Waits for the core, registers and starts serving; returns once registered and listening.
    ///
    /// A stop asked for during start-up (a signal, ``stop()``) ends it without an error; the stop's
    /// reason is then what ``waitUntilStopped()`` returns.
    /// - Parameters:
    ///   - options: the command line's options (socket, timeouts, mode).
    ///   - signals: whether to install SIGTERM/SIGINT handlers that stop the extension gracefully.
    /// - Throws: ``ExtensionError``: ``ExtensionError/badSocketPath(_:)`` when the socket path is
    ///   unusable, ``ExtensionError/duplicatePlugin(registry:name:)`` when two plugins share a registry
    ///   and name, ``ExtensionError/invalidTable(_:)`` when the core would refuse a table's name or
    ///   schema, ``ExtensionError/coreUnavailable(_:)`` when no core answers within `--timeout` (with
    ///   `--supervised` it keeps waiting), ``ExtensionError/cannotListen(_:)`` when its own socket
    ///   cannot be bound, ``ExtensionError/registrationRefused(code:message:)`` when the core refuses it.
    public func start(options: ExtensionOptions, signals: Bool = false) async throws {
        var logger = configuration.logger ?? Logger(label: "osquery.extension.\(name)") { StreamLogHandler.standardError(label: $0) }
        if configuration.logger == nil { logger.logLevel = options.verbose ? .debug : .warning }
        do { try validateSocketPath(options.socket, leavingRoomForUUID: true) } catch {
            throw ExtensionError.badSocketPath("\(error)")
        }
        if let dup = router.firstDuplicate() { throw ExtensionError.duplicatePlugin(registry: dup.0, name: dup.1) }
        for case let table? in router.all().map(tableOf) {
            if let problem = table.schema.problem { throw ExtensionError.invalidTable(problem) }
        }
        // Registration calls pass their own deadlines; plugins querying back get osquery's 300 s.
        let core = OsqueryClient(socket: options.socket, connectTimeout: .seconds(2), callTimeout: .seconds(300))
        state.withLock {
            $0.options = options
            $0.logger = logger
            $0.core = core
            $0.earlyStop = nil
        }
        router.core = core
        router.onShutdownRPC = { [weak self] in self?.stopSink.yield(.shutdownRequested) }

        let waitFor: Duration = options.supervised ? .seconds(86400 * 365) : .seconds(max(options.timeout, 0.2))
        // Signals are taken from before the wait for the core: one that arrives while we
        // wait or register ends the start-up instead of killing us half-registered.
        let startLogger = logger
        let startup = Task { @Sendable [self] () async throws -> Void in
            do {
                if options.supervised {
                    // Waiting for good is the point of --supervised, but it must not look like a hang.
                    do {
                        try await core.waitUntilAvailable(timeout: .seconds(1))
                    } catch let error as OsqueryClientError {
                        guard case .coreUnavailable = error else { throw error }
                        startLogger.warning("no osquery core at \(options.socket) yet; waiting for one (--supervised)")
                        try await core.waitUntilAvailable(timeout: waitFor)
                    }
                } else {
                    try await core.waitUntilAvailable(timeout: waitFor)
                }
            } catch {
                throw ExtensionError.coreUnavailable("\(error)")
            }
            try await registerAndListen(core: core, logger: startLogger)
        }
        let stopFirst = state.withLock { s -> Bool in
            s.startup = startup
            s.running = true
            guard let pending = s.pendingStop else { return false }
            s.pendingStop = nil
            s.earlyStop = pending
            return true
        }
        if stopFirst { startup.cancel() }
        if signals {
            StopSignals.add(self) { [weak self] sig in self?.requestStop(.signal(sig)) }
        }
        let outcome = await startup.result
        let early = state.withLock { s -> StopReason? in
            s.startup = nil
            return s.earlyStop
        }
        if case .failure(let error) = outcome {
            if signals { StopSignals.remove(self) }
            guard let early else { throw error }
            // Stopped before it served anything: nothing to deregister or drain.
            logger.notice("stopping \(name) before it registered: \(early)")
            let waiters = state.withLock { s -> [CheckedContinuation<StopReason, Never>] in
                s.running = false
                s.stopReason = early
                defer { s.finished = [] }
                return s.finished
            }
            for w in waiters { w.resume(returning: early) }
            return
        }
        let liveness = Task { [weak self] () -> Void in await self?.livenessLoop() }
        state.withLock { $0.liveness = liveness }
        if let early { stopSink.yield(early) }
        Task { [weak self] in
            guard let self else { return }
            for await reason in self.stopStream {
                await self.shutdown(reason)
                break
            }
        }
    }

    /// A stop during start-up cancels the start-up; after it, the stop goes to the shutdown task.
    /// Before any start, it is kept for the next start-up (a service group may shut down first).
    func requestStop(_ reason: StopReason) {
        enum Action { case cancel(Task<Void, any Error>), kept, yield }
        let action = state.withLock { s -> Action in
            guard let startup = s.startup else {
                guard s.running else {
                    s.pendingStop = reason
                    return .kept
                }
                return .yield
            }
            if s.earlyStop == nil { s.earlyStop = reason }
            return .cancel(startup)
        }
        switch action {
        case .cancel(let startup): startup.cancel()
        case .kept: break
        case .yield: stopSink.yield(reason)
        }
    }

    /// Asks the extension to stop gracefully (as SIGTERM does).
    public func stop() { requestStop(.stopped) }

    /// Waits until the extension has stopped and cleaned up.
    /// - Returns: why it stopped.
    public func waitUntilStopped() async -> StopReason {
        await withCheckedContinuation { c in
            let done: StopReason? = state.withLock { s in
                if let r = s.stopReason, !s.running { return r }
                s.finished.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    /// Adds a plugin while running (the extension re-registers with the new set). A plugin of the
    /// same registry and name is replaced. When not running, the plugin is served from the next start.
    /// - Parameter plugin: the plugin to serve.
    /// - Throws: ``ExtensionError/cannotListen(_:)``, ``ExtensionError/coreUnavailable(_:)`` or
    ///   ``ExtensionError/registrationRefused(code:message:)`` when the re-registration fails.
    public func add(_ plugin: any ExtensionPlugin) async throws {
        router.add(plugin)
        try await reregisterIfRunning()
    }

    /// Removes a plugin while running (the extension re-registers without it).
    /// - Parameters:
    ///   - registry: the plugin's registry (`table`, `logger`, …).
    ///   - name: the plugin's name.
    /// - Throws: ``ExtensionError/cannotListen(_:)``, ``ExtensionError/coreUnavailable(_:)`` or
    ///   ``ExtensionError/registrationRefused(code:message:)`` when the re-registration fails.
    public func remove(registry: String, name: String) async throws {
        router.remove(registry: registry, name: name)
        try await reregisterIfRunning()
    }

    // MARK: - Internals

    /// How long one registration call may wait: a core that is up answers at once, a busy one
    /// within its own call timeouts.
    static let registrationTimeout = Duration.seconds(30)
    /// How long the deregistration of an old uuid may wait: it is tidying only, the core reaps a
    /// stale uuid by itself.
    static let deregistrationTimeout = Duration.seconds(5)

    func reregisterIfRunning() async throws {
        let (core, logger, running) = state.withLock { ($0.core, $0.logger, $0.running) }
        guard running, let core else { return }
        router.registrationEpoch.add(1, ordering: .sequentiallyConsistent)
        defer { router.registrationEpoch.add(1, ordering: .sequentiallyConsistent) }
        let old = uuid
        if old != 0 { _ = try? await core.deregisterExtension(uuid: old, timeout: Self.deregistrationTimeout) }
        try await registerAndListen(core: core, logger: logger)
    }

    func registerAndListen(core: OsqueryClient, logger: Logger) async throws {
        let (options, oldServer) = state.withLock { ($0.options, $0.server) }
        let info = InternalExtensionInfo(
            name: ThriftString(name), version: ThriftString(version),
            sdkVersion: ThriftString(configuration.sdkVersion), minSDKVersion: ThriftString(configuration.minSDKVersion))
        // Listen first, under a temporary name, and move to `<socket>.<uuid>`
        // once registered: a core may call us the moment registration returns.
        let staging = "\(options.socket).t\(UInt16.random(in: 0...9999))"
        let server: RPCServer
        do {
            server = try await RPCServer.start(
                path: staging, service: .extension(router), limits: options.serverLimits(over: configuration.serverLimits),
                logger: logger)
        } catch {
            throw ExtensionError.cannotListen("\(staging): \(error)")
        }
        let clock = ContinuousClock()
        let deadline = clock.now + configuration.duplicateRetryWindow
        var delay = Duration.milliseconds(100)
        var newUUID: Int64 = 0
        while true {
            let status: ExtensionStatus
            do {
                status = try await core.registerExtension(info: info, registry: router.registryPayload(), timeout: Self.registrationTimeout)
            } catch {
                await server.close()
                throw ExtensionError.coreUnavailable("registering with \(options.socket): \(error)")
            }
            if status.code == 0 {
                newUUID = status.uuid
                break
            }
            let message = status.message.lossyString
            if message.contains("Duplicate extension registered"), clock.now + delay < deadline {
                logger.notice("core says \"\(message)\"; retrying in \(delay)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
                continue
            }
            await server.close()
            throw ExtensionError.registrationRefused(code: status.code, message: message)
        }
        let path = "\(options.socket).\(newUUID)"
        router.uuid.store(newUUID, ordering: .relaxed)
        do {
            try server.move(to: path)
        } catch {
            await server.close()
            _ = try? await core.deregisterExtension(uuid: newUUID, timeout: Self.deregistrationTimeout)
            throw ExtensionError.cannotListen("\(path): \(error)")
        }
        state.withLock { $0.server = server }
        for case let table? in router.all().map(tableOf) { table.layout.notes.use(logger) }
        logger.notice("registered \(name) as uuid \(newUUID), listening on \(path)")
        if let oldServer, oldServer !== server { await oldServer.close() }
    }

    /// Stops accepting calls, deregisters, drains in-flight calls, runs every plugin's
    /// shutdown hook, stops the server (removing its socket file).
    func shutdown(_ reason: StopReason) async {
        let (logger, core, liveness) = state.withLock { ($0.logger, $0.core, $0.liveness) }
        // Losing the core ends the extension: said at the default level. A requested stop
        // (a signal, the core's shutdown call) is routine.
        if case .coreGone = reason {
            logger.warning("stopping \(name): \(reason)")
        } else {
            logger.notice("stopping \(name): \(reason)")
        }
        liveness?.cancel()
        router.draining.store(true, ordering: .sequentiallyConsistent)
        let me = uuid
        // Deregistration and the drain share one deadline, so that with the hooks' the whole stop
        // fits in the core's grace between its shutdown call and SIGKILL.
        let clock = ContinuousClock()
        let drainDeadline = clock.now + configuration.drainTimeout
        if me != 0, reason != .coreGone, reason != .deregistered, let core {
            // A core that is stopping answers at once or not at all (its socket is gone); a busy
            // one gets as long as in-flight calls do.
            _ = try? await core.deregisterExtension(uuid: me, timeout: configuration.drainTimeout)
        }
        while router.inFlight.load(ordering: .sequentiallyConsistent) > 0, clock.now < drainDeadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        let hookTimeout = configuration.shutdownHookTimeout
        await withTaskGroup(of: Void.self) { group in
            for plugin in router.all() {
                group.addTask {
                    _ = try? await runWithDeadline(hookTimeout, what: "\(plugin.registry) \(plugin.name): shutdown") {
                        await plugin.shutdown()
                        return true
                    }
                }
            }
        }
        let server = state.withLock { s -> RPCServer? in
            let server = s.server
            s.server = nil
            return server
        }
        await server?.close()
        core?.close()
        let waiters = state.withLock { s -> [CheckedContinuation<StopReason, Never>] in
            s.running = false
            s.stopReason = reason
            defer { s.finished = [] }
            return s.finished
        }
        StopSignals.remove(self)
        logger.notice("stopped \(name)")
        for w in waiters { w.resume(returning: reason) }
    }
}

/// The table a plugin serves: a ``Table``, or an ``EventTable``'s.
func tableOf(_ plugin: any ExtensionPlugin) -> Table? {
    (plugin as? Table) ?? (plugin as? EventTable)?.table
}
