import CQuantKernels

/// QLinearConv and ConvInteger (1-D and 2-D, groups, strides, dilations, pads, auto_pad):
/// y = saturate(round((sum (x - x_zp)(w - w_zp) + B) * x_scale * w_scale / y_scale) + y_zp)
/// (QLinearConv, per-tensor or per-output-channel w_scale / w_zp), or the int32 sum
/// (ConvInteger). Runs as gathered 64-pixel panels x packed weights on the integer kernels
/// of `QuantizedKernelPath`; padding reads as x_zp. Weights, zero points and scales that are
/// constants are packed once at prepare; otherwise each run packs them.
struct QuantizedConvOperator: Operator {
    let isInteger: Bool
    let autoPad: String
    let dilations: [Int]?
    let group: Int
    let kernelShape: [Int]?
    let pads: [Int]?
    let strides: [Int]?

    init(_ node: NodeContext) throws {
        isInteger = node.opType == "ConvInteger"
        try node.allowOnly(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])
        autoPad = try node.string("auto_pad", default: "NOTSET")
        dilations = try node.ints("dilations")
        group = try node.int("group", default: 1)
        kernelShape = try node.ints("kernel_shape")
        pads = try node.ints("pads")
        strides = try node.ints("strides")
        if group < 1 { throw node.invalid("group must be at least 1") }
    }

    func operands(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> QuantizedOperands {
        if isInteger {
            return QuantizedOperands(x: try node.required(inputs, 0, "x"), w: try node.required(inputs, 1, "w"),
                                     xZero: QuantParameter(inputs, 2), wZero: QuantParameter(inputs, 3),
                                     output: .int32, wIndex: 1)
        }
        let yZero = QuantParameter(inputs, 7)
        _ = try node.required(inputs, 1, "x_scale"); _ = try node.required(inputs, 4, "w_scale"); _ = try node.required(inputs, 6, "y_scale")
        return QuantizedOperands(x: try node.required(inputs, 0, "x"), w: try node.required(inputs, 3, "w"),
                                 xScale: QuantParameter(inputs, 1), xZero: QuantParameter(inputs, 2),
                                 wScale: QuantParameter(inputs, 4), wZero: QuantParameter(inputs, 5),
                                 yScale: QuantParameter(inputs, 6), yZero: yZero,
                                 bias: node.optional(inputs, 8), biasIndex: 8,
                                 output: .quantized(yZero?.dtype ?? .uint8), wIndex: 3)
    }

    /// Checks the attributes against x and w (NCHW shapes) and resolves the 2-D geometry and
    /// the output's spatial shape.
    func geometry(x xShape: [Int], w wShape: [Int], node: NodeContext) throws -> (QuantizedConvGeometry, [Int]) {
        guard xShape.count == 3 || xShape.count == 4 else {
            throw node.unsupported("input shape \(xShape): 1-D and 2-D quantized convolutions are implemented")
        }
        guard wShape.count == xShape.count else { throw node.invalid("w shape \(wShape) does not match x shape \(xShape)") }
        let spatialRank = xShape.count - 2
        let (batch, channels, outChannels) = (xShape[0], xShape[1], wShape[0])
        guard channels % group == 0, outChannels % group == 0, wShape[1] * group == channels else {
            throw node.invalid("x has \(channels) channels, w \(wShape) with group \(group) expects \(wShape[1] * group)")
        }
        let kernel = Array(wShape.dropFirst(2))
        guard outChannels > 0, channels > 0, kernel.allSatisfy({ $0 > 0 }) else {
            throw node.invalid("w \(wShape) and x \(xShape) must have channels and a kernel of at least one element")
        }
        if let kernelShape, kernelShape != kernel { throw node.invalid("kernel_shape \(kernelShape) disagrees with w \(wShape)") }
        let strides = self.strides ?? Array(repeating: 1, count: spatialRank)
        let dilations = self.dilations ?? Array(repeating: 1, count: spatialRank)
        guard strides.count == spatialRank, dilations.count == spatialRank, strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw node.invalid("strides/dilations must have \(spatialRank) positive values")
        }
        if let pads, pads.count != 2 * spatialRank || pads.contains(where: { $0 < 0 }) {
            throw node.invalid("pads must have \(2 * spatialRank) non-negative values")
        }
        let extent = try SpatialPadding.extent(kernel: kernel, dilations: dilations, node: node)
        let padding = try SpatialPadding.resolve(input: Array(xShape.dropFirst(2)), kernel: extent, strides: strides,
                                                 autoPad: autoPad, pads: pads, node: node)
        let two = { (values: [Int], fill: Int) in Array(repeating: fill, count: 2 - values.count) + values }
        let size = two(Array(xShape.dropFirst(2)), 1), k = two(kernel, 1), s = two(strides, 1), d = two(dilations, 1)
        let out = two(padding.output, 1), pb = two(padding.begin, 0)
        let geometry = QuantizedConvGeometry(batch: batch, channels: channels / group, groups: group, outPerGroup: outChannels / group,
                                             height: size[0], width: size[1], kernelH: k[0], kernelW: k[1],
                                             strideH: s[0], strideW: s[1], dilationH: d[0], dilationW: d[1],
                                             padTop: pb[0], padLeft: pb[1], outH: out[0], outW: out[1])
        return (geometry, padding.output)
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let path = try QuantizedKernelPath.current()
        let ops = try operands(inputs, node)
        let x = ops.x, w = ops.w
        let (geometry, outputSpatial) = try self.geometry(x: x.shape, w: w.shape, node: node)
        let (batch, outChannels) = (x.shape[0], w.shape[0])
        try ops.check(node, rowsTotal: outChannels)
        let outDType: DType
        switch ops.output {
        case .quantized(let dtype): outDType = dtype
        case .int32: outDType = .int32
        case .float: outDType = .float32
        }
        let depth = geometry.channels * geometry.kernelH * geometry.kernelW
        let layout = QuantizedScratch(depth: depth, rows: geometry.outPerGroup, path: path)
        let weightsAt: @Sendable (UnsafeRawPointer, Int, Int) -> Int32 = { pointer, row, k in loadInteger(pointer, w.dtype, row * depth + k) }
        let make: @Sendable (KernelIO?) -> QuantizedWeights = { io in
            ops.makeWeights(io, path: path, groups: geometry.groups, rows: geometry.outPerGroup, depth: depth, weight: weightsAt)
        }
        if ops.weightsConstant, geometry.outPerGroup == 1, geometry.channels == 1, geometry.groups > 1, !isInteger,
           case .quantized(let dtype) = ops.output {
            // Depthwise (one input and one output channel per group): a direct kernel per channel.
            let kernel = QuantizedDepthwiseKernel(geometry: geometry, ops: ops, outType: dtype)
            var prepared = Prepared(outputs: [ValueSpec(dtype: outDType, shape: [batch, outChannels] + outputSpatial)], kernel: kernel,
                                    scratchBytes: kernel.scratchBytes)
            prepared.unusedInputs = [3, 8]
            return prepared
        }
        let constant = ops.weightsConstant ? make(nil) : nil
        let kernelObject = QuantizedConvKernel(geometry: geometry, layout: layout, output: ops.output, xSigned: x.dtype == .int8,
                                               xZero: ops.xZero, yZero: ops.yZero, constant: constant, make: make)
        var prepared = Prepared(outputs: [ValueSpec(dtype: outDType, shape: [batch, outChannels] + outputSpatial)], kernel: kernelObject,
                                scratchBytes: layout.bytes)
        if constant != nil { prepared.unusedInputs = Set(isInteger ? [1] : [3, 8]) }
        return prepared
    }
}

