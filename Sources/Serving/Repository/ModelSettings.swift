import Engine
import FoundationEssentials
import ServingProto
import SwiftProtobuf

/// How versions of a model are chosen for serving (TF Serving's ServableVersionPolicy).
public enum VersionPolicy: Sendable, Equatable {
    /// The `count` highest versions.
    case latest(Int)
    case all
    case specific(Set<Int>)

    /// The versions to serve among those on disk.
    public func select(_ available: [Int]) -> Set<Int> {
        switch self {
        case .latest(let count): return Set(available.sorted(by: >).prefix(max(1, count)))
        case .all: return Set(available)
        case .specific(let versions): return versions.intersection(available)
        }
    }
}

/// Per-model settings read from `config.pbtxt` beside the model (the Triton subset this
/// server applies: name, max_batch_size, input/output names and dims, version_policy,
/// dynamic_batching). Everything else in the file is ignored.
public struct ModelSettings: Sendable {
    public struct TensorSpec: Sendable {
        public var name: String
        /// Dims without the batch dimension when maxBatchSize > 0 (Triton's convention); -1 = any.
        public var dims: [Int]
        public var dataType: TensorDataType?
    }

    /// Largest batch one execution handles. Larger requests are run in slices of this size
    /// unless the configuration set it explicitly (then they are refused, as Triton does).
    public var maxBatchSize: Int = 32
    public var maxBatchSizeConfigured = false
    public var inputs: [TensorSpec] = []
    public var outputs: [TensorSpec] = []
    public var versionPolicy: VersionPolicy?
    public var dynamicBatching: Inference_ModelDynamicBatching?
    /// Output name -> label file path (Triton's label_filename), resolved against the model directory.
    public var labelFiles: [String: String] = [:]
    /// Triton `parameters { key: ... value { string_value: ... } }` entries.
    public var parameters: [String: String] = [:]

    /// The batching this model asks for: config.pbtxt's dynamic_batching (and the
    /// `latency_target_ms` parameter), else TF Serving's global batching parameters, else none.
    public func batching(defaults: BatchingParameters?, maxBatchSize modelMax: Int, workers: Int) -> BatchingConfiguration {
        var configuration = BatchingConfiguration(maxBatchSize: 1)
        configuration.maxConcurrentBatches = max(1, workers)
        if let target = parameters["latency_target_ms"].flatMap(Double.init), target > 0 {
            configuration.latencyTarget = target / 1000
        }
        if let dynamic = dynamicBatching {
            configuration.maxBatchSize = modelMax
            configuration.maxQueueDelay = Double(dynamic.maxQueueDelayMicroseconds) / 1e6
            configuration.preferredSizes = dynamic.preferredBatchSize.map { Int($0) }.filter { $0 <= modelMax }.sorted()
            configuration.maxQueuedRequests = Int(dynamic.defaultQueuePolicy.maxQueueSize)
            configuration.requestTimeout = Double(dynamic.defaultQueuePolicy.defaultTimeoutMicroseconds) / 1e6
        } else if let defaults {
            configuration.maxBatchSize = min(modelMax, defaults.maxBatchSize)
            configuration.maxQueueDelay = defaults.batchTimeout
            configuration.preferredSizes = defaults.allowedBatchSizes.filter { $0 <= modelMax }
            configuration.maxQueuedRequests = defaults.maxQueuedRequests
        } else if configuration.latencyTarget != nil {
            configuration.maxBatchSize = modelMax
        }
        return configuration
    }

    public init() {}

    /// Reads `<directory>/config.pbtxt` if present. Throws on an unreadable or invalid file.
    public static func load(directory: String) throws -> ModelSettings {
        var settings = try loadConfig(directory: directory)
        // A labels.txt beside the model labels the classification output (or the first output).
        if settings.labelFiles.isEmpty && FileManager.default.fileExists(atPath: directory + "/labels.txt") {
            settings.labelFiles[settings.parameters["classification_output"] ?? firstOutputPlaceholder] = directory + "/labels.txt"
        }
        return settings
    }

    /// Stands for "the model's first output" until the model is loaded.
    public static let firstOutputPlaceholder = "*"

    private static func loadConfig(directory: String) throws -> ModelSettings {
        let path = directory + "/config.pbtxt"
        guard FileManager.default.fileExists(atPath: path) else { return ModelSettings() }
        let text: String
        do { text = try readTextFile(path) } catch {
            throw ServingError.invalidInput("cannot read \(path): \(describeFileError(error))")
        }
        var options = TextFormatDecodingOptions()
        options.ignoreUnknownFields = true
        let config: Inference_ModelConfig
        do { config = try Inference_ModelConfig(textFormatString: text, options: options) } catch {
            throw ServingError.invalidInput("\(path) is not a valid model configuration: \(error)")
        }
        var settings = ModelSettings()
        // proto3 cannot tell an absent max_batch_size from 0; both keep the default (the
        // engine still batches on a dynamic leading dimension).
        if config.maxBatchSize > 0 {
            settings.maxBatchSize = Int(config.maxBatchSize)
            settings.maxBatchSizeConfigured = true
        }
        settings.inputs = config.input.map { TensorSpec(name: $0.name, dims: $0.dims.map { Int($0) }, dataType: dataType($0.dataType)) }
        settings.outputs = config.output.map { TensorSpec(name: $0.name, dims: $0.dims.map { Int($0) }, dataType: dataType($0.dataType)) }
        for output in config.output where !output.labelFilename.isEmpty {
            settings.labelFiles[output.name] = directory + "/" + output.labelFilename
        }
        if config.hasVersionPolicy {
            switch config.versionPolicy.policyChoice {
            case .latest(let latest)?: settings.versionPolicy = .latest(max(1, Int(latest.numVersions)))
            case .all?: settings.versionPolicy = .all
            case .specific(let specific)?: settings.versionPolicy = .specific(Set(specific.versions.map { Int($0) }))
            case nil: break
            }
        }
        if config.hasDynamicBatching { settings.dynamicBatching = config.dynamicBatching }
        settings.parameters = config.parameters.mapValues(\.stringValue)
        return settings
    }

