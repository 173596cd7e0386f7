import Logging
#if canImport(Glibc)
import Glibc
#endif

extension OsqueryShellMain {
    /// The process entry point of both osqueryi and osqueryd (argv[0] or
    /// `-S`/`-D` picks the mode): sets up status output, runs, exits.
    public static func main() -> Never {
        // Status output as osquery's: warnings and errors, everything with --verbose.
        let verbose = CommandLine.arguments.contains { $0 == "--verbose" || $0 == "-verbose" || $0 == "--verbose=true" }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .info : .warning
            return handler
        }
        exit(run(CommandLine.arguments))
    }
}
