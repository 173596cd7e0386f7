internal import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// The current row of a statement run by ``Database/execute(_:columns:row:)``. Its buffers
/// point into SQLite and are valid only during that `row` call.
public struct StatementRow {
    let stmt: OpaquePointer
    /// The number of result columns.
    public let columnCount: Int

    /// One cell, as SQLite holds it.
    public enum Cell {
        case null
        case integer(Int64)
        case double(Double)
        /// Text bytes (not necessarily valid UTF-8).
        case text(UnsafeRawBufferPointer)
        case blob(UnsafeRawBufferPointer)
    }

    /// The cell in column `i` (0-based).
    @inline(__always)
    public func cell(_ i: Int) -> Cell {
        // One sqlite3_column_* call per cell, then the value's own accessors: every column_*
        // call enters the connection's mutex and checks for a malloc failure on the way out.
        let value = sqlite3_column_value(stmt, Int32(i))
        switch sqlite3_value_type(value) {
        case SQLITE_NULL: return .null
        case SQLITE_INTEGER: return .integer(sqlite3_value_int64(value))
        case SQLITE_FLOAT: return .double(sqlite3_value_double(value))
        case SQLITE_BLOB:
            let p = sqlite3_value_blob(value)
            let n = p == nil ? 0 : Int(sqlite3_value_bytes(value))
            return .blob(UnsafeRawBufferPointer(start: p, count: n))
        default:
            // The bytes as they are: sqlite3_value_text would first NUL-terminate the value,
            // a realloc per cell for text a virtual table returned (SQLite stores it unterminated).
            let p = sqlite3_value_blob(value)
            let n = p == nil ? 0 : Int(sqlite3_value_bytes(value))
            return .text(UnsafeRawBufferPointer(start: p, count: n))
        }
    }
}

/// A result column with its type as osquery's getQueryColumns reports it.
public struct QueryColumn: Sendable, Equatable {
    public var name: String
    public var type: String
    public init(name: String, type: String) {
        self.name = name
        self.type = type
    }
}

extension Database {
    /// Process-wide SQLite settings, applied once before the first connection opens (SQLite
    /// takes them only before it initializes): no memory statistics, which nothing reads and
    /// which cost a global mutex per allocation. Every opener of a SQLite handle calls this.
    public static func configureSQLite() { _ = sqliteConfigured }
}

private let sqliteConfigured: Bool = {
    _ = osq_sqlite_disable_memstatus()
    return true
}()

/// One SQLite connection with every registered table attached as an
/// eponymous virtual table. Not thread-safe: use it from one thread (the
/// extension manager will give it a dedicated query thread).
public final class Database {
    let handle: OpaquePointer
    public let registry: PluginRegistry
    private var attached: [String: Int] = [:]
    private let flags: Flags
    /// The authorizer's and progress handler's state (see `osq_guard` in shim.h).
    private let guardState: UnsafeMutablePointer<osq_guard>
    /// The alias views each attached table owns, and the table owning each alias (lowercased,
    /// as SQLite compares names).
    private var aliasViews: [String: [String]] = [:]
    private var aliasOwners: [String: String] = [:]
    /// The deadline set by `setDeadline`, for its error message.
    private var deadlineSeconds: Double = 0
    /// The registry generation the attached tables reflect.
    private var syncedGeneration: UInt64
    /// Which plugin instance each replaceable (extension or ATC) table was attached with.
    private var extensionInstances: [String: ObjectIdentifier] = [:]

