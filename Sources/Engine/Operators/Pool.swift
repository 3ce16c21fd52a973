import Glibc

/// MaxPool and AveragePool over 1 to 3 spatial axes (pads, strides, dilations, ceil_mode,
/// auto_pad, count_include_pad). Spatial axes are handled as 3-D with leading size-1 axes.
struct PoolOperator: Operator {
    let isMax: Bool
    let autoPad: String
    let kernelShape: [Int]
    let pads: [Int]?
    let strides: [Int]?
    let dilations: [Int]?
    let ceilMode: Bool
    let countIncludePad: Bool

    init(_ node: NodeContext) throws {
        isMax = node.opType == "MaxPool"
        try node.allowOnly(["auto_pad", "kernel_shape", "pads", "strides", "dilations", "ceil_mode", "storage_order", "count_include_pad"])
        autoPad = try node.string("auto_pad", default: "NOTSET")
        // Windows beyond 2^20 positions per axis are no real pooling; bounding them bounds the
        // separable path's row buffer (which spans the window) too.
        guard let kernel = try node.ints("kernel_shape"), !kernel.isEmpty, kernel.allSatisfy({ (1...(1 << 20)).contains($0) }) else {
            throw node.invalid("kernel_shape is required, with sizes in 1...\(1 << 20)")
        }
        kernelShape = kernel
        pads = try node.ints("pads")
        strides = try node.ints("strides")
        dilations = try node.ints("dilations")
        ceilMode = try node.int("ceil_mode", default: 0) != 0
        countIncludePad = try node.int("count_include_pad", default: 0) != 0
        if node.outputsUsed.count > 1 && node.outputsUsed[1] { throw node.unsupported("the Indices output of MaxPool") }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        try node.requireFloat(x, "X")
        let rank = kernelShape.count
        guard x.shape.count == rank + 2, rank <= 3 else {
            throw node.unsupported("input \(x.shape) with a \(rank)-D kernel (1-D to 3-D pooling on (N, C, ...) is implemented)")
        }
        let strides = self.strides ?? Array(repeating: 1, count: rank)
        let dilations = self.dilations ?? Array(repeating: 1, count: rank)
        guard strides.count == rank, dilations.count == rank, strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw node.invalid("strides/dilations must have \(rank) positive values")
        }
        if let pads, pads.count != 2 * rank || pads.contains(where: { $0 < 0 }) {
            throw node.invalid("pads must have \(2 * rank) non-negative values")
        }
        let extent = try SpatialPadding.extent(kernel: kernelShape, dilations: dilations, node: node)
        guard extent.allSatisfy({ $0 <= 1 << 20 }) else {
            throw node.invalid("the dilated kernel \(extent) spans more than \(1 << 20) positions on an axis")
        }
        // Like windows, pads beyond 2^20 are no real pooling; bounding them bounds the output
        // columns, for which per-column window tables are built below (a 2^31 pad built 32 GiB).
        if let pads, autoPad == "NOTSET", let bad = pads.first(where: { $0 > 1 << 20 }) {
            throw node.invalid("pad \(bad) is larger than \(1 << 20) (pads \(pads))")
        }
        let spatial = Array(x.shape.dropFirst(2))
        let padding = try SpatialPadding.resolve(input: spatial, kernel: extent, strides: strides, autoPad: autoPad,
                                                 pads: pads, ceilMode: ceilMode, node: node)
        _ = try TensorSize.bytes(Array(x.shape.prefix(2)) + padding.output, .float32, "the output of node '\(node.name)' (\(node.opType))")
        let three = { (values: [Int], fill: Int) in Array(repeating: fill, count: 3 - values.count) + values }
        var kernel = PoolKernel(planes: x.shape[0] * x.shape[1], input: three(spatial, 1), output: three(padding.output, 1),
                                kernel: three(kernelShape, 1), strides: three(strides, 1), dilations: three(dilations, 1),
                                padBegin: three(padding.begin, 0), padEnd: three(padding.end, 0),
                                isMax: isMax, countIncludePad: countIncludePad)
        if kernel.isSeparable { kernel.separableGeometry = kernel.makeSeparableGeometry() }
        var outputs = [ValueSpec(dtype: .float32, shape: Array(x.shape.prefix(2)) + padding.output)]
        if node.outputCount > 1 { outputs.append(ValueSpec(dtype: .int64, shape: outputs[0].shape)) }
        return Prepared(outputs: outputs, kernel: kernel, scratchBytes: kernel.scratchBytes)
    }
}

/// x: (planes, D, H, W) f32 -> y: (planes, oD, oH, oW) f32.
struct PoolKernel: Kernel {
    let planes: Int
    let input: [Int], output: [Int], kernel: [Int], strides: [Int], dilations: [Int], padBegin: [Int], padEnd: [Int]
    let isMax: Bool
    let countIncludePad: Bool

