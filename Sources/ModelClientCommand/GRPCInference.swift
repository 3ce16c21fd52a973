#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import FoundationEssentials
#endif
import ServingProto
import SwiftProtobuf
import WireFormat

/// Open Inference Protocol gRPC calls (`inference.GRPCInferenceService`) to one model over a
/// `GRPCClient`: the gRPC twin of `ModelEndpoint`'s V2 REST calls, with the same tensors and the
/// same reading of the outputs. Errors are `HTTPClientError`, `GRPCStatusError` or
/// `ResponseError`.
final class GRPCEndpoint {
    let client: GRPCClient
    let model: String
    let version: String?
    let verbose: Bool

    static let service = "inference.GRPCInferenceService"

    init(client: GRPCClient, model: String, version: String?, verbose: Bool) {
        self.client = client
        self.model = model
        self.version = version
        self.verbose = verbose
    }

    /// ModelMetadata: input and output names in model order.
    func metadata() throws -> (inputs: [String], outputs: [String]) {
        var request = Inference_ModelMetadataRequest()
        request.name = model
        request.version = version ?? ""
        let response: Inference_ModelMetadataResponse = try call("ModelMetadata", request, summary: model)
        return (response.inputs.map(\.name), response.outputs.map(\.name))
    }

    /// ModelInfer with `raw_input_contents` (the tensors V2 REST sends as binary data, see
    /// `ModelEndpoint.v2Inputs`). `classify` (output name, k) requests that output with the
    /// parameter `classification: k` (int64); otherwise every output comes back.
    func infer(_ payload: Payload, defaultInputName: String, classify: (output: String, k: Int)?, outputName: String?) throws -> [RowResult] {
        var request = Inference_ModelInferRequest()
        request.modelName = model
        request.modelVersion = version ?? ""
        for tensor in ModelEndpoint.v2Inputs(payload, defaultInputName: defaultInputName) {
            var input = Inference_ModelInferRequest.InferInputTensor()
            input.name = tensor.name
            input.datatype = tensor.datatype
            input.shape = tensor.shape.map(Int64.init)
            request.inputs.append(input)
            request.rawInputContents.append(Data(tensor.data))
        }
        if let classify {
            var output = Inference_ModelInferRequest.InferRequestedOutputTensor()
            output.name = classify.output
            var parameter = Inference_InferParameter()
            parameter.int64Param = Int64(classify.k)
            output.parameters["classification"] = parameter
            request.outputs.append(output)
        }
        let response: Inference_ModelInferResponse = try call(
            "ModelInfer", request, summary: ModelEndpoint.describe(payload, inputName: defaultInputName))
        return try ModelEndpoint.v2Rows(Self.outputs(response), outputName: classify?.output ?? outputName)
    }

    /// The response's outputs with their `raw_output_contents` (one per output, in order) or,
    /// without those, their typed `contents`.
    static func outputs(_ response: Inference_ModelInferResponse) throws -> [ModelEndpoint.V2Output] {
        let raw = response.rawOutputContents
        guard raw.isEmpty || raw.count == response.outputs.count else {
            throw ResponseError(description: "the response has \(response.outputs.count) outputs but \(raw.count) raw_output_contents")
        }
        return response.outputs.enumerated().map { index, output in
            ModelEndpoint.V2Output(name: output.name, datatype: output.datatype, shape: output.shape.map { Int(clamping: $0) },
                                   binary: raw.isEmpty ? nil : Array(raw[index])[...],
                                   data: raw.isEmpty ? values(output.contents) : nil)
        }
    }

    /// Typed tensor contents as a flat JSON list (only the field for the tensor's datatype is set).
    private static func values(_ contents: Inference_InferTensorContents) -> JSONValue {
        var values: [JSONValue] = contents.boolContents.map { .bool($0) }
        values += contents.intContents.map { .number(JSONNumber(Double($0))) }
        values += contents.int64Contents.map { .number(JSONNumber(Double($0))) }
        values += contents.uintContents.map { .number(JSONNumber(Double($0))) }
        values += contents.uint64Contents.map { .number(JSONNumber(Double($0))) }
        values += contents.fp32Contents.map { .number(JSONNumber(Double($0))) }
        values += contents.fp64Contents.map { .number(JSONNumber($0)) }
        values += contents.bytesContents.map { .string(String(decoding: $0, as: UTF8.self)) }
        return .array(values)
    }

    /// One unary call, logged with --verbose like the REST requests.
    private func call<Response: SwiftProtobuf.Message>(_ method: String, _ request: some SwiftProtobuf.Message, summary: String) throws -> Response {
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            throw ResponseError(description: "cannot encode the \(method) request: \(error)")
        }
        if verbose { writeStderr("> gRPC \(method) (\(summary); \(bytes.count) bytes)") }
        let started = ModelEndpoint.milliseconds()
        let answer: [UInt8]
        do {
            answer = try client.unary("/\(Self.service)/\(method)", bytes)
        } catch let error as GRPCStatusError {
            if verbose { writeStderr("< gRPC \(GRPCStatusCode.name(error.code)) (\(elapsed(since: started)) ms)") }
            throw error
        }
        if verbose { writeStderr("< gRPC OK (\(answer.count) bytes, \(elapsed(since: started)) ms)") }
        do {
            return try Response(serializedBytes: answer)
        } catch {
            throw ResponseError(description: "the server's \(method) response is not a valid \(Response.protoMessageName) message (\(error))")
        }
    }

    private func elapsed(since started: Double) -> String {
        formatted(ModelEndpoint.milliseconds() - started, digits: 4)
    }
}
