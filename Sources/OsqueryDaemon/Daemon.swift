import Foundation
import Logging
public import OsqueryEngine
import OsqueryEvents
import OsqueryManager
import OsqueryProtocol
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// osqueryd (core.md §2.1): the watcher/worker split, pidfile, store,
/// extensions, config, loggers, the scheduler and the config refresher, and
/// an orderly stop on SIGTERM/SIGINT (SIGHUP reloads the config).
public final class Daemon: Sendable {
    let flags: Flags
    let registry: PluginRegistry
    let err: @Sendable (String) -> Void
    let out: @Sendable (String) -> Void
    /// Runs after each config load, once its options are in the flags.
    let configApplied: @Sendable () -> Void

    public init(
        flags: Flags, registry: PluginRegistry, out: @escaping @Sendable (String) -> Void,
        err: @escaping @Sendable (String) -> Void, configApplied: @escaping @Sendable () -> Void = {}
    ) {
        self.flags = flags
        self.registry = registry
        self.out = out
        self.err = err
        self.configApplied = configApplied
    }

    /// Runs the daemon; returns its exit code.
    public func run() -> Int32 {
        if flags[.databaseDump] {
            return dumpDatabase()
        }
        if flags[.configCheck] || flags[.configDump], flags[.configPlugin] == "filesystem" {
            return configCommand(source: FilesystemConfigSource(path: flags[.configPath]))
        }
        if Watchdog.isWorker {
            // The watcher holds the pidfile.
            Watchdog.exitWhenWatcherDies()
            return runWorker()
        }
        // The launched process holds the pidfile, whether it becomes the
        // watcher or does the work itself (--disable_watchdog).
        var pidfile: Pidfile?
        if !flags[.ephemeral] {
            do {
                pidfile = try Pidfile.acquire(path: flags[.pidfile], force: flags[.force])
            } catch {
                err("Error: \(error.message)\n")
                return 1
            }
        }
        defer { pidfile?.release() }
        return flags[.disableWatchdog] ? runWorker() : runWatcher()
    }

    /// The watcher: supervises worker processes.
    private func runWatcher() -> Int32 {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let watcher = Watcher(
            executable: executable, arguments: CommandLine.arguments, limits: WatchdogLimits.from(flags),
            alarmTimeout: flags[.alarmTimeout], debug: flags[.enableWatchdogDebug])
        return watcher.run()
    }

    private func dumpDatabase() -> Int32 {
        do {
            let store = try DaemonStore.open(path: flags[.databasePath])
            out(try store.dump())
            return 0
        } catch {
            err("Error: \(error.message)\n")
            return 1
        }
    }

    private func configCommand(source: any ConfigSource) -> Int32 {
        if flags[.configCheck] {
            return ConfigCommands.check(flags: flags, source: source, err: { self.err($0 + "\n") })
        }
        return ConfigCommands.dump(flags: flags, source: source, out: out, err: { self.err($0 + "\n") })
    }

    private func runWorker() -> Int32 {
        let stop = StopRequest()
        let hangup = Wakeup()
        let signals = DaemonSignals(stop: stop, hangup: hangup)
        defer { signals.cancel() }
        return work(stop: stop, hangup: hangup)
    }

