import Logging
import Synchronization

extension OsqueryShellMain {
    /// Asks for swift-log's set-up (status output as osquery's: warnings and errors, everything
    /// with `verbose`) to happen when the daemon or the extension manager starts, the only users
    /// of swift-log loggers, so a one-shot query does not pay for it at start-up.
    public static func requestLoggingBootstrap(verbose: Bool) {
        pendingLoggingBootstrap.withLock { pending in
            pending = {
                LoggingSystem.bootstrap { label in
                    var handler = StreamLogHandler.standardError(label: label)
                    handler.logLevel = verbose ? .info : .warning
                    return handler
                }
            }
        }
    }

    /// Runs the logging set-up asked for, once; nothing when none was asked for (tests).
    public static func bootstrapLoggingIfRequested() {
        let bootstrap = pendingLoggingBootstrap.withLock { pending in
            defer { pending = nil }
            return pending
        }
        bootstrap?()
    }
}

/// The swift-log bootstrap `main()` leaves for the first component that logs through swift-log.
private let pendingLoggingBootstrap = Mutex<(@Sendable () -> Void)?>(nil)
