internal import CSQLite

/// What one registered SQLite module knows about its table plugin.
final class TableModule: @unchecked Sendable {
    let plugin: any TablePlugin
    /// The plugin when it reads its rows through a cursor.
    let cursorTable: (any CursorTable)?
    let defaultIndex: Bool
    /// Everything derived from the schema, computed on first use (most
    /// tables are never connected in a given process).
    private(set) lazy var derived = Derived(plugin: plugin, defaultIndex: defaultIndex)

    struct Derived {
        let schema: TableSchema
        /// Columns as SQLite sees them (real then alias), with their source column.
        let columns: [TableColumn]
        let sources: [Int]
        /// Effective push-down options per virtual column.
        let pushOptions: [ColumnOptions]
        let requiredColumns: [Int]
        let ddl: String
        /// For colsUsed: the name each virtual column maps to (aliases → target).
        let usedNames: [String]

        init(plugin: any TablePlugin, defaultIndex: Bool) {
            let schema = plugin.schema
            self.schema = schema
            let virtual = schema.virtualColumns
            self.columns = virtual.map(\.column)
            self.sources = virtual.map(\.source)
            self.usedNames = virtual.map { schema.columns[$0.source].name }
            self.pushOptions = virtual.enumerated().map { i, v in
                if i >= schema.columns.count { return [] }  // alias columns get no constraints
                if plugin.isExtension && defaultIndex && v.column.options.rawValue == 0 { return .index }
                return v.column.options
            }
            self.requiredColumns = virtual.indices.filter { virtual[$0].column.options.contains(.required) }
            self.ddl = "CREATE TABLE x" + schema.columnDefinition(includeAliases: true, isExtension: plugin.isExtension)
        }
    }

    var schema: TableSchema { derived.schema }
    var columns: [TableColumn] { derived.columns }
    var sources: [Int] { derived.sources }
    var pushOptions: [ColumnOptions] { derived.pushOptions }
    var requiredColumns: [Int] { derived.requiredColumns }
    var ddl: String { derived.ddl }
    var usedNames: [String] { derived.usedNames }

    init(plugin: any TablePlugin, defaultIndex: Bool) {
        self.plugin = plugin
        self.cursorTable = plugin as? any CursorTable
        self.defaultIndex = defaultIndex
    }
}

/// The rows of one xFilter call and the cursor position.
///
/// xNext, xEof and xColumn run once per row or per cell, so everything they read is a plain
/// value or an unretained pointer here: no reference count moves per cell.
final class CursorState {
    var rows: TableRows {
        didSet { bindRows() }
    }
    var index = 0
    /// `rows.count`, kept for xEof.
    private(set) var rowCount = 0
    /// The cells of `rows.source` (which `rows` keeps alive).
    private(set) var textView: TextCellsView?
    /// Rows kept as text: their source, and how many rows were ready when last asked (rows
    /// below that are read without asking again).
    private(set) var source: (any RowSource)?
    var ready = Int.max
    /// The rows of a ``CursorTable``'s scan, read as the scan goes (`rows` is then empty, and
    /// `rowCount` is `Int.max` until the cursor has no more).
    private(set) var cursor: (any RowCursor)? {
        didSet { scan = cursor }
    }
    /// `cursor`, for xNext and xColumn: read without moving its reference count (a strong
    /// read retains and releases it once per cell); `cursor` keeps it alive.
    private(set) unowned(unsafe) var scan: (any RowCursor)? = nil
    /// Per virtual column: source column and declared type (set at the first xFilter so xColumn
    /// does no lookups), in memory this object owns.
    private(set) var columns = UnsafeMutableBufferPointer<(source: Int, type: ColumnType)>(start: nil, count: 0)

    init(rows: TableRows) {
        self.rows = rows
        bindRows()
    }

    deinit {
        columns.deallocate()
        source?.cancel()
        cursor?.close()
    }

    /// Starts reading `cursor` (closing the previous scan's) at its first row.
    func start(_ cursor: any RowCursor) throws(EngineError) {
        self.cursor?.close()
        self.cursor = cursor
        index = 0
        rowCount = 0
        rowCount = try cursor.advance() ? Int.max : 0
    }

    /// Moves the cursor to the next row; at its end, `rowCount` becomes the rows read.
    @inline(__always)
    func advanceCursor(_ cursor: any RowCursor) throws(EngineError) {
        if try !cursor.advance() { rowCount = index }
    }

