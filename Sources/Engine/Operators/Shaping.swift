/// Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (inference): the output is the
/// input's bytes under a new shape, so no kernel runs and no memory is planned.
struct ReshapeOperator: Operator {
    let allowZero: Bool
    let axisAttribute: Int?
    let axesAttribute: [Int]?

    init(_ node: NodeContext) throws {
        switch node.opType {
        case "Reshape": try node.allowOnly(["allowzero", "shape"])
        case "Flatten": try node.allowOnly(["axis"])
        case "Squeeze", "Unsqueeze": try node.allowOnly(["axes"])
        case "Dropout":
            try node.allowOnly(["ratio", "seed", "is_test", "training_mode"])
        default: try node.allowOnly([])
        }
        allowZero = try node.int("allowzero", default: 0) != 0
        axisAttribute = node.has("axis") ? try node.int("axis", default: 1) : nil
        axesAttribute = try node.ints("axes")
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "data")
        var outputs = [ValueSpec(dtype: x.dtype, shape: try outputShape(x.shape, inputs, node))]
        if node.opType == "Dropout" {
            if let training = try node.known(inputs, 2, "training_mode"), training.integers.contains(where: { $0 != 0 }) {
                throw node.unsupported("training_mode=true (only inference is implemented)")
            }
            if node.outputCount > 1 {
                // Inference keeps every element: the mask is all true.
                let mask = HostTensor(dtype: .bool, shape: x.shape)
                mask.bytes.initializeMemory(as: UInt8.self, repeating: 1, count: max(mask.byteCount, 1))
                outputs.append(ValueSpec(mask))
            }
        }
        if let value = x.value {
            // Known input: the output is known too.
            outputs[0].value = HostTensor(dtype: x.dtype, shape: outputs[0].shape,
                                          copying: UnsafeRawBufferPointer(start: value.bytes, count: value.byteCount))
        }
        return Prepared(outputs: outputs, kernel: nil, aliasesFirstInput: true)
    }

    private func outputShape(_ shape: Shape, _ inputs: [ValueSpec?], _ node: NodeContext) throws -> Shape {
        switch node.opType {
        case "Reshape":
            guard let target = try node.known(inputs, 1, "shape") else { throw node.invalid("missing input shape") }
            var result = target.integers
            var inferred: Int?
            for (index, dim) in result.enumerated() {
                if dim == 0 && !allowZero {
                    guard index < shape.count else { throw node.invalid("shape \(target.integers) copies dimension \(index) that \(shape) lacks") }
                    result[index] = shape[index]
                } else if dim == -1 {
                    if inferred != nil { throw node.invalid("shape \(target.integers) has more than one -1") }
                    inferred = index
                } else if dim < 0 {
                    throw node.invalid("shape \(target.integers) has a negative dimension")
                }
            }
            _ = try TensorSize.bytes(result.map { max($0, 1) }, .float32, "the shape of node '\(node.name)' (\(node.opType))")
            if let inferred {
                let known = result.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
                guard known > 0, shape.elementCount % known == 0 else {
                    throw node.invalid("cannot reshape \(shape) to \(target.integers)")
                }
                result[inferred] = shape.elementCount / known
            }
            guard result.elementCount == shape.elementCount else { throw node.invalid("cannot reshape \(shape) (\(shape.elementCount) elements) to \(result)") }
            return result
        case "Flatten":
            let value = axisAttribute ?? 1
            let axis = value < 0 ? value + shape.count : value
            guard axis >= 0, axis <= shape.count else { throw node.invalid("axis \(value) is out of range for rank \(shape.count)") }
            return [shape.prefix(axis).reduce(1, *), shape.dropFirst(axis).reduce(1, *)]
        case "Squeeze":
            let axes = try axesAttribute ?? node.known(inputs, 1, "axes")?.integers
            guard let axes else { return shape.filter { $0 != 1 } }
            let normalized = try Set(axes.map { try node.axis($0, rank: shape.count) })
            for axis in normalized where shape[axis] != 1 { throw node.invalid("cannot squeeze axis \(axis) of size \(shape[axis])") }
            return shape.enumerated().filter { !normalized.contains($0.offset) }.map(\.element)
        case "Unsqueeze":
            guard let axes = try axesAttribute ?? node.known(inputs, 1, "axes")?.integers else { throw node.invalid("missing axes") }
            let rank = shape.count + axes.count
            let normalized = try Set(axes.map { try node.axis($0, rank: rank) })
            guard normalized.count == axes.count else { throw node.invalid("axes \(axes) repeat an axis") }
            var result: [Int] = []
            var source = shape.makeIterator()
            for axis in 0..<rank { result.append(normalized.contains(axis) ? 1 : source.next()!) }
            return result
        default:
            return shape
        }
    }
}