    /// Starts the parts one after another on this thread (each may end start-up with its exit
    /// code; several block, so not on the cooperative pool), then runs them as one ServiceGroup
    /// until a stop signal, a fatal error or the schedule's end.
    private func work(stop: StopRequest, hangup: Wakeup) -> Int32 {
        let catastrophic: Int32 = Watchdog.isWorker ? 78 : 1

        // The store: on disk unless --ephemeral or --disable_database.
        let store: DaemonStore
        if flags[.ephemeral] || flags[.disableDatabase] {
            store = DaemonStore.inMemory()
        } else {
            do {
                store = try DaemonStore.open(path: flags[.databasePath])
            } catch {
                err("Error: \(error.message)\n")
                return catastrophic
            }
        }

        // Extensions first: config and logger plugins may live in them.
        let socket = flags[.extensionsSocket]
        let directory = (socket as NSString).deletingLastPathComponent
        if !flags[.disableExtensions], !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            try? FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let extensions: ExtensionsRuntime?
        do {
            // The daemon's ConfigLoader asks the config plugin; the runtime only waits for it.
            extensions = try ExtensionsRuntime.startBlocking(flags: flags, registry: registry, shell: false, loadConfig: false)
        } catch {
            err("Error: \(error)\n")
            return 78
        }
        let caller = extensions.map { ExtensionCaller(managerSocket: $0.manager.socketPath, timeout: ExtensionManager.defaultCallTimeout) }

        // Ends start-up early; of the parts, only the extensions run yet.
        func abandon(_ code: Int32) -> Int32 {
            extensions?.stopBlocking()
            return code
        }

        // The TLS remote API (issue 20), when a plugin in use speaks it.
        var remote: RemoteAPI?
        if RemoteAPI.isNeeded(flags: flags) {
            do {
                let transport = try RemoteTransport(flags: flags)
                let identity = HostIdentity(flags: flags, store: store)
                let (flags, registry) = (self.flags, self.registry)
                remote = RemoteAPI(
                    transport: transport, flags: flags, store: store, hostIdentifier: { identity.current() },
                    hostDetails: { HostDetails.collect(registry: registry, flags: flags) })
            } catch {
                err("Error: \(error.message)\n")
                return abandon(78)
            }
        }

        // The config source: the filesystem plugin, tls, or an extension's.
        let configName = flags[.configPlugin]
        let source: any ConfigSource
        if configName == "filesystem" {
            source = FilesystemConfigSource(path: flags[.configPath])
        } else if configName == "tls", let remote {
            source = TLSConfigSource(api: remote)
        } else if let item = registry.item(registry: "config", name: configName), item.ownerUUID != 0, let caller {
            source = ExtensionConfigSource(caller: caller, uuid: ExtensionRouteUUID(item.ownerUUID), plugin: configName)
        } else {
            err("Error: config plugin \(configName) is not available\n")
            return abandon(78)
        }
        if flags[.configCheck] || flags[.configDump] {
            return abandon(configCommand(source: source))
        }

        // The config before the loggers, as osquery orders them: its options (logger_path, the
        // rotation and status levels) say where the loggers write. Status lines logged meanwhile
        // reach the loggers' files once they exist.
        let early = EarlyStatusLines()
        early.install()
        let configuration = DaemonConfiguration(source: source, flags: flags, registry: registry)
        configuration.reload(initial: true)
        configApplied()

        // events (issue 17): publishers start after the store and the config, and stop before the store.
        let events = EventsRuntime.make(flags: flags, registry: registry, database: store, isDaemon: true)
        let configureEvents: @Sendable () -> Void = {
            events.configure(configuration.loader.current?.eventsConfiguration ?? EventsConfiguration())
        }
        configureEvents()

        // Loggers; a missing one is fatal, as in osquery.
        let loggers: LoggerSet
        do {
            var tls: TLSLogger?
            if let remote, loggerNames(self.flags).contains("tls") {
                tls = TLSLogger(api: remote, store: store, flags: self.flags, hostIdentifier: { remote.hostIdentifier() })
            }
            loggers = try LoggerSet.make(flags: flags, registry: registry, caller: caller, tls: tls)
            tls?.start()
        } catch {
            StatusLog.setLineSink(nil)
            err("Error: \(error.message)\n")
            return abandon(error.exitCode)
        }
        // Asked again per run, not fixed now: a config reload may still change it.
        let hostIdentity = HostIdentity(flags: flags, store: store)
        loggers.installStatusLogging(flags: flags, hostIdentifier: hostIdentity.current(), earlier: early)

        let pipeline = ResultPipeline(store: store, loggers: loggers, flags: flags)
        pipeline.recover()

        let flags = self.flags
        let scheduler = Scheduler(
            store: store, registry: registry, flags: flags,
            record: { query, results, context throws(DaemonError) in
                // osquery_schedule's output_size: osquery's measure of the rows, not of the log lines.
                _ = try pipeline.record(query, results, context: context)
                return ResultPipeline.outputSize(results)
            },
            context: { unixTime, decorations in
                LogContext(
                    hostIdentifier: hostIdentity.current(),
                    unixTime: unixTime, calendarTime: CalendarTime.string(unixTime: unixTime), decorations: decorations)
            },
            onFatal: { error in
                StatusLog.error("\(error.message)")
                stop.request(error.exitCode)
            })

        // The carves table, before anything may query it (osquery has it with or without a carver).
        Carver(api: remote, store: store, flags: flags).register(into: registry)
        // distributed_plugin=tls: the daemon polls the server itself, on query threads of its own.
        var distributed: Task<Void, Never>?
        if let remote, !flags[.disableDistributed], flags[.distributedPlugin] == "tls" {
            let loop = DistributedLoop(
                source: TLSDistributedSource(api: remote), queries: QueryThreads(count: 1, registry: registry, flags: flags),
                interval: .seconds(Int64(clamping: max(1, flags[.distributedInterval]))),
                logger: Logger(label: "osquery.distributed"))
            distributed = Task { await loop.run() }
        }

        let registry = self.registry
        ScheduleTables.register(into: registry, scheduler: { scheduler }, packs: { configuration.packStatus() })
        scheduler.loadCrashState(knownQueries: configuration.allQueries())
        scheduler.update(configuration.definition())
        events.start()
        scheduler.start(onFinished: { stop.request(0) })
        StatusLog.info("osqueryd started, extensions socket \(extensions?.manager.socketPath ?? "(disabled)")")

        // The shutdown order, written once: the group stops its services last to first.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: StoppingService("store") { withExtendedLifetime(store) {} }),
            .init(service: StoppingService("events") { await offCooperativePool { events.stop() } }),
        ]
        if let remote {
            services.append(.init(service: StoppingService("tls transport") { await offCooperativePool { remote.transport.shutdown() } }))
        }
        if let extensions {
            services.append(.init(service: extensions.service))
        }
        services += [
            .init(service: StoppingService("loggers") { await offCooperativePool { loggers.stop() } }),
            // Before the loggers stop: loggers that work get a few seconds to take what is
            // queued; the rest waits in the outbox for the next start.
            .init(service: StoppingService("result pipeline") { await offCooperativePool { pipeline.stop(grace: 5) } }),
            .init(
                service: StoppingService("scheduler") {
                    StatusLog.info("osqueryd stopping")
                    let graceSeconds = max(10, flags[.alarmTimeout])
                    if await !offCooperativePool({ scheduler.stop(grace: .seconds(graceSeconds)) }) {
                        StatusLog.error("The scheduler did not stop within \(graceSeconds) s; exiting anyway")
                        _exit(stop.exitCode ?? 1)
                    }
                    ScheduleTables.register(into: registry, scheduler: nil, packs: nil)
                }),
            .init(
                service: ConfigRefresher(
                    configuration: configuration, scheduler: scheduler, hangup: hangup,
                    applied: { [configApplied] in
                        configApplied()
                        configureEvents()
                    })),
        ]
        if let distributed { services.append(.init(service: StoppingService("distributed") { distributed.cancel() })) }
        // First to stop: retries and back-off waits of the TLS plugins end at once.
        if let remote { services.append(.init(service: StoppingService("tls waits") { remote.stopWaiting() })) }
        services += [
            stop.service,
        ]
        let group = ServiceGroup(
            configuration: .init(services: services, logger: Logger(label: "osquery.daemon")))
        return runBlocking {
            do {
                try await group.run()
            } catch {
                StatusLog.error("osqueryd: \(error)")
                return stop.exitCode ?? 1
            }
            return stop.exitCode ?? 0
        }
    }
}

