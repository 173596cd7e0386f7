import Dispatch
import Logging
import OsqueryEngine
import OsqueryManager
import ServiceLifecycle
import Synchronization
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

/// osqueryi's background part on swift-service-lifecycle, as osqueryd's worker: the extension
/// manager and the extensions it launched run as a service of one `ServiceGroup`. The shell's
/// end or SIGTERM shuts the group down, which tells the extensions to shut down, stops the
/// processes osqueryi launched and removes its socket. SIGINT stays the shell's: it interrupts
/// the running statement.
final class ShellRuntime: Sendable {
    private let group: ServiceGroup
    private let done = DispatchSemaphore(value: 0)
    private let shellEnded = Atomic<Bool>(false)

    /// Starts the extensions runtime (nil with `--disable_extensions`) and its group.
    /// Called on the shell's thread, which may block.
    static func start(flags: Flags, registry: PluginRegistry) throws -> ShellRuntime? {
        guard let runtime = try ExtensionsRuntime.startBlocking(flags: flags, registry: registry, shell: true) else {
            return nil
        }
        return ShellRuntime(runtime)
    }

    private init(_ runtime: ExtensionsRuntime) {
        group = ServiceGroup(
            configuration: .init(
                services: [.init(service: runtime.service)], gracefulShutdownSignals: [.sigterm],
                logger: Logger(label: "osquery.shell")))
        // SIGTERM waits, blocked, until the group's handler is in: before that it would end
        // the process without the clean-up.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let saved = Self.terminalSettings()
        Task { [self] in
            try? await group.run()
            done.signal()
            // The group ended on its own: SIGTERM. The shell's thread may be in a read, so the
            // process ends here, as the signal's default action would have ended it.
            if !shellEnded.load(ordering: .acquiring) {
                if var saved { tcsetattr(0, TCSANOW, &saved) }
                signal(SIGTERM, SIG_DFL)
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, SIGTERM)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                kill(getpid(), SIGTERM)
            }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(2)
        var action = sigaction()
        while sigaction(SIGTERM, nil, &action) == 0, action.__sigaction_handler.sa_handler == nil, clock.now < deadline {
            usleep(500)
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The shell is done: stops the group and waits for it.
    func stop() {
        shellEnded.store(true, ordering: .releasing)
        let group = self.group
        Task { await group.triggerGracefulShutdown() }
        done.wait()
    }

    /// The terminal's settings when osqueryi started, to restore should SIGTERM end it mid-line.
    private static func terminalSettings() -> termios? {
        guard isatty(0) != 0 else { return nil }
        var settings = termios()
        return tcgetattr(0, &settings) == 0 ? settings : nil
    }
}
