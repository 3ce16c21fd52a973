import FoundationEssentials
import Serving
import WireFormat

/// Moves tensor data between JSON and the byte layout of `InferTensor` (no boxed
/// intermediate arrays: numeric arrays decode straight into the destination bytes).
enum TensorJSON {
    /// Decodes `value` (a numeric array, nested or flat, or a scalar) as `count` elements of
    /// `datatype` (count nil: whatever the array holds). Returns the bytes and the JSON's own shape.
    static func decode(_ value: JSONValue, as datatype: TensorDataType, count expected: Int?, name: String)
        throws(ServingError) -> (bytes: [UInt8], shape: [Int]) {
        switch value {
        case .numericArray(let array):
            if array.isRagged { throw .invalidInput("data of '\(name)' is not rectangular") }
            if let expected, array.count != expected {
                throw .invalidInput("'\(name)' has \(array.count) elements of data, its shape needs \(expected)")
            }
            return (try decode(array, as: datatype, name: name), array.shape)
        case .number(let number):
            if let expected, expected != 1 { throw .invalidInput("'\(name)' has 1 element of data, its shape needs \(expected)") }
            return (try scalar(number, as: datatype, name: name), [])
        case .bool(let flag):
            guard datatype == .bool else { throw .invalidInput("'\(name)' is \(datatype.rawValue); got a boolean") }
            if let expected, expected != 1 { throw .invalidInput("'\(name)' has 1 element of data, its shape needs \(expected)") }
            return ([flag ? 1 : 0], [])
        case .array(let elements) where datatype == .bytes:
            var bytes: [UInt8] = []
            var count = 0
            func append(_ element: JSONValue) throws(ServingError) {
                switch element {
                case .string(let text): BytesElements.append(Array(text.utf8), to: &bytes); count += 1
                case .array(let nested): for item in nested { try append(item) }
                default:
                    if let data = try base64Object(element) { BytesElements.append(data, to: &bytes); count += 1 } else {
                        throw .invalidInput("BYTES data of '\(name)' must be strings, got \(element.kindName)")
                    }
                }
            }
            for element in elements { try append(element) }
            if let expected, count != expected { throw .invalidInput("'\(name)' has \(count) elements of data, its shape needs \(expected)") }
            return (bytes, [elements.count])
        case .string(let text) where datatype == .bytes:
            if let expected, expected != 1 { throw .invalidInput("'\(name)' has 1 element of data, its shape needs \(expected)") }
            var bytes: [UInt8] = []
            BytesElements.append(Array(text.utf8), to: &bytes)
            return (bytes, [])
        default:
            throw .invalidInput("data of '\(name)' must be \(datatype == .bytes ? "strings" : "numbers") for \(datatype.rawValue), got \(value.kindName)")
        }
    }

    /// Whether `value` is a `{"b64": ...}` object, the JSON form of binary data.
    static func isBase64Object(_ value: JSONValue) -> Bool {
        guard case .object(let object) = value, object.count == 1, object["b64"] != nil else { return false }
        return true
    }

    /// `{"b64": "..."}` decoded; nil when `value` is not such an object, an error when its text
    /// is not base64 (standard or URL-safe alphabet, padding optional, as TF Serving accepts).
    static func base64Object(_ value: JSONValue) throws(ServingError) -> [UInt8]? {
        guard isBase64Object(value) else { return nil }
        guard let text = value["b64"]?.stringValue else { throw .invalidInput("the value of 'b64' must be a base64 string") }
        guard let bytes = Base64.decode(text) else {
            throw .invalidInput("the value of 'b64' is not valid base64 (\(text.utf8.count) characters starting '\(text.prefix(16))')")
        }
        return bytes
    }

    /// The element type JSON values of `datatype` decode to; throws for types JSON cannot carry.
    private static func elementType(_ datatype: TensorDataType, name: String) throws(ServingError) -> any JSONNumericElement.Type {
        switch datatype {
        case .fp32: return Float.self
        case .fp64: return Double.self
        case .int64: return Int64.self
        case .int32: return Int32.self
        case .int16: return Int16.self
        case .int8: return Int8.self
        case .uint8: return UInt8.self
        case .uint16: return UInt16.self
        case .uint32: return UInt32.self
        case .uint64: return UInt64.self
        case .bool: return Bool.self
        case .fp16, .bf16: throw .invalidInput("\(datatype.rawValue) data cannot be sent as JSON numbers; send it with the binary tensor extension")
        case .bytes: throw .invalidInput("BYTES data of '\(name)' must be strings")
        }
    }

