/// Checks a request against a network's inputs and turns it into the contiguous buffers a
/// session runs. A value built from a `LoadedVersion` (`requestValidator`); no engine state,
/// so any thread may use it.
public struct RequestValidator: Sendable {
    /// The network's inputs in model input order (-1: the batch dimension). Never BYTES.
    public var inputs: [LoadedVersion.TensorMetadata]
    public var hasDynamicBatch: Bool
    /// The largest batch the plan runs at once (with a dynamic batch), else the fixed batch.
    public var maxBatchSize: Int
    /// Whether the configuration set max_batch_size: then larger batches are refused rather
    /// than run in slices.
    public var maxBatchSizeConfigured: Bool
    /// Every output a request may name.
    public var outputNames: [String]

    public init(inputs: [LoadedVersion.TensorMetadata], hasDynamicBatch: Bool, maxBatchSize: Int, maxBatchSizeConfigured: Bool,
                outputNames: [String]) {
        self.inputs = inputs
        self.hasDynamicBatch = hasDynamicBatch
        self.maxBatchSize = maxBatchSize
        self.maxBatchSizeConfigured = maxBatchSizeConfigured
        self.outputNames = outputNames
    }

    /// Checks names, datatypes, shapes and sizes; the error names the first problem.
    public func prepare(_ request: InferRequest) throws(ServingError) -> LoadedVersion.PreparedRequest {
        var buffers: [[UInt8]] = []
        var batch: Int?
        for info in inputs {
            guard let tensor = request.inputs.first(where: { $0.name == info.name }) else {
                throw .invalidInput("missing input '\(info.name)' (\(info.datatype.rawValue) \(info.shape))")
            }
            let expectedType = info.datatype
            guard tensor.datatype == expectedType else {
                throw .invalidInput("input '\(info.name)' must be \(expectedType.rawValue), got \(tensor.datatype.rawValue)")
            }
            let fits = tensor.shape.count == info.shape.count && zip(tensor.shape, info.shape).allSatisfy { $1 == -1 || $0 == $1 }
            guard fits else {
                throw .invalidInput("input '\(info.name)' must have shape \(info.shape) (-1: any batch size), got \(tensor.shape)")
            }
            if hasDynamicBatch {
                let rows = tensor.shape[0]
                if let batch, batch != rows { throw .invalidInput("inputs disagree on the batch size (\(batch) and \(rows))") }
                batch = rows
            }
            guard let elements = InferTensor.elementCount(tensor.shape), elements <= tensor.data.count else {
                throw .invalidInput("input '\(info.name)' has \(tensor.data.count) bytes of data, too few for shape \(tensor.shape)")
            }
            let expectedBytes = elements * (info.datatype.elementSize ?? 1)
            guard tensor.data.count == expectedBytes else {
                throw .invalidInput("input '\(info.name)' has \(tensor.data.count) bytes of data, shape \(tensor.shape) of \(expectedType.rawValue) needs \(expectedBytes)")
            }
            buffers.append(tensor.data)
        }
        var seen = Set<String>()
        for tensor in request.inputs where !seen.insert(tensor.name).inserted {
            throw .invalidInput("input '\(tensor.name)' is given more than once")
        }
        for tensor in request.inputs where !inputs.contains(where: { $0.name == tensor.name }) {
            throw .invalidInput("unknown input '\(tensor.name)'; the model's inputs are \(inputs.map(\.name).joined(separator: ", "))")
        }
        let rows = batch ?? maxBatchSize
        if hasDynamicBatch && rows < 1 { throw .invalidInput("batch size must be at least 1") }
        if hasDynamicBatch && rows > maxBatchSize && maxBatchSizeConfigured {
            throw .invalidInput("batch size \(rows) exceeds max_batch_size \(maxBatchSize)")
        }
        var wanted: [String]? = nil
        if let requested = request.outputs, !requested.isEmpty {
            let names = Set(outputNames)
            for output in requested where !names.contains(output.name) {
                throw .invalidInput("unknown output '\(output.name)'; the outputs are \(names.sorted().joined(separator: ", "))")
            }
            for output in requested {
                guard let value = output.parameters["classification"] else { continue }
                guard let k = value.intValue, k > 0, k <= Int64(Int32.max) else {
                    throw .invalidInput("classification of '\(output.name)' must be a positive integer (the number of classes), got \(value.jsonText)")
                }
            }
            wanted = requested.map(\.name)
        }
        return LoadedVersion.PreparedRequest(inputs: buffers, rows: rows, wanted: wanted, id: request.id, outputs: request.outputs)
    }
}

/// Turns a network's outputs into the answer a request asked for: the outputs it named, in
/// its order (none named: all, top-k replacing the classification output), after
/// classification post-processing: a requested output with `"classification": k` becomes
/// "score:index[:label]" strings (the configured softmax and labels apply to the configured
/// classification output only; other outputs use their own labels, if any). A value built
/// from a `LoadedVersion` (`outputShaper`); any thread.
public struct OutputShaper: Sendable {
    public var name: String
    public var version: Int
    public var classification: Classification?
    /// Labels per output name, for classification.
    public var labels: [String: [String]]
    /// A SavedModel signature's declared outputs: an answer to a request naming no outputs
    /// holds only these. Nil for ONNX models.
    public var declaredOutputs: [String]?

    public init(name: String, version: Int, classification: Classification?, labels: [String: [String]], declaredOutputs: [String]?) {
        self.name = name
        self.version = version
        self.classification = classification
        self.labels = labels
        self.declaredOutputs = declaredOutputs
    }

    public func response(_ prepared: LoadedVersion.PreparedRequest, outputs: [InferTensor]) throws(ServingError) -> InferResponse {
        var topK: [InferTensor]?
        func classified() -> [InferTensor] {
            if let topK { return topK }
            var result: [InferTensor] = []
            if let classification, let k = classification.topK, let scores = outputs.first(where: { $0.name == classification.output }) {
                result = classification.topKOutputs(scores, k: k)
            }
            topK = result
            return result
        }
        var result: [InferTensor] = []
        if let requested = prepared.outputs, !requested.isEmpty {
            for output in requested {
                guard var tensor = outputs.first(where: { $0.name == output.name }) ?? classified().first(where: { $0.name == output.name }) else { continue }
                if let k = output.parameters["classification"]?.intValue {
                    guard k > 0, tensor.datatype == .fp32 else {
                        throw .invalidInput("classification of '\(output.name)' needs k > 0 and an FP32 output")
                    }
                    let classifier = classification.flatMap { $0.output == output.name ? $0 : nil }
                        ?? Classification(output: output.name, softmax: false, topK: nil, labels: labels[output.name] ?? [])
                    tensor = classifier.extensionOutput(tensor, k: Int(k))
                }
                result.append(tensor)
            }
        } else if let classification, !classified().isEmpty {
            result = classified() + outputs.filter { $0.name != classification.output }
        } else {
            result = outputs
        }
        if let declaredOutputs, prepared.outputs?.isEmpty ?? true {
            let declared = Set(declaredOutputs)
            result = result.filter { declared.contains($0.name) }
        }
        return InferResponse(modelName: name, modelVersion: version, id: prepared.id, outputs: result)
    }
}
