import CLinuxShims
import Glibc
import Locks
import Serving

/// Threads that run inference jobs, fed from one FIFO queue. Created once by the executable
/// (the thread plan); each thread knows its worker index, which selects its engine session.
public final class ComputePool: ComputeExecutor, @unchecked Sendable {
    public let workerCount: Int
    /// Guards `jobs`, `head` and `stopping`; `condition` wakes idle workers.
    private let lock = Lock()
    private let condition = Condition()
    /// Queued jobs from `head` on; taken slots are cleared at once so a finished job's captures
    /// (request bodies, tensors) are released immediately, not when the array is compacted.
    private var jobs: [(@Sendable (Int) -> Void)?] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []

    public init(workers: Int) {
        workerCount = max(1, workers)
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
        lock.lock()
        jobs.append(job)
        condition.signal()
        lock.unlock()
    }

    public func submit(after seconds: Double, _ job: @escaping @Sendable (Int) -> Void) {
        if seconds <= 0 { submit(job); return }
        timers.schedule(after: seconds) { [self] in submit(job) }
    }

    /// Delayed submissions (batch queue wake-ups), on one timer thread.
    private let timers = TimerThread()

    /// Finishes queued jobs, then stops the threads.
    public func shutdown() {
        lock.lock()
        stopping = true
        condition.broadcast()
        lock.unlock()
        for thread in threads { pthread_join(thread, nil) }
        threads = []
    }

    deinit {
        if !threads.isEmpty { shutdown() }
    }

    private func loop(index: Int) {
        while true {
            lock.lock()
            while head == jobs.count && !stopping { condition.wait(lock) }
            if head == jobs.count && stopping {
                lock.unlock()
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
            lock.unlock()
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
    /// Guards `jobs`; `condition` wakes the thread.
    private let lock = Lock()
    private let condition = Condition()
    private var jobs: [@Sendable () -> Void] = []

    public init(name: String = "control") {
        Threads.start(name: name) { [self] in run() }
    }

    public func async(_ job: @escaping @Sendable () -> Void) {
        lock.lock()
        jobs.append(job)
        condition.signal()
        lock.unlock()
    }

    private func run() {
        while true {
            lock.lock()
            while jobs.isEmpty { condition.wait(lock) }
            let job = jobs.removeFirst()
            lock.unlock()
            job()
        }
    }
}

/// Runs closures at given times on one thread (a binary heap of deadlines and a timed
/// condition wait). Closures must be short: they only hand work to other queues.
final class TimerThread: @unchecked Sendable {
    /// Guards `heap` and `sequence`; `condition` (CLOCK_MONOTONIC deadlines) wakes the thread.
    private let lock = Lock()
    private let condition = Condition(monotonic: true)
    private var heap: [(deadline: timespec, sequence: Int, action: @Sendable () -> Void)] = []
    private var sequence = 0

    init() {
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
        lock.lock()
        sequence += 1
        heap.append((deadline, sequence, action))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.earlier(heap[child].deadline, heap[parent].deadline) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
        condition.signal()
        lock.unlock()
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
        lock.lock()
        while true {
            if heap.isEmpty {
                condition.wait(lock)
                continue
            }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            if Self.earlier(now, heap[0].deadline) {
                condition.wait(lock, until: heap[0].deadline)
                continue
            }
            let action = popFirst()
            lock.unlock()
            action()
            lock.lock()
        }
    }
}

/// Returns memory freed after a burst (large request bodies on many threads) to the kernel.
public func releaseFreeMemory() { cls_release_free_memory() }
