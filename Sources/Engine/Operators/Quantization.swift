import CQuantKernels

/// ONNX quantization operators: QuantizeLinear, DequantizeLinear (per tensor, per axis and,
/// from opset 21, blocked), DynamicQuantizeLinear, and the u8/s8 conversions they share.
/// Quantized values are uint8 or int8 (the element types the engine has); float8, int4 and
/// 16-bit quantization are refused with an error naming the type.

/// Rounds half to even and saturates to the range of `dtype` (uint8 or int8), as ONNX's
/// QuantizeLinear: y = saturate(round(x / scale) + zeroPoint).
@inline(__always)
func quantizeValue(_ x: Float, scale: Float, zeroPoint: Int32, low: Float, high: Float) -> Int32 {
    var value = (x / scale).rounded(.toNearestOrEven) + Float(zeroPoint)
    if !(value >= low) { value = value.isNaN ? Float(zeroPoint) : low }
    if value > high { value = high }
    return Int32(value)
}

extension DType {
    /// The value range of a quantized type (uint8 0...255, int8 -128...127).
    var quantizedRange: (low: Int32, high: Int32)? {
        switch self {
        case .uint8: return (0, 255)
        case .int8: return (-128, 127)
        default: return nil
        }
    }
}

/// Reads element `index` of a u8, s8 or s32 buffer as Int32.
@inline(__always)
func loadInteger(_ pointer: UnsafeRawPointer, _ dtype: DType, _ index: Int) -> Int32 {
    switch dtype {
    case .uint8: return Int32(pointer.load(fromByteOffset: index, as: UInt8.self))
    case .int8: return Int32(pointer.load(fromByteOffset: index, as: Int8.self))
    default: return pointer.load(fromByteOffset: index * 4, as: Int32.self)
    }
}

/// How a scale / zero-point tensor maps onto the elements of the tensor it quantizes:
/// one value, one per index along `axis`, or one per `blockSize` indices along `axis`.
struct QuantizationLayout {
    let outer: Int, extent: Int, inner: Int
    /// 0: per tensor; 1: per axis; > 1: blocked with this block size.
    let blockSize: Int
    let blocks: Int

    init(data: Shape, scale: Shape, axis attribute: Int, blockSize: Int, node: NodeContext) throws {
        let count = scale.elementCount
        if blockSize == 0 && (scale.isEmpty || count == 1 && scale.count <= 1) {
            (outer, extent, inner, self.blockSize, blocks) = (data.elementCount, 1, 1, 0, 1)
            return
        }
        let axis = try node.axis(attribute, rank: data.count)
        outer = data.prefix(axis).reduce(1, *)
        extent = data[axis]
        inner = data.dropFirst(axis + 1).reduce(1, *)
        if blockSize > 0 {
            let expected = (extent + blockSize - 1) / blockSize
            var blockedShape = data
            blockedShape[axis] = expected
            guard scale == blockedShape else {
                throw node.invalid("scale shape \(scale) does not match data \(data) blocked by \(blockSize) on axis \(axis) (expected \(blockedShape))")
            }
            self.blockSize = blockSize
            blocks = expected
        } else {
            guard scale.count == 1, scale[0] == extent else {
                throw node.invalid("scale shape \(scale) must be a scalar or [\(extent)] (data \(data), axis \(axis))")
            }
            self.blockSize = 1
            blocks = extent
        }
    }

    /// Calls body(elementIndex, parameterIndex) for every element.
    @inline(__always)
    func forEachElement(_ body: (Int, Int) -> Void) {
        if blockSize == 0 {
            for index in 0..<outer { body(index, 0) }
            return
        }
        var index = 0
        for o in 0..<outer {
            for d in 0..<extent {
                let parameter = blockSize == 1 ? d : (o * blocks + d / blockSize) * inner
                for i in 0..<inner {
                    body(index, blockSize == 1 ? parameter : parameter + i)
                    index += 1
                }
            }
        }
    }
}

/// Output dtype of a quantizing node: the zero point's type, else `output_dtype`, else uint8.
private func quantizedOutputType(_ zeroPoint: ValueSpec?, attribute: Int, node: NodeContext) throws -> DType {
    if let zeroPoint {
        guard zeroPoint.dtype.quantizedRange != nil else {
            throw node.unsupported("zero point of type \(zeroPoint.dtype); uint8 and int8 quantization are implemented")
        }
        if attribute != 0 && attribute != zeroPoint.dtype.rawValue {
            throw node.invalid("output_dtype \(DType.onnxName(attribute)) differs from the zero point's \(zeroPoint.dtype)")
        }
        return zeroPoint.dtype
    }
    if attribute == 0 { return .uint8 }
    guard let dtype = DType(rawValue: attribute), dtype.quantizedRange != nil else {
        throw node.unsupported("output_dtype \(DType.onnxName(attribute)); uint8 and int8 quantization are implemented")
    }
    return dtype
}

