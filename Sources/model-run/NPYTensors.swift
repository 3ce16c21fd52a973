import Engine
import WireFormat

/// model-run's .npy files as engine tensors: WireFormat reads and writes the format, this
/// maps its element types to the engine's (both sides little-endian, C order).
enum NPYTensors {
    static func read(path: String) throws(NPYArray.FormatError) -> HostTensor {
        let array = try NPYArray(path: path)
        return array.data.withUnsafeBytes { HostTensor(dtype: dtype(array.dtype), shape: array.shape, copying: $0) }
    }

    static func write(_ tensor: HostTensor, path: String) throws(NPYArray.FormatError) {
        let bytes = [UInt8](UnsafeRawBufferPointer(start: tensor.bytes, count: tensor.byteCount))
        try NPYArray(dtype: dtype(tensor.dtype), shape: tensor.shape, data: bytes).write(path: path)
    }

    /// A byte-string tensor (numpy `|S<n>`) written to `path`.
    static func write(strings values: [[UInt8]], shape: [Int], path: String) throws(FileBytes.Error) {
        try FileBytes.store(NPYArray.npyBytes(strings: values, shape: shape), to: path)
    }

    static func dtype(_ type: NPYArray.DType) -> DType {
        switch type {
        case .float32: .float32
        case .float64: .float64
        case .int64: .int64
        case .int32: .int32
        case .int8: .int8
        case .uint8: .uint8
        case .bool: .bool
        }
    }

    static func dtype(_ type: DType) -> NPYArray.DType {
        switch type {
        case .float32: .float32
        case .float64: .float64
        case .int64: .int64
        case .int32: .int32
        case .int8: .int8
        case .uint8: .uint8
        case .bool: .bool
        }
    }
}
