internal import CSQLite

/// A table whose rows can be read one at a time from where they are kept (an event table's
/// store), instead of being materialised by `generate` first.
///
/// Materialising a large table costs a value (and a `String` per text cell) per cell that
/// SQLite then copies again; a cursor hands each cell to SQLite from where it is, and cells
/// of columns a query never reads are never touched.
package protocol CursorTable: TablePlugin {
    /// A cursor over the rows `context` asks for, positioned before the first; nil: this scan
    /// goes through `generate`.
    func openCursor(_ context: QueryContext) throws -> (any RowCursor)?
}

/// The rows of one scan of a ``CursorTable``, read in order on the query's thread.
package protocol RowCursor: AnyObject {
    /// Moves to the next row (the first call: to the first row); false past the last one.
    func advance() throws(EngineError) -> Bool
    /// The current row's cell of schema column `column`; its bytes stay valid until the next
    /// ``advance()`` or ``close()``.
    func cell(_ column: Int) -> StoredCell
    /// The scan is over (read to the end or abandoned): called once, on the query's thread.
    func close()
}

/// One cell as a cursor keeps it: no reference counted storage, so reading it moves no count.
package struct StoredCell {
    package enum Kind: UInt8 {
        case null, integer, double, text, blob
    }
    package var kind: Kind
    /// An integer's value, or a double's bits.
    package var bits: Int64
    /// Text or blob bytes.
    package var bytes: UnsafeRawPointer?
    package var count: Int

    @inline(__always)
    package init(kind: Kind, bits: Int64 = 0, bytes: UnsafeRawPointer? = nil, count: Int = 0) {
        self.kind = kind
        self.bits = bits
        self.bytes = bytes
        self.count = count
    }

    package static var null: StoredCell { StoredCell(kind: .null) }

    /// The cell as a value (text that is not UTF-8 stays bytes).
    package var value: SQLValue {
        switch kind {
        case .null: return .null
        case .integer: return .integer(bits)
        case .double: return .double(Double(bitPattern: UInt64(bitPattern: bits)))
        case .text:
            let text = UnsafeRawBufferPointer(start: bytes, count: count)
            return SQLValue.validUTF8String(text).map { .text($0) } ?? .blob(Array(text))
        case .blob: return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        }
    }

    /// Hands the cell to SQLite as the virtual column's `declared` type, as a ``SQLValue`` of
    /// the same kind is handed over (a missing TEXT cell is '', text in a numeric column is
    /// converted, bytes in a TEXT column are text).
    @inline(__always)
    func setResult(_ ctx: OpaquePointer?, declared: ColumnType) {
        switch kind {
        case .null:
            if declared.isNumeric {
                sqlite3_result_null(ctx)
            } else {
                sqlite3_result_text(ctx, "", 0, osq_sqlite_static())
            }
        case .integer:
            sqlite3_result_int64(ctx, bits)
        case .double:
            sqlite3_result_double(ctx, Double(bitPattern: UInt64(bitPattern: bits)))
        case .text:
            let text = UnsafeRawBufferPointer(start: bytes, count: count)
            if declared.isNumeric {
                OsqueryEngine.setResult(ctx, SQLValue.converting(utf8: text, to: declared), type: .text)
            } else {
                setTextResult(ctx, text)
            }
        case .blob:
            if declared == .blob {
                sqlite3_result_blob64(
                    ctx, bytes ?? UnsafeRawPointer(bitPattern: 1), sqlite3_uint64(count), osq_sqlite_transient())
            } else {
                setTextResult(ctx, UnsafeRawBufferPointer(start: bytes, count: count))
            }
        }
    }
}
