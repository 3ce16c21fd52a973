import Glibc

/// Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh: float32 pointwise functions.
struct UnaryOperator: Operator {
    let activation: Activation

    init(_ node: NodeContext) throws {
        switch node.opType {
        case "Relu": try node.allowOnly([]); activation = .relu
        case "Sigmoid": try node.allowOnly([]); activation = .sigmoid
        case "Tanh": try node.allowOnly([]); activation = .tanh
        case "HardSwish": try node.allowOnly([]); activation = .hardSwish
        case "LeakyRelu":
            try node.allowOnly(["alpha"])
            activation = .leakyRelu(alpha: try node.float("alpha", default: 0.01))
        case "HardSigmoid":
            try node.allowOnly(["alpha", "beta"])
            activation = .hardSigmoid(alpha: try node.float("alpha", default: 0.2), beta: try node.float("beta", default: 0.5))
        default: throw node.unsupported("operator \(node.opType)")
        }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        try node.requireFloat(x, "X")
        let count = x.shape.elementCount
        let activation = activation
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), target = io.output(0, Float.self)
            let pieces = (count + VectorBinaryKernel.piece - 1) / VectorBinaryKernel.piece
            splitWork(io, units: pieces, elementsPerUnit: VectorBinaryKernel.piece) { units in
                let start = units.lowerBound * VectorBinaryKernel.piece, end = min(count, units.upperBound * VectorBinaryKernel.piece)
                activation.apply(source + start, target + start, count: end - start)
            }
        })
    }
}

/// Clip: bounds from attributes (opset < 11) or optional inputs, which may be runtime values.
struct ClipOperator: Operator {
    let low: Float
    let high: Float

    init(_ node: NodeContext) throws {
        try node.allowOnly(["min", "max"])
        low = try node.float("min", default: -Float.greatestFiniteMagnitude)
        high = try node.float("max", default: Float.greatestFiniteMagnitude)
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "input")
        try node.requireFloat(x, "input")
        for index in 1..<max(inputs.count, 1) {
            if let bound = inputs[index] {
                try node.requireFloat(bound, index == 1 ? "min" : "max")
                if bound.shape.elementCount != 1 { throw node.invalid("min and max must be scalars") }
            }
        }
        let count = x.shape.elementCount
        let (defaultLow, defaultHigh) = (low, high)
        let hasMin = node.optional(inputs, 1) != nil, hasMax = node.optional(inputs, 2) != nil
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
            let low = hasMin ? io.input(1, Float.self).pointee : defaultLow
            let high = hasMax ? io.input(2, Float.self).pointee : defaultHigh
            // ONNX: min > max yields max everywhere; min(max(x, low), high) gives that.
            let source = io.input(0, Float.self), target = io.output(0, Float.self)
            let pieces = (count + VectorBinaryKernel.piece - 1) / VectorBinaryKernel.piece
            splitWork(io, units: pieces, elementsPerUnit: VectorBinaryKernel.piece) { units in
                let start = units.lowerBound * VectorBinaryKernel.piece, end = min(count, units.upperBound * VectorBinaryKernel.piece)
                Activation.clip(low: low, high: high).apply(source + start, target + start, count: end - start)
            }
        })
    }
}

