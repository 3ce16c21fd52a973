import Testing
@testable import Workers

@Suite struct CPUBudgetTests {
    @Test func quotaRoundsDownAffinityAndOnlineBound() {
        #expect(CPUBudget.budget(online: 8, affinity: 0, quota: nil) == 8)
        #expect(CPUBudget.budget(online: 8, affinity: 3, quota: nil) == 3)
        #expect(CPUBudget.budget(online: 8, affinity: 0, quota: 2.0) == 2)
        #expect(CPUBudget.budget(online: 8, affinity: 0, quota: 1.5) == 1)  // not 2: no thread beyond the quota
        #expect(CPUBudget.budget(online: 8, affinity: 0, quota: 0.5) == 1)  // at least one
        #expect(CPUBudget.budget(online: 8, affinity: 4, quota: 6.0) == 4)
        #expect(CPUBudget.budget(online: 2, affinity: 0, quota: 16.0) == 2)
    }
}
