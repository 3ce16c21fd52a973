import FoundationEssentials
import Serving
import ServingProto
import TensorFlowProto

#if _endian(big)
#error("tensor data is little-endian; GRPCTensors copies host-order values")
#endif

/// Conversions between the gRPC tensor messages (Open Inference Protocol and TensorFlow) and
/// `InferTensor`, whose data is the binary tensor extension layout (little-endian, row-major;
/// BYTES elements each a 4-byte little-endian length then the bytes). Pure functions: they
/// validate every client-supplied count and shape and throw `invalidInput`, never trap.
enum GRPCTensors {
    // MARK: Open Inference Protocol

    /// The server's request form of a ModelInferRequest: tensor data either in every input's
    /// `contents` or in `raw_input_contents` (one entry per input, same order), never mixed.
    static func inferRequest(_ message: Inference_ModelInferRequest) throws(ServingError) -> InferRequest {
        let raw = message.rawInputContents
        if !raw.isEmpty {
            guard raw.count == message.inputs.count else {
                throw .invalidInput("raw_input_contents has \(raw.count) entries for \(message.inputs.count) inputs; send one per input, in order")
            }
            if let mixed = message.inputs.first(where: \.hasContents) {
                throw .invalidInput("input '\(mixed.name)': contents must not be specified when using raw_input_contents; send every input one way")
            }
        }
        var inputs: [InferTensor] = []
        var names = Set<String>()
        for (index, input) in message.inputs.enumerated() {
            let name = input.name
            guard names.insert(name).inserted else { throw .invalidInput("input '\(name)' is given twice") }
            guard let datatype = TensorDataType(rawValue: input.datatype) else {
                throw .invalidInput("input '\(name)' has unknown datatype '\(input.datatype)'")
            }
            let (shape, count) = try checkedShape(input.shape, name: name)
            let data: [UInt8]
            if raw.isEmpty {
                data = try contentsData(input.contents, datatype: datatype, count: count, name: name)
            } else {
                data = [UInt8](raw[index])
                try InferTensor.checkBinaryData(data, datatype: datatype, shape: shape, count: count, name: name)
            }
            inputs.append(InferTensor(name: name, datatype: datatype, shape: shape, data: data, parameters: parameters(input.parameters)))
        }
        let outputs = message.outputs.isEmpty ? nil : message.outputs.map { RequestedOutput(name: $0.name, parameters: parameters($0.parameters)) }
        return InferRequest(id: message.id.isEmpty ? nil : message.id, inputs: inputs, outputs: outputs, parameters: parameters(message.parameters))
    }

    /// A shape as `Int`s and its element count; negative or overflowing shapes are errors.
    static func checkedShape(_ dims: [Int64], name: String) throws(ServingError) -> (shape: [Int], count: Int) {
        let shape = dims.map { Int($0) }
        guard let count = InferTensor.elementCount(shape) else {
            throw .invalidInput("input '\(name)' has shape \(shape): dimensions must be non-negative and their product must fit")
        }
        return (shape, count)
    }

    /// Typed `contents` in the binary layout: exactly `count` values in the datatype's field;
    /// 8- and 16-bit integers arrive widened to 32 bits and are narrowed (range-checked).
    /// FP16 and BF16 have no field and must travel raw.
    static func contentsData(_ contents: Inference_InferTensorContents, datatype: TensorDataType, count: Int, name: String) throws(ServingError) -> [UInt8] {
        func exact<T>(_ values: [T], _ field: String) throws(ServingError) -> [T] {
            guard values.count == count else {
                throw .invalidInput("input '\(name)': \(values.count) values in \(field), its shape needs \(count) \(datatype.rawValue) values")
            }
            return values
        }
        switch datatype {
        case .bool: return try exact(contents.boolContents, "bool_contents").map { $0 ? 1 : 0 }
        case .int8: return littleEndianBytes(try narrow(try exact(contents.intContents, "int_contents"), to: Int8.self, name: name))
        case .int16: return littleEndianBytes(try narrow(try exact(contents.intContents, "int_contents"), to: Int16.self, name: name))
        case .int32: return littleEndianBytes(try exact(contents.intContents, "int_contents"))
        case .int64: return littleEndianBytes(try exact(contents.int64Contents, "int64_contents"))
        case .uint8: return littleEndianBytes(try narrow(try exact(contents.uintContents, "uint_contents"), to: UInt8.self, name: name))
        case .uint16: return littleEndianBytes(try narrow(try exact(contents.uintContents, "uint_contents"), to: UInt16.self, name: name))
        case .uint32: return littleEndianBytes(try exact(contents.uintContents, "uint_contents"))
        case .uint64: return littleEndianBytes(try exact(contents.uint64Contents, "uint64_contents"))
        case .fp32: return littleEndianBytes(try exact(contents.fp32Contents, "fp32_contents"))
        case .fp64: return littleEndianBytes(try exact(contents.fp64Contents, "fp64_contents"))
        case .bytes:
            var data: [UInt8] = []
            for element in try exact(contents.bytesContents, "bytes_contents") { BytesElements.append(element, to: &data) }
            return data
        case .fp16, .bf16:
            throw .invalidInput("input '\(name)': \(datatype.rawValue) has no typed contents field; send it in raw_input_contents")
        }
    }

