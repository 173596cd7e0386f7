/// Per-table limits. Past them the core gets a status with a clear message,
/// never a broken transport.
public struct TableLimits: Sendable, Hashable {
    /// How long `generate` may run; the generating task is cancelled after it.
    public var deadline: Duration?
    /// The most rows one reply may carry.
    public var maxRows: Int?
    /// The most bytes of keys and values one reply may carry. The default, 64 MiB,
    /// stays clear of Thrift's usual 100 MiB message limit.
    public var maxBytes: Int?

    /// Limits; the default keeps replies under 64 MiB.
    /// - Parameters:
    ///   - deadline: how long `generate` may run; nil: no deadline.
    ///   - maxRows: the most rows one reply may carry; nil: no limit.
    ///   - maxBytes: the most bytes of keys and values one reply may carry; nil: no limit.
    public init(deadline: Duration? = nil, maxRows: Int? = nil, maxBytes: Int? = 64 << 20) {
        self.deadline = deadline
        self.maxRows = maxRows
        self.maxBytes = maxBytes
    }

    /// No deadline, no row limit, 64 MiB.
    package static let `default` = TableLimits()
    /// No limits at all.
    package static let unlimited = TableLimits(deadline: nil, maxRows: nil, maxBytes: nil)
}
