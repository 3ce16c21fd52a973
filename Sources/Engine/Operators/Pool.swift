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
        guard let kernel = try node.ints("kernel_shape"), !kernel.isEmpty, kernel.allSatisfy({ $0 > 0 }) else {
            throw node.invalid("kernel_shape is required and must be positive")
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
        if let pads, pads.count != 2 * rank { throw node.invalid("pads must have \(2 * rank) values") }
        let extent = zip(kernelShape, dilations).map { ($0 - 1) * $1 + 1 }
        let spatial = Array(x.shape.dropFirst(2))
        let padding = try SpatialPadding.resolve(input: spatial, kernel: extent, strides: strides, autoPad: autoPad,
                                                 pads: pads, ceilMode: ceilMode, node: node)
        let three = { (values: [Int], fill: Int) in Array(repeating: fill, count: 3 - values.count) + values }
        let kernel = PoolKernel(planes: x.shape[0] * x.shape[1], input: three(spatial, 1), output: three(padding.output, 1),
                                kernel: three(kernelShape, 1), strides: three(strides, 1), dilations: three(dilations, 1),
                                padBegin: three(padding.begin, 0), padEnd: three(padding.end, 0),
                                isMax: isMax, countIncludePad: countIncludePad)
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
    private func window(_ axis: Int, _ o: Int) -> (first: Int, step: Int, count: Int, padded: Int) {
        let start = o * strides[axis] - padBegin[axis]
        let d = dilations[axis]
        var first = -1, count = 0, padded = 0
        for k in 0..<kernel[axis] {
            let position = start + k * d
            if position >= -padBegin[axis] && position < input[axis] + padEnd[axis] { padded += 1 }
            if position >= 0 && position < input[axis] {
                if first < 0 { first = position }
                count += 1
            }
        }
        return (max(first, 0), d, count, padded)
    }

    /// 2-D windows without dilation are rectangles: reduce each input row horizontally into
    /// scratch, then reduce rows vertically with contiguous, vectorisable loops.
    var isSeparable: Bool { input[0] == 1 && output[0] == 1 && kernel[0] == 1 && dilations[1] == 1 && dilations[2] == 1 }
    var scratchBytes: Int { isSeparable ? (input[1] * output[2] + input[2]) * MemoryLayout<Float>.size : 0 }

    func run(_ io: KernelIO) {
        if isSeparable {
            io.parallelRanges(planes) { range, worker in
                separable(io.input(0, Float.self), io.output(0, Float.self), io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self), planes: range)
            }
        } else {
            general(io)
        }
    }

    private func separable(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ rows: UnsafeMutablePointer<Float>, planes: Range<Int>) {
        let (height, width, outH, outW) = (input[1], input[2], output[1], output[2])
        let (kw, sw, padLeft) = (kernel[2], strides[2], padBegin[2])
        // Output columns whose window lies inside the image need no bounds checks.
        let interiorStart = min(outW, (padLeft + sw - 1) / sw)
        var interiorEnd = interiorStart
        while interiorEnd < outW && interiorEnd * sw - padLeft + kw <= width { interiorEnd += 1 }
        let columnWindows = (0..<outW).map { window(2, $0) }
        let rowWindows = (0..<outH).map { window(1, $0) }
        let reciprocal = { (divisor: Int) -> Float in divisor > 0 ? 1 / Float(divisor) : 0 }
        let scale: [Float] = isMax ? [] : (0..<outW).map { ow in
            reciprocal(countIncludePad ? columnWindows[ow].padded : columnWindows[ow].count)
        }
        let isMax = isMax
        for p in planes {
            let xp = x + p * height * width, yp = y + p * outH * outW
            for h in 0..<height {
                let source = xp + h * width, row = rows + h * outW
                for ow in 0..<outW where ow < interiorStart || ow >= interiorEnd {
                    let (first, _, count, _) = columnWindows[ow]
                    var value: Float = isMax ? -.infinity : 0
                    for k in 0..<count { value = isMax ? max(value, source[first + k]) : value + source[first + k] }
                    row[ow] = value
                }
                if interiorEnd > interiorStart {
                    let base = source + interiorStart * sw - padLeft
                    let span = interiorEnd - interiorStart, target = row + interiorStart
                    if sw == 1 {
                        target.update(from: base, count: span)
                        for k in 1..<max(kw, 1) {
                            let shifted = base + k
                            if isMax { for i in 0..<span { target[i] = max(target[i], shifted[i]) } } else { for i in 0..<span { target[i] += shifted[i] } }
                        }
                    } else {
                        // Reduce at stride 1 (vectorisable) into the spare row, then subsample.
                        let full = rows + height * outW, fullCount = (span - 1) * sw + 1
                        full.update(from: base, count: fullCount)
                        for k in 1..<max(kw, 1) {
                            let shifted = base + k
                            if isMax { for i in 0..<fullCount { full[i] = max(full[i], shifted[i]) } } else { for i in 0..<fullCount { full[i] += shifted[i] } }
                        }
                        for i in 0..<span { target[i] = full[i * sw] }
                    }
                }
            }
            for oh in 0..<outH {
                let (first, _, count, padded) = rowWindows[oh]
                let target = yp + oh * outW
                if count == 0 { target.update(repeating: isMax ? -.infinity : 0, count: outW); continue }
                target.update(from: rows + first * outW, count: outW)
                for j in 1..<max(count, 1) {
                    let source = rows + (first + j) * outW
                    if isMax { for i in 0..<outW { target[i] = max(target[i], source[i]) } } else { for i in 0..<outW { target[i] += source[i] } }
                }
                if !isMax {
                    let rowScale = reciprocal(countIncludePad ? padded : count)
                    for i in 0..<outW { target[i] *= scale[i] * rowScale }
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
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), y = io.output(0, Float.self)
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
