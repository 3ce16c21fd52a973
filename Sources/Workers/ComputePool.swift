import CLinuxShims
import Glibc
import Serving

/// Threads that run inference jobs, fed from one FIFO queue. Created once by the executable
/// (the thread plan); each thread knows its worker index, which selects its engine session.
public final class ComputePool: ComputeExecutor, @unchecked Sendable {
    public let workerCount: Int
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var jobs: [(@Sendable (Int) -> Void)] = []
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
            let job = jobs[head]
            head += 1
            if head > 1024 && head * 2 > jobs.count {
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