    /// Ends a cursor's scan (a `generate` replaces it).
    func dropCursor() {
        cursor?.close()
        cursor = nil
    }

    private func bindRows() {
        source?.cancel()
        rowCount = rows.count
        source = rows.source
        textView = source?.cells
        ready = source == nil ? Int.max : 0
    }

    /// Whether the current row can be read, waiting for it if it is still being filled in.
    @inline(__always)
    func currentRowReady() -> Bool {
        if index < ready { return true }
        guard let source else { return false }
        ready = source.waitForRow(index)
        return index < ready
    }

    /// At the end of the rows: the error the filling thread met, if any (it is the statement's).
    func endFailure() -> String? {
        guard let source else { return nil }
        return source.waitUntilDone().failure
    }

    var hasColumns: Bool { columns.baseAddress != nil }

    func setColumns(sources: [Int], types: [ColumnType]) {
        columns.deallocate()
        columns = .allocate(capacity: max(sources.count, 1))
        for i in sources.indices { (columns.baseAddress! + i).initialize(to: (sources[i], types[i])) }
        columns = UnsafeMutableBufferPointer(rebasing: columns[0..<sources.count])
    }
}

/// One constraint of a chosen plan, as encoded in idxStr.
struct PlannedConstraint: Equatable {
    var column: Int
    var op: UInt8
    var allAtOnce: Bool
}

enum IndexPlan {
    /// idxStr: "<colUsed hex>;<col>,<op>,<in>;..."
    static func encode(colUsed: UInt64, constraints: [PlannedConstraint]) -> String {
        var s = String(colUsed, radix: 16)
        for c in constraints {
            s += ";\(c.column),\(c.op),\(c.allAtOnce ? 1 : 0)"
        }
        return s
    }

    static func decode(_ s: String) -> (colUsed: UInt64, constraints: [PlannedConstraint]) {
        let parts = s.split(separator: ";")
        let colUsed = parts.first.flatMap { UInt64($0, radix: 16) } ?? UInt64.max
        var out: [PlannedConstraint] = []
        out.reserveCapacity(parts.count)
        for p in parts.dropFirst() {
            let f = p.split(separator: ",")
            guard f.count == 3, let c = Int(f[0]), let o = UInt8(f[1]) else { continue }
            out.append(PlannedConstraint(column: c, op: o, allAtOnce: f[2] == "1"))
        }
        return (colUsed, out)
    }
}

@inline(__always)
private func module(of vtab: UnsafeMutablePointer<sqlite3_vtab>) -> TableModule {
    let owner = UnsafeMutableRawPointer(vtab).assumingMemoryBound(to: osq_vtab.self).pointee.owner!
    return Unmanaged<TableModule>.fromOpaque(owner).takeUnretainedValue()
}

@inline(__always)
private func cursorState(_ cursor: UnsafeMutablePointer<sqlite3_vtab_cursor>) -> CursorState {
    let owner = UnsafeMutableRawPointer(cursor).assumingMemoryBound(to: osq_vtab_cursor.self).pointee.owner!
    return Unmanaged<CursorState>.fromOpaque(owner).takeUnretainedValue()
}

/// The cursor's state borrowed for one call (the cursor holds it): no retain and release per row.
@inline(__always)
private func withCursorState<R>(_ cursor: UnsafeMutablePointer<sqlite3_vtab_cursor>, _ body: (CursorState) -> R) -> R {
    let owner = UnsafeMutableRawPointer(cursor).assumingMemoryBound(to: osq_vtab_cursor.self).pointee.owner!
    return Unmanaged<CursorState>.fromOpaque(owner)._withUnsafeGuaranteedRef(body)
}

private func setError(_ vtab: UnsafeMutablePointer<sqlite3_vtab>, _ message: String) {
    message.withCString { osq_vtab_set_error(vtab, $0) }
}

/// Text form of an SQLite value, as osquery puts it in a constraint's expr.
func valueText(_ v: OpaquePointer?) -> (String, SQLValue)? {
    switch sqlite3_value_type(v) {
    case SQLITE_NULL:
        return nil
    case SQLITE_INTEGER:
        let i = sqlite3_value_int64(v)
        return (String(i), .integer(i))
    case SQLITE_FLOAT:
        let d = sqlite3_value_double(v)
        return (SQLValue.sqliteDouble(d), .double(d))
    default:
        let n = Int(sqlite3_value_bytes(v))
        guard let p = sqlite3_value_text(v) else { return ("", .text("")) }
        let value = SQLValue.text(bytes: UnsafeBufferPointer(start: p, count: n))
        switch value {
        case .text(let s): return (s, value)
        default: return (String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self), value)
        }
    }
}

