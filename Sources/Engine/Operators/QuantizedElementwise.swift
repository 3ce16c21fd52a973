import CQuantKernels

/// Quantized element-wise, pooling and data-movement operators: com.microsoft QLinearAdd,
/// QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat (what
/// onnxruntime's quantize_static writes in QOperator form), and MaxPool on u8/s8 tensors.
/// Arithmetic follows onnxruntime: dequantize ((q - zp) * scale in float), compute in float,
/// quantize (round half to even, saturate).

/// Where a quantized input's scale and zero point are, by input index.
struct QuantizedValue {
    let data: Int
    let scale: Int?
    let zero: Int?
}

/// Runs a float operator between dequantized inputs and a quantized output: each quantized
/// input is dequantized into scratch, `inner` runs on float, its output is quantized with
/// the output scale and zero point (scale 1 and zero point 0 when they are absent: an exact
/// round trip for MaxPool). Scales and zero points are read per run (they are scalars).
struct FloatBridgeKernel: Kernel, @unchecked Sendable {
    let inner: any Kernel
    let innerScratch: Int
    let inputs: [QuantizedValue]
    let inputTypes: [DType]
    let inputCounts: [Int]
    let outputScale: Int?, outputZero: Int?
    let outputType: DType
    let outputCount: Int
    /// Byte offsets in worker 0's scratch: float inputs, float output, then the inner scratch.
    let inputOffsets: [Int]
    let outputOffset: Int
    let innerOffset: Int

    static func round64(_ n: Int) -> Int { (n + 63) / 64 * 64 }

    init(inner: Prepared, inputs: [QuantizedValue], inputTypes: [DType], inputCounts: [Int],
         outputScale: Int?, outputZero: Int?, outputType: DType, outputCount: Int) {
        self.inner = inner.kernel!
        innerScratch = inner.scratchBytes
        self.inputs = inputs
        self.inputTypes = inputTypes
        self.inputCounts = inputCounts
        self.outputScale = outputScale
        self.outputZero = outputZero
        self.outputType = outputType
        self.outputCount = outputCount
        var offset = 0
        var offsets: [Int] = []
        for count in inputCounts { offsets.append(offset); offset += Self.round64(count * 4) }
        inputOffsets = offsets
        outputOffset = offset
        offset += Self.round64(outputCount * 4)
        innerOffset = offset
    }

    var scratchBytes: Int { innerOffset + Self.round64(innerScratch) }

    func run(_ io: KernelIO) {
        let scratch = io.scratch(worker: 0)!
        var innerInputs: [UnsafeRawPointer?] = []
        for (index, value) in inputs.enumerated() {
            let dtype = inputTypes[index]
            let source = io.inputs[value.data]!
            let target = (scratch + inputOffsets[index]).assumingMemoryBound(to: Float.self)
            let scale = value.scale.map { io.inputs[$0]!.load(as: Float.self) } ?? 1
            let zero = value.zero.map { loadInteger(io.inputs[$0]!, dtype, 0) } ?? 0
            for i in 0..<inputCounts[index] { target[i] = Float(loadInteger(source, dtype, i) - zero) * scale }
            innerInputs.append(UnsafeRawPointer(target))
        }
        let floatOut = (scratch + outputOffset)
        let outputs: [UnsafeMutableRawPointer?] = [floatOut]
        innerInputs.withUnsafeBufferPointer { inBuffer in
            outputs.withUnsafeBufferPointer { outBuffer in
                inner.run(KernelIO(inputs: inBuffer, outputs: outBuffer, scratch: scratch + innerOffset,
                                   scratchStride: io.scratchStride, runner: io.runner))
            }
        }
        let scale = outputScale.map { io.inputs[$0]!.load(as: Float.self) } ?? 1
        let zero = outputZero.map { loadInteger(io.inputs[$0]!, outputType, 0) } ?? 0
        let (low, high) = outputType.quantizedRange!
        let values = floatOut.assumingMemoryBound(to: Float.self), out = io.outputs[0]!
        for i in 0..<outputCount {
            let q = quantizeValue(values[i], scale: scale, zeroPoint: zero, low: Float(low), high: Float(high))
            if outputType == .uint8 { out.storeBytes(of: UInt8(q), toByteOffset: i, as: UInt8.self) } else {
                out.storeBytes(of: Int8(q), toByteOffset: i, as: Int8.self)
            }
        }
    }

