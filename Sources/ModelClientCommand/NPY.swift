import Glibc

/// A NumPy .npy array (format versions 1-3) with a little-endian, C-order payload of one
/// of the dtypes the client sends.
struct NPYArray {
    enum DType: String, CaseIterable {
        case float32 = "f4", float64 = "f8", int64 = "i8", int32 = "i4", uint8 = "u1", bool = "b1"

        var size: Int {
            switch self {
            case .float64, .int64: 8
            case .float32, .int32: 4
            case .uint8, .bool: 1
            }
        }

        /// The Open Inference Protocol V2 datatype.
        var v2Name: String {
            switch self {
            case .float32: "FP32"
            case .float64: "FP64"
            case .int64: "INT64"
            case .int32: "INT32"
            case .uint8: "UINT8"
            case .bool: "BOOL"
            }
        }
    }

    struct FormatError: Error, CustomStringConvertible {
        let description: String
    }

    var dtype: DType
    var shape: [Int]
    /// shape.product elements of dtype.size bytes each, little endian, C order.
    var data: [UInt8]

    var count: Int { shape.reduce(1, *) }

    init(dtype: DType, shape: [Int], data: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    init(path: String) throws(FormatError) {
        let bytes: [UInt8]
        do { bytes = try readFile(path) } catch { throw FormatError(description: error.description) }
        do { try self.init(npy: bytes) } catch { throw FormatError(description: "\(path): \(error.description)") }
    }

    init(npy bytes: [UInt8]) throws(FormatError) {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw FormatError(description: "not a .npy file") }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw FormatError(description: "truncated header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
            headerStart = 12
        default:
            throw FormatError(description: ".npy format version \(major) is not supported")
        }
        guard headerStart + headerLength <= bytes.count else { throw FormatError(description: "truncated header") }
        let header = String(decoding: bytes[headerStart..<headerStart + headerLength], as: UTF8.self)
        let fields = try Self.parseHeader(header)

        guard case .text(let descr)? = fields["descr"] else { throw FormatError(description: "the header has no 'descr' string") }
        guard descr.count == 3, let order = descr.first, let type = DType(rawValue: String(descr.dropFirst())) else {
            throw FormatError(description: "dtype '\(descr)' is not supported (\(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard order == "<" || order == "|" || order == "=" || (order == ">" && type.size == 1) else {
            throw FormatError(description: "dtype '\(descr)' is big-endian; save the array little-endian")
        }
        if case .flag(true)? = fields["fortran_order"] {
            throw FormatError(description: "the array is in Fortran order; save it in C order (numpy.ascontiguousarray)")
        }
        guard case .dimensions(let shape)? = fields["shape"] else { throw FormatError(description: "the header has no 'shape' tuple") }

        let count = shape.reduce(1, *)
        let payload = headerStart + headerLength
        guard bytes.count - payload == count * type.size else {
            throw FormatError(description: "\(bytes.count - payload) data bytes, shape \(shape) of '\(descr)' needs \(count * type.size)")
        }
        self.init(dtype: type, shape: shape, data: Array(bytes[payload...]))
    }

    private enum HeaderValue { case text(String), flag(Bool), dimensions([Int]) }

    /// Parses the header's Python dict literal, e.g.
    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (1, 8), }`.
    private static func parseHeader(_ header: String) throws(FormatError) -> [String: HeaderValue] {
        var rest = Substring(header)
        func skipSpace() { while let c = rest.first, c == " " || c == "\n" || c == "\t" { rest = rest.dropFirst() } }
        func expect(_ c: Character) throws(FormatError) {
            skipSpace()
            guard rest.first == c else { throw FormatError(description: "malformed header: \(header)") }
            rest = rest.dropFirst()
        }
        func quoted() throws(FormatError) -> String {
            skipSpace()
            guard let quote = rest.first, quote == "'" || quote == "\"",
                  let end = rest.dropFirst().firstIndex(of: quote) else { throw FormatError(description: "malformed header: \(header)") }
            let text = String(rest[rest.index(after: rest.startIndex)..<end])
            rest = rest[rest.index(after: end)...]
            return text
        }
        var fields: [String: HeaderValue] = [:]
        try expect("{")
        while true {
            skipSpace()
            if rest.first == "}" { break }
            let key = try quoted()
            try expect(":")
            skipSpace()
            if rest.hasPrefix("True") {
                fields[key] = .flag(true); rest = rest.dropFirst(4)
            } else if rest.hasPrefix("False") {
                fields[key] = .flag(false); rest = rest.dropFirst(5)
            } else if rest.first == "(" {
                rest = rest.dropFirst()
                guard let close = rest.firstIndex(of: ")") else { throw FormatError(description: "malformed header: \(header)") }
                var dimensions: [Int] = []
                for item in rest[..<close].split(separator: ",") {
                    let text = item.filter { $0 != " " && $0 != "L" }
                    if text.isEmpty { continue }
                    guard let value = Int(text), value >= 0 else { throw FormatError(description: "bad dimension '\(item)' in \(header)") }
                    dimensions.append(value)
                }
                fields[key] = .dimensions(dimensions)
                rest = rest[rest.index(after: close)...]
            } else {
                fields[key] = .text(try quoted())
            }
            skipSpace()
            if rest.first == "," { rest = rest.dropFirst() }
        }
        return fields
    }

    /// Rows `range` of the first dimension (rank >= 1).
    func rows(_ range: Range<Int>) -> NPYArray {
        let rowBytes = shape.dropFirst().reduce(1, *) * dtype.size
        return NPYArray(dtype: dtype, shape: [range.count] + shape.dropFirst(),
                        data: Array(data[range.lowerBound * rowBytes..<range.upperBound * rowBytes]))
    }

    /// Element `index` as JSON text: shortest round-trip decimal for floats (NaN, Infinity
    /// and -Infinity for non-finite values, as TF Serving accepts them), true/false for bool.
    func jsonElement(_ index: Int) -> String {
        data.withUnsafeBytes { raw in
            let offset = index * dtype.size
            switch dtype {
            case .float32:
                let value = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                return Self.jsonNumber(Double(value), float: value.description)
            case .float64:
                let value = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
                return Self.jsonNumber(value, float: value.description)
            case .int64: return String(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
            case .int32: return String(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
            case .uint8: return String(raw[offset])
            case .bool: return raw[offset] != 0 ? "true" : "false"
            }
        }
    }

    private static func jsonNumber(_ value: Double, float text: String) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        return text
    }

    /// The array as nested JSON lists (a bare value for rank 0).
    func jsonNested() -> String {
        var out = ""
        out.reserveCapacity(count * 12)
        var index = 0
        func write(_ depth: Int) {
            if depth == shape.count {
                out += jsonElement(index)
                index += 1
                return
            }
            out += "["
            for item in 0..<shape[depth] {
                if item > 0 { out += "," }
                write(depth + 1)
            }
            out += "]"
        }
        write(0)
        return out
    }
}

struct FileError: Error, CustomStringConvertible {
    let description: String
}

/// The whole contents of the file at `path`.
func readFile(_ path: String) throws(FileError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if count > 0 { bytes.append(contentsOf: chunk[0..<count]); continue }
        if count == 0 { return bytes }
        if errno == EINTR { continue }
        throw FileError(description: "cannot read \(path): \(String(cString: strerror(errno)))")
    }
}