    private static func decode(_ array: JSONNumericArray, as datatype: TensorDataType, name: String) throws(ServingError) -> [UInt8] {
        func typed<T: JSONNumericElement>(_ type: T.Type) throws(ServingError) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: array.count * MemoryLayout<T>.stride)
            var failure: JSONError?
            bytes.withUnsafeMutableBytes { raw in
                do throws(JSONError) { try array.decode(into: raw.bindMemory(to: T.self)) } catch { failure = error }
            }
            if let failure { throw .invalidInput("data of '\(name)' (\(datatype.rawValue)): \(failure)") }
            return bytes
        }
        return try typed(elementType(datatype, name: name))
    }

    private static func scalar(_ number: JSONNumber, as datatype: TensorDataType, name: String) throws(ServingError) -> [UInt8] {
        func typed<T: JSONNumericElement>(_ type: T.Type) throws(ServingError) -> [UInt8] {
            do { return withUnsafeBytes(of: try number.decode(as: T.self)) { Array($0) } } catch {
                throw .invalidInput("data of '\(name)' (\(datatype.rawValue)): \(error)")
            }
        }
        if datatype == .bool { throw .invalidInput("data of '\(name)' is BOOL; got a number") }
        return try typed(elementType(datatype, name: name))
    }

    /// Writes `count` elements of `tensor` starting at element `first` as a JSON array nested
    /// by `shape` (flat when shape has one dimension; a bare value when shape is empty).
    static func write(_ tensor: InferTensor, shape: [Int], first: Int = 0, into out: inout JSONBuilder, base64Strings: Bool = false) {
        tensor.data.withUnsafeBytes { raw in
            var index = first
            // BYTES: offsets of each element, computed once.
            var stringOffsets: [(Int, Int)] = []
            if tensor.datatype == .bytes {
                var offset = 0
                while offset + 4 <= raw.count {
                    let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                    stringOffsets.append((offset + 4, min(length, raw.count - offset - 4)))
                    offset += 4 + length
                }
            }
            func element() {
                defer { index += 1 }
                switch tensor.datatype {
                case .fp32: out.float(raw.loadUnaligned(fromByteOffset: index * 4, as: Float.self))
                case .fp64: out.double(raw.loadUnaligned(fromByteOffset: index * 8, as: Double.self))
                case .int64: out.int(raw.loadUnaligned(fromByteOffset: index * 8, as: Int64.self))
                case .int32: out.int(Int64(raw.loadUnaligned(fromByteOffset: index * 4, as: Int32.self)))
                case .int16: out.int(Int64(raw.loadUnaligned(fromByteOffset: index * 2, as: Int16.self)))
                case .int8: out.int(Int64(raw.load(fromByteOffset: index, as: Int8.self)))
                case .uint8: out.int(Int64(raw.load(fromByteOffset: index, as: UInt8.self)))
                case .uint16: out.int(Int64(raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)))
                case .uint32: out.int(Int64(raw.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
                case .uint64: out.uint(raw.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self))
                case .bool: out.bool(raw.load(fromByteOffset: index, as: UInt8.self) != 0)
                case .fp16, .bf16: out.null()
                case .bytes:
                    guard index < stringOffsets.count else { out.null(); return }
                    let (start, length) = stringOffsets[index]
                    let bytes = UnsafeRawBufferPointer(rebasing: raw[start..<start + length])
                    if base64Strings {
                        out.beginObject(); out.key("b64"); out.string(Base64.encode(bytes)); out.endObject()
                    } else {
                        out.string(String(decoding: bytes, as: UTF8.self))
                    }
                }
            }
            func level(_ depth: Int) {
                if depth == shape.count { element(); return }
                out.beginArray()
                for _ in 0..<shape[depth] { level(depth + 1) }
                out.endArray()
            }
            level(0)
        }
    }
}
