import Engine
import FoundationEssentials
import TensorFlowProto
import ImageCodec

/// One loaded, servable version of a model. Requests hold a reference for their whole
/// inference, which pins the version: unloading only drops the repository's reference.
/// Thread safety: immutable except each worker's session slot (see `SessionSlot`).
public final class LoadedVersion: @unchecked Sendable {
    public let name: String
    public let version: Int
    public let directory: String
    public let model: Model
    public let settings: ModelSettings
    /// Labels per output name (from label_filename / labels.txt), for classification.
    public let labels: [String: [String]]
    /// Classification post-processing from config.pbtxt, if any.
    public let classification: Classification?
    /// The input fed from encoded images, if the configuration declares one.
    public let imageInput: ImageInput?
    let imageDecoders = ImageDecoderPool()
    /// One slot per compute worker, made in init and never resized or replaced, so the array
    /// itself is only ever read (by any thread); slot w's content is read and written only by
    /// worker w's thread. (A `var [Session?]` written in place by two workers was a data race:
    /// the write may copy or reallocate the array another worker is reading.)
    private let sessions: [SessionSlot]

    /// A worker's session, made on the worker's first batch. Owned by that worker's thread.
    private final class SessionSlot: @unchecked Sendable {
        var session: Session?
        init(_ session: Session?) { self.session = session }
    }

    public struct TensorMetadata: Sendable {
        public let name: String
        public let datatype: TensorDataType
        /// -1 marks the batch dimension.
        public let shape: [Int]
    }
    public let inputs: [TensorMetadata]
    /// The model's own outputs.
    public let outputs: [TensorMetadata]
    /// Every output a request may name, as metadata lists them: the model's outputs, then,
    /// with a configured top-k, `classes` (BYTES) and `scores` (FP32), both [batch, k], which
    /// replace the classification output in the answer to a request that names no outputs.
    public let advertisedOutputs: [TensorMetadata]

    /// The model's format, as V2 metadata names platforms.
    public let platform: String
    /// TensorFlow SavedModels: the signature this servable runs; on the default signature's
    /// servable, the export's other signatures (set in init, read-only afterwards).
    public let signature: SavedModelSignature?
    public private(set) var signatures: [String: LoadedVersion] = [:]
    /// The name requests use when they name no signature.
    public let defaultSignatureName: String
    /// TensorFlow: the export's SignatureDefs as written (set in init, read-only afterwards).
    public private(set) var signatureDefs: [String: Tensorflow_SignatureDef] = [:]

    /// Whether `directory` holds a model this server reads (model.onnx or a SavedModel).
    public static func holdsModel(_ directory: String) -> Bool {
        FileManager.default.fileExists(atPath: directory + "/model.onnx") || SavedModel.isSavedModel(directory: directory)
    }

