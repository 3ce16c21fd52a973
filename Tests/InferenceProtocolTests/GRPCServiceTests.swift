import Foundation
import ServingProto
import TensorFlowProto
import SwiftProtobuf
import Synchronization
import Testing
@testable import InferenceProtocol
@testable import Serving

func serialized(_ message: some SwiftProtobuf.Message) -> [UInt8] { try! message.serializedBytes() }

func decode<M: SwiftProtobuf.Message>(_ type: M.Type, _ reply: GRPCReply) throws -> M {
    #expect(reply.status == .ok, "\(reply.status): \(reply.message)")
    return try M(serializedBytes: try #require(reply.payload))
}

/// GRPCService over a repository with the Relu model, end to end through the shared pipeline.
@Suite(.serialized) struct GRPCServiceTests {
    static let services = Mutex<(rest: RESTService, grpc: GRPCService, repository: ModelRepository)?>(nil)
    /// One loaded repository for the suite (loading plans the model for every batch size).
    var grpc: GRPCService {
        get throws {
            try Self.services.withLock { cached in
                if cached == nil { cached = try ServingFixtures.services() }
                return cached!.grpc
            }
        }
    }

    func reluRequest(_ values: [Float], raw: Bool = true) -> Inference_ModelInferRequest {
        var request = Inference_ModelInferRequest()
        request.modelName = "relu"
        request.id = "req-7"
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = "x"
        input.datatype = "FP32"
        input.shape = [Int64(values.count / 2), 2]
        if raw { request.rawInputContents = [Data(bytes(values))] } else { input.contents.fp32Contents = values }
        request.inputs = [input]
        return request
    }

    @Test func unknownAndUnimplementedMethods() throws {
        let service = try grpc
        let unknown = ServingFixtures.call(service, "/no.Such/Method")
        #expect(unknown.status == .unimplemented && unknown.message == "unknown method /no.Such/Method" && unknown.payload == nil)
        let multi = ServingFixtures.call(service, "/tensorflow.serving.PredictionService/MultiInference")
        #expect(multi.status == .unimplemented && multi.message.contains("MultiInference"))
        // Classify is implemented (for tf.Example signatures): an empty request is refused, not unknown.
        let classify = ServingFixtures.call(service, "/tensorflow.serving.PredictionService/Classify")
        #expect(classify.status != .unimplemented && classify.status != .ok && !classify.message.isEmpty)
        let stream = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelStreamInfer")
        #expect(stream.status == .unimplemented && stream.message.contains("ModelStreamInfer"))
        #expect(ServingFixtures.call(service, "/grpc.health.v1.Health/Watch").status == .unimplemented)
    }

    @Test func unparseableMessageNamesItsType() throws {
        let reply = ServingFixtures.call(try grpc, "/inference.GRPCInferenceService/ModelInfer", [0xff, 0xff, 0xff])
        #expect(reply.status == .invalidArgument && reply.message.contains("inference.ModelInferRequest"))
    }

    @Test func healthAndMetadata() throws {
        let service = try grpc
        #expect(try decode(Inference_ServerLiveResponse.self, ServingFixtures.call(service, "/inference.GRPCInferenceService/ServerLive")).live)
        #expect(try decode(Inference_ServerReadyResponse.self, ServingFixtures.call(service, "/inference.GRPCInferenceService/ServerReady")).ready)
        let check = { (name: String) in
            ServingFixtures.call(service, "/grpc.health.v1.Health/Check", serialized(Grpc_Health_V1_HealthCheckRequest.with { $0.service = name }))
        }
        #expect(try decode(Grpc_Health_V1_HealthCheckResponse.self, check("")).status == .serving)
        #expect(try decode(Grpc_Health_V1_HealthCheckResponse.self, check("relu")).status == .serving)
        #expect(check("nope").status == .notFound)

        let ready = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelReady",
                                         serialized(Inference_ModelReadyRequest.with { $0.name = "relu"; $0.version = "1" }))
        #expect(try decode(Inference_ModelReadyResponse.self, ready).ready)
        let noVersion = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelReady",
                                             serialized(Inference_ModelReadyRequest.with { $0.name = "relu"; $0.version = "9" }))
        #expect(noVersion.status == .notFound)

        let server = try decode(Inference_ServerMetadataResponse.self, ServingFixtures.call(service, "/inference.GRPCInferenceService/ServerMetadata"))
        #expect(server.name == RESTService.serverName && server.extensions.contains("model_repository"))

        let metadata = try decode(Inference_ModelMetadataResponse.self, ServingFixtures.call(
            service, "/inference.GRPCInferenceService/ModelMetadata", serialized(Inference_ModelMetadataRequest.with { $0.name = "relu" })))
        #expect(metadata.versions == ["1"] && metadata.inputs.map(\.name) == ["x"] && metadata.inputs[0].shape == [-1, 2])
        #expect(metadata.outputs[0].datatype == "FP32")

        let config = try decode(Inference_ModelConfigResponse.self, ServingFixtures.call(
            service, "/inference.GRPCInferenceService/ModelConfig", serialized(Inference_ModelConfigRequest.with { $0.name = "relu" }))).config
        #expect(config.name == "relu" && config.maxBatchSize == 32 && config.input[0].dataType == .typeFp32 && config.input[0].dims == [2])

        let index = try decode(Inference_RepositoryIndexResponse.self, ServingFixtures.call(
            service, "/inference.GRPCInferenceService/RepositoryIndex", serialized(Inference_RepositoryIndexRequest.with { $0.ready = true })))
        #expect(index.models.map(\.name) == ["relu"] && index.models[0].state == "READY" && index.models[0].version == "1")
    }

    @Test func modelInferRawAndTyped() throws {
        let service = try grpc
        for raw in [true, false] {
            let reply = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelInfer", serialized(reluRequest([-1, 2, 3, -4], raw: raw)))
            let response = try decode(Inference_ModelInferResponse.self, reply)
            #expect(response.modelName == "relu" && response.modelVersion == "1" && response.id == "req-7")
            #expect(response.outputs.map(\.name) == ["y"] && response.outputs[0].shape == [2, 2] && response.outputs[0].datatype == "FP32")
            #expect(floats([UInt8](response.rawOutputContents[0])) == [0, 2, 3, 0])
        }
    }

    @Test func modelInferClassification() throws {
        var request = reluRequest([1, 5])
        var output = Inference_ModelInferRequest.InferRequestedOutputTensor()
        output.name = "y"
        output.parameters["classification"] = .with { $0.int64Param = 1 }
        request.outputs = [output]
        let response = try decode(Inference_ModelInferResponse.self,
                                  ServingFixtures.call(try grpc, "/inference.GRPCInferenceService/ModelInfer", serialized(request)))
        #expect(response.outputs[0].datatype == "BYTES" && response.outputs[0].shape == [1, 1])
        let raw = [UInt8](response.rawOutputContents[0])
        #expect(BytesElements.ranges(raw)?.map { String(decoding: raw[$0], as: UTF8.self) } == ["5.0:1"])
    }

    @Test func modelInferErrors() throws {
        let service = try grpc
        var unknown = reluRequest([1, 2])
        unknown.modelName = "missing"
        #expect(ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelInfer", serialized(unknown)).status == .notFound)
        var badShape = reluRequest([1, 2])
        badShape.inputs[0].shape = [1, 3]
        let reply = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelInfer", serialized(badShape))
        #expect(reply.status == .invalidArgument)
    }

    @Test func deadlineAndCancellation() throws {
        let service = try grpc
        let late = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelInfer", serialized(reluRequest([1, 2])),
                                        deadline: monotonicNow() - 1)
        #expect(late.status == .deadlineExceeded)
        let cancelled = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelInfer", serialized(reluRequest([1, 2])),
                                             isCancelled: { true })
        #expect(cancelled.status == .cancelled)
        let inTime = ServingFixtures.call(service, "/inference.GRPCInferenceService/ModelInfer", serialized(reluRequest([1, 2])),
                                          deadline: monotonicNow() + 30)
        #expect(inTime.status == .ok)
    }

    @Test func predict() throws {
        let service = try grpc
        var request = Tensorflow_Serving_PredictRequest()
        request.modelSpec.name = "relu"
        request.modelSpec.signatureName = "serving_default"
        request.inputs["x"] = .with {
            $0.dtype = .dtFloat
            $0.tensorShape = GRPCTensors.shapeProto([2, 2])
            $0.floatVal = [-3, 4]   // filled: [-3, 4, 4, 4]
        }
        let response = try decode(Tensorflow_Serving_PredictResponse.self,
                                  ServingFixtures.call(service, "/tensorflow.serving.PredictionService/Predict", serialized(request)))
        #expect(response.modelSpec.name == "relu" && response.modelSpec.version.value == 1 && response.modelSpec.signatureName == "serving_default")
        let y = try #require(response.outputs["y"])
        #expect(y.dtype == .dtFloat && y.tensorShape.dim.map(\.size) == [2, 2] && floats([UInt8](y.tensorContent)) == [0, 4, 4, 4])

        var wrongSignature = request
        wrongSignature.modelSpec.signatureName = "predict_images"
        let signature = ServingFixtures.call(service, "/tensorflow.serving.PredictionService/Predict", serialized(wrongSignature))
        #expect(signature.status == .notFound && signature.message == "Serving signature key \"predict_images\" not found.")

        var extra = request
        extra.inputs["z"] = request.inputs["x"]
        let mismatch = ServingFixtures.call(service, "/tensorflow.serving.PredictionService/Predict", serialized(extra))
        #expect(mismatch.status == .invalidArgument && mismatch.message.hasPrefix("input size does not match signature"))

        var filter = request
        filter.outputFilter = ["nope"]
        #expect(ServingFixtures.call(service, "/tensorflow.serving.PredictionService/Predict", serialized(filter)).status == .invalidArgument)
        filter.outputFilter = ["y"]
        #expect(ServingFixtures.call(service, "/tensorflow.serving.PredictionService/Predict", serialized(filter)).status == .ok)

        var version = request
        version.modelSpec.version = Google_Protobuf_Int64Value(7)
        #expect(ServingFixtures.call(service, "/tensorflow.serving.PredictionService/Predict", serialized(version)).status == .notFound)
    }

    @Test func tfMetadataAndStatus() throws {
        let service = try grpc
        var request = Tensorflow_Serving_GetModelMetadataRequest()
        request.modelSpec.name = "relu"
        let empty = ServingFixtures.call(service, "/tensorflow.serving.PredictionService/GetModelMetadata", serialized(request))
        #expect(empty.status == .invalidArgument && empty.message == "GetModelMetadataRequest must specify at least one metadata_field")
        request.metadataField = ["signature_def"]
        let response = try decode(Tensorflow_Serving_GetModelMetadataResponse.self,
                                  ServingFixtures.call(service, "/tensorflow.serving.PredictionService/GetModelMetadata", serialized(request)))
        let packed = try #require(response.metadata["signature_def"])
        #expect(packed.typeURL == "type.googleapis.com/tensorflow.serving.SignatureDefMap")
        let map = try Tensorflow_Serving_SignatureDefMap(unpackingAny: packed)
        let signature = try #require(map.signatureDef["serving_default"])
        #expect(signature.methodName == "tensorflow/serving/predict")
        #expect(signature.inputs["x"]?.dtype == .dtFloat && signature.inputs["x"]?.tensorShape.dim.map(\.size) == [-1, 2] && signature.inputs["x"]?.name == "x")

        let status = try decode(Tensorflow_Serving_GetModelStatusResponse.self, ServingFixtures.call(
            service, "/tensorflow.serving.ModelService/GetModelStatus",
            serialized(Tensorflow_Serving_GetModelStatusRequest.with { $0.modelSpec.name = "relu" })))
        #expect(status.modelVersionStatus.map(\.version) == [1] && status.modelVersionStatus[0].state == .available)
        #expect(status.modelVersionStatus[0].status.errorCode == .ok)
        #expect(ServingFixtures.call(service, "/tensorflow.serving.ModelService/HandleReloadConfigRequest").status == .unimplemented)
    }
}

