import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A publisher's reader: one named thread that polls its source and the read end of a stop
/// pipe, and returns once that end is readable. `stop` wakes it and waits for it to end.
final class ReaderThread: Sendable {
    private let state = Mutex<(stopWriteFD: Int32, running: Bool)>((-1, false))
    private let done = DispatchSemaphore(value: 0)

    var isRunning: Bool { state.withLock { $0.running } }

    /// Starts `loop(stopFD)` on a thread named `name`; `source` (closed if the pipe cannot be
    /// made) and the pipe's read end are closed once `loop` returns.
    func start(name: String, source: Int32, _ loop: @escaping @Sendable (_ stopFD: Int32) -> Void) throws(EventError) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            close(source)
            throw EventError("Could not create a pipe: \(String(cString: strerror(errno)))")
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
        }
        let stopFD = ends[0]
        let thread = Thread { [done] in
            loop(stopFD)
            close(source)
            close(stopFD)
            done.signal()
        }
        thread.name = name
        state.withLock { $0 = (ends[1], true) }
        thread.start()
    }

    /// Wakes the thread and returns after it ended; nothing if it is not running.
    func stop() {
        let (running, stopWriteFD) = state.withLock { s in
            defer { s = (-1, false) }
            return (s.running, s.stopWriteFD)
        }
        guard running else { return }
        var one: UInt8 = 1
        _ = write(stopWriteFD, &one, 1)
        done.wait()
        close(stopWriteFD)
    }
}
