import CSystemHeaders
import Logging
import NIOCore
import Synchronization
import ThriftCodec

#if canImport(Glibc)
import Glibc
#endif

/// Serves one connection on a thread of its own: reads a whole request with blocking reads,
/// answers it, writes the reply, and reads the next. `ping` is answered on this thread; any
/// other call runs in a task whose jobs this thread runs while it waits for it (``CallExecutor``),
/// watching the socket: a call whose peer leaves is cancelled.
///
/// What a peer can make the server hold is bounded (``ServerLimits``): nothing is read while a
/// call runs or a reply waits for the peer to read it, so the kernel's buffers fill and the
/// peer blocks. A message grows its buffer as its bytes arrive, and past a small allowance
/// draws on a budget shared by the server's connections; replies the kernel has not taken
/// share another (a quarter of the message size), past which the connections whose peers have
/// left replies unread longest are closed. A message that stalls, a reply left unread and an
/// idle connection are closed after their timeouts.
final class ServerConnection: @unchecked Sendable {
    // Shared with other threads, each safe to touch from any.
    let id: Int
    let fd: Int32
    let core: ServerCore
    /// False once `fd` is closed: a shutdown from another thread never reaches a reused descriptor.
    let open = Mutex(true)
    /// Reply bytes the server's shedding counted for this connection (``ServerCore/shedding``).
    let shedBytes = Atomic<Int>(0)
    /// The call running in a task, between the task and this connection's thread.
    let call = Mutex(CallState.idle)

    // Touched by this connection's thread only (and deinit).
    var peer: PeerCredentials?
    var framer: MessageFramer
    /// Received bytes: `start..<end` not yet taken as whole messages.
    var buffer: UnsafeMutableRawPointer
    var capacity: Int
    var start = 0
    var end = 0
    /// Bytes of `capacity` drawn from the server's shared budget.
    var charged = 0
    /// An eventfd a call's task writes once its reply is ready, or a job is queued for this
    /// thread; made at the first such call.
    var callDone: Int32 = -1
    /// Runs calls' tasks on this thread; made with `callDone`.
    var callExecutor: CallExecutor?

    func executor(_ wake: Int32) -> CallExecutor {
        if let callExecutor { return callExecutor }
        let made = CallExecutor(wake: wake)
        callExecutor = made
        return made
    }

    enum CallState {
        case idle, running
        case done(MessageProcessor.Outcome)
        /// The connection closed under the call: the task counts the call as done.
        case abandoned
    }

    init(id: Int, fd: Int32, core: ServerCore) {
        self.id = id
        self.fd = fd
        self.core = core
        framer = MessageFramer(limits: core.limits.thrift)
        capacity = ServerLimits.perConnectionAllowance
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        if callDone >= 0 { Glibc.close(callDone) }
    }

    /// The connection's thread.
    func run() {
        peer = peerCredentials()
        // Blocking reads between messages wait at most the idle timeout.
        setReceiveTimeout(core.limits.idleTimeout)
        serve()
        ended()
    }

    /// Gives back what the connection held and closes it.
    func ended() {
        if charged != 0 { core.heldBytes.subtract(charged, ordering: .relaxed) }
        charged = 0
        core.remove(self)
        open.withLock { isOpen in
            isOpen = false
            Glibc.close(fd)
        }
        core.threadEnded()
    }

