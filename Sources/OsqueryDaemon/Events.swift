package import OsqueryEngine
package import OsqueryEvents

// events (issue 17): the daemon's store buffers event rows, and the config feeds the publishers.

extension DaemonStore: EventDatabase {
    /// Event rows share the store's connection (and its lock): one file, one writer.
    package func withHandle<T: Sendable>(_ body: (OpaquePointer) -> T) -> T {
        connection.withLock { (c: inout Connection) -> T in body(c.db) }
    }
}

extension DaemonConfig {
    /// The config's FIM keys and subscriber lists as the events framework takes them.
    package var eventsConfiguration: EventsConfiguration {
        var e = EventsConfiguration()
        e.filePaths = filePaths
        e.filePathsQuery = filePathsQuery
        e.excludePaths = excludePaths
        e.fileAccesses = fileAccesses
        e.enableSubscribers = events["enable_subscribers"]
        e.disableSubscribers = events["disable_subscribers"] ?? []
        return e
    }
}

/// The events framework of a core: the hub, its publishers (inotify) and their tables.
package enum EventsRuntime {
    /// Makes the hub with every publisher and registers their tables (and `osquery_events`).
    package static func make(flags: Flags, registry: PluginRegistry, database: any EventDatabase, isDaemon: Bool) -> EventHub {
        let hub = EventHub(flags: flags, database: database, isDaemon: isDaemon)
        let fileEvents = INotifyPublisher.makeSubscriber(hub: hub)
        hub.add(publisher: INotifyPublisher(subscriber: fileEvents, flags: flags, registry: registry), subscribers: [fileEvents])
        hub.register(into: registry)
        return hub
    }
}
