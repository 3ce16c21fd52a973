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

/// TF Serving's Manager for every configured model: on each `poll()` it asks the Source
/// (`VersionSource`) which versions exist, the version policy which of them to serve, and
/// `VersionPlan.next` what to load and unload, one step at a time, until the records match.
/// Loading goes through the `ServableLoader`. A version that fails to load is reported in
/// `status` and never replaces a serving one; it is retried only when its files change.
/// Lookups pin versions (ARC references).
///
/// Thread safety: `poll`, `load`, `unload` run on the control thread (they load models, which
/// takes a while); `lookup`, `status` and the listings are called from any thread.
public final class ModelRepository: @unchecked Sendable {
    private struct Entry {
        var source: ModelSource
        var enabled = true
        /// One record per version the manager knows; states change only as `VersionPlan` says.
        var records: [Int: VersionRecord] = [:]
        /// The servable of every available version.
        var servables: [Int: BatchScheduler] = [:]
        var settingsError: String?
        /// Why no version can be found (no numbered directories), reported like a settings error.
        var layoutError: String?
    }

    private let lock = Lock()
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private let loader: any ServableLoader
    private let metrics: Metrics?
    private let log: @Sendable (LogLevel, String) -> Void
    /// For a Triton-style repository: new model directories found there are added.
    private let repositoryDirectory: String?

    public convenience init(sources: [ModelSource], repositoryDirectory: String? = nil, executor: any ComputeExecutor, metrics: Metrics?,
                            batchingDefaults: BatchingParameters? = nil, log: @escaping @Sendable (LogLevel, String) -> Void) {
        self.init(sources: sources, repositoryDirectory: repositoryDirectory,
                  loader: EngineServableLoader(executor: executor, metrics: metrics, batchingDefaults: batchingDefaults),
                  metrics: metrics, log: log)
    }

    public init(sources: [ModelSource], repositoryDirectory: String? = nil, loader: any ServableLoader, metrics: Metrics?,
                log: @escaping @Sendable (LogLevel, String) -> Void) {
        self.loader = loader
        self.metrics = metrics
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
        locked { entries.values.allSatisfy { !$0.enabled || !$0.servables.isEmpty } }
    }

    /// Every loaded version's scheduler, for per-version gauges.
    public var loadedSchedulers: [BatchScheduler] {
        locked { order.compactMap { entries[$0] }.flatMap { entry in entry.servables.keys.sorted().map { entry.servables[$0]! } } }
    }

    /// The version a request should run on.
    public func lookup(model: String, version selector: VersionSelector) throws(ServingError) -> BatchScheduler {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries[model] else { throw .modelNotFound(model) }
        let number = try VersionPlan.resolve(selector, model: model, records: entry.records, labels: entry.source.labels)
        return entry.servables[number]!
    }

    /// Every version the repository knows of for `model`, ascending.
    public func status(model: String) throws(ServingError) -> [VersionStatus] {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries[model] else { throw .modelNotFound(model) }
        return VersionPlan.statuses(records: entry.records, modelError: entry.settingsError ?? entry.layoutError)
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
        let scan = VersionSource.scan(base)
        if locked({ entries[name]?.layoutError }) != scan.layoutError {
            if let layoutError = scan.layoutError { log(.error, "model \(name): \(layoutError)") }
            locked { entries[name]?.layoutError = scan.layoutError }
        }
        var aspired: [Int: String] = [:]
        for version in (entry.source.policy ?? settings.versionPolicy ?? .latest(1)).select(Array(scan.versions.keys)) {
            aspired[version] = VersionSource.signature(scan.versions[version]!)
        }
        let onDisk = Set(scan.versions.keys)
        while let action = locked({ entries[name].flatMap { VersionPlan.next(records: $0.records, aspired: aspired, onDisk: onDisk) } }) {
            switch action {
            case .load(let version):
                load(name, version: version, directory: scan.versions[version]!, signature: aspired[version]!, settings: settings)
            case .unload(let version):
                locked {
                    entries[name]?.records[version]?.state = .unloading
                    entries[name]?.servables[version] = nil
                    metrics?.forget(model: name, version: version)
                    entries[name]?.records[version] = nil  // end
                }
                log(.info, "model \(name): unloaded version \(version)")
            case .forget(let version):
                locked { entries[name]?.records[version] = nil }
            }
        }
    }

    /// Loads one version (state loading, then available or failed with `signature`).
    private func load(_ name: String, version: Int, directory: String, signature: String, settings: ModelSettings) {
        locked { entries[name]?.records[version] = VersionRecord(state: .loading) }
        log(.info, "model \(name): loading version \(version) from \(directory)")
        do {
            let loaded = try loader.load(name: name, version: version, directory: directory, settings: settings)
            locked {
                entries[name]?.records[version] = VersionRecord(state: .available, signature: signature)
                entries[name]?.servables[version] = loaded
            }
            log(.info, "model \(name): version \(version) is available")
        } catch {
            let message = "\(error)"
            locked { entries[name]?.records[version] = VersionRecord(state: .failed, signature: signature, error: message) }
            log(.error, "model \(name): version \(version) failed to load: \(message)")
        }
    }

    /// Repository extension: (re)enable a model and load it now. Control thread.
    public func load(model: String) throws(ServingError) {
        discoverModels()
        let exists = locked { () -> Bool in
            guard entries[model] != nil else { return false }
            entries[model]!.enabled = true
            entries[model]!.records = entries[model]!.records.filter { $0.value.state != .failed }
            return true
        }
        guard exists else { throw .modelNotFound(model) }
        pollModel(model)
        if locked({ entries[model]?.servables.isEmpty ?? true }) {
            let reason = (try? status(model: model))?.compactMap(\.error).last ?? "no version could be loaded"
            throw .invalidInput("failed to load \(model): \(reason)")
        }
    }

    /// Repository extension: unload every version and stop polling the model. Control thread.
    public func unload(model: String) throws(ServingError) {
        let exists = locked { () -> Bool in
            guard entries[model] != nil else { return false }
            entries[model]!.enabled = false
            for version in entries[model]!.servables.keys {
                metrics?.forget(model: model, version: version)
                entries[model]!.records[version] = nil  // unloading, then end
            }
            entries[model]!.servables = [:]
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
