import Testing
@testable import Serving

/// BatchPolicy with a manual clock: times are plain seconds chosen by each test.
struct BatchPolicyTests {
    func configuration(max: Int = 8, delay: Double = 0, preferred: [Int] = [], concurrent: Int = 2) -> BatchingConfiguration {
        var configuration = BatchingConfiguration(maxBatchSize: max)
        configuration.maxQueueDelay = delay
        configuration.preferredSizes = preferred
        configuration.maxConcurrentBatches = concurrent
        return configuration
    }

    func queue(_ rows: [Int], arrivals: [Double]? = nil) -> [BatchPolicy.Queued] {
        rows.enumerated().map { BatchPolicy.Queued(rows: $1, arrival: arrivals?[$0] ?? 0) }
    }

    @Test func emptyQueueIsIdle() {
        #expect(BatchPolicy.decide(queue: [], now: 5, running: 0, configuration: configuration(delay: 0.01), cost: .init()) == .idle)
    }

    @Test func idleModelRunsALoneRequestAtOnceEvenWithADelay() {
        let decision = BatchPolicy.decide(queue: queue([1]), now: 0, running: 0, configuration: configuration(delay: 0.5), cost: .init())
        #expect(decision == .run(requests: 1))
    }

    @Test func allWorkersBusyMeansIdle() {
        let decision = BatchPolicy.decide(queue: queue([1, 1]), now: 0, running: 2, configuration: configuration(delay: 0.5), cost: .init())
        #expect(decision == .idle)
    }

