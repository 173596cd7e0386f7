import CSQLite
public import OsqueryEngine
import OsqueryEvents
package import OsqueryProtocol
import ThriftCodec

/// A table served by an extension: the core's side of osquery's `table`
/// plugin protocol (protocol.md §3.2). Its schema comes from the route info
/// the extension registered; scans and writes become RPCs to the extension.
public final class ExtensionTable: TablePlugin {
    public let schema: TableSchema
    package let uuid: ExtensionRouteUUID
    let caller: ExtensionCaller
    let name: ThriftString
    let columnKeys: [ThriftString]
    /// An event table's epoch from its route info (issue 17): a new one means its `eid`s
    /// started again at 1.
    let eventEpoch: String?

    package convenience init(schema: TableSchema, uuid: ExtensionRouteUUID, caller: ExtensionCaller) {
        self.init(schema: schema, uuid: uuid, caller: caller, eventEpoch: nil)
    }

    init(schema: TableSchema, uuid: ExtensionRouteUUID, caller: ExtensionCaller, eventEpoch: String?) {
        self.schema = schema
        self.uuid = uuid
        self.caller = caller
        self.eventEpoch = eventEpoch
        self.name = ThriftString(schema.name)
        self.columnKeys = schema.columns.map { ThriftString($0.name) }
    }

    public var isExtension: Bool { true }

    public func generate(_ context: QueryContext) throws -> TableRows {
        if schema.attributes.contains(.eventBased), let scope = EventQueryScope.current {
            return try generateEvents(context, scope)
        }
        return try fetch(context)
    }

    /// An event table in a scheduled query (issue 17): with `events_optimize` and no `time`
    /// constraint, the extension is asked only for events above the query's mark (`eid > mark`,
    /// with `eid` and `time` sent), and the newest returned becomes the mark the scheduler
    /// commits with the logged lines, as a built-in event table does. A table whose epoch
    /// changed since the mark is asked for every event (its `eid`s started again).
    func generateEvents(_ context: QueryContext, _ scope: EventQueryScope) throws -> TableRows {
        let columns = schema.columns
        guard scope.optimize, context.constraints(for: "time").isEmpty,
            let eidIndex = columns.firstIndex(where: { $0.name == "eid" }),
            let timeIndex = columns.firstIndex(where: { $0.name == "time" })
        else {
            scope.noteEventBased()
            return try fetch(context)
        }
        var context = context
        let markEID = scope.markEID(table: schema.name, epoch: eventEpoch)
        let mark = Int64(clamping: markEID)
        context.add(Constraint(op: .greaterThan, expr: String(mark), value: .integer(mark)), to: "eid")
        context.colsUsed?.formUnion(["eid", "time"])
        if let bits = context.colsUsedBitset {
            context.colsUsedBitset = bits | (1 << UInt64(min(eidIndex, 63))) | (1 << UInt64(min(timeIndex, 63)))
        }
        var rows = try fetch(context)
        var last: (time: UInt64, eid: UInt64)?
        var logged = 0
        for r in 0..<rows.count {
            guard let eid = Self.unsigned(rows[r, eidIndex]) else { continue }
            guard eid > markEID else {
                logged += 1
                continue
            }
            if eid > (last?.eid ?? 0) { last = (Self.unsigned(rows[r, timeIndex]) ?? 0, eid) }
        }
        // An extension that ignores the constraint must not get its logged events logged again.
        if logged > 0 { rows = Self.rows(rows, eidIndex: eidIndex, above: markEID) }
        scope.readEvents(through: last)
        return rows
    }

    static func rows(_ rows: TableRows, eidIndex: Int, above mark: UInt64) -> TableRows {
        var kept = TableRows(columnCount: rows.columnCount)
        for r in 0..<rows.count {
            if let eid = unsigned(rows[r, eidIndex]), eid <= mark { continue }
            for c in 0..<rows.columnCount { kept.append(rows[r, c]) }
        }
        return kept
    }

    static func unsigned(_ value: SQLValue) -> UInt64? {
        switch value {
        case .integer(let n): n >= 0 ? UInt64(n) : nil
        case .text(let s): UInt64(s)
        default: nil
        }
    }

