import Synchronization

/// Bytes of request bodies and unsent answers that Transport holds in memory, summed over
/// every connection of one server (all loops, HTTP/1 and HTTP/2). Past `limit` new request
/// bodies are refused (HTTP 503 with Retry-After, gRPC RESOURCE_EXHAUSTED) instead of
/// growing the process with the number of clients. Thread-safe.
public final class MemoryBudget: Sendable {
    /// Bytes; 0: unlimited (still counted).
    public let limit: Int
    private let held = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = max(0, limit)
    }

    /// Bytes held now (request bodies read and not yet answered, answers not yet written).
    public var heldBytes: Int { held.load(ordering: .relaxed) }

    /// Takes `bytes` if they fit under the limit; false (nothing taken) if not.
    public func reserve(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        var current = held.load(ordering: .relaxed)
        while true {
            if limit > 0 && current + bytes > limit { return false }
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Takes `bytes` even past the limit: for answers that exist already and must be sent;
    /// they hold back new request bodies until written.
    public func forceReserve(_ bytes: Int) {
        if bytes > 0 { held.add(bytes, ordering: .relaxed) }
    }

    /// Gives back bytes taken by `reserve` or `forceReserve`.
    public func release(_ bytes: Int) {
        if bytes > 0 { held.subtract(bytes, ordering: .relaxed) }
    }

    /// The message of a refusal, for clients and logs.
    func refusal(_ bytes: Int) -> String {
        "the server's memory budget for request bodies and unsent answers (\(limit) bytes, --max_buffered_bytes) "
            + "cannot take \(bytes) more bytes now; retry later"
    }
}
