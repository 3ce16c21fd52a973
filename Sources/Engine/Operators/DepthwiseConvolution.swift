/// Depthwise 2-D convolution (group == input channels == output channels) on the vector
/// kernels (`AVX512Kernels.Depthwise`, AVX-512 or AVX2): per plane, the input is copied into a
/// zero-bordered buffer of the worker's scratch (so the kernel needs no bounds checks), then
/// output rows are computed 16 columns per vector with the bias as the accumulators' start
/// and the activation (and a fused residual) applied while the row is in L1.
///
/// x: (N, C, H, W), w: (C, 1, kh, kw), b: (C) optional, residual (N, C, outH, outW) optional;
/// y: (N, C, outH, outW), f32. Column strides 1 and 2 (any row stride, dilation, padding).
struct DepthwiseConvKernel: Kernel, ResidualEpilogue {
    let batch: Int
    let channels: Int
    let geometry: ConvGeometry
    let hasBias: Bool
    let activation: Activation
    /// Input 3 is added before the activation.
    let hasResidual: Bool
    /// The vector kernels' instruction set (tests run both on one machine).
    var isa: VectorISA = VectorKernels.isa
    /// The zero-bordered copy of one plane.
    let sourceHeight: Int, sourceWidth: Int

    init(batch: Int, channels: Int, geometry g: ConvGeometry, hasBias: Bool, activation: Activation, hasResidual: Bool) {
        self.batch = batch
        self.channels = channels
        self.geometry = g
        self.hasBias = hasBias
        self.activation = activation
        self.hasResidual = hasResidual
        sourceHeight = (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1
        // What `AVX512Kernels.Depthwise.sourceWidth` asks for (vectors past outW read up to the
        // next 16 output columns, stride 2 loads 32 floats), rounded to whole 64-byte lines.
        let vectors = (g.outW + 15) / 16
        let needed = (vectors * 16 - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1 + (g.strideW == 2 ? 16 : 0)
        sourceWidth = (needed + 15) / 16 * 16
    }

    static func supports(_ g: ConvGeometry) -> Bool {
        VectorISA.detected != nil && g.isPlanar && g.channels == 1 && (g.strideW == 1 || g.strideW == 2) && g.outputPlane > 0
    }

    func takesResidual(shape: Shape, outShape: Shape) -> Bool { hasResidual && shape == outShape }

    var scratchBytes: Int { (sourceHeight * sourceWidth + 16) * MemoryLayout<Float>.size }

    func run(_ io: KernelIO) {
        let x = io.input(0, Float.self), w = io.input(1, Float.self)
        let bias = hasBias ? io.input(2, Float.self) : nil
        let residual = hasResidual ? io.input(3, Float.self) : nil
        let y = io.output(0, Float.self)
        let g = geometry
        let planes = batch * channels, outPlane = g.outputPlane, taps = g.kernelH * g.kernelW
        // Items of several planes when planes are small (an item should cost microseconds).
        let items = min(planes, max(1, planes * outPlane / 4096))
        let code = hasResidual ? (kind: 0, alpha: Float(0), beta: Float(0)) : activation.vectorCode ?? (0, 0, 0)
        let lateActivation = !hasResidual && activation.vectorCode == nil
        // Input rows and columns that land in the bordered plane (the rest is never read).
        let rows = max(0, min(g.height, sourceHeight - g.padTop)), columns = max(0, min(g.width, sourceWidth - g.padLeft))
        io.parallelItems(items) { item, worker in
            let buffer = io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self)
            // Borders zeroed once per item: each plane only overwrites the interior.
            buffer.update(repeating: 0, count: sourceHeight * sourceWidth)
            let interior = buffer + g.padTop * sourceWidth + g.padLeft
            for p in item * planes / items ..< (item + 1) * planes / items {
                let c = p % channels
                VectorKernels.copyRows(x + p * g.inputPlane, sourceStride: g.width, rows: rows, columns: columns, interior,
                                       ld: sourceWidth, isa: isa)
                let out = y + p * outPlane
                VectorKernels.depthwisePlane(source: buffer, ld: sourceWidth, weights: w + c * taps, kh: g.kernelH, kw: g.kernelW,
                                             strideH: g.strideH, strideW: g.strideW, dilationH: g.dilationH, dilationW: g.dilationW,
                                             outH: g.outH, outW: g.outW, bias: bias?[c] ?? 0, out: out, ldOut: g.outW,
                                             code: code, isa: isa)
                if let residual {
                    activation.applyWithResidual(out, residual + p * outPlane, out, count: outPlane)
                } else if lateActivation {
                    activation.apply(out, out, count: outPlane)
                }
            }
        }
    }
}

/// A convolution kernel that can add a fused residual in its own epilogue.
protocol ResidualEpilogue {
    /// Whether the kernel was built to add a residual of `shape` to its output of `outShape`.
    func takesResidual(shape: Shape, outShape: Shape) -> Bool
}

/// A fused residual for convolution kernels that do not take one in their epilogue: the
/// convolution runs without activation, then out = f(conv + residual) in one pass. When the
/// residual broadcasts (not the output's shape), a strided pass does the add; when it even
/// enlarges the output, the convolution writes into scratch first.
struct ResidualKernel: Kernel {
    let conv: any Kernel
    let convScratch: Int
    let convShape: Shape
    let outShape: Shape
    let residualShape: Shape
    let activation: Activation

    /// The convolution's own scratch, then (when the output is larger) its result.
    var scratchBytes: Int {
        convShape == outShape ? convScratch
            : (convScratch + Planner.alignment - 1) / Planner.alignment * Planner.alignment + convShape.elementCount * 4
    }

    func run(_ io: KernelIO) {
        let y = io.output(0, Float.self), residual = io.input(3, Float.self)
        let count = outShape.elementCount
        if convShape == outShape {
            conv.run(io)
            if residualShape == outShape {
                io.parallelRanges((count + 4095) / 4096) { blocks, _ in
                    let start = blocks.lowerBound * 4096, end = min(count, blocks.upperBound * 4096)
                    if end > start { activation.applyWithResidual(y + start, residual + start, y + start, count: end - start) }
                }
                return
            }
            let walk = StridedWalk(shape: outShape, strides: [contiguousStrides(outShape), broadcastStrides(residualShape, to: outShape)])
            BroadcastKernel<AddFloat>.compute(walk, UnsafePointer(y), residual, y)
        } else {
            let offset = (convScratch + Planner.alignment - 1) / Planner.alignment * Planner.alignment
            let temporary = io.scratch! + offset
            withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: 1) { outputs in
                outputs[0] = temporary
                var inner = io
                inner.outputs = UnsafeBufferPointer(outputs)
                conv.run(inner)
            }
            let walk = StridedWalk(shape: outShape, strides: [broadcastStrides(convShape, to: outShape),
                                                              broadcastStrides(residualShape, to: outShape)])
            BroadcastKernel<AddFloat>.compute(walk, UnsafePointer(temporary.assumingMemoryBound(to: Float.self)), residual, y)
        }
        activation.apply(y, y, count: count)
    }
}
