import Foundation
package import OsqueryEngine
import Synchronization

/// What the config says about events: the FIM keys and `events.enable_subscribers` /
/// `events.disable_subscribers`.
package struct EventsConfiguration: Sendable, Equatable {
    /// category → patterns as written (`%`, `%%`).
    package var filePaths: [String: [String]] = [:]
    /// category → queries whose `path` column gives more patterns.
    package var filePathsQuery: [String: [String]] = [:]
    package var excludePaths: [String: [String]] = [:]
    package var fileAccesses: [String] = []
    package var enableSubscribers: [String]?
    package var disableSubscribers: [String] = []
    /// `yara.signatures` (group → rule files) and `yara.file_paths` (FIM category → groups).
    package var yaraSignatures: [String: [String]] = [:]
    package var yaraFilePaths: [String: [String]] = [:]

    package init() {}
}

/// A publisher's figures for `osquery_events`, plus the troubles it counted (each also logged).
package struct PublisherStatus: Sendable {
    package var subscriptions = 0
    package var events = 0
    package var refreshes = 0
    package var active = false
    /// name → count (watch-limit exhaustion, queue overflows, unreadable paths, …).
    package var counters: [(name: String, value: Int)] = []
    package init() {}
}

/// An OS event source with its own thread.
package protocol EventPublisher: AnyObject, Sendable {
    var name: String { get }
    /// Whether the flags ask for this publisher (`--enable_file_events`, …).
    func isEnabled(_ flags: Flags) -> Bool
    /// Starts its thread; an error leaves it inactive (and is logged by the hub).
    func start() throws(EventError)
    /// Stops and joins its thread. Idempotent.
    func stop()
    /// Applies a (new) config.
    func configure(_ configuration: EventsConfiguration)
    var status: PublisherStatus { get }
}

