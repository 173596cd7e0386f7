import Foundation
public import Logging
public import OsqueryEngine
import OsqueryProtocol
import ThriftCodec
import Synchronization

/// The core's extension manager: serves `ExtensionManager` on the extensions
/// socket, keeps registered extensions' plugins in the registry, and removes
/// extensions that stop answering.
///
/// Better than osquery: every call to an extension has a deadline, the watcher
/// checks all extensions at once (one hung extension delays nobody), the socket
/// is 0600 and callers' uids are checked.
public final class ExtensionManager: Sendable {
    public let socketPath: String
    public let service: ManagerService
    public let queries: QueryThreads
    let server: RPCServer
    let watcher: Task<Void, Never>
    let logger: Logger

    /// How long one call to an extension may take when `--thrift_timeout` is
    /// left at its default: osquery's 300 s would let one hung extension hold a
    /// query for five minutes.
    public static let defaultCallTimeout: Duration = .seconds(30)

    /// Starts serving at `socketPath` (usually `--extensions_socket`).
    public static func start(
        socketPath: String, registry: PluginRegistry, flags: Flags,
        queryThreads: Int = 4, logger: Logger = Logger(label: "osquery.extensions")
    ) async throws -> ExtensionManager {
        try validateSocketPath(socketPath, leavingRoomForUUID: true)
        let directory = (socketPath as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw ManagerError("Extension socket directory missing: \(directory)")
        }
        removeExtensionSockets(socketPath)
        let callTimeout = flags.isDefault(.thriftTimeout)
            ? defaultCallTimeout : .seconds(max(1, flags[.thriftTimeout]))
        let caller = ExtensionCaller(
            managerSocket: socketPath, timeout: callTimeout, maxReplyCells: Int(clamping: flags[.extensionsMaxReplyCells]))
        let queries = QueryThreads(count: queryThreads, registry: registry, flags: flags)
        let service = ManagerService(registry: registry, flags: flags, queries: queries, caller: caller, logger: logger)
        let server = try await RPCServer.start(
            path: socketPath, service: .manager(service), limits: serverLimits(flags), logger: logger)
        let interval = seconds(flags[.extensionsInterval], minimum: 0.2)
        let timeout = seconds(flags[.extensionsTimeout], minimum: 0.2)
        let watcher = Task {
            await ExtensionWatcher(service: service, caller: caller, interval: interval, timeout: timeout, logger: logger).run()
        }
        return ExtensionManager(
            socketPath: socketPath, service: service, queries: queries, server: server, watcher: watcher, logger: logger)
    }

    init(
        socketPath: String, service: ManagerService, queries: QueryThreads, server: RPCServer, watcher: Task<Void, Never>,
        logger: Logger
    ) {
        self.socketPath = socketPath
        self.service = service
        self.queries = queries
        self.server = server
        self.watcher = watcher
        self.logger = logger
    }

    /// Stops: sends `shutdown()` to every registered extension (all at once,
    /// each with a short deadline), stops serving, and removes the manager's
    /// and the extensions' socket files.
    public func stop() async {
        watcher.cancel()
        let caller = service.caller
        await withTaskGroup(of: Void.self) { group in
            for uuid in service.uuids {
                group.addTask { try? await caller.shutdown(uuid: uuid, timeout: .seconds(2)) }
            }
        }
        await server.close()
        for uuid in service.uuids { service.remove(uuid: uuid, reason: "the core is stopping") }
        Self.removeExtensionSockets(socketPath)
        queries.stop()
    }

