import Serving
import Synchronization

/// Runs compute jobs on the fuzzing thread: jobs queue until `drain` runs them in order
/// (delayed jobs too, at once), so a request's whole life happens inside one fuzz input.
public final class InlineExecutor: ComputeExecutor {
    private let jobs = Mutex<[@Sendable (Int) -> Void]>([])
    public init() {}
    public var workerCount: Int { 1 }
    public func submit(_ job: @escaping @Sendable (Int) -> Void) { jobs.withLock { $0.append(job) } }
    public func submit(after seconds: Double, _ job: @escaping @Sendable (Int) -> Void) { submit(job) }

    /// Runs queued jobs (and those they queue) until none is left. More than `limit` jobs
    /// for one input means work that never settles: a finding.
    public func drain(limit: Int = 100_000) {
        var ran = 0
        while let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            job(0)
            ran += 1
            if ran > limit { fuzzFailure("compute jobs keep queueing more jobs (\(ran) for one input)") }
        }
    }
}

/// Counts completions of one request: the services promise exactly one.
public final class Replies<Reply: Sendable>: Sendable {
    private let replies = Mutex<[Reply]>([])
    public init() {}
    public func add(_ reply: Reply) { replies.withLock { $0.append(reply) } }
    /// The one reply; anything else stops the fuzzer.
    public func exactlyOne(_ what: String) -> Reply {
        let all = replies.withLock { $0 }
        guard all.count == 1 else { fuzzFailure("\(what): \(all.count) replies, expected exactly one") }
        return all[0]
    }
}
