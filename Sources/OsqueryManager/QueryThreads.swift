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
public final class QueryThreads: Sendable {
    typealias Job = @Sendable (Database) -> Void

    struct State {
        var jobs: [Job] = []
        var stopped = false
    }

    let state = Mutex(State())
    let wakeup: DispatchSemaphore
    let registry: PluginRegistry
    let flags: Flags

    /// Starts `count` threads, each with a database over `registry`'s tables.
    public init(count: Int = 4, registry: PluginRegistry = .shared, flags: Flags = .shared) {
        self.registry = registry
        self.flags = flags
        self.wakeup = DispatchSemaphore(value: 0)
        for i in 0..<max(1, count) {
            let thread = Thread { [self] in self.work() }
            thread.name = "osquery-sql-\(i)"
            thread.start()
        }
    }

    /// Runs `body` with a database on one of the query threads.
    public func run<T: Sendable>(_ body: @escaping @Sendable (Database) throws(EngineError) -> T) async throws(EngineError)
        -> T
    {
        let result: Result<T, EngineError> = await withCheckedContinuation { continuation in
            let job: Job = { db in
                do throws(EngineError) {
                    continuation.resume(returning: .success(try body(db)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            let accepted = state.withLock { s -> Bool in
                guard !s.stopped else { return false }
                s.jobs.append(job)
                return true
            }
            if accepted {
                wakeup.signal()
            } else {
                continuation.resume(returning: .failure(EngineError(code: 1, message: "the core is shutting down")))
            }
        }
        return try result.get()
    }

    /// Lets the threads finish their current job and exit.
    public func stop() {
        let count = state.withLock { s -> Int in
            s.stopped = true
            return 64
        }
        for _ in 0..<count { wakeup.signal() }
    }

    func work() {
        let db: Database
        do {
            db = try Database(registry: registry, flags: flags)
        } catch {
            return
        }
        while true {
            wakeup.wait()
            let next = state.withLock { s -> Job?? in
                if s.jobs.isEmpty { return s.stopped ? .some(nil) : nil }
                return .some(s.jobs.removeFirst())
            }
            guard let job = next else { continue }
            guard let job else { return }
            db.refreshTables()
            job(db)
        }
    }
}