    func fetch(_ context: QueryContext) throws -> TableRows {
        let request: ExtensionPluginRequest = ["action": "generate", "context": ThriftString(context.toJSON())]
        let reply: RawReply
        do {
            reply = try caller.callBlockingRaw(uuid: uuid, registry: "table", item: name, request: request)
        } catch {
            throw EngineError(code: SQLITE_ERROR, message: "extension table \(schema.name): \(error)")
        }
        // Short lists are converted as they are decoded, on this query thread; a long one is
        // only found and checked here (the status may follow it) and converted below.
        var rows = ExtensionRowsReader(converter: RowConverter(schema: schema, columnKeys: columnKeys))
        rows.cellBudget = Self.cellBudget(replyBytes: reply.byteCount, floor: caller.maxReplyCells)
        let status: ExtensionStatus
        do {
            status = try reply.decodeResponse(rows: &rows)
        } catch {
            throw EngineError(code: SQLITE_ERROR, message: "extension table \(schema.name): \(error)")
        }
        guard status.isSuccess else {
            throw EngineError(code: SQLITE_ERROR, message: status.message.lossyString)
        }
        if let refused = rows.refusedRows {
            let message = "extension table \(schema.name): a reply of \(refused) rows × \(schema.columns.count) columns "
                + "passes the limit of \(rows.cellBudget) cells (--extensions_max_reply_cells, or one per 8 bytes of the reply)"
            // The status log names the extension even when the query's caller does not report errors.
            StatusLog.warning("\(message) from extension \(uuid)")
            throw EngineError(code: SQLITE_TOOBIG, message: message)
        }
        // The rows stay in the reply until SQLite reads them.
        let (owner, bytes) = reply.pinnedBytes()
        guard let base = bytes.baseAddress else { return TableRows(schema: schema) }
        if let list = rows.longList {
            return rows.converter.convertInBackground(list, bytes: bytes, owner: owner, table: schema.name)
        }
        return try rows.converter.finish(owner: owner, base: base)
    }

    /// The most cells (rows × columns, 8 to 16 bytes each once converted) a reply of `replyBytes`
    /// may cost: `floor`, or more when the reply itself is that big. A row whose every column is
    /// present takes at least 9 bytes a cell on the wire, so a dense reply always fits; a reply of
    /// empty rows for a wide table (6 bytes a row) cannot make the core allocate far more memory
    /// than it received.
    static func cellBudget(replyBytes: Int, floor: Int) -> Int { max(floor, replyBytes / 8) }

    // MARK: writes (osquery's xUpdate requests)

    public func insert(_ values: [SQLValue], rowid: Int64?, context: QueryContext) throws -> Int64? {
        var request: ExtensionPluginRequest = [
            "action": "insert", "context": ThriftString(context.toJSON()),
            "json_value_array": ThriftString(Self.jsonArray(values)),
            "auto_rowid": rowid == nil ? "true" : "false",
        ]
        if let rowid { request["id"] = ThriftString(String(rowid)) }
        let row = try writeStatus(request)
        if let id = row["id"]?.string.flatMap({ Int64($0) }) { return id }
        return rowid
    }

    public func update(rowid: Int64, newRowid: Int64?, values: [SQLValue], context: QueryContext) throws {
        var request: ExtensionPluginRequest = [
            "action": "update", "context": ThriftString(context.toJSON()), "id": ThriftString(String(rowid)),
            "json_value_array": ThriftString(Self.jsonArray(values)),
        ]
        if let newRowid, newRowid != rowid { request["new_id"] = ThriftString(String(newRowid)) }
        _ = try writeStatus(request)
    }

    public func delete(rowid: Int64, context: QueryContext) throws {
        _ = try writeStatus([
            "action": "delete", "context": ThriftString(context.toJSON()), "id": ThriftString(String(rowid)),
        ])
    }

    /// The reply to a write must be one row with `status`: success, readonly,
    /// failure (with an optional message) or constraint.
    func writeStatus(_ request: ExtensionPluginRequest) throws -> StringMap {
        let response = try call(request)
        guard response.response.count == 1, let status = response.response[0]["status"] else {
            throw EngineError(code: SQLITE_ERROR, message: "Invalid response from the extension table \(schema.name)")
        }
        switch status {
        case "success": return response.response[0]
        case "readonly": throw EngineError(code: SQLITE_READONLY, message: "table \(schema.name) may not be modified")
        case "constraint": throw EngineError(code: SQLITE_CONSTRAINT, message: "constraint failed")
        case "failure":
            let message = response.response[0]["message"]?.lossyString ?? "the extension failed to modify \(schema.name)"
            throw EngineError(code: SQLITE_ERROR, message: message)
        default:
            throw EngineError(code: SQLITE_ERROR, message: "Invalid response from the extension table \(schema.name)")
        }
    }

    func call(_ request: ExtensionPluginRequest) throws -> ExtensionResponse {
        let response: ExtensionResponse
        do {
            response = try caller.callBlocking(uuid: uuid, registry: "table", item: name, request: request)
        } catch {
            throw EngineError(code: SQLITE_ERROR, message: "extension table \(schema.name): \(error)")
        }
        guard response.status.isSuccess else {
            // The extension's own message becomes the SQL error, as in osquery.
            throw EngineError(code: SQLITE_ERROR, message: response.status.message.lossyString)
        }
        return response
    }

    /// One typed JSON value per declared column: integers, doubles, strings, null.
    static func jsonArray(_ values: [SQLValue]) -> String {
        var out = "["
        for (i, v) in values.enumerated() {
            if i > 0 { out += "," }
            switch v {
            case .null: out += "null"
            case .integer(let n): out += String(n)
            case .double(let d): out += d.isFinite ? "\(d)" : "null"
            case .text(let s): out += JSON.quoted(s)
            case .blob(let b): out += JSON.quoted(String(decoding: b, as: UTF8.self))
            }
        }
        return out + "]"
    }
}
