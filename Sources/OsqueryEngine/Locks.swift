#if canImport(Glibc)
import Glibc
#endif

// Synchronization's `Mutex` takes a priority-inheritance futex on Linux: under contention each
// unlock hands the lock to a sleeping waiter, so with dozens of threads on one core every
// acquisition costs a context switch (64 connection threads queued on one such lock halved
// osqueryd's calls/s). Hot locks that many threads share use these instead.

/// A value many threads read and few write, behind a reader-writer lock.
package final class ReadMostly<Value>: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    package func read<R>(_ body: (borrowing Value) -> R) -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return body(value)
    }

    package func withLock<R>(_ body: (inout Value) -> R) -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return body(&value)
    }
}

/// A value behind a plain pthread mutex: a thread that finds it free takes it, even when others
/// sleep on it, so short critical sections under contention do not convoy.
package final class PlainMutex<Value>: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        lock.initialize(to: pthread_mutex_t())
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body(&value)
    }
}
