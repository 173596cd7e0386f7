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
/// end, SIGTERM or SIGHUP (its terminal closed) shut the group down, which tells the extensions
/// to shut down, stops the processes osqueryi launched and removes its sockets; then the signal
/// ends the shell as its default action would have. SIGINT stays the shell's: it interrupts the
/// running statement.
final class ShellRuntime: Sendable {
    private static let trapped: [UnixSignal] = [.sigterm, .sighup]
    private let group: ServiceGroup
    private let done = DispatchSemaphore(value: 0)
    private let ending = EndingState()
    private let router: Task<Void, Never>

    private enum Ending { case shell, signal(Int32) }

    /// What ends the group first: the shell or a signal.
    private final class EndingState: Sendable {
        private let value = Mutex<Ending?>(nil)
        /// Records `reason` unless something ended the group already; returns whether it was first.
        func claim(_ reason: Ending) -> Bool {
            value.withLock { e in
                if e != nil { return false }
                e = reason
                return true
            }
        }
        var signal: Int32? { value.withLock { if case .signal(let n) = $0 { n } else { nil } } }
    }

    /// Starts the extensions runtime (nil with `--disable_extensions`) and its group.
    /// Called on the shell's thread, which may block.
    static func start(flags: Flags, registry: PluginRegistry) throws -> ShellRuntime? {
        guard let runtime = try ExtensionsRuntime.startBlocking(flags: flags, registry: registry, shell: true) else {
            return nil
        }
        return ShellRuntime(runtime)
    }

    private init(_ runtime: ExtensionsRuntime) {
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: runtime.service)], logger: Logger(label: "osquery.shell")))
        self.group = group
        // Blocked until the handlers are in: before that a signal would end the process
        // without the clean-up. Only this thread takes signals (libdispatch's block them).
        var set = sigset_t()
        sigemptyset(&set)
        for signal in Self.trapped { sigaddset(&set, signal.rawValue) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // Returns once libdispatch's handlers are installed.
        let signals = runBlocking { await UnixSignalsSequence(trapping: Self.trapped) }
        let ending = self.ending
        router = Task {
            for await signal in signals {
                if ending.claim(.signal(signal.rawValue)) { await group.triggerGracefulShutdown() }
            }
        }
        let saved = Self.terminalSettings()
        Task { [done, ending] in
            try? await group.run()
            done.signal()
            // A signal ended the group: the shell's thread may be in a read, so the signal
            // ends the process here, by its default action.
            if let number = ending.signal {
                if var saved { tcsetattr(0, TCSANOW, &saved) }
                signal(number, SIG_DFL)
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, number)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                kill(getpid(), number)
            }
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The shell is done: stops the group and waits for it.
    func stop() {
        if ending.claim(.shell) {
            let group = self.group
            Task { await group.triggerGracefulShutdown() }
        }
        done.wait()
        router.cancel()
    }

    /// The terminal's settings when osqueryi started, to restore should SIGTERM end it mid-line.
    private static func terminalSettings() -> termios? {
        guard isatty(0) != 0 else { return nil }
        var settings = termios()
        return tcgetattr(0, &settings) == 0 ? settings : nil
    }
}
