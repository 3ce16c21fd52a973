/// Spatial output sizes and begin/end pads for Conv and pooling (ONNX auto_pad rules).
struct SpatialPadding {
    var output: [Int]
    var begin: [Int]
    var end: [Int]

    /// The dilated extent per axis, (k - 1) * d + 1, for kernel sizes `kernel` >= 1 and
    /// dilations >= 1; throws when it exceeds what any tensor can hold (so sums with it stay in range).
    static func extent(kernel: [Int], dilations: [Int], node: NodeContext) throws -> [Int] {
        try zip(kernel, dilations).map { k, d in
            let (span, overflow) = (k - 1).multipliedReportingOverflow(by: d)
            guard !overflow, span < TensorSize.maxBytes else {
                throw node.invalid("kernel size \(k) with dilation \(d) spans more elements than any input can have")
            }
            return span + 1
        }
    }

    /// `kernel` is the dilated extent per axis ((k - 1) * d + 1, from `extent`); strides and
    /// pads are attributes (at most Int32, `NodeContext.int`), sizes come from checked shapes.
    static func resolve(input: [Int], kernel: [Int], strides: [Int], autoPad: String, pads: [Int]?,
                        ceilMode: Bool = false, node: NodeContext) throws -> SpatialPadding {
        let rank = input.count
        var result = SpatialPadding(output: [], begin: [], end: [])
        for axis in 0..<rank {
            let (size, k, s) = (input[axis], kernel[axis], strides[axis])
            switch autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                let out = (size + s - 1) / s
                let total = max(0, (out - 1) * s + k - size)
                let small = total / 2
                result.output.append(out)
                result.begin.append(autoPad == "SAME_UPPER" ? small : total - small)
                result.end.append(autoPad == "SAME_UPPER" ? total - small : small)
            case "VALID", "NOTSET":
                let begin = autoPad == "VALID" ? 0 : (pads?[axis] ?? 0)
                let end = autoPad == "VALID" ? 0 : (pads?[axis + rank] ?? 0)
                let span = size + begin + end - k
                guard span >= 0 else { throw node.invalid("kernel extent \(k) exceeds padded input \(size + begin + end) on spatial axis \(axis)") }
                var out = (ceilMode ? (span + s - 1) / s : span / s) + 1
                // A window may not start inside the end padding (PyTorch / ONNX reference rule).
                if ceilMode && (out - 1) * s >= size + begin { out -= 1 }
                result.output.append(out)
                result.begin.append(begin)
                result.end.append(end)
            default:
                throw node.unsupported("auto_pad '\(autoPad)'")
            }
        }
        return result
    }
}

/// Conv (1-D to 3-D, groups, depthwise, strides, dilations, pads, auto_pad), with bias and an
/// optional fused activation. With the engine's own kernels (`VectorISA`): 3x3 stride-1 layers
/// on large planes as Winograd F(2x2, 3x3) (`WinogradConvKernel`), with AVX-512 pointwise
/// layers with few input channels on `PointwiseConvKernel`, other ungrouped 2-D convolutions
/// as a direct convolution (`DirectConvKernel`; on AVX2 not the pointwise ones), and with
/// AVX-512 other grouped ones as im2col + the packed GEMM (`PackedConvKernel`).
/// Otherwise, and for depthwise and volumetric convolutions: im2col +
/// `cblas_sgemm` per image and group, 1x1 convolutions multiplying the input directly, and a
/// direct loop for depthwise.
struct ConvOperator: Operator {
    let autoPad: String
    let dilations: [Int]?
    let group: Int
    let kernelShape: [Int]?
    let pads: [Int]?
    let strides: [Int]?
    let activation: Activation
    let packedWeightsCache = PackedWeightsCache()

