import FoundationEssentials
import Glibc

/// TF Serving's Source for one model: which versions exist under its base path (TF Serving
/// layout `<base>/<version>/model.onnx` or `.../saved_model.pb`), read from the file system
/// on each call. It loads nothing.
public enum VersionSource {
    /// What one scan found.
    public struct Scan: Sendable, Equatable {
        /// Version number -> its directory.
        public var versions: [Int: String]
        /// Why no version can be found (no numbered directories), reported like a settings error.
        public var layoutError: String?
    }

    /// The versions under `base`: numeric subdirectories (leading zeros allowed; others are
    /// ignored), or, with none, KServe's storage layout: a model directly in `base` (a bare
    /// /mnt/models/model.onnx or SavedModel) is version 1.
    public static func scan(_ base: String) -> Scan {
        let onDisk = numberedDirectories(base)
        if !onDisk.isEmpty { return Scan(versions: onDisk) }
        if LoadedVersion.holdsModel(base) { return Scan(versions: [1: base]) }
        return Scan(versions: [:], layoutError: "no version directories in \(base) (expected \(base)/<version>/model.onnx or \(base)/<version>/saved_model.pb)")
    }

    /// Numeric subdirectories of `base`.
    static func numberedDirectories(_ base: String) -> [Int: String] {
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
    public static func signature(_ directory: String) -> String {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.sorted().map { file -> String in
            var info = stat()
            guard stat(directory + "/" + file, &info) == 0 else { return file }
            return "\(file):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }.joined(separator: ",")
    }
}

/// Turns a version directory into a servable: the engine model checked and warmed up
/// (`LoadedVersion`) behind its batch scheduler. Called on the control thread; slow.
public protocol ServableLoader: Sendable {
    func load(name: String, version: Int, directory: String, settings: ModelSettings) throws -> BatchScheduler
}

/// The loader the server uses.
public struct EngineServableLoader: ServableLoader {
    let executor: any ComputeExecutor
    let metrics: Metrics?
    let batchingDefaults: BatchingParameters?

    public init(executor: any ComputeExecutor, metrics: Metrics?, batchingDefaults: BatchingParameters?) {
        self.executor = executor
        self.metrics = metrics
        self.batchingDefaults = batchingDefaults
    }

    public func load(name: String, version: Int, directory: String, settings: ModelSettings) throws -> BatchScheduler {
        let workers = executor.workerCount
        let servable = try LoadedVersion(name: name, version: version, directory: directory, settings: settings, workers: workers)
        let batching = settings.batching(defaults: batchingDefaults, maxBatchSize: max(1, servable.maxBatchSize), workers: workers)
        return BatchScheduler(version: servable, configuration: batching, executor: executor, metrics: metrics)
    }
}