    /// Deletes stale `<socket>.*` files (extension sockets of an earlier run).
    static func removeExtensionSockets(_ socketPath: String) {
        let directory = (socketPath as NSString).deletingLastPathComponent
        let prefix = (socketPath as NSString).lastPathComponent + "."
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory) else {
            return
        }
        for name in names where name.hasPrefix(prefix) {
            let path = (directory as NSString).appendingPathComponent(name)
            var st = stat()
            if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
        }
    }

    /// The extensions socket's server limits, from the `--extensions_max_*` and
    /// `--extensions_*_timeout` flags (zero or less takes the default).
    static func serverLimits(_ flags: Flags) -> ServerLimits {
        let defaults = ServerLimits.default
        func value(_ key: UIntFlag, _ fallback: Int) -> Int {
            let v = flags[key]
            return v == 0 ? fallback : Int(clamping: v)
        }
        func seconds(_ key: UIntFlag, _ fallback: Duration) -> Duration {
            let v = flags[key]
            return v == 0 ? fallback : .seconds(Int64(clamping: v))
        }
        return ServerLimits(
            maxMessageSize: value(.extensionsMaxMessageSize, defaults.maxMessageSize),
            maxPipelinedCalls: value(.extensionsMaxPipelinedCalls, defaults.maxPipelinedCalls),
            idleTimeout: seconds(.extensionsIdleTimeout, defaults.idleTimeout),
            partialMessageTimeout: seconds(.extensionsPartialMessageTimeout, defaults.partialMessageTimeout),
            maxConnections: value(.extensionsMaxConnections, defaults.maxConnections))
    }

    /// osquery's interval flags are strings of seconds; fractions are accepted here too.
    static func seconds(_ text: String, minimum: Double) -> Duration {
        let value = Double(text.trimmingCharacters(in: .whitespaces)) ?? 0
        return .milliseconds(Int64(max(minimum, value) * 1000))
    }
}

public struct ManagerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Checks every registered extension each interval, all at once, and removes
/// those that stop answering. A new extension's first check is given the
/// `--extensions_timeout` grace to come up; after that one failed check
/// (socket gone or not writable, no connection, no reply within the timeout,
/// or a ping with code 1) removes it, as in osquery.
struct ExtensionWatcher: Sendable {
    let service: ManagerService
    let caller: ExtensionCaller
    let interval: Duration
    let timeout: Duration
    let logger: Logger

    func run() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            await withTaskGroup(of: Void.self) { group in
                for (uuid, seen) in service.snapshot() {
                    group.addTask { await check(uuid, seenAlive: seen) }
                }
            }
        }
    }

    /// How long a new extension's socket may refuse connections before its grace ends: a
    /// process that died after registering leaves its socket file behind, and waiting out
    /// `--extensions_timeout` for it would refuse its restarted self as a duplicate all that time
    /// (osquery removes it at its first failed ping). The settle time covers SDKs that bind at
    /// the final path and listen a moment later.
    static let refusingSettle = Duration.seconds(1)

    func check(_ uuid: ExtensionRouteUUID, seenAlive: Bool) async {
        if seenAlive {
            if await probe(uuid) == .alive { return }
            service.remove(uuid: uuid, reason: "it stopped answering pings")
            return
        }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var refusingSince: ContinuousClock.Instant?
        // The deadline is checked after each try, not before, so a watcher that got no
        // thread until the grace was over still tries once before removing anything.
        while !Task.isCancelled {
            switch await probe(uuid) {
            case .alive:
                service.markAlive(uuid)
                return
            case .refused:
                let since = refusingSince ?? clock.now
                refusingSince = since
                if clock.now - since >= Self.refusingSettle {
                    service.remove(uuid: uuid, reason: "nothing listens on its socket")
                    return
                }
            case .failed:
                refusingSince = nil
            }
            if clock.now >= deadline { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        if Task.isCancelled { return }
        service.remove(uuid: uuid, reason: "it did not answer within --extensions_timeout")
    }

    enum Probe { case alive, refused, failed }

    func probe(_ uuid: ExtensionRouteUUID) async -> Probe {
        guard access(caller.socketPath(uuid: uuid), W_OK) == 0 else { return .failed }
        do {
            // osquery counts only code 1 as a failed ping.
            return try await caller.ping(uuid: uuid, timeout: max(timeout, .seconds(1))).code != 1 ? .alive : .failed
        } catch {
            if case .connectionRefused = error { return .refused }
            return .failed
        }
    }
}
