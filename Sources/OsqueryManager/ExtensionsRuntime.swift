import Foundation
public import Logging
public import OsqueryEngine
import OsqueryProtocol
import Synchronization

/// Everything extension-related a core runs: the manager on the extensions
/// socket, the autoloaded and `--extension` processes under supervision, and
/// the waits osquery does at start-up (for launched extensions to register and
/// for `--extensions_require`). `osqueryi` and `osqueryd` both use it.
public final class ExtensionsRuntime: Sendable {
    public let manager: ExtensionManager
    public let supervisor: ExtensionSupervisor?
    let activation = Mutex<PluginActivation?>(nil)
    let logger: Logger

    init(manager: ExtensionManager, supervisor: ExtensionSupervisor?, logger: Logger) {
        self.manager = manager
        self.supervisor = supervisor
        self.logger = logger
    }

    /// What activating `--config_plugin` / `--logger_plugin` found.
    public var plugins: PluginActivation? { activation.withLock { $0 } }

    /// The socket path to serve. The shell's default is `~/.osquery/shell.em`
    /// (osquery's), and when that one is live another shell owns it, so a random
    /// number is appended, without a dot, as osquery does. When the home directory cannot be
    /// used, `$TMPDIR/osquery-<uid>` (`/tmp` by default) is, and only if it is this user's
    /// private directory (``privateDirectory(_:)``): in a directory anyone can write to, another
    /// user could have made it first.
    public static func socketPath(flags: Flags, shell: Bool) throws(ManagerError) -> String {
        try socketPath(flags: flags, shell: shell, home: nil, temporaryDirectory: nil)
    }

