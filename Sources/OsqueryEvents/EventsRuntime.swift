package import OsqueryEngine

/// The events framework of a core: the hub, its publishers (inotify) and their tables.
package enum EventsRuntime {
    /// Makes the hub with every publisher and registers their tables (and `osquery_events`).
    package static func make(flags: Flags, registry: PluginRegistry, database: any EventDatabase, isDaemon: Bool) -> EventHub {
        let hub = EventHub(flags: flags, database: database, isDaemon: isDaemon)
        let fileEvents = INotifyPublisher.makeSubscriber(hub: hub)
        hub.add(publisher: INotifyPublisher(subscriber: fileEvents, flags: flags, registry: registry), subscribers: [fileEvents])
        // udev/syslog/yara events (issue 19).
        let hardwareEvents = UdevPublisher.makeSubscriber(hub: hub)
        hub.add(publisher: UdevPublisher(subscriber: hardwareEvents, flags: flags), subscribers: [hardwareEvents])
        let syslogEvents = SyslogPublisher.makeSubscriber(hub: hub)
        hub.add(publisher: SyslogPublisher(subscriber: syslogEvents, flags: flags), subscribers: [syslogEvents])
        hub.register(into: registry)
        return hub
    }
}