    /// Open an in-memory database and attach the registry's tables
    /// (honouring `--disable_tables` / `--enable_tables`).
    public init(registry: PluginRegistry, flags: Flags) throws(EngineError) {
        Database.configureSQLite()
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            if let db { sqlite3_close_v2(db) }
            throw EngineError(code: rc, message: "Cannot open database")
        }
        self.handle = db
        self.registry = registry
        self.flags = flags
        self.syncedGeneration = registry.generation
        self.guardState = UnsafeMutablePointer<osq_guard>.allocate(capacity: 1)
        guardState.initialize(to: osq_guard())
        SQLFunctions.register(on: db)
        let installed = osq_guard_install(db, guardState, Database.progressInterval)
        guard installed == SQLITE_OK else {
            throw EngineError(code: installed, message: "Cannot secure database: \(String(cString: sqlite3_errstr(installed)))")
        }
        Database.applyLimits(db, flags: flags)
        let disabled = Set(flags[.disableTables].split(separator: ",").map { String($0).trimmingASCIIWhitespace() })
        let enabled = Set(flags[.enableTables].split(separator: ",").map { String($0).trimmingASCIIWhitespace() })
        let defaultIndex = flags[.extensionsDefaultIndex]
        for table in registry.tables() {
            let name = table.schema.name
            if disabled.contains(name) { continue }
            if !enabled.isEmpty && !enabled.contains(name) { continue }
            try attach(table, defaultIndex: defaultIndex)
            if let instance = Database.replaceableInstance(table) { extensionInstances[name] = instance }
        }
    }

    /// Brings the attached tables in line with the registry, when it changed
    /// since the last call: tables extensions registered are attached, tables
    /// whose extension went away are detached, and an extension table that was
    /// replaced by a new registration under the same name is re-attached, so no
    /// statement can reach the old instance. Cheap when nothing changed; call
    /// it before each statement.
    public func refreshTables() {
        let generation = registry.generation
        guard generation != syncedGeneration else { return }
        syncedGeneration = generation
        let disabled = Set(flags[.disableTables].split(separator: ",").map { String($0).trimmingASCIIWhitespace() })
        let enabled = Set(flags[.enableTables].split(separator: ",").map { String($0).trimmingASCIIWhitespace() })
        var wanted: [String: any TablePlugin] = [:]
        for table in registry.tables() {
            let name = table.schema.name
            if disabled.contains(name) || (!enabled.isEmpty && !enabled.contains(name)) { continue }
            wanted[name] = table
        }
        for name in attached.keys where wanted[name] == nil {
            detach(name)
            extensionInstances[name] = nil
        }
        let defaultIndex = flags[.extensionsDefaultIndex]
        for (name, table) in wanted {
            let instance = Database.replaceableInstance(table)
            if attached[name] != nil {
                guard let instance, extensionInstances[name] != instance else { continue }
                detach(name)
            }
            try? attach(table, defaultIndex: defaultIndex)
            extensionInstances[name] = instance
        }
    }

    /// The instance of a table that may be replaced under the same name (an extension's, or an
    /// ATC table after a config change), so the replacement is re-attached; nil for built-ins.
    private static func replaceableInstance(_ table: any TablePlugin) -> ObjectIdentifier? {
        table.isExtension || table is AutoTable ? ObjectIdentifier(table as AnyObject) : nil
    }

    deinit {
        sqlite3_close_v2(handle)
        guardState.deinitialize(count: 1)
        guardState.deallocate()
    }

    /// VM instructions between two deadline checks: one clock read per ~10 µs of SQL at most.
    static let progressInterval: Int32 = 10_000

    /// Limits on what one statement may ask of SQLite. A string, blob or statement needs no
    /// more than the protocol can carry (`--sql_max_length`, 100 MiB as a wire message); no
    /// database may be attached (ATTACH and VACUUM INTO would write files); the rest bound the
    /// parser's and planner's recursion and memory well inside a query thread's stack.
    static func applyLimits(_ db: OpaquePointer, flags: Flags) {
        let length = Int32(clamping: max(1_000_000, flags[.sqlMaxLength]))
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, length)
        sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, length)
        sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0)
        sqlite3_limit(db, SQLITE_LIMIT_EXPR_DEPTH, 1000)
        sqlite3_limit(db, SQLITE_LIMIT_COMPOUND_SELECT, 500)
        sqlite3_limit(db, SQLITE_LIMIT_FUNCTION_ARG, 127)
        sqlite3_limit(db, SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        sqlite3_limit(db, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50_000)
        sqlite3_limit(db, SQLITE_LIMIT_TRIGGER_DEPTH, 1)
        sqlite3_limit(db, SQLITE_LIMIT_WORKER_THREADS, 0)
    }

    /// Statements started from now on stop with an error once `seconds` have passed
    /// (0: no deadline). Checked by the progress handler, so a table's generate that blocks
    /// is not cut short; the statement stops when SQLite runs again.
    package func setDeadline(seconds: Double) {
        deadlineSeconds = seconds
        guardState.pointee.expired = 0
        guardState.pointee.deadline_ns = seconds > 0 ? osq_monotonic_ns() + Int64(seconds * 1e9) : 0
    }

    /// Whether a caller left anything on this connection: schema objects, an open transaction,
    /// a pragma's value (as the authorizer saw the statements; cheap to ask).
    package var hasCallerState: Bool {
        guardState.pointee.changed != 0 || sqlite3_get_autocommit(handle) == 0
    }

    /// Takes the connection back to what the engine made of it: rolls back an open
    /// transaction, drops every table and view a caller created (main and temp), resets the
    /// pragmas a caller may change and re-creates the tables' alias views.
    package func resetCallerState() throws(EngineError) {
        guard hasCallerState else { return }
        setDeadline(seconds: 0)
        try trusted { () throws(EngineError) in
            if sqlite3_get_autocommit(handle) == 0 { try executeOne("ROLLBACK") }
            // First, as the LIKEs below must mean what they say.
            try executeOne("PRAGMA case_sensitive_like = 0")
            for schema in ["temp", "main"] {
                var objects: [(type: String, name: String)] = []
                try execute(
                    "SELECT type, name FROM \(schema).sqlite_schema WHERE type IN ('view', 'table') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type = 'table', sql NOT LIKE 'CREATE VIRTUAL%'",
                    columns: { _ in },
                    row: { row in
                        if case .text(let t) = row.cell(0), case .text(let n) = row.cell(1) {
                            objects.append((String(decoding: t, as: UTF8.self), String(decoding: n, as: UTF8.self)))
                        }
                    })
                for object in objects {
                    // A virtual table's shadow tables go with it, hence IF EXISTS.
                    let kind = object.type == "view" ? "VIEW" : "TABLE"
                    try executeOne("DROP \(kind) IF EXISTS \(schema).\(Database.quoted(object.name))")
                }
            }
            aliasOwners.removeAll()
            let tables = aliasViews
            aliasViews.removeAll()
            for (table, aliases) in tables { createAliasViews(table: table, aliases: aliases) }
        }
        guardState.pointee.changed = 0
    }

    /// Runs `body` with the authorizer letting everything through: for statements the engine
    /// builds itself (never with a caller's SQL).
    private func trusted<T>(_ body: () throws(EngineError) -> T) throws(EngineError) -> T {
        let outer = guardState.pointee.trusted
        guardState.pointee.trusted = 1
        defer { guardState.pointee.trusted = outer }
        return try body()
    }

    /// Runs exactly one statement the engine built, refusing anything after it: a name that
    /// slipped through could then never add a statement.
    private func executeOne(_ sql: String) throws(EngineError) {
        var stmt: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let failure: EngineError? = sql.withCString { text in
            let rc = sqlite3_prepare_v2(handle, text, -1, &stmt, &tail)
            if rc != SQLITE_OK { return error(rc) }
            if let tail, tail.pointee != 0 {
                return EngineError(code: SQLITE_ERROR, message: "internal statement has trailing SQL: \(sql)")
            }
            return nil
        }
        defer { sqlite3_finalize(stmt) }
        if let failure { throw failure }
        guard let stmt else { return }
        var rc = sqlite3_step(stmt)
        while rc == SQLITE_ROW { rc = sqlite3_step(stmt) }
        if rc != SQLITE_DONE { throw error(rc) }
    }

    /// An identifier quoted for SQLite ("a""b").
    static func quoted(_ name: String) -> String {
        var out = "\""
        for c in name { out += c == "\"" ? "\"\"" : String(c) }
        return out + "\""
    }

    /// Creates a table's alias views (temp views over the table in main, so a caller's temp
    /// object of the same name can never be what they read). An alias that is not a plain
    /// name, names an attached table or another table's alias is skipped.
    private func createAliasViews(table: String, aliases: [String]) {
        for alias in aliases {
            let key = alias.lowercased()
            guard TableSchema.isValidName(alias), key != table.lowercased(), aliasOwners[key] == nil,
                !attached.keys.contains(where: { $0.lowercased() == key })
            else {
                StatusLog.warning("Table alias \(alias) of \(table) not created: it is not a free table name")
                continue
            }
            do throws(EngineError) {
                try trusted { () throws(EngineError) in
                    try executeOne("CREATE TEMP VIEW \(Database.quoted(alias)) AS SELECT * FROM main.\(Database.quoted(table))")
                }
                aliasOwners[key] = table
                aliasViews[table, default: []].append(alias)
            } catch {
                StatusLog.warning("Table alias \(alias) of \(table) not created: \(error.message)")
            }
        }
    }

    /// Drops the alias views `table` owns.
    private func dropAliasViews(table: String) {
        for alias in aliasViews.removeValue(forKey: table) ?? [] {
            aliasOwners[alias.lowercased()] = nil
            do throws(EngineError) {
                try trusted { () throws(EngineError) in try executeOne("DROP VIEW IF EXISTS temp.\(Database.quoted(alias))") }
            } catch {
                StatusLog.warning("Table alias \(alias) of \(table) not dropped: \(error.message)")
            }
        }
    }

    /// Attach a table (module + alias views). Used at open and when an
    /// extension registers a table at run time.
    public func attach(_ table: any TablePlugin, defaultIndex: Bool = true) throws(EngineError) {
        let schema = table.schema
        let module = TableModule(plugin: table, defaultIndex: defaultIndex)
        let aux = Unmanaged.passRetained(module).toOpaque()
        let definition = table.isWritable ? VirtualTableModules.writable : VirtualTableModules.readOnly
        let rc = sqlite3_create_module_v2(handle, schema.name, definition, aux) { p in
            if let p { Unmanaged<TableModule>.fromOpaque(p).release() }
        }
        if rc != SQLITE_OK {
            throw EngineError(code: rc, message: "Failed adding registry: \(String(cString: sqlite3_errstr(rc)))")
        }
        attached[schema.name, default: 0] += 1
        createAliasViews(table: schema.name, aliases: schema.aliases)
    }

    /// Detach a table attached with `attach`, and drop its alias views.
    public func detach(_ name: String) {
        dropAliasViews(table: name)
        let keep = attached.keys.filter { $0 != name }
        attached[name] = nil
        var cStrings = keep.map { strdup($0) }
        cStrings.append(nil)
        cStrings.withUnsafeMutableBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { p in
                _ = sqlite3_drop_modules(handle, p)
            }
        }
        for p in cStrings { free(p) }
    }

    public var attachedTableNames: [String] { attached.keys.sorted() }

    public static var sqliteVersion: String { String(cString: sqlite3_libversion()) }

    /// Whether `sql` ends a complete statement (sqlite3_complete).
    public static func isComplete(_ sql: String) -> Bool {
        sqlite3_complete(sql) != 0
    }

    /// Interrupt a running statement (safe from another thread or a signal handler).
    public func interrupt() {
        sqlite3_interrupt(handle)
    }

    /// A thread-safe handle that can only interrupt this database.
    public var interrupter: Interrupter { Interrupter(handle: handle) }

    public struct Interrupter: @unchecked Sendable {
        let handle: OpaquePointer
        public func interrupt() { sqlite3_interrupt(handle) }
    }

    /// The error of a failed prepare or step. A denied action is logged as osquery logs it;
    /// a statement stopped at its deadline says so.
    private func error(_ rc: Int32) -> EngineError {
        let g = guardState
        if g.pointee.denied_code != 0 {
            let detail = withUnsafeBytes(of: &g.pointee.denied_detail) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            StatusLog.error("Authorizer denied action \(g.pointee.denied_code) \(detail)")
            g.pointee.denied_code = 0
        }
        if rc & 0xff == SQLITE_INTERRUPT, g.pointee.expired != 0 {
            return EngineError(
                code: SQLITE_INTERRUPT,
                message: "interrupted: the query ran past its deadline of \(Database.secondsText(deadlineSeconds)) s (--query_timeout)")
        }
        return EngineError(code: rc & 0xff, message: String(cString: sqlite3_errmsg(handle)))
    }

    static func secondsText(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }

    /// Run every `;`-separated statement in `sql`, calling `body` with each
    /// statement's result. Stops at the first failing statement.
    public func execute(_ sql: String, each body: (ResultSet) throws(EngineError) -> Void) throws(EngineError) {
        try forEachStatement(sql) { (stmt: OpaquePointer) throws(EngineError) in try body(try readAll(stmt)) }
    }

    /// Prepares each `;`-separated statement of `sql` in turn and hands it to
    /// `body` (which steps it); stops at the first that fails to prepare.
    private func forEachStatement(_ sql: String, _ body: (OpaquePointer) throws(EngineError) -> Void) throws(EngineError) {
        guard let copy = strdup(sql) else { throw EngineError(code: SQLITE_NOMEM, message: "out of memory") }
        defer { free(copy) }
        var tail: UnsafePointer<CChar>? = UnsafePointer(copy)
        while let cur = tail, cur.pointee != 0 {
            var stmt: OpaquePointer?
            var next: UnsafePointer<CChar>?
            let code = sqlite3_prepare_v2(handle, cur, -1, &stmt, &next)
            if code != SQLITE_OK { throw error(code) }
            tail = next
            guard let stmt else { continue }  // whitespace or a comment
            defer { sqlite3_finalize(stmt) }
            try body(stmt)
        }
    }

    /// Run every `;`-separated statement in `sql`, streaming: `columns` gets each statement's
    /// result column names, then `row` each of its rows, read in place from SQLite (nothing is
    /// collected). Stops at the first failing statement.
    public func execute(
        _ sql: String, columns: ([String]) throws(EngineError) -> Void, row: (StatementRow) throws(EngineError) -> Void
    ) throws(EngineError) {
        try forEachStatement(sql) { (stmt: OpaquePointer) throws(EngineError) in
            let n = Int(sqlite3_column_count(stmt))
            var names: [String] = []
            names.reserveCapacity(n)
            for i in 0..<n { names.append(String(cString: sqlite3_column_name(stmt, Int32(i)))) }
            try columns(names)
            let view = StatementRow(stmt: stmt, columnCount: n)
            while true {
                let rc = sqlite3_step(stmt)
                if rc == SQLITE_DONE { break }
                guard rc == SQLITE_ROW else { throw error(rc) }
                try row(view)
            }
        }
    }

    /// Run every statement and return each statement's result, in order
    /// (statements that return no columns, like CREATE, give an empty result).
    public func executeStatements(_ sql: String) throws(EngineError) -> [ResultSet] {
        var results: [ResultSet] = []
        try execute(sql) { (r: ResultSet) throws(EngineError) in results.append(r) }
        return results
    }

    /// Run SQL and return its rows. With several statements, their rows are
    /// concatenated (osquery's query API); statements whose columns differ
    /// from the last statement with columns are left out, so use
    /// `executeStatements` or `queryMaps` when shapes differ.
    @discardableResult
    public func execute(_ sql: String) throws(EngineError) -> ResultSet {
        let results = try executeStatements(sql)
        guard let last = results.last(where: { !$0.columns.isEmpty }) else { return ResultSet() }
        // One statement (the usual case): its rows as they are, not copied value by value.
        if results.count == 1 { return last }
        let same = results.filter { $0.columns == last.columns }
        var writer = ResultWriter(columns: last.columns.count)
        let n = last.columns.count
        for r in same {
            for row in 0..<r.rowCount {
                writer.reserve(n)
                for c in 0..<n { writer.append(r.cell(row * n + c)) }
            }
        }
        return ResultSet(columns: last.columns, declaredTypes: last.declaredTypes, writer: writer)
    }

    /// osquery's query() result: every statement's rows as maps of column
    /// name to text (NULL → nil), concatenated.
    public func queryMaps(_ sql: String) throws(EngineError) -> [[String: String?]] {
        var rows: [[String: String?]] = []
        for r in try executeStatements(sql) {
            for i in 0..<r.rowCount {
                var m: [String: String?] = [:]
                for (c, name) in r.columns.enumerated() { m[name] = .some(r[i, c].osqueryString) }
                rows.append(m)
            }
        }
        return rows
    }

    /// The result columns of a query and their types (getQueryColumns):
    /// the declared type where there is one, otherwise UNKNOWN.
    public func queryColumns(_ sql: String) throws(EngineError) -> [QueryColumn] {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK else { throw error(rc) }
        guard let stmt else { return [] }
        defer { sqlite3_finalize(stmt) }
        let n = sqlite3_column_count(stmt)
        return (0..<n).map { i in
            let name = String(cString: sqlite3_column_name(stmt, i))
            let type = sqlite3_column_decltype(stmt, i).map { String(cString: $0) } ?? "UNKNOWN"
            return QueryColumn(name: name, type: type)
        }
    }

    private func readAll(_ stmt: OpaquePointer) throws(EngineError) -> ResultSet {
        let n = Int(sqlite3_column_count(stmt))
        var columns: [String] = []
        var declaredTypes: [String?] = []
        columns.reserveCapacity(n)
        declaredTypes.reserveCapacity(n)
        for i in 0..<n {
            columns.append(String(cString: sqlite3_column_name(stmt, Int32(i))))
            declaredTypes.append(sqlite3_column_decltype(stmt, Int32(i)).map { String(cString: $0) })
        }
        // Cells go into fixed-size chunks, text and blobs as their bytes: no String per cell,
        // and a large result is never copied to grow it.
        var writer = ResultWriter(columns: n)
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc) }
            writer.reserve(n)
            for i in 0..<Int32(n) {
                // One column call per cell, then the value's own accessors (no per-call API
                // checks), and text read as stored: sqlite3_column_text would first add a NUL
                // to text a virtual table returned, a reallocation per cell.
                let value = sqlite3_column_value(stmt, i)
                switch sqlite3_value_type(value) {
                case SQLITE_NULL:
                    writer.append(.null, bits: 0)
                case SQLITE_INTEGER:
                    writer.append(.integer, bits: sqlite3_value_int64(value))
                case SQLITE_FLOAT:
                    writer.append(.double, bits: Int64(bitPattern: sqlite3_value_double(value).bitPattern))
                case SQLITE_BLOB:
                    let p = sqlite3_value_blob(value)
                    writer.append(.blob, bytes: p, count: p == nil ? 0 : Int(sqlite3_value_bytes(value)))
                default:
                    let p = sqlite3_value_blob(value)
                    writer.append(.text, bytes: p, count: p == nil ? 0 : Int(sqlite3_value_bytes(value)))
                }
            }
        }
        return ResultSet(columns: columns, declaredTypes: declaredTypes, writer: writer)
    }

    /// Values per chunk of a result being read (a chunk ends before a row that would not fit).
    package static let resultChunkValues = 1 << 14
}
