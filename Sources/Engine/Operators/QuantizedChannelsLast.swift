import CQuantKernels

/// Channels-last quantized operators, written by `QuantizedLayout` (never by a model's own
/// graph in practice, though they are ordinary com.microsoft-domain nodes):
/// - NhwcQLinearConv: QLinearConv's inputs and attributes, x and y in N x H x W x C. u8
///   activations, constant weights, scales and zero points; group 1 (a GEMM over the pixel
///   rows, im2col of whole channel runs unless 1x1 stride 1 unpadded) or depthwise (channel
///   multiplier 1). Requantisation (per-channel scales, zero point, saturation) runs in the
///   kernels' epilogue, writing u8/s8 directly.
/// - NhwcMaxPool: MaxPool's attributes on u8/s8 N x H x W x C (onnxruntime's contrib operator
///   of that name).
struct NhwcQLinearConvOperator: Operator {
    let conv: QuantizedConvOperator

    init(_ node: NodeContext) throws { conv = try QuantizedConvOperator(node) }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let path = try QuantizedKernelPath.current()
        let x = try node.required(inputs, 0, "x")
        guard x.shape.count == 4 else { throw node.unsupported("input shape \(x.shape): NHWC convolutions are 2-D") }
        guard x.dtype == .uint8 else { throw node.unsupported("activations of type \(x.dtype); NHWC convolutions take uint8") }
        var nchwInputs = inputs
        nchwInputs[0] = ValueSpec(dtype: x.dtype, shape: [x.shape[0], x.shape[3], x.shape[1], x.shape[2]])
        let ops = try conv.operands(nchwInputs, node)
        let (g, spatial) = try conv.geometry(x: nchwInputs[0]!.shape, w: ops.w.shape, node: node)
        let outChannels = ops.w.shape[0]
        try ops.check(node, rowsTotal: outChannels)
        guard ops.weightsConstant, case .quantized(let outType) = ops.output else {
            throw node.unsupported("NHWC convolutions need constant weights, scales and zero points")
        }
        let output = ValueSpec(dtype: outType, shape: [g.batch] + spatial + [outChannels])
        if g.groups == 1 {
            let kernel = NhwcConvKernel(geometry: g, ops: ops, outType: outType, path: path)
            var prepared = Prepared(outputs: [output], kernel: kernel, scratchBytes: kernel.scratchBytes)
            prepared.unusedInputs = [3, 8]
            return prepared
        }
        guard g.channels == 1, g.outPerGroup == 1 else { throw node.unsupported("grouped NHWC convolutions other than depthwise") }
        let kernel = NhwcDepthwiseKernel(geometry: g, ops: ops, outType: outType, path: path)
        var prepared = Prepared(outputs: [output], kernel: kernel)
        prepared.unusedInputs = [3, 8]
        return prepared
    }
}

/// Per-output-channel constants of a quantized convolution's epilogue, owned (freed in deinit).
final class NhwcConvConstants: @unchecked Sendable {
    let packed: UnsafeMutablePointer<Int8>?
    /// Depthwise weights minus their zero point, [taps][channels] s32.
    let depthwise: UnsafeMutablePointer<Int32>?
    let bias: UnsafeMutablePointer<Int32>
    let zeroPoints: UnsafeMutablePointer<Int32>?
    let scales: UnsafeMutablePointer<Float>

    init(packed: [Int8]?, depthwise: [Int32]?, bias: [Int32], zeroPoints: [Int32]?, scales: [Float]) {
        self.packed = packed.map(QuantizedWeights.owned)
        self.depthwise = depthwise.map(QuantizedWeights.owned)
        self.bias = QuantizedWeights.owned(bias)
        self.zeroPoints = zeroPoints.map(QuantizedWeights.owned)
        self.scales = QuantizedWeights.owned(scales)
    }

    deinit {
        packed?.deallocate()
        depthwise?.deallocate()
        bias.deallocate()
        zeroPoints?.deallocate()
        scales.deallocate()
    }
}

/// Group-1 NHWC QLinearConv: output pixels in chunks (x rows as they are for 1x1 stride-1
/// unpadded, else `cqk_nhwc_im2col` into scratch), each chunk against the packed weight
/// blocks (split further across workers when there are few chunks).
struct NhwcConvKernel: Kernel, @unchecked Sendable {
    let geometry: QuantizedConvGeometry
    let depth: Int, paddedDepth: Int, outChannels: Int
    let constants: NhwcConvConstants
    let path: QuantizedKernelPath
    let outType: DType
    let xZero: UInt8
    let yZero: Int32
    let direct: Bool
    /// Output pixels per work item (a multiple of the register tile).
    static let chunk = 96