func sqlValue(_ v: OpaquePointer?) -> SQLValue {
    switch sqlite3_value_type(v) {
    case SQLITE_NULL: return .null
    case SQLITE_INTEGER: return .integer(sqlite3_value_int64(v))
    case SQLITE_FLOAT: return .double(sqlite3_value_double(v))
    case SQLITE_BLOB:
        let n = Int(sqlite3_value_bytes(v))
        guard n > 0, let p = sqlite3_value_blob(v) else { return .blob([]) }
        return .blob(Array(UnsafeRawBufferPointer(start: p, count: n)))
    default:
        let n = Int(sqlite3_value_bytes(v))
        guard let p = sqlite3_value_text(v) else { return .text("") }
        return .text(bytes: UnsafeBufferPointer(start: p, count: n))
    }
}

/// Hand a value to SQLite as a function/column result.
@inline(__always)
func setResult(_ ctx: OpaquePointer?, _ value: SQLValue, type: ColumnType) {
    switch value {
    case .null:
        sqlite3_result_null(ctx)
    case .integer(let i):
        sqlite3_result_int64(ctx, i)
    case .double(let d):
        sqlite3_result_double(ctx, d)
    case .text(var s):
        if type.isNumeric {
            setResult(ctx, SQLValue.converting(s, to: type), type: .text)
            return
        }
        s.withUTF8 { buf in setTextResult(ctx, UnsafeRawBufferPointer(buf)) }
    case .blob(let bytes):
        bytes.withUnsafeBytes { buf in
            if type == .blob {
                sqlite3_result_blob64(ctx, buf.baseAddress ?? UnsafeRawPointer(bitPattern: 1), sqlite3_uint64(buf.count), osq_sqlite_transient())
            } else {
                setTextResult(ctx, buf)
            }
        }
    }
}

/// Hands text to SQLite (which copies it). The 64-bit length goes to SQLite unconverted: a value
/// past `SQLITE_LIMIT_LENGTH` (or 2 GiB) becomes SQLite's "string or blob too big" error for the
/// statement, where an `Int32` length would trap the process.
@inline(__always)
func setTextResult(_ ctx: OpaquePointer?, _ bytes: UnsafeRawBufferPointer) {
    if let start = bytes.baseAddress, bytes.count > 0 {
        sqlite3_result_text64(
            ctx, start.assumingMemoryBound(to: CChar.self), sqlite3_uint64(bytes.count), osq_sqlite_transient(),
            UInt8(SQLITE_UTF8))
    } else {
        sqlite3_result_text(ctx, "", 0, osq_sqlite_static())
    }
}

private let xConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafeMutablePointer<UnsafeMutablePointer<sqlite3_vtab>?>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 = { db, aux, _, _, ppVTab, pzErr in
    guard let aux, let ppVTab else { return SQLITE_ERROR }
    let module = Unmanaged<TableModule>.fromOpaque(aux).takeUnretainedValue()
    let rc = sqlite3_declare_vtab(db, module.ddl)
    if rc != SQLITE_OK {
        // SQLite's reason (a duplicate column, a syntax error) is what the user needs to fix it.
        let reason = sqlite3_errmsg(db).map { String(cString: $0) } ?? "error \(rc)"
        if let pzErr { pzErr.pointee = osq_sqlite_strdup("Failed to declare table \(module.schema.name): \(reason)") }
        return rc
    }
    // Views (alias views, a caller's views) may read the table with trusted_schema off.
    _ = osq_vtab_config_innocuous(db)
    guard let raw = sqlite3_malloc(Int32(MemoryLayout<osq_vtab>.size)) else { return SQLITE_NOMEM }
    let vtab = raw.bindMemory(to: osq_vtab.self, capacity: 1)
    vtab.initialize(to: osq_vtab())
    vtab.pointee.owner = Unmanaged.passRetained(module).toOpaque()
    ppVTab.pointee = UnsafeMutableRawPointer(vtab).assumingMemoryBound(to: sqlite3_vtab.self)
    return SQLITE_OK
}

