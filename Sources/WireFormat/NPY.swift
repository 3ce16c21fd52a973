#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A NumPy `.npy` array (format versions 1-3 read, 1.0 written): a C-order, little-endian
/// payload of one of `DType`'s element types. Used by model-client (request tensors) and
/// model-run (inputs and outputs); the engine never sees files of this format.
public struct NPYArray: Sendable {
    /// Element types, by their .npy type code without the byte-order character.
    public enum DType: String, CaseIterable, Sendable {
        case float32 = "f4", float64 = "f8", int64 = "i8", int32 = "i4", int8 = "i1", uint8 = "u1", bool = "b1"

        /// Bytes per element.
        public var size: Int {
            switch self {
            case .float64, .int64: 8
            case .float32, .int32: 4
            case .int8, .uint8, .bool: 1
            }
        }

        /// The Open Inference Protocol V2 datatype name.
        public var v2Name: String {
            switch self {
            case .float32: "FP32"
            case .float64: "FP64"
            case .int64: "INT64"
            case .int32: "INT32"
            case .int8: "INT8"
            case .uint8: "UINT8"
            case .bool: "BOOL"
            }
        }

        /// The `descr` numpy writes for this type ('<f4', '|u1', ...).
        public var descriptor: String { (size == 1 ? "|" : "<") + rawValue }
    }

    public struct FormatError: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public var dtype: DType
    public var shape: [Int]
    /// `count` elements of `dtype.size` bytes each, little endian, C order.
    public var data: [UInt8]

    /// Number of elements (1 for rank 0).
    public var count: Int { shape.reduce(1, *) }

    public init(dtype: DType, shape: [Int], data: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    /// Reads the file at `path`; errors name the path.
    public init(path: String) throws(FormatError) {
        let bytes: [UInt8]
        do { bytes = try FileBytes.contents(path) } catch { throw FormatError(description: error.description) }
        do { try self.init(npy: bytes) } catch { throw FormatError(description: "\(path): \(error.description)") }
    }

    /// Parses a whole .npy file held in memory.
    public init(npy bytes: [UInt8]) throws(FormatError) {
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

        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw FormatError(description: "shape \(shape) is too large") }
            count = product
        }
        let payload = headerStart + headerLength
        guard count <= (bytes.count - payload) / type.size, bytes.count - payload == count * type.size else {
            throw FormatError(description: "\(bytes.count - payload) data bytes, shape \(shape) of '\(descr)' needs \(count &* type.size)")
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
    public func rows(_ range: Range<Int>) -> NPYArray {
        let rowBytes = shape.dropFirst().reduce(1, *) * dtype.size
        return NPYArray(dtype: dtype, shape: [range.count] + shape.dropFirst(),
                        data: Array(data[range.lowerBound * rowBytes..<range.upperBound * rowBytes]))
    }

    // MARK: Writing

    /// The array as a version 1.0 .npy file.
    public var npyBytes: [UInt8] { Self.header(descr: dtype.descriptor, shape: shape) + data }

    /// A byte-string array (numpy dtype `|S<n>`, each element zero-padded to the longest) as
    /// a .npy file; `values.count` is the product of `shape`.
    public static func npyBytes(strings values: [[UInt8]], shape: [Int]) -> [UInt8] {
        let width = max(values.map(\.count).max() ?? 1, 1)
        var bytes = header(descr: "|S\(width)", shape: shape)
        for value in values { bytes += value + [UInt8](repeating: 0, count: width - value.count) }
        return bytes
    }

    /// Magic, version 1.0 and the header dict, padded with spaces so the payload starts on a
    /// 64-byte boundary (the header ends with a newline), as numpy writes it.
    static func header(descr: String, shape: [Int]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let length = header.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + Array(header.utf8)
    }

    /// Writes the array to `path` (created or truncated).
    public func write(path: String) throws(FormatError) {
        do { try FileBytes.store(npyBytes, to: path) } catch { throw FormatError(description: error.description) }
    }
}

/// Whole-file reads and writes with POSIX calls (no Foundation).
public enum FileBytes {
    public struct Error: Swift.Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// The whole contents of the file at `path`.
    public static func contents(_ path: String) throws(Error) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count > 0 { bytes.append(contentsOf: chunk[0..<count]); continue }
            if count == 0 { return bytes }
            if errno == EINTR { continue }
            throw Error(description: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Replaces the file at `path` with `bytes` (mode 0644 when created).
    public static func store(_ bytes: [UInt8], to path: String) throws(Error) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Error(description: "cannot write '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written > 0 { offset += written; continue }
            if written < 0 && errno == EINTR { continue }
            throw Error(description: "cannot write '\(path)': \(String(cString: strerror(errno)))")
        }
    }
}