    static func dataType(_ type: Inference_DataType) -> TensorDataType? {
        switch type {
        case .typeBool: return .bool
        case .typeUint8: return .uint8
        case .typeUint16: return .uint16
        case .typeUint32: return .uint32
        case .typeUint64: return .uint64
        case .typeInt8: return .int8
        case .typeInt16: return .int16
        case .typeInt32: return .int32
        case .typeInt64: return .int64
        case .typeFp16: return .fp16
        case .typeFp32: return .fp32
        case .typeFp64: return .fp64
        case .typeString: return .bytes
        case .typeBf16: return .bf16
        default: return nil
        }
    }
}

/// One model the repository serves: where its versions live and how they are chosen.
public struct ModelSource: Sendable {
    public var name: String
    public var basePath: String
    /// From --model_config_file; overrides config.pbtxt's version_policy when set.
    public var policy: VersionPolicy?
    public var labels: [String: Int]

    public init(name: String, basePath: String, policy: VersionPolicy? = nil, labels: [String: Int] = [:]) {
        self.name = name
        self.basePath = basePath
        self.policy = policy
        self.labels = labels
    }

    /// Reads a TF Serving `model_config_list` text file.
    public static func fromConfigFile(_ path: String) throws -> [ModelSource] {
        let text: String
        do { text = try readTextFile(path) } catch {
            throw ServingError.invalidInput("cannot read model config file \(path): \(describeFileError(error))")
        }
        let config: Tensorflow_Serving_ModelServerConfig
        do { config = try Tensorflow_Serving_ModelServerConfig(textFormatString: text) } catch {
            throw ServingError.invalidInput("\(path) is not a valid model_config_list: \(error)")
        }
        guard case .modelConfigList(let list)? = config.config else {
            throw ServingError.invalidInput("\(path) has no model_config_list")
        }
        return try list.config.map { model in
            guard !model.name.isEmpty, !model.basePath.isEmpty else {
                throw ServingError.invalidInput("\(path): every config needs a name and a base_path")
            }
            // TF Serving writes "tensorflow" for SavedModels; the files decide the format.
            if !["", "onnx", "tensorflow"].contains(model.modelPlatform) {
                throw ServingError.unsupported("model \(model.name): model_platform '\(model.modelPlatform)' is not supported (\"tensorflow\" for SavedModels, \"onnx\" for ONNX models)")
            }
            var policy: VersionPolicy?
            if model.hasModelVersionPolicy {
                switch model.modelVersionPolicy.policyChoice {
                case .latest(let latest)?: policy = .latest(max(1, Int(latest.numVersions)))
                case .all?: policy = .all
                case .specific(let specific)?: policy = .specific(Set(specific.versions.map { Int($0) }))
                case nil: break
                }
            }
            return ModelSource(name: model.name, basePath: model.basePath, policy: policy,
                               labels: model.versionLabels.mapValues { Int($0) })
        }
    }

    /// Every subdirectory of a Triton-style repository is a model.
    public static func fromRepository(_ directory: String) throws -> [ModelSource] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw ServingError.invalidInput("cannot list model repository \(directory): \(describeFileError(error))")
        }
        return names.sorted().filter { name in
            var isDirectory = false
            return !name.hasPrefix(".") && FileManager.default.fileExists(atPath: directory + "/" + name, isDirectory: &isDirectory) && isDirectory
        }.map { ModelSource(name: $0, basePath: directory + "/" + $0) }
    }
}

/// TF Serving's `--enable_batching --batching_parameters_file` settings, for every model
/// without its own dynamic_batching.
public struct BatchingParameters: Sendable {
    public var maxBatchSize = 1000
    /// Seconds (batch_timeout_micros).
    public var batchTimeout = 0.0
    public var allowedBatchSizes: [Int] = []
    /// max_enqueued_batches x max_batch_size, in requests; 0: unbounded.
    public var maxQueuedRequests = 0

    public init() {}

    /// Reads a text-format BatchingParameters file.
    public static func load(path: String) throws -> BatchingParameters {
        let text: String
        do { text = try readTextFile(path) } catch {
            throw ServingError.invalidInput("cannot read batching parameters file \(path): \(describeFileError(error))")
        }
        let proto: Tensorflow_Serving_BatchingParameters
        do { proto = try Tensorflow_Serving_BatchingParameters(textFormatString: text) } catch {
            throw ServingError.invalidInput("\(path) is not valid BatchingParameters text: \(error)")
        }
        var parameters = BatchingParameters()
        if proto.hasMaxBatchSize { parameters.maxBatchSize = Int(proto.maxBatchSize.value) }
        if proto.hasBatchTimeoutMicros { parameters.batchTimeout = Double(proto.batchTimeoutMicros.value) / 1e6 }
        parameters.allowedBatchSizes = proto.allowedBatchSizes.map { Int($0) }
        if let last = parameters.allowedBatchSizes.last, last != parameters.maxBatchSize {
            throw ServingError.invalidInput("\(path): the last allowed_batch_sizes entry (\(last)) must equal max_batch_size (\(parameters.maxBatchSize))")
        }
        let batches = proto.hasMaxEnqueuedBatches ? Int(proto.maxEnqueuedBatches.value) : 10
        parameters.maxQueuedRequests = batches * parameters.maxBatchSize
        return parameters
    }
}
