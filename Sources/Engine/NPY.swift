import FoundationEssentials

/// NumPy `.npy` files (format versions 1-3), C order, little endian, for the dtypes the engine has.
public enum NPY {
    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
    }

    static let descriptors: [(String, DType)] = [("<f4", .float32), ("<f8", .float64), ("<i8", .int64), ("<i4", .int32),
                                                 ("|i1", .int8), ("|u1", .uint8), ("|b1", .bool)]

    public static func read(path: String) throws -> HostTensor {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError(description: "cannot read '\(path)'") }
        do { return try decode(data) } catch let error as FormatError {
            throw FormatError(description: "'\(path)': \(error.description)")
        }
    }

    public static func decode(_ data: Data) throws -> HostTensor {
        let bytes = [UInt8](data.prefix(12))
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw FormatError(description: "not a .npy file (bad magic)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw FormatError(description: "truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard data.count >= headerStart + headerLength else { throw FormatError(description: "truncated header") }
        let header = String(decoding: data[data.startIndex + headerStart ..< data.startIndex + headerStart + headerLength], as: UTF8.self)
        guard let descr = field(header, "descr"), let dtype = descriptors.first(where: { "'\($0.0)'" == descr || "\"\($0.0)\"" == descr })?.1 else {
            throw FormatError(description: "unsupported dtype \(field(header, "descr") ?? "?") (supported: \(descriptors.map(\.0).joined(separator: ", ")))")
        }
        if field(header, "fortran_order") == "True" { throw FormatError(description: "Fortran-ordered arrays are not supported") }
        guard let shapeText = field(header, "shape") else { throw FormatError(description: "header has no shape") }
        let shape = try trimmed(shapeText, "() ").split(separator: ",").compactMap { part -> Int? in
            let text = trimmed(part, " \t")
            if text.isEmpty { return nil }
            guard let value = Int(text), value >= 0 else { throw FormatError(description: "bad shape \(shapeText)") }
            return value
        }
        let payload = data.dropFirst(headerStart + headerLength)
        let expected = shape.reduce(1, *) * dtype.size
        guard payload.count == expected else {
            throw FormatError(description: "payload has \(payload.count) bytes, shape \(shape) of \(dtype) needs \(expected)")
        }
        return payload.withUnsafeBytes { HostTensor(dtype: dtype, shape: shape, copying: $0) }
    }

    /// The text of `'key': value` in a header dict, up to the next top-level comma.
    private static func field(_ header: String, _ key: String) -> String? {
        let pattern = Array("'\(key)':")
        let characters = Array(header)
        guard let start = characters.indices.first(where: { characters[$0...].starts(with: pattern) }) else { return nil }
        var depth = 0
        var value = ""
        for character in characters[(start + pattern.count)...] {
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1 }
            if (character == "," && depth == 0) || character == "}" { break }
            value.append(character)
        }
        return trimmed(value, " \t")
    }

    /// `text` without leading and trailing characters from `characters`.
    private static func trimmed(_ text: some StringProtocol, _ characters: String) -> String {
        let drop: (Character) -> Bool = { characters.contains($0) }
        guard let first = text.firstIndex(where: { !drop($0) }), let last = text.lastIndex(where: { !drop($0) }) else { return "" }
        return String(text[first...last])
    }

    public static func encode(_ tensor: HostTensor) -> Data {
        var data = header(descr: descriptors.first { $0.1 == tensor.dtype }!.0, shape: tensor.shape)
        data.append(Data(bytes: tensor.bytes, count: tensor.byteCount))
        return data
    }

    /// A byte-string array (numpy dtype `|S<n>`, each element zero-padded to the longest).
    public static func encodeStrings(shape: [Int], values: [[UInt8]]) -> Data {
        let width = max(values.map(\.count).max() ?? 1, 1)
        var data = header(descr: "|S\(width)", shape: shape)
        for value in values { data.append(contentsOf: value + [UInt8](repeating: 0, count: width - value.count)) }
        return data
    }

    /// Magic, version 1.0 and the header dict, padded so the payload starts on a 64-byte
    /// boundary (the header ends with a newline).
    private static func header(descr: String, shape: [Int]) -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = header.utf8.count
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        return data
    }

    public static func write(_ tensor: HostTensor, path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: encode(tensor)) else {
            throw FormatError(description: "cannot write '\(path)'")
        }
    }
}
