import Synchronization

/// Bytes of client data the server holds in memory at once, over every connection of every
/// `HTTPServer` that shares it (the executable gives one to both ports): HTTP/1.1 and HTTP/2
/// request bodies from their first byte read until their answer is written, and HTTP/2
/// answers until nghttp2 has taken them. Without it the peak follows connections x body
/// size. Past `limit` a request whose body would not fit is refused (HTTP 503, gRPC
/// RESOURCE_EXHAUSTED; both say retry) and new HTTP/2 streams are refused (REFUSED_STREAM);
/// answers already computed are never dropped, they count and wait for their clients.
///
/// Thread safety: any thread (one atomic counter).
public final class MemoryBudget: Sendable {
    /// Bytes; `Int.max`: unbounded.
    public let limit: Int
    private let used = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = max(0, limit)
    }

    /// Bytes held now.
    public var inUse: Int { used.load(ordering: .relaxed) }

    /// Whether nothing more fits.
    var isExhausted: Bool { inUse >= limit }

    /// Whether `bytes` more would fit now (nothing is taken).
    func fits(_ bytes: Int) -> Bool { bytes <= limit - min(inUse, limit) }

    /// Takes `bytes` (>= 0) if the total stays within the limit; false (nothing taken) otherwise.
    func reserve(_ bytes: Int) -> Bool {
        var current = used.load(ordering: .relaxed)
        while true {
            let (sum, overflow) = current.addingReportingOverflow(bytes)
            if overflow || sum > limit { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: sum, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Takes `bytes` whatever the total (answers already computed must be sent).
    func force(_ bytes: Int) { used.wrappingAdd(bytes, ordering: .relaxed) }

    /// Gives back `bytes` taken by `reserve` or `force`.
    func release(_ bytes: Int) {
        if bytes != 0 { used.wrappingSubtract(bytes, ordering: .relaxed) }
    }

    /// The refusal message.
    var refusal: String {
        "the server holds its limit of \(limit) bytes of requests and answers in memory; retry later"
    }
}
