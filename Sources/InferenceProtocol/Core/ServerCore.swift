import Serving
import Synchronization

/// What every protocol front end shares, so REST and gRPC are one server: the model
/// repository (lookups, status, repository changes), the inference pipeline, the control
/// queue that serialises repository changes, metrics, and readiness. `RESTService` and
/// `GRPCService` each hold the same core; neither holds the other.
public final class ServerCore: Sendable {
    public let repository: ModelRepository
    public let metrics: Metrics
    /// Runs repository changes (loads take seconds) one at a time, off the event loops.
    let control: @Sendable (@escaping @Sendable () -> Void) -> Void
    /// Inference for every protocol.
    let pipeline: InferencePipeline
    private let draining = Atomic<Bool>(false)

    public static let serverName = "swift-model-server"
    public static let serverVersion = "0.1.0"

    public init(repository: ModelRepository, executor: any ComputeExecutor, metrics: Metrics,
                control: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
        self.repository = repository
        self.metrics = metrics
        self.control = control
        pipeline = InferencePipeline(executor: executor, metrics: metrics)
    }

    /// Readiness turns false on every protocol; requests are still answered until the
    /// listeners close.
    public func beginShutdown() { draining.store(true, ordering: .releasing) }

    /// Server readiness (every protocol): not draining and every enabled model has a version.
    var serverReady: Bool { !isDraining && repository.allReady }

    /// Whether `beginShutdown` was called.
    var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Bodies and messages up to this many bytes are decoded on the calling (event-loop)
    /// thread (tens of ms at most, and no wait behind compute jobs: the usual request joins
    /// its batch at once); larger ones on a compute worker, so parsing one never stalls the
    /// loop's connections.
    static let inlineDecodeBytes = 4 << 20

    /// The versions TF Serving's GetModelStatus reports (REST and gRPC), newest first:
    /// all of them, or the one `selector` names.
    func versionStatuses(_ model: String, _ selector: VersionSelector?) throws(ServingError) -> [VersionStatus] {
        var statuses = try repository.status(model: model)
        switch selector {
        case .number(let number)?:
            statuses = statuses.filter { $0.version == number }
            if statuses.isEmpty { throw .versionNotFound(model: model, version: String(number)) }
        case .label?:
            let servable = try repository.lookup(model: model, version: selector!)
            statuses = statuses.filter { $0.version == servable.version.version }
        case .latest?, nil:
            break
        }
        return statuses.reversed()
    }

    /// The model's available versions, ascending (V2 metadata `versions`).
    func availableVersions(_ model: String) -> [String] {
        ((try? repository.status(model: model)) ?? []).filter { $0.state == .available }.map { String($0.version) }
    }

    /// Platform names the V2 model metadata and Triton's model configuration report.
    /// V2 metadata's and config's platform names (Triton's for TensorFlow SavedModels).
    static func metadataPlatform(_ version: LoadedVersion) -> String { version.signature != nil ? "tensorflow_savedmodel" : "onnx_onnxv1" }
    static func configPlatform(_ version: LoadedVersion) -> String { version.signature != nil ? "tensorflow_savedmodel" : "onnxruntime_onnx" }

    /// The Open Inference Protocol extensions this server implements.
    static let extensions = ["binary_tensor_data", "classification", "model_repository", "model_configuration", "parameters"]

    /// Models load from the model repository only: a load request's `config` and `file:`
    /// overrides (Triton's) are refused rather than ignored.
    static func rejectLoadParameters(_ names: [String]) throws(ServingError) {
        guard let name = names.sorted().first else { return }
        throw .invalidInput("load parameter '\(name)' is not supported: models load from the model repository as it is on disk")
    }
}
