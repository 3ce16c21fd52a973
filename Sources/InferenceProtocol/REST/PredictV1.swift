import FoundationEssentials
import Serving
import TensorFlowProto
import WireFormat

/// KServe V1 / TF Serving REST `:predict`: row (`instances`) and columnar (`inputs`) formats,
/// named and unnamed inputs, `{"b64": ...}` strings; answers `predictions` or `outputs`.
extension RESTService {
    func predictV1(_ defaultServable: BatchScheduler, _ request: RESTRequest, _ completion: @escaping @Sendable (RESTResponse) -> Void) throws(ServingError) {
        var servable = defaultServable
        if let image = servable.version.imageInput, request.header("content-type")?.lowercased().hasPrefix("image/") == true {
            // A raw image body: one instance.
            var bytes: [UInt8] = []
            BytesElements.append(request.body, to: &bytes)
            run(InferRequest(inputs: [InferTensor(name: image.name, datatype: .bytes, shape: [1], data: bytes)]), on: servable,
                    protocolName: "v1", encode: { response throws(ServingError) in try Self.encodeV1(response, rowFormat: true) },
                    completion: completion)
            return
        }
        let body = try parseJSON(request.body[...], allowNonFinite: true)
        guard case .object(let object) = body else { throw .invalidInput("the request body must be a JSON object") }
        if let signature = object["signature_name"] {
            guard let name = signature.stringValue else { throw .invalidInput("'signature_name' must be a string") }
            do { servable = try servable.signature(name) } catch { throw .invalidInput(error.message) }
        }
        let imageName = servable.version.imageInput?.name
        let instances = object["instances"], columns = object["inputs"]
        if instances != nil && columns != nil { throw .invalidInput("the request has both 'instances' and 'inputs'; send one of them") }
        let inputs = servable.version.inputs
        var tensors: [InferTensor] = []
        let rowFormat: Bool
        if let instances {
            rowFormat = true
            guard let rows = instances.arrayElements, !rows.isEmpty else { throw .invalidInput("'instances' must be a non-empty list") }
            let named = rows[0].objectValue != nil && !Self.isEncodedImage(rows[0])
            if !named {
                guard inputs.count == 1 else {
                    throw .invalidInput("the model has \(inputs.count) inputs (\(inputs.map(\.name).joined(separator: ", "))): each instance must be an object naming them")
                }
                tensors.append(try imagesOr(rows, inputs[0], imageName) { () throws(ServingError) in try tensor(instances, for: inputs[0], batchOf: rows.count) })
            } else {
                for input in inputs {
                    var values: [JSONValue] = []
                    for (index, row) in rows.enumerated() {
                        guard let rowObject = row.objectValue else { throw .invalidInput("instance \(index) is not an object") }
                        guard Set(rowObject.keys) == Set(inputs.map(\.name)) else {
                            throw .invalidInput("instance \(index) has keys \(rowObject.keys.sorted()); the model's inputs are \(inputs.map(\.name).sorted())")
                        }
                        values.append(rowObject[input.name]!)
                    }
                    tensors.append(try imagesOr(values, input, imageName) { () throws(ServingError) in try stack(values, for: input) })
                }
            }
        } else if let columns {
            rowFormat = false
            if let named = columns.objectValue, !TensorJSON.isBase64Object(columns) {
                for input in inputs {
                    guard let value = named[input.name] else { throw .invalidInput("Missing named input: \(input.name) in 'inputs' object.") }
                    tensors.append(try imagesOr(value.arrayElements ?? [value], input, imageName) { () throws(ServingError) in
                        try tensor(value, for: input, batchOf: nil)
                    })
                }
                for key in named.keys where !inputs.contains(where: { $0.name == key }) {
                    throw .invalidInput("'inputs' names '\(key)', which the model does not take (inputs: \(inputs.map(\.name).joined(separator: ", ")))")
                }
            } else {
                guard inputs.count == 1 else { throw .invalidInput("the model has \(inputs.count) inputs: 'inputs' must be an object naming them") }
                tensors.append(try imagesOr(columns.arrayElements ?? [columns], inputs[0], imageName) { () throws(ServingError) in
                    try tensor(columns, for: inputs[0], batchOf: nil)
                })
            }
        } else {
            throw .invalidInput("Missing 'inputs' or 'instances' key")
        }
        run(InferRequest(inputs: tensors), on: servable, protocolName: "v1", encode: { response throws(ServingError) in
            try Self.encodeV1(response, rowFormat: rowFormat)
        }, completion: completion)
    }

