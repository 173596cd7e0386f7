internal import CSQLite

/// Rows as the text an extension sent them: for each cell, where its bytes are in the reply
/// (which this object keeps alive), converted to a SQL value only when SQLite reads it.
///
/// Converting every cell up front cost a `String` per text cell and a typed value per cell that
/// SQLite then copied again; reading from the reply skips both, and cells of columns a query
/// never reads are never converted.
public final class TextCells: @unchecked Sendable {
    // Immutable after init: safe to share between threads.
    /// Cells per row (the table's columns).
    public let columnCount: Int
    /// The number of rows.
    public let rowCount: Int
    /// Keeps the reply's bytes where `view.base` points.
    let owner: any AnyObject & Sendable
    /// The cells and column types, in memory this object owns, and the reply's bytes.
    let view: View

    /// A cell whose key the row did not have (NULL).
    public static let missing = UInt64.max

    /// Packs a cell: its bytes are `base + offset ..< base + offset + length`.
    @inline(__always)
    public static func cell(offset: Int, length: Int) -> UInt64 {
        UInt64(truncatingIfNeeded: offset) << 32 | UInt64(truncatingIfNeeded: length)
    }

    /// `cells` holds `columnCount` entries per row, row after row (``cell(offset:length:)`` or
    /// ``missing``); offsets count from `base`, memory that stays valid while `owner` lives.
    /// Offsets and lengths must fit 32 bits.
    public init(owner: any AnyObject & Sendable, base: UnsafeRawPointer, types: [ColumnType], cells: [UInt64]) {
        self.owner = owner
        self.columnCount = types.count
        self.rowCount = types.isEmpty ? 0 : cells.count / types.count
        let ownedCells = UnsafeMutablePointer<UInt64>.allocate(capacity: max(cells.count, 1))
        ownedCells.initialize(from: cells, count: cells.count)
        let ownedTypes = UnsafeMutablePointer<ColumnType>.allocate(capacity: max(types.count, 1))
        ownedTypes.initialize(from: types, count: types.count)
        self.view = View(base: base, cells: ownedCells, types: ownedTypes, columnCount: types.count)
    }

    deinit {
        view.cells.deallocate()
        view.types.deallocate()
    }

    /// The bytes of a cell, nil when it is NULL.
    public func bytes(row: Int, column: Int) -> UnsafeRawBufferPointer? { view.bytes(row: row, column: column) }

    /// A cell as a SQL value, with osquery's conversion rules for its column's type.
    public func value(row: Int, column: Int) -> SQLValue {
        guard let bytes = view.bytes(row: row, column: column) else { return .null }
        return SQLValue.converting(utf8: bytes, to: view.types[column])
    }

    /// Plain pointers into the object's memory for per-cell work (SQLite's xColumn): valid
    /// while the object lives, and reading through them moves no reference count.
    struct View {
        let base: UnsafeRawPointer
        let cells: UnsafeMutablePointer<UInt64>
        let types: UnsafeMutablePointer<ColumnType>
        let columnCount: Int

        @inline(__always)
        func bytes(row: Int, column: Int) -> UnsafeRawBufferPointer? {
            let cell = cells[row &* columnCount &+ column]
            if cell == TextCells.missing { return nil }
            return UnsafeRawBufferPointer(start: base + Int(cell >> 32), count: Int(cell & 0xFFFF_FFFF))
        }

        /// Hands a cell to SQLite as `declared` (the virtual column's type): text straight from
        /// the reply (SQLite copies it), numbers parsed from their bytes.
        @inline(__always)
        func setResult(_ ctx: OpaquePointer?, row: Int, column: Int, declared: ColumnType) {
            guard let bytes = bytes(row: row, column: column) else {
                sqlite3_result_null(ctx)
                return
            }
            let type = types[column]
            if (type == .text || type == .unknown) && !declared.isNumeric && declared != .blob {
                // Valid UTF-8 or not, a text column's value is exactly these bytes.
                if let start = bytes.baseAddress, bytes.count > 0 {
                    sqlite3_result_text(ctx, start.assumingMemoryBound(to: CChar.self), Int32(bytes.count), osq_sqlite_transient())
                } else {
                    sqlite3_result_text(ctx, "", 0, osq_sqlite_static())
                }
            } else {
                OsqueryEngine.setResult(ctx, SQLValue.converting(utf8: bytes, to: type), type: declared)
            }
        }
    }
}
