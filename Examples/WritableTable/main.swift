// A writable table: a small key/value store kept in an actor (no locks needed).
import OsqueryExtension

actor KeyValueStore: TableStore {
    var items: [Int64: (key: String, value: String)] = [:]
    var nextRowid: Int64 = 1

    func generate(_ context: QueryContext) async throws -> [Row] {
        items.sorted { $0.key < $1.key }.map { ["rowid": $0.key, "key": $0.value.key, "value": $0.value.value] }
    }

    func insert(_ request: InsertRequest) async throws -> MutationResult {
        guard let key = request["key"].text, !key.isEmpty else { return .constraint }
        if items.values.contains(where: { $0.key == key }) { return .constraint }
        let rowid = request.rowid ?? nextRowid
        nextRowid = max(nextRowid, rowid + 1)
        items[rowid] = (key, request["value"].text ?? "")
        return .success(rowid: rowid)
    }

    func update(_ request: UpdateRequest) async throws -> MutationResult {
        guard items[request.rowid] != nil, let key = request["key"].text else { return .failure("no such row") }
        items[request.rowid] = nil
        items[request.newRowid ?? request.rowid] = (key, request["value"].text ?? "")
        return .success
    }

    func delete(_ request: DeleteRequest) async throws -> MutationResult {
        items[request.rowid] == nil ? .failure("no such row") : { items[request.rowid] = nil; return .success }()
    }
}

let table = Table("kv_store", columns: [.text("key", .index), .text("value")], store: KeyValueStore())
await Extension("kv_store", version: "1.0.0", plugins: [table]).run()
