import Serving
import WireFormat

/// Open Inference Protocol V2 `/infer`: JSON `data` (nested or flat) and the binary tensor
/// extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data`,
/// `binary_data_output`).
extension RESTService {
    func inferV2(_ servable: BatchScheduler, _ request: RESTRequest, _ completion: @escaping @Sendable (RESTResponse) -> Void) throws(ServingError) {
        // No Inference-Header-Content-Length: the whole body is JSON; 0: a raw binary request.
        var headerLength = request.body.count
        var rawBinary = false
        if let text = request.header("inference-header-content-length") {
            guard let value = Int(text.trimmingCharacters(in: " \t")), value >= 0, value <= request.body.count else {
                throw .invalidInput("Inference-Header-Content-Length '\(text)' must be a byte count within the body (\(request.body.count) bytes)")
            }
            headerLength = value
            rawBinary = value == 0
        }
        let inferRequest: InferRequest
        var binaryOutputs = false
        var requestedBinary: [String: Bool] = [:]
        if let image = servable.version.imageInput, request.header("content-type")?.lowercased().hasPrefix("image/") == true {
            // A raw image body: one image for the image input.
            var bytes: [UInt8] = []
            BytesElements.append(request.body, to: &bytes)
            inferRequest = InferRequest(inputs: [InferTensor(name: image.name, datatype: .bytes, shape: [1], data: bytes)])
        } else if rawBinary {
            // Raw binary request: the body is the single input's bytes, batch 1.
            guard servable.version.inputs.count == 1 else { throw .invalidInput("a raw binary request needs a model with one input") }
            let input = servable.version.inputs[0]
            let shape = input.shape.map { $0 == -1 ? 1 : $0 }
            inferRequest = InferRequest(inputs: [InferTensor(name: input.name, datatype: input.datatype, shape: shape, data: request.body)])
            binaryOutputs = true
        } else {
            let json = try parseJSON(request.body[0..<headerLength])
            guard case .object(let object) = json else { throw .invalidInput("the inference request must be a JSON object") }
            var binary = request.body[headerLength...]
            var id: String?
            if let value = object["id"] {
                guard let text = value.stringValue else { throw .invalidInput("'id' must be a string") }
                id = text
            }
            let parameters = try Self.parameters(object["parameters"], context: "request")
            binaryOutputs = parameters["binary_data_output"]?.boolValue ?? false
            guard let inputList = object["inputs"]?.arrayElements else { throw .invalidInput("the request needs an 'inputs' list") }
            var inputs: [InferTensor] = []
            for (index, entry) in inputList.enumerated() {
                guard case .object(let input) = entry else { throw .invalidInput("inputs[\(index)] must be an object") }
                guard let name = input["name"]?.stringValue else { throw .invalidInput("inputs[\(index)] needs a 'name'") }
                guard let typeName = input["datatype"]?.stringValue else { throw .invalidInput("input '\(name)' needs a 'datatype'") }
                guard let datatype = TensorDataType(rawValue: typeName) else { throw .invalidInput("input '\(name)' has unknown datatype '\(typeName)'") }
                guard let shapeValue = input["shape"], let shape = try? Self.shape(shapeValue) else {
                    throw .invalidInput("input '\(name)' needs a 'shape' of non-negative integers")
                }
                let tensorParameters = try Self.parameters(input["parameters"], context: "input '\(name)'")
                guard let count = InferTensor.elementCount(shape), count <= request.body.count * 8 + 1 else {
                    throw .invalidInput("input '\(name)' has shape \(shape): more elements than the request can carry")
                }
                var data: [UInt8]
                if let size = tensorParameters["binary_data_size"] {
                    guard let bytes = size.intValue, bytes >= 0 else {
                        throw .invalidInput("input '\(name)': binary_data_size must be a non-negative integer, got \(size.jsonText)")
                    }
                    guard Int(bytes) <= binary.count else {
                        throw .invalidInput("input '\(name)': binary_data_size \(bytes) exceeds the \(binary.count) binary bytes left in the body")
                    }
                    data = Array(binary.prefix(Int(bytes)))
                    binary = binary.dropFirst(Int(bytes))
                    try InferTensor.checkBinaryData(data, datatype: datatype, shape: shape, count: count, name: name)
                } else {
                    guard let value = input["data"] else { throw .invalidInput("input '\(name)' has neither 'data' nor binary_data_size") }
                    data = try TensorJSON.decode(value, as: datatype, count: count, name: name).bytes
                }
                inputs.append(InferTensor(name: name, datatype: datatype, shape: shape, data: data, parameters: tensorParameters))
            }
            if !binary.isEmpty { throw .invalidInput("\(binary.count) bytes of binary data follow the inputs that no input claims") }
            var outputs: [RequestedOutput]?
            if let outputList = object["outputs"]?.arrayElements {
                outputs = []
                for (index, entry) in outputList.enumerated() {
                    guard case .object(let output) = entry, let name = output["name"]?.stringValue else {
                        throw .invalidInput("outputs[\(index)] must be an object with a 'name'")
                    }
                    let outputParameters = try Self.parameters(output["parameters"], context: "output '\(name)'")
                    if let flag = outputParameters["binary_data"]?.boolValue { requestedBinary[name] = flag }
                    outputs!.append(RequestedOutput(name: name, parameters: outputParameters))
                }
            }
            inferRequest = InferRequest(id: id, inputs: inputs, outputs: outputs, parameters: parameters)
        }
        let defaultBinary = binaryOutputs, perOutput = requestedBinary
        run(inferRequest, on: servable, protocolName: "v2", encode: { response in
            Self.encodeV2(response, binary: { perOutput[$0] ?? defaultBinary })
        }, completion: completion)
    }

