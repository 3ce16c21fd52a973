import Glibc

/// A mutual-exclusion lock: a pthread mutex at a heap address that never moves.
///
/// Why not a stored `pthread_mutex_t` passed as `&mutex`: Swift gives `&property` a valid
/// address only for the call, and may pass a temporary copy, so the mutex must live in
/// memory Swift does not manage. Why not `Synchronization.Mutex`: on Linux its contended
/// path runs inside the (uninstrumented) standard library, so ThreadSanitizer sees no
/// acquire/release and reports every access it guards; pthread calls are intercepted.
///
/// Thread safety: every method may be called from any thread. Not recursive: locking it
/// again on the thread that holds it deadlocks.
public final class Lock: @unchecked Sendable {
    /// Shared with `Condition`, which waits on it.
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let result = pthread_mutex_init(mutex, nil)
        precondition(result == 0, "pthread_mutex_init failed: \(result)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    @inlinable
    public func lock() { pthread_mutex_lock(mutex) }

    @inlinable
    public func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` holding the lock.
    @inlinable
    public func withLock<Value, Failure: Error>(_ body: () throws(Failure) -> Value) throws(Failure) -> Value {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A condition variable used with one `Lock` (at a stable heap address, like `Lock`).
/// Every wait must hold that lock; signal and broadcast may hold it or not.
public final class Condition: @unchecked Sendable {
    @usableFromInline let condition: UnsafeMutablePointer<pthread_cond_t>

    /// `monotonic`: `wait(untilMonotonic:)` deadlines are CLOCK_MONOTONIC times (else CLOCK_REALTIME).
    public init(monotonic: Bool = false) {
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        if monotonic { pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC) }
        let result = pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        precondition(result == 0, "pthread_cond_init failed: \(result)")
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deinitialize(count: 1)
        condition.deallocate()
    }

    /// Releases `lock` (held by the caller), sleeps until signalled (or spuriously), takes it again.
    @inlinable
    public func wait(_ lock: Lock) { pthread_cond_wait(condition, lock.mutex) }

    /// As `wait`, but returns by `deadline` at the latest (on the clock chosen in init).
    @inlinable
    public func wait(_ lock: Lock, until deadline: timespec) {
        var deadline = deadline
        pthread_cond_timedwait(condition, lock.mutex, &deadline)
    }

    /// Wakes one waiter.
    @inlinable
    public func signal() { pthread_cond_signal(condition) }

    /// Wakes every waiter.
    @inlinable
    public func broadcast() { pthread_cond_broadcast(condition) }
}