/// Repository changes and shutdown use a repository of their own (they change server state).
struct GRPCLifecycleTests {
    @Test func unloadLoadAndShutdown() throws {
        let (_, service, _) = try ServingFixtures.services()
        let unload = ServingFixtures.call(service, "/inference.GRPCInferenceService/RepositoryModelUnload",
                                          serialized(Inference_RepositoryModelUnloadRequest.with { $0.modelName = "relu" }))
        #expect(unload.status == .ok)
        let check = { (name: String) in
            ServingFixtures.call(service, "/grpc.health.v1.Health/Check", serialized(Grpc_Health_V1_HealthCheckRequest.with { $0.service = name }))
        }
        #expect(try decode(Grpc_Health_V1_HealthCheckResponse.self, check("relu")).status == .notServing)
        let load = ServingFixtures.call(service, "/inference.GRPCInferenceService/RepositoryModelLoad",
                                        serialized(Inference_RepositoryModelLoadRequest.with { $0.modelName = "relu" }))
        #expect(load.status == .ok)
        #expect(try decode(Grpc_Health_V1_HealthCheckResponse.self, check("relu")).status == .serving)
        let missing = ServingFixtures.call(service, "/inference.GRPCInferenceService/RepositoryModelLoad",
                                           serialized(Inference_RepositoryModelLoadRequest.with { $0.modelName = "other" }))
        #expect(missing.status == .notFound)

        service.beginShutdown()
        #expect(try decode(Grpc_Health_V1_HealthCheckResponse.self, check("")).status == .notServing)
        #expect(try decode(Grpc_Health_V1_HealthCheckResponse.self, check("relu")).status == .notServing)
        #expect(try !decode(Inference_ServerReadyResponse.self, ServingFixtures.call(service, "/inference.GRPCInferenceService/ServerReady")).ready)
    }
}