    /// Prepares `innerOperator` on float versions of the quantized inputs and wraps it.
    static func prepare(_ innerOperator: any Operator, innerNode: NodeContext, inputs specs: [ValueSpec?],
                        quantized: [QuantizedValue], outputScale: Int?, outputZero: Int?, outputType: DType?,
                        node: NodeContext) throws -> Prepared {
        var floatSpecs: [ValueSpec?] = []
        var types: [DType] = []
        for value in quantized {
            let spec = try node.required(specs, value.data, "input \(value.data)")
            guard spec.dtype.quantizedRange != nil else { throw node.unsupported("input \(value.data) of type \(spec.dtype); uint8 and int8 are implemented") }
            if let zero = value.zero, let z = specs[zero], z.dtype != spec.dtype {
                throw node.invalid("zero point of input \(value.data) is \(z.dtype), the input \(spec.dtype)")
            }
            for index in [value.scale, value.zero].compactMap({ $0 }) {
                guard let parameter = node.optional(specs, index), parameter.shape.elementCount == 1 else {
                    throw node.unsupported("input \(index): only scalar scales and zero points are implemented here")
                }
            }
            if let s = value.scale, specs[s]!.dtype != .float32 { throw node.invalid("scale input \(s) must be float32") }
            floatSpecs.append(ValueSpec(dtype: .float32, shape: spec.shape))
            types.append(spec.dtype)
        }
        let type = outputType ?? (outputZero.flatMap { specs[$0]?.dtype } ?? types.first ?? .uint8)
        guard type.quantizedRange != nil else { throw node.unsupported("output type \(type)") }
        for index in [outputScale, outputZero].compactMap({ $0 }) {
            guard let parameter = node.optional(specs, index), parameter.shape.elementCount == 1 else {
                throw node.unsupported("input \(index): only scalar scales and zero points are implemented here")
            }
        }
        let inner = try innerOperator.prepare(floatSpecs, innerNode)
        guard inner.kernel != nil, !inner.aliasesFirstInput, inner.outputs.count >= 1 else {
            throw node.unsupported("shapes that reduce to a constant")
        }
        let shape = inner.outputs[0].shape
        let kernel = FloatBridgeKernel(inner: inner, inputs: quantized, inputTypes: types,
                                       inputCounts: floatSpecs.map { $0!.shape.elementCount },
                                       outputScale: outputScale, outputZero: outputZero, outputType: type,
                                       outputCount: shape.elementCount)
        return Prepared(outputs: [ValueSpec(dtype: type, shape: shape)], kernel: kernel, scratchBytes: kernel.scratchBytes)
    }
}

extension NodeContext {
    /// This node seen as a float operator `opType` with `attributes` and `inputs` inputs.
    func asFloat(_ opType: String, attributes: [String: Attribute], inputs: Int) -> NodeContext {
        NodeContext(name: name, opType: opType, opset: max(opset, 13), nativeKernels: nativeKernels, inputCount: inputs,
                    inputNames: Array(inputNames.prefix(inputs)), outputCount: 1, outputsUsed: [true], attributes: attributes)
    }
}

/// MaxPool / AveragePool for every type: float through `PoolOperator`, u8/s8 MaxPool through
/// float (exact: the values round-trip).
struct AnyTypePoolOperator: Operator {
    let float: PoolOperator

