import Engine
import FoundationEssentials
import Serving
import ServingProto
import TensorFlowProto
import SwiftProtobuf
import WireFormat

/// One unary gRPC answer.
public struct GRPCReply: Sendable {
    public var status: GRPCStatusCode
    /// grpc-message, not yet percent-encoded; "" for OK.
    public var message: String
    /// The serialized response message; nil unless `status == .ok`.
    public var payload: [UInt8]?

    public init(status: GRPCStatusCode, message: String, payload: [UInt8]?) {
        self.status = status
        self.message = message
        self.payload = payload
    }

    public static func failure(_ error: ServingError) -> GRPCReply {
        GRPCReply(status: ErrorMapping.grpcStatus(error), message: error.message, payload: nil)
    }

    static func ok(_ message: some SwiftProtobuf.Message) -> GRPCReply {
        do throws(ServingError) { return GRPCReply(status: .ok, message: "", payload: try serialize(message)) } catch { return .failure(error) }
    }

    static func serialize(_ message: some SwiftProtobuf.Message) throws(ServingError) -> [UInt8] {
        do { return try message.serializedBytes() } catch { throw .internalError("cannot serialize \(type(of: message).protoMessageName): \(error)") }
    }

    init(_ result: Result<[UInt8], ServingError>) {
        switch result {
        case .success(let payload): self.init(status: .ok, message: "", payload: payload)
        case .failure(let error): self = .failure(error)
        }
    }
}

/// Answers the unary gRPC methods of the Open Inference Protocol (`inference.
/// GRPCInferenceService`, with Triton's configuration and repository additions), TensorFlow
/// Serving (`tensorflow.serving.PredictionService` Predict and GetModelMetadata,
/// `ModelService` GetModelStatus) and `grpc.health.v1.Health/Check`. It holds the same
/// `ServerCore` as the REST service (repository, inference pipeline, control queue and
/// readiness), so both protocols see one server. Metadata is answered on the calling thread;
/// messages above `ServerCore.inlineDecodeBytes` are parsed, and inference runs, on the
/// compute executor; repository changes on the control queue.
public final class GRPCService: Sendable {
    let core: ServerCore

    /// Fill-rule expansion of a TensorProto may reach this many bytes, or 8 times the message.
    static let minimumFillBytes = 64 << 20

    public init(core: ServerCore) { self.core = core }

    /// Health turns NOT_SERVING and ServerReady false, for gRPC and REST alike.
    public func beginShutdown() { core.beginShutdown() }

    /// Answers one unary call. `path` like "/inference.GRPCInferenceService/ModelInfer";
    /// `message` the request protobuf bytes (un-framed); `deadline` absolute CLOCK_MONOTONIC
    /// seconds or nil; `isCancelled` turns true once the client reset the stream (must be cheap).
    /// `completion` runs exactly once, from any thread; the caller is never blocked.
    public func handle(path: String, message: [UInt8], deadline: Double?, isCancelled: @escaping @Sendable () -> Bool,
                       completion: @escaping @Sendable (GRPCReply) -> Void) {
        let call = Call(message: message, deadline: deadline, isCancelled: isCancelled, completion: completion)
        if message.count > ServerCore.inlineDecodeBytes {
            core.pipeline.executor.submit { [self] _ in answer(path, call) }
        } else {
            answer(path, call)
        }
    }

    /// Parses and answers `call` (on the event loop for small messages, else a compute worker).
    private func answer(_ path: String, _ call: Call) {
        do throws(ServingError) {
            try dispatch(path, call)
        } catch {
            call.completion(.failure(error))
        }
    }

    struct Call: Sendable {
        let message: [UInt8]
        let deadline: Double?
        let isCancelled: @Sendable () -> Bool
        let completion: @Sendable (GRPCReply) -> Void

        func parse<M: SwiftProtobuf.Message>(_ type: M.Type) throws(ServingError) -> M {
            do { return try M(serializedBytes: message) } catch {
                throw .invalidInput("cannot parse the \(M.protoMessageName) message: \(error)")
            }
        }

        func reply(_ response: some SwiftProtobuf.Message) { completion(.ok(response)) }
    }

    /// Streaming methods (all refused, see `unimplemented`): Transport hands them over as soon as
    /// their headers arrive instead of waiting for the client to finish sending.
    public static let streamingPaths: Set<String> = ["/inference.GRPCInferenceService/ModelStreamInfer", "/grpc.health.v1.Health/Watch"]