    /// Loads `<directory>/model.onnx` or the SavedModel in `directory` (every signature),
    /// checks it against `settings`, and runs it once on zeros.
    public convenience init(name: String, version: Int, directory: String, settings: ModelSettings, workers: Int) throws {
        let maxBatch = max(1, settings.maxBatchSize)
        if SavedModel.isSavedModel(directory: directory) {
            let saved: SavedModel
            do {
                saved = try SavedModel(directory: directory, options: .init(maxBatchSize: maxBatch))
            } catch let error as EngineError {
                throw ServingError.invalidInput("cannot load the SavedModel in \(directory): \(error)")
            }
            var siblings: [String: LoadedVersion] = [:]
            for (signatureName, signature) in saved.signatures where signatureName != saved.defaultSignature {
                siblings[signatureName] = try LoadedVersion(name: name, version: version, directory: directory, settings: settings,
                                                            workers: workers, signature: signature, defaultSignature: saved.defaultSignature)
            }
            try self.init(name: name, version: version, directory: directory, settings: settings, workers: workers,
                          signature: saved.signatures[saved.defaultSignature]!, defaultSignature: saved.defaultSignature)
            signatures = siblings
            signatureDefs = saved.signatureDefs
            return
        }
        let path = directory + "/model.onnx"
        guard FileManager.default.fileExists(atPath: path) else {
            throw ServingError.invalidInput("version \(version) of \(name) has no model.onnx or saved_model.pb in \(directory)")
        }
        let model: Model
        do {
            model = try Model(path: path, options: .init(maxBatchSize: maxBatch))
        } catch let error as EngineError {
            throw ServingError.invalidInput("cannot load \(path): \(error)")
        }
        var labels: [String: [String]] = [:]
        for (configured, file) in settings.labelFiles {
            let output = configured == ModelSettings.firstOutputPlaceholder ? (model.outputs.first?.name ?? configured) : configured
            guard let text = try? readTextFile(file) else {
                throw ServingError.invalidInput("cannot read label file \(file)")
            }
            labels[output] = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        let classification = Classification.from(settings: settings, labels: labels, outputs: model.outputs.map(\.name))
        let inputs = model.inputs.map { TensorMetadata(name: $0.name, datatype: TensorDataType($0.dtype), shape: $0.shape) }
        try self.init(name: name, version: version, directory: directory, settings: settings, workers: workers, model: model,
                      labels: labels, classification: classification,
                      imageInput: try ImageInput.from(parameters: settings.parameters, inputs: inputs),
                      platform: "onnxruntime_onnx", signature: nil, defaultSignature: "serving_default")
    }

    /// One signature of a SavedModel: its network, JPEG stage and top-k stage.
    private convenience init(name: String, version: Int, directory: String, settings: ModelSettings, workers: Int,
                             signature: SavedModelSignature, defaultSignature: String) throws {
        var imageInput: ImageInput?
        func imageStage(_ feed: SavedModelSignature.Feed) -> ImageInput? {
            guard case .images(let input, let steps) = feed else { return nil }
            return ImageInput(tensorflow: steps, input: input)
        }
        for feed in signature.feeds.values {
            if let stage = imageStage(feed) { imageInput = stage }
            if case .examples(let features) = feed {
                for feature in features { if let stage = imageStage(feature.feed) { imageInput = stage } }
            }
        }
        var classification: Classification?
        for (alias, fetch) in signature.fetches {
            switch fetch {
            case .topKLabels(let output, let k, let labels, let missing):
                var stage = classification ?? Classification(output: output, softmax: false, topK: k, labels: labels)
                stage.labels = labels
                stage.classesName = alias
                stage.missingLabel = missing
                classification = stage
            case .topKValues(let output, let k):
                var stage = classification ?? Classification(output: output, softmax: false, topK: k, labels: [])
                stage.scoresName = alias
                classification = stage
            case .topKIndices:
                throw ServingError.unsupported("signature '\(signature.name)' of \(name): a top-k index output is not supported (labels and values are)")
            case .tensor: break
            }
        }
        try self.init(name: name, version: version, directory: directory, settings: settings, workers: workers,
                      model: signature.model, labels: [:], classification: classification, imageInput: imageInput,
                      platform: "tensorflow_savedmodel", signature: signature, defaultSignature: defaultSignature)
    }

    private init(name: String, version: Int, directory: String, settings: ModelSettings, workers: Int, model: Model,
                 labels: [String: [String]], classification: Classification?, imageInput: ImageInput?,
                 platform: String, signature: SavedModelSignature?, defaultSignature: String) throws {
        self.name = name
        self.version = version
        self.directory = directory
        self.settings = settings
        self.model = model
        self.platform = platform
        self.signature = signature
        self.defaultSignatureName = defaultSignature
        func metadata(_ info: Model.TensorInfo) throws -> TensorMetadata {
            TensorMetadata(name: info.name, datatype: TensorDataType(info.dtype), shape: info.shape)
        }
        inputs = try signature.map(Self.signatureInputs) ?? model.inputs.map(metadata)
        let outputs = try model.outputs.map(metadata)
        self.outputs = outputs
        for spec in settings.inputs where !model.inputs.contains(where: { $0.name == spec.name }) {
            throw ServingError.invalidInput("config.pbtxt names input '\(spec.name)', the model's inputs are \(model.inputs.map(\.name))")
        }
        for spec in settings.outputs where !model.outputs.contains(where: { $0.name == spec.name }) {
            throw ServingError.invalidInput("config.pbtxt names output '\(spec.name)', the model's outputs are \(model.outputs.map(\.name))")
        }
        self.labels = labels
        self.classification = classification
        if let signature {
            // A signature answers exactly its declared outputs.
            advertisedOutputs = signature.outputs.map { output in
                let known = outputs.first { $0.name == output.alias }
                return TensorMetadata(name: output.alias, datatype: known?.datatype ?? TensorDataType(tensorflow: output.dtype),
                                      shape: known?.shape ?? output.shape ?? [-1])
            }
        } else if let classification, let k = classification.topK, let source = outputs.first(where: { $0.name == classification.output }) {
            // As `topKOutputs` answers: [rows, min(k, classes)]; a rank-1 output is one row.
            let classes = source.shape.last ?? 1
            let shape = [source.shape.count > 1 ? source.shape[0] : 1, classes > 0 ? min(k, classes) : k]
            advertisedOutputs = outputs + [TensorMetadata(name: classification.classesName, datatype: .bytes, shape: shape),
                                           TensorMetadata(name: classification.scoresName, datatype: .fp32, shape: shape)]
        } else {
            advertisedOutputs = outputs
        }
        self.imageInput = imageInput
        // Warm-up: one run on zeros proves the plan executes before the version is marked
        // ready; its session becomes worker 0's. Other workers build theirs on first use, so
        // a version's memory follows the workers that actually serve it.
        let zeros = model.inputs.map { info -> [UInt8] in
            let count = info.shape.map { $0 == -1 ? 1 : $0 }.reduce(1, *)
            return [UInt8](repeating: 0, count: count * info.dtype.size)
        }
        let session = model.makeSession()
        do {
            try zeros.withUnsafeBufferPointers { buffers in
                _ = try session.run(batchSize: model.hasDynamicBatch ? 1 : model.maxBatchSize, inputs: buffers) { _ in 0 }
            }
        } catch {
            throw ServingError.invalidInput("warm-up run of \(name) version \(version) failed: \(error)")
        }
        sessions = [SessionSlot(session)] + (1..<max(1, workers)).map { _ in SessionSlot(nil) }
    }

    /// Largest batch one request may carry.
    public var maxBatchSize: Int { model.hasDynamicBatch ? model.maxBatchSize : 0 }

    /// A request checked against the model: one contiguous buffer per model input (model
    /// input order), its row count, and the outputs it wants (nil: all).
    public struct PreparedRequest: Sendable {
        public var inputs: [[UInt8]]
        public var rows: Int
        public var wanted: [String]?
        public var id: String?
        /// Requested outputs with their parameters (classification, binary_data).
        public var outputs: [RequestedOutput]?
    }

    /// Checks names, datatypes, shapes and sizes (`RequestValidator`). Any thread.
    public func prepare(_ request: InferRequest) throws(ServingError) -> PreparedRequest {
        try requestValidator.prepare(request)
    }

    /// What `prepare` checks requests against.
    public var requestValidator: RequestValidator {
        RequestValidator(inputs: model.inputs.map { TensorMetadata(name: $0.name, datatype: TensorDataType($0.dtype), shape: $0.shape) },
                         hasDynamicBatch: model.hasDynamicBatch, maxBatchSize: model.maxBatchSize,
                         maxBatchSizeConfigured: settings.maxBatchSizeConfigured, outputNames: advertisedOutputs.map(\.name))
    }

    /// Runs `rows` rows (inputs in model input order, contiguous) on worker `worker`'s session
    /// and returns every output. Batches larger than the plan run in slices. Call only from
    /// that worker's thread.
    public func execute(worker: Int, rows batchSize: Int, inputs buffers: [[UInt8]]) throws(ServingError) -> [InferTensor] {
        let slot = sessions[worker]
        if slot.session == nil { slot.session = model.makeSession() }
        let session = slot.session!
        let slice = model.hasDynamicBatch ? model.maxBatchSize : batchSize
        var outputs: [InferTensor] = []
        var start = 0
        while start < batchSize {
            let rows = min(slice, batchSize - start)
            let part = try run(session, rows: rows, inputs: rows == batchSize ? buffers : buffers.map { bytes in
                let rowBytes = bytes.count / max(batchSize, 1)
                return Array(bytes[start * rowBytes ..< (start + rows) * rowBytes])
            }, sliced: rows != batchSize)
            if outputs.isEmpty {
                outputs = part
            } else {
                for index in outputs.indices {
                    outputs[index].data.append(contentsOf: part[index].data)
                    outputs[index].shape[0] += rows
                }
            }
            start += rows
        }
        return outputs
    }

    /// The outputs `prepared` asked for, shaped by `OutputShaper`.
    public func response(_ prepared: PreparedRequest, outputs: [InferTensor]) throws(ServingError) -> InferResponse {
        try outputShaper.response(prepared, outputs: outputs)
    }

    /// How `response` turns the network's outputs into the answer.
    public var outputShaper: OutputShaper {
        OutputShaper(name: name, version: version, classification: classification, labels: labels,
                     declaredOutputs: signature != nil ? advertisedOutputs.map(\.name) : nil)
    }

    /// Runs `request` alone on worker `worker`'s session. Call only from that worker's thread.
    public func infer(_ request: InferRequest, worker: Int) throws(ServingError) -> InferResponse {
        let prepared = try prepare(request)
        return try response(prepared, outputs: try execute(worker: worker, rows: prepared.rows, inputs: prepared.inputs))
    }

    private func run(_ session: Session, rows: Int, inputs: [[UInt8]], sliced: Bool) throws(ServingError) -> [InferTensor] {
        do {
            return try inputs.withUnsafeBufferPointers { pointers in
                try session.run(batchSize: rows, inputs: pointers) { views in
                    try views.map { view in
                        if sliced && view.shape.first != rows {
                            throw ServingError.invalidInput("output '\(view.name)' has no batch dimension, so a batch above \(model.maxBatchSize) cannot be split")
                        }
                        return InferTensor(name: view.name, datatype: TensorDataType(view.dtype), shape: view.shape, data: [UInt8](view.bytes))
                    }
                }
            }
        } catch let error as ServingError {
            throw error
        } catch let error as EngineError {
            throw .invalidInput("\(error)")
        } catch {
            throw .internalError("\(error)")
        }
    }
}

extension Array where Element == [UInt8] {
    /// Calls `body` with raw buffers over each element (valid only during the call).
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        var pointers: [UnsafeRawBufferPointer] = []
        pointers.reserveCapacity(count)
        func nest(_ index: Int) throws -> R {
            if index == count { return try body(pointers) }
            return try self[index].withUnsafeBytes { bytes in
                pointers.append(bytes)
                return try nest(index + 1)
            }
        }
        return try nest(0)
    }
}
