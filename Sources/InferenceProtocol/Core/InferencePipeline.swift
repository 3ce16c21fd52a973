import Serving

/// The inference path every protocol shares: encoded images are decoded on a compute worker,
/// the request is prepared and queued on the version's batch scheduler, the result is encoded
/// by the protocol's `encode` on the worker that ran the batch, and `/metrics` records it.
///
/// Contract of `run`: `completion` runs exactly once, on the calling thread (errors found
/// before queueing) or a worker's; the caller never blocks.
/// - `deadline` (absolute CLOCK_MONOTONIC seconds): the time left bounds the time queued, and a
///   result ready after it is answered `deadlineExceeded` instead.
/// - `isCancelled`: checked before decoding and queueing and while queued (see
///   `BatchScheduler.enqueue`); a cancelled request answers `cancelled` and is never run.
/// - the request parameter `timeout` (microseconds) bounds the time queued as well.
struct InferencePipeline: Sendable {
    let executor: any ComputeExecutor
    let metrics: Metrics

    func run<Reply: Sendable>(_ request: InferRequest, on servable: BatchScheduler, protocolName: String,
                              deadline: Double? = nil, isCancelled: (@Sendable () -> Bool)? = nil,
                              encode: @escaping @Sendable (InferResponse) throws(ServingError) -> Reply,
                              completion: @escaping @Sendable (Result<Reply, ServingError>) -> Void) {
        let metrics = metrics, version = servable.version
        let received = monotonicNow()
        metrics.requestStarted()
        /// The completion that records the request's metrics (`preprocess`: image decoding seconds).
        @Sendable func finishing(preprocess: Double?) -> @Sendable (Result<Reply, ServingError>, Double?, Double?) -> Void {
            { result, queueSeconds, computeSeconds in
                let outcome: String
                switch result {
                case .success: outcome = "success"
                case .failure(let error): outcome = ErrorMapping.outcome(error)
                }
                metrics.requestFinished(model: version.name, version: version.version, protocolName: protocolName, outcome: outcome,
                                        preprocessSeconds: preprocess, queueSeconds: queueSeconds, computeSeconds: computeSeconds,
                                        totalSeconds: monotonicNow() - received)
                completion(result)
            }
        }
        let finish = finishing(preprocess: nil)
        var timeout = 0.0
        if let microseconds = request.parameters["timeout"]?.intValue, microseconds > 0 { timeout = Double(microseconds) / 1e6 }
        let limits = Limits(timeout: timeout, deadline: deadline, isCancelled: isCancelled, model: version.name)
        if let error = limits.stopped() {
            finish(.failure(error), nil, nil)
            return
        }
        if version.needsDecoding(request) {
            // Decoding is the expensive part of an image request: a compute worker does it,
            // then the decoded request joins the batch queue.
            executor.submit { _ in
                if let error = limits.stopped() {
                    finish(.failure(error), nil, nil)
                    return
                }
                var decoded = request
                let started = monotonicNow()
                do throws(ServingError) {
                    try version.decodeImages(&decoded)
                } catch {
                    finishing(preprocess: monotonicNow() - started)(.failure(error), nil, nil)
                    return
                }
                enqueue(decoded, servable, limits, encode: encode, finish: finishing(preprocess: monotonicNow() - started))
            }
            return
        }
        var request = request
        do throws(ServingError) {
            try version.expandSignatureInputs(&request)
        } catch {
            finish(.failure(error), nil, nil)
            return
        }
        enqueue(request, servable, limits, encode: encode, finish: finish)
    }

    /// The bounds of one request's life.
    private struct Limits: Sendable {
        var timeout: Double
        var deadline: Double?
        var isCancelled: (@Sendable () -> Bool)?
        var model: String

        /// Why the request must not go on now, if it must not.
        func stopped() -> ServingError? {
            if let isCancelled, isCancelled() { return .cancelled("request to \(model) was cancelled by the client") }
            if let deadline, monotonicNow() >= deadline { return .deadlineExceeded("request to \(model) passed its deadline") }
            return nil
        }
    }

    /// Prepares a (decoded) request and queues it; the scheduler's completion encodes.
    private func enqueue<Reply: Sendable>(_ request: InferRequest, _ servable: BatchScheduler, _ limits: Limits,
                                          encode: @escaping @Sendable (InferResponse) throws(ServingError) -> Reply,
                                          finish: @escaping @Sendable (Result<Reply, ServingError>, Double?, Double?) -> Void) {
        do throws(ServingError) {
            let prepared = try servable.version.prepare(request)
            try servable.enqueue(prepared, timeout: limits.timeout, deadline: limits.deadline, isCancelled: limits.isCancelled) {
                result, queueSeconds, computeSeconds in
                let reply = Result { () throws(ServingError) -> Reply in
                    let response = try result.get()
                    if let deadline = limits.deadline, monotonicNow() > deadline {
                        throw .deadlineExceeded("request to \(limits.model) finished after its deadline")
                    }
                    return try encode(response)
                }
                finish(reply, queueSeconds, computeSeconds)
            }
        } catch {
            finish(.failure(error), nil, nil)
        }
    }
}