    init(_ node: NodeContext) throws { float = try PoolOperator(node) }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        guard node.opType == "MaxPool", x.dtype.quantizedRange != nil else { return try float.prepare(inputs, node) }
        if node.outputsUsed.count > 1 && node.outputsUsed[1] { throw node.unsupported("the Indices output of MaxPool") }
        // 2-D, no ceil_mode: directly on the bytes (cqk_maxpool), planes split across workers.
        if x.shape.count == 4, !float.ceilMode, float.kernelShape.count == 2 {
            let strides = float.strides ?? [1, 1], dilations = float.dilations ?? [1, 1]
            guard strides.count == 2, dilations.count == 2, strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
                throw node.invalid("strides/dilations must have 2 positive values")
            }
            if let pads = float.pads, pads.count != 4 || pads.contains(where: { $0 < 0 }) { throw node.invalid("pads must have 4 non-negative values") }
            let extent = try SpatialPadding.extent(kernel: float.kernelShape, dilations: dilations, node: node)
            let padding = try SpatialPadding.resolve(input: Array(x.shape.dropFirst(2)), kernel: extent, strides: strides,
                                                     autoPad: float.autoPad, pads: float.pads, node: node)
            // Every window must reach the image (else its max would be the padding).
            if zip(padding.begin, extent).allSatisfy({ $0 < $1 }) && zip(padding.end, extent).allSatisfy({ $0 < $1 }) {
                let (h, w, oh, ow) = (x.shape[2], x.shape[3], padding.output[0], padding.output[1])
                let planes = x.shape[0] * x.shape[1], flip: UInt8 = x.dtype == .int8 ? 0x80 : 0
                let k = float.kernelShape, top = padding.begin[0], left = padding.begin[1]
                return Prepared(outputs: [ValueSpec(dtype: x.dtype, shape: Array(x.shape.prefix(2)) + padding.output)], kernel: ClosureKernel { io in
                    let source = io.input(0, UInt8.self), out = io.output(0, UInt8.self)
                    io.parallelItems(planes) { plane, _ in
                        cqk_maxpool(source + plane * h * w, Int32(h), Int32(w), Int32(k[0]), Int32(k[1]), Int32(strides[0]), Int32(strides[1]),
                                    Int32(dilations[0]), Int32(dilations[1]), Int32(top), Int32(left), Int32(oh), Int32(ow), flip,
                                    out + plane * oh * ow)
                    }
                })
            }
        }
        return try FloatBridgeKernel.prepare(float, innerNode: node, inputs: inputs, quantized: [QuantizedValue(data: 0, scale: nil, zero: nil)],
                                             outputScale: nil, outputZero: nil, outputType: x.dtype, node: node)
    }
}

/// com.microsoft QLinearAveragePool (X, x_scale, x_zp, y_scale, y_zp; AveragePool's attributes).
/// channels_last = 1 (N x H x W x C, what `QuantizedLayout` writes): 2-D without ceil_mode and
/// dilations, constant scalar scales and zero points, on `cqk_nhwc_avgpool_row` (integer window
/// sums, rescaled in float); otherwise NCHW through float.
struct QLinearAveragePoolOperator: Operator {
    let float: PoolOperator
    let floatAttributes: [String: Attribute]
    let channelsLast: Bool

    init(_ node: NodeContext) throws {
        channelsLast = try node.int("channels_last", default: 0) != 0
        var attributes = node.attributes
        attributes["channels_last"] = nil
        floatAttributes = attributes
        float = try PoolOperator(node.asFloat("AveragePool", attributes: attributes, inputs: 1))
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        if channelsLast { return try prepareChannelsLast(inputs, node) }
        return try FloatBridgeKernel.prepare(float, innerNode: node.asFloat("AveragePool", attributes: floatAttributes, inputs: 1),
                                             inputs: inputs, quantized: [QuantizedValue(data: 0, scale: 1, zero: 2)],
                                             outputScale: 3, outputZero: 4, outputType: nil, node: node)
    }

