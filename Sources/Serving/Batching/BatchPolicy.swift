/// How a model's queue forms batches. Built from config.pbtxt's `dynamic_batching` (Triton),
/// TF Serving's batching parameters file, or the `latency_target_ms` model parameter.
public struct BatchingConfiguration: Sendable, Equatable {
    /// Largest batch, in rows.
    public var maxBatchSize: Int
    /// Longest a request may wait for others to join (0: never wait).
    public var maxQueueDelay: Double = 0
    /// Sizes to run as soon as they can be formed (Triton preferred_batch_size /
    /// TF allowed_batch_sizes), ascending.
    public var preferredSizes: [Int] = []
    /// Requests queued beyond this are refused (queue full); 0: unbounded.
    public var maxQueuedRequests: Int = 0
    /// A request still queued after this long fails with deadline exceeded; 0: no limit.
    public var requestTimeout: Double = 0
    /// Latency-target mode: wait only while the predicted finish of the oldest request stays
    /// within this many seconds of its arrival and a larger batch raises throughput.
    public var latencyTarget: Double?
    /// Batches of this model running at once (one worker each).
    public var maxConcurrentBatches: Int = 1

    public init(maxBatchSize: Int) { self.maxBatchSize = maxBatchSize }

    /// Whether requests are combined at all.
    public var batches: Bool { maxBatchSize > 1 }
}

/// What the queue should do now.
public enum BatchDecision: Equatable, Sendable {
    /// Run the first `requests` queued requests as one batch.
    case run(requests: Int)
    /// Nothing can run better now; look again at `time` (or when something changes).
    case wait(until: Double)
    /// Nothing to do until a request arrives or a batch finishes.
    case idle
}

/// Learned execution cost per batch size (seconds), updated after every batch: an
/// exponentially weighted mean, with sizes never run estimated from the nearest measured ones.
public struct BatchCostModel: Sendable, Equatable {
    public private(set) var seconds: [Int: Double] = [:]
    /// Mean seconds between request arrivals (exponentially weighted).
    public private(set) var arrivalInterval: Double?
    private var lastArrival: Double?
    /// Batches observed so far, and the count when each size was last observed.
    private var batchesObserved = 0
    private var lastObserved: [Int: Int] = [:]
    /// A size not run for this many batches is measured again when it can be formed.
    static let remeasureAfter = 64

    public init() {}

    public mutating func observe(batchSize: Int, seconds measured: Double) {
        seconds[batchSize] = seconds[batchSize].map { 0.8 * $0 + 0.2 * measured } ?? measured
        batchesObserved += 1
        lastObserved[batchSize] = batchesObserved
    }

    /// Whether `size` was never run, or not for `remeasureAfter` batches.
    public func needsMeasurement(_ size: Int) -> Bool {
        guard let last = lastObserved[size] else { return true }
        return batchesObserved - last >= Self.remeasureAfter
    }

    public mutating func observeArrival(at time: Double) {
        if let lastArrival {
            let interval = max(0, time - lastArrival)
            arrivalInterval = arrivalInterval.map { 0.9 * $0 + 0.1 * interval } ?? interval
        }
        lastArrival = time
    }

    /// Predicted seconds to run `size` rows; nil before anything was measured.
    public func cost(_ size: Int) -> Double? {
        if let known = seconds[size] { return known }
        let below = seconds.keys.filter { $0 < size }.max(), above = seconds.keys.filter { $0 > size }.min()
        switch (below, above) {
        case let (low?, high?):
            let fraction = Double(size - low) / Double(high - low)
            return seconds[low]! + fraction * (seconds[high]! - seconds[low]!)
        case let (low?, nil):
            // Beyond what was measured: assume cost grows linearly with rows from there.
            return seconds[low]! * Double(size) / Double(low)
        case let (nil, high?):
            return seconds[high]! * Double(size) / Double(high)
        default:
            return nil
        }
    }
}