struct QuantizedConvGeometry: Sendable {
    let batch: Int, channels: Int, groups: Int, outPerGroup: Int
    let height: Int, width: Int, kernelH: Int, kernelW: Int
    let strideH: Int, strideW: Int, dilationH: Int, dilationW: Int
    let padTop: Int, padLeft: Int, outH: Int, outW: Int
    var outPlane: Int { outH * outW }
}

struct QuantizedConvKernel: Kernel, @unchecked Sendable {
    let geometry: QuantizedConvGeometry
    let layout: QuantizedScratch
    let output: QuantizedOutput
    let xSigned: Bool
    let xZero: QuantParameter?
    let yZero: QuantParameter?
    let constant: QuantizedWeights?
    let make: @Sendable (KernelIO?) -> QuantizedWeights

    func run(_ io: KernelIO) {
        let weights = constant ?? make(io)
        let g = geometry
        let panel = Int(CQK_PANEL)
        let panels = (g.outPlane + panel - 1) / panel
        let flip: UInt8 = xSigned ? 0x80 : 0
        // Padding reads as the zero point, in the u8 domain of the kernels.
        let padValue = UInt8(truncatingIfNeeded: (xZero?.integer(io, 0) ?? 0)) ^ flip
        let yZeroValue = yZero?.integer(io, 0) ?? 0
        let x = io.inputs[0]!.assumingMemoryBound(to: UInt8.self)
        let out = io.outputs[0]!
        let elementSize: Int
        switch output {
        case .quantized: elementSize = 1
        default: elementSize = 4
        }
        let outChannels = g.groups * g.outPerGroup
        let pointwise = g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1 && g.strideW == 1 && g.padTop == 0 && g.padLeft == 0
            && g.outH == g.height && g.outW == g.width
        io.parallelItems(g.batch * g.groups * panels) { item, worker in
            let scratch = io.scratch(worker: worker)!
            let p0 = (item % panels) * panel
            let group = (item / panels) % g.groups
            let image = item / (panels * g.groups)
            let count = min(panel, g.outPlane - p0)
            let rows = scratch.assumingMemoryBound(to: UInt8.self) + layout.rowsOffset
            let planeBytes = g.height * g.width
            let source = x + (image * g.groups + group) * g.channels * planeBytes
            var rowSource = UnsafePointer(rows), rowStride = panel
            if pointwise && flip == 0 {
                rowSource = UnsafePointer(source + p0)
                rowStride = planeBytes
            } else if pointwise {
                for c in 0..<g.channels {
                    let row = rows + c * panel, from = source + c * planeBytes + p0
                    for t in 0..<count { row[t] = from[t] ^ flip }
                }
            } else {
                cqk_im2col(source, Int32(g.channels), Int32(g.height), Int32(g.width), Int32(g.kernelH), Int32(g.kernelW),
                           Int32(g.strideH), Int32(g.strideW), Int32(g.dilationH), Int32(g.dilationW), Int32(g.padTop),
                           Int32(g.padLeft), Int32(g.outW), Int32(p0), Int32(count), padValue, flip, rows)
            }
            weights.multiplyPanel(group: group, count: count, rows: rowSource, rowStride: rowStride, scratch: scratch, layout: layout) { block, rowCount, acc, colsum in
                let channel = group * g.outPerGroup + block * Int(CQK_ROWS)
                let target = out + ((image * outChannels + channel) * g.outPlane + p0) * elementSize
                weights.storeRows(output, globalRow: channel, rowCount: rowCount, count: count, acc: acc, colsum: colsum,
                                  yZero: yZeroValue, out: target, ldo: g.outPlane)
            }
        }
    }
}

