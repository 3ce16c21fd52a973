import Glibc

/// A tensor shape: dimension sizes, outermost first (row-major / C order).
public typealias Shape = [Int]

extension Array where Element == Int {
    /// Number of elements of a shape (1 for a scalar); Int.max when the product overflows
    /// (such a shape never passes `TensorSize.bytes`, so it is never allocated or run).
    @inlinable var elementCount: Int {
        var count = 1
        for dimension in self {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            if overflow { return Int.max }
            count = product
        }
        return count
    }
}

/// What a model may make the engine allocate: checked wherever a shape comes from the model
/// file (initializers, graph inputs, shapes computed at load), before anything multiplies or
/// allocates with it.
enum TensorSize {
    /// The machine's physical memory in bytes: no tensor, and no plan's arena, may need more.
    static let maxBytes: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return Int.max }
        return pages.multipliedReportingOverflow(by: pageSize).overflow ? Int.max : pages * pageSize
    }()

    /// The byte count of a `dtype` tensor of `shape`; throws when a dimension is negative,
    /// the count overflows, or it exceeds `maxBytes`. `what` names the tensor for the message.
    /// An empty tensor (a 0 dimension) is held to the same bound with its 0s left out, so
    /// the products of any of its dimensions (strides, row sizes) stay in range too.
    static func bytes(_ shape: Shape, _ dtype: DType, _ what: @autoclosure () -> String) throws(EngineError) -> Int {
        var nonzero = 1
        var overflow = false
        var empty = false
        for dimension in shape {
            guard dimension >= 0 else { throw .invalidModel("\(what()) has a negative dimension in \(shape)") }
            if dimension == 0 { empty = true; continue }
            let (product, over) = nonzero.multipliedReportingOverflow(by: dimension)
            overflow = overflow || over
            nonzero = product
        }
        let (bytes, over) = nonzero.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, !over, bytes <= maxBytes else {
            let needs = overflow || over ? "more than 2^63" : String(bytes)
            throw .invalidModel("\(what()) of shape \(shape) (\(dtype)) needs \(needs) bytes\(empty ? " (without its 0 dimensions)" : ""), more than this machine's \(maxBytes) bytes of memory")
        }
        return empty ? 0 : bytes
    }
}

/// `value` rounded toward zero and clamped to Int's range; NaN gives 0 (`Int(_:)` would trap
/// on both, and these values come from model files).
func saturatingInt(_ value: Double) -> Int {
    if value.isNaN { return 0 }
    if value >= 9.2e18 { return Int.max }
    if value <= -9.2e18 { return Int.min }
    return Int(value)
}

/// Row-major strides (in elements) of a shape.
func contiguousStrides(_ shape: Shape) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[axis] = running
        running = running &* shape[axis]  // wraps only for shapes TensorSize.bytes refuses
    }
    return strides
}

/// An owned, immutable-after-construction tensor in host memory: initializers, folded
/// constants and tensors the caller passes in or gets back. Bytes are 64-byte aligned.
/// Safe to share across threads once built (the storage is never written after init).
public final class HostTensor: @unchecked Sendable, CustomStringConvertible {
    public let dtype: DType
    public let shape: Shape
    /// Raw element bytes, `shape.elementCount * dtype.size` long (at least 1 byte allocated).
    public let bytes: UnsafeMutableRawPointer
    public var byteCount: Int { shape.elementCount * dtype.size }
    public var count: Int { shape.elementCount }

    /// A zero-filled tensor.
    public init(dtype: DType, shape: Shape) {
        self.dtype = dtype
        self.shape = shape
        let length = max(shape.elementCount * dtype.size, 1)
        bytes = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 64)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: length)
    }

    /// A tensor holding a copy of `source` (which must be `shape.elementCount * dtype.size` bytes).
    public convenience init(dtype: DType, shape: Shape, copying source: UnsafeRawBufferPointer) {
        self.init(dtype: dtype, shape: shape)
        precondition(source.count == byteCount, "byte count does not match shape")
        if byteCount > 0 { bytes.copyMemory(from: source.baseAddress!, byteCount: byteCount) }
    }

    public convenience init(shape: Shape, floats: [Float]) {
        precondition(floats.count == shape.elementCount)
        self.init(dtype: .float32, shape: shape)
        floats.withUnsafeBytes { bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    public convenience init(shape: Shape, int64s: [Int64]) {
        precondition(int64s.count == shape.elementCount)
        self.init(dtype: .int64, shape: shape)
        if !int64s.isEmpty { int64s.withUnsafeBytes { bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    }

    deinit { bytes.deallocate() }

    public func pointer<T>(as type: T.Type) -> UnsafeMutablePointer<T> { bytes.assumingMemoryBound(to: type) }

    public var floats: [Float] {
        precondition(dtype == .float32)
        return Array(UnsafeBufferPointer(start: pointer(as: Float.self), count: count))
    }

    /// Elements converted to Int, for shape-like tensors (int64, int32, and bool/uint8).
    public var integers: [Int] {
        switch dtype {
        case .int64: return UnsafeBufferPointer(start: pointer(as: Int64.self), count: count).map { Int($0) }
        case .int32: return UnsafeBufferPointer(start: pointer(as: Int32.self), count: count).map { Int($0) }
        case .int8: return UnsafeBufferPointer(start: pointer(as: Int8.self), count: count).map { Int($0) }
        case .uint8, .bool: return UnsafeBufferPointer(start: pointer(as: UInt8.self), count: count).map { Int($0) }
        case .float32: return UnsafeBufferPointer(start: pointer(as: Float.self), count: count).map { saturatingInt(Double($0)) }
        case .float64: return UnsafeBufferPointer(start: pointer(as: Double.self), count: count).map { saturatingInt($0) }
        }
    }

    /// Elements converted to Double, for scalar attributes given as inputs (Clip bounds, pad value).
    public var doubles: [Double] {
        switch dtype {
        case .float32: return UnsafeBufferPointer(start: pointer(as: Float.self), count: count).map { Double($0) }
        case .float64: return Array(UnsafeBufferPointer(start: pointer(as: Double.self), count: count))
        default: return integers.map { Double($0) }
        }
    }

    public var description: String { "HostTensor(\(dtype), \(shape))" }
}