    /// Methods of the served services that this server does not implement.
    static let unimplemented: [String: String] = [
        "/inference.GRPCInferenceService/ModelStreamInfer": "ModelStreamInfer (streaming inference) is not implemented; use ModelInfer",
        "/inference.GRPCInferenceService/ModelStatistics": "ModelStatistics is not implemented; see the REST /metrics endpoint",
        "/inference.GRPCInferenceService/SystemSharedMemoryStatus": "SystemSharedMemoryStatus is not implemented (no shared memory support)",
        "/inference.GRPCInferenceService/SystemSharedMemoryRegister": "SystemSharedMemoryRegister is not implemented (no shared memory support)",
        "/inference.GRPCInferenceService/SystemSharedMemoryUnregister": "SystemSharedMemoryUnregister is not implemented (no shared memory support)",
        "/inference.GRPCInferenceService/CudaSharedMemoryStatus": "CudaSharedMemoryStatus is not implemented (no CUDA support)",
        "/inference.GRPCInferenceService/CudaSharedMemoryRegister": "CudaSharedMemoryRegister is not implemented (no CUDA support)",
        "/inference.GRPCInferenceService/CudaSharedMemoryUnregister": "CudaSharedMemoryUnregister is not implemented (no CUDA support)",
        "/inference.GRPCInferenceService/TraceSetting": "TraceSetting is not implemented",
        "/inference.GRPCInferenceService/LogSettings": "LogSettings is not implemented",
        "/tensorflow.serving.PredictionService/MultiInference": "MultiInference is not implemented: call Classify, Regress or Predict",
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest": "HandleReloadConfigRequest is not implemented; edit the model config file or use the repository load/unload RPCs",
        "/grpc.health.v1.Health/Watch": "Health/Watch is not implemented; poll Health/Check",
    ]

    private func dispatch(_ path: String, _ call: Call) throws(ServingError) {
        switch path {
        // Open Inference Protocol (+ Triton)
        case "/inference.GRPCInferenceService/ServerLive":
            _ = try call.parse(Inference_ServerLiveRequest.self)
            call.reply(Inference_ServerLiveResponse.with { $0.live = true })
        case "/inference.GRPCInferenceService/ServerReady":
            _ = try call.parse(Inference_ServerReadyRequest.self)
            call.reply(Inference_ServerReadyResponse.with { $0.ready = core.serverReady })
        case "/inference.GRPCInferenceService/ModelReady":
            let request = try call.parse(Inference_ModelReadyRequest.self)
            let ready = try modelReady(request.name, version: request.version)
            call.reply(Inference_ModelReadyResponse.with { $0.ready = ready })
        case "/inference.GRPCInferenceService/ServerMetadata":
            _ = try call.parse(Inference_ServerMetadataRequest.self)
            call.reply(Inference_ServerMetadataResponse.with {
                $0.name = ServerCore.serverName
                $0.version = ServerCore.serverVersion
                $0.extensions = ServerCore.extensions
            })
        case "/inference.GRPCInferenceService/ModelMetadata":
            let request = try call.parse(Inference_ModelMetadataRequest.self)
            call.reply(modelMetadata(try lookup(request.name, version: request.version).version))
        case "/inference.GRPCInferenceService/ModelConfig":
            let request = try call.parse(Inference_ModelConfigRequest.self)
            let version = try lookup(request.name, version: request.version).version
            call.reply(Inference_ModelConfigResponse.with { $0.config = Self.modelConfig(version) })
        case "/inference.GRPCInferenceService/ModelInfer":
            let request = try call.parse(Inference_ModelInferRequest.self)
            let servable = try lookup(request.modelName, version: request.modelVersion)
            infer(try GRPCTensors.inferRequest(request), on: servable, protocolName: "grpc_v2", call) { response throws(ServingError) in
                try GRPCReply.serialize(GRPCTensors.inferResponse(response))
            }
        case "/inference.GRPCInferenceService/RepositoryIndex":
            let request = try call.parse(Inference_RepositoryIndexRequest.self)
            call.reply(repositoryIndex(onlyReady: request.ready))
        case "/inference.GRPCInferenceService/RepositoryModelLoad":
            let request = try call.parse(Inference_RepositoryModelLoadRequest.self)
            try ServerCore.rejectLoadParameters(Array(request.parameters.keys))
            let model = request.modelName
            changeRepository(call, answer: Inference_RepositoryModelLoadResponse()) { repository throws(ServingError) in
                try repository.load(model: model)
            }
        case "/inference.GRPCInferenceService/RepositoryModelUnload":
            let model = try call.parse(Inference_RepositoryModelUnloadRequest.self).modelName
            changeRepository(call, answer: Inference_RepositoryModelUnloadResponse()) { repository throws(ServingError) in
                try repository.unload(model: model)
            }

        // TensorFlow Serving
        case "/tensorflow.serving.PredictionService/Predict":
            try predict(try call.parse(Tensorflow_Serving_PredictRequest.self), call)
        case "/tensorflow.serving.PredictionService/Classify":
            let request = try call.parse(Tensorflow_Serving_ClassificationRequest.self)
            try examples(request.modelSpec, request.input, method: .classify, call)
        case "/tensorflow.serving.PredictionService/Regress":
            let request = try call.parse(Tensorflow_Serving_RegressionRequest.self)
            try examples(request.modelSpec, request.input, method: .regress, call)
        case "/tensorflow.serving.PredictionService/GetModelMetadata":
            call.reply(try modelMetadata(try call.parse(Tensorflow_Serving_GetModelMetadataRequest.self)))
        case "/tensorflow.serving.ModelService/GetModelStatus":
            call.reply(try modelStatus(try call.parse(Tensorflow_Serving_GetModelStatusRequest.self)))

        // Health
        case "/grpc.health.v1.Health/Check":
            let request = try call.parse(Grpc_Health_V1_HealthCheckRequest.self)
            let status = try health(request.service)
            call.reply(Grpc_Health_V1_HealthCheckResponse.with { $0.status = status })

        default:
            throw .unsupported(Self.unimplemented[path] ?? "unknown method \(path)")
        }
    }