/// Depthwise QLinearConv with constant weights: per channel, `cqk_depthwise` over the padded
/// plane (x - x_zp as s16) with the weights minus their zero point; channels split across workers.
struct QuantizedDepthwiseKernel: Kernel, @unchecked Sendable {
    let geometry: QuantizedConvGeometry
    let weights: [Int16]
    let bias: [Int32]
    let scales: [Float]
    let xZero: UInt8
    let flip: UInt8
    let yZero: Int32
    let outType: DType
    let paddedBytes: Int

    init(geometry g: QuantizedConvGeometry, ops: QuantizedOperands, outType: DType) {
        geometry = g
        let taps = g.kernelH * g.kernelW
        let w = ops.w.value!
        var weights = [Int16](repeating: 0, count: g.groups * taps)
        for c in 0..<g.groups {
            let zero = ops.wZero?.integer(nil, c) ?? 0
            for t in 0..<taps { weights[c * taps + t] = Int16(loadInteger(w.bytes, w.dtype, c * taps + t) - zero) }
        }
        self.weights = weights
        bias = (0..<g.groups).map { c in ops.bias.map { $0.value!.pointer(as: Int32.self)[c] } ?? 0 }
        let xs = ops.xScale?.float(nil, 0) ?? 1, ys = ops.yScale?.float(nil, 0) ?? 1
        scales = (0..<g.groups).map { c in xs * (ops.wScale?.float(nil, c) ?? 1) / ys }
        flip = ops.x.dtype == .int8 ? 0x80 : 0
        xZero = UInt8(truncatingIfNeeded: ops.xZero?.integer(nil, 0) ?? 0) ^ flip
        yZero = ops.yZero?.integer(nil, 0) ?? 0
        self.outType = outType
        let ph = (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1
        let pw = (g.outW - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1
        paddedBytes = (ph * pw * 2 + 63) / 64 * 64
    }

    var scratchBytes: Int { paddedBytes + (geometry.outW * 4 + 63) / 64 * 64 }

    func run(_ io: KernelIO) {
        let g = geometry
        let x = io.input(0, UInt8.self), out = io.outputs[0]!
        let (low, high) = outType.quantizedRange!
        let taps = g.kernelH * g.kernelW, plane = g.height * g.width
        weights.withUnsafeBufferPointer { w in
            io.parallelItems(g.batch * g.groups) { item, worker in
                let scratch = io.scratch(worker: worker)!
                let c = item % g.groups
                cqk_depthwise(x + item * plane, Int32(g.height), Int32(g.width), Int32(g.kernelH), Int32(g.kernelW),
                              Int32(g.strideH), Int32(g.strideW), Int32(g.dilationH), Int32(g.dilationW),
                              Int32(g.padTop), Int32(g.padLeft), Int32(g.outH), Int32(g.outW), xZero, flip,
                              w.baseAddress! + c * taps, bias[c], scales[c], yZero, low, high, outType == .int8 ? 2 : 0,
                              out + item * g.outPlane, scratch.assumingMemoryBound(to: Int16.self),
                              (scratch + paddedBytes).assumingMemoryBound(to: Int32.self))
            }
        }
    }
}
