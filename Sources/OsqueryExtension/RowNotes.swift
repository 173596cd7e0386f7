import Logging
import Synchronization

/// What a table's rows get wrong that the core would silently drop: a key that is no column (the
/// core ignores it) and a non-number in a numeric column (the core reads NULL). Each is logged
/// once per table and column, as rows repeat their mistakes.
final class RowNotes: Sendable {
    let table: String
    /// Per column: whether it is numeric (INTEGER, BIGINT, UNSIGNED BIGINT, DOUBLE) and its type.
    let numeric: [ColumnType?]
    private let state = Mutex<(logger: Logger?, said: Set<String>)>((nil, []))

    init(table: String, types: [ColumnType?]) {
        self.table = table
        self.numeric = types.map { $0.flatMap { $0.isNumeric ? $0 : nil } }
    }

    /// The extension's logger; without one (e.g. under the testing kit) the default handler's.
    func use(_ logger: Logger) { state.withLock { $0.logger = logger } }

    func unknownKey(_ key: String) {
        say(key, "table \(table): rows have key \"\(key)\", which is not a column; the core ignores it")
    }

    /// Checks a string in a numeric column (other values are numbers already).
    @inline(__always)
    func check(_ value: any ColumnValue, column: Int, name: String) {
        guard let type = numeric[column], ObjectIdentifier(Swift.type(of: value)) == ObjectIdentifier(String.self),
            let text = value as? String, !text.isEmpty
        else { return }
        let ok =
            switch type {
            case .double: Double(text) != nil
            case .unsignedBigint: UInt64(text) != nil || Int64(text) != nil
            default: Int64(text) != nil
            }
        if !ok {
            say(
                "\u{0}" + name,
                "table \(table): column \(name) is \(type.rawValue) but a row has \"\(text)\"; the core reads it as NULL")
        }
    }

    private func say(_ key: String, _ message: @autoclosure () -> String) {
        let logger = state.withLock { s -> Logger?? in
            guard s.said.insert(key).inserted else { return .none }
            return .some(s.logger)
        }
        guard let chosen = logger else { return }
        (chosen ?? Logger(label: "osquery.extension")).warning("\(message()) (said once per table and column)")
    }
}