    /// For one axis and output index: the valid input positions and the count of window
    /// positions inside the padded extent (the include-pad divisor factor).
    /// Counted, not walked: O(1) whatever the kernel size.
    private func window(_ axis: Int, _ o: Int) -> (first: Int, step: Int, count: Int, padded: Int) {
        let start = o * strides[axis] - padBegin[axis]
        let d = dilations[axis], last = kernel[axis] - 1
        // Taps k in 0...last at start + k * d; those in [low, high) count.
        func taps(_ low: Int, _ high: Int) -> (first: Int, count: Int) {
            let kLow = start >= low ? 0 : (low - start + d - 1) / d
            guard high - 1 - start >= 0 else { return (0, 0) }
            let kHigh = min(last, (high - 1 - start) / d)
            return kHigh >= kLow ? (kLow, kHigh - kLow + 1) : (0, 0)
        }
        let valid = taps(0, input[axis]), padded = taps(-padBegin[axis], input[axis] + padEnd[axis])
        return (valid.count > 0 ? start + valid.first * d : 0, d, valid.count, padded.count)
    }

    /// 2-D windows without dilation are rectangles: reduce each output row's input rows into one
    /// row, then slide the window along it.
    static let vector = VectorISA.detected != nil
    var isSeparable: Bool { input[0] == 1 && output[0] == 1 && kernel[0] == 1 && dilations[1] == 1 && dilations[2] == 1 }
    /// Stride 1 with the output the input's size ("same" padding): whole-plane passes.
    var isSamePlane: Bool {
        isSeparable && strides[1] == 1 && strides[2] == 1 && output[1] == input[1] && output[2] == input[2]
    }
    /// One padded input row plus the 32 floats `VectorKernels.windows` may read past it; for
    /// `isSamePlane`, one whole plane.
    var scratchBytes: Int {
        if isSamePlane { return (input[1] * input[2] + 64) * MemoryLayout<Float>.size }
        return isSeparable ? (padBegin[2] + input[2] + (output[2] - 1) * strides[2] + kernel[2] + 64) * MemoryLayout<Float>.size : 0
    }

    /// Per-axis windows of the separable path, fixed by the shapes.
    struct SeparableGeometry: Sendable {
        var rows: [(first: Int, step: Int, count: Int, padded: Int)]
        var columns: [(first: Int, step: Int, count: Int, padded: Int)]
        /// Output columns whose whole window lies inside the input row.
        var interior: Range<Int>
        /// The other output columns.
        var borders: [Int]
        /// Average pooling: 1 / the column factor of each output column's divisor.
        var columnScale: [Float]
        /// `isSamePlane` average pooling: the divisor's reciprocal for every output position.
        var planeScale: [Float]
    }
    /// Set by `prepare` when `isSeparable`.
    var separableGeometry = SeparableGeometry(rows: [], columns: [], interior: 0..<0, borders: [], columnScale: [], planeScale: [])

    func makeSeparableGeometry() -> SeparableGeometry {
        let (width, outW, kw, sw, padLeft) = (input[2], output[2], kernel[2], strides[2], padBegin[2])
        let interiorStart = min(outW, (padLeft + sw - 1) / sw)
        var interiorEnd = interiorStart
        while interiorEnd < outW && interiorEnd * sw - padLeft + kw <= width { interiorEnd += 1 }
        let columns = (0..<outW).map { window(2, $0) }
        // 16 spare entries: `VectorKernels.windows` reads the scale a vector at a time.
        let scale: [Float] = columns.map { column in
            let divisor = countIncludePad ? column.padded : column.count
            return divisor > 0 ? 1 / Float(divisor) : 0
        } + Array(repeating: 0, count: 16)
        let rows = (0..<output[1]).map { window(1, $0) }
        var planeScale: [Float] = []
        if isSamePlane && !isMax {
            for row in rows {
                let divisor = countIncludePad ? row.padded : row.count
                planeScale += scale.prefix(outW).map { divisor > 0 ? $0 / Float(divisor) : 0 }
            }
        }
        return SeparableGeometry(rows: rows, columns: columns, interior: interiorStart..<interiorEnd,
                                 borders: Array(0..<interiorStart) + Array(interiorEnd..<outW), columnScale: scale,
                                 planeScale: planeScale)
    }

