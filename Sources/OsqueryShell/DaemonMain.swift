import Dispatch
import Foundation
public import OsqueryEngine
import OsqueryManager
import OsqueryTables

/// osqueryd, as far as it goes today: the extension manager on
/// `--extensions_socket`, autoloaded extensions under supervision, and a clean
/// stop on SIGTERM or SIGINT. The scheduler, config and result logging come
/// with the daemon issue.
public enum OsqueryDaemonMain {
    /// Runs the daemon with `arguments` (argv without argv[0]); returns the exit code.
    public static func run(
        _ arguments: [String], io: ShellIO = .standard, registry: PluginRegistry = .shared, flags: Flags = .shared
    ) -> Int32 {
        do throws(FlagError) {
            _ = try flags.parse(arguments)
        } catch {
            io.err(error.message + "\n")
            return 1
        }
        StatusLog.minimumSeverity = flags.bool("verbose") ? .info : .warning
        BuiltinTables.register(into: registry, flags: flags)

        // Wait for SIGTERM/SIGINT on a dispatch queue, not in a signal handler.
        let stop = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signo in [SIGTERM, SIGINT] {
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
            sigaddset(&unblock, signo)
        }
        // A parent may have started us with these signals blocked; they must reach the sources.
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)

        let socket = flags.string("extensions_socket")
        let directory = (socket as NSString).deletingLastPathComponent
        if !flags.bool("disable_extensions"), !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            // osquery's packages create /var/osquery; a bare install would fail here.
            try? FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let extensions: ExtensionsRuntime?
        do {
            extensions = try ExtensionsRuntime.startBlocking(flags: flags, registry: registry, shell: false)
        } catch {
            io.err("Error: \(error)\n")
            return 78
        }
        StatusLog.info("osqueryd started, extensions socket \(extensions?.manager.socketPath ?? "(disabled)")")
        stop.wait()
        StatusLog.info("osqueryd stopping")
        extensions?.stopBlocking()
        sources.forEach { $0.cancel() }
        return 0
    }
}
