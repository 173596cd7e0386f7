package import OsqueryEngine

/// The events framework of a core: the hub, its publishers (inotify, audit) and their tables.
package enum EventsRuntime {
    /// Makes the hub with every publisher and registers their tables (and `osquery_events`).
    package static func make(flags: Flags, registry: PluginRegistry, database: any EventDatabase, isDaemon: Bool) -> EventHub {
        let hub = EventHub(flags: flags, database: database, isDaemon: isDaemon)
        let fileEvents = INotifyPublisher.makeSubscriber(hub: hub)
        let inotify = INotifyPublisher(subscriber: fileEvents, flags: flags, registry: registry)
        hub.add(publisher: inotify, subscribers: [fileEvents])
        // audit events (issue 19): process, socket, user, process_file, selinux, apparmor, seccomp.
        let audit = AuditPublisher(hub: hub)
        hub.add(publisher: audit, subscribers: audit.subscribers)
        // udev/syslog/yara events (issue 19).
        let hardwareEvents = UdevPublisher.makeSubscriber(hub: hub)
        hub.add(publisher: UdevPublisher(subscriber: hardwareEvents, flags: flags), subscribers: [hardwareEvents])
        let syslogEvents = SyslogPublisher.makeSubscriber(hub: hub)
        hub.add(publisher: SyslogPublisher(subscriber: syslogEvents, flags: flags), subscribers: [syslogEvents])
        let yaraRules = YaraRuleCache(flags: flags)
        let yaraEvents = YaraEventsScanner.makeSubscriber(hub: hub)
        let yaraScanner = YaraEventsScanner(subscriber: yaraEvents, cache: yaraRules, flags: flags)
        hub.add(helper: yaraScanner)
        hub.add(subscribers: [yaraEvents])
        inotify.addListener { path, category, action in yaraScanner.fileChanged(path: path, category: category, action: action) }
        _ = registry.remove(registry: "table", name: YaraTable.schema.name)
        _ = registry.addTable(YaraTable.table(cache: yaraRules, flags: flags))
        _ = registry.remove(registry: "table", name: YaraTable.processSchema.name)
        _ = registry.addTable(YaraTable.processTable(cache: yaraRules, flags: flags))
        hub.register(into: registry)
        return hub
    }
}
