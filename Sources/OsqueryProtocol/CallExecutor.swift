import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs a call's task on its connection's thread while that thread waits for the call, so a call
/// that never leaves its task costs no thread switch (libthrift answers on the connection's
/// thread too); a call that hops elsewhere (a query thread, an actor) comes back to it.
///
/// Jobs are kept only while the connection's thread waits in ``ServerConnection/runInTask`` and so
/// will run them at once; a job enqueued at any other time (the thread is running a job that
/// blocks, e.g. on a semaphore its own child task signals; the call is over; the connection has
/// gone) goes to the global executor. So nothing queued here can wait on this thread: no deadlock.
final class CallExecutor: TaskExecutor, @unchecked Sendable {
    struct State {
        var jobs: [UnownedJob] = []
        /// The connection's thread waits in the call loop, not running a job.
        var waiting = false
    }

    let state = Mutex(State())
    /// An empty buffer for the next drain; only the owner thread touches it.
    private var spare: [UnownedJob] = []
    /// The connection's eventfd: written when a job is queued from another thread.
    let wake: Int32
    let owner: pthread_t

    init(wake: Int32) {
        self.wake = wake
        owner = pthread_self()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let kept = state.withLock { state -> Bool in
            guard state.waiting else { return false }
            state.jobs.append(job)
            return true
        }
        guard kept else {
            globalConcurrentExecutor.enqueue(ExecutorJob(job))
            return
        }
        wakeOwner()
    }

    /// Wakes the connection's thread from its poll, unless this is that thread: it drains its
    /// queue and checks for the reply before it polls again.
    func wakeOwner() {
        if pthread_equal(pthread_self(), owner) == 0 {
            var one: UInt64 = 1
            _ = Glibc.write(wake, &one, 8)
        }
    }

    /// The connection's thread starts waiting for a call: jobs are kept for it from now on.
    func startWaiting() {
        state.withLock { $0.waiting = true }
    }

    /// Runs the jobs queued so far on the calling (owner) thread; false when there were none.
    /// While a job runs, jobs enqueued meanwhile go to the global executor.
    func runQueued() -> Bool {
        var ran = false
        while true {
            // The queue and `batch` swap buffers, so draining allocates nothing.
            var batch = spare
            spare = []
            let any = state.withLock { state -> Bool in
                guard !state.jobs.isEmpty else { return false }
                state.waiting = false
                swap(&batch, &state.jobs)
                return true
            }
            if !any {
                spare = batch
                return ran
            }
            ran = true
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
            spare = batch
            state.withLock { $0.waiting = true }
        }
    }

    /// The thread stops waiting (the call is answered, or abandoned): what is queued and what
    /// comes later go to the global executor.
    func stopWaiting() {
        let left = state.withLock { state -> [UnownedJob] in
            state.waiting = false
            defer { state.jobs.removeAll() }
            return state.jobs
        }
        for job in left { globalConcurrentExecutor.enqueue(ExecutorJob(job)) }
    }
}