private let xDisconnect: @convention(c) (UnsafeMutablePointer<sqlite3_vtab>?) -> Int32 = { vtab in
    guard let vtab else { return SQLITE_OK }
    let v = UnsafeMutableRawPointer(vtab).assumingMemoryBound(to: osq_vtab.self)
    if let owner = v.pointee.owner {
        Unmanaged<TableModule>.fromOpaque(owner).release()
    }
    if let err = vtab.pointee.zErrMsg { sqlite3_free(err) }
    sqlite3_free(vtab)
    return SQLITE_OK
}

private let xBestIndex: @convention(c) (UnsafeMutablePointer<sqlite3_vtab>?, UnsafeMutablePointer<sqlite3_index_info>?) -> Int32 = { vtab, info in
    guard let vtab, let info else { return SQLITE_ERROR }
    let module = module(of: vtab)
    var planned: [PlannedConstraint] = []
    var indexUsed = false
    var requiredSatisfied = false
    var unusable = 0
    let n = Int(info.pointee.nConstraint)
    for i in 0..<n {
        let c = info.pointee.aConstraint[i]
        if c.usable == 0 {
            unusable += 1
            continue
        }
        let col = Int(c.iColumn)
        guard col >= 0, col < module.columns.count else { continue }
        let options = module.pushOptions[col]
        guard !options.isDisjoint(with: ColumnOptions.pushDown) else { continue }
        let op = ConstraintOperator(rawValue: Int(c.op))
        guard op.isPushable else { continue }
        if module.columns[col].type == .text && op.isRange { continue }
        var allAtOnce = false
        if options.contains(.optimized) && op == .equals && sqlite3_vtab_in(info, Int32(i), -1) != 0 {
            allAtOnce = sqlite3_vtab_in(info, Int32(i), 1) != 0
        }
        planned.append(PlannedConstraint(column: col, op: c.op, allAtOnce: allAtOnce))
        info.pointee.aConstraintUsage[i].argvIndex = Int32(planned.count)
        info.pointee.aConstraintUsage[i].omit = 0
        // osquery prices a constraint on an index, required or additional column alike (cost 1),
        // so `users JOIN firefox_addons USING (uid)` hands each uid to the user-data table.
        if !options.isDisjoint(with: [.index, .required, .additional]) { indexUsed = true }
        if options.contains(.required) { requiredSatisfied = true }
    }
    var cost: Double
    if !module.requiredColumns.isEmpty && !requiredSatisfied {
        // Still a valid plan (so the statement reaches xFilter and fails with
        // osquery's message), but never preferred over one that supplies it.
        cost = 1e12
    } else if indexUsed {
        cost = 1 + Double(unusable) * 10
    } else {
        cost = 1_000_000 + Double(unusable) * 10
    }
    info.pointee.estimatedCost = cost
    info.pointee.estimatedRows = indexUsed ? 10 : 100_000
    info.pointee.idxNum = Int32(planned.count)
    let encoded = IndexPlan.encode(colUsed: UInt64(info.pointee.colUsed), constraints: planned)
    info.pointee.idxStr = encoded.withCString { osq_sqlite_strdup($0) }
    info.pointee.needToFreeIdxStr = 1
    return SQLITE_OK
}

private let xOpen: @convention(c) (UnsafeMutablePointer<sqlite3_vtab>?, UnsafeMutablePointer<UnsafeMutablePointer<sqlite3_vtab_cursor>?>?) -> Int32 = { _, ppCursor in
    guard let ppCursor, let raw = sqlite3_malloc(Int32(MemoryLayout<osq_vtab_cursor>.size)) else { return SQLITE_NOMEM }
    let cursor = raw.bindMemory(to: osq_vtab_cursor.self, capacity: 1)
    cursor.initialize(to: osq_vtab_cursor())
    cursor.pointee.owner = Unmanaged.passRetained(CursorState(rows: TableRows(columnCount: 0))).toOpaque()
    ppCursor.pointee = UnsafeMutableRawPointer(cursor).assumingMemoryBound(to: sqlite3_vtab_cursor.self)
    return SQLITE_OK
}

private let xClose: @convention(c) (UnsafeMutablePointer<sqlite3_vtab_cursor>?) -> Int32 = { cursor in
    guard let cursor else { return SQLITE_OK }
    let c = UnsafeMutableRawPointer(cursor).assumingMemoryBound(to: osq_vtab_cursor.self)
    if let owner = c.pointee.owner {
        Unmanaged<CursorState>.fromOpaque(owner).release()
    }
    sqlite3_free(cursor)
    return SQLITE_OK
}