    /// Runs `change` on the control queue (repository changes are serialised there), then answers.
    private func changeRepository(_ call: Call, answer: some SwiftProtobuf.Message & Sendable,
                                  _ change: @escaping @Sendable (ModelRepository) throws(ServingError) -> Void) {
        let repository = core.repository, completion = call.completion
        core.control {
            do throws(ServingError) {
                try change(repository)
                completion(.ok(answer))
            } catch { completion(.failure(error)) }
        }
    }

    /// Runs `request` through the shared pipeline with the call's deadline and cancellation.
    private func infer(_ request: InferRequest, on servable: BatchScheduler, protocolName: String, _ call: Call,
                       encode: @escaping @Sendable (InferResponse) throws(ServingError) -> [UInt8]) {
        // The completion alone is kept until the reply, not the request message.
        let completion = call.completion
        core.pipeline.run(request, on: servable, protocolName: protocolName, deadline: call.deadline, isCancelled: call.isCancelled,
                          encode: encode) { result in completion(GRPCReply(result)) }
    }

    // MARK: Open Inference Protocol

    /// `version` "" is the latest ready version; otherwise a version number.
    static func selector(_ version: String) throws(ServingError) -> VersionSelector {
        if version.isEmpty { return .latest }
        guard let number = Int(version) else { throw .invalidInput("model version '\(version)' is not a version number") }
        return .number(number)
    }

    private func lookup(_ model: String, version: String) throws(ServingError) -> BatchScheduler {
        try core.repository.lookup(model: model, version: try Self.selector(version))
    }

    /// As REST: unknown models and versions are errors, known but not ready ones answer false.
    private func modelReady(_ model: String, version: String) throws(ServingError) -> Bool {
        do {
            _ = try lookup(model, version: version)
            return true
        } catch {
            switch error {
            case .modelNotFound, .versionNotFound, .invalidInput: throw error
            default: return false
            }
        }
    }

    private func modelMetadata(_ version: LoadedVersion) -> Inference_ModelMetadataResponse {
        func tensors(_ list: [LoadedVersion.TensorMetadata]) -> [Inference_ModelMetadataResponse.TensorMetadata] {
            list.map { tensor in
                .with {
                    $0.name = tensor.name
                    $0.datatype = tensor.datatype.rawValue
                    $0.shape = tensor.shape.map { Int64($0) }
                }
            }
        }
        return .with {
            $0.name = version.name
            $0.versions = core.availableVersions(version.name)
            $0.platform = ServerCore.metadataPlatform(version)
            $0.inputs = tensors(version.inputs)
            $0.outputs = tensors(version.advertisedOutputs)
        }
    }

