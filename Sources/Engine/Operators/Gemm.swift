/// Gemm: Y = alpha * A' * B' + beta * C, C broadcast to (M, N); optional fused activation.
struct GemmOperator: Operator {
    let alpha: Float
    let beta: Float
    let transA: Bool
    let transB: Bool
    let activation: Activation

    init(_ node: NodeContext) throws {
        try node.allowOnly(["alpha", "beta", "transA", "transB", "broadcast",
                            GraphOptimizer.fusedActivationKey, GraphOptimizer.fusedAlphaKey, GraphOptimizer.fusedBetaKey])
        alpha = try node.float("alpha", default: 1)
        beta = try node.float("beta", default: 1)
        transA = try node.int("transA", default: 0) != 0
        transB = try node.int("transB", default: 0) != 0
        activation = try fusedActivation(node)
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let a = try node.required(inputs, 0, "A"), b = try node.required(inputs, 1, "B")
        try node.requireFloat(a, "A")
        try node.requireFloat(b, "B")
        guard a.shape.count == 2, b.shape.count == 2 else { throw node.invalid("A \(a.shape) and B \(b.shape) must be 2-D") }
        let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (kb, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == kb else { throw node.invalid("inner dimensions differ: A' is \(m)x\(k), B' is \(kb)x\(n)") }
        var cWalk: StridedWalk?
        if let c = node.optional(inputs, 2), beta != 0 {
            try node.requireFloat(c, "C")
            guard broadcastShapes(c.shape, [m, n]) == [m, n] else { throw node.invalid("C \(c.shape) does not broadcast to [\(m), \(n)]") }
            cWalk = StridedWalk(shape: [m, n], strides: [broadcastStrides(c.shape, to: [m, n])])
        }
        let (alpha, beta, transA, transB, activation) = (alpha, beta, transA, transB, activation)
        let lda = a.shape[1], ldb = b.shape[1]
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: [m, n])], kernel: ClosureKernel { [cWalk] io in
            let y = io.output(0, Float.self)
            var gemmBeta: Float = 0
            if let cWalk {
                stridedCopy(cWalk, elementSize: 4, base: 0, from: io.inputs[2]!, to: io.outputs[0]!)
                gemmBeta = beta
            }
            sgemm(transposeA: transA, transposeB: transB, m: m, n: n, k: k, alpha: alpha, a: io.input(0, Float.self), lda: lda,
                  b: io.input(1, Float.self), ldb: ldb, beta: gemmBeta, c: y, ldc: n)
            if activation != .identity { activation.apply(y, y, count: m * n) }
        })
    }
}

