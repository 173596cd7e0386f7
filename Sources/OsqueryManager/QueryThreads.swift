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
/// When every thread is busy (runaway statements, hung extension tables), a new
/// job gets a new thread, up to four times the base count, so a few stuck
/// callers never hold up the rest; threads beyond the base count leave after
/// being idle for a while.
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
        /// The jobs running now, with their database's interrupter.
        var running: [UInt64: Database.Interrupter] = [:]
        /// Running jobs whose caller cancelled (interrupted).
        var cancelled: Set<UInt64> = []
        /// Jobs cancelled before they were queued.
        var cancelledEarly: Set<UInt64> = []
        /// Threads alive, and how many of them run a job now.
        var threads = 0
        var busy = 0
        var started = 0
    }

    let state = Mutex(State())
    let wakeup: DispatchSemaphore
    let registry: PluginRegistry
    let flags: Flags
    let baseCount: Int
    let maximumCount: Int
    /// How long a thread beyond the base count stays without a job.
    static let idleSeconds = 10.0

    /// The error a cancelled caller's job ends with.
    static let cancelledError = EngineError(code: 9, message: "interrupted: the query was cancelled (its caller went away)")

    /// Starts `count` threads, each with a database over `registry`'s tables.
    public init(count: Int = 4, registry: PluginRegistry = .shared, flags: Flags = .shared) {
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
                let (refusal, newThread) = state.withLock { s -> (EngineError?, Int?) in
                    if s.stopped { return (EngineError(code: 1, message: "the core is shutting down"), nil) }
                    if s.cancelledEarly.remove(id) != nil { return (Self.cancelledError, nil) }
                    s.jobs.append(Queued(id: id, job: job, abandon: abandon))
                    // A new thread for this job, unless one is free (or about to be: a thread
                    // being started counts as free).
                    guard s.busy + s.jobs.count > s.threads, s.threads < maximumCount else { return (nil, nil) }
                    s.threads += 1
                    s.started += 1
                    return (nil, s.started - 1)
                }
                if let refusal {
                    abandon(refusal)
                } else {
                    if let newThread { startThread(index: newThread) }
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
                s.busy += 1
                return .some(queued)
            }
            guard let queued = next else { continue }
            guard let queued else { return }
            db.refreshTables()
            db.setDeadline(seconds: Double(flags.uint("query_timeout")))
            queued.job(db)
            db.setDeadline(seconds: 0)
            state.withLock { s in
                s.running[queued.id] = nil
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
