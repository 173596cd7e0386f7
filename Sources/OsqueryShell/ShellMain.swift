public import OsqueryEngine
import OsqueryManager
import OsqueryConfig
import OsqueryEvents
import OsqueryTables
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The interrupter of the database a running statement uses (for SIGINT).
private let activeInterrupter = Mutex<Database.Interrupter?>(nil)
nonisolated(unsafe) private var interruptPending: sig_atomic_t = 0

/// osqueryi's entry point as a library, so tests can drive it in-process.
public enum OsqueryShellMain {
    /// Run osqueryi with `argv` (argv[0] included). Returns the exit code.
    public static func run(
        _ argv: [String],
        io: ShellIO = .standard,
        registry: PluginRegistry,
        flags: Flags,
        readStandardInput: () -> String? = Shell.readStandardInput,
        standardInputIsTerminal: Bool? = nil
    ) -> Int32 {
        // The entry (OsqueryMain) picked the shell; -S may still be there when run in-process.
        var arguments = Array(argv.dropFirst())
        arguments.removeAll { $0 == "-S" || $0 == "--S" }
        if arguments.contains(where: { ["-h", "--h", "-help", "--help"].contains($0) }) {
            io.out(usage(flags: flags, program: "osqueryi"))
            return 0
        }
        if arguments.contains(where: { $0 == "--version" || $0 == "-version" }) {
            io.out("osqueryi version \(OsqueryVersion.version)\n")
            return 0
        }

        // Shell defaults that differ from the daemon.
        flags.setDefault(.disableEvents, true)
        flags.setDefault(.disableLogging, true)
        flags.setDefault(.disableWatchdog, true)
        flags.setDefault(.hashDelay, 0)

        let parsed: ParsedCommandLine
        do throws(FlagError) {
            var defaults = ParsedCommandLine(positional: [], setFlags: [])
            let defaultFlagfile = "/etc/osquery/osquery.flags.default"
            if !arguments.contains(where: { $0.hasPrefix("--flagfile") || $0.hasPrefix("-flagfile") }), FileIO.exists(defaultFlagfile) {
                try flags.applyFlagfile(defaultFlagfile, into: &defaults)
            }
            parsed = try flags.parse(arguments)
        } catch {
            io.err(error.message + "\n")
            return 1
        }
        StatusLog.minimumSeverity = flags[.verbose] ? .info : .warning

        // osquery's shell checks or dumps the config and exits, as its daemon does.
        if flags[.configCheck] || flags[.configDump] {
            let plugin = flags[.configPlugin]
            guard plugin == "filesystem" else {
                io.err("Error: config plugin \(plugin) is not available\n")
                return 78
            }
            let source = FilesystemConfigSource(path: flags[.configPath])
            if flags[.configCheck] {
                return ConfigCommands.check(flags: flags, source: source, err: { io.err($0 + "\n") })
            }
            return ConfigCommands.dump(flags: flags, source: source, out: io.out, err: { io.err($0 + "\n") })
        }

        BuiltinTables.register(into: registry, flags: flags)
        // The shell has no schedule; the tables exist (empty), as in osqueryi.
        ScheduleTables.register(into: registry, scheduler: nil, packs: nil)
        let config = loadConfig(flags: flags, registry: registry)
        // events (issue 17): buffered in memory; publishers run only with --disable_events=false.
        let events = EventsRuntime.make(flags: flags, registry: registry, database: InMemoryEventDatabase(), isDaemon: false)
        events.configure(config?.eventsConfiguration ?? EventsConfiguration())
        events.start()
        defer { events.stop() }
        let database: Database
        do {
            database = try Database(registry: registry, flags: flags)
        } catch {
            io.err("Error: \(error.message)\n")
            return 1
        }

        var shellIO = io
        let outputPath = flags[.output]
        var outputFD: Int32 = -1
        if !outputPath.isEmpty && outputPath != "-" {
            outputFD = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if outputFD < 0 {
                io.err("Error: cannot open output file: \(outputPath)\n")
                return 1
            }
            let fd = outputFD
            shellIO.out = { ShellIO.writeAll(fd, $0) }
            shellIO.outBytes = { ShellIO.writeAll(fd, $0) }
        }
        defer { if outputFD >= 0 { close(outputFD) } }

        let shell = Shell(database: database, flags: flags, io: shellIO)
        activeInterrupter.withLock { $0 = database.interrupter }
        defer { activeInterrupter.withLock { $0 = nil } }

        // The extension manager runs for an interactive session, or when a
        // one-shot run asks for extensions (as osquery's shell does).
        let oneShot = flags[.listTables] || !flags[.selectAll].isEmpty || !flags[.query].isEmpty
            || !flags[.queryFile].isEmpty || !parsed.positional.isEmpty
            || !(standardInputIsTerminal ?? (isatty(0) != 0))
        let requested = !flags[.extension].isEmpty || flags.wasSet(.extensionsAutoload)
            || flags.wasSet(.extensionsRequire) || flags.wasSet(.extensionsSocket)
        var extensions: ShellRuntime?
        if !flags[.disableExtensions] && (!oneShot || requested) {
            bootstrapLoggingIfRequested()
            do {
                extensions = try ShellRuntime.start(flags: flags, registry: registry)
            } catch {
                io.err("Error: could not start the extension manager: \(error)\n")
            }
        }
        defer { extensions?.stop() }

        if flags[.listTables] {
            shell.runMeta(".tables")
            return 0
        }
        let all = flags[.selectAll]
        if !all.isEmpty {
            return shell.all(all)
        }
        if !flags[.pack].isEmpty {
            io.err("Error: --pack needs the config subsystem, which this build does not include yet\n")
            return 1
        }
        let query = flags[.query]
        if !query.isEmpty {
            return shell.run(query)
        }
        let queryFile = flags[.queryFile]
        if !queryFile.isEmpty {
            guard let text = Shell.readFile(queryFile) else {
                io.err("Error: cannot read query file: \(queryFile)\n")
                return 1
            }
            return shell.run(text)
        }
        if !parsed.positional.isEmpty {
            let statement = parsed.positional.count == 1 ? parsed.positional[0] : parsed.positional.joined(separator: " ")
            if statement.hasPrefix(".") {
                let rc = shell.runMeta(statement)
                return shell.exitRequested ?? rc
            }
            return shell.run(statement)
        }
        if standardInputIsTerminal ?? (isatty(0) != 0) {
            return repl(shell)
        }
        let script = readStandardInput() ?? ""
        shell.runScript(script)
        if let code = shell.exitRequested { return code }
        return shell.anyFailed ? 1 : 0
    }

