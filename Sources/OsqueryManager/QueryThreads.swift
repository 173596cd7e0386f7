import Foundation
public import OsqueryEngine
import Synchronization

/// Runs SQL on dedicated threads, each owning its own SQLite `Database`.
///
/// Queries never run on the Swift cooperative pool: an extension table's
/// `generate` blocks its thread on an RPC, and a blocked pool thread (there are
/// only as many as cores) would stall the whole process. With several threads,
/// a statement waiting on a slow extension holds only its own thread while
/// other queries keep running. Before each job a thread brings its database's
/// tables in line with the registry (`Database.refreshTables`).
///
/// When every thread has been busy for `stuckAfter` (runaway statements, hung
/// extension tables), a waiting job gets a new thread, up to four times the base
/// count, so a few stuck callers never hold up the rest; threads beyond the base
/// count leave after being idle for a while. A burst of ordinary queries queues
/// instead: each thread holds a result being built, so growing for them would
/// multiply the memory a flood of callers can make the core hold.
public final class QueryThreads: Sendable {
    typealias Job = @Sendable (Database) -> Void

    struct Queued {
        let id: UInt64
        let job: Job
        /// Answers the caller without running the job (cancelled while queued).
        let abandon: @Sendable (EngineError) -> Void
    }

    struct State {
        var jobs: [Queued] = []
        var stopped = false
        var nextID: UInt64 = 0
        /// The jobs running now, with their database's interrupter and when they started.
        var running: [UInt64: Database.Interrupter] = [:]
        var since: [UInt64: ContinuousClock.Instant] = [:]
        /// A later look at whether the busy threads are stuck is scheduled.
        var recheckArmed = false
        /// Running jobs whose caller cancelled (interrupted).
        var cancelled: Set<UInt64> = []
        /// Jobs cancelled before they were queued.
        var cancelledEarly: Set<UInt64> = []
        /// Threads alive, and how many of them run a job now.
        var threads = 0
        var busy = 0
        var started = 0
    }

    // Every caller and query thread takes it per job: a plain mutex (see Locks.swift).
    let state = PlainMutex(State())
    let wakeup: DispatchSemaphore
    let registry: PluginRegistry
    let flags: Flags
    let baseCount: Int
    let maximumCount: Int
    /// How long a thread beyond the base count stays without a job.
    static let idleSeconds = 10.0
    /// How long every thread must have run its job before a waiting job gets a new thread.
    static let stuckAfter: Duration = .seconds(1)

    /// The error a cancelled caller's job ends with.
    static let cancelledError = EngineError(code: 9, message: "interrupted: the query was cancelled (its caller went away)")

    /// Starts `count` threads, each with a database over `registry`'s tables.
    public init(count: Int = 4, registry: PluginRegistry, flags: Flags) {
        self.registry = registry
        self.flags = flags
        self.wakeup = DispatchSemaphore(value: 0)
        self.baseCount = max(1, count)
        self.maximumCount = baseCount * 4
        state.withLock { s in
            s.threads = baseCount
            s.started = baseCount
        }
        for i in 0..<baseCount { startThread(index: i) }
    }

    /// Starts a thread already counted in `State.threads`.
    private func startThread(index: Int) {
        let thread = Thread { [self] in self.work() }
        thread.name = "osquery-sql-\(index)"
        thread.start()
    }