    static func encodeV2(_ response: InferResponse, binary: (String) -> Bool) -> RESTResponse {
        var out = JSONBuilder(capacity: 256 + response.outputs.reduce(0) { $0 + $1.data.count * 3 })
        var tail: [UInt8] = []
        out.beginObject()
        out.key("model_name"); out.string(response.modelName)
        out.key("model_version"); out.string(String(response.modelVersion))
        if let id = response.id { out.key("id"); out.string(id) }
        out.key("outputs"); out.beginArray()
        for output in response.outputs {
            out.beginObject()
            out.key("name"); out.string(output.name)
            out.key("datatype"); out.string(output.datatype.rawValue)
            out.key("shape"); out.beginArray(); for size in output.shape { out.int(size) }; out.endArray()
            if binary(output.name) {
                out.key("parameters"); out.beginObject(); out.key("binary_data_size"); out.int(output.data.count); out.endObject()
                tail.append(contentsOf: output.data)
            } else {
                out.key("data")
                TensorJSON.write(output, shape: [output.elementCount], into: &out)
            }
            out.endObject()
        }
        out.endArray()
        out.endObject()
        if tail.isEmpty { return .json(200, out.bytes) }
        let jsonLength = out.bytes.count
        return RESTResponse(status: 200, headers: [("Content-Type", "application/octet-stream"),
                                                   ("Inference-Header-Content-Length", String(jsonLength))],
                            body: out.bytes + tail)
    }

    static func shape(_ value: JSONValue) throws -> [Int] {
        if case .numericArray(let array) = value, array.shape.count == 1 {
            return try array.decode(as: Int64.self).map { dimension in
                guard dimension >= 0 else { throw ServingError.invalidInput("negative dimension") }
                return Int(dimension)
            }
        }
        throw ServingError.invalidInput("shape must be a list of integers")
    }

    static func parameters(_ value: JSONValue?, context: String) throws(ServingError) -> [String: ParameterValue] {
        guard let value else { return [:] }
        guard case .object(let object) = value else { throw .invalidInput("parameters of \(context) must be an object") }
        var result: [String: ParameterValue] = [:]
        for (key, member) in object {
            switch member {
            case .string(let text): result[key] = .string(text)
            case .bool(let flag): result[key] = .bool(flag)
            case .number(let number): result[key] = number.int64Value.map { .int($0) } ?? .double(number.doubleValue)
            default: throw .invalidInput("parameter '\(key)' of \(context) must be a string, number or boolean")
            }
        }
        return result
    }
}

extension String {
    func trimmingCharacters(in characters: String) -> String {
        var text = Substring(self)
        while let first = text.first, characters.contains(first) { text = text.dropFirst() }
        while let last = text.last, characters.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
