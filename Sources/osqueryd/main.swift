import Logging
import OsqueryShell
#if canImport(Glibc)
import Glibc
#endif

// Status output as osquery's: warnings and errors, everything with --verbose.
let verbose = CommandLine.arguments.contains { $0 == "--verbose" || $0 == "-verbose" || $0 == "--verbose=true" }
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = verbose ? .info : .warning
    return handler
}

exit(OsqueryShellMain.run(CommandLine.arguments))