struct QuantizeLinearOperator: Operator {
    let axis: Int
    let blockSize: Int
    let outputDType: Int

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axis", "saturate", "block_size", "output_dtype"])
        axis = try node.int("axis", default: 1)
        blockSize = try node.int("block_size", default: 0)
        outputDType = try node.int("output_dtype", default: 0)
        if blockSize < 0 { throw node.invalid("block_size must not be negative") }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "x"), scale = try node.required(inputs, 1, "y_scale")
        try node.requireFloat(x, "x")
        try node.requireFloat(scale, "y_scale")
        let zeroPoint = node.optional(inputs, 2)
        let dtype = try quantizedOutputType(zeroPoint, attribute: outputDType, node: node)
        if let zeroPoint, zeroPoint.shape != scale.shape {
            throw node.invalid("y_zero_point shape \(zeroPoint.shape) differs from y_scale's \(scale.shape)")
        }
        let layout = try QuantizationLayout(data: x.shape, scale: scale.shape, axis: axis, blockSize: blockSize, node: node)
        let (low, high) = dtype.quantizedRange!
        let (fLow, fHigh) = (Float(low), Float(high))
        let hasZeroPoint = zeroPoint != nil
        if layout.blockSize == 0 {
            // One scale: a vector pass (cqk_quantize), split across workers.
            let count = x.shape.elementCount
            return Prepared(outputs: [ValueSpec(dtype: dtype, shape: x.shape)], kernel: ClosureKernel { io in
                let scale = io.input(1, Float.self)[0]
                let zp = hasZeroPoint ? loadInteger(io.inputs[2]!, dtype, 0) : 0
                let source = io.input(0, Float.self), out = io.outputs[0]!
                let chunks = max(1, min(io.width * 4, count / 16384))
                io.parallelItems(chunks) { chunk, _ in
                    let start = chunk * count / chunks, end = (chunk + 1) * count / chunks
                    cqk_quantize(source + start, end - start, scale, zp, low, high, dtype == .int8 ? 1 : 0, out + start)
                }
            })
        }
        return Prepared(outputs: [ValueSpec(dtype: dtype, shape: x.shape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), scales = io.input(1, Float.self)
            let zeros = hasZeroPoint ? io.inputs[2] : nil
            let out = io.outputs[0]!
            layout.forEachElement { index, parameter in
                let zp = zeros.map { loadInteger($0, dtype, parameter) } ?? 0
                let q = quantizeValue(source[index], scale: scales[parameter], zeroPoint: zp, low: fLow, high: fHigh)
                if dtype == .uint8 { out.storeBytes(of: UInt8(q), toByteOffset: index, as: UInt8.self) } else {
                    out.storeBytes(of: Int8(q), toByteOffset: index, as: Int8.self)
                }
            }
        })
    }
}

struct DequantizeLinearOperator: Operator {
    let axis: Int
    let blockSize: Int

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axis", "block_size"])
        axis = try node.int("axis", default: 1)
        blockSize = try node.int("block_size", default: 0)
        if blockSize < 0 { throw node.invalid("block_size must not be negative") }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "x"), scale = try node.required(inputs, 1, "x_scale")
        guard [.uint8, .int8, .int32].contains(x.dtype) else {
            throw node.unsupported("x of type \(x.dtype); uint8, int8 and int32 are implemented")
        }
        try node.requireFloat(scale, "x_scale")
        let zeroPoint = node.optional(inputs, 2)
        if let zeroPoint {
            guard zeroPoint.dtype == x.dtype else { throw node.invalid("x_zero_point is \(zeroPoint.dtype), x is \(x.dtype)") }
            guard zeroPoint.shape == scale.shape else {
                throw node.invalid("x_zero_point shape \(zeroPoint.shape) differs from x_scale's \(scale.shape)")
            }
        }
        let layout = try QuantizationLayout(data: x.shape, scale: scale.shape, axis: axis, blockSize: blockSize, node: node)
        let dtype = x.dtype, hasZeroPoint = zeroPoint != nil
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
            let source = io.inputs[0]!, scales = io.input(1, Float.self)
            let zeros = hasZeroPoint ? io.inputs[2] : nil
            let out = io.output(0, Float.self)
            layout.forEachElement { index, parameter in
                let zp = zeros.map { loadInteger($0, dtype, parameter) } ?? 0
                out[index] = Float(loadInteger(source, dtype, index) - zp) * scales[parameter]
            }
        })
    }
}

/// y_scale = (max(0, max x) - min(0, min x)) / 255, y_zero_point = saturate(round(-min / scale)),
/// y = saturate(round(x / y_scale) + y_zero_point), uint8 (ONNX DynamicQuantizeLinear).
struct DynamicQuantizeLinearOperator: Operator {
    init(_ node: NodeContext) throws { try node.allowOnly([]) }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "x")
        try node.requireFloat(x, "x")
        let count = x.shape.elementCount
        return Prepared(outputs: [ValueSpec(dtype: .uint8, shape: x.shape), ValueSpec(dtype: .float32, shape: []),
                                  ValueSpec(dtype: .uint8, shape: [])], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self)
            var low: Float = 0, high: Float = 0
            for index in 0..<count { low = min(low, source[index]); high = max(high, source[index]) }
            let scale = (high - low) / 255
            let zeroPoint: Int32 = scale == 0 ? 0 : Int32(min(max((0 - low / scale).rounded(.toNearestOrEven), 0), 255))
            if let out = io.outputs[0] {
                let bytes = out.assumingMemoryBound(to: UInt8.self)
                for index in 0..<count {
                    bytes[index] = scale == 0 ? UInt8(zeroPoint)
                        : UInt8(quantizeValue(source[index], scale: scale, zeroPoint: zeroPoint, low: 0, high: 255))
                }
            }
            io.outputs[1]?.storeBytes(of: scale, as: Float.self)
            io.outputs[2]?.storeBytes(of: UInt8(zeroPoint), as: UInt8.self)
        })
    }
}
