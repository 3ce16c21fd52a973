import Engine
import ImageCodec
import TensorFlowProto

extension TensorDataType {
    /// A TensorFlow element type as the Open Inference Protocol names it (DT_STRING: BYTES).
    public init(tensorflow type: Tensorflow_DataType) {
        switch type {
        case .dtFloat: self = .fp32
        case .dtDouble: self = .fp64
        case .dtInt32: self = .int32
        case .dtInt64: self = .int64
        case .dtInt8: self = .int8
        case .dtUint8: self = .uint8
        case .dtInt16: self = .int16
        case .dtUint16: self = .uint16
        case .dtUint32: self = .uint32
        case .dtUint64: self = .uint64
        case .dtBool: self = .bool
        case .dtHalf: self = .fp16
        case .dtBfloat16: self = .bf16
        default: self = .bytes
        }
    }
}

extension ImageInput {
    /// The JPEG stage of a SavedModel signature: TF's own decode and preprocessing,
    /// reproduced bit for bit, into NHWC float32 rows of the model input `input`.
    init(tensorflow steps: SavedModelSignature.ImageSteps, input: String) {
        func arithmetic(_ step: SavedModelSignature.ImageSteps.Arithmetic) -> TensorFlowImageSteps.Arithmetic {
            switch step {
            case .add(let v): return .add(v)
            case .sub(let v): return .sub(v)
            case .mul(let v): return .mul(v)
            case .div(let v): return .div(v)
            }
        }
        let tensorflow = TensorFlowImageSteps(channels: steps.channels, fastDCT: steps.fastDCT,
                                              beforeResize: steps.beforeResize.map(arithmetic),
                                              centralCropFraction: steps.centralCropFraction,
                                              height: steps.height, width: steps.width, halfPixelCenters: steps.halfPixelCenters,
                                              afterResize: steps.afterResize.map(arithmetic))
        var preprocessing = ImagePreprocessing(width: steps.width, height: steps.height, channels: steps.channels, layout: .nhwc)
        preprocessing.tensorflow = tensorflow
        self.init(name: input, preprocessing: preprocessing)
    }
}

extension LoadedVersion {
    /// Request-facing inputs of a SavedModel signature: its aliases and declared types
    /// (DT_STRING as BYTES).
    static func signatureInputs(_ signature: SavedModelSignature) -> [TensorMetadata] {
        signature.inputs.map { TensorMetadata(name: $0.alias, datatype: TensorDataType(tensorflow: $0.dtype), shape: $0.shape ?? [-1]) }
    }

    /// Maps a request made in the signature's terms onto the network's inputs: aliases to
    /// engine input names, int32 widened to the engine's int64, serialized tf.Examples parsed
    /// into their features. JPEG bytes stay BYTES (`decodeImages` runs next). No-op for ONNX.
    public func expandSignatureInputs(_ request: inout InferRequest) throws(ServingError) {
        guard let signature else { return }
        var expanded: [InferTensor] = []
        for tensor in request.inputs {
            guard let feed = signature.feeds[tensor.name] else { expanded.append(tensor); continue }
            switch feed {
            case .tensor(let input):
                var renamed = tensor
                renamed.name = input
                if tensor.datatype == .int32, model.inputs.first(where: { $0.name == input })?.dtype == .int64 {
                    renamed.datatype = .int64
                    renamed.data = tensor.data.withUnsafeBytes { raw in
                        var wide: [UInt8] = []
                        wide.reserveCapacity(raw.count * 2)
                        for index in 0..<(raw.count / 4) {
                            withUnsafeBytes(of: Int64(raw.loadUnaligned(fromByteOffset: index * 4, as: Int32.self)).littleEndian) { wide.append(contentsOf: $0) }
                        }
                        return wide
                    }
                }
                expanded.append(renamed)
            case .images(let input, _):
                var renamed = tensor
                renamed.name = input
                expanded.append(renamed)
            case .examples:
                guard tensor.datatype == .bytes, let ranges = BytesElements.ranges(tensor.data) else {
                    throw .invalidInput("input '\(tensor.name)' must hold serialized tf.Example records (BYTES)")
                }
                var examples: [Tensorflow_Example] = []
                for (index, range) in ranges.enumerated() {
                    do {
                        examples.append(try Tensorflow_Example(serializedBytes: Array(tensor.data[range])))
                    } catch {
                        throw .invalidInput("element \(index) of '\(tensor.name)' is not a serialized tf.Example: \(error)")
                    }
                }
                expanded.append(contentsOf: try exampleTensors(examples))
            }
        }
        request.inputs = expanded
    }