/// The events framework: publishers, subscribers and their tables, a flusher that writes
/// buffered rows to the event database, and `osquery_events`.
package final class EventHub: Sendable {
    package let flags: Flags
    package let database: any EventDatabase
    package let isDaemon: Bool
    private let parts = Mutex<(publishers: [any EventPublisher], subscribers: [EventSubscriber], started: [String])>(([], [], []))
    /// Workers that run with the publishers but are none (yara_events' scanner, whose events
    /// come from inotify): started, configured and stopped with them, not listed.
    private let helpers = Mutex<[any EventPublisher]>([])

    package func add(helper: any EventPublisher) { helpers.withLock { $0.append(helper) } }

    /// Subscribers of a publisher added before (yara_events of inotify).
    package func add(subscribers: [EventSubscriber]) { parts.withLock { $0.subscribers += subscribers } }
    private let flusherRunning = Mutex(false)
    private let flusherDone = DispatchSemaphore(value: 0)
    private let stopFlag = Mutex<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)

    package init(flags: Flags, database: any EventDatabase, isDaemon: Bool) {
        self.flags = flags
        self.database = database
        self.isDaemon = isDaemon
    }

    package func add(publisher: any EventPublisher, subscribers: [EventSubscriber]) {
        parts.withLock { p in
            p.publishers.append(publisher)
            p.subscribers += subscribers
        }
    }

    package var subscribers: [EventSubscriber] { parts.withLock { $0.subscribers } }
    package var publishers: [any EventPublisher] { parts.withLock { $0.publishers } }

    /// Puts every subscriber's table and `osquery_events` into the registry.
    package func register(into registry: PluginRegistry) {
        for s in subscribers {
            _ = registry.remove(registry: "table", name: s.name)
            _ = registry.addTable(EventTable(subscriber: s, flags: flags, shell: !isDaemon))
        }
        _ = registry.remove(registry: "table", name: "osquery_events")
        _ = registry.addTable(osqueryEventsTable())
    }

    /// Starts the publishers the flags enable (none with `--disable_events`) and the flusher.
    package func start() {
        guard !flags[.disableEvents] else { return }
        for publisher in publishers where publisher.isEnabled(flags) {
            do throws(EventError) {
                try publisher.start()
                parts.withLock { $0.started.append(publisher.name) }
            } catch {
                StatusLog.warning("Event publisher failed setup: \(publisher.name): \(error.message)")
            }
        }
        for helper in helpers.withLock({ $0 }) where helper.isEnabled(flags) {
            do throws(EventError) {
                try helper.start()
            } catch {
                StatusLog.warning("Event publisher failed setup: \(helper.name): \(error.message)")
            }
        }
        stopFlag.withLock { $0 = false }
        let wake = self.wake
        for s in subscribers { s.setFlusher { wake.signal() } }
        let thread = Thread { [self] in
            // Rows reach the store within a quarter second even when a publisher is quiet.
            while !stopFlag.withLock({ $0 }) {
                _ = wake.wait(timeout: .now() + .milliseconds(250))
                for s in subscribers { s.flush() }
            }
            flusherDone.signal()
        }
        thread.name = "events flusher"
        flusherRunning.withLock { $0 = true }
        thread.start()
    }

    /// Stops the publishers, then writes what is buffered. Call before the store closes.
    package func stop() {
        for publisher in publishers { publisher.stop() }
        for helper in helpers.withLock({ $0 }) { helper.stop() }
        stopFlag.withLock { $0 = true }
        wake.signal()
        if flusherRunning.withLock({ r in defer { r = false }; return r }) { flusherDone.wait() }
        for s in subscribers { s.setFlusher(nil) }
        for s in subscribers { s.flush() }
    }

    /// Applies the config: subscriber allow/deny lists, then each publisher's subscriptions.
    package func configure(_ configuration: EventsConfiguration) {
        for s in subscribers {
            var enabled = !configuration.disableSubscribers.contains(s.name)
            if let allowed = configuration.enableSubscribers, !allowed.isEmpty, !allowed.contains(s.name) { enabled = false }
            s.setEnabled(enabled)
        }
        // Helpers keep config for tables too (the yara table's signature groups).
        for helper in helpers.withLock({ $0 }) { helper.configure(configuration) }
        guard !flags[.disableEvents] else { return }
        for publisher in publishers where publisher.isEnabled(flags) { publisher.configure(configuration) }
    }

    /// Whether a table is a subscriber's (the scheduler's event-query rules).
    package func isSubscriber(_ table: String) -> Bool {
        subscribers.contains { $0.name == table }
    }

    private func osqueryEventsTable() -> FunctionTable {
        let schema = TableSchema(
            name: "osquery_events",
            columns: [
                TableColumn("name", .text), TableColumn("publisher", .text), TableColumn("type", .text),
                TableColumn("subscriptions", .integer), TableColumn("events", .integer), TableColumn("refreshes", .integer),
                TableColumn("active", .integer),
            ],
            attributes: .utility)
        return FunctionTable(schema) { [self] _ in
            var rows = TableRows(schema: schema)
            let started = parts.withLock { $0.started }
            for p in publishers {
                let s = p.status
                let active = s.active && started.contains(p.name)
                rows.appendRow([
                    .text(p.name), .text(p.name), "publisher", .integer(Int64(s.subscriptions)), .integer(Int64(s.events)),
                    .integer(Int64(s.refreshes)), .integer(active ? 1 : 0),
                ])
            }
            for sub in subscribers {
                let s = sub.status
                let publisherActive = started.contains(sub.publisher)
                rows.appendRow([
                    .text(sub.name), .text(sub.publisher), "subscriber", .integer(Int64(s.subscriptions)), .integer(Int64(s.events)),
                    0, .integer(s.active && publisherActive ? 1 : 0),
                ])
            }
            // What went wrong, counted (each also has a status line): rows of type "counter", so
            // osquery's columns stay as they are.
            for p in publishers + helpers.withLock({ $0 }) {
                for c in p.status.counters {
                    rows.appendRow([.text(p.name + "." + c.name), .text(p.name), "counter", 0, .integer(Int64(c.value)), 0, 0])
                }
            }
            for sub in subscribers {
                let s = sub.status
                rows.appendRow([.text(sub.name + ".expired"), .text(sub.publisher), "counter", 0, .integer(Int64(s.expired)), 0, 0])
                rows.appendRow([.text(sub.name + ".store_errors"), .text(sub.publisher), "counter", 0, .integer(Int64(s.dropped)), 0, 0])
            }
            return rows
        }
    }
}
