import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

@Suite struct LifecycleTests {
    /// A stop request (a signal, a fatal error) shuts the parts down last to first, as the
    /// services are listed, and the first request's exit code is the one kept.
    @Test func aStopRequestStopsThePartsInReverseOrderKeepingTheFirstCode() async throws {
        let stopped = Mutex<[String]>([])
        let stop = StopRequest()
        let parts = ["store", "extensions", "loggers", "scheduler"].map { name in
            ServiceGroupConfiguration.ServiceConfiguration(
                service: StoppingService(name) { stopped.withLock { $0.append(name) } })
        }
        let group = ServiceGroup(configuration: .init(services: parts + [stop.service], logger: Logger(label: "test.lifecycle")))
        let running = Task { try await group.run() }
        stop.request(78)
        stop.request(0)
        try await running.value
        #expect(stopped.withLock { $0 } == ["scheduler", "loggers", "extensions", "store"])
        #expect(stop.exitCode == 78)
    }

    /// A raised wakeup is seen by a later wait and stays raised until taken; cancellation
    /// ends a wait that nothing raises.
    @Test func wakeupKeepsARaiseForTheNextWaitAndCancellationEndsAWait() async {
        let wakeup = Wakeup()
        wakeup.raise()
        await wakeup.wait()
        await wakeup.wait(timeout: .seconds(3600))
        #expect(wakeup.take())
        #expect(!wakeup.take())
        let waiting = Task { await wakeup.wait() }
        waiting.cancel()
        await waiting.value
        #expect(!wakeup.take())
    }
}
