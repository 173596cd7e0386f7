import NIOCore

/// Runs a task's jobs on a NIO event loop, so a connection's read, dispatch and
/// write happen on the thread that owns the socket, with no hop to the
/// cooperative pool and back. Only for code that never blocks: handlers other
/// than `ping` are moved back to the global executor (see `MessageProcessor`).
final class EventLoopTaskExecutor: TaskExecutor, Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