    static func narrow<Source: BinaryInteger, Target: FixedWidthInteger>(_ values: [Source], to: Target.Type, name: String) throws(ServingError) -> [Target] {
        var result: [Target] = []
        result.reserveCapacity(values.count)
        for (index, value) in values.enumerated() {
            guard let narrowed = Target(exactly: value) else {
                throw .invalidInput("input '\(name)': value \(value) at \(index) is out of range for \(Target.self)")
            }
            result.append(narrowed)
        }
        return result
    }

    static func parameters(_ map: [String: Inference_InferParameter]) -> [String: ParameterValue] {
        var result: [String: ParameterValue] = [:]
        for (key, parameter) in map {
            switch parameter.parameterChoice {
            case .boolParam(let value)?: result[key] = .bool(value)
            case .int64Param(let value)?: result[key] = .int(value)
            case .stringParam(let value)?: result[key] = .string(value)
            case .doubleParam(let value)?: result[key] = .double(value)
            case .uint64Param(let value)?: result[key] = Int64(exactly: value).map { .int($0) } ?? .double(Double(value))
            case nil: break
            }
        }
        return result
    }

    /// A ModelInferResponse with every output in `raw_output_contents`, in output order (the
    /// form tritonclient reads; KServe's client reads it too).
    static func inferResponse(_ response: InferResponse) -> Inference_ModelInferResponse {
        var message = Inference_ModelInferResponse()
        message.modelName = response.modelName
        message.modelVersion = String(response.modelVersion)
        message.id = response.id ?? ""
        message.outputs = response.outputs.map { output in
            var tensor = Inference_ModelInferResponse.InferOutputTensor()
            tensor.name = output.name
            tensor.datatype = output.datatype.rawValue
            tensor.shape = output.shape.map { Int64($0) }
            return tensor
        }
        message.rawOutputContents = response.outputs.map { Data($0.data) }
        return message
    }

    // MARK: TensorFlow

    static func tensorType(_ dtype: Tensorflow_DataType) -> TensorDataType? {
        switch dtype {
        case .dtFloat: return .fp32
        case .dtDouble: return .fp64
        case .dtInt32: return .int32
        case .dtUint8: return .uint8
        case .dtInt16: return .int16
        case .dtInt8: return .int8
        case .dtString: return .bytes
        case .dtInt64: return .int64
        case .dtBool: return .bool
        case .dtBfloat16: return .bf16
        case .dtUint16: return .uint16
        case .dtHalf: return .fp16
        case .dtUint32: return .uint32
        case .dtUint64: return .uint64
        default: return nil
        }
    }

    static func tfType(_ type: TensorDataType) -> Tensorflow_DataType {
        switch type {
        case .fp32: return .dtFloat
        case .fp64: return .dtDouble
        case .int32: return .dtInt32
        case .uint8: return .dtUint8
        case .int16: return .dtInt16
        case .int8: return .dtInt8
        case .bytes: return .dtString
        case .int64: return .dtInt64
        case .bool: return .dtBool
        case .bf16: return .dtBfloat16
        case .uint16: return .dtUint16
        case .fp16: return .dtHalf
        case .uint32: return .dtUint32
        case .uint64: return .dtUint64
        }
    }

    static func shapeProto(_ shape: [Int]) -> Tensorflow_TensorShapeProto {
        var proto = Tensorflow_TensorShapeProto()
        proto.dim = shape.map { size in
            var dim = Tensorflow_TensorShapeProto.Dim()
            dim.size = Int64(size)
            return dim
        }
        return proto
    }

