import Foundation
import OsqueryProtocol
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

/// The testing kit's fake core, like the real one, waits for an extension that registered but
/// does not listen yet (osquery's SDKs register first), instead of failing its first call.
@Suite struct FakeCoreLateSocketTests {
    @Test func aCallWaitsForTheSocketOfARegisteredExtension() async throws {
        // The real extension serves `late_t` on core A; core B hears of it by a registration
        // whose socket appears (a link to the real one) only after the call has started.
        let coreA = try await FakeCore.start()
        let coreB = try await FakeCore.start()
        let ext = Extension("late_ext", plugins: [helloTable("late_t")])
        try await ext.start(options: try options(coreA.socket))
        let served = try await coreA.waitForExtension(named: "late_ext", timeout: .seconds(60))
        let column: StringMap = ["id": "column", "name": "greeting", "type": "TEXT", "op": "0"]
        let status = try await OsqueryClient(socket: coreB.socket).registerExtension(
            info: InternalExtensionInfo(name: "late_ext", version: "1", sdkVersion: "5.0.0", minSDKVersion: "0"),
            registry: ["table": ["late_t": [column]]])
        #expect(status.code == 0)
        let call = Task { try await coreB.callPlugin(registry: "table", item: "late_t", request: ["action": "generate", "context": "{}"]) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(symlink("\(coreA.socket).\(served)", "\(coreB.socket).\(status.uuid)") == 0)
        let reply = try await call.value
        #expect(reply.code == 0)
        #expect(reply.rows.count == 2)
        // And the wait for a registration includes its socket.
        #expect(try await coreB.waitForExtension(named: "late_ext", timeout: .seconds(5)) == status.uuid)
        unlink("\(coreB.socket).\(status.uuid)")
        ext.stop()
        _ = await ext.waitUntilStopped()
        await coreB.stop()
        await coreA.stop()
    }
}