    func prepareChannelsLast(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        guard x.shape.count == 4, let range = x.dtype.quantizedRange, !float.ceilMode, float.kernelShape.count == 2,
              (float.dilations ?? [1, 1]).allSatisfy({ $0 == 1 }) else {
            throw node.unsupported("channels_last = 1 takes 2-D u8/s8 input without ceil_mode or dilations")
        }
        func constant(_ index: Int) -> HostTensor? {
            guard let spec = node.optional(inputs, index), spec.shape.elementCount == 1 else { return nil }
            return spec.value
        }
        guard let xScale = constant(1), let yScale = constant(3), xScale.dtype == .float32, yScale.dtype == .float32,
              node.optional(inputs, 2) == nil || constant(2)?.dtype == x.dtype,
              node.optional(inputs, 4) == nil || constant(4)?.dtype == x.dtype else {
            throw node.unsupported("channels_last = 1 needs constant scalar scales and zero points of X's type")
        }
        let strides = float.strides ?? [1, 1]
        guard strides.count == 2, strides.allSatisfy({ $0 > 0 }) else { throw node.invalid("strides must have 2 positive values") }
        if let pads = float.pads, pads.count != 4 || pads.contains(where: { $0 < 0 }) { throw node.invalid("pads must have 4 non-negative values") }
        let (n, h, w, channels) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let k = float.kernelShape
        let padding = try SpatialPadding.resolve(input: [h, w], kernel: k, strides: strides, autoPad: float.autoPad, pads: float.pads, node: node)
        let (oh, ow) = (padding.output[0], padding.output[1])
        let scale = xScale.pointer(as: Float.self)[0] / yScale.pointer(as: Float.self)[0]
        let xZero = constant(2).map { loadInteger($0.bytes, x.dtype, 0) } ?? 0
        let yZero = constant(4).map { loadInteger($0.bytes, x.dtype, 0) } ?? 0
        let (top, left, includePad) = (padding.begin[0], padding.begin[1], float.countIncludePad ? Int32(1) : 0)
        let signed: Int32 = x.dtype == .int8 ? 1 : 0
        var prepared = Prepared(outputs: [ValueSpec(dtype: x.dtype, shape: [n, oh, ow, channels])], kernel: ClosureKernel { io in
            let source = io.input(0, UInt8.self), out = io.output(0, UInt8.self)
            io.parallelItems(n * oh) { item, worker in
                let image = item / oh, row = item % oh
                let sums = io.scratch(worker: worker)!.assumingMemoryBound(to: Int32.self)
                cqk_nhwc_avgpool_row(source + image * h * w * channels, Int32(h), Int32(w), Int32(channels), Int32(k[0]), Int32(k[1]),
                                     Int32(strides[0]), Int32(strides[1]), Int32(top), Int32(left), Int32(row), Int32(ow),
                                     includePad, xZero, scale, yZero, range.low, range.high, signed, sums, out + item * ow * channels)
            }
        }, scratchBytes: channels * 4)
        prepared.unusedInputs = [1, 2, 3, 4]
        return prepared
    }
}

/// com.microsoft QLinearGlobalAveragePool (X, x_scale, x_zp, y_scale, y_zp): NCHW through float;
/// channels_last = 1 (N x H x W x C -> N x 1 x 1 x C, what `QuantizedLayout` writes) as one
/// H x W window of the NHWC average pool.
struct QLinearGlobalAveragePoolOperator: Operator {
    let float: GlobalPoolOperator
    let channelsLast: Bool

    init(_ node: NodeContext) throws {
        try node.allowOnly(["channels_last"])
        float = try GlobalPoolOperator(node.asFloat("GlobalAveragePool", attributes: [:], inputs: 1))
        channelsLast = try node.int("channels_last", default: 0) != 0
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        if channelsLast {
            let x = try node.required(inputs, 0, "X")
            guard x.shape.count == 4 else { throw node.unsupported("channels_last = 1 takes 4-D input") }
            let window = NodeContext(name: node.name, opType: "QLinearAveragePool", opset: node.opset, nativeKernels: node.nativeKernels,
                                     inputCount: node.inputCount, inputNames: node.inputNames, outputCount: 1, outputsUsed: [true],
                                     attributes: ["kernel_shape": .ints([x.shape[1], x.shape[2]]), "channels_last": .int(1)])
            return try QLinearAveragePoolOperator(window).prepare(inputs, window)
        }
        return try FloatBridgeKernel.prepare(float, innerNode: node.asFloat("GlobalAveragePool", attributes: [:], inputs: 1),
                                             inputs: inputs, quantized: [QuantizedValue(data: 0, scale: 1, zero: 2)],
                                             outputScale: 3, outputZero: 4, outputType: nil, node: node)
    }
}

/// com.microsoft QLinearAdd / QLinearMul (A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp),
/// with the float operator's broadcasting.
struct QLinearBinaryOperator: Operator {
    let float: BinaryOperator
    let floatType: String

