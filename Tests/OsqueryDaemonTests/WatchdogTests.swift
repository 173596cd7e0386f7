import Foundation
import ProtocolFixture
import OsqueryEngine
import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon



@Suite struct PidfileTests {
    @Test func holdsTheLockWritesThePidAndRefusesASecondDaemon() throws {
        let dir = try scratchDirectory("pid")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/run/osqueryd.pidfile"
        let pidfile = try Pidfile.acquire(path: path, force: false)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "\(getpid())\n")
        #expect(throws: DaemonError.self) { try Pidfile.acquire(path: path, force: false) }
        do {
            _ = try Pidfile.acquire(path: path, force: false)
        } catch {
            #expect(error.message.hasPrefix("Pidfile check failed"))
            #expect(error.exitCode == 1)
        }
        // --force never kills a holder that is not an osqueryd; it gives up after its retries.
        #expect(throws: DaemonError.self) { try Pidfile.acquire(path: path, force: true, retryDelay: .milliseconds(10)) }
        pidfile.release()
        #expect(!FileManager.default.fileExists(atPath: path))
        let again = try Pidfile.acquire(path: path, force: false)
        again.release()
    }

    @Test func aStaleFileFromAKilledDaemonDoesNotBlock() throws {
        let dir = try scratchDirectory("stale")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/osqueryd.pidfile"
        try "1\n".write(toFile: path, atomically: true, encoding: .utf8)
        let pidfile = try Pidfile.acquire(path: path, force: false)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "\(getpid())\n")
        pidfile.release()
    }
}

@Suite(.serialized) struct WatchdogTests {
    /// Every worker counts as dying young (up to 1000 times), and each respawn waits 1 s.
    func limits(memoryMB: UInt64 = 10000, cpu: UInt64 = 100, latency: UInt64 = 1000, lifetime: UInt64 = 1000) -> WatchdogLimits {
        WatchdogLimits(
            memoryMB: memoryMB, utilizationPercent: cpu, latencySeconds: latency, minimumLifetime: lifetime, respawnDelay: 0,
            maxRespawnDelay: 1, enforcementDelay: 0, forcedShutdownDelay: 2)
    }

    /// A worker that, on its first launch, runs `first`; later launches exit
    /// 78, the one exit that ends the watcher.
    func script(_ dir: String, first: String) -> [String] {
        let marker = dir + "/launches"
        return ["sh", "-c", "echo launch >> \(marker); [ $(wc -l < \(marker)) -gt 1 ] && exit 78; \(first)"]
    }

    @Test func levelsAndOverrides() {
        let flags = Flags()
        #expect(WatchdogLimits.from(flags).memoryMB == 200 && WatchdogLimits.from(flags).utilizationPercent == 10)
        try? flags.set("watchdog_level", "1")
        #expect(WatchdogLimits.from(flags).memoryMB == 100 && WatchdogLimits.from(flags).latencySeconds == 6)
        try? flags.set("watchdog_level", "-1")
        #expect(WatchdogLimits.from(flags).memoryMB == 10000)
        try? flags.set("watchdog_memory_limit", "300")
        try? flags.set("watchdog_utilization_limit", "40")
        let l = WatchdogLimits.from(flags)
        #expect(l.memoryMB == 300 && l.utilizationPercent == 40 && l.enforcementDelay == 60)
    }

    @Test func aWorkerGrowingPastTheMemoryLimitIsStoppedAndRestarted() async throws {
        let dir = try scratchDirectory("wdmem")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Grows by 300 MB of touched memory after its first second, then waits.
        let hog = "exec python3 -c 'import time; time.sleep(1.5); x = b\"x\" * (300 << 20); time.sleep(60)'"
        let watcher = Watcher(executable: "/bin/sh", arguments: script(dir, first: hog), limits: limits(memoryMB: 50), alarmTimeout: 10)
        let code = try await offPool { watcher.run() }
        #expect(code == 78)
        #expect(watcher.launches == 2)
        let launches = try String(contentsOfFile: dir + "/launches", encoding: .utf8)
        #expect(launches == "launch\nlaunch\n")
    }

    @Test func aWorkerOverTheCPULimitForTheLatencyIsStopped() async throws {
        let dir = try scratchDirectory("wdcpu")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spin = "while :; do :; done"
        let watcher = Watcher(
            executable: "/bin/sh", arguments: script(dir, first: spin), limits: limits(cpu: 10, latency: 3), alarmTimeout: 10)
        let code = try await offPool { watcher.run() }
        #expect(code == 78)
        #expect(watcher.launches == 2)
    }

    @Test func aCrashedWorkerIsRestartedAndA78IsFinal() async throws {
        let dir = try scratchDirectory("wdcrash")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let marker = dir + "/launches"
        // Killed by a signal the first time, then exit 78 (cannot run): no further restarts.
        let body = "echo launch >> \(marker); [ $(wc -l < \(marker)) -gt 1 ] && exit 78; kill -9 $$"
        let watcher = Watcher(executable: "/bin/sh", arguments: ["sh", "-c", body], limits: limits(), alarmTimeout: 10)
        let code = try await offPool { watcher.run() }
        #expect(code == 78)
        #expect(watcher.launches == 2)
    }

    /// osquery's watcher respawns a worker that exited 0 (say after a SIGINT
    /// to the worker alone, or `--schedule_timeout`); only 78 is final.
    @Test func aCleanExitStartsANewWorker() async throws {
        let dir = try scratchDirectory("wdclean")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let watcher = Watcher(executable: "/bin/sh", arguments: script(dir, first: "exit 0"), limits: limits(), alarmTimeout: 10)
        let code = try await offPool { watcher.run() }
        #expect(code == 78)
        #expect(watcher.launches == 2)
    }

    /// After `minimumLifetime` quick respawns the next exit ends the watcher with 1.
    @Test func aWorkerThatKeepsDyingYoungIsGivenUp() async throws {
        let watcher = Watcher(executable: "/bin/sh", arguments: ["sh", "-c", "exit 3"], limits: limits(lifetime: 2), alarmTimeout: 10)
        let code = try await offPool { watcher.run() }
        #expect(code == 1)
        #expect(watcher.launches == 3)
    }

    /// osquery's back-off: RESPAWN_DELAY + 2^n seconds, capped by --watchdog_max_delay.
    @Test func respawnBackOff() throws {
        let flags = Flags()
        let normal = Watcher(executable: "/bin/true", arguments: [], limits: WatchdogLimits.from(flags), alarmTimeout: 10)
        #expect([1, 2, 3, 4].map { normal.respawnPause(after: $0) } == [7, 9, 13, 21])
        #expect(normal.respawnPause(after: 10) == 600 && normal.respawnPause(after: 100) == 600)
        try flags.set("watchdog_level", "-1")
        try flags.set("watchdog_max_delay", "4")
        let off = Watcher(executable: "/bin/true", arguments: [], limits: WatchdogLimits.from(flags), alarmTimeout: 10)
        #expect([1, 2, 3].map { off.respawnPause(after: $0) } == [3, 4, 4])
    }
}
