internal import CSQLite

/// Rows a table hands SQLite as text cells in memory the source keeps alive (an extension's
/// reply), each converted to a SQL value only when SQLite reads it; another thread may still be
/// filling them in.
///
/// Converting every cell up front cost a `String` per text cell and a typed value per cell that
/// SQLite then copied again; reading from where the text already is skips both, and cells of
/// columns a query never reads are never converted. Where the text comes from, and who fills
/// the cells, is the source's business; the cursor only reads ``cells`` and asks how far it may.
package protocol RowSource: AnyObject, Sendable {
    /// Cells per row.
    var columnCount: Int { get }
    /// The number of rows.
    var rowCount: Int { get }
    /// Where the cells are: valid while the source lives.
    var cells: TextCellsView { get }
    /// Waits until `row` can be read or the filling ended; the number of rows that can be read.
    /// A source whose rows are all there answers ``rowCount`` at once.
    func waitForRow(_ row: Int) -> Int
    /// Waits until every row is there: the first error (the statement's) and the rowids (nil:
    /// row numbers).
    func waitUntilDone() -> (failure: String?, rowids: [Int64]?)
    /// The cursor no longer wants the rows (it moved on or closed): filling may stop.
    func cancel()
}

extension RowSource {
    /// A cell as a SQL value, with osquery's conversion rules for its column's type (NULL when
    /// the row never came).
    package func value(row: Int, column: Int) -> SQLValue {
        guard row < waitForRow(row), let bytes = cells.bytes(row: row, column: column) else { return .null }
        return SQLValue.converting(utf8: bytes, to: cells.types[column])
    }
}

/// Text cells laid out for SQLite's per-cell reads (xColumn): plain pointers, so reading a cell
/// moves no reference count.
///
/// `cells` holds `columnCount` entries per row, row after row: ``cell(offset:length:)``, or
/// ``missing`` for NULL; a cell's bytes are `base + offset ..< base + offset + length`. With
/// `parsed` (one entry per cell), the cells of numeric columns are already converted: such a cell
/// is either ``missing`` (NULL: absent, empty or not a number) or present with its value's bits
/// in `parsed` (an `Int64`, or a `Double` in a DOUBLE column), as
/// ``SQLValue/converting(utf8:to:)`` gives it.
package struct TextCellsView {
    package let base: UnsafeRawPointer
    package let cells: UnsafeMutablePointer<UInt64>
    package let parsed: UnsafeMutablePointer<UInt64>?
    package let types: UnsafeMutablePointer<ColumnType>
    package let columnCount: Int

    package init(
        base: UnsafeRawPointer, cells: UnsafeMutablePointer<UInt64>, parsed: UnsafeMutablePointer<UInt64>?,
        types: UnsafeMutablePointer<ColumnType>, columnCount: Int
    ) {
        self.base = base
        self.cells = cells
        self.parsed = parsed
        self.types = types
        self.columnCount = columnCount
    }

    /// A cell whose key the row did not have (NULL).
    package static let missing = UInt64.max

    /// Packs a cell. Offsets and lengths must fit 32 bits.
    @inline(__always)
    package static func cell(offset: Int, length: Int) -> UInt64 {
        UInt64(truncatingIfNeeded: offset) << 32 | UInt64(truncatingIfNeeded: length)
    }

    /// The bytes of a cell, nil when it is NULL.
    @inline(__always)
    package func bytes(row: Int, column: Int) -> UnsafeRawBufferPointer? {
        let cell = cells[row &* columnCount &+ column]
        if cell == Self.missing { return nil }
        return UnsafeRawBufferPointer(start: base + Int(cell >> 32), count: Int(cell & 0xFFFF_FFFF))
    }

    /// Hands a cell to SQLite as `declared` (the virtual column's type): text straight from
    /// where it is (SQLite copies it), numbers parsed from their bytes.
    @inline(__always)
    func setResult(_ ctx: OpaquePointer?, row: Int, column: Int, declared: ColumnType) {
        let type = types[column]
        if let parsed, type.isNumeric {
            let i = row &* columnCount &+ column
            if cells[i] == Self.missing {
                sqlite3_result_null(ctx)
            } else if type == .double {
                sqlite3_result_double(ctx, Double(bitPattern: parsed[i]))
            } else {
                sqlite3_result_int64(ctx, Int64(bitPattern: parsed[i]))
            }
            return
        }
        guard let bytes = bytes(row: row, column: column) else {
            // osquery hands SQLite a missing TEXT/BLOB cell as '' (only numbers become NULL).
            if declared.isNumeric {
                sqlite3_result_null(ctx)
            } else {
                sqlite3_result_text(ctx, "", 0, osq_sqlite_static())
            }
            return
        }
        if (type == .text || type == .unknown) && !declared.isNumeric && declared != .blob {
            // Valid UTF-8 or not, a text column's value is exactly these bytes.
            setTextResult(ctx, bytes)
        } else {
            OsqueryEngine.setResult(ctx, SQLValue.converting(utf8: bytes, to: type), type: declared)
        }
    }
}
