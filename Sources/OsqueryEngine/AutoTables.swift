internal import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// One table of a config's `auto_table_construction` (osquery's ATC), as configured.
package struct AutoTableDefinition: Sendable, Equatable {
    package var name: String
    package var query: String
    /// A file path or an osquery glob (`%` one level, a trailing `%%` recursive).
    package var path: String
    /// The configured column names; nil when `columns` is missing or not an array.
    package var columns: [String]?
    package var platform: String

    package init(name: String, query: String, path: String, columns: [String]?, platform: String = "") {
        self.name = name
        self.query = query
        self.path = path
        self.columns = columns
        self.platform = platform
    }
}

/// Registers and removes ATC tables as the config says (osquery's `ATCConfigParserPlugin`).
package enum AutoTables {
    /// Makes the registry's ATC tables exactly those `definitions` describe: an unchanged
    /// table stays, a changed one is replaced, one the config no longer names is removed.
    /// A definition that is misconfigured, names a table that exists (built in or from an
    /// extension), or whose query can never be a read of the file, is refused with a warning.
    /// Platform filtering is the caller's (the config knows the host's platform rules).
    package static func apply(_ definitions: [AutoTableDefinition], registry: PluginRegistry, flags: Flags) {
        var wanted: [(definition: AutoTableDefinition, schema: TableSchema)] = []
        for definition in definitions {
            if let schema = schema(of: definition, flags: flags) { wanted.append((definition, schema)) }
        }
        // Removals first: a table renamed only in case must free its name before it is added.
        let unchanged = Set(wanted.compactMap { w in
            (registry.table(named: w.definition.name) as? AutoTable)?.definition == w.definition ? w.definition.name : nil
        })
        for item in registry.items(registry: "table") where item.table is AutoTable && !unchanged.contains(item.name) {
            registry.remove(registry: "table", name: item.name)
            StatusLog.info("ATC table: \(item.name) Removed")
        }
        for w in wanted where !unchanged.contains(w.definition.name) {
            var item = RegistryItem(table: AutoTable(definition: w.definition, schema: w.schema, flags: flags))
            item.isInternal = true
            guard registry.add(item) else {
                StatusLog.warning("ATC Table: \(w.definition.name) overrides core table; Refusing registration")
                continue
            }
            StatusLog.info("ATC table: \(w.definition.name) Registered")
        }
    }

    /// The table's schema (the columns, all TEXT, then the implicit `path`), or nil with a
    /// warning when the definition cannot make a table.
    static func schema(of definition: AutoTableDefinition, flags: Flags) -> TableSchema? {
        let name = definition.name
        if definition.query.isEmpty || definition.path.isEmpty {
            StatusLog.warning("ATC Table: Skipping \(name) because it is misconfigured (missing query or path)")
            return nil
        }
        guard let configured = definition.columns else {
            StatusLog.warning("ATC Table: Skipping \(name) because it is misconfigured (no columns)")
            return nil
        }
        // The name and columns go into SQL the engine builds; osquery takes any text there.
        guard TableSchema.isValidName(name) else {
            StatusLog.warning("ATC Table: Skipping \(printable(name)) because its name is not a plain identifier (ASCII letters, digits and _)")
            return nil
        }
        var columns: [TableColumn] = []
        var seen = Set<String>()
        var userPath: String?
        for column in configured {
            guard TableSchema.isValidName(column) else {
                StatusLog.warning("ATC Table: Skipping \(name) because its column \(printable(column)) is not a plain identifier (ASCII letters, digits and _)")
                return nil
            }
            guard seen.insert(column.lowercased()).inserted else {
                StatusLog.warning("ATC Table: Skipping \(name) because its column \(column) is named twice")
                return nil
            }
            if column.lowercased() == "path" { userPath = column }
            columns.append(TableColumn(column, .text))
        }
        if let userPath {
            StatusLog.warning("ATC Table: \(name) is misconfigured. The configuration includes `\(userPath)`. This is a reserved column name")
        } else {
            columns.append(TableColumn("path", .text))
        }
        if let refusal = AutoTable.refusal(of: definition.query, flags: flags) {
            StatusLog.warning("ATC Table: Skipping \(name) because its query is refused: \(refusal)")
            return nil
        }
        return TableSchema(name: name, columns: columns)
    }

    /// A name as it may appear in a log line: quotes and control characters escaped.
    static func printable(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars.prefix(256) {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// The regular files an osquery path pattern names, sorted (osquery's `resolveFilePattern`):
    /// `%` is a wildcard, a trailing `%%` takes everything below, a relative pattern is taken
    /// from the working directory and the part before the first wildcard is resolved through
    /// symlinks. Directories, devices, FIFOs and sockets are left out: only a regular file can
    /// be a database, and opening a FIFO would block.
    package static func resolvePaths(_ pattern: String) -> [[UInt8]] {
        var p = Array(pattern.utf8).map { $0 == UInt8(ascii: "%") ? UInt8(ascii: "*") : $0 }
        if p.first != UInt8(ascii: "/") && p.first != UInt8(ascii: "~") {
            var cwd = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            guard getcwd(&cwd, cwd.count) != nil else { return [] }
            p = cwd.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) } + [UInt8(ascii: "/")] + p
        }
        let base = Array(p.prefix { $0 != UInt8(ascii: "*") })
        if !base.isEmpty, let real = withCString(base, { realpath($0, nil) }) {
            var canonical = Array(UnsafeBufferPointer(start: UnsafeRawPointer(real).assumingMemoryBound(to: UInt8.self), count: strlen(real)))
            free(real)
            if canonical != base {
                if isDirectory(canonical) { canonical.append(UInt8(ascii: "/")) }
                p = canonical + p[base.count...]
            }
        }
        var found: [[UInt8]] = []
        if p.count >= 2 && p.suffix(2) == [UInt8(ascii: "*"), UInt8(ascii: "*")] {
            var visited = Set<[UInt64]>()
            for root in glob(Array(p.dropLast())) {
                found.append(root)
                walk(root, depth: 0, visited: &visited, into: &found)
            }
        } else {
            found = glob(p)
        }
        var out: [[UInt8]] = []
        var seen = Set<[UInt8]>()
        for path in found where path.last != UInt8(ascii: "/") && isRegularFile(path) && seen.insert(path).inserted {
            out.append(path)
        }
        return out.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// osquery's recursion bound for `%%` (kMaxRecursiveGlobs).
    static let maxGlobDepth = 64

    private static func walk(_ dir: [UInt8], depth: Int, visited: inout Set<[UInt64]>, into out: inout [[UInt8]]) {
        guard depth < maxGlobDepth else { return }
        var st = stat()
        guard withCString(dir, { stat($0, &st) }) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return }
        // A symlink back up the tree would otherwise loop until the depth bound.
        guard visited.insert([UInt64(st.st_dev), UInt64(st.st_ino)]).inserted else { return }
        guard let names = FileIO.listDirectory(String(decoding: dir, as: UTF8.self)) else { return }
        var prefix = dir
        if prefix.last != UInt8(ascii: "/") { prefix.append(UInt8(ascii: "/")) }
        for name in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let path = prefix + name
            if isDirectory(path) {
                out.append(path + [UInt8(ascii: "/")])
                walk(path, depth: depth + 1, visited: &visited, into: &out)
            } else {
                out.append(path)
            }
        }
    }

    private static func glob(_ pattern: [UInt8]) -> [[UInt8]] {
        var g = glob_t()
        defer { globfree(&g) }
        guard withCString(pattern, { Glibc.glob($0, GLOB_TILDE | GLOB_MARK | GLOB_BRACE, nil, &g) }) == 0 else { return [] }
        var out: [[UInt8]] = []
        for i in 0..<Int(g.gl_pathc) {
            guard let c = g.gl_pathv[i] else { continue }
            out.append(Array(UnsafeBufferPointer(start: UnsafeRawPointer(c).assumingMemoryBound(to: UInt8.self), count: strlen(c))))
        }
        return out
    }

    static func isDirectory(_ path: [UInt8]) -> Bool {
        var st = stat()
        return withCString(path, { stat($0, &st) }) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isRegularFile(_ path: [UInt8]) -> Bool {
        var st = stat()
        return withCString(path, { stat($0, &st) }) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// `body` with `bytes` as a NUL-terminated C string.
    static func withCString<T>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (bytes + [0]).withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { body($0) }
        }
    }
}

