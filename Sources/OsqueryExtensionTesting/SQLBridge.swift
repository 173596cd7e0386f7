public import OsqueryExtension
import OsqueryEngine
import Dispatch
import Synchronization

/// Runs real SQL (the core's SQLite engine, with osquery's push-down rules)
/// against a table plugin, in process, and records what the plugin received.
///
/// ```swift
/// let tester = try TableTester(myTable)
/// let rows = try await tester.query("select pid from my_table where pid = 1")
/// #expect(tester.lastContext?["pid"].equals == ["1"])
/// #expect(tester.lastContext?.usedColumns == ["pid"])
/// ```
public final class TableTester: Sendable {
    /// The table under test.
    package let table: Table
    let engine: EngineBox
    let recorded = Mutex<[PluginRequest]>([])

    /// A tester for `table`; the table is attached the way the core attaches an extension table.
    /// - Parameter table: the table to query.
    /// - Throws: `ExtensionError.invalidTable` when the core would refuse the table's name or
    ///   schema (see `TableSchema.problem`); the core engine's error when its
    ///   in-memory database cannot be opened or the table cannot be attached.
    public init(_ table: Table) throws {
        if let problem = table.schema.problem { throw ExtensionError.invalidTable(problem) }
        self.table = table
        let recorder = Recorder()
        let plugin = table
        let bridged = BridgedTable(schema: engineSchema(table.schema)) { request in
            recorder.append(request)
            return try await plugin.wireResponse(PluginRequest(raw: request))
        }
        engine = try EngineBox(tables: [bridged])
        engine.recorder = recorder
    }

    /// Runs `sql` and returns the rows as osquery's `query` would (NULL as "").
    /// - Parameter sql: the statement to run (the table under test is the only table).
    /// - Returns: the rows, each a column name → value dictionary.
    /// - Throws: an error whose description is SQLite's message on failure (a table's own error
    ///   message as it threw it).
    public func query(_ sql: String) async throws -> [[String: String]] {
        try await engine.run(sql)
    }

    /// Every request the table received, oldest first.
    package var requests: [PluginRequest] { engine.recorder?.all() ?? [] }

    /// The contexts of every `generate` call, oldest first.
    public var contexts: [OsqueryExtension.QueryContext] {
        requests.filter { $0.action == "generate" }.compactMap { try? OsqueryExtension.QueryContext(json: $0["context"] ?? "") }
    }

    /// The context of the last `generate` call.
    package var lastContext: OsqueryExtension.QueryContext? { contexts.last }

    /// Forgets recorded requests.
    package func reset() { engine.recorder?.clear() }
}

/// A SQL error from the bridge: SQLite's code and message.
package struct SQLBridgeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// SQLite's result code.
    package var code: Int32
    /// SQLite's (or the table's) message.
    package var message: String
    /// The message.
    package var description: String { message }
}

final class Recorder: Sendable {
    let items = Mutex<[PluginRequest]>([])
    func append(_ raw: ExtensionPluginRequest) { items.withLock { $0.append(PluginRequest(raw: raw)) } }
    func all() -> [PluginRequest] { items.withLock { $0 } }
    func clear() { items.withLock { $0.removeAll() } }
}

/// The engine's database on its own serial queue (it is single-threaded, and table
/// generate calls block there while the plugin runs on the Swift concurrency pool).
final class EngineBox: @unchecked Sendable {
    let queue = DispatchQueue(label: "osquery.sdk.sqlbridge")
    let database: Database
    var recorder: Recorder?

    init(tables: [any OsqueryEngine.TablePlugin]) throws {
        let db = try Database(registry: PluginRegistry(), flags: Flags.shared)
        for t in tables { try db.attach(t, defaultIndex: true) }
        database = db
    }