    /// `weightAt(m, q)`: the raw weight of output channel m at depth q of the rows' order;
    /// by default ONNX convolution weights ([M][C][kh][kw]) reordered to the im2col rows'
    /// [kh][kw][C].
    init(geometry g: QuantizedConvGeometry, ops: QuantizedOperands, outType: DType, path: QuantizedKernelPath,
         weightAt: ((Int, Int) -> Int32)? = nil) {
        geometry = g
        self.path = path
        self.outType = outType
        let taps = g.kernelH * g.kernelW
        let depth = taps * g.channels, outChannels = g.outPerGroup
        self.depth = depth
        paddedDepth = (depth + 3) / 4 * 4
        self.outChannels = outChannels
        let w = ops.w.value!
        let shiftW: Int32 = ops.w.dtype == .uint8 ? 128 : 0
        let xz = ops.xZero?.integer(nil, 0) ?? 0
        // ONNX weights are [M][C][kh][kw]; the rows here are [M][kh][kw][C] like the im2col rows.
        var values = [Int8](repeating: 0, count: outChannels * depth)
        var bias = [Int32](repeating: 0, count: outChannels)
        var points = [Int32](repeating: 0, count: outChannels)
        for m in 0..<outChannels {
            var sum: Int32 = 0
            for c in 0..<g.channels {
                for t in 0..<taps {
                    let q = t * g.channels + c
                    let raw = weightAt?(m, q) ?? loadInteger(w.bytes, ops.w.dtype, (m * g.channels + c) * taps + t)
                    let v = raw - shiftW
                    values[m * depth + q] = Int8(truncatingIfNeeded: v)
                    sum &+= v
                }
            }
            let z = (ops.wZero?.integer(nil, m) ?? 0) - shiftW
            points[m] = z
            let b = ops.bias.map { $0.value!.pointer(as: Int32.self)[m] } ?? 0
            // sum (x - xz)(w - z) = sum x w - z sum x - xz sum w + depth xz z; padding reads as xz.
            bias[m] = b &- xz &* sum &+ Int32(depth) &* xz &* z
        }
        var packed = [Int8](repeating: 0, count: cqk_nhwc_packed_bytes(Int32(outChannels), Int32(depth)))
        values.withUnsafeBufferPointer { v in
            packed.withUnsafeMutableBufferPointer { p in
                cqk_nhwc_pack_weights(v.baseAddress!, depth, Int32(outChannels), Int32(depth), p.baseAddress!)
            }
        }
        let xs = ops.xScale?.float(nil, 0) ?? 1, ys = ops.yScale?.float(nil, 0) ?? 1
        constants = NhwcConvConstants(packed: packed, depthwise: nil, bias: bias,
                                      zeroPoints: points.contains { $0 != 0 } ? points : nil,
                                      scales: (0..<outChannels).map { xs * (ops.wScale?.float(nil, $0) ?? 1) / ys })
        xZero = UInt8(truncatingIfNeeded: xz)
        yZero = ops.yZero?.integer(nil, 0) ?? 0
        direct = g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1 && g.strideW == 1 && g.padTop == 0 && g.padLeft == 0
            && g.outH == g.height && g.outW == g.width
    }

    var scratchBytes: Int { direct ? 0 : Self.chunk * paddedDepth }

    func run(_ io: KernelIO) {
        let g = geometry
        let x = io.input(0, UInt8.self), out = io.output(0, UInt8.self)
        let pixels = g.batch * g.outH * g.outW
        let chunks = (pixels + Self.chunk - 1) / Self.chunk
        let blocks = (outChannels + Int(CQK_NHWC_COLS) - 1) / Int(CQK_NHWC_COLS)
        // Few chunks: split the output channels too, so every worker has items.
        var splits = 1
        while chunks * splits < 2 * io.width && splits < blocks { splits += 1 }
        let (low, high) = outType.quantizedRange!
        let c = constants
        io.parallelItems(chunks * splits) { item, worker in
            let chunk = item / splits, split = item % splits
            let p0 = chunk * Self.chunk, count = min(Self.chunk, pixels - p0)
            let b0 = split * blocks / splits, b1 = (split + 1) * blocks / splits
            var rows = x + p0 * depth, stride = depth
            if !direct {
                let scratch = io.scratch(worker: worker)!.assumingMemoryBound(to: UInt8.self)
                cqk_nhwc_im2col(x, Int32(g.height), Int32(g.width), Int32(g.channels), Int32(g.kernelH), Int32(g.kernelW),
                                Int32(g.strideH), Int32(g.strideW), Int32(g.dilationH), Int32(g.dilationW),
                                Int32(g.padTop), Int32(g.padLeft), Int32(g.outH), Int32(g.outW), p0, Int32(count),
                                xZero, scratch, paddedDepth)
                rows = UnsafePointer(scratch)
                stride = paddedDepth
            }
            cqk_nhwc_gemm(path.rawValue, rows, stride, Int32(count), Int32(depth), c.packed!, Int32(outChannels),
                          Int32(b0), Int32(b1), c.bias, c.zeroPoints, c.scales, yZero, low, high,
                          outType == .int8 ? 1 : 0, out + p0 * outChannels, outChannels)
        }
    }
}

/// Depthwise NHWC QLinearConv (channel multiplier 1): output rows split across workers.
final class NhwcDepthwiseKernel: Kernel, @unchecked Sendable {
    let geometry: QuantizedConvGeometry
    let constants: NhwcConvConstants
    let path: QuantizedKernelPath
    let outType: DType
    let xZero: Int32
    let yZero: Int32
    /// bias - x_zero * (sum of the channel's weights), for windows inside the image. Owned.
    let biasFull: UnsafeMutablePointer<Int32>

