import FoundationEssentials
import ServingProto
import SwiftProtobuf
import TensorFlowProto
import WireFormat

/// TF Serving's gRPC PredictionService (`tensorflow.serving.PredictionService/Predict`), the
/// call the classic TF Serving client makes: images go as one DT_STRING tensor of JPEG bytes,
/// .npy arrays as typed tensors, to a named signature. Outputs `classes` (strings) and
/// `scores` are read as the server's ranking; any other output as scores to rank here.
final class TFServingEndpoint {
    let client: GRPCClient
    let model: String
    let version: String?
    let signature: String
    let verbose: Bool

    static let service = "tensorflow.serving.PredictionService"

    init(client: GRPCClient, model: String, version: String?, signature: String, verbose: Bool) {
        self.client = client
        self.model = model
        self.version = version
        self.signature = signature
        self.verbose = verbose
    }

    private var spec: Tensorflow_Serving_ModelSpec {
        .with {
            $0.name = model
            $0.signatureName = signature
            if let version, let number = Int64(version) { $0.version = Google_Protobuf_Int64Value(number) }
        }
    }

    /// GetModelMetadata: the signature's input aliases, string inputs first.
    func inputNames() throws -> [String] {
        var request = Tensorflow_Serving_GetModelMetadataRequest()
        request.modelSpec = spec
        request.metadataField = ["signature_def"]
        let response: Tensorflow_Serving_GetModelMetadataResponse = try call("GetModelMetadata", request, summary: model)
        guard let packed = response.metadata["signature_def"] else { throw ResponseError(description: "the metadata has no signature_def") }
        let map: Tensorflow_Serving_SignatureDefMap
        do { map = try Tensorflow_Serving_SignatureDefMap(unpackingAny: packed) } catch {
            throw ResponseError(description: "the metadata's signature_def is not a SignatureDefMap (\(error))")
        }
        let name = signature.isEmpty ? "serving_default" : signature
        guard let def = map.signatureDef[name] else {
            throw ResponseError(description: "the model has no signature '\(name)' (signatures: \(map.signatureDef.keys.sorted().joined(separator: ", ")))")
        }
        return def.inputs.sorted { ($0.value.dtype == .dtString ? 0 : 1, $0.key) < ($1.value.dtype == .dtString ? 0 : 1, $1.key) }.map(\.key)
    }

    func predict(_ payload: Payload, defaultInputName: String, outputName: String?) throws -> [RowResult] {
        var request = Tensorflow_Serving_PredictRequest()
        request.modelSpec = spec
        switch payload {
        case .images(let images):
            var tensor = Tensorflow_TensorProto()
            tensor.dtype = .dtString
            tensor.tensorShape = .with { $0.dim = [.with { $0.size = Int64(images.count) }] }
            tensor.stringVal = images.map { Data($0.bytes) }
            request.inputs[defaultInputName] = tensor
        case .tensors(let tensors):
            for (name, array) in tensors {
                var tensor = Tensorflow_TensorProto()
                tensor.dtype = Self.tfType(array.dtype)
                tensor.tensorShape = .with { $0.dim = array.shape.map { size in .with { $0.size = Int64(size) } } }
                tensor.tensorContent = Data(array.data)
                request.inputs[name ?? defaultInputName] = tensor
            }
        }
        let response: Tensorflow_Serving_PredictResponse = try call(
            "Predict", request, summary: ModelEndpoint.describe(payload, inputName: defaultInputName))
        return try Self.rows(response.outputs, outputName: outputName)
    }

    static func tfType(_ dtype: NPYArray.DType) -> Tensorflow_DataType {
        switch dtype {
        case .float32: return .dtFloat
        case .float64: return .dtDouble
        case .int64: return .dtInt64
        case .int32: return .dtInt32
        case .int8: return .dtInt8
        case .uint8: return .dtUint8
        case .bool: return .dtBool
        }
    }

    /// `classes` + `scores` as ranked rows; else the named (or only float) output as scores.
    static func rows(_ outputs: [String: Tensorflow_TensorProto], outputName: String?) throws -> [RowResult] {
        if outputName == nil, let classes = outputs["classes"], let scores = outputs["scores"] {
            let labels = classes.stringVal.map { String(decoding: $0, as: UTF8.self) }
            let values = try floats(scores, name: "scores")
            guard labels.count == values.count, !values.isEmpty else {
                throw ResponseError(description: "'classes' has \(labels.count) values, 'scores' \(values.count)")
            }
            let width = Int(scores.tensorShape.dim.last?.size ?? Int64(values.count))
            guard width > 0, values.count % width == 0 else { throw ResponseError(description: "'scores' has an unexpected shape") }
            return stride(from: 0, to: values.count, by: width).map { start in
                .ranked((start..<start + width).map { (labels[$0], nil, Double(values[$0])) })
            }
        }
        let name = outputName ?? outputs.keys.sorted().first { outputs[$0]!.dtype == .dtFloat }
        guard let name, let output = outputs[name] else {
            throw ResponseError(description: "the response has no output \(outputName.map { "'\($0)'" } ?? "of floats") (outputs: \(outputs.keys.sorted().joined(separator: ", ")))")
        }
        let values = try floats(output, name: name)
        let width = output.tensorShape.dim.count >= 2 ? Int(output.tensorShape.dim.last!.size) : values.count
        guard width > 0, values.count % width == 0 else { throw ResponseError(description: "'\(name)' has an unexpected shape") }
        return stride(from: 0, to: values.count, by: width).map { .scores(values[$0..<$0 + width].map(Double.init)) }
    }

    static func floats(_ tensor: Tensorflow_TensorProto, name: String) throws -> [Float] {
        guard tensor.dtype == .dtFloat else { throw ResponseError(description: "output '\(name)' is not DT_FLOAT") }
        if !tensor.tensorContent.isEmpty {
            return tensor.tensorContent.withUnsafeBytes { raw in (0..<raw.count / 4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        }
        return tensor.floatVal
    }

    private func call<Response: SwiftProtobuf.Message>(_ method: String, _ request: some SwiftProtobuf.Message, summary: String) throws -> Response {
        let bytes: [UInt8]
        do { bytes = try request.serializedBytes() } catch {
            throw ResponseError(description: "cannot encode the \(method) request: \(error)")
        }
        if verbose { writeStderr("> gRPC \(Self.service)/\(method) (\(summary); \(bytes.count) bytes)") }
        let answer = try client.unary("/\(Self.service)/\(method)", bytes)
        if verbose { writeStderr("< gRPC OK (\(answer.count) bytes)") }
        do { return try Response(serializedBytes: answer) } catch {
            throw ResponseError(description: "the server's \(method) response is not a valid \(Response.protoMessageName) message (\(error))")
        }
    }
}
