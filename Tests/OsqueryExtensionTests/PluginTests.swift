import Synchronization
import Testing
import OsqueryExtension

/// Builds a generate request as the core sends it.
func generate(_ context: String?) -> PluginRequest {
    var r = ["action": "generate"]
    if let context { r["context"] = context }
    return PluginRequest(r)
}

func rows(_ response: ExtensionResponse) -> [[String: String]] {
    response.response.map { row in
        var d: [String: String] = [:]
        for e in row.entries { d[e.key.lossyString] = e.value.lossyString }
        return d
    }
}

func routeDicts(_ routes: [StringMap]) -> [[String: String]] {
    routes.map { r in Dictionary(r.entries.map { ($0.key.lossyString, $0.value.lossyString) }, uniquingKeysWith: { $1 }) }
}

@Suite struct TableRouteTests {
    @Test func allSevenTypesEveryOptionAliasesAndAttributes() {
        let t = Table(schema: TableSchema(
            name: "every",
            columns: [
                .text("t", [.index, .collateNocase]), .integer("i", .required), .bigint("b", .additional),
                .unsignedBigint("u", .optimized), .double("d", .hidden), .blob("x", .collateBinary),
                .unknown("k", [.collateVersion, .collateVersionArch, .collateVersionDpkg, .collateVersionRhel, .collateRtrim]),
            ],
            aliases: ["every_alias"], columnAliases: [.init("t_alias", target: "t")],
            attributes: [.cacheable, .userBased]
        )) { _ in [] }
        let r = routeDicts(t.schema.routes)
        #expect(t.routes == r)
        #expect(r.count == 10)
        #expect(r[0] == ["id": "column", "name": "t", "type": "TEXT", "op": "65"])
        #expect(r[1] == ["id": "column", "name": "i", "type": "INTEGER", "op": "2"])
        #expect(r[2] == ["id": "column", "name": "b", "type": "BIGINT", "op": "4"])
        #expect(r[3] == ["id": "column", "name": "u", "type": "UNSIGNED BIGINT", "op": "8"])
        #expect(r[4] == ["id": "column", "name": "d", "type": "DOUBLE", "op": "16"])
        #expect(r[5] == ["id": "column", "name": "x", "type": "BLOB", "op": "32"])
        #expect(r[6] == ["id": "column", "name": "k", "type": "UNKNOWN", "op": "3968"])
        #expect(r[7] == ["id": "alias", "alias": "every_alias"])
        #expect(r[8] == ["id": "columnAlias", "name": "t_alias", "target": "t"])
        #expect(r[9] == ["id": "attributes", "attributes": "10"])
        // Route keys go out in a fixed order (id first), as osquery's C++ sends them.
        #expect(t.schema.routes[0].entries.map(\.key) == ["id", "name", "type", "op"])
    }

    @Test func specJSONDescribesEverything() throws {
        let t = Table(schema: TableSchema(
            name: "spec_t", columns: [.text("a", .index, description: "the a"), .integer("h", .hidden)],
            aliases: ["s"], attributes: [.cacheable],
            documentation: TableDocumentation(description: "desc", url: "https://x", examples: ["select 1"])
        )) { _ in [] }
        let spec = t.spec
        #expect(spec["name"] == .string("spec_t"))
        #expect(spec["description"] == .string("desc"))
        #expect(spec["attributes"] == .array([.string("cacheable")]))
        #expect(spec["writable"] == .bool(false))
        let cols = try #require(spec["columns"]?.array)
        #expect(cols[0]["index"] == .bool(true))
        #expect(cols[0]["description"] == .string("the a"))
        #expect(cols[1]["hidden"] == .bool(true))
        #expect(cols[1]["type"] == .string("INTEGER"))
        // It round-trips through the parser.
        #expect(try JSONValue.parse(spec.serialized) == spec)
    }

    @Test func columnsActionAnswersRoutes() async throws {
        let t = Table("c", columns: [.text("a")]) { _ in [] }
        let r = try await t.wireResponse(PluginRequest(["action": "columns"]))
        #expect(r.status.code == 0)
        #expect(r.response == t.schema.routes)
        // The public answer: the same routes as strings.
        let plain = try await t.handle(PluginRequest(["action": "columns"]))
        #expect(plain == .ok(t.routes))
        #expect(try await t.handle(PluginRequest(["action": "frobnicate"])) == .failure("Unknown table plugin action: frobnicate"))
    }

