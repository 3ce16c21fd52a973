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
/// A job is closed as soon as the caller's own share returns: a worker that has not joined by
/// then (asleep, or its vCPU taken by another process) skips it, so the caller never waits
/// for a thread that is not running; it waits only for workers that joined and are working.
/// Kernels claim work dynamically (`KernelIO.parallelItems`), so the caller takes the shares
/// of workers that did not come.
///
/// Thread safety: `forEachWorker` may be called from one thread at a time (a session's).
public final class WorkerPool: ParallelRunner, @unchecked Sendable {
    public let width: Int
    /// The current job: generation << `generationShift` | `closedBit` once the caller's share
    /// is done | the number of joined workers still running it (low 16 bits). Workers join by
    /// incrementing the count while the job is open (compare-and-exchange).
    private let state = Atomic<Int>(0)
    private static let closedBit = 1 << 16, runningMask = (1 << 16) - 1, generationShift = 17
    /// Generations posted so far; touched by the calling thread only.
    private nonisolated(unsafe) var posted = 0
    /// Workers asleep on `condition` (or about to be): the caller takes `lock` only when some are.
    private let sleepers = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// The current job; written by the caller before the generation is published (release)
    /// and read by workers after they joined (acquire); cleared after every joined worker left.
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
        stopping.store(true, ordering: .sequentiallyConsistent)
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

    /// Runs `body(0)` here and `body(w)` on each worker w that joins before `body(0)` returns
    /// (possibly none); returns when every call has returned.
    public func forEachWorker(_ body: (Int) -> Void) {
        if width == 1 { body(0); return }
        withoutActuallyEscaping(body) { escapable in
            job = escapable
            posted &+= 1
            // Sequentially consistent with the sleepers count (a worker going to sleep
            // increments it, then reads the state): one side always sees the other.
            state.store(posted << Self.generationShift, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 { wakeAll() }
            escapable(0)
            var current = state.bitwiseOr(Self.closedBit, ordering: .acquiringAndReleasing).newValue
            var spins = 0
            while current & Self.runningMask != 0 {
                spins += 1
                if spins > Self.spinLimit { sched_yield() }
                current = state.load(ordering: .acquiring)
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
            var current = state.load(ordering: .acquiring)
            while current >> Self.generationShift == seen && !stopping.load(ordering: .relaxed) {
                spins += 1
                if spins > Self.spinLimit {
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    lock.lock()
                    while state.load(ordering: .sequentiallyConsistent) >> Self.generationShift == seen
                        && !stopping.load(ordering: .sequentiallyConsistent) {
                        condition.wait(lock)
                    }
                    lock.unlock()
                    sleepers.subtract(1, ordering: .relaxed)
                    spins = 0
                }
                current = state.load(ordering: .acquiring)
            }
            if stopping.load(ordering: .acquiring) { return }
            seen = current >> Self.generationShift
            // Join while the job is open; a closed or newer job is skipped (the loop sees a newer one).
            while current >> Self.generationShift == seen && current & Self.closedBit == 0 {
                let (joined, actual) = state.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
                if joined {
                    job?(index)
                    state.subtract(1, ordering: .releasing)
                    break
                }
                current = actual
            }
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