/// Transpose: general permutation, as a strided copy.
struct TransposeOperator: Operator {
    let perm: [Int]?

    init(_ node: NodeContext) throws {
        try node.allowOnly(["perm"])
        perm = try node.ints("perm")
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "data")
        let rank = x.shape.count
        let perm = self.perm ?? Array((0..<rank).reversed())
        guard perm.count == rank, Set(perm) == Set(0..<rank) else { throw node.invalid("perm \(perm) is not a permutation of 0..<\(rank)") }
        let outShape = perm.map { x.shape[$0] }
        let strides = contiguousStrides(x.shape)
        let walk = StridedWalk(shape: outShape, strides: [perm.map { strides[$0] }])
        let elementSize = x.dtype.size
        return Prepared(outputs: [ValueSpec(dtype: x.dtype, shape: outShape)], kernel: ClosureKernel { io in
            stridedCopy(walk, elementSize: elementSize, base: 0, from: io.inputs[0]!, to: io.outputs[0]!)
        })
    }
}

/// Concat along one axis.
struct ConcatOperator: Operator {
    let axis: Int

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axis"])
        guard node.has("axis") || node.opset < 4 else { throw node.invalid("attribute axis is required") }
        axis = try node.int("axis", default: 1)
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let specs = inputs.compactMap { $0 }
        guard let first = specs.first, specs.count == inputs.count else { throw node.invalid("Concat needs inputs and no omitted ones") }
        let axis = try node.axis(self.axis, rank: first.shape.count)
        var outShape = first.shape
        outShape[axis] = 0
        for spec in specs {
            guard spec.dtype == first.dtype, spec.shape.count == first.shape.count,
                  spec.shape.indices.allSatisfy({ $0 == axis || spec.shape[$0] == first.shape[$0] }) else {
                throw node.invalid("inputs \(specs.map(\.shape)) (\(specs.map(\.dtype))) cannot be concatenated on axis \(axis)")
            }
            outShape[axis] += spec.shape[axis]
        }
        let outer = first.shape.prefix(axis).reduce(1, *)
        let elementSize = first.dtype.size
        let chunks = specs.map { $0.shape.dropFirst(axis).reduce(1, *) * elementSize }
        let outRow = chunks.reduce(0, +)
        let columns = chunks.indices.map { chunks[..<$0].reduce(0, +) }
        return Prepared(outputs: [ValueSpec(dtype: first.dtype, shape: outShape)], kernel: ClosureKernel { io in
            let y = io.outputs[0]!
            // Workers take whole (outer index, input) copies.
            io.parallelRanges(outer * chunks.count) { items, _ in
                for item in items {
                    let (o, index) = item.quotientAndRemainder(dividingBy: chunks.count)
                    let chunk = chunks[index]
                    guard chunk > 0 else { continue }
                    (y + o * outRow + columns[index]).copyMemory(from: io.inputs[index]! + o * chunk, byteCount: chunk)
                }
            }
        })
    }
}