    init(_ node: NodeContext) throws {
        try node.allowOnly([])
        floatType = node.opType == "QLinearAdd" ? "Add" : "Mul"
        float = try BinaryOperator(node.asFloat(floatType, attributes: [:], inputs: 2))
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        // Same shapes and types, scalar parameters: one pass (cqk_qlinear_add), split across workers.
        if let a = node.optional(inputs, 0), let b = node.optional(inputs, 3), a.shape == b.shape, a.dtype == b.dtype,
           let range = a.dtype.quantizedRange,
           [1, 4, 6].allSatisfy({ node.optional(inputs, $0).map { $0.dtype == .float32 && $0.shape.elementCount == 1 } ?? false }),
           [2, 5, 7].allSatisfy({ node.optional(inputs, $0).map { $0.dtype == a.dtype && $0.shape.elementCount == 1 } ?? true }) {
            let count = a.shape.elementCount, dtype = a.dtype, isMul: Int32 = floatType == "Mul" ? 1 : 0
            return Prepared(outputs: [ValueSpec(dtype: dtype, shape: a.shape)], kernel: ClosureKernel { io in
                func scale(_ index: Int) -> Float { io.inputs[index]!.load(as: Float.self) }
                func zero(_ index: Int) -> Int32 { io.inputs[index].map { loadInteger($0, dtype, 0) } ?? 0 }
                let (sa, za, sb, zb, sc, zc) = (scale(1), zero(2), scale(4), zero(5), scale(6), zero(7))
                let pa = io.input(0, UInt8.self), pb = io.input(3, UInt8.self), out = io.output(0, UInt8.self)
                let chunks = max(1, min(io.width * 4, count / 16384))
                io.parallelItems(chunks) { chunk, _ in
                    let start = chunk * count / chunks, end = (chunk + 1) * count / chunks
                    cqk_qlinear_add(pa + start, sa, za, pb + start, sb, zb, sc, zc, range.low, range.high,
                                    dtype == .int8 ? 1 : 0, isMul, out + start, end - start)
                }
            })
        }
        return try FloatBridgeKernel.prepare(float, innerNode: node.asFloat(floatType, attributes: [:], inputs: 2), inputs: inputs,
                                      quantized: [QuantizedValue(data: 0, scale: 1, zero: 2), QuantizedValue(data: 3, scale: 4, zero: 5)],
                                      outputScale: 6, outputZero: 7, outputType: nil, node: node)
    }
}

/// com.microsoft QLinearConcat (Y_scale, Y_zp, then X, X_scale, X_zp per input; axis).
struct QLinearConcatOperator: Operator {
    let float: ConcatOperator
    let axis: Int

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axis"])
        axis = try node.int("axis", default: 0)
        guard node.inputCount >= 5, (node.inputCount - 2) % 3 == 0 else {
            throw node.invalid("QLinearConcat takes Y_scale, Y_zero_point and (X, X_scale, X_zero_point) triples")
        }
        float = try ConcatOperator(node.asFloat("Concat", attributes: ["axis": .int(axis)], inputs: (node.inputCount - 2) / 3))
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let count = (inputs.count - 2) / 3
        if let prepared = try prepareBytes(inputs, node) { return prepared }
        return try FloatBridgeKernel.prepare(float, innerNode: node.asFloat("Concat", attributes: ["axis": .int(axis)], inputs: count),
                                             inputs: inputs,
                                             quantized: (0..<count).map { QuantizedValue(data: 2 + 3 * $0, scale: 3 + 3 * $0, zero: 4 + 3 * $0) },
                                             outputScale: 0, outputZero: 1, outputType: nil, node: node)
    }
}

