package import ThriftCodec

/// What one ``RPCServer`` lets its peers hold: the bounds that keep a hostile or broken
/// client on the socket from exhausting the server's memory, file descriptors or stack.
///
/// The core serves its extensions socket with these taken from its `--extensions_max_*`
/// and `--extensions_*_timeout` flags; an extension built with the SDK serves the core with
/// ``ExtensionConfiguration/serverLimits`` (the defaults below).
package struct ServerLimits: Sendable, Equatable {
    /// The largest message accepted or sent, in bytes (libthrift's 100 MiB, which is what
    /// osquery's peers accept). A reply over it is not sent: the caller gets an error
    /// instead. It also bounds the bytes held for messages not yet complete across all
    /// connections, beyond a small allowance per connection, and (see ``unsentReplyBudget``)
    /// the replies held for peers that do not read them.
    package var maxMessageSize: Int
    /// The deepest nesting of structs and containers accepted (libthrift: 64).
    package var maxDepth: Int
    /// Calls received on one connection and counted as waiting for the call before them to
    /// finish. The server reads nothing more of a connection while its call runs: the kernel's
    /// buffer fills and the peer blocks.
    package var maxPipelinedCalls: Int
    /// How long a connection with no call in flight may stay open without sending one.
    package var idleTimeout: Duration
    /// How long a message may take to arrive once its first byte has, and a reply to be
    /// read by the peer once the server has started writing it.
    package var partialMessageTimeout: Duration
    /// Connections served at once; more are accepted and closed at once.
    package var maxConnections: Int

    /// Defaults suited to an extensions socket: a core has a few dozen extensions at most,
    /// each with a handful of connections, and local peers send their messages in milliseconds.
    /// Values out of range are brought into it: the message size to 4 KiB...2 GiB, the
    /// counts to at least one.
    package init(
        maxMessageSize: Int = ThriftLimits.default.maxMessageSize,
        maxDepth: Int = ThriftLimits.default.maxDepth,
        maxPipelinedCalls: Int = 16,
        idleTimeout: Duration = .seconds(600),
        partialMessageTimeout: Duration = .seconds(30),
        maxConnections: Int = 256
    ) {
        // Past Int32 a length no longer fits the wire; below a few KiB no call fits; a count
        // under one would stop every connection.
        self.maxMessageSize = min(max(maxMessageSize, 4096), Int(Int32.max))
        self.maxDepth = max(maxDepth, 4)
        self.maxPipelinedCalls = max(maxPipelinedCalls, 1)
        self.idleTimeout = idleTimeout
        self.partialMessageTimeout = partialMessageTimeout
        self.maxConnections = max(maxConnections, 1)
    }

    /// The defaults.
    package static let `default` = ServerLimits()

    /// Reply bytes the server keeps for peers that are not reading them, over all connections,
    /// before it closes those connections (longest unread first). A quarter of the message size:
    /// replies are built whole before they are sent, so calls in progress hold more on top of it,
    /// and peers that read take their replies in milliseconds. One connection alone may still
    /// hold a reply of the full message size.
    package var unsentReplyBudget: Int { maxMessageSize / 4 }

    /// The decoding limits these imply.
    package var thrift: ThriftLimits { ThriftLimits(maxMessageSize: maxMessageSize, maxDepth: maxDepth) }

    /// Bytes a connection may hold of unfinished messages without drawing on the server's
    /// shared budget: ordinary calls never wait on it.
    static let perConnectionAllowance = 64 * 1024
    /// How often a connection paused on the shared budget looks again.
    static let budgetRetry: Duration = .milliseconds(20)
    /// The stack of each connection's thread: decoding recurses at most `maxDepth` levels, and
    /// a call's task runs here until it hops elsewhere (the SDK runs plugin code, the core its
    /// queries, on threads of their own). Untouched pages cost no memory.
    static let threadStackSize = 1 << 20
}