/// Split along one axis into parts given by `split` (attribute or input), `num_outputs`, or equal parts.
struct SplitOperator: Operator {
    let axis: Int
    let splitAttribute: [Int]?
    let numOutputs: Int?

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axis", "split", "num_outputs"])
        axis = try node.int("axis", default: 0)
        splitAttribute = try node.ints("split")
        numOutputs = node.has("num_outputs") ? try node.int("num_outputs", default: 0) : nil
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "input")
        let axis = try node.axis(self.axis, rank: x.shape.count)
        let size = x.shape[axis]
        let parts = node.outputCount
        var sizes: [Int]
        if let split = try splitAttribute ?? node.known(inputs, 1, "split")?.integers {
            sizes = split
        } else if let numOutputs {
            // Checked before the sizes are listed (one per part).
            guard numOutputs == parts else { throw node.invalid("num_outputs \(numOutputs) differs from the node's \(parts) outputs") }
            // opset 18: the last part is smaller when the size does not divide evenly.
            let chunk = (size + numOutputs - 1) / numOutputs
            sizes = (0..<numOutputs).map { min(chunk, max(0, size - $0 * chunk)) }
        } else {
            guard parts > 0, size % parts == 0 else { throw node.invalid("cannot split size \(size) into \(parts) equal parts") }
            sizes = Array(repeating: size / parts, count: parts)
        }
        // Each size checked against the axis before they are summed (no overflow).
        guard sizes.count == parts, sizes.allSatisfy({ (0...size).contains($0) }), sizes.reduce(0, +) == size else {
            throw node.invalid("split sizes \(sizes) do not cover axis \(axis) of size \(size) with \(parts) outputs")
        }
        let outer = x.shape.prefix(axis).reduce(1, *)
        let inner = x.shape.dropFirst(axis + 1).reduce(1, *) * x.dtype.size
        let outputs = sizes.map { part -> ValueSpec in
            var shape = x.shape
            shape[axis] = part
            return ValueSpec(dtype: x.dtype, shape: shape)
        }
        return Prepared(outputs: outputs, kernel: ClosureKernel { [sizes] io in
            let source = io.inputs[0]!
            let row = size * inner
            var offset = 0
            for (index, part) in sizes.enumerated() {
                let chunk = part * inner
                if let y = io.outputs[index], chunk > 0 {
                    for o in 0..<outer { (y + o * chunk).copyMemory(from: source + o * row + offset, byteCount: chunk) }
                }
                offset += chunk
            }
        })
    }
}

/// Slice with starts/ends/axes/steps (attributes before opset 10, inputs from 10), negative
/// steps included, as a strided copy.
struct SliceOperator: Operator {
    let startsAttribute: [Int]?
    let endsAttribute: [Int]?
    let axesAttribute: [Int]?

    init(_ node: NodeContext) throws {
        try node.allowOnly(["starts", "ends", "axes"])
        startsAttribute = try node.ints("starts", unbounded: true)
        endsAttribute = try node.ints("ends", unbounded: true)
        axesAttribute = try node.ints("axes")
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "data")
        let rank = x.shape.count
        let starts: [Int], ends: [Int], axesList: [Int]?, steps: [Int]?
        if let startsAttribute, let endsAttribute {
            (starts, ends, axesList, steps) = (startsAttribute, endsAttribute, axesAttribute, nil)
        } else {
            guard let s = try node.known(inputs, 1, "starts"), let e = try node.known(inputs, 2, "ends") else {
                throw node.invalid("missing starts or ends")
            }
            (starts, ends) = (s.integers, e.integers)
            axesList = try node.known(inputs, 3, "axes")?.integers
            steps = try node.known(inputs, 4, "steps")?.integers
        }
        let axes = try (axesList ?? Array(0..<starts.count)).map { try node.axis($0, rank: rank) }
        guard starts.count == ends.count, axes.count == starts.count, steps == nil || steps!.count == starts.count,
              Set(axes).count == axes.count else {
            throw node.invalid("starts/ends/axes/steps lengths disagree or axes repeat")
        }
        var begin = [Int](repeating: 0, count: rank)
        var step = [Int](repeating: 1, count: rank)
        var outShape = x.shape
        for (i, axis) in axes.enumerated() {
            let size = x.shape[axis]
            let s = steps?[i] ?? 1
            guard s != 0 else { throw node.invalid("steps must not be 0") }
            var start = starts[i], end = ends[i]
            if start < 0 { start += size }
            if end < 0 { end += size }
            // Counts computed without overflow for any step (Int.min included): the clamped
            // distance is at most `size`.
            if s > 0 {
                start = min(max(start, 0), size)
                end = min(max(end, 0), size)
                outShape[axis] = end > start ? (end - start - 1) / s + 1 : 0
            } else {
                start = min(max(start, -1), size - 1)
                end = min(max(end, -1), size - 1)
                outShape[axis] = start > end ? 1 - (start - end - 1) / s : 0
            }
            begin[axis] = start
            // A step only matters between two elements; a larger one would overflow the strides.
            step[axis] = outShape[axis] > 1 ? s : 1
        }
        let strides = contiguousStrides(x.shape)
        let base = zip(begin, strides).reduce(0) { $0 + $1.0 * $1.1 }
        let walk = StridedWalk(shape: outShape, strides: [zip(strides, step).map { $0 * $1 }])
        let elementSize = x.dtype.size, empty = outShape.elementCount == 0
        return Prepared(outputs: [ValueSpec(dtype: x.dtype, shape: outShape)], kernel: ClosureKernel { io in
            if !empty { stridedCopy(walk, elementSize: elementSize, base: base, from: io.inputs[0]!, to: io.outputs[0]!) }
        })
    }
}

