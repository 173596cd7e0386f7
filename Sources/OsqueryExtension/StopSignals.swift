import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The write end of the pipe the SIGTERM/SIGINT handler writes to; set before the
/// handler is installed and never changed after, so the handler only reads it.
nonisolated(unsafe) private var stopSignalPipe: Int32 = -1

/// Takes SIGTERM and SIGINT for the whole process and hands them to listeners.
///
/// A sigaction handler that writes the signal number to a pipe, not a dispatch signal
/// source: libdispatch installs its own handler only when the source's registration
/// reaches its manager thread, and a signal arriving before that (or left pending by
/// a parent that started us with it blocked, which `signal(_, SIG_IGN)` discards) was
/// lost, leaving the extension running after a SIGTERM.
enum StopSignals {
    private struct State {
        var readSource: (any DispatchSourceRead)?
        var previous: [Int32: sigaction] = [:]
        var listeners: [ObjectIdentifier: @Sendable (Int32) -> Void] = [:]
    }
    private static let state = Mutex(State())
    private static let signals: [Int32] = [SIGTERM, SIGINT]

    /// Calls `handler` on a dispatch queue for every SIGTERM/SIGINT until `remove(owner)`.
    /// Installs the process's handlers with the first listener and unblocks the signals on
    /// the calling thread, so one sent before (and held blocked) is delivered now.
    static func add(_ owner: AnyObject, handler: @escaping @Sendable (Int32) -> Void) {
        state.withLock { s in
            s.listeners[ObjectIdentifier(owner)] = handler
            if s.readSource == nil {
                var fds: [Int32] = [-1, -1]
                guard pipe(&fds) == 0 else { return }
                for fd in fds {
                    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                }
                stopSignalPipe = fds[1]
                let source = DispatchSource.makeReadSource(fileDescriptor: fds[0], queue: .global())
                source.setEventHandler { drain(fds[0]) }
                source.resume()
                s.readSource = source
            }
            guard s.previous.isEmpty else { return }
            for sig in signals {
                var action = sigaction()
                action.__sigaction_handler.sa_handler = { sig in
                    let saved = errno
                    var byte = UInt8(truncatingIfNeeded: sig)
                    _ = write(stopSignalPipe, &byte, 1)
                    errno = saved
                }
                sigemptyset(&action.sa_mask)
                action.sa_flags = SA_RESTART
                var old = sigaction()
                sigaction(sig, &action, &old)
                s.previous[sig] = old
            }
        }
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in signals { sigaddset(&unblock, sig) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    }

    /// Stops calling `owner`'s handler; the last listener out restores the actions that
    /// were there before, so a later SIGTERM does what it did before the extension ran.
    static func remove(_ owner: AnyObject) {
        state.withLock { s in
            guard s.listeners.removeValue(forKey: ObjectIdentifier(owner)) != nil, s.listeners.isEmpty else { return }
            for (sig, old) in s.previous {
                var action = old
                sigaction(sig, &action, nil)
            }
            s.previous = [:]
        }
    }

    private static func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { return }
            let handlers = state.withLock { Array($0.listeners.values) }
            for sig in buffer[0..<n] {
                for handler in handlers { handler(Int32(sig)) }
            }
        }
    }
}