    /// The image input's values as encoded images when they are `{"b64"}` objects; otherwise
    /// (any input, or a tensor sent to the image input) whatever `tensor` decodes.
    private func imagesOr(_ values: [JSONValue], _ input: LoadedVersion.TensorMetadata, _ imageName: String?,
                          _ tensor: () throws(ServingError) -> InferTensor) throws(ServingError) -> InferTensor {
        if input.name == imageName, let first = values.first, Self.isEncodedImage(first) {
            return try Self.images(values, input: input.name)
        }
        return try tensor()
    }

    /// The encoded image in `{"b64": ...}` or `{"image_bytes": {"b64": ...}}` (the classic
    /// Inception client's form).
    static func encodedImage(_ value: JSONValue) throws(ServingError) -> [UInt8]? {
        if let bytes = try TensorJSON.base64Object(value) { return bytes }
        if case .object(let object) = value, object.count == 1, let inner = object["image_bytes"] { return try TensorJSON.base64Object(inner) }
        return nil
    }

    static func isEncodedImage(_ value: JSONValue) -> Bool {
        if TensorJSON.isBase64Object(value) { return true }
        if case .object(let object) = value, object.count == 1, let inner = object["image_bytes"] { return TensorJSON.isBase64Object(inner) }
        return false
    }

    /// A BYTES tensor [N] of the encoded images in `values`.
    static func images(_ values: [JSONValue], input: String) throws(ServingError) -> InferTensor {
        var bytes: [UInt8] = []
        for (index, value) in values.enumerated() {
            guard let image = try encodedImage(value) else {
                throw .invalidInput("instance \(index) of image input '\(input)' must be {\"b64\": \"<base64 JPEG>\"} (or {\"image_bytes\": {\"b64\": ...}}), got \(value.kindName)")
            }
            BytesElements.append(image, to: &bytes)
        }
        return InferTensor(name: input, datatype: .bytes, shape: [values.count], data: bytes)
    }

    /// One input's whole tensor from JSON; `batchOf` checks a row-format batch size.
    private func tensor(_ value: JSONValue, for input: LoadedVersion.TensorMetadata, batchOf rows: Int?) throws(ServingError) -> InferTensor {
        if input.datatype == .bytes, let elements = value.arrayElements {
            let (bytes, _) = try TensorJSON.decode(.array(elements), as: .bytes, count: nil, name: input.name)
            return InferTensor(name: input.name, datatype: .bytes, shape: [elements.count], data: bytes)
        }
        let (bytes, shape) = try TensorJSON.decode(value, as: input.datatype, count: nil, name: input.name)
        if let rows, shape.first != rows { throw .invalidInput("instances of '\(input.name)' do not have one shape") }
        return InferTensor(name: input.name, datatype: input.datatype, shape: shape, data: bytes)
    }

    /// Stacks one value per instance into `[instances] + row shape`.
    private func stack(_ values: [JSONValue], for input: LoadedVersion.TensorMetadata) throws(ServingError) -> InferTensor {
        var data: [UInt8] = []
        var rowShape: [Int]?
        for (index, value) in values.enumerated() {
            let (bytes, shape) = try TensorJSON.decode(value, as: input.datatype, count: nil, name: input.name)
            if let rowShape, rowShape != shape {
                throw .invalidInput("instance \(index) of '\(input.name)' has shape \(shape), instance 0 has \(rowShape)")
            }
            rowShape = shape
            data.append(contentsOf: bytes)
        }
        return InferTensor(name: input.name, datatype: input.datatype, shape: [values.count] + (rowShape ?? []), data: data)
    }

    /// TF Serving REST `:classify` / `:regress`: `examples` (objects of feature values, with an
    /// optional `context` merged into each) through a classify or regress signature; answers
    /// `{"results": [[[label, score], ...], ...]}` or `{"results": [value, ...]}` (TF Serving's code and tests use "results").
    func examplesV1(_ defaultServable: BatchScheduler, verb: String, _ request: RESTRequest,
                    _ completion: @escaping @Sendable (RESTResponse) -> Void) throws(ServingError) {
        let body = try parseJSON(request.body[...], allowNonFinite: true)
        guard case .object(let object) = body else { throw .invalidInput("the request body must be a JSON object") }
        var servable = defaultServable
        if let signature = object["signature_name"] {
            guard let name = signature.stringValue else { throw .invalidInput("'signature_name' must be a string") }
            do { servable = try servable.signature(name) } catch { throw .invalidInput(error.message) }
        }
        guard let list = object["examples"]?.arrayElements, !list.isEmpty else { throw .invalidInput("'examples' must be a non-empty list") }
        var context = Tensorflow_Example()
        if let value = object["context"] {
            guard value.objectValue != nil else { throw .invalidInput("'context' must be an object") }
            context = try Self.example(value, label: "context")
        }
        var records: [Tensorflow_Example] = []
        for (index, value) in list.enumerated() {
            records.append(GRPCService.merged(try Self.example(value, label: "example \(index)"), context: context))
        }
        let method: GRPCService.ExampleMethod = verb == "classify" ? .classify : .regress
        let version = servable.version
        let tensors = try GRPCService.checkedExamples(version, records, method: method)
        run(InferRequest(inputs: tensors), on: servable, protocolName: "v1", encode: { response throws(ServingError) in
            var out = JSONBuilder(capacity: 256)
            out.beginObject()
            out.key("results"); out.beginArray()
            if method == .classify {
                for row in try ExampleResults.classifications(response, version) {
                    out.beginArray()
                    for entry in row {
                        out.beginArray(); out.string(entry.label); out.float(entry.score); out.endArray()
                    }
                    out.endArray()
                }
            } else {
                for value in try ExampleResults.regressions(response, version) { out.float(value) }
            }
            out.endArray()
            out.endObject()
            return .json(200, out.bytes)
        }, completion: completion)
    }