/// Reloads the config on SIGHUP or when --config_refresh (or the discovery cache) says so,
/// and gives the scheduler what changed.
struct ConfigRefresher: Service, CustomStringConvertible {
    let configuration: DaemonConfiguration
    let scheduler: Scheduler
    let hangup: Wakeup
    let applied: @Sendable () -> Void
    var description: String { "config refresher" }

    func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let wait = configuration.secondsUntilRefresh()
                await hangup.wait(timeout: .milliseconds(Int(min(wait, 60) * 1000)))
                if Task.isCancelled { break }
                // A reload asks the config plugin, perhaps an extension: off the cooperative pool.
                await offCooperativePool { refresh(hangup: hangup.take()) }
            }
        }
    }

    private func refresh(hangup: Bool) {
        if hangup || configuration.secondsUntilRefresh() <= 0 {
            if configuration.reload(initial: false) || hangup {
                applied()
                scheduler.update(configuration.definition())
            }
        } else if configuration.discoveryChanged() {
            scheduler.update(configuration.definition())
        }
    }
}

/// The config as the daemon uses it: the loader, the refresh timing
/// (`--config_refresh`, `--config_accelerated_refresh` after a failure),
/// pack discovery on a database of its own, and what the scheduler and
/// osquery_packs are given.
final class DaemonConfiguration: Sendable {
    let loader: ConfigLoader
    let flags: Flags
    let registry: PluginRegistry
    let discovery: PackDiscovery
    private let state = Mutex<(nextRefresh: Double, active: [String])>((0, []))