/// BatchScheduler drops cancelled and expired queued requests when it next forms a batch.
struct SchedulerCancellationTests {
    @Test func cancelledAndExpiredQueuedRequestsNeverRun() throws {
        let base = ServingFixtures.temporaryDirectory() + "/relu"
        try ServingFixtures.writeReluModel(base: base)
        let version = try LoadedVersion(name: "relu", version: 1, directory: base + "/1", settings: ModelSettings(), workers: 1)
        let executor = ManualExecutor()
        let scheduler = BatchScheduler(version: version, configuration: BatchingConfiguration(maxBatchSize: 1), executor: executor, metrics: nil)
        let prepared = try version.prepare(InferRequest(inputs: [InferTensor(name: "x", datatype: .fp32, shape: [1, 2], data: bytes([Float(1), -1]))]))
        let results = Mutex<[String: Result<InferResponse, ServingError>]>([:])
        func record(_ key: String) -> BatchScheduler.Completion {
            { result, _, _ in results.withLock { $0[key] = result } }
        }
        let cancelFlag = Atomic<Bool>(false)
        try scheduler.enqueue(prepared, completion: record("first"))   // runs: one batch in flight (the only worker)
        #expect(executor.pending == 1)
        try scheduler.enqueue(prepared, isCancelled: { cancelFlag.load(ordering: .relaxed) }, completion: record("cancelled"))
        try scheduler.enqueue(prepared, deadline: monotonicNow() + 0.01, completion: record("expired"))
        try scheduler.enqueue(prepared, completion: record("last"))
        #expect(executor.pending == 1)
        cancelFlag.store(true, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.02)
        // The first batch finishes; the queue drops the cancelled and the expired request and
        // runs the last one.
        executor.runNext()
        #expect(executor.pending == 1)
        executor.runNext()
        #expect(executor.pending == 0)
        let final = results.withLock { $0 }
        #expect((try? final["first"]?.get())?.outputs.first.map { floats($0.data) } == [1, 0])
        #expect((try? final["last"]?.get()) != nil)
        guard case .failure(.cancelled)? = final["cancelled"] else { Issue.record("cancelled: \(String(describing: final["cancelled"]))"); return }
        guard case .failure(.deadlineExceeded)? = final["expired"] else { Issue.record("expired: \(String(describing: final["expired"]))"); return }
    }
}

