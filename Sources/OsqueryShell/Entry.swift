import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension OsqueryShellMain {
    /// The process entry point of both osqueryi and osqueryd (argv[0] or
    /// `-S`/`-D` picks the mode): sets up status output, runs, exits.
    public static func main() -> Never {
        // Status output as osquery's: warnings and errors, everything with --verbose.
        let arguments = CommandLine.arguments
        let verbose = arguments.contains { $0 == "--verbose" || $0 == "-verbose" || $0 == "--verbose=true" }
        // swift-log is set up when the daemon or the extension manager starts (the only users of
        // swift-log loggers), so a one-shot query does not pay for it at start-up.
        pendingLoggingBootstrap.withLock { pending in
            pending = {
                LoggingSystem.bootstrap { label in
                    var handler = StreamLogHandler.standardError(label: label)
                    handler.logLevel = verbose ? .info : .warning
                    return handler
                }
            }
        }
        exit(run(arguments, registry: .shared, flags: .shared))
    }

    /// Run the logging set-up `main()` requested, once; nothing when run in-process (tests).
    static func bootstrapLoggingIfRequested() {
        let bootstrap = pendingLoggingBootstrap.withLock { pending in
            defer { pending = nil }
            return pending
        }
        bootstrap?()
    }
}

/// The swift-log bootstrap `main()` leaves for the first component that logs through swift-log.
private let pendingLoggingBootstrap = Mutex<(@Sendable () -> Void)?>(nil)