    /// A TensorProto as an InferTensor: non-empty `tensor_content` (little-endian) wins for
    /// numeric types, else the dtype's `*_val` field with TensorFlow's fill rule (a shorter
    /// list repeats its last value; an empty one is an error unless the shape is empty).
    /// `half_val` carries FP16 and BF16 bit patterns; DT_STRING `string_val` becomes BYTES.
    /// `maxBytes` bounds what the fill rule may expand a small message into.
    static func tensor(named name: String, from proto: Tensorflow_TensorProto, maxBytes: Int) throws(ServingError) -> InferTensor {
        guard let datatype = tensorType(proto.dtype) else {
            throw .invalidInput("input '\(name)' has dtype \(proto.dtype), which this server does not take")
        }
        guard !proto.tensorShape.unknownRank else { throw .invalidInput("input '\(name)' has an unknown rank; send its shape") }
        let (shape, count) = try checkedShape(proto.tensorShape.dim.map(\.size), name: name)
        if let size = datatype.elementSize, !proto.tensorContent.isEmpty {
            let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, proto.tensorContent.count == bytes else {
                throw .invalidInput("input '\(name)': tensor_content has \(proto.tensorContent.count) bytes, shape \(shape) of \(proto.dtype) needs \(overflow ? "more" : String(bytes))")
            }
            return InferTensor(name: name, datatype: datatype, shape: shape, data: [UInt8](proto.tensorContent))
        }
        func filled<T>(_ values: [T], _ field: String, elementBytes: Int) throws(ServingError) -> [T] {
            if values.count == count { return values }
            guard values.count < count else {
                throw .invalidInput("input '\(name)': \(field) has \(values.count) values, more than the \(count) of shape \(shape)")
            }
            guard let last = values.last else {
                throw .invalidInput("input '\(name)': \(field) is empty (and no tensor_content), shape \(shape) needs \(count) values")
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: elementBytes)
            guard !overflow, bytes <= maxBytes else {
                throw .invalidInput("input '\(name)': shape \(shape) filled from \(values.count) values in \(field) exceeds \(maxBytes) bytes")
            }
            return values + repeatElement(last, count: count - values.count)
        }
        let data: [UInt8]
        switch datatype {
        case .fp32: data = littleEndianBytes(try filled(proto.floatVal, "float_val", elementBytes: 4))
        case .fp64: data = littleEndianBytes(try filled(proto.doubleVal, "double_val", elementBytes: 8))
        case .int32: data = littleEndianBytes(try filled(proto.intVal, "int_val", elementBytes: 4))
        case .int16: data = littleEndianBytes(try narrow(try filled(proto.intVal, "int_val", elementBytes: 2), to: Int16.self, name: name))
        case .int8: data = littleEndianBytes(try narrow(try filled(proto.intVal, "int_val", elementBytes: 1), to: Int8.self, name: name))
        case .uint8: data = littleEndianBytes(try narrow(try filled(proto.intVal, "int_val", elementBytes: 1), to: UInt8.self, name: name))
        case .uint16: data = littleEndianBytes(try narrow(try filled(proto.intVal, "int_val", elementBytes: 2), to: UInt16.self, name: name))
        case .int64: data = littleEndianBytes(try filled(proto.int64Val, "int64_val", elementBytes: 8))
        case .uint32: data = littleEndianBytes(try filled(proto.uint32Val, "uint32_val", elementBytes: 4))
        case .uint64: data = littleEndianBytes(try filled(proto.uint64Val, "uint64_val", elementBytes: 8))
        case .bool: data = try filled(proto.boolVal, "bool_val", elementBytes: 1).map { $0 ? 1 : 0 }
        case .fp16, .bf16:
            data = littleEndianBytes(try filled(proto.halfVal, "half_val", elementBytes: 2).map { UInt16(truncatingIfNeeded: $0) })
        case .bytes:
            let strings = try filled(proto.stringVal, "string_val", elementBytes: 4 + (proto.stringVal.last?.count ?? 0))
            var bytes: [UInt8] = []
            bytes.reserveCapacity(strings.reduce(0) { $0 + 4 + $1.count })
            for element in strings { BytesElements.append(element, to: &bytes) }
            data = bytes
        }
        return InferTensor(name: name, datatype: datatype, shape: shape, data: data)
    }

    /// An InferTensor as a TensorProto: `tensor_content` for numeric types, `string_val` for
    /// BYTES (both forms `tf.make_ndarray` reads).
    static func tensorProto(_ tensor: InferTensor) throws(ServingError) -> Tensorflow_TensorProto {
        var proto = Tensorflow_TensorProto()
        proto.dtype = tfType(tensor.datatype)
        proto.tensorShape = shapeProto(tensor.shape)
        if tensor.datatype == .bytes {
            guard let elements = BytesElements.ranges(tensor.data) else {
                throw .internalError("output '\(tensor.name)' holds malformed BYTES data")
            }
            proto.stringVal = elements.map { Data(tensor.data[$0]) }
        } else {
            proto.tensorContent = Data(tensor.data)
        }
        return proto
    }

    /// The values' bytes, little-endian (the host order on every platform this server runs on).
    static func littleEndianBytes<T: BitwiseCopyable>(_ values: [T]) -> [UInt8] {
        values.withUnsafeBytes { [UInt8]($0) }
    }
}