/// Build the query context for one xFilter call. Returns nil when a required
/// column is missing.
func buildContext(module: TableModule, idxStr: String, argv: UnsafeMutablePointer<OpaquePointer?>?, argc: Int) -> QueryContext {
    let plan = IndexPlan.decode(idxStr)
    var used = Set<String>()
    for i in 0..<module.columns.count {
        let bit = i < 63 ? UInt64(1) << UInt64(i) : UInt64(1) << 63
        if plan.colUsed & bit != 0 { used.insert(module.usedNames[i]) }
    }
    var context = QueryContext(columns: module.columns, colsUsed: used, colsUsedBitset: plan.colUsed)
    for (k, p) in plan.constraints.enumerated() where k < argc {
        let value = argv?[k]
        let op = ConstraintOperator(rawValue: Int(p.op))
        if p.allAtOnce {
            var element: OpaquePointer?
            var rc = sqlite3_vtab_in_first(value, &element)
            if rc == SQLITE_OK {
                while rc == SQLITE_OK {
                    if let (text, v) = valueText(element) {
                        context.add(Constraint(op: .equals, expr: text, value: v), toColumn: p.column)
                    }
                    rc = sqlite3_vtab_in_next(value, &element)
                }
                continue
            }
        }
        guard let (text, v) = valueText(value), !text.isEmpty else { continue }
        context.add(Constraint(op: op, expr: text, value: v), toColumn: p.column)
    }
    return context
}

