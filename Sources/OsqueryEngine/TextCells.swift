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
    let types: [ColumnType]
    let owner: any AnyObject & Sendable
    let base: UnsafeRawPointer
    /// The cells, in memory this object owns (see ``view``).
    let cells: UnsafeMutableBufferPointer<UInt64>

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
        self.base = base
        self.types = types
        self.columnCount = types.count
        self.rowCount = types.isEmpty ? 0 : cells.count / types.count
        let owned = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: max(cells.count, 1))
        _ = owned.initialize(fromContentsOf: cells)
        self.cells = UnsafeMutableBufferPointer(rebasing: owned[0..<cells.count])
        self.typesView = .allocate(capacity: max(types.count, 1))
        _ = typesView.initialize(fromContentsOf: types)
    }

    deinit {
        cells.deallocate()
        typesView.deallocate()
    }

    /// The column types, in memory this object owns.
    private let typesView: UnsafeMutableBufferPointer<ColumnType>

    /// Plain pointers into this object's memory for per-cell work (SQLite's xColumn): valid
    /// while the object lives, and reading through them moves no reference count.
    struct View {
        let base: UnsafeRawPointer
        let cells: UnsafeMutablePointer<UInt64>
        let types: UnsafeMutablePointer<ColumnType>
        let columnCount: Int

        @inline(__always)
        func setResult(_ ctx: OpaquePointer?, row: Int, column: Int, declared: ColumnType) {
            let cell = cells[row &* columnCount &+ column]
            guard cell != TextCells.missing else {
                sqlite3_result_null(ctx)
                return
            }
            let bytes = UnsafeRawBufferPointer(start: base + Int(cell >> 32), count: Int(cell & 0xFFFF_FFFF))
            TextCells.setResult(ctx, bytes, type: types[column], declared: declared)
        }
    }

    var view: View {
        View(base: base, cells: cells.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!,
             types: typesView.baseAddress!, columnCount: columnCount)
    }

    /// The bytes of a cell, nil when it is NULL.
    @inline(__always)
    public func bytes(row: Int, column: Int) -> UnsafeRawBufferPointer? {
        let cell = cells[row &* columnCount &+ column]
        if cell == Self.missing { return nil }
        return UnsafeRawBufferPointer(start: base + Int(cell >> 32), count: Int(cell & 0xFFFF_FFFF))
    }

    /// A cell as a SQL value, with osquery's conversion rules for its column's type.
    public func value(row: Int, column: Int) -> SQLValue {
        guard let bytes = bytes(row: row, column: column) else { return .null }
        return SQLValue.converting(utf8: bytes, to: types[column])
    }

    /// Hands a cell's bytes to SQLite as `declared` (the virtual column's type): text straight
    /// from the reply (SQLite copies it), numbers parsed from their bytes.
    @inline(__always)
    static func setResult(_ ctx: OpaquePointer?, _ bytes: UnsafeRawBufferPointer, type: ColumnType, declared: ColumnType) {
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
