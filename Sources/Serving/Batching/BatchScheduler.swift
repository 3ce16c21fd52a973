import Glibc
import Locks

/// The queue of one model version: requests from every protocol join it, `BatchPolicy`
/// decides when and how many run together, and each batch runs on one compute worker; the
/// outputs are split back to the requests in order.
///
/// Thread safety: every method may be called from any thread (one lock guards the queue).
public final class BatchScheduler: @unchecked Sendable {
    public typealias Completion = @Sendable (Result<InferResponse, ServingError>, _ queueSeconds: Double, _ computeSeconds: Double) -> Void

    private struct Entry {
        let prepared: LoadedVersion.PreparedRequest
        let arrival: Double
        let deadline: Double?
        let isCancelled: (@Sendable () -> Bool)?
        let completion: Completion
    }

    public let version: LoadedVersion
    public let configuration: BatchingConfiguration
    private let executor: any ComputeExecutor
    private let metrics: Metrics?
    private let lock = Lock()
    private var queue: [Entry] = []
    private var running = 0
    private var cost = BatchCostModel()
    /// Earliest time a wake-up is already scheduled for.
    private var wakeAt: Double?

    /// A SavedModel's other signatures, each with its own queue, held by the default
    /// signature's scheduler; they point back weakly. Set in init, read-only afterwards.
    public private(set) var signatureSchedulers: [String: BatchScheduler] = [:]
    private weak var primary: BatchScheduler?

    public init(version: LoadedVersion, configuration: BatchingConfiguration, executor: any ComputeExecutor, metrics: Metrics?) {
        self.version = version
        self.configuration = configuration
        self.executor = executor
        self.metrics = metrics
        for (name, sibling) in version.signatures {
            let scheduler = BatchScheduler(version: sibling, configuration: configuration, executor: executor, metrics: metrics, shared: true)
            scheduler.primary = self
            signatureSchedulers[name] = scheduler
        }
    }

    private init(version: LoadedVersion, configuration: BatchingConfiguration, executor: any ComputeExecutor, metrics: Metrics?, shared: Bool) {
        self.version = version
        self.configuration = configuration
        self.executor = executor
        self.metrics = metrics
    }

    /// The queue of signature `name` ("" and the default name: this one). TF Serving's
    /// error text when the export has no such signature.
    public func signature(_ name: String) throws(ServingError) -> BatchScheduler {
        let root = primary ?? self
        if name.isEmpty || name == version.defaultSignatureName { return root }
        guard let scheduler = root.signatureSchedulers[name] else {
            throw .notFound("Serving signature key \"\(name)\" not found.")
        }
        return scheduler
    }