/// Pad: constant, reflect, edge and wrap modes; pads from the attribute (opset < 11) or input,
/// with optional axes (opset 18). Each output axis maps its indices to a source index or -1.
struct PadOperator: Operator {
    let mode: String
    let padsAttribute: [Int]?
    let valueAttribute: Float

    init(_ node: NodeContext) throws {
        try node.allowOnly(["mode", "pads", "value"])
        mode = try node.string("mode", default: "constant")
        guard ["constant", "reflect", "edge", "wrap"].contains(mode) else { throw node.unsupported("mode '\(mode)'") }
        padsAttribute = try node.ints("pads")
        valueAttribute = try node.float("value", default: 0)
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "data")
        let rank = x.shape.count
        guard let padList = try padsAttribute ?? node.known(inputs, 1, "pads")?.integers else { throw node.invalid("missing pads") }
        let axes = try (node.known(inputs, 3, "axes")?.integers ?? Array(0..<rank)).map { try node.axis($0, rank: rank) }
        guard padList.count == 2 * axes.count else { throw node.invalid("pads has \(padList.count) values for \(axes.count) axes") }
        var before = [Int](repeating: 0, count: rank), after = [Int](repeating: 0, count: rank)
        for (i, axis) in axes.enumerated() { before[axis] = padList[i]; after[axis] = padList[i + axes.count] }
        let outShape = try (0..<rank).map { axis in
            let (padded, over1) = x.shape[axis].addingReportingOverflow(before[axis])
            let (size, over2) = padded.addingReportingOverflow(after[axis])
            guard !over1, !over2 else { throw node.invalid("pads \(padList) overflow the shape") }
            return size
        }
        guard outShape.allSatisfy({ $0 >= 0 }) else { throw node.invalid("pads \(padList) remove more than \(x.shape)") }
        _ = try TensorSize.bytes(outShape, x.dtype, "the output of node '\(node.name)' (Pad)")
        var value = Double(valueAttribute)
        if let constant = try node.known(inputs, 2, "constant_value") {
            guard constant.dtype == x.dtype else { throw node.invalid("constant_value dtype \(constant.dtype) differs from data \(x.dtype)") }
            value = constant.doubles.first ?? 0
        }
        // Source index per output index per axis; -1 means the padding value.
        var maps: [[Int]] = []
        for axis in 0..<rank {
            let size = x.shape[axis]
            if (mode == "reflect" || mode == "wrap" || mode == "edge") && size == 0 && outShape[axis] > 0 {
                throw node.invalid("cannot \(mode)-pad an empty axis")
            }
            maps.append((0..<outShape[axis]).map { o in
                var i = o - before[axis]
                if i >= 0 && i < size { return i }
                switch mode {
                case "edge": return min(max(i, 0), size - 1)
                case "wrap": return ((i % size) + size) % size
                case "reflect":
                    if size == 1 { return 0 }
                    let period = 2 * (size - 1)
                    i = ((i % period) + period) % period
                    return i < size ? i : period - i
                default: return -1
                }
            })
        }
        let kernel = PadKernel(inputShape: x.shape, outShape: outShape, maps: maps, dtype: x.dtype, value: value)
        return Prepared(outputs: [ValueSpec(dtype: x.dtype, shape: outShape)], kernel: kernel)
    }
}

/// Pad as row copies: each output row (innermost axis) is either all padding (an outer axis
/// maps outside the input) or the runs of its inner-axis map, found at load: consecutive
/// source indices copied as one block, padding filled, mirrored or repeated elements as runs
/// of one. Rows split across workers when the tensor is large.
struct PadKernel: Kernel {
    struct Run: Sendable {
        var start: Int
        var count: Int
        /// First source element of the run along the inner axis; -1 for the padding value.
        var source: Int
    }
    let outShape: Shape
    let maps: [[Int]]
    let strides: [Int]
    let runs: [Run]
    let dtype: DType
    /// The padding value as one element of `dtype`.
    let fill: HostTensor