    /// Triton's model configuration, the fields REST's /config reports.
    static func modelConfig(_ version: LoadedVersion) -> Inference_ModelConfig {
        let batching = version.maxBatchSize > 0
        func dims(_ shape: [Int]) -> [Int64] { (batching ? Array(shape.dropFirst()) : shape).map { Int64($0) } }
        return .with { config in
            config.name = version.name
            config.platform = ServerCore.configPlatform(version)
            config.backend = ServerCore.serverName
            config.maxBatchSize = Int32(clamping: version.maxBatchSize)
            config.input = version.inputs.map { tensor in
                .with {
                    $0.name = tensor.name
                    $0.dataType = tritonType(tensor.datatype)
                    $0.dims = dims(tensor.shape)
                }
            }
            config.output = version.advertisedOutputs.map { tensor in
                .with {
                    $0.name = tensor.name
                    $0.dataType = tritonType(tensor.datatype)
                    $0.dims = dims(tensor.shape)
                }
            }
        }
    }

    static func tritonType(_ type: TensorDataType) -> Inference_DataType {
        switch type {
        case .bool: return .typeBool
        case .uint8: return .typeUint8
        case .uint16: return .typeUint16
        case .uint32: return .typeUint32
        case .uint64: return .typeUint64
        case .int8: return .typeInt8
        case .int16: return .typeInt16
        case .int32: return .typeInt32
        case .int64: return .typeInt64
        case .fp16: return .typeFp16
        case .fp32: return .typeFp32
        case .fp64: return .typeFp64
        case .bytes: return .typeString
        case .bf16: return .typeBf16
        }
    }

    private func repositoryIndex(onlyReady: Bool) -> Inference_RepositoryIndexResponse {
        .with { response in
            response.models = core.repository.index().filter { !onlyReady || $0.state == "READY" }.map { entry in
                .with {
                    $0.name = entry.name
                    $0.version = entry.version.map(String.init) ?? ""
                    $0.state = entry.state
                    $0.reason = entry.reason
                }
            }
        }
    }

    // MARK: TensorFlow Serving

    static let defaultSignature = "serving_default"

    /// The version a ModelSpec names: a number, a label, or (neither) the latest.
    static func selector(_ spec: Tensorflow_Serving_ModelSpec) -> VersionSelector? {
        switch spec.versionChoice {
        case .version(let version)?: return .number(Int(version.value))
        case .versionLabel(let label)?: return .label(label)
        case nil: return nil
        }
    }

    private func predict(_ request: Tensorflow_Serving_PredictRequest, _ call: Call) throws(ServingError) {
        let spec = request.modelSpec
        let servable = try core.repository.lookup(model: spec.name, version: Self.selector(spec) ?? .latest).signature(spec.signatureName)
        let version = servable.version
        let expected = Set(version.inputs.map(\.name)), sent = Set(request.inputs.keys)
        if expected != sent {
            throw .invalidInput("input size does not match signature: \(sent.count)!=\(expected.count) len(\(sent.sorted())) != len(\(expected.sorted())). "
                                + "Sent extra: \(sent.subtracting(expected).sorted()). Missing but required: \(expected.subtracting(sent).sorted()).")
        }
        let limit = max(Self.minimumFillBytes, call.message.count.multipliedReportingOverflow(by: 8).partialValue)
        var inputs: [InferTensor] = []
        for input in version.inputs {
            inputs.append(try GRPCTensors.tensor(named: input.name, from: request.inputs[input.name]!, maxBytes: limit))
        }
        let outputs = try Self.outputSelection(request.outputFilter, version)
        let modelSpec = Self.answeredSpec(version)
        infer(InferRequest(inputs: inputs, outputs: outputs), on: servable, protocolName: "grpc_tf", call) { response throws(ServingError) in
            var reply = Tensorflow_Serving_PredictResponse()
            reply.modelSpec = modelSpec
            for output in response.outputs {
                reply.outputs[output.name] = try GRPCTensors.tensorProto(output)
            }
            return try GRPCReply.serialize(reply)
        }
    }