    /// Requests waiting for a batch (not those running).
    public var queuedCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return queue.count
    }

    /// Queues a prepared request; throws `queueFull` when the queue is at its bound.
    /// `timeout` (seconds, 0: the configuration's) bounds the time spent queued, and so does
    /// `deadline` (absolute CLOCK_MONOTONIC seconds): still queued past either, the request
    /// completes with `deadlineExceeded`. A queued request whose `isCancelled` returns true
    /// when a batch is formed completes with `cancelled` and never runs; `isCancelled` is
    /// called with the queue locked, so it must be cheap and must not call back into this queue.
    public func enqueue(_ prepared: LoadedVersion.PreparedRequest, timeout: Double = 0, deadline: Double? = nil,
                        isCancelled: (@Sendable () -> Bool)? = nil, completion: @escaping Completion) throws(ServingError) {
        let now = Self.now()
        lock.lock()
        if configuration.maxQueuedRequests > 0 && queue.count >= configuration.maxQueuedRequests {
            lock.unlock()
            metrics?.queueRejected(model: version.name)
            throw .queueFull("the queue of \(version.name) is full (\(configuration.maxQueuedRequests) requests); retry later")
        }
        let limit = timeout > 0 ? timeout : configuration.requestTimeout
        var expiry = limit > 0 ? now + limit : nil
        if let deadline { expiry = min(expiry ?? deadline, deadline) }
        queue.append(Entry(prepared: prepared, arrival: now, deadline: expiry, isCancelled: isCancelled, completion: completion))
        cost.observeArrival(at: now)
        lock.unlock()
        pump()
    }

    /// Applies the policy until it says wait or idle.
    private func pump() {
        while true {
            let now = Self.now()
            lock.lock()
            let expired = expire(now: now)
            let cancelled = dropCancelled()
            let decision = BatchPolicy.decide(queue: queue.map { BatchPolicy.Queued(rows: $0.prepared.rows, arrival: $0.arrival) },
                                              now: now, running: running, configuration: configuration, cost: cost)
            var batch: [Entry] = []
            var scheduleWake: Double?
            switch decision {
            case .run(let count):
                batch = Array(queue.prefix(count))
                queue.removeFirst(count)
                running += 1
            case .wait(let time):
                if wakeAt == nil || time < wakeAt! {
                    wakeAt = time
                    scheduleWake = time
                }
            case .idle:
                break
            }
            lock.unlock()
            for entry in expired {
                entry.completion(.failure(.deadlineExceeded("request to \(version.name) waited longer than its timeout in the queue")), now - entry.arrival, 0)
            }
            for entry in cancelled {
                entry.completion(.failure(.cancelled("request to \(version.name) was cancelled by the client while queued")), now - entry.arrival, 0)
            }
            if let time = scheduleWake {
                executor.submit(after: max(0, time - now)) { [self] _ in
                    lock.lock()
                    if let scheduled = wakeAt, scheduled <= time { wakeAt = nil }
                    lock.unlock()
                    pump()
                }
            }
            if batch.isEmpty { return }
            let entries = batch
            executor.submit { [self] worker in run(entries, worker: worker) }
        }
    }

    /// Removes and returns queued entries past their deadline. Caller holds the lock.
    private func expire(now: Double) -> [Entry] {
        guard queue.contains(where: { $0.deadline.map { $0 < now } ?? false }) else { return [] }
        let expired = queue.filter { $0.deadline.map { $0 < now } ?? false }
        queue.removeAll { $0.deadline.map { $0 < now } ?? false }
        return expired
    }

    /// Removes and returns queued entries whose client has cancelled. Caller holds the lock.
    private func dropCancelled() -> [Entry] {
        guard queue.contains(where: { $0.isCancelled != nil }) else { return [] }
        var cancelled: [Entry] = []
        queue.removeAll { entry in
            guard let isCancelled = entry.isCancelled, isCancelled() else { return false }
            cancelled.append(entry)
            return true
        }
        return cancelled
    }

    private func run(_ entries: [Entry], worker: Int) {
        let started = Self.now()
        let rows = entries.reduce(0) { $0 + $1.prepared.rows }
        var result: Result<[InferTensor], ServingError>
        if entries.count == 1 {
            result = Result { () throws(ServingError) in try version.execute(worker: worker, rows: rows, inputs: entries[0].prepared.inputs) }
        } else {
            // Concatenate each input's rows in queue order.
            var inputs = entries[0].prepared.inputs.map { bytes -> [UInt8] in
                var combined: [UInt8] = []
                combined.reserveCapacity(bytes.count / max(entries[0].prepared.rows, 1) * rows)
                return combined
            }
            for entry in entries { for index in inputs.indices { inputs[index].append(contentsOf: entry.prepared.inputs[index]) } }
            result = Result { () throws(ServingError) in try version.execute(worker: worker, rows: rows, inputs: inputs) }
        }
        let finished = Self.now()
        metrics?.batchExecuted(model: version.name, size: rows)
        lock.lock()
        running -= 1
        cost.observe(batchSize: rows, seconds: finished - started)
        lock.unlock()
        switch result {
        case .success(let outputs):
            // Split every batched output back by rows, in queue order.
            var row = 0
            for entry in entries {
                let own = outputs.map { output -> InferTensor in
                    guard entries.count > 1, let batched = output.shape.first, batched == rows else { return output }
                    let rowBytes = output.data.count / max(rows, 1)
                    var part = output
                    part.shape[0] = entry.prepared.rows
                    part.data = Array(output.data[row * rowBytes ..< (row + entry.prepared.rows) * rowBytes])
                    return part
                }
                row += entry.prepared.rows
                entry.completion(Result { () throws(ServingError) in try version.response(entry.prepared, outputs: own) },
                                 started - entry.arrival, finished - started)
            }
        case .failure(let error):
            for entry in entries { entry.completion(.failure(error), started - entry.arrival, finished - started) }
        }
        pump()
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