    /// Shuts the socket down from another thread: whatever this connection's thread is blocked
    /// in (a read, a write, waiting for its call) returns, and the thread ends.
    func shutDown() {
        open.withLock { isOpen in
            if isOpen { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    func close(because why: String) {
        core.logger.info("\(why)")
    }

    func serve() {
        while true {
            guard let length = nextMessage() else { return }
            let decoded = core.processor.decode(UnsafeRawBufferPointer(start: buffer + start, count: length))
            start += length
            if start == end { drained() }
            let outcome: MessageProcessor.Outcome
            var ranInTask = false
            switch decoded {
            case .answer(let answer):
                outcome = answer
            case .run(let header, let request):
                if let answer = core.processor.runNow(header, request) {
                    outcome = answer
                } else {
                    guard let answer = runInTask(header, request) else { return }
                    outcome = answer
                    ranInTask = true
                }
            }
            let sent = send(outcome)
            if ranInTask { core.runningCalls.subtract(1, ordering: .relaxed) }
            guard sent else { return }
        }
    }

    // MARK: Reading

    /// The length of the whole message at `start`, once all of it is in the buffer; nil when
    /// the connection is to close (the reason logged, unless the peer just left).
    func nextMessage() -> Int? {
        var since: ContinuousClock.Instant?
        while true {
            if end > start {
                let length: Int?
                do {
                    length = try framer.scan(UnsafeRawBufferPointer(start: buffer + start, count: end - start))
                } catch {
                    // Malformed or oversized input: the stream cannot be resynchronised.
                    close(because: "closing connection after a protocol error: \(error)")
                    return nil
                }
                if let length { return length }
                if since == nil { since = .now }
            }
            if end == capacity {
                if start > 0 {
                    compact()
                } else {
                    guard grow(since: since ?? .now) else { return nil }
                }
            }
            guard receive(since: since) else { return nil }
        }
    }

    /// Reads what the peer sent into the buffer's free space. Between messages the read blocks
    /// for at most the idle timeout (the socket's receive timeout); once a message has begun
    /// (`since`), it must end within the partial-message timeout.
    func receive(since: ContinuousClock.Instant?) -> Bool {
        var flags: Int32 = 0
        if let since {
            let timeout = core.limits.partialMessageTimeout
            switch wait(for: Int16(POLLIN), until: since + timeout) {
            case .timedOut:
                close(because: "closing connection: a message was not completed within \(timeout)")
                return false
            case .ready:
                flags = Int32(MSG_DONTWAIT)
            }
        }
        let n = recv(fd, buffer + end, capacity - end, flags)
        if n > 0 {
            end += n
            return true
        }
        if n == 0 { return false }  // the peer closed, or the server stops
        switch errno {
        case EINTR:
            return true
        case EAGAIN, EWOULDBLOCK:
            if since != nil { return true }
            close(because: "closing connection: no call for \(core.limits.idleTimeout)")
            return false
        case ECONNRESET, EPIPE:
            return false
        default:
            close(because: "closing connection after an error: read: \(String(cString: strerror(errno)))")
            return false
        }
    }

    /// Moves the unread bytes to the front of the buffer.
    func compact() {
        buffer.copyMemory(from: buffer + start, byteCount: end - start)
        end -= start
        start = 0
    }

    /// The buffer read to its end: a buffer grown for a big message is given back.
    func drained() {
        start = 0
        end = 0
        guard capacity > ServerLimits.perConnectionAllowance else { return }
        buffer.deallocate()
        capacity = ServerLimits.perConnectionAllowance
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        core.heldBytes.subtract(charged, ordering: .relaxed)
        charged = 0
    }

    /// Doubles the buffer for a message that does not fit, drawing what passes the allowance
    /// from the shared budget. While the budget is spent the connection waits for others to
    /// free it, within the message's partial-message timeout. The announced size is never
    /// allocated up front: a peer gets memory only for bytes it sends.
    func grow(since: ContinuousClock.Instant) -> Bool {
        let allowance = ServerLimits.perConnectionAllowance
        // A whole message of the maximum size fits; the framer refuses a longer one.
        let grown = min(capacity * 2, core.limits.maxMessageSize + allowance)
        guard grown > capacity else {
            close(because: "closing connection after a protocol error: a message exceeds \(core.limits.maxMessageSize) bytes")
            return false
        }
        let need = grown - allowance - charged
        let timeout = core.limits.partialMessageTimeout
        while !draw(need) {
            if ContinuousClock.now >= since + timeout {
                close(because: "closing connection: a message was not completed within \(timeout)")
                return false
            }
            // Other connections free the budget; look again shortly, unless the peer leaves.
            var watch = pollfd(fd: fd, events: pollReadHangUp, revents: 0)
            if poll(&watch, 1, milliseconds(ServerLimits.budgetRetry)) > 0 { return false }
        }
        let larger = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
        larger.copyMemory(from: buffer, byteCount: end)
        buffer.deallocate()
        buffer = larger
        capacity = grown
        charged += need
        return true
    }

    /// Takes `bytes` from the shared budget, if that many are left.
    func draw(_ bytes: Int) -> Bool {
        var held = core.heldBytes.load(ordering: .relaxed)
        while true {
            guard held + bytes <= core.limits.maxMessageSize else { return false }
            let (exchanged, original) = core.heldBytes.compareExchange(
                expected: held, desired: held + bytes, ordering: .relaxed)
            if exchanged { return true }
            held = original
        }
    }

    /// Counts the whole calls already received behind the current one, up to the limit: the
    /// calls waiting for it (``RPCServer/queuedCalls``). Bytes a pipelining peer has sent since
    /// are taken first, without waiting.
    func takeQueued() -> Int {
        if end == capacity, start > 0 { compact() }
        if end < capacity {
            let n = recv(fd, buffer + end, capacity - end, Int32(MSG_DONTWAIT))
            if n > 0 { end += n }
        }
        var scanner = MessageFramer(limits: core.limits.thrift)
        var at = start
        var count = 0
        while count < core.limits.maxPipelinedCalls, at < end,
            let length = try? scanner.scan(UnsafeRawBufferPointer(start: buffer + at, count: end - at))
        {
            at += length
            count += 1
        }
        if count > 0 { core.queuedCalls.add(count, ordering: .relaxed) }
        return count
    }

    // MARK: Calls

    /// Runs a call in a task and waits for its reply; nil when the connection closes first
    /// (the call is cancelled: its caller is gone).
    func runInTask(_ header: MessageHeader, _ request: ExtensionRequest) -> MessageProcessor.Outcome? {
        if callDone < 0 {
            callDone = osq_eventfd_cloexec()
            guard callDone >= 0 else {
                close(because: "closing connection after an error: eventfd: \(String(cString: strerror(errno)))")
                return nil
            }
        }
        core.runningCalls.add(1, ordering: .relaxed)
        call.withLock { $0 = .running }
        let queued = end > start ? takeQueued() : 0
        defer { if queued > 0 { core.queuedCalls.subtract(queued, ordering: .relaxed) } }
        let processor = core.processor
        let peer = self.peer
        let done = callDone
        let executor = self.executor(done)
        executor.startWaiting()
        defer { executor.stopWaiting() }
        let task = Task(executorPreference: executor) { [self] in
            let outcome = await PeerCredentials.$current.withValue(peer) { await processor.run(header, request) }
            let deliver = call.withLock { state -> Bool in
                if case .abandoned = state { return false }
                state = .done(outcome)
                return true
            }
            if deliver {
                executor.wakeOwner()
            } else {
                core.runningCalls.subtract(1, ordering: .relaxed)
            }
        }
        var watched = [
            pollfd(fd: done, events: Int16(POLLIN), revents: 0), pollfd(fd: fd, events: pollReadHangUp, revents: 0),
        ]
        func finished() -> MessageProcessor.Outcome? {
            call.withLock { state -> MessageProcessor.Outcome? in
                guard case .done(let outcome) = state else { return nil }
                state = .idle
                return outcome
            }
        }
        while true {
            // The call's jobs run here; most calls end in the first of them.
            _ = executor.runQueued()
            if let outcome = finished() { return outcome }
            if poll(&watched, 2, -1) < 0, errno == EINTR { continue }
            if watched[0].revents != 0 {
                var value: UInt64 = 0
                _ = Glibc.read(done, &value, 8)
                continue
            }
            if watched[1].revents != 0 {
                // The caller is gone, or the server stops: the call's work is wasted, so stop it.
                let finished = call.withLock { state -> Bool in
                    defer { state = .abandoned }
                    if case .done = state { return true }
                    return false
                }
                if finished { core.runningCalls.subtract(1, ordering: .relaxed) }
                task.cancel()
                return nil
            }
        }
    }

    // MARK: Writing

    func send(_ outcome: MessageProcessor.Outcome) -> Bool {
        switch outcome {
        case .reply(let reply, let garbage):
            let sent = reply.withUnsafeReadableBytes { bytes in
                var part = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
                return write(&part, count: 1)
            }
            release(garbage)
            return sent
        case .replyInParts(let parts, let garbage):
            // One sendmsg for all the parts: they go out together, as one message.
            var vectors: [iovec] = []
            vectors.reserveCapacity(parts.count)
            let sent = withVectors(parts[...], &vectors) { vectors in
                vectors.withUnsafeMutableBufferPointer { write($0.baseAddress!, count: $0.count) }
            }
            release(garbage)
            return sent
        case .none:
            return true
        case .close(let why):
            close(because: "closing connection: \(why)")
            return false
        }
    }

    /// Calls `body` with an iovec for each part's readable bytes.
    func withVectors<R>(_ parts: ArraySlice<ByteBuffer>, _ vectors: inout [iovec], _ body: (inout [iovec]) -> R) -> R {
        guard let first = parts.first else { return body(&vectors) }
        return first.withUnsafeReadableBytes { bytes in
            vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count))
            return withVectors(parts.dropFirst(), &vectors, body)
        }
    }

    /// Frees `garbage` on a pool thread while the peer reads.
    func release(_ garbage: (any Sendable)?) {
        guard let garbage else { return }
        Task.detached(priority: .utility) { withExtendedLifetime(garbage) {} }
    }

    /// Writes the reply in `parts`. A reply the kernel does not take whole waits for the peer to
    /// read, within the partial-message timeout (it starts again whenever the peer takes more);
    /// while it waits its unsent bytes count against the server's budget, past which the
    /// connections that have waited longest are closed.
    func write(_ parts: UnsafeMutablePointer<iovec>, count: Int) -> Bool {
        var remaining = 0
        for i in 0..<count { remaining += parts[i].iov_len }
        var first = 0
        var stalled = false
        var queued = 0
        defer {
            if stalled {
                core.outboundBytes.subtract(remaining, ordering: .relaxed)
                core.resumed(self)
                if queued > 0 { core.queuedCalls.subtract(queued, ordering: .relaxed) }
            }
        }
        while true {
            var message = msghdr()
            message.msg_iov = parts + first
            message.msg_iovlen = count - first
            let n = sendmsg(fd, &message, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            if n > 0 {
                remaining -= n
                if stalled { core.outboundBytes.subtract(n, ordering: .relaxed) }
                if remaining == 0 { return true }
                var taken = n
                while first < count, taken >= parts[first].iov_len {
                    taken -= parts[first].iov_len
                    first += 1
                }
                parts[first].iov_base += taken
                parts[first].iov_len -= taken
                if stalled { core.stalled(self, bytes: remaining) }
            } else if n < 0 {
                switch errno {
                case EINTR:
                    continue
                case EAGAIN, EWOULDBLOCK:
                    break
                case EPIPE, ECONNRESET:
                    return false
                default:
                    close(because: "closing connection after an error: write: \(String(cString: strerror(errno)))")
                    return false
                }
            }
            if !stalled {
                stalled = true
                core.outboundBytes.add(remaining, ordering: .relaxed)
                core.stalled(self, bytes: remaining)
                queued = takeQueued()
                core.shed(budget: core.limits.unsentReplyBudget)
            }
            let timeout = core.limits.partialMessageTimeout
            switch wait(for: Int16(POLLOUT), until: .now + timeout) {
            case .timedOut:
                close(because: "closing connection: the peer did not read its reply within \(timeout)")
                return false
            case .ready(let events):
                if events & Int16(POLLOUT) == 0, events & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 { return false }
            }
        }
    }

    // MARK: Socket

    enum Readiness {
        case ready(Int16)
        case timedOut
    }

    /// Waits for `events` on the socket until `deadline`.
    func wait(for events: Int16, until deadline: ContinuousClock.Instant) -> Readiness {
        while true {
            let left = deadline - .now
            if left <= .zero { return .timedOut }
            var watch = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&watch, 1, milliseconds(left))
            if n > 0 { return .ready(watch.revents) }
            if n < 0, errno != EINTR { return .ready(Int16(POLLERR)) }
        }
    }

    func peerCredentials() -> PeerCredentials? {
        // SO_PEERCRED: the connecting process's pid/uid/gid, from the kernel.
        var credentials = RawPeerCredentials()
        var length = socklen_t(MemoryLayout<RawPeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, soPeerCred, &credentials, &length) == 0 else { return nil }
        return PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
    }

    func setReceiveTimeout(_ timeout: Duration) {
        // Zero would mean no timeout at all.
        let (seconds, attoseconds) = max(timeout, .milliseconds(1)).components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// `duration` in whole milliseconds for poll(2), rounded up and at most Int32's.
func milliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    let ms = seconds.multipliedReportingOverflow(by: 1000)
    guard !ms.overflow else { return Int32.max }
    return Int32(clamping: ms.partialValue + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
}

/// POLLRDHUP (Linux): the peer closed its end or shut down writing.
let pollReadHangUp: Int16 = 0x2000

/// Linux's `struct ucred` (not exported to Swift without _GNU_SOURCE).
struct RawPeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Linux's SO_PEERCRED option number.
let soPeerCred: Int32 = 17