/// The batching decision as a pure function of the queue, the clock and the configuration
/// (tested with a manual clock; `BatchScheduler` carries it out).
public enum BatchPolicy {
    /// One queued request as the policy sees it.
    public struct Queued: Sendable, Equatable {
        public var rows: Int
        public var arrival: Double
        public init(rows: Int, arrival: Double) {
            self.rows = rows
            self.arrival = arrival
        }
    }

    /// - Parameters:
    ///   - queue: queued requests, oldest first.
    ///   - running: batches of this model executing now.
    public static func decide(queue: [Queued], now: Double, running: Int, configuration: BatchingConfiguration,
                              cost: BatchCostModel) -> BatchDecision {
        guard !queue.isEmpty, running < configuration.maxConcurrentBatches else { return .idle }
        // The largest prefix of the queue that fits in one batch (a request larger than the
        // maximum runs alone; the model splits it into slices).
        var count = 0, rows = 0
        for request in queue {
            if count > 0 && rows + request.rows > configuration.maxBatchSize { break }
            count += 1
            rows += request.rows
        }
        guard configuration.batches else { return .run(requests: 1) }
        if configuration.latencyTarget != nil, count > 1 {
            // More is queued than one batch needs to reach its best throughput: run only that
            // part now (the rest goes to the next free worker) and keep batches, and so tail
            // latency, no larger than throughput warrants.
            let efficient = efficientPrefix(of: queue, count: count, cost: cost)
            if efficient < count { return .run(requests: efficient) }
        }
        let full = count < queue.count || rows >= configuration.maxBatchSize
        if full { return .run(requests: count) }
        if let preferred = configuration.preferredSizes.last(where: { $0 <= rows }), preferred == rows {
            // A preferred size is formed and no larger preferred size is within reach of what is queued.
            return .run(requests: count)
        }
        // An idle model runs at once: no other request is being served, so none can be
        // waiting to join; batches form from what queues up while others execute.
        if running == 0 { return .run(requests: count) }
        let oldest = queue[0].arrival
        if let target = configuration.latencyTarget {
            guard let now1 = cost.cost(rows), let next = cost.cost(rows + 1), let interval = cost.arrivalInterval else {
                return .run(requests: count)
            }
            // Waiting pays only if one more row raises throughput and the oldest request still
            // finishes within the target after waiting for it.
            let throughputGain = Double(rows + 1) / next > Double(rows) / now1
            let latestStart = oldest + target - next
            if throughputGain && now + interval <= latestStart {
                let waitUntil = min(latestStart, now + interval)
                return .wait(until: configuration.maxQueueDelay > 0 ? min(waitUntil, oldest + configuration.maxQueueDelay) : waitUntil)
            }
            return .run(requests: count)
        }
        if configuration.maxQueueDelay > 0 && now < oldest + configuration.maxQueueDelay {
            return .wait(until: oldest + configuration.maxQueueDelay)
        }
        return .run(requests: count)
    }

    /// Per-row cost within this fraction of the best counts as the best throughput.
    static let throughputTolerance = 0.05

    /// The fewest of the first `count` queued requests whose batch runs at (within
    /// `throughputTolerance` of) the best per-row cost predicted for any prefix of them
    /// (prefixes smaller than every measured size are not candidates).
    /// All `count` when that size needs measuring (never run, or not recently), so the
    /// cost model learns what large batches gain.
    static func efficientPrefix(of queue: [Queued], count: Int, cost: BatchCostModel) -> Int {
        var prefixRows: [Int] = []
        var rows = 0
        for request in queue.prefix(count) {
            rows += request.rows
            prefixRows.append(rows)
        }
        guard !cost.needsMeasurement(rows), let smallestMeasured = cost.seconds.keys.min() else { return count }
        // Sizes below the smallest measured one are not predicted (nothing says how they scale).
        var perRow: [(requests: Int, seconds: Double)] = []
        for (index, size) in prefixRows.enumerated() where size >= smallestMeasured {
            guard let seconds = cost.cost(size) else { return count }
            perRow.append((index + 1, seconds / Double(size)))
        }
        guard let best = perRow.map(\.seconds).min() else { return count }
        return perRow.first { $0.seconds <= best * (1 + throughputTolerance) }!.requests
    }
}
