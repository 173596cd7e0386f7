import Foundation
import OsqueryEngine
import OsqueryEvents
import ProtocolFixture
import Synchronization

/// A bounded poll (CI runs every suite at once on 2 cores: generous, never a timing assertion).
func eventually(_ seconds: Double = 30, _ condition: () throws -> Bool) async rethrows -> Bool {
    try await waitUntil(seconds) { try condition() }
}

/// A publisher the test drives by hand.
final class ManualPublisher: EventPublisher, @unchecked Sendable {
    let name: String
    let running = Mutex(false)
    init(name: String) { self.name = name }
    func isEnabled(_ flags: Flags) -> Bool { true }
    func start() throws(EventError) { running.withLock { $0 = true } }
    func stop() { running.withLock { $0 = false } }
    func configure(_ configuration: EventsConfiguration) {}
    var status: PublisherStatus {
        var s = PublisherStatus()
        s.active = running.withLock { $0 }
        s.subscriptions = 1
        return s
    }
}

func makeFlags(_ values: [String: String]) throws -> Flags {
    let flags = Flags()
    for (k, v) in values { try flags.set(k, v) }
    return flags
}

/// An in-memory core with the events runtime's publishers and tables: flags `values` with `extra`
/// over them, configured with `configuration` and started.
func startEventsCore(
    _ values: [String: String], _ extra: [String: String], configuration: EventsConfiguration = EventsConfiguration()
) throws -> (hub: EventHub, database: Database) {
    let flags = try makeFlags(values.merging(extra) { $1 })
    let registry = PluginRegistry()
    let hub = EventsRuntime.make(flags: flags, registry: registry, database: InMemoryEventDatabase(), isDaemon: false)
    hub.configure(configuration)
    hub.start()
    return (hub, try Database(registry: registry, flags: flags))
}

/// A core with one hand-driven subscriber `name` (columns `value TEXT`, `n INTEGER`).
func manualCore(
    name: String, flags: Flags, database: any EventDatabase = InMemoryEventDatabase(), isDaemon: Bool = false
) throws -> (hub: EventHub, subscriber: EventSubscriber, database: Database) {
    let registry = PluginRegistry()
    let hub = EventHub(flags: flags, database: database, isDaemon: isDaemon)
    let subscriber = EventSubscriber(
        name: name, publisher: name + "_pub", columns: [TableColumn("value", .text), TableColumn("n", .integer)],
        database: database, flags: flags, isDaemon: isDaemon)
    hub.add(publisher: ManualPublisher(name: name + "_pub"), subscribers: [subscriber])
    hub.register(into: registry)
    return (hub, subscriber, try Database(registry: registry, flags: flags))
}

extension Database {
    /// Column `column` of every row, as text.
    func strings(_ sql: String, _ column: String) throws -> [String] {
        let r = try execute(sql)
        return (0..<r.rowCount).map { r[$0, column]?.osqueryString ?? "NULL" }
    }
}

/// A command's standard output (digest tools).
func run(_ tool: String, _ arguments: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [tool] + arguments
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// How many times each row was logged as "added" in a daemon's results log under `dir`, keyed by
/// `key(name, columns)` (nil skips the line).
func loggedAdded<Key: Hashable>(_ dir: String, key: (String, [String: String]) -> Key?) -> [Key: Int] {
    guard let text = try? String(contentsOfFile: dir + "/logs/osqueryd.results.log", encoding: .utf8) else { return [:] }
    var out: [Key: Int] = [:]
    for line in text.split(separator: "\n") {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let name = object["name"] as? String, object["action"] as? String == "added",
            let columns = object["columns"] as? [String: String], let k = key(name, columns)
        else { continue }
        out[k, default: 0] += 1
    }
    return out
}
