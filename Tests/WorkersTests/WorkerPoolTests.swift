import Glibc
import Synchronization
import Testing
@testable import Workers

@Suite struct WorkerPoolTests {
    /// Jobs whose items are claimed dynamically (as the engine's kernels claim them): every item
    /// runs exactly once per job whichever workers join, no call of a job's body happens after
    /// `forEachWorker` returned, and worker indices stay below the width. Jobs follow each other
    /// closely (workers spinning) and after pauses longer than the spin limit (workers asleep,
    /// woken late: they must skip a job that is already closed).
    @Test func everyItemRunsOnceAndNoCallOutlivesItsJob() {
        let pool = WorkerPool(width: 3)
        let current = Atomic<Int>(0), strays = Atomic<Int>(0)
        let items = 64
        for round in 1...3000 {
            current.store(round, ordering: .sequentiallyConsistent)
            let next = Atomic<Int>(0), count = Atomic<Int>(0), sum = Atomic<Int>(0)
            pool.forEachWorker { worker in
                if worker < 0 || worker >= 3 { strays.add(1, ordering: .relaxed) }
                while true {
                    if current.load(ordering: .sequentiallyConsistent) != round { strays.add(1, ordering: .relaxed) }
                    let item = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard item < items else { return }
                    count.add(1, ordering: .relaxed)
                    sum.add(item, ordering: .relaxed)
                }
            }
            current.store(0, ordering: .sequentiallyConsistent)
            if count.load(ordering: .relaxed) != items || sum.load(ordering: .relaxed) != items * (items - 1) / 2 {
                Issue.record("round \(round): \(count.load(ordering: .relaxed)) items, sum \(sum.load(ordering: .relaxed))")
                return
            }
            if round % 300 == 0 { usleep(2000) }
        }
        #expect(strays.load(ordering: .relaxed) == 0)
    }
}
