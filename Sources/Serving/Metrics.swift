import Glibc

/// Request counters and latency histograms, rendered in the Prometheus text format.
/// Thread-safe (one mutex; updates are a few additions).
public final class Metrics: @unchecked Sendable {
    public enum Phase: String, Sendable, CaseIterable { case queue, compute, total }

    private struct Key: Hashable {
        let model: String
        let version: String
        let protocolName: String
        let outcome: String
    }
    private struct HistogramKey: Hashable {
        let model: String
        let phase: Phase
    }
    /// Upper bounds in seconds.
    public static let buckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private var mutex = pthread_mutex_t()
    private var requests: [Key: Int] = [:]
    private var histograms: [HistogramKey: (counts: [Int], sum: Double, count: Int)] = [:]
    private var inFlight = 0
    private var batchSizes: [String: [Int: Int]] = [:]
    private var rejected: [String: Int] = [:]

    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    public func requestStarted() { locked { inFlight += 1 } }

    /// Records a finished request. `outcome` is "success" or an error class; times in seconds.
    public func requestFinished(model: String, version: Int?, protocolName: String, outcome: String,
                                queueSeconds: Double?, computeSeconds: Double?, totalSeconds: Double) {
        locked {
            inFlight -= 1
            requests[Key(model: model, version: version.map(String.init) ?? "", protocolName: protocolName, outcome: outcome), default: 0] += 1
            if let queueSeconds { observe(model, .queue, queueSeconds) }
            if let computeSeconds { observe(model, .compute, computeSeconds) }
            observe(model, .total, totalSeconds)
        }
    }

    /// Records one executed batch of `size` rows.
    public func batchExecuted(model: String, size: Int) { locked { batchSizes[model, default: [:]][size, default: 0] += 1 } }

    /// Records a request refused because the queue was full.
    public func queueRejected(model: String) { locked { rejected[model, default: 0] += 1 } }

    private func observe(_ model: String, _ phase: Phase, _ seconds: Double) {
        let key = HistogramKey(model: model, phase: phase)
        var histogram = histograms[key] ?? (Array(repeating: 0, count: Self.buckets.count), 0, 0)
        if let index = Self.buckets.firstIndex(where: { seconds <= $0 }) { histogram.counts[index] += 1 }
        histogram.sum += seconds
        histogram.count += 1
        histograms[key] = histogram
    }

    /// The Prometheus text exposition of everything recorded, plus `loadedVersions`.
    public func render(loadedVersions: Int) -> String {
        locked {
            var text = ""
            text += "# HELP model_server_requests_total Inference requests by model, version, protocol and outcome.\n"
            text += "# TYPE model_server_requests_total counter\n"
            for (key, count) in requests.sorted(by: { "\($0.key)" < "\($1.key)" }) {
                text += "model_server_requests_total{model=\"\(escape(key.model))\",version=\"\(key.version)\",protocol=\"\(key.protocolName)\",outcome=\"\(key.outcome)\"} \(count)\n"
            }
            text += "# HELP model_server_request_duration_seconds Request latency by phase (queue, compute, total).\n"
            text += "# TYPE model_server_request_duration_seconds histogram\n"
            for (key, histogram) in histograms.sorted(by: { ($0.key.model, $0.key.phase.rawValue) < ($1.key.model, $1.key.phase.rawValue) }) {
                let labels = "model=\"\(escape(key.model))\",phase=\"\(key.phase.rawValue)\""
                var cumulative = 0
                for (bound, count) in zip(Self.buckets, histogram.counts) {
                    cumulative += count
                    text += "model_server_request_duration_seconds_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
                }
                text += "model_server_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(histogram.count)\n"
                text += "model_server_request_duration_seconds_sum{\(labels)} \(histogram.sum)\n"
                text += "model_server_request_duration_seconds_count{\(labels)} \(histogram.count)\n"
            }
            text += "# HELP model_server_batch_size_total Executed batches by size.\n"
            text += "# TYPE model_server_batch_size_total counter\n"
            for (model, sizes) in batchSizes.sorted(by: { $0.key < $1.key }) {
                for (size, count) in sizes.sorted(by: { $0.key < $1.key }) {
                    text += "model_server_batch_size_total{model=\"\(escape(model))\",size=\"\(size)\"} \(count)\n"
                }
            }
            text += "# HELP model_server_queue_rejected_total Requests refused because the model's queue was full.\n"
            text += "# TYPE model_server_queue_rejected_total counter\n"
            for (model, count) in rejected.sorted(by: { $0.key < $1.key }) {
                text += "model_server_queue_rejected_total{model=\"\(escape(model))\"} \(count)\n"
            }
            text += "# HELP model_server_loaded_versions Model versions loaded and serving.\n"
            text += "# TYPE model_server_loaded_versions gauge\nmodel_server_loaded_versions \(loadedVersions)\n"
            text += "# HELP model_server_requests_in_flight Requests received and not yet answered.\n"
            text += "# TYPE model_server_requests_in_flight gauge\nmodel_server_requests_in_flight \(inFlight)\n"
            return text
        }
    }

    private func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

private extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
