public import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osqueryi's statement and meta-command processor, usable in-process.
public final class Shell {
    public let database: Database
    public let flags: Flags
    public var io: ShellIO
    public var settings: OutputSettings
    public var bail = false
    public var echo = false
    public var timer = false
    /// Set once any statement or meta-command failed (script exit code 1).
    public private(set) var anyFailed = false
    /// Set by `.exit`/`.quit`.
    public private(set) var exitRequested: Int32?

    public init(database: Database, flags: Flags, io: ShellIO = .standard) {
        self.database = database
        self.flags = flags
        self.io = io
        self.settings = Shell.settings(from: flags)
    }

    /// Output settings from the shell flags (`--json`, `--csv`, …).
    public static func settings(from flags: Flags) -> OutputSettings {
        var s = OutputSettings()
        s.headers = flags[.header]
        s.nullValue = flags[.nullvalue]
        s.separator = flags[.separator]
        if flags[.csv] {
            s.mode = .csv
            // osquery sets ',' and then overwrites it with --separator (default '|').
            s.separator = flags[.separator]
        }
        if flags[.json] { s.mode = .json }
        if flags[.jsonPretty] { s.mode = .jsonPretty }
        if flags[.line] { s.mode = .line }
        if flags[.list] { s.mode = .list }
        return s
    }

    // MARK: Statements

    /// Run SQL (one or more statements) and print results. Returns the SQLite
    /// primary result code (0 on success).
    @discardableResult
    public func run(_ sql: String, lineNumber: Int? = nil) -> Int32 {
        if echo { io.out(sql + "\n") }
        // Extensions may have registered or lost tables since the last statement.
        database.refreshTables()
        let start = Shell.cpuTimes()
        var rc: Int32 = 0
        do {
            try database.execute(sql) { (result: ResultSet) throws(EngineError) in
                if settings.mode == .pretty || settings.mode == .json, let write = io.outBytes {
                    let bytes =
                        settings.mode == .pretty ? ResultFormatter.prettyBytes(result, settings) : ResultFormatter.jsonBytes(result, settings)
                    if !bytes.isEmpty { bytes.withUnsafeBytes(write) }
                    return
                }
                let text = ResultFormatter.render(result, settings)
                if !text.isEmpty { io.out(text) }
            }
        } catch {
            rc = error.code == 0 ? 1 : error.code
            reportSQLError(error, lineNumber: lineNumber)
        }
        if timer {
            let end = Shell.cpuTimes()
            io.out("Run Time: real \(Shell.fmt(end.real - start.real, 3)) user \(Shell.fmt(end.user - start.user, 6)) sys \(Shell.fmt(end.sys - start.sys, 6))\n")
        }
        if rc != 0 { anyFailed = true }
        return rc
    }

    func reportSQLError(_ error: EngineError, lineNumber: Int?) {
        if error.code == EngineError.sqliteConstraint,
           error.message.hasPrefix("Table "), error.message.hasSuffix(" was queried without a required column in the WHERE clause") {
            let table = error.message.dropFirst(6).prefix { $0 != " " }
            StatusLog.warning("Please see the table documentation: https://osquery.io/schema/#\(table)")
        }
        if let lineNumber {
            io.err("Error: near line \(lineNumber): \(error.message)\n")
        } else {
            io.err("Error: \(error.message)\n")
        }
    }

    static func cpuTimes() -> (real: Double, user: Double, sys: Double) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func secs(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return (Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9, secs(usage.ru_utime), secs(usage.ru_stime))
    }

    /// `%.Nf` for non-negative values (SQLite's timer prints real with 3
    /// decimals, user and sys with 6).
    static func fmt(_ d: Double, _ decimals: Int) -> String {
        var scale: Int64 = 1
        for _ in 0..<decimals { scale *= 10 }
        let scaled = Int64((max(0, d) * Double(scale)).rounded())
        let frac = String(scaled % scale)
        return "\(scaled / scale)." + String(repeating: "0", count: decimals - frac.count) + frac
    }

    // MARK: Scripts

