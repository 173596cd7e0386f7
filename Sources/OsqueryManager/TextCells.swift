import OsqueryEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An extension's rows as the text its reply carries: for each cell, where its bytes are in the
/// reply (which this object keeps alive), handed to SQLite as a ``RowSource``.
final class TextCells: RowSource, @unchecked Sendable {
    // Immutable after init: safe to share between threads.
    let columnCount: Int
    let rowCount: Int
    /// Keeps the reply's bytes where `cells.base` points.
    let owner: any AnyObject & Sendable
    /// The cells and column types, in memory this object owns, and the reply's bytes.
    let cells: TextCellsView
    /// Set when the cells are still being filled in on another thread: a row may be read only
    /// once it is ready (``CellsProgress/waitForRow(_:)``).
    let progress: CellsProgress?

    /// `cells` holds `columnCount` entries per row, row after row (``TextCellsView/cell(offset:length:)``
    /// or ``TextCellsView/missing``); offsets count from `base`, memory that stays valid while
    /// `owner` lives. Offsets and lengths must fit 32 bits.
    convenience init(owner: any AnyObject & Sendable, base: UnsafeRawPointer, types: [ColumnType], cells: [UInt64]) {
        let ownedCells = UnsafeMutablePointer<UInt64>.allocate(capacity: max(cells.count, 1))
        ownedCells.initialize(from: cells, count: cells.count)
        self.init(
            owner: owner, base: base, types: types, ownedCells: ownedCells,
            rowCount: types.isEmpty ? 0 : cells.count / types.count, progress: nil)
    }

    /// Cells that another thread fills in row order after this returns: `cells` (memory this
    /// object takes over, `rowCount` rows of `types.count` cells) may be read up to the rows
    /// `progress` says are ready. With `parsed` (memory this object also takes over, one entry
    /// per cell), the filling thread converts the cells of numeric columns too
    /// (``parseNumbers(row:into:numericColumns:types:base:)``), so SQLite's reads do no parsing.
    convenience init(
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
        self.cells = TextCellsView(base: base, cells: ownedCells, parsed: parsed, types: ownedTypes, columnCount: types.count)
        self.progress = progress
    }

    deinit {
        cells.cells.deallocate()
        cells.parsed?.deallocate()
        cells.types.deallocate()
    }

    func waitForRow(_ row: Int) -> Int {
        guard let progress else { return rowCount }
        return progress.waitForRow(row)
    }

    func waitUntilDone() -> (failure: String?, rowids: [Int64]?) {
        guard let progress else { return (nil, nil) }
        return progress.waitUntilDone()
    }

    func cancel() { progress?.cancel() }

    /// Converts the cells of `row`'s numeric columns into `parsed`, as ``TextCellsView`` reads
    /// them; for the filling thread.
    @inline(__always)
    static func parseNumbers(
        row: UnsafeMutablePointer<UInt64>, into parsed: UnsafeMutablePointer<UInt64>, numericColumns: UnsafeBufferPointer<Int>,
        types: UnsafeBufferPointer<ColumnType>, base: UnsafeRawPointer
    ) {
        for c in numericColumns {
            let cell = row[c]
            guard cell != TextCellsView.missing else { continue }
            let bytes = UnsafeRawBufferPointer(start: base + Int(cell >> 32), count: Int(cell & 0xFFFF_FFFF))
            switch SQLValue.converting(utf8: bytes, to: types[c]) {
            case .integer(let v): parsed[c] = UInt64(bitPattern: v)
            case .double(let d): parsed[c] = d.bitPattern
            default: row[c] = TextCellsView.missing
            }
        }
    }
}

/// How far another thread has filled in a ``TextCells``: rows are published in order, and at the
/// end the rowids and the first error (an extension's bad `rowid`). The reader waits on a
/// condition variable, not a spin: the filling thread may need the CPU it would spin on.
final class CellsProgress: @unchecked Sendable {
    // @unchecked: every field is read and written under `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var ready = 0
    private var done = false
    private var cancelled = false
    private var failure: String?
    private var rowids: [Int64]?

    init() {
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
    func publish(ready rows: Int) {
        locked {
            ready = rows
            pthread_cond_broadcast(changed)
        }
    }

    /// Filler: every row is ready (or the reader cancelled); the rowids and the first error.
    func finish(failure: String?, rowids: [Int64]?) {
        locked {
            done = true
            self.failure = failure
            self.rowids = rowids
            pthread_cond_broadcast(changed)
        }
    }

    /// Reader: the rows are no longer wanted (the cursor moved on or closed).
    func cancel() { locked { cancelled = true } }

    /// Filler: whether to stop early.
    var isCancelled: Bool { locked { cancelled } }

    /// Reader: waits until `row` is ready or the filling ended; the number of rows ready.
    func waitForRow(_ row: Int) -> Int {
        locked {
            while ready <= row && !done { pthread_cond_wait(changed, mutex) }
            return ready
        }
    }

    /// Reader: waits for the end; the first error and the rowids.
    func waitUntilDone() -> (failure: String?, rowids: [Int64]?) {
        locked {
            while !done { pthread_cond_wait(changed, mutex) }
            return (failure, rowids)
        }
    }
}
