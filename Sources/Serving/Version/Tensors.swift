import Engine

/// Tensor element types as the Open Inference Protocol names them.
public enum TensorDataType: String, Sendable, CaseIterable {
    case bool = "BOOL", uint8 = "UINT8", uint16 = "UINT16", uint32 = "UINT32", uint64 = "UINT64"
    case int8 = "INT8", int16 = "INT16", int32 = "INT32", int64 = "INT64"
    case fp16 = "FP16", fp32 = "FP32", fp64 = "FP64", bf16 = "BF16", bytes = "BYTES"

    /// Bytes per element; nil for BYTES (length-prefixed elements).
    public var elementSize: Int? {
        switch self {
        case .bool, .uint8, .int8: return 1
        case .uint16, .int16, .fp16, .bf16: return 2
        case .uint32, .int32, .fp32: return 4
        case .uint64, .int64, .fp64: return 8
        case .bytes: return nil
        }
    }

    /// The engine's dtype for this type, when the engine computes with it.
    public var engineType: DType? {
        switch self {
        case .fp32: return .float32
        case .fp64: return .float64
        case .int64: return .int64
        case .int32: return .int32
        case .int8: return .int8
        case .uint8: return .uint8
        case .bool: return .bool
        default: return nil
        }
    }

    public init(_ dtype: DType) {
        switch dtype {
        case .float32: self = .fp32
        case .float64: self = .fp64
        case .int64: self = .int64
        case .int32: self = .int32
        case .int8: self = .int8
        case .uint8: self = .uint8
        case .bool: self = .bool
        }
    }
}

/// A tensor in a request or response. `data` holds the elements little-endian, row-major,
/// as the binary tensor extension lays them out (BYTES: each element a 4-byte little-endian
/// length then its bytes).
public struct InferTensor: Sendable {
    public var name: String
    public var datatype: TensorDataType
    public var shape: [Int]
    public var data: [UInt8]
    public var parameters: [String: ParameterValue]

    public init(name: String, datatype: TensorDataType, shape: [Int], data: [UInt8], parameters: [String: ParameterValue] = [:]) {
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.data = data
        self.parameters = parameters
    }

    public var elementCount: Int { Self.elementCount(shape) ?? Int.max }

    /// Checks binary-layout `data` (the binary tensor extension, gRPC raw contents) against
    /// `shape`, whose element count is `count`: fixed-size types need exactly that many bytes,
    /// BYTES exactly that many whole length-prefixed elements.
    public static func checkBinaryData(_ data: [UInt8], datatype: TensorDataType, shape: [Int], count: Int, name: String) throws(ServingError) {
        if let size = datatype.elementSize {
            let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, data.count == bytes else {
                throw .invalidInput("input '\(name)': \(data.count) bytes of binary data, shape \(shape) of \(datatype.rawValue) needs \(overflow ? "more" : String(bytes))")
            }
        } else {
            guard let elements = BytesElements.count(data) else {
                throw .invalidInput("input '\(name)': binary BYTES data must be elements of a 4-byte little-endian length and that many bytes")
            }
            guard elements == count else {
                throw .invalidInput("input '\(name)': \(elements) BYTES elements, shape \(shape) needs \(count)")
            }
        }
    }

    /// The product of `shape`, or nil when a dimension is negative or the product overflows
    /// (client-supplied shapes must never trap).
    public static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            if overflow { return nil }
            count = product
        }
        return count
    }
}

/// BYTES tensor data: each element a 4-byte little-endian length, then that many bytes.
public enum BytesElements {
    /// Appends one element.
    public static func append(_ element: some Collection<UInt8>, to data: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: element.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: element)
    }

    /// The byte ranges of the elements' contents, or nil when `data` is not a whole sequence of
    /// elements (it ends inside a length or inside an element).
    public static func ranges(_ data: [UInt8]) -> [Range<Int>]? {
        var ranges: [Range<Int>] = []
        return forEach(data) { ranges.append($0) } ? ranges : nil
    }

    /// The number of elements, or nil as for `ranges` (nothing allocated).
    public static func count(_ data: [UInt8]) -> Int? {
        var count = 0
        return forEach(data) { _ in count += 1 } ? count : nil
    }

    /// Calls `body` with each element's content range; false when `data` is not whole.
    private static func forEach(_ data: [UInt8], _ body: (Range<Int>) -> Void) -> Bool {
        var offset = 0
        while offset < data.count {
            guard data.count - offset >= 4 else { return false }
            let length = Int(UInt32(data[offset]) | UInt32(data[offset + 1]) << 8 | UInt32(data[offset + 2]) << 16 | UInt32(data[offset + 3]) << 24)
            guard data.count - offset - 4 >= length else { return false }
            body(offset + 4 ..< offset + 4 + length)
            offset += 4 + length
        }
        return true
    }
}

/// A request or tensor parameter value (Open Inference Protocol: string, number or bool).
public enum ParameterValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)

    public var intValue: Int64? {
        switch self {
        case .int(let v): return v
        case .double(let v) where v == v.rounded(): return Int64(exactly: v)
        default: return nil
        }
    }
    public var boolValue: Bool? { if case .bool(let v) = self { return v } else { return nil } }

    /// The value as it would be written in JSON (for error messages).
    public var jsonText: String {
        switch self {
        case .string(let v): return "\"\(v)\""
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .bool(let v): return String(v)
        }
    }
}

/// What a client asks for back.
public struct RequestedOutput: Sendable {
    public var name: String
    public var parameters: [String: ParameterValue]
    public init(name: String, parameters: [String: ParameterValue] = [:]) {
        self.name = name
        self.parameters = parameters
    }
}

/// One inference request in the server's internal form; every protocol decodes into it.
public struct InferRequest: Sendable {
    public var id: String?
    public var inputs: [InferTensor]
    /// nil: all outputs.
    public var outputs: [RequestedOutput]?
    public var parameters: [String: ParameterValue]
    public init(id: String? = nil, inputs: [InferTensor], outputs: [RequestedOutput]? = nil, parameters: [String: ParameterValue] = [:]) {
        self.id = id
        self.inputs = inputs
        self.outputs = outputs
        self.parameters = parameters
    }
}

public struct InferResponse: Sendable {
    public var modelName: String
    public var modelVersion: Int
    public var id: String?
    public var outputs: [InferTensor]
}
