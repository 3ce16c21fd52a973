import CLinuxShims
import Engine
import Glibc
import Locks
import Synchronization

/// A fixed set of threads that run one parallel job at a time for an engine session:
/// the calling thread is worker 0 and `width - 1` threads are created here, once.
/// Workers spin briefly between jobs (kernels follow each other within microseconds) and
/// then sleep on a condition variable, so an idle pool costs no CPU.
///
/// Thread safety: `forEachWorker` may be called from one thread at a time (a session's).
public final class WorkerPool: ParallelRunner, @unchecked Sendable {
    public let width: Int
    /// Bumped once per job; workers run the job when they see a new value.
    private let generation = Atomic<Int>(0)
    /// Workers (other than the caller) still running the current job.
    private let remaining = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// The current job; written by the caller before `generation` is bumped (release) and
    /// read by workers after they observe the bump (acquire).
    private nonisolated(unsafe) var job: ((Int) -> Void)?
    /// Sleeping workers wait on `condition` under `lock`.
    private let lock = Lock()
    private let condition = Condition()
    private var threads: [pthread_t] = []

    /// Spin iterations before a worker sleeps (roughly 50 µs).
    private static let spinLimit = 20_000

    public init(width: Int) {
        self.width = max(1, width)
        for index in 1..<self.width {
            let context = Unmanaged.passRetained(WorkerContext(pool: self, index: index))
            var thread = pthread_t()
            let result = pthread_create(&thread, nil, { raw in
                let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                context.pool.workerLoop(index: context.index)
                return nil
            }, context.toOpaque())
            precondition(result == 0, "pthread_create failed: \(result)")
            threads.append(thread)
        }
    }

    deinit {
        stopping.store(true, ordering: .releasing)
        wakeAll()
        for thread in threads { pthread_join(thread, nil) }
    }

    private final class WorkerContext {
        // Unowned: the pool joins its threads in deinit, so it outlives them.
        unowned let pool: WorkerPool
        let index: Int
        init(pool: WorkerPool, index: Int) {
            self.pool = pool
            self.index = index
        }
    }

    public func forEachWorker(_ body: (Int) -> Void) {
        if width == 1 { body(0); return }
        withoutActuallyEscaping(body) { escapable in
            job = escapable
            remaining.store(width - 1, ordering: .relaxed)
            generation.add(1, ordering: .releasing)
            wakeAll()
            escapable(0)
            var spins = 0
            while remaining.load(ordering: .acquiring) > 0 {
                spins += 1
                if spins > Self.spinLimit { sched_yield() }
            }
            job = nil
        }
    }

    private func wakeAll() {
        lock.lock()
        condition.broadcast()
        lock.unlock()
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen && !stopping.load(ordering: .acquiring) {
                spins += 1
                if spins > Self.spinLimit {
                    lock.lock()
                    while generation.load(ordering: .acquiring) == seen && !stopping.load(ordering: .acquiring) {
                        condition.wait(lock)
                    }
                    lock.unlock()
                }
            }
            if stopping.load(ordering: .acquiring) { return }
            seen = generation.load(ordering: .acquiring)
            job?(index)
            remaining.subtract(1, ordering: .releasing)
        }
    }
}

/// CPUs this process may use: the affinity mask, lowered by a cgroup CPU quota
/// (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) when one is set.
public enum CPUBudget {
    public static func available() -> Int {
        budget(online: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), affinity: Int(cls_affinity_cpu_count()), quota: cgroupQuota())
    }

    /// Threads for `online` CPUs, an affinity mask of `affinity` CPUs (0: unknown) and a cgroup
    /// quota of `quota` CPUs: the quota rounds down (1.5 CPUs -> 1), since a thread more than
    /// the quota pays for itself in CFS throttling at the tail; at least 1.
    static func budget(online: Int, affinity: Int, quota: Double?) -> Int {
        var count = online
        if affinity > 0 { count = min(count, affinity) }
        if let quota { count = min(count, Int(quota.rounded(.down))) }
        return max(1, count)
    }

    /// CPUs' worth of quota, or nil when unlimited or unknown.
    static func cgroupQuota() -> Double? {
        if let text = read("/sys/fs/cgroup/cpu.max") {
            let parts = text.split(separator: " ")
            if parts.count == 2, let quota = Double(parts[0]), let period = Double(parts[1]), period > 0 { return quota / period }
            return nil
        }
        if let quotaText = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), let periodText = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
           let quota = Double(quotaText), let period = Double(periodText), quota > 0, period > 0 {
            return quota / period
        }
        return nil
    }

    private static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

private extension String {
    func trimmingCharacters(in set: Set<Character>) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

private extension Set where Element == Character {
    static let whitespacesAndNewlines: Set<Character> = [" ", "\n", "\t", "\r"]
}