    init(_ node: NodeContext) throws {
        try node.allowOnly(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides",
                            GraphOptimizer.fusedActivationKey, GraphOptimizer.fusedAlphaKey, GraphOptimizer.fusedBetaKey,
                            GraphOptimizer.fusedResidualKey])
        autoPad = try node.string("auto_pad", default: "NOTSET")
        dilations = try node.ints("dilations")
        group = try node.int("group", default: 1)
        kernelShape = try node.ints("kernel_shape")
        pads = try node.ints("pads")
        strides = try node.ints("strides")
        activation = try fusedActivation(node)
        if group < 1 { throw node.invalid("group must be at least 1") }
        hasResidual = node.has(GraphOptimizer.fusedResidualKey)
        if hasResidual != (node.inputCount == 4) { throw node.invalid("a Conv takes 2 or 3 inputs") }
    }

    /// Set by the graph optimizer: input 3 (a fused Add's other operand) is added to the
    /// result before the activation; the output has the Add's (broadcast) shape.
    let hasResidual: Bool

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        guard hasResidual else { return try prepareConv(inputs, node, activation: activation) }
        let residual = try node.required(inputs, 3, "residual")
        try node.requireFloat(residual, "residual")
        // The convolution alone, then the residual and the activation (in the epilogue when
        // the kernel takes them there).
        var prepared = try prepareConv(Array(inputs.prefix(3)), node, activation: activation, residual: residual.shape)
        let convShape = prepared.outputs[0].shape
        if let native = prepared.kernel as? ResidualEpilogue, native.takesResidual(shape: residual.shape, outShape: convShape) {
            return prepared
        }
        prepared = try prepareConv(Array(inputs.prefix(3)), node, activation: .identity)
        guard let shape = broadcastShapes(convShape, residual.shape) else {
            throw node.invalid("the convolution's output \(convShape) and the added \(residual.shape) do not broadcast")
        }
        let wrapper = ResidualKernel(conv: prepared.kernel!, convScratch: prepared.scratchBytes, convShape: convShape,
                                     outShape: shape, residualShape: residual.shape, activation: activation)
        prepared.outputs = [ValueSpec(dtype: .float32, shape: shape)]
        prepared.kernel = wrapper
        prepared.scratchBytes = wrapper.scratchBytes
        return prepared
    }

    private func prepareConv(_ inputs: [ValueSpec?], _ node: NodeContext, activation: Activation, residual: Shape? = nil) throws -> Prepared {
        let x = try node.required(inputs, 0, "X"), w = try node.required(inputs, 1, "W")
        try node.requireFloat(x, "X")
        try node.requireFloat(w, "W")
        let bias = node.optional(inputs, 2)
        if let bias { try node.requireFloat(bias, "B") }
        guard (3...5).contains(x.shape.count) else {
            throw node.unsupported("\(x.shape.count - 2)-D convolution (input shape \(x.shape)); 1-D to 3-D are implemented")
        }
        let spatialRank = x.shape.count - 2
        guard w.shape.count == x.shape.count else { throw node.invalid("W shape \(w.shape) does not match X shape \(x.shape)") }
        let (batch, channels, outChannels) = (x.shape[0], x.shape[1], w.shape[0])
        guard channels % group == 0, outChannels % group == 0, w.shape[1] == channels / group else {
            throw node.invalid("X has \(channels) channels; W \(w.shape) with group \(group) needs \(group) x W's dimension 1 to equal it and W's dimension 0 to be a multiple of \(group)")
        }
        guard outChannels > 0, channels > 0, w.shape.dropFirst(2).allSatisfy({ $0 > 0 }) else {
            throw node.invalid("W \(w.shape) and X \(x.shape) must have channels and a kernel of at least one element")
        }
        if let bias, bias.shape != [outChannels] { throw node.invalid("B shape \(bias.shape) should be [\(outChannels)]") }
        let kernel = Array(w.shape.dropFirst(2))
        if let kernelShape, kernelShape != kernel { throw node.invalid("kernel_shape \(kernelShape) disagrees with W \(w.shape)") }
        let strides = self.strides ?? Array(repeating: 1, count: spatialRank)
        let dilations = self.dilations ?? Array(repeating: 1, count: spatialRank)
        guard strides.count == spatialRank, dilations.count == spatialRank, strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw node.invalid("strides/dilations must have \(spatialRank) positive values")
        }
        if let pads, pads.count != 2 * spatialRank || pads.contains(where: { $0 < 0 }) {
            throw node.invalid("pads must have \(2 * spatialRank) non-negative values")
        }
        let extent = try SpatialPadding.extent(kernel: kernel, dilations: dilations, node: node)
        let padding = try SpatialPadding.resolve(input: Array(x.shape.dropFirst(2)), kernel: extent, strides: strides,
                                                 autoPad: autoPad, pads: pads, node: node)
        let outShape = [batch, outChannels] + padding.output
        // Checked before any kernel sizes its tables by the output.
        _ = try TensorSize.bytes(outShape, .float32, "the output of node '\(node.name)' (Conv)")
        // 1-D and 2-D map onto 3-D with leading size-1 axes.
        let three = { (values: [Int], fill: Int) in Array(repeating: fill, count: 3 - values.count) + values }
        let size = three(Array(x.shape.dropFirst(2)), 1), k = three(kernel, 1), s = three(strides, 1), d = three(dilations, 1)
        let out = three(padding.output, 1), pb = three(padding.begin, 0)
        let geometry = ConvGeometry(channels: channels / group, depth: size[0], height: size[1], width: size[2],
                                    kernelD: k[0], kernelH: k[1], kernelW: k[2], strideD: s[0], strideH: s[1], strideW: s[2],
                                    dilationD: d[0], dilationH: d[1], dilationW: d[2], padFront: pb[0], padTop: pb[1], padLeft: pb[2],
                                    outD: out[0], outH: out[1], outW: out[2])
        // With AVX2 only, a pointwise convolution is a plain GEMM on the input as it lies, and
        // OpenBLAS's AVX2 SGEMM runs it faster than the 12-accumulator direct tile (InceptionV3
        // batch 8, 2 threads: 610-630 vs 650-670 ms, alternating runs).
        let directSupported = DirectConvPlan.supports(geometry, group: group) && !(VectorKernels.isa == .avx2 && geometry.isPointwise)
        // 3x3 stride-1 layers on large planes run as Winograd F(2x2, 3x3): 2.25x fewer
        // multiply-adds than the direct tile, on OpenBLAS GEMMs (AVX-512 too: one-thread CPU
        // time InceptionV3 -5%, ResNet50 -2%, on Zen 4 with OpenBLAS's SkylakeX kernels).
        if node.nativeKernels, let weights = w.value,
           WinogradPlan.supports(geometry, outChannels: outChannels, group: group) {
            let winograd = WinogradConvKernel(plan: packedWeightsCache.winogradPlan(weights, geometry: geometry), batch: batch,
                                              hasBias: bias != nil, activation: activation)
            return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: winograd,
                            scratchBytes: winograd.scratchBytes, unusedInputs: [1])
        }
        let isDepthwise = group > 1 && geometry.channels == 1 && outChannels == group && geometry.isPlanar
        if node.nativeKernels, isDepthwise, DepthwiseConvKernel.supports(geometry) {
            let depthwise = DepthwiseConvKernel(batch: batch, channels: group, geometry: geometry, hasBias: bias != nil,
                                                activation: activation, hasResidual: residual == outShape)
            return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: depthwise,
                            scratchBytes: depthwise.scratchBytes)
        }
        if node.nativeKernels, VectorKernels.isa == .avx512, group == 1, geometry.isPointwise, geometry.isPlanar, let weights = w.value,
           geometry.channels <= PointwiseConvKernel.maxInputChannels {
            let pointwise = PointwiseConvKernel(plan: packedWeightsCache.pointwisePlan(weights), batch: batch, pixels: geometry.outputPlane,
                                                hasBias: bias != nil, activation: activation, hasResidual: residual == outShape)
            return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: pointwise,
                            scratchBytes: pointwise.scratchBytes, unusedInputs: [1])
        }
        if node.nativeKernels, let weights = w.value, directSupported {
            let direct = DirectConvKernel(plan: packedWeightsCache.directPlan(weights, geometry: geometry), batch: batch,
                                          hasBias: bias != nil, activation: activation, hasResidual: residual == outShape)
            return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: direct, scratchBytes: direct.scratchBytes,
                            unusedInputs: [1])
        }
        if node.nativeKernels, PackedConvolution.cpuSupported, let weights = w.value, geometry.isPlanar, !(group > 1 && geometry.channels == 1 && outChannels == group) {
            let packed = PackedConvKernel(batch: batch, group: group, outChannels: outChannels, geometry: geometry,
                                          packedWeights: packedWeightsCache.packed(weights, group: group),
                                          hasBias: bias != nil, activation: activation)
            return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: packed, scratchBytes: packed.scratchBytes,
                            unusedInputs: [1])
        }
        let conv = ConvKernel(batch: batch, group: group, outChannels: outChannels, geometry: geometry,
                              hasBias: bias != nil, activation: activation)
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: conv, scratchBytes: conv.scratchBytes)
    }
}

