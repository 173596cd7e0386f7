import Synchronization

/// Runs `body` in its own task; after `deadline` the task is cancelled and a clear error returned
/// at once, even if `body` ignores cancellation: "`what` exceeded its deadline of …", where
/// `what` names the work ("table t: generate", "logger l: shutdown").
func runWithDeadline<T: Sendable>(
    _ deadline: Duration, what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace()
    // The work is its own task (so the deadline can answer while it ignores cancellation), so a
    // cancellation of the caller (the core gave up: its connection closed) is passed on by hand.
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            // Plugin code runs on the global executor, never on the server's connection thread
            // (whose executor the caller prefers): work that blocks its thread must not hold the
            // timer, or the reply that says the deadline passed.
            let work = Task(executorPreference: globalConcurrentExecutor) {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                if race.finish() { continuation.resume(with: result) }
            }
            race.setWork(work)
            let timer = Task(executorPreference: globalConcurrentExecutor) {
                try? await Task.sleep(for: deadline)
                if !Task.isCancelled, race.finish() {
                    work.cancel()
                    continuation.resume(
                        throwing: PluginError("\(what) exceeded its deadline of \(deadline)"))
                }
            }
            race.setTimer(timer)
        }
    } onCancel: {
        race.cancelWork()
    }
}

final class DeadlineRace: Sendable {
    let state = Mutex<(finished: Bool, timer: Task<Void, Never>?)>((false, nil))
    let work = Mutex<(cancelled: Bool, task: Task<Void, Never>?)>((false, nil))

    /// The caller was cancelled: so is the work (now, or as soon as it is known).
    func cancelWork() {
        let task = work.withLock { w -> Task<Void, Never>? in
            w.cancelled = true
            return w.task
        }
        task?.cancel()
    }

    func setWork(_ task: Task<Void, Never>) {
        let cancelled = work.withLock { w -> Bool in
            w.task = task
            return w.cancelled
        }
        if cancelled { task.cancel() }
    }

    /// True for the first caller only; cancels the timer.
    func finish() -> Bool {
        let (first, timer) = state.withLock { s -> (Bool, Task<Void, Never>?) in
            if s.finished { return (false, nil) }
            s.finished = true
            return (true, s.timer)
        }
        timer?.cancel()
        return first
    }

    func setTimer(_ timer: Task<Void, Never>) {
        let cancel = state.withLock { s -> Bool in
            if s.finished { return true }
            s.timer = timer
            return false
        }
        if cancel { timer.cancel() }
    }
}
