import CQuantKernels

/// QLinearMatMul, MatMulInteger and com.microsoft QGemm: A (u8/s8, rank >= 2) times B
/// (u8/s8; 2-D, shared by every matrix of A, or batched like A), with per-tensor or
/// per-column B scale / zero point; QGemm adds an int32 bias C ([N]) and takes transB.
/// The product runs as B^T x A^T on the integer kernels (B's columns are the packed rows).
struct QuantizedMatMulOperator: Operator {
    let transB: Bool

    init(_ node: NodeContext) throws {
        if node.opType == "QGemm" {
            try node.allowOnly(["alpha", "transA", "transB"])
            if try node.int("transA", default: 0) != 0 { throw node.unsupported("transA = 1") }
            if try node.float("alpha", default: 1) != 1 { throw node.unsupported("alpha != 1") }
            transB = try node.int("transB", default: 0) != 0
        } else {
            try node.allowOnly([])
            transB = false
        }
    }

    func operands(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> QuantizedOperands {
        switch node.opType {
        case "MatMulInteger":
            return QuantizedOperands(x: try node.required(inputs, 0, "A"), w: try node.required(inputs, 1, "B"),
                                     xZero: QuantParameter(inputs, 2), wZero: QuantParameter(inputs, 3), output: .int32, wIndex: 1)
        case "QGemm":
            let yScale = QuantParameter(inputs, 7), yZero = QuantParameter(inputs, 8)
            return QuantizedOperands(x: try node.required(inputs, 0, "A"), w: try node.required(inputs, 3, "B"),
                                     xScale: QuantParameter(inputs, 1), xZero: QuantParameter(inputs, 2),
                                     wScale: QuantParameter(inputs, 4), wZero: QuantParameter(inputs, 5),
                                     yScale: yScale, yZero: yZero, bias: node.optional(inputs, 6), biasIndex: 6,
                                     output: yScale == nil ? .float : .quantized(yZero?.dtype ?? .uint8), wIndex: 3)
        default:
            _ = try node.required(inputs, 1, "a_scale"); _ = try node.required(inputs, 4, "b_scale"); _ = try node.required(inputs, 6, "y_scale")
            let yZero = QuantParameter(inputs, 7)
            return QuantizedOperands(x: try node.required(inputs, 0, "a"), w: try node.required(inputs, 3, "b"),
                                     xScale: QuantParameter(inputs, 1), xZero: QuantParameter(inputs, 2),
                                     wScale: QuantParameter(inputs, 4), wZero: QuantParameter(inputs, 5),
                                     yScale: QuantParameter(inputs, 6), yZero: yZero,
                                     output: .quantized(yZero?.dtype ?? .uint8), wIndex: 3)
        }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let path = try QuantizedKernelPath.current()
        let ops = try operands(inputs, node)
        let a = ops.x.shape, b = ops.w.shape
        guard a.count >= 2, b.count >= 2 else { throw node.unsupported("A \(a) and B \(b): both must have rank >= 2") }
        let depth = a[a.count - 1]
        let (bDepth, columns) = transB ? (b[b.count - 1], b[b.count - 2]) : (b[b.count - 2], b[b.count - 1])
        guard depth == bDepth else { throw node.invalid("A \(a) and B \(b) do not multiply (inner sizes \(depth) and \(bDepth))") }
        let leading = Array(a.dropLast(2))
        let groups: Int
        if b.count == 2 {
            groups = 1
        } else {
            guard b.count == a.count, Array(b.dropLast(2)) == leading else {
                throw node.unsupported("B \(b) batched differently from A \(a): B must be 2-D or have A's leading dimensions")
            }
            groups = leading.reduce(1, *)
        }
        try ops.check(node, rowsTotal: columns)
        // Rows of the product per weight group: all of A's rows when B is shared.
        let matrixRows = a[a.count - 2]
        let rowsPerGroup = groups == 1 ? a.dropLast().reduce(1, *) : matrixRows
        let outDType: DType
        switch ops.output {
        case .quantized(let dtype): outDType = dtype
        case .int32: outDType = .int32
        case .float: outDType = .float32
        }
        let transB = self.transB, wDType = ops.w.dtype
        if groups == 1, ops.x.dtype == .uint8, ops.weightsConstant, case .quantized(let dtype) = ops.output {
            // One shared B, u8 A: A's rows are pixel rows of a 1x1 convolution (NHWC kernel).
            let rows = a.dropLast().reduce(1, *)
            let geometry = QuantizedConvGeometry(batch: rows, channels: depth, groups: 1, outPerGroup: columns, height: 1, width: 1,
                                                 kernelH: 1, kernelW: 1, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                                                 padTop: 0, padLeft: 0, outH: 1, outW: 1)
            let w = ops.w.value!
            let kernel = NhwcConvKernel(geometry: geometry, ops: ops, outType: dtype, path: path) { n, k in
                loadInteger(w.bytes, wDType, transB ? n * depth + k : k * columns + n)
            }
            var prepared = Prepared(outputs: [ValueSpec(dtype: dtype, shape: Array(a.dropLast()) + [columns])], kernel: kernel,
                                    scratchBytes: kernel.scratchBytes)
            prepared.unusedInputs = Set(ops.biasIndex.map { [ops.wIndex, $0] } ?? [ops.wIndex])
            return prepared
        }
        let weightAt: @Sendable (UnsafeRawPointer, Int, Int) -> Int32 = { pointer, row, k in
            let (g, n) = (row / columns, row % columns)
            return loadInteger(pointer, wDType, g * depth * columns + (transB ? n * depth + k : k * columns + n))
        }
        let make: @Sendable (KernelIO?) -> QuantizedWeights = { io in
            ops.makeWeights(io, path: path, groups: groups, rows: columns, depth: depth, weight: weightAt)
        }
        let constant = ops.weightsConstant ? make(nil) : nil
        let layout = QuantizedScratch(depth: depth, rows: columns, path: path)
        let kernel = QuantizedMatMulKernel(groups: groups, rowsPerGroup: rowsPerGroup, depth: depth, columns: columns,
                                           layout: layout, output: ops.output, elementSize: outDType.size, xSigned: ops.x.dtype == .int8,
                                           yZero: ops.yZero, constant: constant, make: make)
        var prepared = Prepared(outputs: [ValueSpec(dtype: outDType, shape: Array(a.dropLast()) + [columns])], kernel: kernel,
                                scratchBytes: layout.bytes + Int(CQK_ROWS) * Int(CQK_PANEL) * 4)
        if constant != nil { prepared.unusedInputs = Set(ops.biasIndex.map { [ops.wIndex, $0] } ?? [ops.wIndex]) }
        return prepared
    }
}

struct QuantizedMatMulKernel: Kernel, @unchecked Sendable {
    let groups: Int, rowsPerGroup: Int, depth: Int, columns: Int
    let layout: QuantizedScratch
    let output: QuantizedOutput
    let elementSize: Int
    let xSigned: Bool
    let yZero: QuantParameter?
    let constant: QuantizedWeights?
    let make: @Sendable (KernelIO?) -> QuantizedWeights