/// Reads the activation the graph optimizer fused into a node, if any.
func fusedActivation(_ node: NodeContext) throws -> Activation {
    let kind = try node.string(GraphOptimizer.fusedActivationKey, default: "")
    if kind.isEmpty { return .identity }
    let alpha = try node.float(GraphOptimizer.fusedAlphaKey, default: 0), beta = try node.float(GraphOptimizer.fusedBetaKey, default: 0)
    guard let activation = Activation(kind: kind, alpha: alpha, beta: beta) else { throw node.unsupported("fused activation \(kind)") }
    return activation
}

/// x: (N, C, H, W), w: (M, C/group, kh, kw), b: (M) optional; y: (N, M, outH, outW). All f32.
struct ConvKernel: Kernel {
    let batch: Int
    let group: Int
    let outChannels: Int
    let geometry: ConvGeometry
    let hasBias: Bool
    let activation: Activation

    /// Largest number of output columns per im2col tile: keeps a tile of the patch matrix in
    /// L2 while the GEMM reads it.
    static let columnTile = 256

    var isPointwise: Bool { geometry.isPointwise }
    var isDepthwise: Bool { group > 1 && geometry.channels == 1 && outChannels == group && geometry.isPlanar }
    var columns: Int { geometry.outputPlane }
    /// Per worker: one im2col tile. Splitting output channels instead borrows every worker's
    /// area for one whole patch matrix, which `run` only does when it fits.
    var scratchBytes: Int { isPointwise || isDepthwise ? 0 : geometry.patchSize * min(columns, Self.columnTile) * MemoryLayout<Float>.size }