private let xFilter: @convention(c) (UnsafeMutablePointer<sqlite3_vtab_cursor>?, Int32, UnsafePointer<CChar>?, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Int32 = { cursor, _, idxStr, argc, argv in
    guard let cursor, let vtab = cursor.pointee.pVtab else { return SQLITE_ERROR }
    let module = module(of: vtab)
    let state = cursorState(cursor)
    let plan = idxStr.map { String(cString: $0) } ?? ""
    let context = buildContext(module: module, idxStr: plan, argv: argv, argc: Int(argc))
    if !module.requiredColumns.isEmpty {
        let decoded = IndexPlan.decode(plan)
        let satisfied = decoded.constraints.contains { module.columns[$0.column].options.contains(.required) }
        if !satisfied {
            let message = "Table \(module.schema.name) was queried without a required column in the WHERE clause"
            StatusLog.warning(message)
            setError(vtab, message)
            return SQLITE_CONSTRAINT
        }
    }
    do {
        if let table = module.cursorTable, let cursor = try table.openCursor(context) {
            if state.rows.count > 0 || state.source != nil { state.rows = TableRows(columnCount: 0) }
            try state.start(cursor)
        } else {
            state.dropCursor()
            state.rows = try module.plugin.generate(context)
            state.index = 0
        }
        if !state.hasColumns {
            state.setColumns(sources: module.sources, types: module.columns.map(\.type))
        }
    } catch let error as EngineError {
        setError(vtab, error.message)
        return error.code == 0 ? SQLITE_ERROR : error.code
    } catch {
        setError(vtab, "\(error)")
        return SQLITE_ERROR
    }
    return SQLITE_OK
}

private let xNext: @convention(c) (UnsafeMutablePointer<sqlite3_vtab_cursor>?) -> Int32 = { cursor in
    guard let cursor else { return SQLITE_ERROR }
    let failure = withCursorState(cursor) { state -> String? in
        state.index += 1
        if let rows = state.scan {
            do throws(EngineError) {
                try state.advanceCursor(rows)
            } catch {
                return error.message
            }
            return nil
        }
        // Rows filled in on another thread report their error once the scan reaches the end.
        return state.index == state.rowCount ? state.endFailure() : nil
    }
    if let failure, let vtab = cursor.pointee.pVtab {
        setError(vtab, failure)
        return SQLITE_ERROR
    }
    return SQLITE_OK
}

private let xEof: @convention(c) (UnsafeMutablePointer<sqlite3_vtab_cursor>?) -> Int32 = { cursor in
    guard let cursor else { return 1 }
    return withCursorState(cursor) { $0.index >= $0.rowCount ? 1 : 0 }
}

private let xColumn: @convention(c) (UnsafeMutablePointer<sqlite3_vtab_cursor>?, OpaquePointer?, Int32) -> Int32 = { cursor, ctx, col in
    guard let cursor else { return SQLITE_ERROR }
    withCursorState(cursor) { state in
        let c = Int(col)
        let columns = state.columns
        guard c >= 0, c < columns.count else {
            sqlite3_result_null(ctx)
            return
        }
        let (source, type) = columns[c]
        if let rows = state.scan {
            rows.cell(source).setResult(ctx, declared: type)
            return
        }
        if let view = state.textView {
            guard source < view.columnCount, state.currentRowReady() else {
                sqlite3_result_null(ctx)
                return
            }
            view.setResult(ctx, row: state.index, column: source, declared: type)
            return
        }
        guard source < state.rows.columnCount else {
            sqlite3_result_null(ctx)
            return
        }
        let value = state.rows[state.index, source]
        if case .null = value, !type.isNumeric {
            // osquery hands SQLite a missing TEXT/BLOB cell as '' (only numbers become NULL):
            // queries such as `WHERE type <> 'special'` rely on it.
            sqlite3_result_text(ctx, "", 0, osq_sqlite_static())
            return
        }
        setResult(ctx, value, type: type)
    }
    return SQLITE_OK
}

private let xRowid: @convention(c) (UnsafeMutablePointer<sqlite3_vtab_cursor>?, UnsafeMutablePointer<sqlite3_int64>?) -> Int32 = { cursor, rowid in
    guard let cursor, let rowid else { return SQLITE_ERROR }
    let state = cursorState(cursor)
    if state.rows.rowids == nil, let source = state.source {
        // Rowids are known once every row is in.
        let ids = source.waitUntilDone().rowids
        rowid.pointee = ids.map { state.index < $0.count ? $0[state.index] : sqlite3_int64(state.index) } ?? sqlite3_int64(state.index)
        return SQLITE_OK
    }
    if let ids = state.rows.rowids, state.index < ids.count {
        rowid.pointee = ids[state.index]
    } else {
        rowid.pointee = sqlite3_int64(state.index)
    }
    return SQLITE_OK
}

private let xUpdate: @convention(c) (UnsafeMutablePointer<sqlite3_vtab>?, Int32, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<sqlite3_int64>?) -> Int32 = { vtab, argc, argv, pRowid in
    guard let vtab, let argv else { return SQLITE_ERROR }
    let module = module(of: vtab)
    let context = QueryContext(schema: module.schema)
    do {
        if argc == 1 {
            try module.plugin.delete(rowid: sqlite3_value_int64(argv[0]), context: context)
            return SQLITE_OK
        }
        let realCount = module.schema.columns.count
        var values: [SQLValue] = []
        values.reserveCapacity(realCount)
        for i in 0..<realCount where 2 + i < Int(argc) {
            values.append(sqlValue(argv[2 + i]))
        }
        if sqlite3_value_type(argv[0]) == SQLITE_NULL {
            let requested: Int64? = sqlite3_value_type(argv[1]) == SQLITE_NULL ? nil : sqlite3_value_int64(argv[1])
            let id = try module.plugin.insert(values, rowid: requested, context: context)
            if let id, let pRowid { pRowid.pointee = id }
        } else {
            let old = sqlite3_value_int64(argv[0])
            let new = sqlite3_value_int64(argv[1])
            try module.plugin.update(rowid: old, newRowid: new == old ? nil : new, values: values, context: context)
        }
        return SQLITE_OK
    } catch let error as EngineError {
        setError(vtab, error.message)
        return error.code == 0 ? SQLITE_ERROR : error.code
    } catch {
        setError(vtab, "\(error)")
        return SQLITE_ERROR
    }
}

private func makeModule(writable: Bool) -> UnsafeMutablePointer<sqlite3_module> {
    let m = UnsafeMutablePointer<sqlite3_module>.allocate(capacity: 1)
    var module = sqlite3_module()
    module.iVersion = 1
    module.xCreate = nil  // eponymous-only: the table exists under the module's name
    module.xConnect = xConnect
    module.xBestIndex = xBestIndex
    module.xDisconnect = xDisconnect
    module.xDestroy = xDisconnect
    module.xOpen = xOpen
    module.xClose = xClose
    module.xFilter = xFilter
    module.xNext = xNext
    module.xEof = xEof
    module.xColumn = xColumn
    module.xRowid = xRowid
    if writable { module.xUpdate = xUpdate }
    m.initialize(to: module)
    return m
}

enum VirtualTableModules {
    nonisolated(unsafe) static let readOnly = makeModule(writable: false)
    nonisolated(unsafe) static let writable = makeModule(writable: true)
}