    @Test func missingAndUnknownActions() async throws {
        let t = Table("c", columns: [.text("a")]) { _ in [] }
        let none = try await t.wireResponse(PluginRequest([:]))
        #expect(none.status.code == 1)
        #expect(none.status.message == "Table plugins must include a request action")
        let bad = try await t.wireResponse(PluginRequest(["action": "frobnicate"]))
        #expect(bad.status.code == 1)
        #expect(bad.status.message == "Unknown table plugin action: frobnicate")
    }

    @Test func readOnlyTablesAnswerReadonly() async throws {
        let t = Table("c", columns: [.text("a")]) { _ in [] }
        for action in ["insert", "update", "delete"] {
            let r = try await t.wireResponse(PluginRequest(["action": action, "id": "1", "json_value_array": "[\"x\"]"]))
            #expect(r.status.code == 0)
            #expect(rows(r) == [["status": "readonly"]])
        }
    }
}

@Suite struct QueryContextTests {
    let modern = """
        {"constraints":[{"name":"a","list":[{"op":2,"expr":"x"},{"op":2,"expr":"y"},{"op":2,"expr":"x"}],"affinity":"TEXT"},
        {"name":"n","list":[{"op":4,"expr":"10"},{"op":32,"expr":"12"},{"op":16,"expr":"20"}],"affinity":"BIGINT"},
        {"name":"p","list":[{"op":65,"expr":"/etc/%.conf"},{"op":66,"expr":"/etc/*.con?"}],"affinity":"TEXT"},
        {"name":"z","list":[],"affinity":"DOUBLE"}],
        "colsUsed":["a","n"],"colsUsedBitset":18446744073709551615}
        """

    @Test func parsesConstraintsUsedColumnsAndBitset() throws {
        let c = try QueryContext(json: modern)
        #expect(c["a"].equals == ["x", "y"])
        #expect(c["a"].affinity == .text)
        #expect(c["z"].isEmpty && c["z"].affinity == .double)
        #expect(c["missing"].isEmpty)
        #expect(c.usedColumns == ["a", "n"])
        #expect(c.isUsed("a") && !c.isUsed("p"))
        #expect(c.usedColumnsBitset == UInt64.max)
    }

