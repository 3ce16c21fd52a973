import FuzzSupport
import InferenceProtocol

// gRPC request messages into internal requests and back: protobuf bytes for the Open
// Inference Protocol (ModelInferRequest with typed contents or raw_input_contents, metadata,
// config, repository) and TensorFlow Serving (PredictRequest with TensorProtos of every
// dtype, Classify/Regress with tf.Examples, GetModelMetadata, GetModelStatus), run end to
// end on three tiny real models (see FuzzServices). Every call gets exactly one reply, and
// a client's bytes never cause INTERNAL / UNKNOWN.
//
// Input: [method: 1 byte] [message bytes...]

nonisolated(unsafe) let services = FuzzServices()

let paths = [
    "/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelInfer",
    "/tensorflow.serving.PredictionService/Predict", "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.PredictionService/Classify", "/tensorflow.serving.PredictionService/Regress",
    "/tensorflow.serving.PredictionService/GetModelMetadata", "/tensorflow.serving.ModelService/GetModelStatus",
    "/inference.GRPCInferenceService/ModelMetadata", "/inference.GRPCInferenceService/ModelConfig",
    "/inference.GRPCInferenceService/ModelReady", "/inference.GRPCInferenceService/ServerMetadata",
    "/inference.GRPCInferenceService/RepositoryIndex", "/tensorflow.serving.PredictionService/MultiInference",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let path = input.pick(paths)
    let reply = services.call(path, input.rest())
    if reply.status == .internalError || reply.status == .unknown {
        fuzzFailure("\(path): \(reply.status) \(reply.message)")
    }
    return 0
}