    /// Process a script the way the SQLite shell does: meta-commands on
    /// their own lines, statements run once complete, a trailing statement
    /// without `;` still runs. `interactive` = no "near line N" in errors.
    /// Returns false when `.exit` or `.bail` stopped processing.
    @discardableResult
    public func runScript(_ text: String, interactive: Bool = false) -> Bool {
        var pending = ""
        var startLine = 0
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = String(rawLine)
            if !feed(line, pending: &pending, startLine: &startLine, lineNumber: lineNumber, interactive: interactive) {
                return false
            }
        }
        if !pending.trimmingASCIIWhitespace().isEmpty {
            let rc = run(pending, lineNumber: interactive ? nil : startLine)
            if rc != 0 && bail { return false }
        }
        return true
    }

    /// Feed one input line. Returns false when processing must stop.
    func feed(_ line: String, pending: inout String, startLine: inout Int, lineNumber: Int, interactive: Bool) -> Bool {
        if pending.isEmpty {
            let trimmed = line.trimmingASCIIWhitespace()
            if trimmed.isEmpty { return true }
            if trimmed.hasPrefix(".") {
                let rc = runMeta(trimmed)
                if exitRequested != nil { return false }
                if rc != 0 && bail { return false }
                return true
            }
            startLine = lineNumber
        }
        if !pending.isEmpty { pending += "\n" }
        pending += line
        if pending.contains(";") && Database.isComplete(pending) {
            let sql = pending
            pending = ""
            let rc = run(sql, lineNumber: interactive ? nil : startLine)
            if rc != 0 && bail { return false }
        }
        return true
    }

    // MARK: Meta-commands

    static let metaCommands = [
        "all", "bail", "connect", "disconnect", "echo", "exit", "features", "headers", "help", "list",
        "mode", "nullvalue", "print", "quit", "schema", "separator", "show", "socket", "summary", "tables",
        "timeout", "timer", "types", "version", "width",
    ]

    /// Split a meta-command line into words, honouring quotes.
    static func words(_ line: String) -> [String] {
        var out: [String] = []
        var current = ""
        var quote: Character?
        var inWord = false
        for ch in line {
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
                continue
            }
            if ch == "\"" || ch == "'" {
                quote = ch
                inWord = true
            } else if ch == " " || ch == "\t" {
                if inWord { out.append(current); current = ""; inWord = false }
            } else {
                current.append(ch)
                inWord = true
            }
        }
        if inWord { out.append(current) }
        return out
    }

    static func parseOnOff(_ s: String) -> Bool? {
        switch s.lowercased() {
        case "on", "yes", "true", "1": return true
        case "off", "no", "false", "0": return false
        default: return nil
        }
    }

    /// Run a meta-command line (starting with "."). Returns 0 or 1.
    @discardableResult
    public func runMeta(_ line: String) -> Int32 {
        let args = Shell.words(String(line.dropFirst()))
        guard let word = args.first, !word.isEmpty,
              let command = Shell.metaCommands.first(where: { $0.hasPrefix(word.lowercased()) }) else {
            return unknownMeta(line)
        }
        let rest = Array(args.dropFirst())
        let rc: Int32
        switch command {
        case "all":
            guard rest.count == 1 else { return unknownMeta(line) }
            rc = all(rest[0])
        case "bail", "echo", "headers", "timer":
            guard rest.count == 1, let on = Shell.parseOnOff(rest[0]) else { return unknownMeta(line) }
            switch command {
            case "bail": bail = on
            case "echo": echo = on
            case "headers": settings.headers = on
            default: timer = on
            }
            rc = 0
        case "connect", "disconnect":
            io.err("Error: .\(command) requires the extension manager, which this build does not include yet\n")
            rc = 1
        case "exit", "quit":
            if command == "exit", let code = rest.first {
                exitRequested = Int32(code) ?? 0
            } else {
                exitRequested = 0
            }
            rc = 0
        case "features":
            var out = ""
            for d in flags.allDefinitions() where d.type == .bool && (d.name.hasPrefix("disable_") || d.name.hasPrefix("enable_")) {
                out += "\(d.name): \(Flags.parseBool(flags.value(named: d.name)) == true ? "true" : "false")\n"
            }
            io.out(out)
            rc = 0
        case "help":
            io.err(Shell.helpText)
            rc = 0
        case "mode":
            guard rest.count == 1 else { return unknownMeta(line) }
            rc = setMode(rest[0])
        case "nullvalue":
            guard rest.count == 1 else { return unknownMeta(line) }
            settings.nullValue = rest[0]
            rc = 0
        case "print":
            io.out(rest.joined(separator: " ") + "\n")
            rc = 0
        case "schema":
            rc = schema(rest.first ?? "")
        case "separator":
            guard rest.count == 1 else { return unknownMeta(line) }
            settings.separator = rest[0]
            rc = 0
        case "show", "summary":
            io.out(show())
            rc = 0
        case "socket":
            io.out(flags[.extensionsSocket] + "\n")
            rc = 0
        case "tables", "list":
            let prefix = rest.first ?? ""
            var out = ""
            for name in database.registry.tableNames() where name.hasPrefix(prefix) {
                out += "  => \(name)\n"
            }
            io.out(out)
            rc = 0
        case "timeout":
            rc = 0
        case "types":
            guard !rest.isEmpty else { return unknownMeta(line) }
            rc = types(rest.joined(separator: " "))
        case "version":
            io.out("osquery \(OsqueryVersion.version)\nusing SQLite \(Database.sqliteVersion)\n")
            rc = 0
        case "width":
            settings.widths = rest.map { Int($0) ?? 0 }
            rc = 0
        default:
            return unknownMeta(line)
        }
        if rc != 0 { anyFailed = true }
        return rc
    }

    func unknownMeta(_ line: String) -> Int32 {
        let word = line.split(separator: " ").first.map(String.init) ?? line
        io.err("Error: unknown command or invalid arguments:  \"\(word.dropFirst())\". Enter \".help\" for help\n")
        anyFailed = true
        return 1
    }

    func all(_ table: String) -> Int32 {
        var rc: Int32 = 0
        do {
            try database.execute("SELECT * FROM \(table)") { (result: ResultSet) throws(EngineError) in
                let text = ResultFormatter.render(result, settings)
                if !text.isEmpty { io.out(text) }
            }
        } catch {
            io.err("Error querying table: \(table)\n")
            rc = 1
        }
        return rc
    }

    func setMode(_ mode: String) -> Int32 {
        switch mode.lowercased() {
        case "pretty": settings.mode = .pretty
        case "line", "lines": settings.mode = .line
        case "list": settings.mode = .list
        case "csv":
            settings.mode = .csv
            settings.separator = ","
        case "column", "columns": settings.mode = .column
        default:
            io.err("Error: mode should be one of: column csv line list pretty\n")
            return 1
        }
        return 0
    }

    func schema(_ prefix: String) -> Int32 {
        var out = ""
        for table in database.registry.tables() where table.schema.name.hasPrefix(prefix) {
            out += table.schema.createStatement + "\n"
        }
        io.out(out)
        return 0
    }

    func types(_ sql: String) -> Int32 {
        do {
            let columns = try database.queryColumns(sql)
            let result = ResultSet(
                columns: ["name", "type"], declaredTypes: ["TEXT", "TEXT"], values: columns.flatMap { [.text($0.name), .text($0.type)] })
            io.out(ResultFormatter.render(result, OutputSettings(mode: .pretty, nullValue: settings.nullValue)))
            return 0
        } catch {
            io.err("Error: \(error.message)\n")
            return 1
        }
    }

    func show() -> String {
        func onOff(_ b: Bool) -> String { b ? "on" : "off" }
        var out = "osquery - being built, with love.\n"
        out += "osquery " + OsqueryVersion.version + "\n"
        out += "using SQLite " + Database.sqliteVersion + "\n\n"
        out += "General settings:\n"
        // --flagfile is read while parsing, not kept as a flag: nothing to show.
        out += "     Flagfile: \n"
        out += "       Config: " + flags[.configPlugin] + " (" + flags[.configPath] + ")\n"
        out += "       Logger: " + flags[.loggerPlugin] + " (" + flags[.loggerPath] + ")\n"
        out += "  Distributed: " + flags[.distributedPlugin] + "\n"
        out += "     Database: ephemeral\n"
        out += "   Extensions: core\n"
        out += "       Socket: " + flags[.extensionsSocket] + "\n\n"
        out += "Shell settings:\n"
        out += "         echo: " + onOff(echo) + "\n"
        out += "      headers: " + onOff(settings.headers) + "\n"
        out += "         mode: " + settings.mode.rawValue + "\n"
        out += "    nullvalue: \"" + settings.nullValue + "\"\n"
        out += "       output: stdout\n"
        out += "    separator: \"" + settings.separator + "\"\n"
        out += "        width: " + settings.widths.map(String.init).joined(separator: " ") + "\n\n"
        out += "Non-default flags/options:\n"
        for d in flags.allDefinitions() where !flags.isDefault(named: d.name) {
            out += "  " + d.name + ": " + flags.value(named: d.name) + "\n"
        }
        return out
    }

    static let helpText = """
        Welcome to the osquery shell. Please explore your OS!
        You are connected to a transient 'in-memory' virtual database.

        .all [TABLE]     Select all from a table
        .bail ON|OFF     Stop after hitting an error
        .connect PATH    Connect to an osquery extension socket
        .disconnect      Disconnect from a connected extension socket
        .echo ON|OFF     Turn command echo on or off
        .exit            Exit this program
        .features        List osquery's features and their statuses
        .headers ON|OFF  Turn display of headers on or off
        .help            Show this message
        .mode MODE       Set output mode where MODE is one of:
                           csv      Comma-separated values
                           column   Left-aligned columns see .width
                           line     One value per line
                           list     Values delimited by .separator string
                           pretty   Pretty printed SQL results (default)
        .nullvalue STR   Use STRING in place of NULL values
        .print STR...    Print literal STRING
        .quit            Exit this program
        .schema [TABLE]  Show the CREATE statements
        .separator STR   Change separator used by output mode
        .socket          Show the local osquery extensions socket path
        .show            Show the current values for various settings
        .summary         Alias for the show meta command
        .tables [TABLE]  List names of tables
        .types [SQL]     Show result of getQueryColumns for the given query
        .width [NUM1]+   Set column widths for "column" mode
        .timer ON|OFF      Turn the CPU timer measurement on or off

        """
}