    /// The ModelSpec an answer carries: the model, the version that ran, the signature.
    static func answeredSpec(_ version: LoadedVersion) -> Tensorflow_Serving_ModelSpec {
        .with {
            $0.name = version.name
            $0.version = Google_Protobuf_Int64Value(Int64(version.version))
            $0.signatureName = version.signature?.name ?? defaultSignature
        }
    }

    enum ExampleMethod { case classify, regress }

    /// Classify / Regress: tf.Examples through the named (or default) signature, which must
    /// be of that method; answers TF Serving's result messages.
    private func examples(_ spec: Tensorflow_Serving_ModelSpec, _ input: Tensorflow_Serving_Input, method: ExampleMethod, _ call: Call) throws(ServingError) {
        let servable = try core.repository.lookup(model: spec.name, version: Self.selector(spec) ?? .latest).signature(spec.signatureName)
        let version = servable.version
        let records: [Tensorflow_Example]
        switch input.kind {
        case .exampleList(let list)?: records = list.examples
        case .exampleListWithContext(let list)?: records = list.examples.map { Self.merged($0, context: list.context) }
        case nil: throw .invalidInput("Input is empty")
        }
        let tensors = try Self.checkedExamples(version, records, method: method)
        let modelSpec = Self.answeredSpec(version)
        infer(InferRequest(inputs: tensors), on: servable, protocolName: "grpc_tf", call) { response throws(ServingError) in
            switch method {
            case .classify:
                var reply = Tensorflow_Serving_ClassificationResponse()
                reply.modelSpec = modelSpec
                reply.result.classifications = try ExampleResults.classifications(response, version).map { row in
                    .with { $0.classes = row.map { entry in .with { $0.label = entry.label; $0.score = entry.score } } }
                }
                return try GRPCReply.serialize(reply)
            case .regress:
                var reply = Tensorflow_Serving_RegressionResponse()
                reply.modelSpec = modelSpec
                reply.result.regressions = try ExampleResults.regressions(response, version).map { value in .with { $0.value = value } }
                return try GRPCReply.serialize(reply)
            }
        }
    }

    /// The example's features over the context's (TF Serving's ExampleListWithContext).
    static func merged(_ example: Tensorflow_Example, context: Tensorflow_Example) -> Tensorflow_Example {
        var result = context
        for (key, value) in example.features.feature { result.features.feature[key] = value }
        return result
    }

    /// The network inputs of `examples` on a classify/regress signature.
    static func checkedExamples(_ version: LoadedVersion, _ examples: [Tensorflow_Example], method: ExampleMethod) throws(ServingError) -> [InferTensor] {
        let wanted = method == .classify ? "tensorflow/serving/classify" : "tensorflow/serving/regress"
        guard let signature = version.signature else {
            throw .invalidInput("\(method == .classify ? "Classify" : "Regress") needs a TensorFlow model with a \(wanted) signature; \(version.name) is an ONNX model")
        }
        guard signature.methodName == wanted else {
            throw .invalidInput("Expected \(method == .classify ? "classification" : "regression") signature method_name to be \(wanted). Was: \(signature.methodName)")
        }
        return try version.exampleTensors(examples)
    }

    /// The outputs to request for `filter` (empty: nil, all): TF Serving's output_filter,
    /// checked against the signature's outputs (`advertisedOutputs`).
    static func outputSelection(_ filter: [String], _ version: LoadedVersion) throws(ServingError) -> [RequestedOutput]? {
        if filter.isEmpty { return nil }
        let known = Set(version.advertisedOutputs.map(\.name))
        var seen = Set<String>()
        for name in filter {
            guard known.contains(name) else {
                throw .invalidInput("output tensor alias not found in signature: \(name) Outputs expected to be in the set {\(known.sorted().joined(separator: ","))}.")
            }
            guard seen.insert(name).inserted else { throw .invalidInput("duplicate output tensor alias: \(name)") }
        }
        return filter.map { RequestedOutput(name: $0) }
    }