    @Test func typedRangesAndInLists() throws {
        let c = try QueryContext(json: modern)
        let r = c["n"].range(as: Int64.self)
        #expect(r.lower?.value == 12 && r.lower?.inclusive == true)
        #expect(r.upper?.value == 20 && r.upper?.inclusive == false)
        #expect(r.contains(12) && r.contains(19) && !r.contains(11) && !r.contains(20))
        let ints = try QueryContext(json: #"{"constraints":[{"name":"pid","list":[{"op":2,"expr":"1"},{"op":2,"expr":"x"},{"op":2,"expr":"7"}],"affinity":"INTEGER"}]}"#)
        #expect(ints["pid"].equals(as: Int32.self) == [1, 7])
    }

    @Test func likeAndGlobMatchers() throws {
        let c = try QueryContext(json: modern)
        #expect(c["p"].likePatterns.first?.matches("/ETC/hosts.CONF") == true)
        #expect(c["p"].likePatterns.first?.matches("/etc/hosts") == false)
        #expect(c["p"].globPatterns.first?.matches("/etc/a.conf") == true)
        #expect(c["p"].globPatterns.first?.matches("/etc/a.CONF") == false)
        #expect(c["p"].matches("/etc/a.conf"))
        #expect(!c["p"].matches("/etc/a.cfg"))
        #expect(TextPattern(glob: "[a-c]x[^0-9]").matches("bxz"))
        #expect(TextPattern(like: "a_c%").literalPrefix == "a")
        #expect(TextPattern(like: "100\\%").matches("100\\%"))
    }

    @Test func toleratesOldFormsAndMissingContext() throws {
        let old = try QueryContext(json: #"{"constraints":[{"name":"a","list":"","affinity":"TEXT"},{"name":"b","list":[{"op":"=","expr":"v"},{"op":"2","expr":"w"}],"affinity":"TEXT"}]}"#)
        #expect(old["a"].isEmpty)
        #expect(old["b"].equals == ["v", "w"])
        #expect(old.usedColumns == nil && old.isUsed("anything"))
        let empty = try QueryContext(json: "")
        #expect(empty.constraints.isEmpty && empty.isUsed("x"))
        #expect(throws: JSONError.self) { try QueryContext(json: "{nope") }
    }

    @Test func numericMatchingUsesNumbers() throws {
        let c = try QueryContext(json: modern)
        #expect(c["n"].matches("15"))
        #expect(!c["n"].matches("25"))
    }
}

@Suite struct RowEncodingTests {
    static let cols: [Column] = [.text("a"), .integer("b"), .double("c"), .text("expensive")]

    @Test func unusedColumnsAreNeitherFormattedNorSent() async throws {
        let t = Table("r", columns: Self.cols) { ctx in
            (0..<3).map { i in
                var row: Row = ["a": "v\(i)", "b": i, "c": 1.5]
                if ctx.isUsed("expensive") { row["expensive"] = String(repeating: "x", count: 1000) }
                return row
            }
        }
        let ctx = #"{"constraints":[],"colsUsed":["a","c"],"colsUsedBitset":5}"#
        let r = try await t.wireResponse(generate(ctx))
        #expect(r.status.code == 0)
        #expect(rows(r) == [["a": "v0", "c": "1.5"], ["a": "v1", "c": "1.5"], ["a": "v2", "c": "1.5"]])
        #expect(r.response[0].entries.map(\.key) == ["a", "c"])
    }

    @Test func missingContextIsAnEmptyContextAndNilIsNull() async throws {
        let t = Table("r", columns: Self.cols) { ctx in
            #expect(ctx.constraints.isEmpty && ctx.usedColumns == nil)
            return [["a": "x", "b": Int?.none, "c": Double.nan, "unknown_key": "dropped", "rowid": 7], ["b": true]]
        }
        let r = try await t.wireResponse(generate(nil))
        #expect(r.status.code == 0)
        #expect(rows(r) == [["a": "x", "rowid": "7"], ["b": "1"]])
    }

    @Test func valueConversions() {
        #expect(Int32(-5).columnText == "-5")
        #expect(UInt64.max.columnText == "18446744073709551615")
        #expect(false.columnText == "0")
        #expect([UInt8]([0xff, 0x41]).columnText == "\u{FFFD}A")
        #expect([UInt8]([0xff, 0x41]).wireText == ThriftString(bytes: [0xff, 0x41]))
        #expect(Optional<String>.none.columnText == nil)
        var row: Row = ["a": 1]
        row["a"] = "two"
        row["b"] = 3
        row["b"] = nil
        #expect(row.cells.count == 1 && row["a"]?.columnText == "two")
    }

    @Test func rowBudgetGivesAClearError() async throws {
        let t = Table("big", columns: [.text("a")], limits: TableLimits(maxRows: 10)) { _ in
            (0..<11).map { ["a": "\($0)"] }
        }
        let r = try await t.wireResponse(generate(nil))
        #expect(r.status.code == 1)
        #expect(r.status.message.lossyString.contains("result exceeds budget"))
        #expect(r.status.message.lossyString.contains("select fewer columns or add a WHERE"))
    }

    @Test func byteBudgetGivesAClearError() async throws {
        let t = Table("wide", columns: [.text("a")], limits: TableLimits(maxBytes: 10_000)) { _ in
            (0..<100).map { _ in ["a": String(repeating: "y", count: 500)] }
        }
        let r = try await t.wireResponse(generate(nil))
        #expect(r.status.code == 1)
        #expect(r.status.message.lossyString.hasPrefix("table wide: result exceeds budget"))
        // Selecting no wide column fits.
        let narrow = try await t.wireResponse(generate(#"{"constraints":[],"colsUsed":[]}"#))
        #expect(narrow.status.code == 0 && narrow.response.count == 100)
    }

    @Test func deadlineCancelsAndAnswersAtOnce() async throws {
        let t = Table("slow", columns: [.text("a")], limits: TableLimits(deadline: .milliseconds(200))) { _ in
            try await Task.sleep(for: .seconds(30))
            return []
        }
        // Only the deadline can produce this answer: the generate would return no error.
        let r = try await t.wireResponse(generate(nil))
        #expect(r.status.code == 1)
        #expect(r.status.message.lossyString.contains("exceeded its deadline"))
    }

    @Test func deadlineEvenWhenGenerateIgnoresCancellation() async throws {
        let finished = Mutex(false)
        let released = Mutex(false)
        let t = Table("stubborn", columns: [.text("a")], limits: TableLimits(deadline: .milliseconds(100))) { _ in
            // Ignores cancellation and runs until the test lets it go (a bound, not a timing:
            // the test releases it only after the answer came).
            let bound = ContinuousClock.now + .seconds(60)
            while !released.withLock({ $0 }), ContinuousClock.now < bound { try? await Task.sleep(for: .milliseconds(10)) }
            finished.withLock { $0 = true }
            return [["a": "late"]]
        }
        let r = try await t.wireResponse(generate(nil))
        // The answer came without waiting for the generate that ignores cancellation.
        #expect(finished.withLock { $0 } == false)
        #expect(r.status.code == 1)
        released.withLock { $0 = true }
    }

    @Test func thrownErrorsBecomeStatusMessages() async throws {
        let t = Table("err", columns: [.text("path", .required)]) { ctx in
            guard !ctx["path"].equals.isEmpty else { throw PluginError("err requires a path = constraint") }
            return []
        }
        let r = try await t.wireResponse(generate(nil))
        #expect(r.status.code == 1)
        #expect(r.status.message == "err requires a path = constraint")
    }
}

actor Notes: TableStore {
    var notes: [Int64: String] = [:]
    var next: Int64 = 1
    var shutDown = false
    func generate(_ context: QueryContext) async throws -> [Row] {
        notes.sorted { $0.key < $1.key }.map { ["rowid": $0.key, "text": $0.value] }
    }
    func insert(_ request: InsertRequest) async throws -> MutationResult {
        guard case .text(let s) = request["text"] else { return .constraint }
        let id = request.rowid ?? next
        next = max(next, id + 1)
        notes[id] = s
        return .success(rowid: id)
    }
    func update(_ request: UpdateRequest) async throws -> MutationResult {
        guard notes[request.rowid] != nil else { return .failure("no row \(request.rowid)") }
        notes[request.rowid] = nil
        notes[request.newRowid ?? request.rowid] = request["text"].text ?? ""
        return .success
    }
    func delete(_ request: DeleteRequest) async throws -> MutationResult {
        notes.removeValue(forKey: request.rowid) == nil ? .failure("no row") : .success
    }
    func shutdown() async { shutDown = true }
}

@Suite struct WritableTableTests {
    @Test func typedInsertUpdateDeleteWithRowids() async throws {
        let store = Notes()
        let t = Table("notes", columns: [.text("text")], store: store)
        #expect(t.isWritable && t.spec["writable"] == .bool(true))
        var r = try await t.wireResponse(PluginRequest(["action": "insert", "json_value_array": #"["hello"]"#, "auto_rowid": "true"]))
        #expect(rows(r) == [["status": "success", "id": "1"]])
        r = try await t.wireResponse(PluginRequest(["action": "insert", "json_value_array": "[42]", "auto_rowid": "false", "id": "9"]))
        #expect(rows(r) == [["status": "constraint"]])
        r = try await t.wireResponse(PluginRequest(["action": "insert", "json_value_array": #"["x\"y"]"#, "auto_rowid": "false", "id": "9"]))
        #expect(rows(r) == [["status": "success", "id": "9"]])
        r = try await t.wireResponse(PluginRequest(["action": "update", "id": "1", "new_id": "5", "json_value_array": #"["moved"]"#]))
        #expect(rows(r) == [["status": "success"]])
        r = try await t.wireResponse(PluginRequest(["action": "delete", "id": "9"]))
        #expect(rows(r) == [["status": "success"]])
        r = try await t.wireResponse(PluginRequest(["action": "delete", "id": "9"]))
        #expect(rows(r) == [["status": "failure", "message": "no row"]])
        let g = try await t.wireResponse(generate(nil))
        #expect(rows(g) == [["rowid": "5", "text": "moved"]])
        await t.shutdown()
        #expect(await store.shutDown)
    }

    @Test func writeValuesAreTyped() {
        #expect(WriteValue(.number("3")) == .integer(3))
        #expect(WriteValue(.number("3.5")) == .double(3.5))
        #expect(WriteValue(.null) == .null)
        #expect(WriteValue(.string("s")) == .text("s"))
    }
}

@Suite struct LoggerConfigDistributedTests {
    actor Sink {
        var records: [LogRecord] = []
        func add(_ r: LogRecord) { records.append(r) }
    }

    @Test func loggerAnswersFeaturesAndDecodesEveryRequest() async throws {
        let sink = Sink()
        let logger = LoggerPlugin("l", features: [.status, .event]) { await sink.add($0) }
        let f = try await logger.handle(PluginRequest(["action": "features"]))
        #expect(f.code == 3)
        let onlyStatus = LoggerPlugin("l2") { _ in }
        #expect(try await onlyStatus.handle(PluginRequest(["action": "features"])).code == 1)
        let status = #"[{"s":1,"f":"a.cpp","i":12,"m":"hello","h":"host","c":"Mon Jan 1","u":1700000000},{"s":2,"f":"b.cpp","i":"3","m":"x","h":"h","c":"c","u":"5"}]"#
        for request in [
            ["init": "osqueryd"], ["string": #"{"name":"q"}"#, "category": "event"], ["snapshot": "{}"],
            ["status": "true", "log": status], ["event": #"{"e":1}"#], ["health": "{}"],
            ["string_batch": #"["r1","r2"]"#],
        ] {
            let r = try await logger.handle(PluginRequest(request))
            #expect(r.code == 0, "\(request)")
        }
        let records = await sink.records
        #expect(records.count == 8)
        #expect(records[0] == .initialize("osqueryd"))
        #expect(records[1] == .result(#"{"name":"q"}"#))
        #expect(records[2] == .snapshot("{}"))
        #expect(records[3] == .status([
            StatusLine(severity: .warning, file: "a.cpp", line: 12, message: "hello", hostIdentifier: "host", calendarTime: "Mon Jan 1", unixTime: 1_700_000_000),
            StatusLine(severity: .error, file: "b.cpp", line: 3, message: "x", hostIdentifier: "h", calendarTime: "c", unixTime: 5),
        ]))
        #expect(records[4] == .event(#"{"e":1}"#))
        #expect(records[5] == .health("{}"))
        #expect(records[6] == .result("r1") && records[7] == .result("r2"))
        let bad = try await logger.handle(PluginRequest(["nothing": "x"]))
        #expect(bad.code == 1)
    }

    @Test func configGenConfigAndGenPack() async throws {
        let c = ConfigPlugin("cfg", genPack: { name, value in #"{"pack":"\#(name)","v":"\#(value)"}"# }) {
            ["b": "{}", "a": #"{"schedule":{}}"#]
        }
        let g = try await c.handle(PluginRequest(["action": "genConfig"]))
        #expect(g.rows == [["a": #"{"schedule":{}}"#, "b": "{}"]])
        let p = try await c.handle(PluginRequest(["action": "genPack", "name": "p1", "value": "val"]))
        #expect(p.rows == [["p1": #"{"pack":"p1","v":"val"}"#]])
        let noPacks = ConfigPlugin("c2") { [:] }
        #expect(try await noPacks.handle(PluginRequest(["action": "genPack", "name": "x"])).code == 1)
    }

    @Test func distributedQueriesAndResults() async throws {
        actor Box { var got: DistributedResults?; func set(_ r: DistributedResults) { got = r } }
        let box = Box()
        let d = DistributedPlugin(
            "dist",
            getQueries: { DistributedQueries(queries: ["q1": "select 1"], discovery: ["q1": "select 2"], accelerate: 60) },
            writeResults: { await box.set($0) })
        let g = try await d.handle(PluginRequest(["action": "getQueries"]))
        let json = try JSONValue.parse(try #require(g.rows.first?["results"]))
        #expect(json["queries"]?["q1"] == .string("select 1"))
        #expect(json["discovery"]?["q1"] == .string("select 2"))
        #expect(json["accelerate"]?.int64 == 60)
        let results = #"{"queries":{"q1":[{"a":"1","b":null}]},"statuses":{"q1":0,"q2":"1"},"messages":{"q2":"no such table"},"stats":{"q1":{"wall_time_ms":12,"user_time":3,"system_time":"4","memory":1024}}}"#
        let w = try await d.handle(PluginRequest(["action": "writeResults", "results": results]))
        #expect(w.code == 0)
        let got = try #require(await box.got)
        #expect(got.rows["q1"] == [["a": "1", "b": ""]])
        #expect(got.statuses == ["q1": 0, "q2": 1])
        #expect(got.messages == ["q2": "no such table"])
        #expect(got.stats["q1"] == QueryStats(wallTimeMs: 12, userTime: 3, systemTime: 4, memory: 1024))
    }
}

@Suite struct CommandLineTests {
    @Test func autoloadArgumentsInBothFormsWithUnknownFlags() throws {
        let o = try ExtensionOptions.parse(["--verbose", "--socket", "/tmp/s.em", "--timeout", "3", "--interval", "1"])
        #expect(o.socket == "/tmp/s.em" && o.timeout == 3 && o.interval == 1 && o.verbose)
        let e = try ExtensionOptions.parse(["--socket=/tmp/x.em", "--timeout=2.5", "--interval=0.5", "--new-core-flag", "v", "--other=1"])
        #expect(e.socket == "/tmp/x.em" && e.timeout == 2.5 && e.interval == 0.5 && !e.verbose)
        #expect(e.unrecognized.contains("--new-core-flag"))
        let d = try ExtensionOptions.parse([])
        #expect(d.socket == "/var/osquery/osquery.em" && d.timeout == 3 && d.interval == 3 && !d.supervised)
        #expect(try ExtensionOptions.parse(["--spec"]).printSpec)
        #expect(try ExtensionOptions.parse(["--supervised"]).supervised)
    }

    @Test func serverLimitsFromTheCommandLineOverrideTheConfiguration() throws {
        let o = try ExtensionOptions.parse([
            "--socket", "/tmp/s.em", "--extensions_max_message_size", "1048576", "--extensions_max_connections=8",
            "--extensions_idle_timeout", "5",
        ])
        let limits = o.serverLimits(over: ServerLimits(maxPipelinedCalls: 3))
        #expect(limits.maxMessageSize == 1_048_576 && limits.maxConnections == 8 && limits.idleTimeout == .seconds(5))
        #expect(limits.maxPipelinedCalls == 3 && limits.partialMessageTimeout == ServerLimits.default.partialMessageTimeout)
        #expect(try ExtensionOptions.parse([]).serverLimits(over: .default) == .default)
    }
}

@Suite struct RowDecoderTests {
    struct Proc: Decodable, Equatable {
        var pid: Int32
        var name: String
        var parentPid: Int?
        var onDisk: Bool
        var load: Double?
    }

    @Test func decodesTypedRowsWithSnakeCaseAndNulls() throws {
        let p = try RowDecoder.decode(Proc.self, from: ["pid": "42", "name": "swift", "parent_pid": "", "on_disk": "1", "load": "0.5"])
        #expect(p == Proc(pid: 42, name: "swift", parentPid: nil, onDisk: true, load: 0.5))
        #expect(throws: OsqueryClientError.self) {
            try RowDecoder.decode(Proc.self, from: ["pid": "x", "name": "n", "on_disk": "0"], rowIndex: 3)
        }
        do {
            _ = try RowDecoder.decode(Proc.self, from: ["pid": "1", "on_disk": "0"])
        } catch {
            #expect("\(error)".contains("name"))
        }
    }
}
