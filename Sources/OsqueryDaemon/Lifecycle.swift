import Dispatch
import Foundation
import OsqueryEngine
import OsqueryManager
import ServiceLifecycle
import Synchronization
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

// osqueryd's worker on swift-service-lifecycle: the parts start one after another (each may
// end start-up with its own exit code), then run as `Service`s of one `ServiceGroup` whose
// order is the shutdown order, written once in `Daemon.runWorker`.

/// A part that is already running: its service waits for the group's shutdown, then stops it.
struct StoppingService: Service, CustomStringConvertible {
    let description: String
    let stop: @Sendable () async -> Void

    init(_ name: String, stop: @escaping @Sendable () async -> Void) {
        self.description = name
        self.stop = stop
    }

    func run() async {
        // Cancellation ends the wait too; the part is stopped either way.
        try? await gracefulShutdown()
        await stop()
    }
}

/// A flag one side raises and one task awaits; cancellation ends the wait.
final class Wakeup: Sendable {
    private let state = Mutex<(raised: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func raise() {
        let waiter = state.withLock { s in
            s.raised = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Lowers the flag; returns whether it was raised.
    func take() -> Bool {
        state.withLock { s in
            defer { s.raised = false }
            return s.raised
        }
    }

    /// Returns once the flag is raised (it stays raised), the task is cancelled, or `timeout` passed.
    func wait(timeout: Duration? = nil) async {
        guard let timeout else { return await waitRaised() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitRaised() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitRaised() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s in
                    if s.raised || Task.isCancelled { return true }
                    s.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume()
        }
    }
}

/// What ends the worker: a stop signal (0) or a fatal error's code; the first request wins.
final class StopRequest: Sendable {
    private let code = Mutex<Int32?>(nil)
    private let wakeup = Wakeup()

    func request(_ exitCode: Int32) {
        code.withLock { if $0 == nil { $0 = exitCode } }
        wakeup.raise()
    }

    var exitCode: Int32? { code.withLock { $0 } }

    /// The group's last service: it returns on a stop request, which shuts the group down.
    var service: ServiceGroupConfiguration.ServiceConfiguration {
        .init(service: StopService(request: self), successTerminationBehavior: .gracefullyShutdownGroup)
    }

    fileprivate func requested() async { await wakeup.wait() }
}

private struct StopService: Service, CustomStringConvertible {
    let request: StopRequest
    var description: String { "stop request" }

    func run() async {
        // During a shutdown begun elsewhere this service is the first asked to end.
        await cancelWhenGracefulShutdown { await request.requested() }
    }
}

/// SIGTERM/SIGINT (stop), SIGHUP (config reload) and the watchdog's SIGUSR1, taken on dispatch
/// signal sources from before start-up to the end, never in a signal handler. The group's own
/// signal handling would trap them only once the group runs, after start-up.
final class DaemonSignals: Sendable {
    static let trapped: [UnixSignal] = [.sigterm, .sigint, .sighup, .sigusr1]
    private let router: Task<Void, Never>

    /// Traps the signals and routes them until `cancel()`; returns once they are trapped.
    /// Called on the thread that then waits for the daemon (the only one that takes signals:
    /// libdispatch's threads, and so Swift's cooperative pool, block them).
    init(stop: StopRequest, hangup: Wakeup) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in Self.trapped { sigaddset(&set, signal.rawValue) }
        // Blocked while the sources are set up, so a signal arriving meanwhile waits for them
        // instead of being lost (or killing us half-started).
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // Returns once each source's registration ran, i.e. once libdispatch's handler is in.
        let signals = runBlocking { await UnixSignalsSequence(trapping: Self.trapped) }
        router = Task {
            for await signal in signals {
                switch signal {
                case .sighup:
                    StatusLog.info("SIGHUP: reloading the configuration")
                    hangup.raise()
                case .sigusr1:
                    // The watcher asks a worker over its limits to stop now;
                    // the running query stays marked, so the next worker denylists it.
                    StatusLog.warning("osqueryd worker stopping at the watchdog's request")
                    _exit(1)
                default:
                    stop.request(0)
                }
            }
        }
        // libdispatch installs its handler when a source's registration reaches its manager
        // thread, after resume() returns; unblocking before that would let a signal meet the
        // default action (SIGTERM, SIGHUP: death without cleanup). UnixSignalsSequence's init
        // awaits each source's registration handler, which libdispatch calls after installing
        // its handler; this check keeps that true should a later version stop waiting.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(2)
        for signal in Self.trapped {
            var action = sigaction()
            while sigaction(signal.rawValue, nil, &action) == 0, action.__sigaction_handler.sa_handler == nil, clock.now < deadline {
                usleep(500)
            }
        }
        // A parent may have started us with these signals blocked.
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    func cancel() { router.cancel() }
}

/// Runs blocking work (a thread join, a drain with a grace period) off Swift's cooperative pool.
func offCooperativePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: body()) }
    }
}
