import Testing
@testable import Transport

@Suite struct MemoryBudgetTests {
    @Test func reservesUpToTheLimitAndNoFurther() {
        let budget = MemoryBudget(limit: 100)
        #expect(budget.reserve(60))
        #expect(!budget.reserve(41))
        #expect(budget.heldBytes == 60)  // a refused reservation takes nothing
        #expect(budget.reserve(40))
        #expect(!budget.reserve(1))
        budget.release(50)
        #expect(budget.reserve(50))
        #expect(budget.heldBytes == 100)
    }

    @Test func forcedReservationsHoldBackNewOnes() {
        let budget = MemoryBudget(limit: 100)
        budget.forceReserve(150)  // an answer that exists already
        #expect(!budget.reserve(1))
        budget.release(150)
        #expect(budget.reserve(100))
    }

    @Test func zeroLimitCountsWithoutRefusing() {
        let budget = MemoryBudget(limit: 0)
        #expect(budget.reserve(1 << 40))
        #expect(budget.heldBytes == 1 << 40)
        #expect(budget.reserve(0))
    }

    @Test func concurrentReservationsNeverPassTheLimit() async {
        let budget = MemoryBudget(limit: 1000)
        let granted = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var taken = 0
                    for _ in 0..<1000 where budget.reserve(7) { taken += 7 }
                    return taken
                }
            }
            return await group.reduce(0, +)
        }
        #expect(granted <= 1000)
        #expect(granted == budget.heldBytes)
    }
}
