import Dispatch
import Foundation
public import OsqueryEngine
import OsqueryDaemon
public import OsqueryShell
import OsqueryTables

/// osqueryd: flags, the built-in tables, then the daemon's services
/// (OsqueryDaemon's `Daemon`: watchdog, pidfile, store, extensions, config,
/// loggers, scheduler).
public enum OsqueryDaemonMain {
    /// Runs the daemon with `arguments` (argv without argv[0]); returns the exit code.
    public static func run(
        _ arguments: [String], io: ShellIO = .standard, registry: PluginRegistry, flags: Flags
    ) -> Int32 {
        do throws(FlagError) {
            _ = try flags.parse(arguments)
        } catch {
            io.err(error.message + "\n")
            return 1
        }
        StatusLog.minimumSeverity = flags[.verbose] ? .info : .warning
        BuiltinTables.register(into: registry, flags: flags)

        // enable_foreign is an ordinary flag in osquery: a config's options may set it.
        let daemon = Daemon(
            flags: flags, registry: registry, out: { io.out($0) }, err: { io.err($0) },
            configApplied: { if flags[.enableForeign] { BuiltinTables.registerForeign(into: registry) } })
        return daemon.run()
    }
}