/// One binary arithmetic function on one element type.
protocol BinaryFunction {
    associatedtype Element
    static func apply(_ a: Element, _ b: Element) -> Element
}
enum AddFloat: BinaryFunction { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubFloat: BinaryFunction { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulFloat: BinaryFunction { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
enum DivFloat: BinaryFunction { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a / b } }
enum AddInt64: BinaryFunction { @inline(__always) static func apply(_ a: Int64, _ b: Int64) -> Int64 { a &+ b } }
enum SubInt64: BinaryFunction { @inline(__always) static func apply(_ a: Int64, _ b: Int64) -> Int64 { a &- b } }
enum MulInt64: BinaryFunction { @inline(__always) static func apply(_ a: Int64, _ b: Int64) -> Int64 { a &* b } }
enum DivInt64: BinaryFunction {
    @inline(__always) static func apply(_ a: Int64, _ b: Int64) -> Int64 { b == 0 || (a == .min && b == -1) ? 0 : a / b }
}
enum AddInt32: BinaryFunction { @inline(__always) static func apply(_ a: Int32, _ b: Int32) -> Int32 { a &+ b } }
enum SubInt32: BinaryFunction { @inline(__always) static func apply(_ a: Int32, _ b: Int32) -> Int32 { a &- b } }
enum MulInt32: BinaryFunction { @inline(__always) static func apply(_ a: Int32, _ b: Int32) -> Int32 { a &* b } }
enum DivInt32: BinaryFunction {
    @inline(__always) static func apply(_ a: Int32, _ b: Int32) -> Int32 { b == 0 || (a == .min && b == -1) ? 0 : a / b }
}

/// Applies F elementwise with numpy broadcasting; `walk` maps output rows to A and B offsets.
struct BroadcastKernel<F: BinaryFunction>: Kernel {
    let walk: StridedWalk
    let aIndex: Int
    let bIndex: Int

    func run(_ io: KernelIO) {
        let a = io.input(aIndex, F.Element.self), b = io.input(bIndex, F.Element.self)
        Self.compute(walk, a, b, io.output(0, F.Element.self))
    }

    /// `out` may alias `a` when A has the output's shape (Sum accumulates in place).
    @inline(__always)
    static func compute(_ walk: StridedWalk, _ a: UnsafePointer<F.Element>, _ b: UnsafePointer<F.Element>, _ out: UnsafeMutablePointer<F.Element>) {
        let inner = walk.innerCount
        let sa = walk.strides[0].last!, sb = walk.strides[1].last!
        walk.forEachRow { o, ia, ib in
            let pa = a + ia, pb = b + ib, po = out + o
            switch (sa, sb) {
            case (1, 1): for i in 0..<inner { po[i] = F.apply(pa[i], pb[i]) }
            case (1, 0): let y = pb[0]; for i in 0..<inner { po[i] = F.apply(pa[i], y) }
            case (0, 1): let x = pa[0]; for i in 0..<inner { po[i] = F.apply(x, pb[i]) }
            default: for i in 0..<inner { po[i] = F.apply(pa[i * sa], pb[i * sb]) }
            }
        }
    }
}

/// Float Add/Sub/Mul/Div with broadcasting on the vector kernels: the walk's innermost rows
/// (as long as the broadcast allows) run as row-op-row or row-op-scalar loops at memory speed;
/// rows, or pieces of one long row, are split across the workers when there is enough work.
struct VectorBinaryKernel: Kernel {
    /// `AVX512Kernels.Elementwise` operator code.
    let op: Int
    let walk: StridedWalk
    let aIndex: Int
    let bIndex: Int
    var isa: VectorISA = VectorKernels.isa

    static func code(_ opType: String) -> Int? {
        switch opType {
        case "Add", "Sum": return 0
        case "Sub": return 1
        case "Mul": return 2
        case "Div": return 3
        default: return nil
        }
    }

    /// Elements per work piece when one row is split.
    static let piece = 16384

    /// Short rows where one operand is contiguous over the whole output and the other repeats
    /// one row (a per-channel constant on an NHWC tensor: rows of 3): the repeating row is
    /// tiled into a longer pattern so the kernels run on long rows. 0 for no, 1 for A
    /// repeating, 2 for B.
    var periodic: Int {
        let inner = walk.innerCount, rank = walk.shape.count
        guard rank >= 2, inner < 256 else { return 0 }
        let own = contiguousStrides(walk.shape)
        let repeats = { (k: Int) in walk.strides[k].last == 1 && walk.strides[k].dropLast().allSatisfy { $0 == 0 } }
        if walk.strides[0] == own && repeats(1) { return 2 }
        if walk.strides[1] == own && repeats(0) { return 1 }
        return 0
    }

