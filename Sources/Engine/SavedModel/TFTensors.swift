import TensorFlowProto

/// TensorFlow element types as the engine computes them. TF's int32 shape arithmetic runs
/// as int64 (the engine's shape type); strings never reach the engine.
enum TFTypes {
    static func engineType(_ type: Tensorflow_DataType) -> DType? {
        switch type {
        case .dtFloat: return .float32
        case .dtDouble: return .float64
        case .dtInt32, .dtInt64: return .int64
        case .dtUint8: return .uint8
        case .dtInt8: return .int8
        case .dtBool: return .bool
        default: return nil
        }
    }

    static func name(_ type: Tensorflow_DataType) -> String { type.enumName }

    /// The largest constant `decode` expands from fewer stored values (TF's splat encoding).
    static let maxSplatBytes = 256 << 20

    /// The dimensions of a shape proto; nil for unknown rank, -1 for unknown sizes.
    static func dims(_ shape: Tensorflow_TensorShapeProto) -> [Int]? {
        shape.unknownRank ? nil : shape.dim.map { Int($0.size) }
    }

    /// Decodes a Const's TensorProto: `tensor_content` bytes, or the typed field, where fewer
    /// values than elements repeat the last one (TF's splat encoding). Numeric types only;
    /// int32 widens to int64.
    static func decode(_ proto: Tensorflow_TensorProto, what: @autoclosure () -> String) throws -> HostTensor {
        guard let dtype = engineType(proto.dtype) else {
            throw EngineError.invalidModel("\(what()): constant of type \(name(proto.dtype)) is not supported")
        }
        guard let shape = dims(proto.tensorShape), shape.allSatisfy({ $0 >= 0 }) else {
            throw EngineError.invalidModel("\(what()): constant without a complete shape")
        }
        let byteCount = try TensorSize.bytes(shape, dtype, what())
        let count = byteCount / dtype.size
        // A splat (fewer stored values than elements) is expanded here: a few bytes of the file
        // must not make the load allocate gigabytes.
        let stored = max(proto.tensorContent.count, 8 * (proto.floatVal.count + proto.doubleVal.count + proto.intVal.count
                                                         + proto.int64Val.count + proto.boolVal.count))
        guard byteCount <= max(stored, Self.maxSplatBytes) else {
            throw EngineError.invalidModel("\(what()): a constant of shape \(shape) (\(byteCount) bytes) stored in \(stored) bytes; constants expanded from fewer values are limited to \(Self.maxSplatBytes) bytes")
        }
        let tensor = HostTensor(dtype: dtype, shape: shape)
        if !proto.tensorContent.isEmpty {
            let sourceSize = proto.dtype == .dtInt32 ? 4 : dtype.size
            guard proto.tensorContent.count == count * sourceSize else {
                throw EngineError.invalidModel("\(what()): tensor_content has \(proto.tensorContent.count) bytes, shape \(shape) of \(name(proto.dtype)) needs \(count * sourceSize)")
            }
            proto.tensorContent.withUnsafeBytes { raw in
                if proto.dtype == .dtInt32 {
                    let destination = tensor.pointer(as: Int64.self)
                    for i in 0..<count { destination[i] = Int64(raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
                } else {
                    tensor.bytes.copyMemory(from: raw.baseAddress!, byteCount: byteCount)
                }
            }
            return tensor
        }
        func splat<Source, Element>(_ values: [Source], _ convert: (Source) -> Element) throws {
            guard count > 0 else { return }
            guard !values.isEmpty else {
                // No values: every element is zero (TF's encoding of an all-default tensor).
                return
            }
            guard values.count <= count else {
                throw EngineError.invalidModel("\(what()): \(values.count) values for shape \(shape)")
            }
            let destination = tensor.pointer(as: Element.self)
            for i in 0..<count { destination[i] = convert(values[min(i, values.count - 1)]) }
        }
        switch proto.dtype {
        case .dtFloat: try splat(proto.floatVal) { $0 }
        case .dtDouble: try splat(proto.doubleVal) { $0 }
        case .dtInt32: try splat(proto.intVal) { Int64($0) }
        case .dtInt64: try splat(proto.int64Val) { $0 }
        case .dtUint8: try splat(proto.intVal) { UInt8(truncatingIfNeeded: $0) }
        case .dtInt8: try splat(proto.intVal) { Int8(truncatingIfNeeded: $0) }
        case .dtBool: try splat(proto.boolVal) { UInt8($0 ? 1 : 0) }
        default: break
        }
        return tensor
    }

    /// A DT_STRING constant's elements and shape (splat encoding as for numbers).
    static func decodeStrings(_ proto: Tensorflow_TensorProto, what: @autoclosure () -> String) throws -> (shape: [Int], values: [[UInt8]]) {
        guard proto.dtype == .dtString else { throw EngineError.invalidModel("\(what()): not a string constant") }
        guard let shape = dims(proto.tensorShape), shape.allSatisfy({ $0 >= 0 }) else {
            throw EngineError.invalidModel("\(what()): string constant without a complete shape")
        }
        let count = shape.elementCount
        guard count <= 10_000_000, proto.stringVal.count <= count else {
            throw EngineError.invalidModel("\(what()): \(proto.stringVal.count) strings for shape \(shape)")
        }
        if proto.stringVal.isEmpty { return (shape, Array(repeating: [], count: count)) }
        let values = (0..<count).map { [UInt8](proto.stringVal[min($0, proto.stringVal.count - 1)]) }
        return (shape, values)
    }
}