    func run(_ io: KernelIO) {
        if isSamePlane && Self.vector {
            io.parallelRanges(planes) { range, worker in
                samePlane(io.input(0, Float.self), io.output(0, Float.self), io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self), planes: range)
            }
        } else if isSeparable {
            io.parallelRanges(planes) { range, worker in
                separable(io.input(0, Float.self), io.output(0, Float.self), io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self), planes: range)
            }
        } else {
            general(io)
        }
    }

    /// `isSamePlane`: each plane reduced vertically into `scratch` by shifted whole-plane
    /// passes, then horizontally into the output the same way; the border columns, where a flat
    /// shift would reach into the neighbouring row, are recomputed from the row's windows.
    private func samePlane(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>, planes: Range<Int>) {
        let (height, width) = (input[1], input[2])
        let plane = height * width
        let (kh, kw, padTop, padLeft) = (kernel[1], kernel[2], padBegin[1], padBegin[2])
        let geometry = separableGeometry, isMax = isMax
        let vertical = scratch
        func combine(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, _ count: Int) {
            if count <= 0 { return }
            if isMax { VectorKernels.maximum(target, source, count: count) } else { VectorKernels.add(target, source, count: count) }
        }
        let borders = geometry.borders
        geometry.columns.withUnsafeBufferPointer { columns in
        geometry.planeScale.withUnsafeBufferPointer { planeScale in
            for p in planes {
                let xp = x + p * plane, yp = y + p * plane
                vertical.update(from: xp, count: plane)
                for k in 0..<kh where k != padTop {
                    let shift = k - padTop   // output row r reads input row r + shift
                    let firstRow = max(0, -shift), lastRow = min(height, height - shift)
                    combine(vertical + firstRow * width, xp + (firstRow + shift) * width, (lastRow - firstRow) * width)
                }
                yp.update(from: vertical, count: plane)
                for k in 0..<kw where k != padLeft {
                    let shift = k - padLeft
                    let first = max(0, -shift), last = min(plane, plane - shift)
                    combine(yp + first, vertical + first + shift, last - first)
                }
                for r in 0..<height {
                    let row = vertical + r * width, target = yp + r * width
                    for c in borders {
                        let (first, _, count, _) = columns[c]
                        var value: Float = isMax ? -.infinity : 0
                        for k in 0..<count { value = isMax ? max(value, row[first + k]) : value + row[first + k] }
                        target[c] = value
                    }
                }
                if !isMax {
                    VectorKernels.scale(yp, by: planeScale.baseAddress!, factor: 1, count: plane)
                }
            }
        }
        }
    }

    /// Per output row: the window's input rows reduced into `scratch` between fill values
    /// (-inf or 0) standing for the padding, then the window slid along it.
    private func separable(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>, planes: Range<Int>) {
        let (height, width, outH, outW) = (input[1], input[2], output[1], output[2])
        let (kw, sw, padLeft) = (kernel[2], strides[2], padBegin[2])
        let geometry = separableGeometry
        let isMax = isMax, vector = Self.vector
        let fill: Float = isMax ? -.infinity : 0
        let tail = max(0, (outW - 1) * sw + kw - padLeft - width)
        scratch.update(repeating: fill, count: padLeft)
        (scratch + padLeft + width).update(repeating: fill, count: tail)
        let row = scratch + padLeft
        geometry.rows.withUnsafeBufferPointer { rows in
        geometry.columnScale.withUnsafeBufferPointer { columnScale in
            for p in planes {
                let xp = x + p * height * width, yp = y + p * outH * outW
                for oh in 0..<outH {
                    let (first, _, count, padded) = rows[oh]
                    let target = yp + oh * outW
                    if count == 0 { target.update(repeating: fill, count: outW); continue }
                    let divisor = countIncludePad ? padded : count
                    let rowScale: Float = divisor > 0 ? 1 / Float(divisor) : 0
                    let scale = isMax ? nil : columnScale.baseAddress
                    if vector {
                        VectorKernels.reduceRows(row, xp + first * width, stride: width, rows: count, count: width, isMax: isMax)
                        VectorKernels.windows(target, scratch, count: outW, kernel: kw, stride: sw, isMax: isMax, scale: scale, factor: rowScale)
                    } else {
                        for i in 0..<width {
                            var value = xp[first * width + i]
                            for r in 1..<count { value = isMax ? max(value, xp[(first + r) * width + i]) : value + xp[(first + r) * width + i] }
                            row[i] = value
                        }
                        for o in 0..<outW {
                            var value = scratch[o * sw]
                            for k in 1..<max(kw, 1) { value = isMax ? max(value, scratch[o * sw + k]) : value + scratch[o * sw + k] }
                            target[o] = isMax ? value : value * columnScale[o] * rowScale
                        }
                    }
                }
            }
        }
        }
    }

    private func general(_ io: KernelIO) {
        let x = io.input(0, Float.self), y = io.output(0, Float.self)
        let inPlane = input[0] * input[1] * input[2], outPlane = output[0] * output[1] * output[2]
        // Windows per axis, computed once per run (small: sum of output sizes).
        withUnsafeTemporaryAllocation(of: (Int, Int, Int, Int).self, capacity: output[0] + output[1] + output[2]) { windows in
            var index = 0
            for axis in 0..<3 { for o in 0..<output[axis] { windows[index] = window(axis, o); index += 1 } }
            let wd = windows.baseAddress!, wh = wd + output[0], ww = wh + output[1]
            for p in 0..<planes {
                let xp = x + p * inPlane
                var yp = y + p * outPlane
                for od in 0..<output[0] {
                    let (d0, dStep, dCount, dPad) = wd[od]
                    for oh in 0..<output[1] {
                        let (h0, hStep, hCount, hPad) = wh[oh]
                        for ow in 0..<output[2] {
                            let (w0, wStep, wCount, wPad) = ww[ow]
                            var result: Float
                            if isMax {
                                result = -Float.infinity
                                for i in 0..<dCount {
                                    for j in 0..<hCount {
                                        let row = xp + ((d0 + i * dStep) * input[1] + h0 + j * hStep) * input[2] + w0
                                        for k in 0..<wCount { result = max(result, row[k * wStep]) }
                                    }
                                }
                            } else {
                                var sum: Float = 0
                                for i in 0..<dCount {
                                    for j in 0..<hCount {
                                        let row = xp + ((d0 + i * dStep) * input[1] + h0 + j * hStep) * input[2] + w0
                                        for k in 0..<wCount { sum += row[k * wStep] }
                                    }
                                }
                                let divisor = countIncludePad ? dPad * hPad * wPad : dCount * hCount * wCount
                                result = divisor > 0 ? sum / Float(divisor) : 0
                            }
                            yp.pointee = result
                            yp += 1
                        }
                    }
                }
            }
        }
    }
}

