import FoundationEssentials
import Glibc
import Locks

/// Which version a request names.
public enum VersionSelector: Sendable, Equatable {
    case latest
    case number(Int)
    case label(String)
}

/// How much a repository event matters to an operator.
public enum LogLevel: String, Sendable { case info, error }

/// The state of one version, as the status endpoints report it.
public struct VersionStatus: Sendable {
    public enum State: String, Sendable { case loading = "LOADING", available = "AVAILABLE", unloading = "UNLOADING", end = "END", failed = "FAILED" }
    public var version: Int
    public var state: State
    /// The load error, for failed versions.
    public var error: String?
}

/// Finds model versions on disk (TF Serving layout `<base>/<version>/model.onnx`), loads the
/// ones the version policy aspires to, and unloads the rest, one `poll()` at a time.
/// A version that fails to load is reported in `status` and never replaces a serving one;
/// it is retried only when its files change. Lookups pin versions (ARC references).
///
/// Thread safety: `poll`, `load`, `unload` run on the control thread (they load models, which
/// takes a while); `lookup`, `status` and the listings are called from any thread.
public final class ModelRepository: @unchecked Sendable {
    private struct Entry {
        var source: ModelSource
        var enabled = true
        var available: [Int: BatchScheduler] = [:]
        var failed: [Int: (signature: String, error: String)] = [:]
        var loading: Set<Int> = []
        var settingsError: String?
        /// Why no version can be found (no numbered directories), reported like a settings error.
        var layoutError: String?
    }

    private let lock = Lock()
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private let workers: Int
    private let executor: any ComputeExecutor
    private let metrics: Metrics?
    private let batchingDefaults: BatchingParameters?
    private let log: @Sendable (LogLevel, String) -> Void
    /// For a Triton-style repository: new model directories found there are added.
    private let repositoryDirectory: String?

