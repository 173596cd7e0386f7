package import OsqueryEvents

// events (issue 17): the config feeds the publishers.

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
        e.yaraSignatures = yaraSignatures
        e.yaraFilePaths = yaraFilePaths
        return e
    }
}