    func run(_ io: KernelIO) {
        let a = io.input(aIndex, Float.self), b = io.input(bIndex, Float.self), y = io.output(0, Float.self)
        let inner = walk.innerCount, rows = walk.rowCount
        let sa = walk.strides[0].last!, sb = walk.strides[1].last!
        let repeating = periodic
        if repeating != 0 {
            // Rows per chunk so a chunk is about 1024 floats; the pattern is that many copies.
            let perChunk = max(1, 1024 / inner), length = perChunk * inner, count = rows * inner
            withUnsafeTemporaryAllocation(of: Float.self, capacity: length) { pattern in
                let row = repeating == 2 ? b : a
                for r in 0..<perChunk { (pattern.baseAddress! + r * inner).update(from: row, count: inner) }
                let tiled = UnsafePointer(pattern.baseAddress!)
                let chunks = (count + length - 1) / length
                splitWork(io, units: chunks, elementsPerUnit: length) { range in
                    for chunk in range {
                        let start = chunk * length, n = min(length, count - start)
                        if repeating == 2 {
                            VectorKernels.binary(op, a + start, tiled, y + start, count: n, isa: isa)
                        } else {
                            VectorKernels.binary(op, tiled, b + start, y + start, count: n, isa: isa)
                        }
                    }
                }
            }
            return
        }
        if rows < 2 * io.width && inner >= 2 * Self.piece {
            // Few long rows: pieces of rows.
            let pieces = (inner + Self.piece - 1) / Self.piece
            splitWork(io, units: rows * pieces, elementsPerUnit: Self.piece) { units in
                for unit in units {
                    let (row, piece) = unit.quotientAndRemainder(dividingBy: pieces)
                    let start = piece * Self.piece, count = min(Self.piece, inner - start)
                    walk.forEachRow(in: row..<row + 1) { o, ia, ib in
                        self.row(a + ia + start * sa, sa, b + ib + start * sb, sb, y + o + start, count)
                    }
                }
            }
            return
        }
        splitWork(io, units: rows, elementsPerUnit: inner) { range in
            walk.forEachRow(in: range) { o, ia, ib in self.row(a + ia, sa, b + ib, sb, y + o, inner) }
        }
    }