    init(geometry g: QuantizedConvGeometry, ops: QuantizedOperands, outType: DType, path: QuantizedKernelPath) {
        geometry = g
        self.path = path
        self.outType = outType
        let taps = g.kernelH * g.kernelW, channels = g.groups
        let w = ops.w.value!
        var weights = [Int32](repeating: 0, count: taps * channels)
        for c in 0..<channels {
            let zero = ops.wZero?.integer(nil, c) ?? 0
            for t in 0..<taps { weights[t * channels + c] = loadInteger(w.bytes, ops.w.dtype, c * taps + t) - zero }
        }
        let xs = ops.xScale?.float(nil, 0) ?? 1, ys = ops.yScale?.float(nil, 0) ?? 1
        let bias = (0..<channels).map { c in ops.bias.map { $0.value!.pointer(as: Int32.self)[c] } ?? 0 }
        let xz = ops.xZero?.integer(nil, 0) ?? 0
        biasFull = QuantizedWeights.owned((0..<channels).map { c in
            (0..<taps).reduce(bias[c]) { $0 &- xz &* weights[$1 * channels + c] }
        })
        constants = NhwcConvConstants(packed: nil, depthwise: weights, bias: bias,
                                      zeroPoints: nil, scales: (0..<channels).map { xs * (ops.wScale?.float(nil, $0) ?? 1) / ys })
        xZero = xz
        yZero = ops.yZero?.integer(nil, 0) ?? 0
    }

    deinit { biasFull.deallocate() }

    func run(_ io: KernelIO) {
        let g = geometry, channels = g.groups
        let x = io.input(0, UInt8.self), out = io.output(0, UInt8.self)
        let (low, high) = outType.quantizedRange!
        let c = constants
        io.parallelItems(g.batch * g.outH) { item, _ in
            let image = item / g.outH, oh = item % g.outH
            cqk_nhwc_depthwise_row(path.rawValue, x + image * g.height * g.width * channels, Int32(g.height), Int32(g.width),
                                   Int32(channels), Int32(g.kernelH), Int32(g.kernelW), Int32(g.strideH), Int32(g.strideW),
                                   Int32(g.dilationH), Int32(g.dilationW), Int32(g.padTop), Int32(g.padLeft), Int32(oh),
                                   Int32(g.outW), xZero, c.depthwise!, c.bias, c.scales, yZero, low, high,
                                   outType == .int8 ? 1 : 0, out + (item * g.outW) * channels, biasFull)
        }
    }
}

/// NhwcMaxPool on u8/s8 (2-D, no ceil_mode, every window reaching the image): output rows
/// split across workers.
struct NhwcMaxPoolOperator: Operator {
    let float: PoolOperator

    init(_ node: NodeContext) throws {
        float = try PoolOperator(node.asFloat("MaxPool", attributes: node.attributes, inputs: 1))
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "x")
        guard x.shape.count == 4, x.dtype.quantizedRange != nil, !float.ceilMode, float.kernelShape.count == 2 else {
            throw node.unsupported("NhwcMaxPool takes 2-D u8/s8 input without ceil_mode")
        }
        let strides = float.strides ?? [1, 1], dilations = float.dilations ?? [1, 1]
        guard strides.count == 2, dilations.count == 2, strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw node.invalid("strides/dilations must have 2 positive values")
        }
        if let pads = float.pads, pads.count != 4 || pads.contains(where: { $0 < 0 }) { throw node.invalid("pads must have 4 non-negative values") }
        let extent = try SpatialPadding.extent(kernel: float.kernelShape, dilations: dilations, node: node)
        let (n, h, w, channels) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let padding = try SpatialPadding.resolve(input: [h, w], kernel: extent, strides: strides,
                                                 autoPad: float.autoPad, pads: float.pads, node: node)
        guard zip(padding.begin, extent).allSatisfy({ $0 < $1 }) && zip(padding.end, extent).allSatisfy({ $0 < $1 }) else {
            throw node.unsupported("padding as wide as the window")
        }
        let (oh, ow) = (padding.output[0], padding.output[1])
        let flip: UInt8 = x.dtype == .int8 ? 0x80 : 0
        let k = float.kernelShape, top = padding.begin[0], left = padding.begin[1]
        return Prepared(outputs: [ValueSpec(dtype: x.dtype, shape: [n, oh, ow, channels])], kernel: ClosureKernel { io in
            let source = io.input(0, UInt8.self), out = io.output(0, UInt8.self)
            io.parallelItems(n * oh) { item, _ in
                let image = item / oh, row = item % oh
                cqk_nhwc_maxpool_row(source + image * h * w * channels, Int32(h), Int32(w), Int32(channels), Int32(k[0]), Int32(k[1]),
                                     Int32(strides[0]), Int32(strides[1]), Int32(dilations[0]), Int32(dilations[1]),
                                     Int32(top), Int32(left), Int32(row), Int32(ow), flip, out + item * ow * channels)
            }
        })
    }
}
