/// Element types the engine computes with. Raw values are ONNX `TensorProto.DataType` numbers.
public enum DType: Int, Sendable, CustomStringConvertible {
    case float32 = 1
    case uint8 = 2
    case int8 = 3
    case int32 = 6
    case int64 = 7
    case bool = 9
    case float64 = 11

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .float32, .int32: return 4
        case .int64, .float64: return 8
        }
    }

    public var description: String {
        switch self {
        case .float32: return "float32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .int32: return "int32"
        case .int64: return "int64"
        case .bool: return "bool"
        case .float64: return "float64"
        }
    }

    /// The ONNX name of a data type number, for error messages about types we do not support.
    static func onnxName(_ code: Int) -> String {
        let names = [0: "undefined", 1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
                     7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32",
                     13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"]
        return names[code] ?? "type \(code)"
    }
}