extension QLinearConcatOperator {
    /// Constant scalar scales and zero points, one u8/s8 type: each input's bytes map to the
    /// output's through a 256-entry table (dequantize, quantize: the float path's result for
    /// every byte), or are copied when its scale and zero point are the output's; workers take
    /// ranges of the outer index. Nil when the float path must run.
    func prepareBytes(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared? {
        let count = (inputs.count - 2) / 3
        guard let first = node.optional(inputs, 2), let range = first.dtype.quantizedRange else { return nil }
        let dtype = first.dtype, rank = first.shape.count
        func scalar(_ index: Int) -> HostTensor?? {
            guard let spec = node.optional(inputs, index) else { return .some(nil) }
            guard spec.shape.elementCount == 1, let value = spec.value else { return nil }
            return .some(value)
        }
        guard let yScale = scalar(0), let yScaleValue = yScale, yScaleValue.dtype == .float32, let yZero = scalar(1),
              yZero.map({ $0.dtype == dtype }) ?? true else { return nil }
        let outScale = yScaleValue.pointer(as: Float.self)[0]
        let outZero = yZero.map { loadInteger($0.bytes, dtype, 0) } ?? 0
        var tables: [[UInt8]?] = []
        var shapes: [[Int]] = []
        for index in 0..<count {
            guard let x = node.optional(inputs, 2 + 3 * index), x.dtype == dtype, x.shape.count == rank,
                  let scale = scalar(3 + 3 * index), let scaleValue = scale, scaleValue.dtype == .float32,
                  let zero = scalar(4 + 3 * index), zero.map({ $0.dtype == dtype }) ?? true else { return nil }
            let s = scaleValue.pointer(as: Float.self)[0], z = zero.map { loadInteger($0.bytes, dtype, 0) } ?? 0
            shapes.append(x.shape)
            if s == outScale && z == outZero { tables.append(nil); continue }
            tables.append((0..<256).map { byte in
                let value = dtype == .int8 ? Int32(Int8(truncatingIfNeeded: byte)) : Int32(byte)
                let q = quantizeValue(Float(value - z) * s, scale: outScale, zeroPoint: outZero, low: Float(range.low), high: Float(range.high))
                return UInt8(truncatingIfNeeded: q)
            })
        }
        let axis = try node.axis(self.axis, rank: rank)
        var outShape = shapes[0]
        outShape[axis] = 0
        for shape in shapes {
            guard shape.indices.allSatisfy({ $0 == axis || shape[$0] == shapes[0][$0] }) else {
                throw node.invalid("inputs \(shapes) cannot be concatenated on axis \(axis)")
            }
            outShape[axis] += shape[axis]
        }
        let outer = shapes[0].prefix(axis).reduce(1, *)
        let chunks = shapes.map { $0.dropFirst(axis).reduce(1, *) }
        let outRow = chunks.reduce(0, +)
        let columns = chunks.indices.map { chunks[..<$0].reduce(0, +) }
        let flat = tables.map { $0 ?? [] }.flatMap { $0 }
        // Offset of each input's table in `flat`, or -1 for a plain copy.
        let tableOffsets = tables.indices.map { index in tables[index] == nil ? -1 : tables[..<index].reduce(0) { $0 + ($1 == nil ? 0 : 256) } }
        var prepared = Prepared(outputs: [ValueSpec(dtype: dtype, shape: outShape)], kernel: ClosureKernel { io in
            let out = io.output(0, UInt8.self)
            flat.withUnsafeBufferPointer { table in
                io.parallelRanges(outer) { rows, _ in
                    for index in 0..<count {
                        let source = io.input(2 + 3 * index, UInt8.self), chunk = chunks[index]
                        let map = tableOffsets[index] < 0 ? nil : table.baseAddress! + tableOffsets[index]
                        cqk_copy_rows(source + rows.lowerBound * chunk, chunk, Int32(rows.count), chunk, map,
                                      out + rows.lowerBound * outRow + columns[index], outRow)
                    }
                }
            }
        })
        prepared.unusedInputs = Set((0..<count).flatMap { [3 + 3 * $0, 4 + 3 * $0] } + [0, 1])
        return prepared
    }
}

/// Operators of the com.microsoft domain the engine implements (onnxruntime's contrib ops
/// that its quantization tool writes).
enum ContribOperatorRegistry {
    static let domain = "com.microsoft"
    static let types: [String: any Operator.Type] = [
        "QLinearConv": QuantizedConvOperator.self,
        "NhwcQLinearConv": NhwcQLinearConvOperator.self,
        "NhwcMaxPool": NhwcMaxPoolOperator.self,
        "QGemm": QuantizedMatMulOperator.self,
        "QLinearAdd": QLinearBinaryOperator.self,
        "QLinearMul": QLinearBinaryOperator.self,
        "QLinearAveragePool": QLinearAveragePoolOperator.self,
        "QLinearGlobalAveragePool": QLinearGlobalAveragePoolOperator.self,
        "QLinearConcat": QLinearConcatOperator.self,
        "QuantizeLinear": QuantizeLinearOperator.self,
        "DequantizeLinear": DequantizeLinearOperator.self,
    ]
}