    @inline(__always)
    private func row(_ a: UnsafePointer<Float>, _ sa: Int, _ b: UnsafePointer<Float>, _ sb: Int, _ y: UnsafeMutablePointer<Float>,
                     _ count: Int) {
        switch (sa, sb) {
        case (1, 1): VectorKernels.binary(op, a, b, y, count: count, isa: isa)
        case (1, 0): VectorKernels.binaryScalar(op, a, b[0], scalarFirst: false, y, count: count, isa: isa)
        case (0, 1): VectorKernels.binaryScalar(op, b, a[0], scalarFirst: true, y, count: count, isa: isa)
        default:
            for i in 0..<count {
                let x = a[i * sa], z = b[i * sb]
                switch op {
                case 0: y[i] = x + z
                case 1: y[i] = x - z
                case 2: y[i] = x * z
                default: y[i] = x / z
                }
            }
        }
    }
}

/// Picks the specialised kernel for an op type and dtype.
func binaryKernel(_ opType: String, _ dtype: DType, _ walk: StridedWalk, a: Int, b: Int, node: NodeContext) throws -> any Kernel {
    if dtype == .float32, opType != "Sum", VectorISA.detected != nil, let code = VectorBinaryKernel.code(opType) {
        return VectorBinaryKernel(op: code, walk: walk, aIndex: a, bIndex: b)
    }
    switch (opType, dtype) {
    case ("Add", .float32), ("Sum", .float32): return BroadcastKernel<AddFloat>(walk: walk, aIndex: a, bIndex: b)
    case ("Sub", .float32): return BroadcastKernel<SubFloat>(walk: walk, aIndex: a, bIndex: b)
    case ("Mul", .float32): return BroadcastKernel<MulFloat>(walk: walk, aIndex: a, bIndex: b)
    case ("Div", .float32): return BroadcastKernel<DivFloat>(walk: walk, aIndex: a, bIndex: b)
    case ("Add", .int64), ("Sum", .int64): return BroadcastKernel<AddInt64>(walk: walk, aIndex: a, bIndex: b)
    case ("Sub", .int64): return BroadcastKernel<SubInt64>(walk: walk, aIndex: a, bIndex: b)
    case ("Mul", .int64): return BroadcastKernel<MulInt64>(walk: walk, aIndex: a, bIndex: b)
    case ("Div", .int64): return BroadcastKernel<DivInt64>(walk: walk, aIndex: a, bIndex: b)
    case ("Add", .int32), ("Sum", .int32): return BroadcastKernel<AddInt32>(walk: walk, aIndex: a, bIndex: b)
    case ("Sub", .int32): return BroadcastKernel<SubInt32>(walk: walk, aIndex: a, bIndex: b)
    case ("Mul", .int32): return BroadcastKernel<MulInt32>(walk: walk, aIndex: a, bIndex: b)
    case ("Div", .int32): return BroadcastKernel<DivInt32>(walk: walk, aIndex: a, bIndex: b)
    default: throw node.unsupported("\(opType) on \(dtype) tensors (float32, int64 and int32 are implemented)")
    }
}

/// Add, Sub, Mul, Div with numpy broadcasting.
struct BinaryOperator: Operator {
    init(_ node: NodeContext) throws {
        // `broadcast`/`axis` are opset < 7 legacy attributes.
        try node.allowOnly([])
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let a = try node.required(inputs, 0, "A"), b = try node.required(inputs, 1, "B")
        guard a.dtype == b.dtype else { throw node.invalid("A is \(a.dtype) but B is \(b.dtype)") }
        guard let shape = broadcastShapes(a.shape, b.shape) else {
            throw node.invalid("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let walk = StridedWalk(shape: shape, strides: [broadcastStrides(a.shape, to: shape), broadcastStrides(b.shape, to: shape)])
        return Prepared(outputs: [ValueSpec(dtype: a.dtype, shape: shape)],
                        kernel: try binaryKernel(node.opType, a.dtype, walk, a: 0, b: 1, node: node))
    }
}

/// Sum of any number of inputs with broadcasting: output = input0 broadcast, then += each input.
struct SumOperator: Operator {
    init(_ node: NodeContext) throws { try node.allowOnly([]) }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let specs = inputs.compactMap { $0 }
        guard let first = specs.first, specs.count == inputs.count else { throw node.invalid("Sum needs at least one input and no omitted ones") }
        var shape = first.shape
        for spec in specs.dropFirst() {
            guard spec.dtype == first.dtype else { throw node.invalid("inputs mix \(first.dtype) and \(spec.dtype)") }
            guard let joined = broadcastShapes(shape, spec.shape) else { throw node.invalid("shapes \(shape) and \(spec.shape) do not broadcast") }
            shape = joined
        }
        let elementSize = first.dtype.size
        let copyWalk = StridedWalk(shape: shape, strides: [broadcastStrides(first.shape, to: shape)])
        let own = contiguousStrides(shape)
        let adds: [any Kernel] = try specs.indices.dropFirst().map { index in
            // Accumulate: A is the output itself (passed as the extra input slot), B is input `index`.
            let walk = StridedWalk(shape: shape, strides: [own, broadcastStrides(specs[index].shape, to: shape)])
            return try binaryKernel("Sum", first.dtype, walk, a: 0, b: index, node: node)
        }
        return Prepared(outputs: [ValueSpec(dtype: first.dtype, shape: shape)], kernel: ClosureKernel { io in
            stridedCopy(copyWalk, elementSize: elementSize, base: 0, from: io.inputs[0]!, to: io.outputs[0]!)
            // Re-point input 0 at the running total so each kernel reads A = output.
            withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: io.inputs.count) { pointers in
                for i in 0..<io.inputs.count { pointers[i] = io.inputs[i] }
                pointers[0] = UnsafeRawPointer(io.outputs[0]!)
                let view = KernelIO(inputs: UnsafeBufferPointer(pointers), outputs: io.outputs, scratch: io.scratch)
                for add in adds { add.run(view) }
            }
        })
    }
}
