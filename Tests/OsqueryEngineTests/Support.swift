import OsqueryEngine
import Synchronization

/// A table that records every context it is given and returns fixed rows.
final class RecordingTable: TablePlugin {
    let schema: TableSchema
    let rows: [[SQLValue]]
    private let calls = Mutex<[QueryContext]>([])

    init(schema: TableSchema, rows: [[SQLValue]]) {
        self.schema = schema
        self.rows = rows
    }

    func generate(_ context: QueryContext) throws -> TableRows {
        calls.withLock { $0.append(context) }
        var out = TableRows(schema: schema)
        for r in rows { out.appendRow(r) }
        return out
    }

    var contexts: [QueryContext] { calls.withLock { $0 } }
    func reset() { calls.withLock { $0.removeAll() } }
}

/// A table with one column of each kind of option, and 4 rows.
func makeTestTable() -> RecordingTable {
    RecordingTable(
        schema: TableSchema(
            name: "test_table",
            columns: [
                TableColumn("id", .bigint, [.index, .optimized]),
                TableColumn("name", .text, .index),
                TableColumn("score", .double, .additional),
                TableColumn("plain", .text),
                TableColumn("secret", .text, .hidden),
                TableColumn("num", .integer, .index),
            ],
            aliases: ["test_alias"],
            columnAliases: [(alias: "old_name", target: "name")]
        ),
        rows: [
            [1, "alpha", 1.5, "p1", "s1", 10],
            [2, "beta", 2.0, "p2", "s2", 20],
            [3, "gamma", 3.25, "p3", "s3", 30],
            [4, "delta", nil, nil, "s4", 40],
        ]
    )
}

func makeRequiredTable() -> RecordingTable {
    RecordingTable(
        schema: TableSchema(
            name: "needs_path",
            columns: [
                TableColumn("path", .text, [.required, .index]),
                TableColumn("directory", .text, .required),
                TableColumn("size", .bigint),
            ]
        ),
        rows: [["/a", "/", 1], ["/b", "/", 2]]
    )
}

/// A database over a private registry holding the given tables.
func makeDatabase(_ tables: [any TablePlugin]) throws -> Database {
    let registry = PluginRegistry()
    for t in tables { registry.addTable(t) }
    return try Database(registry: registry, flags: Flags())
}
