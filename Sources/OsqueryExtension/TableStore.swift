/// The state behind a writable table. It is an actor, so its data is race-free
/// without locks; calls to one store run one at a time.
public protocol TableStore: Actor {
    /// The rows for a query. Include a `rowid` cell so updates and deletes can find rows.
    /// - Parameter context: the query's constraints and used columns.
    /// - Returns: the rows; only the columns the query uses are sent.
    /// - Throws: any error; the core gets its description as the query's error (a ``PluginError``'s
    ///   message as it is).
    func generate(_ context: QueryContext) async throws -> [Row]
    /// `INSERT`. Defaults to `.readonly`.
    /// - Parameter request: the values and rowid to insert.
    /// - Returns: how it went; an insert that picked the rowid returns it in `.success(rowid:)`.
    /// - Throws: any error; the core gets a failure status with its description.
    func insert(_ request: InsertRequest) async throws -> MutationResult
    /// `UPDATE`. Defaults to `.readonly`.
    /// - Parameter request: the row's rowid and its new values.
    /// - Returns: how it went.
    /// - Throws: any error; the core gets a failure status with its description.
    func update(_ request: UpdateRequest) async throws -> MutationResult
    /// `DELETE`. Defaults to `.readonly`.
    /// - Parameter request: the rowid of the row to delete.
    /// - Returns: how it went.
    /// - Throws: any error; the core gets a failure status with its description.
    func delete(_ request: DeleteRequest) async throws -> MutationResult
    /// Called when the extension stops.
    func shutdown() async
}

extension TableStore {
    /// Refuses the insert (read-only).
    /// - Parameter request: the insert, unused.
    /// - Returns: `.readonly`.
    /// - Throws: never (the protocol requirement is `throws`).
    public func insert(_ request: InsertRequest) async throws -> MutationResult { .readonly }
    /// Refuses the update (read-only).
    /// - Parameter request: the update, unused.
    /// - Returns: `.readonly`.
    /// - Throws: never (the protocol requirement is `throws`).
    public func update(_ request: UpdateRequest) async throws -> MutationResult { .readonly }
    /// Refuses the delete (read-only).
    /// - Parameter request: the delete, unused.
    /// - Returns: `.readonly`.
    /// - Throws: never (the protocol requirement is `throws`).
    public func delete(_ request: DeleteRequest) async throws -> MutationResult { .readonly }
    /// Does nothing.
    public func shutdown() async {}
}