    @Test func waitsForTheDelayWhileAnotherBatchRuns() {
        let config = configuration(delay: 0.010)
        #expect(BatchPolicy.decide(queue: queue([1, 1], arrivals: [1.000, 1.004]), now: 1.005, running: 1, configuration: config, cost: .init())
                == .wait(until: 1.010))
        // Once the oldest request has waited the delay, the batch runs.
        #expect(BatchPolicy.decide(queue: queue([1, 1], arrivals: [1.000, 1.004]), now: 1.010, running: 1, configuration: config, cost: .init())
                == .run(requests: 2))
    }

    @Test func fullBatchRunsWithoutWaiting() {
        let config = configuration(max: 4, delay: 1)
        #expect(BatchPolicy.decide(queue: queue([2, 2]), now: 0, running: 1, configuration: config, cost: .init()) == .run(requests: 2))
        // The next request would not fit: run what fits now.
        #expect(BatchPolicy.decide(queue: queue([3, 2]), now: 0, running: 1, configuration: config, cost: .init()) == .run(requests: 1))
    }

    @Test func requestLargerThanTheMaximumRunsAlone() {
        #expect(BatchPolicy.decide(queue: queue([20, 1]), now: 0, running: 1, configuration: configuration(max: 8, delay: 1), cost: .init())
                == .run(requests: 1))
    }

    @Test func preferredSizeRunsAtOnce() {
        let config = configuration(max: 8, delay: 1, preferred: [4, 8])
        #expect(BatchPolicy.decide(queue: queue([2, 2]), now: 0, running: 1, configuration: config, cost: .init()) == .run(requests: 2))
        #expect(BatchPolicy.decide(queue: queue([2, 1]), now: 0, running: 1, configuration: config, cost: .init()) == .wait(until: 1))
    }

    @Test func batchingOffRunsOneRequestAtATime() {
        let config = configuration(max: 1)
        #expect(BatchPolicy.decide(queue: queue([1, 1, 1]), now: 0, running: 1, configuration: config, cost: .init()) == .run(requests: 1))
    }

    @Test func latencyTargetWaitsOnlyWhileItPays() {
        var config = configuration(max: 8)
        config.latencyTarget = 0.100
        var cost = BatchCostModel()
        // Batches amortise: 4 rows cost 40 ms, 5 rows 44 ms; a request arrives every 5 ms.
        cost.observe(batchSize: 4, seconds: 0.040)
        cost.observe(batchSize: 5, seconds: 0.044)
        for step in 0..<20 { cost.observeArrival(at: Double(step) * 0.005) }
        let waiting = BatchPolicy.decide(queue: queue([1, 1, 1, 1], arrivals: [0, 0.001, 0.002, 0.003]), now: 0.004, running: 1,
                                         configuration: config, cost: cost)
        guard case .wait(let until) = waiting else { Issue.record("expected a wait, got \(waiting)"); return }
        #expect(until > 0.004 && until <= 0.100 - 0.044 + 1e-9)
        // Too close to the target for another arrival: run now.
        #expect(BatchPolicy.decide(queue: queue([1, 1, 1, 1], arrivals: [0, 0.001, 0.002, 0.003]), now: 0.054, running: 1,
                                   configuration: config, cost: cost) == .run(requests: 4))
        // No throughput gain from a fifth row: run now.
        var flat = BatchCostModel()
        flat.observe(batchSize: 4, seconds: 0.040)
        flat.observe(batchSize: 5, seconds: 0.060)
        for step in 0..<20 { flat.observeArrival(at: Double(step) * 0.005) }
        #expect(BatchPolicy.decide(queue: queue([1, 1, 1, 1], arrivals: [0, 0.001, 0.002, 0.003]), now: 0.004, running: 1,
                                   configuration: config, cost: flat) == .run(requests: 4))
    }

    @Test func latencyTargetBatchesOnlyAsManyAsRaiseThroughput() {
        var config = configuration(max: 8)
        config.latencyTarget = 0.500
        let queued = queue([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], arrivals: Array(repeating: 0, count: 10))
        // Cost grows linearly with rows: a batch gains nothing, so one request runs and the
        // rest go to the next free worker.
        var linear = BatchCostModel()
        linear.observe(batchSize: 1, seconds: 0.035)
        linear.observe(batchSize: 8, seconds: 0.280)
        #expect(BatchPolicy.decide(queue: queued, now: 0.1, running: 1, configuration: config, cost: linear) == .run(requests: 1))
        #expect(BatchPolicy.decide(queue: queued, now: 0.1, running: 0, configuration: config, cost: linear) == .run(requests: 1))
        // Per-row cost falls up to 4 rows and is flat beyond: four run.
        var saturating = BatchCostModel()
        saturating.observe(batchSize: 1, seconds: 0.040)
        saturating.observe(batchSize: 4, seconds: 0.080)
        saturating.observe(batchSize: 8, seconds: 0.160)
        #expect(BatchPolicy.decide(queue: queued, now: 0.1, running: 1, configuration: config, cost: saturating) == .run(requests: 4))
        // A size never run is measured: the whole batch runs.
        var unmeasured = BatchCostModel()
        unmeasured.observe(batchSize: 1, seconds: 0.035)
        #expect(BatchPolicy.decide(queue: queued, now: 0.1, running: 1, configuration: config, cost: unmeasured) == .run(requests: 8))
        // ...and measured again once it has not run for a while.
        var stale = linear
        for _ in 0..<BatchCostModel.remeasureAfter { stale.observe(batchSize: 1, seconds: 0.035) }
        #expect(BatchPolicy.decide(queue: queued, now: 0.1, running: 1, configuration: config, cost: stale) == .run(requests: 8))
        // Without a latency target the whole batch runs as before.
        config.latencyTarget = nil
        #expect(BatchPolicy.decide(queue: queued, now: 0.1, running: 1, configuration: config, cost: linear) == .run(requests: 8))
    }

    @Test func costModelInterpolatesAndExtrapolates() {
        var cost = BatchCostModel()
        #expect(cost.cost(3) == nil)
        cost.observe(batchSize: 2, seconds: 0.02)
        cost.observe(batchSize: 6, seconds: 0.06)
        #expect(abs(cost.cost(4)! - 0.04) < 1e-12)
        #expect(abs(cost.cost(12)! - 0.12) < 1e-12)
        #expect(abs(cost.cost(1)! - 0.01) < 1e-12)
    }
}
