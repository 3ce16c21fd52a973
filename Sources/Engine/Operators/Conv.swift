import Foundation
/// Spatial output sizes and begin/end pads for Conv and pooling (ONNX auto_pad rules).
struct SpatialPadding {
    var output: [Int]
    var begin: [Int]
    var end: [Int]

    /// `kernel` is the dilated extent per axis ((k - 1) * d + 1).
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

/// Conv (1-D and 2-D, groups, depthwise, strides, dilations, pads, auto_pad), with bias and an
/// optional fused activation. im2col + `cblas_sgemm` per image and group; 1x1 stride-1
/// convolutions multiply the input directly; depthwise convolutions use a direct loop.
struct ConvOperator: Operator {
    let autoPad: String
    let dilations: [Int]?
    let group: Int
    let kernelShape: [Int]?
    let pads: [Int]?
    let strides: [Int]?
    let activation: Activation

    init(_ node: NodeContext) throws {
        try node.allowOnly(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides",
                            GraphOptimizer.fusedActivationKey, GraphOptimizer.fusedAlphaKey, GraphOptimizer.fusedBetaKey])
        autoPad = try node.string("auto_pad", default: "NOTSET")
        dilations = try node.ints("dilations")
        group = try node.int("group", default: 1)
        kernelShape = try node.ints("kernel_shape")
        pads = try node.ints("pads")
        strides = try node.ints("strides")
        activation = try fusedActivation(node)
        if group < 1 { throw node.invalid("group must be at least 1") }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X"), w = try node.required(inputs, 1, "W")
        try node.requireFloat(x, "X")
        try node.requireFloat(w, "W")
        let bias = node.optional(inputs, 2)
        if let bias { try node.requireFloat(bias, "B") }
        guard x.shape.count == 3 || x.shape.count == 4 else {
            throw node.unsupported("\(x.shape.count - 2)-D convolution (input shape \(x.shape)); 1-D and 2-D are implemented")
        }
        let spatialRank = x.shape.count - 2
        guard w.shape.count == x.shape.count else { throw node.invalid("W shape \(w.shape) does not match X shape \(x.shape)") }
        let (batch, channels, outChannels) = (x.shape[0], x.shape[1], w.shape[0])
        guard channels % group == 0, outChannels % group == 0, w.shape[1] * group == channels else {
            throw node.invalid("X has \(channels) channels, W \(w.shape) with group \(group) expects \(w.shape[1] * group)")
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
        let extent = zip(kernel, dilations).map { ($0 - 1) * $1 + 1 }
        let padding = try SpatialPadding.resolve(input: Array(x.shape.dropFirst(2)), kernel: extent, strides: strides,
                                                 autoPad: autoPad, pads: pads, node: node)
        let outShape = [batch, outChannels] + padding.output
        // 1-D maps onto 2-D with height 1.
        let two = { (values: [Int], fill: Int) in values.count == 1 ? [fill] + values : values }
        let inHW = two(Array(x.shape.dropFirst(2)), 1), k = two(kernel, 1), s = two(strides, 1), d = two(dilations, 1)
        let outHW = two(padding.output, 1), pb = two(padding.begin, 0)
        let geometry = ConvGeometry(channels: channels / group, height: inHW[0], width: inHW[1], kernelH: k[0], kernelW: k[1],
                                    strideH: s[0], strideW: s[1], dilationH: d[0], dilationW: d[1],
                                    padTop: pb[0], padLeft: pb[1], outH: outHW[0], outW: outHW[1])
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

    /// Output columns per im2col tile: bounds the scratch and keeps the tile cache-resident.
    nonisolated(unsafe) static let columnTile = Int(ProcessInfo.processInfo.environment["CONV_TILE"] ?? "") ?? 8192

    var isPointwise: Bool {
        let g = geometry
        return g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1 && g.strideW == 1 && g.padTop == 0 && g.padLeft == 0
            && g.outH == g.height && g.outW == g.width
    }
    var isDepthwise: Bool { group > 1 && geometry.channels == 1 && outChannels == group }
    var columns: Int { geometry.outH * geometry.outW }
    var tile: Int { min(columns, Self.columnTile) }
    var scratchBytes: Int { isPointwise || isDepthwise ? 0 : geometry.patchSize * tile * MemoryLayout<Float>.size }

    func run(_ io: KernelIO) {
        let x = io.input(0, Float.self), w = io.input(1, Float.self)
        let bias = hasBias ? io.input(2, Float.self) : nil
        let y = io.output(0, Float.self)
        if isDepthwise { depthwise(x, w, bias, y); return }
        let g = geometry
        let groupOut = outChannels / group
        let patch = g.patchSize
        let inPlane = g.height * g.width
        let cols = io.scratch?.assumingMemoryBound(to: Float.self)
        for n in 0..<batch {
            for gi in 0..<group {
                let xg = x + (n * group + gi) * g.channels * inPlane
                let wg = w + gi * groupOut * patch
                let yg = y + (n * outChannels + gi * groupOut) * columns
                if isPointwise {
                    sgemm(m: groupOut, n: columns, k: patch, a: wg, lda: patch, b: xg, ldb: columns, beta: 0, c: yg, ldc: columns)
                } else {
                    var start = 0
                    while start < columns {
                        let count = min(tile, columns - start)
                        im2col(g, x: xg, cols: cols!, columnStart: start, columnCount: count)
                        sgemm(m: groupOut, n: count, k: patch, a: wg, lda: patch, b: cols!, ldb: count, beta: 0, c: yg + start, ldc: columns)
                        start += count
                    }
                }
                for m in 0..<groupOut {
                    activation.applyWithBias(yg + m * columns, count: columns, bias: bias?[gi * groupOut + m] ?? 0)
                }
            }
        }
    }

    /// One filter per channel: a direct loop, since a GEMM with M = 1 wastes the BLAS kernel.
    private func depthwise(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let inPlane = g.height * g.width, kSize = g.kernelH * g.kernelW
        // Output columns whose whole kernel row lies inside the image need no bounds checks.
        let oxStart = min(g.outW, max(0, (g.padLeft + g.strideW - 1) / g.strideW))
        var oxEnd = oxStart
        while oxEnd < g.outW && oxEnd * g.strideW - g.padLeft + (g.kernelW - 1) * g.dilationW < g.width { oxEnd += 1 }
        for n in 0..<batch {
            for c in 0..<outChannels {
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
