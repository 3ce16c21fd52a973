import CLinuxShims
import Glibc
import Serving

/// Threads that run inference jobs, fed from one FIFO queue. Created once by the executable
/// (the thread plan); each thread knows its worker index, which selects its engine session.
public final class ComputePool: ComputeExecutor, @unchecked Sendable {
    public let workerCount: Int
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    /// Queued jobs from `head` on; taken slots are cleared at once so a finished job's captures
    /// (request bodies, tensors) are released immediately, not when the array is compacted.
    private var jobs: [(@Sendable (Int) -> Void)?] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []

    public init(workers: Int) {
        workerCount = max(1, workers)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        for index in 0..<workerCount {
            let context = Unmanaged.passRetained(Context(pool: self, index: index))
            var thread = pthread_t()
            let result = pthread_create(&thread, nil, { raw in
                let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
                context.pool.loop(index: context.index)
                return nil
            }, context.toOpaque())
            precondition(result == 0, "pthread_create failed: \(result)")
            threads.append(thread)
        }
    }

    private final class Context {
        unowned let pool: ComputePool
        let index: Int
        init(pool: ComputePool, index: Int) {
            self.pool = pool
            self.index = index
        }
    }

    public func submit(_ job: @escaping @Sendable (Int) -> Void) {
        pthread_mutex_lock(&mutex)
        jobs.append(job)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    public func submit(after seconds: Double, _ job: @escaping @Sendable (Int) -> Void) {
        if seconds <= 0 { submit(job); return }
        timers.schedule(after: seconds) { [self] in submit(job) }
    }

    /// Delayed submissions (batch queue wake-ups), on one timer thread.
    private let timers = TimerThread()

    /// Finishes queued jobs, then stops the threads.
    public func shutdown() {
        pthread_mutex_lock(&mutex)
        stopping = true
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
        for thread in threads { pthread_join(thread, nil) }
        threads = []
    }

    deinit {
        if !threads.isEmpty { shutdown() }
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    private func loop(index: Int) {
        while true {
            pthread_mutex_lock(&mutex)
            while head == jobs.count && !stopping { pthread_cond_wait(&condition, &mutex) }
            if head == jobs.count && stopping {
                pthread_mutex_unlock(&mutex)
                return
            }
            let job = jobs[head]!
            jobs[head] = nil
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            pthread_mutex_unlock(&mutex)
            job(index)
        }
    }
}

/// The only way the executables start a plain thread (event loops, the control thread).
public enum Threads {
    /// Starts a detached thread named `name` (visible in `top -H`) running `body`.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        final class Box {
            let body: @Sendable () -> Void
            let name: String
            init(_ body: @escaping @Sendable () -> Void, _ name: String) {
                self.body = body
                self.name = name
            }
        }
        let box = Unmanaged.passRetained(Box(body, name))
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            cls_set_thread_name(box.name)
            box.body()
            return nil
        }, box.toOpaque())
        precondition(result == 0, "pthread_create failed: \(result)")
        pthread_detach(thread)
    }
}

/// A serial queue on one thread for control-plane work (model loading, repository polling),
/// so it never runs on an event loop or a compute worker.
public final class ControlQueue: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var jobs: [@Sendable () -> Void] = []

    public init(name: String = "control") {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        Threads.start(name: name) { [self] in run() }
    }

    public func async(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(&mutex)
        jobs.append(job)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    private func run() {
        while true {
            pthread_mutex_lock(&mutex)
            while jobs.isEmpty { pthread_cond_wait(&condition, &mutex) }
            let job = jobs.removeFirst()
            pthread_mutex_unlock(&mutex)
            job()
        }
    }
}

/// Runs closures at given times on one thread (a binary heap of deadlines and a timed
/// condition wait). Closures must be short: they only hand work to other queues.
final class TimerThread: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var heap: [(deadline: timespec, sequence: Int, action: @Sendable () -> Void)] = []
    private var sequence = 0

    init() {
        pthread_mutex_init(&mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(&condition, &attributes)
        pthread_condattr_destroy(&attributes)
        Threads.start(name: "timers") { [self] in run() }
    }

    private static func earlier(_ a: timespec, _ b: timespec) -> Bool {
        a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec)
    }

    func schedule(after seconds: Double, _ action: @escaping @Sendable () -> Void) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let total = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
        var deadline = timespec()
        deadline.tv_sec = Int(total)
        deadline.tv_nsec = Int((total - Double(Int(total))) * 1e9)
        pthread_mutex_lock(&mutex)
        sequence += 1
        heap.append((deadline, sequence, action))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.earlier(heap[child].deadline, heap[parent].deadline) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    private func popFirst() -> @Sendable () -> Void {
        let first = heap[0].action
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && Self.earlier(heap[left].deadline, heap[smallest].deadline) { smallest = left }
            if right < heap.count && Self.earlier(heap[right].deadline, heap[smallest].deadline) { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }

    private func run() {
        pthread_mutex_lock(&mutex)
        while true {
            if heap.isEmpty {
                pthread_cond_wait(&condition, &mutex)
                continue
            }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            if Self.earlier(now, heap[0].deadline) {
                var deadline = heap[0].deadline
                pthread_cond_timedwait(&condition, &mutex, &deadline)
                continue
            }
            let action = popFirst()
            pthread_mutex_unlock(&mutex)
            action()
            pthread_mutex_lock(&mutex)
        }
    }
}

/// Returns memory freed after a burst (large request bodies on many threads) to the kernel.
public func releaseFreeMemory() { cls_release_free_memory() }