/// An ATC table: each scan runs the configured query on every file the path names, each on a
/// connection of its own opened read-only and immutable (nothing is locked, created or
/// written, whatever the file or the query), guarded like the engine's own connections and
/// bounded by `--atc_max_rows`, `--atc_max_bytes` and `--atc_timeout`.
///
/// Rows follow osquery's: every column TEXT, matched to the query's result columns by name,
/// integers and reals as their text (reals as `%f`), text and blobs up to their first NUL, and
/// `path` the file the row came from (unless the query gives a `path` of its own).
package final class AutoTable: TablePlugin {
    package let definition: AutoTableDefinition
    package let schema: TableSchema
    private let flags: Flags

    init(definition: AutoTableDefinition, schema: TableSchema, flags: Flags) {
        self.definition = definition
        self.schema = schema
        self.flags = flags
    }

    package func generate(_ context: QueryContext) throws -> TableRows {
        var scan = Scan(
            table: schema.name, columnCount: schema.columns.count,
            maxRows: flags[.atcMaxRows], maxBytes: flags[.atcMaxBytes],
            timeoutSeconds: flags[.atcTimeout])
        var rows = TableRows(schema: schema)
        let guardState = UnsafeMutablePointer<osq_guard>.allocate(capacity: 1)
        guardState.initialize(to: osq_guard())
        defer {
            guardState.deinitialize(count: 1)
            guardState.deallocate()
        }
        guardState.pointee.deadline_ns = scan.timeoutSeconds > 0 ? osq_monotonic_ns() + Int64(clamping: scan.timeoutSeconds) * 1_000_000_000 : 0
        for path in AutoTables.resolvePaths(definition.path) {
            // The progress handler only runs inside SQLite; many files that each fail fast
            // (not databases) are bounded here.
            let deadline = guardState.pointee.deadline_ns
            if deadline != 0 && osq_monotonic_ns() >= deadline { throw timedOut(scan) }
            try read(path, into: &rows, scan: &scan, guardState: guardState)
        }
        return rows
    }

    /// What one scan may still take, and the error when it takes more.
    struct Scan {
        let table: String
        let columnCount: Int
        let maxRows: UInt64
        let maxBytes: UInt64
        let timeoutSeconds: UInt64
        var rows: UInt64 = 0
        var bytes: UInt64 = 0

        func tooMany(_ what: String, _ limit: UInt64, _ flag: String) -> EngineError {
            EngineError(code: SQLITE_ERROR, message: "ATC table \(table): more than \(limit) \(what) (--\(flag))")
        }
    }

    /// Opens `path` read-only and immutable, as a URI so that no character of the path can
    /// add a parameter.
    static func open(_ path: [UInt8]) -> (OpaquePointer?, Int32) {
        let hex = Array("0123456789ABCDEF".unicodeScalars)
        var uri = "file://"
        for byte in path {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "/"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                uri.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                uri.unicodeScalars.append("%")
                uri.unicodeScalars.append(hex[Int(byte >> 4)])
                uri.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        uri += "?mode=ro&immutable=1"
        Database.configureSQLite()
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE, nil)
        return (db, rc)
    }

    /// Puts the engine's guard and limits on a connection, and keeps its temporary storage
    /// in memory (a big sort would otherwise spill to a temporary file).
    static func secure(_ db: OpaquePointer, guardState: UnsafeMutablePointer<osq_guard>, flags: Flags) -> Int32 {
        for pragma in ["PRAGMA temp_store = MEMORY", "PRAGMA query_only = 1"] {
            let rc = sqlite3_exec(db, pragma, nil, nil, nil)
            if rc != SQLITE_OK { return rc }
        }
        let rc = osq_guard_install(db, guardState, Database.progressInterval)
        if rc != SQLITE_OK { return rc }
        Database.applyLimits(db, flags: flags)
        return SQLITE_OK
    }

    /// Why `query` can never be a read of an ATC file, or nil when it may be (it is checked
    /// against each file too: here, with no tables, a query naming one cannot be compiled).
    static func refusal(of query: String, flags: Flags) -> String? {
        Database.configureSQLite()
        var db: OpaquePointer?
        guard sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK, let db else {
            sqlite3_close_v2(db)
            return nil
        }
        defer { sqlite3_close_v2(db) }
        let guardState = UnsafeMutablePointer<osq_guard>.allocate(capacity: 1)
        guardState.initialize(to: osq_guard())
        defer {
            guardState.deinitialize(count: 1)
            guardState.deallocate()
        }
        guard secure(db, guardState: guardState, flags: flags) == SQLITE_OK else { return nil }
        switch prepare(db, query, guardState: guardState) {
        case .statement(let stmt):
            sqlite3_finalize(stmt)
            return nil
        case .refused(let reason):
            return reason
        case .failed:
            return nil
        }
    }

    enum Prepared {
        case statement(OpaquePointer)
        /// The query is not one read-only statement, or asks for what the authorizer denies.
        case refused(String)
        /// The file cannot answer it (no such table, not a database, corrupt).
        case failed(Int32, String)
    }

    /// Prepares `query`: exactly one statement that reads and returns columns.
    static func prepare(_ db: OpaquePointer, _ query: String, guardState: UnsafeMutablePointer<osq_guard>) -> Prepared {
        guardState.pointee.denied_code = 0
        var stmt: OpaquePointer?
        var more = false
        let rc: Int32 = query.withCString { text in
            var tail: UnsafePointer<CChar>?
            let rc = sqlite3_prepare_v2(db, text, -1, &stmt, &tail)
            guard rc == SQLITE_OK else { return rc }
            // Anything after the statement but blanks and comments is a second statement.
            while let rest = tail, rest.pointee != 0 {
                var next: OpaquePointer?
                var nextTail: UnsafePointer<CChar>?
                let nextRC = sqlite3_prepare_v2(db, rest, -1, &next, &nextTail)
                sqlite3_finalize(next)
                if nextRC != SQLITE_OK || next != nil {
                    more = true
                    break
                }
                tail = nextTail
            }
            return SQLITE_OK
        }
        if guardState.pointee.denied_code != 0 {
            sqlite3_finalize(stmt)
            let detail = withUnsafeBytes(of: &guardState.pointee.denied_detail) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            return .refused("not authorized (action \(guardState.pointee.denied_code) \(detail))")
        }
        guard rc == SQLITE_OK else {
            return .failed(rc, String(cString: sqlite3_errmsg(db)))
        }
        guard let stmt else { return .refused("it has no statement") }
        if more {
            sqlite3_finalize(stmt)
            return .refused("it is more than one statement")
        }
        if sqlite3_stmt_readonly(stmt) == 0 || sqlite3_column_count(stmt) == 0 {
            sqlite3_finalize(stmt)
            return .refused("it is not a read-only statement returning columns")
        }
        return .statement(stmt)
    }

    /// Appends the rows of one file. A file that cannot answer (not a database, no such
    /// table) is skipped with osquery's warning; a refused query or a bound reached fails
    /// the scan.
    private func read(_ path: [UInt8], into rows: inout TableRows, scan: inout Scan, guardState: UnsafeMutablePointer<osq_guard>) throws(EngineError) {
        let pathText = String(decoding: path, as: UTF8.self)
        let (opened, openRC) = AutoTable.open(path)
        defer { sqlite3_close_v2(opened) }
        guard openRC == SQLITE_OK, let db = opened else {
            StatusLog.warning("ATC Table: Error Code: 1 Could not generate data: Could not open database for path \(pathText)")
            return
        }
        let secured = AutoTable.secure(db, guardState: guardState, flags: flags)
        guard secured == SQLITE_OK else {
            throw EngineError(code: secured, message: "ATC table \(schema.name): cannot secure the connection: \(String(cString: sqlite3_errstr(secured)))")
        }
        let stmt: OpaquePointer
        switch AutoTable.prepare(db, definition.query, guardState: guardState) {
        case .statement(let s):
            stmt = s
        case .refused(let reason):
            throw EngineError(code: SQLITE_AUTH, message: "ATC table \(schema.name): query refused: \(reason)")
        case .failed(let rc, let message):
            if rc == SQLITE_INTERRUPT { throw timedOut(scan) }
            StatusLog.warning("ATC Table: Error Code: \(rc) Could not generate data: Could not prepare database for path \(pathText)")
            StatusLog.info("ATC table \(schema.name): \(pathText): \(message)")
            return
        }
        defer { sqlite3_finalize(stmt) }

        // Result columns to table columns by name; a later result column of the same name wins.
        let resultCount = Int(sqlite3_column_count(stmt))
        var target = [Int](repeating: -1, count: resultCount)
        var queryHasPath = false
        for i in 0..<resultCount {
            let name = String(cString: sqlite3_column_name(stmt, Int32(i)))
            if name.lowercased() == "path" { queryHasPath = true }
            if let c = schema.columnIndex(name) {
                for j in 0..<i where target[j] == c { target[j] = -1 }
                target[i] = c
            }
        }
        let pathColumn = queryHasPath ? nil : schema.columnIndex("path")
        if queryHasPath {
            StatusLog.warning("ATC Table: Row contains a defined path key, omitting the implicit one")
        }
        let pathValue = SQLValue.text(pathText)
        var row = [SQLValue](repeating: .null, count: scan.columnCount)
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                if rc == SQLITE_INTERRUPT { throw timedOut(scan) }
                if rc == SQLITE_TOOBIG { throw EngineError(code: rc, message: "ATC table \(schema.name): a value in \(pathText) is too big (--sql_max_length)") }
                StatusLog.warning("ATC Table: Error Code: \(rc) Could not generate data: \(String(cString: sqlite3_errmsg(db))) for path \(pathText)")
                return
            }
            scan.rows += 1
            if scan.rows > scan.maxRows { throw scan.tooMany("rows", scan.maxRows, "atc_max_rows") }
            for i in row.indices { row[i] = .null }
            for i in 0..<resultCount where target[i] >= 0 {
                let (value, size) = AutoTable.text(stmt, Int32(i))
                scan.bytes += UInt64(size)
                row[target[i]] = value
            }
            if let pathColumn {
                row[pathColumn] = pathValue
                scan.bytes += UInt64(path.count)
            }
            if scan.bytes > scan.maxBytes { throw scan.tooMany("bytes", scan.maxBytes, "atc_max_bytes") }
            rows.appendRow(row)
        }
    }

    private func timedOut(_ scan: Scan) -> EngineError {
        EngineError(code: SQLITE_INTERRUPT, message: "ATC table \(schema.name): the scan ran past \(scan.timeoutSeconds) s (--atc_timeout)")
    }

    /// A result cell as osquery's ATC row holds it, and its size in bytes.
    static func text(_ stmt: OpaquePointer, _ i: Int32) -> (SQLValue, Int) {
        switch sqlite3_column_type(stmt, i) {
        case SQLITE_NULL:
            return (.null, 0)
        case SQLITE_INTEGER:
            let s = String(sqlite3_column_int64(stmt, i))
            return (.text(s), s.utf8.count)
        case SQLITE_FLOAT:
            let s = fixed(sqlite3_column_double(stmt, i))
            return (.text(s), s.utf8.count)
        default:
            // Text and blobs alike, as C strings (osquery copies sqlite3_column_text into a std::string).
            guard let p = sqlite3_column_text(stmt, i) else { return (.null, 0) }
            let count = Int(sqlite3_column_bytes(stmt, i))
            let bytes = UnsafeRawBufferPointer(start: p, count: count)
            let end = bytes.firstIndex(of: 0) ?? count
            return (.text(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[..<end]), as: UTF8.self)), end)
        }
    }

    /// `%f`, std::to_string's form of a double.
    static func fixed(_ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 400)
        let n = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%f", $0) }
        guard n >= 0, Int(n) < buffer.count else { return String(value) }
        return String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