    public init(sources: [ModelSource], repositoryDirectory: String? = nil, executor: any ComputeExecutor, metrics: Metrics?,
                batchingDefaults: BatchingParameters? = nil, log: @escaping @Sendable (LogLevel, String) -> Void) {
        self.workers = executor.workerCount
        self.executor = executor
        self.metrics = metrics
        self.batchingDefaults = batchingDefaults
        self.log = log
        self.repositoryDirectory = repositoryDirectory
        for source in sources {
            entries[source.name] = Entry(source: source)
            order.append(source.name)
        }
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Model names in configuration order.
    public var modelNames: [String] { locked { order } }

    /// Whether every enabled model has at least one available version.
    public var allReady: Bool {
        locked { entries.values.allSatisfy { !$0.enabled || !$0.available.isEmpty } }
    }

    /// Every loaded version's scheduler, for per-version gauges.
    public var loadedSchedulers: [BatchScheduler] {
        locked { order.compactMap { entries[$0] }.flatMap { entry in entry.available.keys.sorted().map { entry.available[$0]! } } }
    }

    /// The version a request should run on.
    public func lookup(model: String, version selector: VersionSelector) throws(ServingError) -> BatchScheduler {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries[model] else { throw .modelNotFound(model) }
        switch selector {
        case .latest:
            guard let latest = entry.available.keys.max() else { throw .modelNotReady(model) }
            return entry.available[latest]!
        case .number(let number):
            guard let loaded = entry.available[number] else {
                if entry.loading.contains(number) { throw .modelNotReady("\(model) version \(number) is still loading") }
                if let failure = entry.failed[number] { throw .modelNotReady("\(model) version \(number) failed to load: \(failure.error)") }
                throw .versionNotFound(model: model, version: String(number))
            }
            return loaded
        case .label(let label):
            guard let number = entry.source.labels[label] else {
                throw .invalidInput("Unrecognized servable version label: \(label)")
            }
            guard let loaded = entry.available[number] else { throw .versionNotFound(model: model, version: "\(number) (label \(label))") }
            return loaded
        }
    }

    /// Every version the repository knows of for `model`, ascending.
    public func status(model: String) throws(ServingError) -> [VersionStatus] {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries[model] else { throw .modelNotFound(model) }
        var result: [VersionStatus] = []
        for version in Set(entry.available.keys).union(entry.failed.keys).union(entry.loading).sorted() {
            if entry.available[version] != nil {
                result.append(VersionStatus(version: version, state: .available))
            } else if entry.loading.contains(version) {
                result.append(VersionStatus(version: version, state: .loading))
            } else if let failure = entry.failed[version] {
                result.append(VersionStatus(version: version, state: .failed, error: failure.error))
            }
        }
        if let error = entry.settingsError ?? entry.layoutError, result.isEmpty {
            result.append(VersionStatus(version: 0, state: .failed, error: error))
        }
        return result
    }

    /// Scans every enabled model's directory and brings the loaded set in line with its policy.
    public func poll() {
        discoverModels()
        for name in modelNames { pollModel(name) }
    }

    /// Adds model directories that appeared in the repository directory (Triton poll mode).
    private func discoverModels() {
        guard let repositoryDirectory, let sources = try? ModelSource.fromRepository(repositoryDirectory) else { return }
        locked {
            for source in sources where entries[source.name] == nil {
                entries[source.name] = Entry(source: source)
                order.append(source.name)
                log(.info, "model \(source.name): found in the repository")
            }
        }
    }

    private func pollModel(_ name: String) {
        guard let entry = locked({ entries[name] }), entry.enabled else { return }
        let base = entry.source.basePath
        let settings: ModelSettings
        do {
            settings = try ModelSettings.load(directory: base)
            locked { entries[name]?.settingsError = nil }
        } catch {
            let message = "\(error)"
            if locked({ entries[name]?.settingsError }) != message { log(.error, "model \(name): \(message)") }
            locked { entries[name]?.settingsError = message }
            return
        }
        var onDisk = versionsOnDisk(base)
        var layoutError: String?
        if onDisk.isEmpty {
            // KServe's storage layout: the model's files directly in the base path (a bare
            // /mnt/models/model.onnx or SavedModel) are served as version 1.
            if LoadedVersion.holdsModel(base) {
                onDisk = [1: base]
            } else {
                layoutError = "no version directories in \(base) (expected \(base)/<version>/model.onnx or \(base)/<version>/saved_model.pb)"
            }
        }
        if locked({ entries[name]?.layoutError }) != layoutError {
            if let layoutError { log(.error, "model \(name): \(layoutError)") }
            locked { entries[name]?.layoutError = layoutError }
        }
        let aspired = (entry.source.policy ?? settings.versionPolicy ?? .latest(1)).select(Array(onDisk.keys))
        // Load aspired versions that are neither loaded nor failed with the same files.
        for version in aspired.sorted(by: >) {
            let directory = onDisk[version]!
            let signature = Self.signature(directory)
            let known = locked { () -> Bool in
                guard let current = entries[name] else { return true }
                if current.available[version] != nil { return true }
                if let failure = current.failed[version], failure.signature == signature { return true }
                return false
            }
            if known { continue }
            locked { _ = entries[name]?.loading.insert(version) }
            log(.info, "model \(name): loading version \(version) from \(directory)")
            do {
                let servable = try LoadedVersion(name: name, version: version, directory: directory, settings: settings, workers: workers)
                let batching = settings.batching(defaults: batchingDefaults, maxBatchSize: max(1, servable.maxBatchSize), workers: workers)
                let loaded = BatchScheduler(version: servable, configuration: batching, executor: executor, metrics: metrics)
                locked {
                    entries[name]?.loading.remove(version)
                    entries[name]?.failed[version] = nil
                    entries[name]?.available[version] = loaded
                }
                log(.info, "model \(name): version \(version) is available")
            } catch {
                let message = "\(error)"
                locked {
                    entries[name]?.loading.remove(version)
                    entries[name]?.failed[version] = (signature, message)
                }
                log(.error, "model \(name): version \(version) failed to load: \(message)")
            }
        }
        // Unload what is no longer aspired, but never leave the model without a version while
        // an aspired one is not available (a failed newer version keeps the old one serving).
        locked {
            guard var current = entries[name] else { return }
            let aspiredAvailable = aspired.contains { current.available[$0] != nil }
            for version in current.available.keys where !aspired.contains(version) {
                let stillOnDisk = onDisk[version] != nil
                if aspiredAvailable || !stillOnDisk {
                    current.available[version] = nil
                    metrics?.forget(model: name, version: version)
                    log(.info, "model \(name): unloaded version \(version)")
                }
            }
            for version in current.failed.keys where onDisk[version] == nil { current.failed[version] = nil }
            entries[name] = current
        }
    }

    /// Numeric subdirectories of `base` (leading zeros allowed); others are ignored.
    private func versionsOnDisk(_ base: String) -> [Int: String] {
        guard let children = try? FileManager.default.contentsOfDirectory(atPath: base) else { return [:] }
        var result: [Int: String] = [:]
        for child in children {
            guard !child.isEmpty, child.allSatisfy(\.isNumber), let version = Int(child) else { continue }
            var isDirectory = false
            if FileManager.default.fileExists(atPath: base + "/" + child, isDirectory: &isDirectory), isDirectory {
                result[version] = base + "/" + child
            }
        }
        return result
    }

    /// Size and modification time of the version's files: a changed signature means retry.
    static func signature(_ directory: String) -> String {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.sorted().map { file -> String in
            var info = stat()
            guard stat(directory + "/" + file, &info) == 0 else { return file }
            return "\(file):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }.joined(separator: ",")
    }

    /// Repository extension: (re)enable a model and load it now. Control thread.
    public func load(model: String) throws(ServingError) {
        discoverModels()
        let exists = locked { () -> Bool in
            guard entries[model] != nil else { return false }
            entries[model]!.enabled = true
            entries[model]!.failed = [:]
            return true
        }
        guard exists else { throw .modelNotFound(model) }
        pollModel(model)
        if locked({ entries[model]?.available.isEmpty ?? true }) {
            let reason = (try? status(model: model))?.compactMap(\.error).last ?? "no version could be loaded"
            throw .invalidInput("failed to load \(model): \(reason)")
        }
    }

    /// Repository extension: unload every version and stop polling the model. Control thread.
    public func unload(model: String) throws(ServingError) {
        let exists = locked { () -> Bool in
            guard entries[model] != nil else { return false }
            entries[model]!.enabled = false
            for version in entries[model]!.available.keys { metrics?.forget(model: model, version: version) }
            entries[model]!.available = [:]
            return true
        }
        guard exists else { throw .modelNotFound(model) }
        log(.info, "model \(model): unloaded (repository request)")
    }

    /// Repository index: (name, version, state, reason) for every model.
    public func index() -> [(name: String, version: Int?, state: String, reason: String)] {
        modelNames.flatMap { name -> [(String, Int?, String, String)] in
            let statuses = (try? status(model: name)) ?? []
            let enabled = locked { entries[name]?.enabled ?? false }
            if statuses.isEmpty || !enabled { return [(name, nil, enabled ? "UNAVAILABLE" : "UNAVAILABLE", enabled ? "no version loaded" : "unloaded")] }
            return statuses.map { status in
                let state: String
                switch status.state {
                case .available: state = "READY"
                case .loading: state = "LOADING"
                case .unloading: state = "UNLOADING"
                default: state = "UNAVAILABLE"
                }
                return (name, status.version, state, status.error ?? "")
            }
        }
    }
}