    init(source: any ConfigSource, flags: Flags, registry: PluginRegistry) {
        self.loader = ConfigLoader(source: source, flags: flags)
        self.flags = flags
        self.registry = registry
        let database = DiscoveryDatabase(registry: registry, flags: flags)
        self.discovery = PackDiscovery(refreshInterval: { flags[.packRefreshInterval] }) { sql in
            database.hasRows(sql)
        }
    }

    /// Loads (or refreshes) the config; true when it changed.
    @discardableResult
    func reload(initial: Bool) -> Bool {
        var changed = false
        var failed = false
        do {
            if initial || loader.current == nil {
                try loader.load()
                changed = true
            } else {
                changed = try loader.refresh() != nil
            }
            if changed {
                discovery.reset()
                loader.current?.registerAutoTables(registry: registry, flags: flags)
                loader.current?.applyTableSections(registry: registry)
            }
        } catch {
            failed = true
            StatusLog.error("Error reading config: \(error.message)")
        }
        let wait = loader.refreshDelay(lastAttemptFailed: failed)
        state.withLock { $0.nextRefresh = wait > 0 ? Scheduler.realNow() + Double(wait) : .infinity }
        return changed
    }

    /// Seconds until the next refresh is due (infinity when off).
    func secondsUntilRefresh() -> Double {
        state.withLock { $0.nextRefresh } - Scheduler.realNow()
    }

    func definition() -> ScheduleDefinition {
        guard let config = loader.current else { return ScheduleDefinition() }
        let queries = config.scheduledQueries(host: HostFacts.current(), discovery: discovery)
        state.withLock { $0.active = queries.map(\.name) }
        return ScheduleDefinition(
            queries: queries, loadDecorators: config.decorators.load, alwaysDecorators: config.decorators.always,
            intervalDecorators: config.decorators.interval, views: config.views)
    }

    /// Whether pack discovery now gives a different set of queries.
    func discoveryChanged() -> Bool {
        guard let config = loader.current else { return false }
        let names = config.scheduledQueries(host: HostFacts.current(), discovery: discovery).map(\.name)
        return state.withLock { $0.active } != names
    }

    /// Every query of every pack, active or not (crash denylisting needs their options).
    func allQueries() -> [ScheduledQuery] {
        loader.current?.packs.flatMap(\.queries) ?? []
    }

    func packStatus() -> [PackStatus] {
        guard let config = loader.current else { return [] }
        let host = HostFacts.current()
        let active = Set(config.activePacks(host: host, discovery: discovery).map { $0.source + "\u{0}" + $0.name })
        return config.packs.map { pack in
            let stats = discovery.stats(pack: pack.name, source: pack.source)
            return PackStatus(
                name: pack.name, platform: pack.platform, version: pack.version, shard: pack.shard,
                discoveryCacheHits: stats?.hits ?? 0, discoveryExecutions: stats?.executions ?? 0,
                active: active.contains(pack.source + "\u{0}" + pack.name))
        }
    }
}

/// A database for discovery queries, used by one thread at a time.
final class DiscoveryDatabase: @unchecked Sendable {  // every use holds `lock`
    private let lock = NSLock()
    private var database: Database?
    private let registry: PluginRegistry
    private let flags: Flags

    init(registry: PluginRegistry, flags: Flags) {
        self.registry = registry
        self.flags = flags
    }

    func hasRows(_ sql: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        do {
            if database == nil { database = try Database(registry: registry, flags: flags) }
            database!.refreshTables()
            return try database!.execute(sql).rowCount > 0
        } catch {
            StatusLog.warning("Pack discovery query failed: \(sql): \(error)")
            return false
        }
    }
}

/// The names in `--logger_plugin`.
func loggerNames(_ flags: Flags) -> [String] {
    flags[.loggerPlugin].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
}