    init(inputShape: Shape, outShape: Shape, maps: [[Int]], dtype: DType, value: Double) {
        self.outShape = outShape
        self.maps = maps
        self.dtype = dtype
        strides = contiguousStrides(inputShape)
        var runs: [Run] = []
        for (o, s) in (maps.last ?? [0]).enumerated() {
            if var last = runs.last, (s < 0 && last.source < 0) || (s >= 0 && last.source >= 0 && last.source + last.count == s) {
                last.count += 1
                runs[runs.count - 1] = last
            } else {
                runs.append(Run(start: o, count: 1, source: s))
            }
        }
        self.runs = runs
        fill = HostTensor(dtype: dtype, shape: [1])
        storeScalar(value, dtype, fill.bytes)
    }

    func run(_ io: KernelIO) {
        let rank = outShape.count
        let count = outShape.elementCount
        guard count > 0 else { return }
        if rank == 0 { io.outputs[0]!.copyMemory(from: io.inputs[0]!, byteCount: dtype.size); return }
        let inner = outShape[rank - 1], rows = count / inner
        let size = dtype.size
        let source = io.inputs[0]!, y = io.outputs[0]!
        splitWork(io, units: rows, elementsPerUnit: inner) { range in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { index in
                index.initialize(repeating: 0)
                var rest = range.lowerBound
                for d in stride(from: rank - 2, through: 0, by: -1) {
                    let (q, r) = rest.quotientAndRemainder(dividingBy: outShape[d])
                    index[d] = r
                    rest = q
                }
                for row in range {
                    var offset = 0, inside = true
                    for axis in 0..<(rank - 1) {
                        let s = maps[axis][index[axis]]
                        if s < 0 { inside = false; break }
                        offset += s * strides[axis]
                    }
                    let target = y + row * inner * size
                    if inside {
                        for run in runs {
                            if run.source >= 0 {
                                (target + run.start * size).copyMemory(from: source + (offset + run.source) * size, byteCount: run.count * size)
                            } else {
                                fillElements(target + run.start * size, run.count)
                            }
                        }
                    } else {
                        fillElements(target, inner)
                    }
                    var d = rank - 2
                    while d >= 0 { index[d] += 1; if index[d] < outShape[d] { break }; index[d] = 0; d -= 1 }
                }
            }
        }
    }

    @inline(__always)
    private func fillElements(_ target: UnsafeMutableRawPointer, _ count: Int) {
        switch dtype.size {
        case 4: target.assumingMemoryBound(to: UInt32.self).update(repeating: fill.bytes.load(as: UInt32.self), count: count)
        case 8: target.assumingMemoryBound(to: UInt64.self).update(repeating: fill.bytes.load(as: UInt64.self), count: count)
        case 2: target.assumingMemoryBound(to: UInt16.self).update(repeating: fill.bytes.load(as: UInt16.self), count: count)
        default: target.assumingMemoryBound(to: UInt8.self).update(repeating: fill.bytes.load(as: UInt8.self), count: count)
        }
    }
}

/// Writes `value` converted to `dtype` at `destination`; integers saturate (a model's float
/// pad value may not fit the data's integer type), NaN becomes 0.
func storeScalar(_ value: Double, _ dtype: DType, _ destination: UnsafeMutableRawPointer) {
    let integer = saturatingInt(value)
    switch dtype {
    case .float32: destination.storeBytes(of: Float(value), as: Float.self)
    case .float64: destination.storeBytes(of: value, as: Double.self)
    case .int64: destination.storeBytes(of: Int64(integer), as: Int64.self)
    case .int32: destination.storeBytes(of: Int32(clamping: integer), as: Int32.self)
    case .int8: destination.storeBytes(of: Int8(clamping: integer), as: Int8.self)
    case .uint8: destination.storeBytes(of: UInt8(clamping: integer), as: UInt8.self)
    case .bool: destination.storeBytes(of: UInt8(value != 0 ? 1 : 0), as: UInt8.self)
    }
}