    /// A tf.Example from TF Serving's JSON: each feature a value or a list of strings,
    /// `{"b64": ...}` objects, integers or floats (any non-integer makes a float list).
    static func example(_ value: JSONValue, label: String) throws(ServingError) -> Tensorflow_Example {
        guard let members = value.objectValue else { throw .invalidInput("\(label) must be an object of features") }
        var example = Tensorflow_Example()
        for key in members.keys {
            let feature = members[key]!
            let elements = TensorJSON.isBase64Object(feature) ? [feature] : (feature.arrayElements ?? [feature])
            var entry = Tensorflow_Feature()
            if let first = elements.first, first.stringValue != nil || TensorJSON.isBase64Object(first) {
                var bytes = Tensorflow_BytesList()
                for element in elements {
                    if let decoded = try TensorJSON.base64Object(element) { bytes.value.append(Data(decoded)) }
                    else if let text = element.stringValue { bytes.value.append(Data(text.utf8)) }
                    else { throw .invalidInput("feature '\(key)' of \(label) mixes strings and other values") }
                }
                entry.bytesList = bytes
            } else {
                // Integers (and true/false as 1/0) make an int64_list; any fraction or exponent a float_list.
                var integers: [Int64] = [], floats: [Float] = [], allIntegers = true
                for element in elements {
                    if let flag = element.boolValue {
                        integers.append(flag ? 1 : 0)
                        floats.append(flag ? 1 : 0)
                        continue
                    }
                    guard let number = element.numberValue else { throw .invalidInput("feature '\(key)' of \(label) must hold strings, numbers or booleans") }
                    if number.isIntegerLiteral, let value = number.int64Value { integers.append(value) } else { allIntegers = false }
                    floats.append(number.floatValue)
                }
                if allIntegers { entry.int64List = .with { $0.value = integers } } else { entry.floatList = .with { $0.value = floats } }
            }
            example.features.feature[key] = entry
        }
        return example
    }

    static func encodeV1(_ response: InferResponse, rowFormat: Bool) throws(ServingError) -> RESTResponse {
        var out = JSONBuilder(capacity: 256 + response.outputs.reduce(0) { $0 + $1.data.count * 3 })
        out.beginObject()
        if rowFormat {
            let batch = response.outputs.first?.shape.first ?? 0
            for output in response.outputs where output.shape.first != batch || output.shape.isEmpty {
                throw .invalidInput("output '\(output.name)' has no batch dimension of \(batch); use the columnar 'inputs' format")
            }
            out.key("predictions"); out.beginArray()
            for row in 0..<batch {
                if response.outputs.count > 1 { out.beginObject() }
                for output in response.outputs {
                    if response.outputs.count > 1 { out.key(output.name) }
                    let rowShape = Array(output.shape.dropFirst())
                    TensorJSON.write(output, shape: rowShape, first: row * rowShape.reduce(1, *), into: &out,
                                     base64Strings: output.name.hasSuffix("_bytes"))
                }
                if response.outputs.count > 1 { out.endObject() }
            }
            out.endArray()
        } else {
            out.key("outputs")
            if response.outputs.count == 1 {
                TensorJSON.write(response.outputs[0], shape: response.outputs[0].shape, into: &out, base64Strings: response.outputs[0].name.hasSuffix("_bytes"))
            } else {
                out.beginObject()
                for output in response.outputs {
                    out.key(output.name)
                    TensorJSON.write(output, shape: output.shape, into: &out, base64Strings: output.name.hasSuffix("_bytes"))
                }
                out.endObject()
            }
        }
        out.endObject()
        return .json(200, out.bytes)
    }
}