    func run(_ io: KernelIO) {
        let x = io.input(0, Float.self), w = io.input(1, Float.self)
        let bias = hasBias ? io.input(2, Float.self) : nil
        let y = io.output(0, Float.self)
        if isDepthwise {
            io.parallelRanges(batch * outChannels) { planes, _ in depthwise(x, w, bias, y, planes: planes) }
            return
        }
        let width = io.width, units = batch * group
        var tilesPerUnit = (columns + Self.columnTile - 1) / Self.columnTile
        if width > 1 && units < 2 * width {
            if columns < 128 * width && (isPointwise || columns * geometry.patchSize * 4 <= width * io.scratchStride) {
                for unit in 0..<units { splitChannels(io, unit: unit, x, w, bias, y) }
                return
            }
            // Balance: a tile count every worker gets the same share of.
            while (units * tilesPerUnit) % width != 0 { tilesPerUnit += 1 }
        }
        let tile = (columns + tilesPerUnit - 1) / tilesPerUnit
        io.parallelRanges(units * tilesPerUnit) { items, worker in
            let cols = io.scratch(worker: worker)?.assumingMemoryBound(to: Float.self)
            for item in items {
                let unit = item / tilesPerUnit, start = (item % tilesPerUnit) * tile
                let count = min(tile, columns - start)
                if count > 0 { columnTile(unit: unit, start: start, count: count, x, w, bias, y, cols) }
            }
        }
    }