/// The pipeline checks cancellation and the deadline again when the compute worker picks up
/// an image request: a request cancelled before its decode started is never decoded.
struct ImageDecodeCancellationTests {
    @Test func cancelledBeforeDecodeIsNotDecoded() throws {
        let executor = ManualExecutor()
        let config = "parameters { key: \"image_input\" value { string_value: \"x\" } }\n"
        let (_, service, _) = try ServingFixtures.services(executor: executor, dims: [4, 4, 3], config: config)
        var request = Inference_ModelInferRequest()
        request.modelName = "relu"
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = "x"
        input.datatype = "BYTES"
        input.shape = [1]
        request.inputs = [input]
        request.rawInputContents = [Data(lengthPrefixed([[0x01, 0x02, 0x03]]))]   // not a JPEG
        let message = serialized(request)

        let replies = Mutex<[GRPCReply]>([])
        let cancelled = Atomic<Bool>(false)
        service.handle(path: "/inference.GRPCInferenceService/ModelInfer", message: message, deadline: nil,
                       isCancelled: { cancelled.load(ordering: .relaxed) }) { reply in replies.withLock { $0.append(reply) } }
        #expect(executor.pending == 1 && replies.withLock { $0.isEmpty })
        cancelled.store(true, ordering: .relaxed)
        executor.runNext()
        #expect(replies.withLock { $0.map(\.status) } == [.cancelled])
        #expect(executor.pending == 0)

        // The same request not cancelled is decoded (and fails: the bytes are no image).
        service.handle(path: "/inference.GRPCInferenceService/ModelInfer", message: message, deadline: nil,
                       isCancelled: { false }) { reply in replies.withLock { $0.append(reply) } }
        executor.runNext()
        #expect(replies.withLock { $0.map(\.status) } == [.cancelled, .invalidArgument])
    }
}
