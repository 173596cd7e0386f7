public import OsqueryEngine
import OsqueryDaemon
public import OsqueryShell
#if canImport(Glibc)
import Glibc
#endif

/// The one program behind osqueryi and osqueryd: argv[0] (or `-S`/`-D`) picks the shell
/// (OsqueryShell) or the daemon (OsqueryDaemon); neither module knows the other.
public enum OsqueryMain {
    /// The process entry point: sets up status output, runs the mode argv picks, exits.
    public static func main() -> Never {
        let arguments = CommandLine.arguments
        let verbose = arguments.contains { $0 == "--verbose" || $0 == "-verbose" || $0 == "--verbose=true" }
        OsqueryShellMain.requestLoggingBootstrap(verbose: verbose)
        exit(run(arguments, registry: .shared, flags: .shared))
    }

    /// Runs osqueryi or osqueryd with `argv` (argv[0] included); returns the exit code.
    public static func run(_ argv: [String], io: ShellIO = .standard, registry: PluginRegistry, flags: Flags) -> Int32 {
        // argv[0]'s last path component names the mode; -S and -D override it.
        var daemon = argv.first.map { OsqueryShellMain.namesDaemon($0) } ?? false
        var arguments = Array(argv.dropFirst())
        arguments.removeAll { arg in
            if arg == "-S" || arg == "--S" { daemon = false; return true }
            if arg == "-D" || arg == "--D" { daemon = true; return true }
            return false
        }
        guard daemon else {
            // The daemon's carves table, as osquery's shell has it (OsqueryShell does not know the daemon).
            ShellCarves.register(into: registry, flags: flags)
            return OsqueryShellMain.run([argv.first ?? "osqueryi"] + arguments, io: io, registry: registry, flags: flags)
        }
        if arguments.contains(where: { ["-h", "--h", "-help", "--help"].contains($0) }) {
            io.out(OsqueryShellMain.usage(flags: flags, program: "osqueryd"))
            return 0
        }
        if arguments.contains(where: { $0 == "--version" || $0 == "-version" }) {
            io.out("osqueryd version \(OsqueryVersion.version)\n")
            return 0
        }
        OsqueryShellMain.bootstrapLoggingIfRequested()
        return OsqueryDaemonMain.run(arguments, io: io, registry: registry, flags: flags)
    }
}