    /// Output columns [start, start + count) of one (image, group) unit, all output channels.
    private func columnTile(unit: Int, start: Int, count: Int, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, _ cols: UnsafeMutablePointer<Float>?) {
        let g = geometry, groupOut = outChannels / group, patch = g.patchSize
        let gi = unit % group
        let xg = x + unit * g.channels * g.inputPlane
        let wg = w + gi * groupOut * patch
        let yg = y + (unit / group * outChannels + gi * groupOut) * columns
        if isPointwise {
            sgemm(m: groupOut, n: count, k: patch, a: wg, lda: patch, b: xg + start, ldb: columns, beta: 0, c: yg + start, ldc: columns)
        } else {
            im2col(g, x: xg, cols: cols!, columnStart: start, columnCount: count)
            sgemm(m: groupOut, n: count, k: patch, a: wg, lda: patch, b: cols!, ldb: count, beta: 0, c: yg + start, ldc: columns)
        }
        for m in 0..<groupOut {
            activation.applyWithBias(yg + m * columns + start, count: count, bias: bias?[gi * groupOut + m] ?? 0)
        }
    }

    /// Few output columns: workers build one patch matrix together, then each multiplies its
    /// share of the output channels.
    private func splitChannels(_ io: KernelIO, unit: Int, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                               _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        let g = geometry, groupOut = outChannels / group, patch = g.patchSize
        let gi = unit % group
        let xg = x + unit * g.channels * g.inputPlane
        let wg = w + gi * groupOut * patch
        let yg = y + (unit / group * outChannels + gi * groupOut) * columns
        var b = xg
        if !isPointwise {
            let cols = io.scratch!.assumingMemoryBound(to: Float.self)
            io.parallelRanges(patch) { rows, _ in im2col(g, x: xg, cols: cols, columnStart: 0, columnCount: columns, rows: rows) }
            b = UnsafePointer(cols)
        }
        io.parallelRanges(groupOut) { channels, _ in
            guard !channels.isEmpty else { return }
            sgemm(m: channels.count, n: columns, k: patch, a: wg + channels.lowerBound * patch, lda: patch, b: b, ldb: columns,
                  beta: 0, c: yg + channels.lowerBound * columns, ldc: columns)
            for m in channels {
                activation.applyWithBias(yg + m * columns, count: columns, bias: bias?[gi * groupOut + m] ?? 0)
            }
        }
    }

    /// One filter per channel: a direct loop, since a GEMM with M = 1 wastes the BLAS kernel.
    private func depthwise(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                           planes: Range<Int>) {
        let g = geometry
        let inPlane = g.height * g.width, kSize = g.kernelH * g.kernelW
        // Output columns whose whole kernel row lies inside the image need no bounds checks.
        let oxStart = min(g.outW, max(0, (g.padLeft + g.strideW - 1) / g.strideW))
        var oxEnd = oxStart
        while oxEnd < g.outW && oxEnd * g.strideW - g.padLeft + (g.kernelW - 1) * g.dilationW < g.width { oxEnd += 1 }
        for plane in planes {
            let (n, c) = plane.quotientAndRemainder(dividingBy: outChannels)
            do {
                let xc = x + (n * group + c) * inPlane
                let wc = w + c * kSize
                let yc = y + (n * outChannels + c) * columns
                let b = bias?[c] ?? 0
                for oy in 0..<g.outH {
                    let yrow = yc + oy * g.outW
                    for ox in 0..<g.outW { yrow[ox] = b }
                    for ky in 0..<g.kernelH {
                        let iy = oy * g.strideH - g.padTop + ky * g.dilationH
                        if iy < 0 || iy >= g.height { continue }
                        let xrow = xc + iy * g.width
                        for kx in 0..<g.kernelW {
                            let weight = wc[ky * g.kernelW + kx]
                            let offset = kx * g.dilationW - g.padLeft
                            for ox in 0..<oxStart {
                                let ix = ox * g.strideW + offset
                                if ix >= 0 && ix < g.width { yrow[ox] += weight * xrow[ix] }
                            }
                            if g.strideW == 1 {
                                let source = xrow + offset
                                for ox in oxStart..<oxEnd { yrow[ox] += weight * source[ox] }
                            } else {
                                for ox in oxStart..<oxEnd { yrow[ox] += weight * xrow[ox * g.strideW + offset] }
                            }
                            for ox in oxEnd..<g.outW {
                                let ix = ox * g.strideW + offset
                                if ix >= 0 && ix < g.width { yrow[ox] += weight * xrow[ix] }
                            }
                        }
                    }
                    activation.apply(yrow, yrow, count: g.outW)
                }
            }
        }
    }
}
