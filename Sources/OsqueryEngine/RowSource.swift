internal import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
    /// Set when the cells are still being filled in on another thread: a row may be read only
    /// once it is ready (``CellsProgress/waitForRow(_:)``).
    public let progress: CellsProgress?

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
    public convenience init(owner: any AnyObject & Sendable, base: UnsafeRawPointer, types: [ColumnType], cells: [UInt64]) {
        let ownedCells = UnsafeMutablePointer<UInt64>.allocate(capacity: max(cells.count, 1))
        ownedCells.initialize(from: cells, count: cells.count)
        self.init(
            owner: owner, base: base, types: types, ownedCells: ownedCells,
            rowCount: types.isEmpty ? 0 : cells.count / types.count, progress: nil)
    }

    /// Cells that another thread fills in row order after this returns: `cells` (memory this
    /// object takes over, `rowCount` rows of `types.count` cells) may be read up to the rows
    /// `progress` says are ready.
    ///
    /// With `parsed` (memory this object also takes over, one entry per cell), the filling
    /// thread converts the cells of numeric columns too, so SQLite's reads do no parsing: a
    /// numeric cell is then either ``missing`` (NULL: absent, empty or not a number) or present
    /// with its value's bits in `parsed` (an `Int64`, or a `Double` in a DOUBLE column), as
    /// ``SQLValue/converting(utf8:to:)`` gives it.
    public convenience init(
        owner: any AnyObject & Sendable, base: UnsafeRawPointer, types: [ColumnType],
        adopting cells: UnsafeMutablePointer<UInt64>, parsed: UnsafeMutablePointer<UInt64>? = nil, rowCount: Int,
        progress: CellsProgress
    ) {
        self.init(
            owner: owner, base: base, types: types, ownedCells: cells, parsed: parsed, rowCount: rowCount,
            progress: progress)
    }

    private init(
        owner: any AnyObject & Sendable, base: UnsafeRawPointer, types: [ColumnType],
        ownedCells: UnsafeMutablePointer<UInt64>, parsed: UnsafeMutablePointer<UInt64>? = nil, rowCount: Int,
        progress: CellsProgress?
    ) {
        self.owner = owner
        self.columnCount = types.count
        self.rowCount = rowCount
        let ownedTypes = UnsafeMutablePointer<ColumnType>.allocate(capacity: max(types.count, 1))
        ownedTypes.initialize(from: types, count: types.count)
        self.view = View(base: base, cells: ownedCells, parsed: parsed, types: ownedTypes, columnCount: types.count)
        self.progress = progress
    }

    deinit {
        view.cells.deallocate()
        view.parsed?.deallocate()
        view.types.deallocate()
    }

    /// Converts the cells of `row`'s numeric columns into `parsed` (see
    /// ``init(owner:base:types:adopting:parsed:rowCount:progress:)``); for the filling thread.
    @inline(__always)
    public static func parseNumbers(
        row: UnsafeMutablePointer<UInt64>, into parsed: UnsafeMutablePointer<UInt64>, numericColumns: UnsafeBufferPointer<Int>,
        types: UnsafeBufferPointer<ColumnType>, base: UnsafeRawPointer
    ) {
        for c in numericColumns {
            let cell = row[c]
            guard cell != missing else { continue }
            let bytes = UnsafeRawBufferPointer(start: base + Int(cell >> 32), count: Int(cell & 0xFFFF_FFFF))
            switch SQLValue.converting(utf8: bytes, to: types[c]) {
            case .integer(let v): parsed[c] = UInt64(bitPattern: v)
            case .double(let d): parsed[c] = d.bitPattern
            default: row[c] = missing
            }
        }
    }

    /// The bytes of a cell, nil when it is NULL.
    public func bytes(row: Int, column: Int) -> UnsafeRawBufferPointer? {
        guard isReady(row) else { return nil }
        return view.bytes(row: row, column: column)
    }

    /// A cell as a SQL value, with osquery's conversion rules for its column's type.
    public func value(row: Int, column: Int) -> SQLValue {
        guard isReady(row), let bytes = view.bytes(row: row, column: column) else { return .null }
        return SQLValue.converting(utf8: bytes, to: view.types[column])
    }

    /// Waits for `row` when the cells are still being filled in.
    func isReady(_ row: Int) -> Bool {
        guard let progress else { return true }
        return row < progress.waitForRow(row)
    }

    /// Plain pointers into the object's memory for per-cell work (SQLite's xColumn): valid
    /// while the object lives, and reading through them moves no reference count.
    struct View {
        let base: UnsafeRawPointer
        let cells: UnsafeMutablePointer<UInt64>
        /// Numeric cells already converted, when the filling thread did it.
        let parsed: UnsafeMutablePointer<UInt64>?
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
            let type = types[column]
            if let parsed, type.isNumeric {
                let i = row &* columnCount &+ column
                if cells[i] == TextCells.missing {
                    sqlite3_result_null(ctx)
                } else if type == .double {
                    sqlite3_result_double(ctx, Double(bitPattern: parsed[i]))
                } else {
                    sqlite3_result_int64(ctx, Int64(bitPattern: parsed[i]))
                }
                return
            }
            guard let bytes = bytes(row: row, column: column) else {
                sqlite3_result_null(ctx)
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
}

/// How far another thread has filled in a ``TextCells``: rows are published in order, and at the
/// end the rowids and the first error (an extension's bad `rowid`). The reader waits on a
/// condition variable, not a spin: the filling thread may need the CPU it would spin on.
public final class CellsProgress: @unchecked Sendable {
    // @unchecked: every field is read and written under `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var ready = 0
    private var done = false
    private var cancelled = false
    private var failure: String?
    private var rowids: [Int64]?

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Filler: the first `rows` rows are ready.
    public func publish(ready rows: Int) {
        locked {
            ready = rows
            pthread_cond_broadcast(changed)
        }
    }

    /// Filler: every row is ready (or the reader cancelled); the rowids and the first error.
    public func finish(failure: String?, rowids: [Int64]?) {
        locked {
            done = true
            self.failure = failure
            self.rowids = rowids
            pthread_cond_broadcast(changed)
        }
    }

    /// Reader: the rows are no longer wanted (the cursor moved on or closed).
    public func cancel() { locked { cancelled = true } }

    /// Filler: whether to stop early.
    public var isCancelled: Bool { locked { cancelled } }

    /// Reader: waits until `row` is ready or the filling ended; the number of rows ready.
    public func waitForRow(_ row: Int) -> Int {
        locked {
            while ready <= row && !done { pthread_cond_wait(changed, mutex) }
            return ready
        }
    }

    /// Reader: waits for the end; the first error and the rowids.
    public func waitUntilDone() -> (failure: String?, rowids: [Int64]?) {
        locked {
            while !done { pthread_cond_wait(changed, mutex) }
            return (failure, rowids)
        }
    }
}