    /// Runs `body` with a database on one of the query threads, within `--query_timeout`.
    /// Cancelling the calling task takes a queued job out of the queue and interrupts a
    /// running one: either way the call ends with an error at once.
    public func run<T: Sendable>(_ body: @escaping @Sendable (Database) throws(EngineError) -> T) async throws(EngineError)
        -> T
    {
        let id = state.withLock { s -> UInt64 in
            s.nextID &+= 1
            return s.nextID
        }
        let result: Result<T, EngineError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let job: Job = { db in
                    do throws(EngineError) {
                        continuation.resume(returning: .success(try body(db)))
                    } catch {
                        let cancelled = error.code == 9 && self.state.withLock { $0.cancelled.contains(id) }
                        continuation.resume(returning: .failure(cancelled ? Self.cancelledError : error))
                    }
                }
                let abandon: @Sendable (EngineError) -> Void = { continuation.resume(returning: .failure($0)) }
                let (refusal, growth) = state.withLock { s -> (EngineError?, Growth) in
                    if s.stopped { return (EngineError(code: 1, message: "the core is shutting down"), .none) }
                    if s.cancelledEarly.remove(id) != nil { return (Self.cancelledError, .none) }
                    s.jobs.append(Queued(id: id, job: job, abandon: abandon))
                    return (nil, grow(&s))
                }
                if let refusal {
                    abandon(refusal)
                } else {
                    apply(growth)
                    wakeup.signal()
                }
            }
        } onCancel: {
            cancel(id)
        }
        // A cancellation that came after the job was done left its id behind.
        if Task.isCancelled { state.withLock { _ = $0.cancelledEarly.remove(id) } }
        return try result.get()
    }

    enum Growth {
        case none
        case thread(Int)
        case recheckLater
    }

    /// Under the lock: a new thread when jobs wait, no thread is free (a thread being started
    /// counts as free) and every running job has run for `stuckAfter`; otherwise, while jobs
    /// wait for busy threads, a look again later.
    private func grow(_ s: inout State) -> Growth {
        guard !s.stopped, s.busy + s.jobs.count > s.threads, s.threads < maximumCount else { return .none }
        let now = ContinuousClock.now
        if s.busy >= s.threads, !s.since.isEmpty, s.since.values.allSatisfy({ now - $0 >= Self.stuckAfter }) {
            s.threads += 1
            s.started += 1
            return .thread(s.started - 1)
        }
        guard !s.recheckArmed else { return .none }
        s.recheckArmed = true
        return .recheckLater
    }

    private func apply(_ growth: Growth) {
        switch growth {
        case .none: break
        case .thread(let index):
            startThread(index: index)
            // More may wait behind stuck threads: keep looking while they do.
            let later = state.withLock { s -> Bool in
                guard !s.recheckArmed, !s.stopped, s.busy + s.jobs.count > s.threads, s.threads < maximumCount else {
                    return false
                }
                s.recheckArmed = true
                return true
            }
            if later { apply(.recheckLater) }
        case .recheckLater:
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(250)) { [self] in
                let next = state.withLock { s -> Growth in
                    s.recheckArmed = false
                    return grow(&s)
                }
                apply(next)
            }
        }
    }

    /// A queued job is answered now; a running one is interrupted (under the lock, so the
    /// interrupt can only reach this job's statement, never the thread's next job).
    func cancel(_ id: UInt64) {
        let abandoned = state.withLock { s -> Queued? in
            if let i = s.jobs.firstIndex(where: { $0.id == id }) { return s.jobs.remove(at: i) }
            if let interrupter = s.running[id] {
                s.cancelled.insert(id)
                interrupter.interrupt()
            } else {
                s.cancelledEarly.insert(id)
            }
            return nil
        }
        abandoned?.abandon(Self.cancelledError)
    }

    /// Jobs running now (tests).
    package var runningCount: Int { state.withLock { $0.running.count } }

    /// Lets the threads finish their current job and exit.
    public func stop() {
        state.withLock { $0.stopped = true }
        for _ in 0..<64 { wakeup.signal() }
    }

    func work() {
        var db: Database
        do {
            db = try Database(registry: registry, flags: flags)
        } catch {
            state.withLock { $0.threads -= 1 }
            return
        }
        while true {
            let woken = wakeup.wait(timeout: .now() + Self.idleSeconds) == .success
            let next = state.withLock { s -> Queued?? in
                if s.jobs.isEmpty {
                    if s.stopped || (!woken && s.threads > baseCount) {
                        s.threads -= 1
                        return .some(nil)
                    }
                    return nil
                }
                let queued = s.jobs.removeFirst()
                s.running[queued.id] = db.interrupter
                s.since[queued.id] = ContinuousClock.now
                s.busy += 1
                return .some(queued)
            }
            guard let queued = next else { continue }
            guard let queued else { return }
            db.refreshTables()
            db.setDeadline(seconds: Double(flags[.queryTimeout]))
            queued.job(db)
            db.setDeadline(seconds: 0)
            state.withLock { s in
                s.running[queued.id] = nil
                s.since[queued.id] = nil
                s.cancelled.remove(queued.id)
                s.busy -= 1
            }
            // The next caller gets the connection as the engine made it: nothing a caller
            // created, changed or left open survives (a database that cannot be cleaned is
            // replaced).
            do throws(EngineError) {
                try db.resetCallerState()
            } catch {
                StatusLog.warning("Query thread database replaced: \(error.message)")
                if let fresh = try? Database(registry: registry, flags: flags) { db = fresh }
            }
        }
    }
}
