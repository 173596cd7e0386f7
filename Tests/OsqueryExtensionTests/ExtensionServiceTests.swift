import Testing
import Logging
import ServiceLifecycle
import OsqueryExtension
import OsqueryExtensionTesting

/// A service that runs until the group shuts down, standing for the user's own.
private struct Idle: Service {
    func run() async throws { try await gracefulShutdown() }
}

@Suite struct ExtensionServiceTests {
    /// In a user's ServiceGroup, the extension serves, and the group's graceful shutdown
    /// deregisters it and removes its socket; the other services stop too.
    @Test func groupShutdownDeregistersAndRemovesTheSocket() async throws {
        let core = try await FakeCore.start()
        let ext = Extension("svc_ext", plugins: [helloTable("svc_t")])
        let group = ServiceGroup(
            services: [Idle(), ext.service(options: try options(core.socket))],
            logger: Logger(label: "test.extension-service"))
        let running = Task { try await group.run() }
        let uuid = try await core.waitForExtension(named: "svc_ext", timeout: .seconds(60))
        #expect(try await OsqueryClient(socket: core.socket).query("select * from svc_t").count == 2)
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(core.registrations.isEmpty)
        #expect(!exists("\(core.socket).\(uuid)"))
        #expect(core.ping().code == 0)
        await core.stop()
    }

    /// A shutdown while the extension still waits for a core ends its start-up cleanly:
    /// the group's run returns without an error (not after the 30 s wait, with a "no core" error).
    @Test func groupShutdownWhileWaitingForTheCoreEndsCleanly() async throws {
        let ext = Extension("svc_wait_ext", plugins: [helloTable()])
        let group = ServiceGroup(
            services: [ext.service(options: try options(tempSocket(), timeout: 30))],
            logger: Logger(label: "test.extension-service"))
        let running = Task { try await group.run() }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(ext.listenPath == nil)
    }
}