    /// ``socketPath(flags:shell:)`` with another home and temporary directory (ending in `/`)
    /// than the user's, for tests.
    package static func socketPath(
        flags: Flags, shell: Bool, home: String?, temporaryDirectory: String?
    ) throws(ManagerError) -> String {
        let configured = flags[.extensionsSocket]
        guard shell, flags.isDefault(.extensionsSocket) else { return configured }
        var directory = (home ?? FileManager.default.homeDirectoryForCurrentUser.path) + "/.osquery"
        if (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)) == nil
            || access(directory, W_OK) != 0
        {
            directory = (temporaryDirectory ?? NSTemporaryDirectory()) + "osquery-\(getuid())"
            try privateDirectory(directory)
        }
        let path = directory + "/shell.em"
        if unixSocketIsLive(path) { return path + String(UInt16.random(in: 0...UInt16.max)) }
        return path
    }

    /// Makes sure `path` is a directory only this user can use: created 0700 when missing;
    /// refused when it is a symbolic link, not a directory, owned by another user, or open to
    /// group or others in any way.
    static func privateDirectory(_ path: String) throws(ManagerError) {
        func refuse(_ why: String) -> ManagerError { ManagerError("Refusing the extensions socket directory \(path): \(why)") }
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw refuse(String(cString: strerror(errno))) }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            // O_DIRECTORY wins over O_NOFOLLOW (ENOTDIR for a link too): lstat only names it.
            var st = stat()
            if code == ELOOP || (lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK) {
                throw refuse("it is a symbolic link")
            }
            throw refuse(code == ENOTDIR ? "it is not a directory" : String(cString: strerror(code)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw refuse(String(cString: strerror(errno))) }
        if st.st_uid != getuid() { throw refuse("it is owned by uid \(st.st_uid)") }
        if st.st_mode & 0o077 != 0 {
            throw refuse("group or others may use it (mode \(String(st.st_mode & 0o7777, radix: 8)))")
        }
    }

    /// Starts the manager and the extensions. Returns nil with
    /// `--disable_extensions`.
    /// With `loadConfig` false (osqueryd, whose own loader reads the config),
    /// an extension's config plugin is waited for but not asked for its config.
    public static func start(
        flags: Flags, registry: PluginRegistry, shell: Bool, loadConfig: Bool = true,
        logger: Logger = Logger(label: "osquery.extensions")
    ) async throws -> ExtensionsRuntime? {
        guard !flags[.disableExtensions] else { return nil }
        let path = try socketPath(flags: flags, shell: shell)
        // osquery's shell assigns the path it picked to the flag: `osquery_flags`, the core's row
        // of `osquery_extensions` and the extensions' options then name the socket it listens on.
        if path != flags[.extensionsSocket] { flags.assign(.extensionsSocket, path) }
        let manager = try await ExtensionManager.start(socketPath: path, registry: registry, flags: flags, logger: logger)
        let allowUnsafe = flags[.allowUnsafe]
        var paths: [String] = []
        let autoload = flags[.extensionsAutoload]
        if !autoload.isEmpty, FileManager.default.fileExists(atPath: autoload) {
            do {
                paths += try Autoload.load(file: autoload, allowUnsafe: allowUnsafe, logger: logger).accepted
            } catch {
                logger.warning("\(error)")
            }
        }
        // `--extension` skips discovery checks; every launch still checks safety.
        let single = flags[.extension]
        if !single.isEmpty { paths.append(single) }
        var supervisor: ExtensionSupervisor?
        if !paths.isEmpty {
            let s = ExtensionSupervisor(
                paths: paths,
                configuration: .init(
                    socket: path, timeout: flags[.extensionsTimeout],
                    interval: flags[.extensionsInterval], verbose: flags[.verbose],
                    allowUnsafe: allowUnsafe),
                logger: logger)
            s.start()
            supervisor = s
        }
        let runtime = ExtensionsRuntime(manager: manager, supervisor: supervisor, logger: logger)
        let timeout = ExtensionManager.seconds(flags[.extensionsTimeout], minimum: 0.2)
        if !paths.isEmpty {
            // Managed extensions get up to --extensions_timeout to register, so a
            // query given on the command line can already use their tables.
            let launched = paths.count
            await runtime.waitFor(timeout: timeout) { $0.count >= launched }
        }
        for name in flags[.extensionsRequire].split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
        where !name.isEmpty {
            let found = await runtime.waitFor(timeout: timeout) { $0.contains(name) }
            if !found {
                // osquery logs this and keeps running; so do we.
                logger.error("Required extension not found or not loaded: \(name)")
            }
        }
        // Plugins only wait for extensions that the core manages itself; a
        // manually started extension must already be registered, as in osquery.
        let activation = await PluginActivation.activate(
            service: manager.service, registry: registry, flags: flags, binary: shell ? "osqueryi" : "osqueryd",
            timeout: paths.isEmpty ? .zero : timeout, loadConfig: loadConfig, logger: logger)
        runtime.activation.withLock { $0 = activation }
        return runtime
    }

    /// Waits until `condition` holds for the registered extension names, or the timeout.
    @discardableResult
    func waitFor(timeout: Duration, _ condition: @Sendable ([String]) -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let names = manager.service.registeredExtensions().values.map(\.name.lossyString)
            if condition(names) { return true }
            if clock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops in osquery's order: `shutdown()` to each extension and the
    /// manager's socket files, then SIGTERM (and SIGKILL after `grace`) to the
    /// processes we launched.
    public func stop(grace: Duration = .seconds(5)) async {
        plugins?.stop()
        await manager.stop()
        await supervisor?.stop(grace: grace)
    }

    /// Runs `start` from synchronous code on a thread that may block (the
    /// shell's main thread), never from the cooperative pool.
    public static func startBlocking(
        flags: Flags, registry: PluginRegistry, shell: Bool, loadConfig: Bool = true
    ) throws -> ExtensionsRuntime? {
        try runBlocking { () async throws in
            try await start(flags: flags, registry: registry, shell: shell, loadConfig: loadConfig)
        }
    }

    public func stopBlocking(grace: Duration = .seconds(5)) {
        runBlocking { await self.stop(grace: grace) }
    }
}
