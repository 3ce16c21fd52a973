// Not generated: names TensorFlow gives its element types, for messages and TF Serving's JSON.
extension Tensorflow_DataType {
    /// "DT_FLOAT", "DT_STRING", ... ("DT_INVALID" for values this module does not declare).
    public var enumName: String {
        switch self {
        case .dtFloat: return "DT_FLOAT"
        case .dtDouble: return "DT_DOUBLE"
        case .dtInt32: return "DT_INT32"
        case .dtUint8: return "DT_UINT8"
        case .dtInt16: return "DT_INT16"
        case .dtInt8: return "DT_INT8"
        case .dtString: return "DT_STRING"
        case .dtComplex64: return "DT_COMPLEX64"
        case .dtInt64: return "DT_INT64"
        case .dtBool: return "DT_BOOL"
        case .dtBfloat16: return "DT_BFLOAT16"
        case .dtUint16: return "DT_UINT16"
        case .dtComplex128: return "DT_COMPLEX128"
        case .dtHalf: return "DT_HALF"
        case .dtResource: return "DT_RESOURCE"
        case .dtVariant: return "DT_VARIANT"
        case .dtUint32: return "DT_UINT32"
        case .dtUint64: return "DT_UINT64"
        default: return "DT_INVALID"
        }
    }
}