    private func modelMetadata(_ request: Tensorflow_Serving_GetModelMetadataRequest) throws(ServingError) -> Tensorflow_Serving_GetModelMetadataResponse {
        guard !request.metadataField.isEmpty else { throw .invalidInput("GetModelMetadataRequest must specify at least one metadata_field") }
        for field in request.metadataField where field != "signature_def" {
            throw .invalidInput("Metadata field \(field) is not supported")
        }
        let spec = request.modelSpec
        let version = try core.repository.lookup(model: spec.name, version: Self.selector(spec) ?? .latest).version
        let signatures = Self.signatureDefMap(version)
        let packed: Google_Protobuf_Any
        do { packed = try Google_Protobuf_Any(message: signatures) } catch { throw .internalError("cannot pack the SignatureDefMap: \(error)") }
        return .with {
            $0.modelSpec = .with { spec in
                spec.name = version.name
                spec.version = Google_Protobuf_Int64Value(Int64(version.version))
            }
            $0.metadata["signature_def"] = packed
        }
    }

    /// The export's own signatures (TensorFlow), or the one predict signature (ONNX), as
    /// REST's model metadata describes them.
    static func signatureDefMap(_ version: LoadedVersion) -> Tensorflow_Serving_SignatureDefMap {
        if !version.signatureDefs.isEmpty {
            return .with { $0.signatureDef = version.signatureDefs }
        }
        if let signature = version.signature {
            var map = Tensorflow_Serving_SignatureDefMap()
            for saved in [signature] + version.signatures.values.compactMap(\.signature) {
                map.signatureDef[saved.name] = .with { def in
                    def.methodName = saved.methodName
                    func info(_ spec: SavedModelSignature.TensorSpec) -> Tensorflow_TensorInfo {
                        .with {
                            $0.name = spec.tensorName
                            $0.dtype = spec.dtype
                            if let shape = spec.shape { $0.tensorShape = GRPCTensors.shapeProto(shape) } else { $0.tensorShape.unknownRank = true }
                        }
                    }
                    for input in saved.inputs { def.inputs[input.alias] = info(input) }
                    for output in saved.outputs { def.outputs[output.alias] = info(output) }
                }
            }
            return map
        }
        func infos(_ list: [LoadedVersion.TensorMetadata]) -> [String: Tensorflow_TensorInfo] {
            var result: [String: Tensorflow_TensorInfo] = [:]
            for tensor in list {
                result[tensor.name] = .with {
                    $0.name = tensor.name
                    $0.dtype = GRPCTensors.tfType(tensor.datatype)
                    $0.tensorShape = GRPCTensors.shapeProto(tensor.shape)
                }
            }
            return result
        }
        return .with {
            $0.signatureDef[defaultSignature] = .with { signature in
                signature.inputs = infos(version.inputs)
                signature.outputs = infos(version.advertisedOutputs)
                signature.methodName = "tensorflow/serving/predict"
            }
        }
    }

    private func modelStatus(_ request: Tensorflow_Serving_GetModelStatusRequest) throws(ServingError) -> Tensorflow_Serving_GetModelStatusResponse {
        let statuses = try core.versionStatuses(request.modelSpec.name, Self.selector(request.modelSpec))
        return .with {
            $0.modelVersionStatus = statuses.map { status in
                .with {
                    $0.version = Int64(status.version)
                    $0.state = Self.tfState(status.state)
                    $0.status = .with {
                        $0.errorCode = status.error == nil ? .ok : .unknown
                        $0.errorMessage = status.error ?? ""
                    }
                }
            }
        }
    }

    static func tfState(_ state: VersionStatus.State) -> Tensorflow_Serving_ModelVersionStatus.State {
        switch state {
        case .loading: return .loading
        case .available: return .available
        case .unloading: return .unloading
        case .end, .failed: return .end
        }
    }

    // MARK: Health

    /// The services a health check may name for the whole server.
    static let serviceNames: Set<String> = ["", "inference.GRPCInferenceService", "tensorflow.serving.PredictionService",
                                            "tensorflow.serving.ModelService", "grpc.health.v1.Health"]

    /// The server ("" or a served gRPC service): SERVING when ready. A model name: SERVING when
    /// it has a ready version and the server is not draining. Anything else is NOT_FOUND.
    private func health(_ service: String) throws(ServingError) -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
        if Self.serviceNames.contains(service) { return core.serverReady ? .serving : .notServing }
        do {
            _ = try core.repository.lookup(model: service, version: .latest)
            return core.isDraining ? .notServing : .serving
        } catch {
            if case .modelNotFound = error { throw .notFound("unknown service \(service)") }
            return .notServing
        }
    }
}
