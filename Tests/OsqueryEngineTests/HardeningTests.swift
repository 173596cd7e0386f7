import OsqueryEngine
import Testing

/// Rows of one TEXT column whose cells point into a small buffer of `x`s, as a ``RowSource``
/// (the core's extension tables are one) hands them to SQLite.
private final class SmallBufferRows: RowSource, @unchecked Sendable {
    // @unchecked: written once in init, never again.
    let bytes = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
    let cellMemory: UnsafeMutablePointer<UInt64>
    let types = UnsafeMutablePointer<ColumnType>.allocate(capacity: 1)
    let rowCount: Int
    var columnCount: Int { 1 }
    var cells: TextCellsView { TextCellsView(base: bytes, cells: cellMemory, parsed: nil, types: types, columnCount: 1) }

    init(cells: [UInt64]) {
        bytes.initializeMemory(as: UInt8.self, repeating: UInt8(ascii: "x"), count: 16)
        cellMemory = .allocate(capacity: cells.count)
        cellMemory.initialize(from: cells, count: cells.count)
        types.initialize(to: .text)
        rowCount = cells.count
    }

    deinit {
        bytes.deallocate()
        cellMemory.deallocate()
        types.deallocate()
    }

    func waitForRow(_ row: Int) -> Int { rowCount }
    func waitUntilDone() -> (failure: String?, rowids: [Int64]?) { (nil, nil) }
    func cancel() {}
}

/// Issue 14 item 5: a value past SQLite's length limit (or 2 GiB) fails its statement; it never
/// traps the process on an `Int32` length.
@Suite struct OversizedValueTests {
    /// The query from the issue: 2.2 GB of text. The size is checked before anything is built.
    @Test func concatPastTheLengthLimitIsAnError() throws {
        let db = try makeDatabase([])
        for sql in [
            "SELECT length(concat(zeroblob(1000000000), zeroblob(1000000000), zeroblob(200000000)))",
            "SELECT length(concat_ws(',', zeroblob(1000000000), zeroblob(1000000000), zeroblob(200000000)))",
            // Base64 grows its input by a third: past the limit before a byte is encoded.
            "SELECT length(to_base64(zeroblob(900000000)))",
        ] {
            #expect(throws: EngineError.self, "\(sql)") { try db.execute(sql) }
            do {
                _ = try db.execute(sql)
            } catch {
                #expect(error.message.contains("too big"), "\(error)")
            }
        }
        #expect(try db.execute("SELECT concat('a', 1, NULL, 'b') AS v").rows == [[.text("a1b")]])
        #expect(try db.execute("SELECT concat_ws('-', 'a', NULL, 'b') AS v").rows == [[.text("a-b")]])
        #expect(try db.execute("SELECT to_base64('ab') AS v").rows == [[.text("YWI=")]])
    }

    /// A text cell whose length does not fit 31 bits reaches SQLite as a 64-bit length: the
    /// statement fails with SQLite's error (SQLite rejects the length before reading a byte, so
    /// the cell can claim gigabytes over a 16-byte buffer), and the database keeps answering.
    @Test(arguments: [0xFFFF_FFFF, 3_000_000_000, 2_147_483_648])
    func aTextCellLongerThan2GiBIsAnError(length: Int) throws {
        let schema = TableSchema(name: "huge_cell", columns: [TableColumn("v", .text)])
        let table = FunctionTable(schema) { _ in
            TableRows(source: SmallBufferRows(
                cells: [TextCellsView.cell(offset: 0, length: 4), TextCellsView.cell(offset: 0, length: length)]))
        }
        let db = try makeDatabase([table])
        do {
            _ = try db.execute("SELECT v FROM huge_cell")
            Issue.record("a \(length)-byte cell was accepted")
        } catch {
            #expect(error.message.contains("too big"), "\(error)")
        }
        #expect(try db.execute("SELECT v FROM huge_cell LIMIT 1").rows == [[.text("xxxx")]])
        #expect(try db.execute("SELECT 1 AS one").rows == [[.integer(1)]])
    }
}
