import Glibc
import Locks

/// Request counters and latency histograms, rendered in the Prometheus text format.
/// Thread-safe (one lock; updates are a few additions).
public final class Metrics: @unchecked Sendable {
    /// preprocess: decoding and preprocessing encoded images; queue: waiting for a batch;
    /// compute: the batch's run; total: receipt to answer.
    public enum Phase: String, Sendable, CaseIterable { case preprocess, queue, compute, total }

    private struct Key: Hashable {
        let model: String
        let version: String
        let protocolName: String
        let outcome: String
    }
    private struct HistogramKey: Hashable {
        let model: String
        let version: String
        let phase: Phase
    }
    /// Upper bounds in seconds.
    public static let buckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private let lock = Lock()
    private var requests: [Key: Int] = [:]
    private var histograms: [HistogramKey: (counts: [Int], sum: Double, count: Int)] = [:]
    private var inFlight = 0
    private var batchSizes: [String: [Int: Int]] = [:]
    private var rejected: [String: Int] = [:]

    public init() {}

    private func locked<R>(_ body: () -> R) -> R {
        lock.withLock(body)
    }

    public func requestStarted() { locked { inFlight += 1 } }

    /// Records a finished request. `outcome` is "success" or an error class; times in seconds.
    public func requestFinished(model: String, version: Int?, protocolName: String, outcome: String, preprocessSeconds: Double? = nil,
                                queueSeconds: Double?, computeSeconds: Double?, totalSeconds: Double) {
        let versionLabel = version.map(String.init) ?? ""
        locked {
            inFlight -= 1
            requests[Key(model: model, version: versionLabel, protocolName: protocolName, outcome: outcome), default: 0] += 1
            if let preprocessSeconds { observe(model, versionLabel, .preprocess, preprocessSeconds) }
            if let queueSeconds { observe(model, versionLabel, .queue, queueSeconds) }
            if let computeSeconds { observe(model, versionLabel, .compute, computeSeconds) }
            observe(model, versionLabel, .total, totalSeconds)
        }
    }

    /// Drops the latency series of an unloaded version (label cardinality follows the
    /// versions loaded, not every version ever served).
    public func forget(model: String, version: Int) {
        let label = String(version)
        locked { histograms = histograms.filter { !($0.key.model == model && $0.key.version == label) } }
    }

    /// Records one executed batch of `size` rows.
    public func batchExecuted(model: String, size: Int) { locked { batchSizes[model, default: [:]][size, default: 0] += 1 } }

    /// Records a request refused because the queue was full.
    public func queueRejected(model: String) { locked { rejected[model, default: 0] += 1 } }

    private func observe(_ model: String, _ version: String, _ phase: Phase, _ seconds: Double) {
        let key = HistogramKey(model: model, version: version, phase: phase)
        var histogram = histograms[key] ?? (Array(repeating: 0, count: Self.buckets.count), 0, 0)
        if let index = Self.buckets.firstIndex(where: { seconds <= $0 }) { histogram.counts[index] += 1 }
        histogram.sum += seconds
        histogram.count += 1
        histograms[key] = histogram
    }

    /// The Prometheus text exposition of everything recorded, plus the loaded versions (one
    /// entry each in `queued`, with its queue length) and the process's own resource figures.
    public func render(queued: [(model: String, version: Int, count: Int)]) -> String {
        let loadedVersions = queued.count
        let process = ProcessFigures.read()
        return locked {
            var text = ""
            text += "# HELP model_server_requests_total Inference requests by model, version, protocol and outcome.\n"
            text += "# TYPE model_server_requests_total counter\n"
            for (key, count) in requests.sorted(by: { "\($0.key)" < "\($1.key)" }) {
                text += "model_server_requests_total{model=\"\(escape(key.model))\",version=\"\(key.version)\",protocol=\"\(key.protocolName)\",outcome=\"\(key.outcome)\"} \(count)\n"
            }
            text += "# HELP model_server_request_duration_seconds Request latency by model, version and phase (preprocess, queue, compute, total).\n"
            text += "# TYPE model_server_request_duration_seconds histogram\n"
            for (key, histogram) in histograms.sorted(by: { ($0.key.model, $0.key.version, $0.key.phase.rawValue) < ($1.key.model, $1.key.version, $1.key.phase.rawValue) }) {
                let labels = "model=\"\(escape(key.model))\",version=\"\(key.version)\",phase=\"\(key.phase.rawValue)\""
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
            text += "# HELP model_server_queue_size Requests waiting for a batch, by model and version.\n"
            text += "# TYPE model_server_queue_size gauge\n"
            for entry in queued {
                text += "model_server_queue_size{model=\"\(escape(entry.model))\",version=\"\(entry.version)\"} \(entry.count)\n"
            }
            text += process.exposition
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

/// The process's resource figures in the standard Prometheus `process_*` metrics, from /proc.
struct ProcessFigures {
    var residentBytes: Int?
    var cpuSeconds: Double?
    var startTimeSeconds: Double?
    var openFileDescriptors: Int?

    static func read() -> ProcessFigures {
        var figures = ProcessFigures()
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE))), ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        if let statm = contents("/proc/self/statm")?.split(separator: " "), statm.count > 1, let pages = Int(statm[1]) {
            figures.residentBytes = pages * pageSize
        }
        // /proc/self/stat: fields after the parenthesised name; utime, stime are 14 and 15,
        // starttime (ticks after boot) 22.
        if let stat = contents("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 19, let user = Double(fields[11]), let system = Double(fields[12]), ticks > 0 {
                figures.cpuSeconds = (user + system) / ticks
                if let start = Double(fields[19]), let uptime = contents("/proc/uptime")?.split(separator: " ").first.flatMap({ Double($0) }) {
                    var now = timespec()
                    clock_gettime(CLOCK_REALTIME, &now)
                    figures.startTimeSeconds = (Double(now.tv_sec) - uptime + start / ticks).rounded()
                }
            }
        }
        if let directory = opendir("/proc/self/fd") {
            var count = 0
            while readdir(directory) != nil { count += 1 }
            closedir(directory)
            figures.openFileDescriptors = max(0, count - 3)  // ".", "..", and this directory's own descriptor
        }
        return figures
    }

    var exposition: String {
        let series: [(name: String, type: String, help: String, value: String?)] = [
            ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", residentBytes.map { String($0) }),
            ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpuSeconds.map { String($0) }),
            ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", startTimeSeconds.map { String(Int($0)) }),
            ("process_open_fds", "gauge", "Number of open file descriptors.", openFileDescriptors.map { String($0) }),
        ]
        return series.compactMap { entry in
            entry.value.map { "# HELP \(entry.name) \(entry.help)\n# TYPE \(entry.name) \(entry.type)\n\(entry.name) \($0)\n" }
        }.joined()
    }

    private static func contents(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: buffer[..<count])
        }
        return String(decoding: bytes, as: UTF8.self).trimmingNewline
    }
}

private extension String {
    var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