    func run(_ io: KernelIO) {
        let weights = constant ?? make(io)
        let panel = Int(CQK_PANEL)
        let panels = (rowsPerGroup + panel - 1) / panel
        let flip: UInt8 = xSigned ? 0x80 : 0
        let yZeroValue = yZero?.integer(io, 0) ?? 0
        let a = io.inputs[0]!.assumingMemoryBound(to: UInt8.self)
        let out = io.outputs[0]!
        let (depth, columns, elementSize) = (self.depth, self.columns, self.elementSize)
        io.parallelItems(groups * panels) { item, worker in
            let scratch = io.scratch(worker: worker)!
            let group = item / panels, p0 = (item % panels) * panel
            let count = min(panel, rowsPerGroup - p0)
            let rows = scratch.assumingMemoryBound(to: UInt8.self) + layout.rowsOffset
            let first = group * rowsPerGroup + p0
            for t in 0..<count {
                let source = a + (first + t) * depth
                for k in 0..<depth { rows[k * panel + t] = source[k] ^ flip }
            }
            let tile = scratch + layout.bytes
            weights.multiplyPanel(group: group, count: count, rows: UnsafePointer(rows), rowStride: panel, scratch: scratch, layout: layout) { block, rowCount, acc, colsum in
                let column = block * Int(CQK_ROWS)
                weights.storeRows(output, globalRow: group * columns + column, rowCount: rowCount, count: count, acc: acc,
                                  colsum: colsum, yZero: yZeroValue, out: tile, ldo: panel)
                // Transpose the tile (rows = output columns) into Y[row][column].
                for r in 0..<rowCount {
                    for t in 0..<count {
                        (out + ((first + t) * columns + column + r) * elementSize)
                            .copyMemory(from: tile + (r * panel + t) * elementSize, byteCount: elementSize)
                    }
                }
            }
        }
    }
}