/// GlobalAveragePool / GlobalMaxPool: (N, C, spatial...) -> (N, C, 1, ...).
struct GlobalPoolOperator: Operator {
    init(_ node: NodeContext) throws { try node.allowOnly([]) }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        try node.requireFloat(x, "X")
        guard x.shape.count >= 2 else { throw node.invalid("X must be (N, C, ...), got \(x.shape)") }
        let planes = x.shape[0] * x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
        let isMax = node.opType == "GlobalMaxPool"
        let outShape = Array(x.shape.prefix(2)) + Array(repeating: 1, count: x.shape.count - 2)
        let vector = VectorISA.detected != nil
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), y = io.output(0, Float.self)
            if vector {
                splitWork(io, units: planes, elementsPerUnit: size) { range in
                    for p in range {
                        let value = VectorKernels.reduce(source + p * size, count: size, isMax: isMax)
                        y[p] = isMax ? value : value / Float(size)
                    }
                }
                return
            }
            for p in 0..<planes {
                let row = source + p * size
                if isMax {
                    var m = -Float.infinity
                    for i in 0..<size { m = max(m, row[i]) }
                    y[p] = m
                } else {
                    var sum: Float = 0
                    for i in 0..<size { sum += row[i] }
                    y[p] = sum / Float(size)
                }
            }
        })
    }
}

/// LRN across channels: y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta.
struct LRNOperator: Operator {
    let alpha: Float, beta: Float, bias: Float, size: Int

    init(_ node: NodeContext) throws {
        try node.allowOnly(["alpha", "beta", "bias", "size"])
        alpha = try node.float("alpha", default: 0.0001)
        beta = try node.float("beta", default: 0.75)
        bias = try node.float("bias", default: 1)
        size = try node.int("size", default: 0)
        if size < 1 { throw node.invalid("size must be a positive int") }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        try node.requireFloat(x, "X")
        guard x.shape.count >= 2 else { throw node.invalid("X must be (N, C, ...), got \(x.shape)") }
        let (batch, channels, plane) = (x.shape[0], x.shape[1], x.shape.dropFirst(2).reduce(1, *))
        let (alpha, beta, bias, size) = (alpha, beta, bias, size)
        let before = (size - 1) / 2, after = size - 1 - before
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), y = io.output(0, Float.self)
            for n in 0..<batch {
                for c in 0..<channels {
                    let low = max(0, c - before), high = min(channels - 1, c + after)
                    for i in 0..<plane {
                        var sum: Float = 0
                        for cc in low...high { let v = source[(n * channels + cc) * plane + i]; sum += v * v }
                        let index = (n * channels + c) * plane + i
                        y[index] = source[index] / powf(bias + alpha / Float(size) * sum, beta)
                    }
                }
            }
        })
    }
}