    /// Loads the config as osquery's shell does at start: its options apply and its
    /// `auto_table_construction` tables are registered, its `prometheus_targets` reach the
    /// prometheus_metrics table. A config that cannot be read only
    /// says so with --verbose (osquery's shell runs without one). Only the filesystem plugin:
    /// an extension's config plugin cannot be reached before the shell's tables exist.
    @discardableResult
    static func loadConfig(flags: Flags, registry: PluginRegistry) -> DaemonConfig? {
        guard flags[.configPlugin] == "filesystem" else { return nil }
        let loader = ConfigLoader(source: FilesystemConfigSource(path: flags[.configPath]), flags: flags)
        do {
            let config = try loader.load()
            config.registerAutoTables(registry: registry, flags: flags)
            config.applyTableSections(registry: registry)
            return config
        } catch {
            StatusLog.info("Error reading config: \(error.message)")
            return nil
        }
    }

    /// Whether argv[0]'s last path component contains "osqueryd" (the daemon's name).
    public static func namesDaemon(_ argv0: String) -> Bool {
        let name = Array(argv0.utf8)
        var start = name.count
        while start > 0 && name[start - 1] != UInt8(ascii: "/") { start -= 1 }
        let target: [UInt8] = Array("osqueryd".utf8)
        guard name.count - start >= target.count else { return false }
        for i in start...(name.count - target.count) where name[i] == target[0] {
            var k = 1
            while k < target.count && name[i + k] == target[k] { k += 1 }
            if k == target.count { return true }
        }
        return false
    }

    /// The interactive loop.
    static func repl(_ shell: Shell) -> Int32 {
        installInterruptHandler()
        shell.io.out("Using a virtual database. Need help, type '.help'\n")
        let editor = LineEditor(historyPath: Shell.historyPath())
        let tables = shell.database.registry.tableNames()
        editor.completions = { word in
            if word.hasPrefix(".") { return Shell.metaCommands.map { "." + $0 } }
            return tables
        }
        var pending = ""
        var startLine = 0
        var lineNumber = 0
        while true {
            let prompt = pending.isEmpty ? "osquery> " : "    ...> "
            switch editor.readLine(prompt: prompt) {
            case .endOfInput:
                // osquery's shell ends an interactive session with a blank line, then runs what is pending.
                ShellIO.writeAll(1, "\n")
                if !pending.trimmingASCIIWhitespace().isEmpty { shell.run(pending) }
                return shell.exitRequested ?? 0
            case .line(let line):
                lineNumber += 1
                editor.addHistory(line)
                if !shell.feed(line, pending: &pending, startLine: &startLine, lineNumber: lineNumber, interactive: true),
                   let code = shell.exitRequested {
                    return code
                }
            }
        }
    }

    static func installInterruptHandler() {
        signal(SIGINT) { _ in
            interruptPending = 1
            // sqlite3_interrupt only sets a flag; safe here. A lock held by the
            // main thread is never contended at this point (tryLock semantics).
            if let interrupter = activeInterrupter.withLockIfAvailable({ $0 }) ?? nil {
                interrupter.interrupt()
            }
        }
    }

    public static func usage(flags: Flags, program: String) -> String {
        var out = "osquery \(OsqueryVersion.version), your OS as a high-performance relational database\n"
        out += "Usage: \(program) [OPTION]... [SQL STATEMENT]\n\n"
        func section(_ title: String, _ kinds: [FlagKind]) {
            out += title + "\n\n"
            let defs = flags.allDefinitions().filter { kinds.contains($0.kind) && $0.name.count > 1 }
            let width = defs.map { $0.name.count + ($0.type == .bool ? 0 : 6) }.max() ?? 0
            for d in defs {
                let head = "--" + d.name + (d.type == .bool ? "" : " VALUE")
                out += "    " + head + String(repeating: " ", count: max(0, width + 2 - head.count + 2)) + d.description + "\n"
            }
            out += "\n"
        }
        section("osquery command line flags:", [.cli])
        section("osquery configuration options (set by config or CLI flags):", [.option])
        section("osquery shell-only CLI flags:", [.shell])
        return out
    }
}

extension Shell {
    /// All of standard input.
    public static func readStandardInput() -> String? {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func readFile(_ path: String) -> String? {
        FileIO.readString(path)
    }

    /// `~/.osquery/.history`, creating `~/.osquery` if it can.
    static func historyPath() -> String? {
        guard let home = getenv("HOME").map({ String(cString: $0) }), !home.isEmpty else { return nil }
        let dir = home + "/.osquery"
        if !FileIO.isDirectory(dir) && mkdir(dir, 0o700) != 0 { return nil }
        return dir + "/.history"
    }
}