    /// The signature's tf.Example features as network inputs, one row per example (TF
    /// Serving's Classify / Regress and `:classify` / `:regress` requests).
    public func exampleTensors(_ examples: [Tensorflow_Example]) throws(ServingError) -> [InferTensor] {
        guard let signature else { throw .invalidInput("\(name) is not a TensorFlow model with a tf.Example signature") }
        guard let features = signature.feeds.values.lazy.compactMap({ feed -> [SavedModelSignature.ExampleFeature]? in
            if case .examples(let features) = feed { return features }
            return nil
        }).first else {
            throw .invalidInput("signature '\(signature.name)' does not take tf.Example input")
        }
        guard !examples.isEmpty else { throw .invalidInput("the request holds no examples") }
        var tensors: [InferTensor] = []
        for feature in features {
            let input: String
            switch feature.feed {
            case .tensor(let name), .images(let name, _): input = name
            case .examples: continue
            }
            let perExample = feature.shape.reduce(1, *)
            var data: [UInt8] = []
            for (index, example) in examples.enumerated() {
                let value = example.features.feature[feature.key]
                func missing() -> ServingError { .invalidInput("example \(index) lacks feature '\(feature.key)'") }
                switch feature.dtype {
                case .dtString:
                    if case .bytesList(let list)? = value?.kind, list.value.count == perExample {
                        for element in list.value { BytesElements.append(element, to: &data) }
                    } else if value == nil, let fallback = feature.defaultValue, perExample == 1 {
                        BytesElements.append(fallback, to: &data)
                    } else {
                        throw value == nil ? missing() : .invalidInput("feature '\(feature.key)' of example \(index) must hold \(perExample) byte strings")
                    }
                case .dtFloat:
                    // Integers written in JSON for a float feature arrive as an int64_list.
                    let floats: [Float]
                    switch value?.kind {
                    case .floatList(let list)?: floats = list.value
                    case .int64List(let list)?: floats = list.value.map { Float($0) }
                    default: throw value == nil ? missing() : .invalidInput("feature '\(feature.key)' of example \(index) must be a float_list")
                    }
                    guard floats.count == perExample else { throw .invalidInput("feature '\(feature.key)' of example \(index) has \(floats.count) values, \(perExample) expected") }
                    for element in floats { withUnsafeBytes(of: element) { data.append(contentsOf: $0) } }
                case .dtInt64:
                    guard case .int64List(let list)? = value?.kind else { throw value == nil ? missing() : .invalidInput("feature '\(feature.key)' of example \(index) must be an int64_list") }
                    guard list.value.count == perExample else { throw .invalidInput("feature '\(feature.key)' of example \(index) has \(list.value.count) values, \(perExample) expected") }
                    for element in list.value { withUnsafeBytes(of: element.littleEndian) { data.append(contentsOf: $0) } }
                default:
                    throw .invalidInput("feature '\(feature.key)' has type \(feature.dtype), which is not supported")
                }
            }
            let datatype: TensorDataType = feature.dtype == .dtString ? .bytes : feature.dtype == .dtFloat ? .fp32 : .int64
            tensors.append(InferTensor(name: input, datatype: datatype, shape: [examples.count] + feature.shape, data: data))
        }
        return tensors
    }
}