    func run(_ sql: String) async throws -> [[String: String]] {
        try await withCheckedThrowingContinuation { c in
            queue.async {
                do {
                    c.resume(returning: try self.database.execute(sql).rowMaps())
                } catch let e as EngineError {
                    c.resume(throwing: SQLBridgeError(code: e.code, message: e.message))
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
    }
}

/// Converts the SDK's schema into the engine's.
func engineSchema(_ s: OsqueryExtension.TableSchema) -> OsqueryEngine.TableSchema {
    OsqueryEngine.TableSchema(
        name: s.name,
        columns: s.columns.map {
            TableColumn($0.name, $0.type, $0.options)
        },
        aliases: s.aliases,
        columnAliases: s.columnAliases.map { (alias: $0.name, target: $0.target) },
        attributes: .init(rawValue: s.attributes.rawValue))
}

/// An engine table whose rows and writes come from an extension-style call
/// (`{"action":"generate","context":…}`), exactly as the core makes them.
struct BridgedTable: OsqueryEngine.TablePlugin {
    let schema: OsqueryEngine.TableSchema
    let call: @Sendable (ExtensionPluginRequest) async throws -> ExtensionResponse
    var isExtension: Bool { true }

    init(schema: OsqueryEngine.TableSchema, call: @escaping @Sendable (ExtensionPluginRequest) async throws -> ExtensionResponse) {
        self.schema = schema
        self.call = call
    }

    func blockingCall(_ request: ExtensionPluginRequest) throws -> ExtensionResponse {
        let result = Mutex<Result<ExtensionResponse, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let call = self.call
        Task {
            let r: Result<ExtensionResponse, any Error>
            do { r = .success(try await call(request)) } catch { r = .failure(error) }
            result.withLock { $0 = r }
            done.signal()
        }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    func generate(_ context: OsqueryEngine.QueryContext) throws -> TableRows {
        let response = try blockingCall(["action": "generate", "context": ThriftString(context.toJSON())])
        guard response.status.code == 0 else {
            throw EngineError(code: EngineError.sqliteError, message: response.status.message.lossyString)
        }
        var rows = TableRows(schema: schema, reservingRows: response.response.count)
        var rowids: [Int64] = []
        for row in response.response {
            var strings: [String: String] = [:]
            for e in row.entries { strings[e.key.lossyString] = e.value.lossyString }
            rows.appendRow(strings: strings, schema: schema)
            if let id = strings["rowid"].flatMap({ Int64($0) }) { rowids.append(id) }
        }
        if rowids.count == response.response.count, !rowids.isEmpty { rows.rowids = rowids }
        return rows
    }

    func jsonArray(_ values: [SQLValue]) -> String {
        let items: [JSONValue] = values.map { v in
            switch v {
            case .null: .null
            case .integer(let i): .number(String(i))
            case .double(let d): .number(String(d))
            case .text(let s): .string(s)
            case .blob(let b): .string(String(decoding: b, as: UTF8.self))
            }
        }
        return JSONValue.array(items).serialized
    }

    func mutate(_ request: ExtensionPluginRequest) throws -> Int64? {
        let response = try blockingCall(request)
        guard response.status.code == 0, let row = response.response.first else {
            throw EngineError(code: EngineError.sqliteError, message: response.status.message.lossyString)
        }
        switch row["status"]?.lossyString {
        case "success": return row["id"].flatMap { Int64($0.lossyString) }
        case "readonly":
            throw EngineError(code: EngineError.sqliteReadonly, message: "table \(schema.name) may not be modified")
        case "constraint": throw EngineError(code: EngineError.sqliteConstraint, message: "constraint failed")
        default: throw EngineError(code: EngineError.sqliteError, message: row["message"]?.lossyString ?? "failure")
        }
    }

    func insert(_ values: [SQLValue], rowid: Int64?, context: OsqueryEngine.QueryContext) throws -> Int64? {
        var r: ExtensionPluginRequest = [
            "action": "insert", "context": ThriftString(context.toJSON()),
            "json_value_array": ThriftString(jsonArray(values)), "auto_rowid": rowid == nil ? "true" : "false",
        ]
        if let rowid { r["id"] = ThriftString(String(rowid)) }
        return try mutate(r) ?? rowid
    }

    func update(rowid: Int64, newRowid: Int64?, values: [SQLValue], context: OsqueryEngine.QueryContext) throws {
        var r: ExtensionPluginRequest = [
            "action": "update", "context": ThriftString(context.toJSON()), "id": ThriftString(String(rowid)),
            "json_value_array": ThriftString(jsonArray(values)),
        ]
        if let newRowid { r["new_id"] = ThriftString(String(newRowid)) }
        _ = try mutate(r)
    }

    func delete(rowid: Int64, context: OsqueryEngine.QueryContext) throws {
        _ = try mutate(["action": "delete", "context": ThriftString(context.toJSON()), "id": ThriftString(String(rowid))])
    }
}