/// MatMul with numpy semantics: 1-D operands are promoted, leading dimensions broadcast.
struct MatMulOperator: Operator {
    init(_ node: NodeContext) throws { try node.allowOnly([]) }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let a = try node.required(inputs, 0, "A"), b = try node.required(inputs, 1, "B")
        try node.requireFloat(a, "A")
        try node.requireFloat(b, "B")
        guard !a.shape.isEmpty, !b.shape.isEmpty else { throw node.invalid("MatMul operands must have rank >= 1") }
        let aShape = a.shape.count == 1 ? [1, a.shape[0]] : a.shape
        let bShape = b.shape.count == 1 ? [b.shape[0], 1] : b.shape
        let (m, k) = (aShape[aShape.count - 2], aShape[aShape.count - 1])
        let (kb, n) = (bShape[bShape.count - 2], bShape[bShape.count - 1])
        guard k == kb else { throw node.invalid("inner dimensions differ: A \(a.shape), B \(b.shape)") }
        let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
        guard let batchShape = broadcastShapes(aBatch, bBatch) else {
            throw node.invalid("batch dimensions of A \(a.shape) and B \(b.shape) do not broadcast")
        }
        var outShape = batchShape
        if a.shape.count > 1 { outShape.append(m) }
        if b.shape.count > 1 { outShape.append(n) }
        _ = try TensorSize.bytes(outShape, .float32, "the output of node '\(node.name)' (MatMul)")
        let batches = batchShape.elementCount
        // Per batch index, the element offsets of its A and B matrices.
        let aStrides = broadcastStrides(aBatch, to: batchShape), bStrides = broadcastStrides(bBatch, to: batchShape)
        var aOffsets: [Int] = [], bOffsets: [Int] = []
        var index = [Int](repeating: 0, count: batchShape.count)
        for _ in 0..<batches {
            aOffsets.append(zip(index, aStrides).reduce(0) { $0 + $1.0 * $1.1 } * m * k)
            bOffsets.append(zip(index, bStrides).reduce(0) { $0 + $1.0 * $1.1 } * k * n)
            var d = batchShape.count - 1
            while d >= 0 { index[d] += 1; if index[d] < batchShape[d] { break }; index[d] = 0; d -= 1 }
        }
        // B shared by every batch and A contiguous: one GEMM with M = batches * m.
        let foldBatch = bBatch.elementCount == 1 && aBatch == batchShape
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: ClosureKernel { [aOffsets, bOffsets] io in
            let pa = io.input(0, Float.self), pb = io.input(1, Float.self), y = io.output(0, Float.self)
            if foldBatch {
                // Workers take column slices of B (multiples of 64 columns); a single row is a
                // matrix-vector product, which BLAS runs without packing B.
                let rows = batches * m, slices = max(1, min(io.width, n / 64))
                io.parallelRanges(slices) { range, _ in
                    guard !range.isEmpty else { return }
                    let first = range.lowerBound * n / slices / 16 * 16
                    let last = range.upperBound == slices ? n : range.upperBound * n / slices / 16 * 16
                    if rows == 1 {
                        sgemv(rows: k, columns: last - first, a: pb + first, lda: n, x: pa, y: y + first)
                    } else {
                        sgemm(m: rows, n: last - first, k: k, a: pa, lda: k, b: pb + first, ldb: n, beta: 0, c: y + first, ldc: n)
                    }
                }
                return
            }
            for i in 0..<batches {
                sgemm(m: m, n: n, k: k, a: pa + aOffsets[i], lda: k, b: pb + bOffsets[i], ldb: n, beta: 0, c: y + i * m * n, ldc: n)
            }
        })
    }
}

/// BatchNormalization in inference mode: y = (x - mean) / sqrt(var + epsilon) * scale + bias,
/// per channel (axis 1). Usually folded into the preceding Conv at load.
struct BatchNormalizationOperator: Operator {
    let epsilon: Float

    init(_ node: NodeContext) throws {
        try node.allowOnly(["epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"])
        epsilon = try node.float("epsilon", default: 1e-5)
        if try node.int("training_mode", default: 0) != 0 { throw node.unsupported("training_mode=1 (only inference is implemented)") }
        if try node.int("spatial", default: 1) != 1 { throw node.unsupported("spatial=0") }
        if node.outputsUsed.dropFirst().contains(true) { throw node.unsupported("running mean/variance outputs (training)") }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        try node.requireFloat(x, "X")
        guard x.shape.count >= 2 else { throw node.invalid("X must have a channel axis, shape \(x.shape)") }
        let channels = x.shape[1]
        for (index, label) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            let spec = try node.required(inputs, index, label)
            try node.requireFloat(spec, label)
            if spec.shape.elementCount != channels { throw node.invalid("\(label) has shape \(spec.shape), expected [\(channels)]") }
        }
        let batch = x.shape[0], plane = x.shape.dropFirst(2).reduce(1, *)
        let epsilon = epsilon
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), y = io.output(0, Float.self)
            let scale = io.input(1, Float.self), bias = io.input(2, Float.self)
            let mean = io.input(3, Float.self), variance = io.input(4, Float.self)
            for c in 0..<channels {
                let s = scale[c] / (variance[c] + epsilon).squareRoot()
                let t = bias[c] - mean[c] * s
                for n in 0..<batch {
                    let offset = (n * channels + c) * plane
                    for i in 0..<plane { y[offset + i] = source[offset + i] * s + t }
                }
            }
        })
    }
}
