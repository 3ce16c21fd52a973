import Glibc

/// Softmax: along `axis` (opset >= 13, default -1), or over the flattened trailing axes from
/// `axis` (opset < 13, default 1).
struct SoftmaxOperator: Operator {
    let axis: Int?

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axis"])
        axis = node.has("axis") ? try node.int("axis", default: -1) : nil
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "input")
        try node.requireFloat(x, "input")
        let rank = x.shape.count
        // A scalar is one row of length 1 (the result is 1); any other rank needs a valid axis.
        let axis = rank == 0 ? 0 : try node.axis(self.axis ?? (node.opset >= 13 ? -1 : 1), rank: rank)
        let outer = x.shape.prefix(axis).reduce(1, *)
        let (length, inner) = rank == 0 ? (1, 1)
            : node.opset >= 13 ? (x.shape[axis], x.shape.dropFirst(axis + 1).reduce(1, *))
                               : (x.shape.dropFirst(axis).reduce(1, *), 1)
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), y = io.output(0, Float.self)
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * length * inner + i
                    var peak = -Float.infinity
                    for j in 0..<length { peak = max(peak, source[base + j * inner]) }
                    var sum: Float = 0
                    for j in 0..<length { let e = expf(source[base + j * inner] - peak); y[base + j * inner] = e; sum += e }
                    let scale = 1 / sum
                    for j in 0..<length { y[base + j * inner] *= scale }
                }
            }
        })
    }
}

/// Shape (with opset-15 start/end): known at plan time from the input's shape.
struct ShapeOperator: Operator {
    let start: Int
    let end: Int?

    init(_ node: NodeContext) throws {
        try node.allowOnly(["start", "end"])
        start = try node.int("start", default: 0)
        end = node.has("end") ? try node.int("end", default: 0) : nil
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "data")
        let rank = x.shape.count
        let clamp = { (value: Int) in min(max(value < 0 ? value + rank : value, 0), rank) }
        let from = clamp(start), to = clamp(end ?? rank)
        let dims = from < to ? Array(x.shape[from..<to]) : []
        return Prepared(outputs: [ValueSpec(HostTensor(shape: [dims.count], int64s: dims.map { Int64($0) }))], kernel: nil)
    }
}

/// Gather along `axis` with int64 or int32 indices (negative indices count from the end;
/// out-of-range indices yield zeros rather than reading outside the tensor).
struct GatherOperator: Operator {
    let axis: Int

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axis"])
        axis = try node.int("axis", default: 0)
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let data = try node.required(inputs, 0, "data"), indices = try node.required(inputs, 1, "indices")
        guard indices.dtype == .int64 || indices.dtype == .int32 else { throw node.invalid("indices must be int64 or int32, got \(indices.dtype)") }
        let axis = try node.axis(self.axis, rank: data.shape.count)
        let size = data.shape[axis]
        if let known = indices.value, let bad = known.integers.first(where: { $0 < -size || $0 >= size }) {
            throw node.invalid("index \(bad) is out of range for axis \(axis) of size \(size)")
        }
        let outShape = Array(data.shape.prefix(axis)) + indices.shape + Array(data.shape.dropFirst(axis + 1))
        let outer = data.shape.prefix(axis).reduce(1, *)
        let chunk = data.shape.dropFirst(axis + 1).reduce(1, *) * data.dtype.size
        let count = indices.shape.elementCount, wide = indices.dtype == .int64
        return Prepared(outputs: [ValueSpec(dtype: data.dtype, shape: outShape)], kernel: ClosureKernel { io in
            let source = io.inputs[0]!, y = io.outputs[0]!, index = io.inputs[1]!
            for o in 0..<outer {
                for i in 0..<count {
                    var k = wide ? Int(index.load(fromByteOffset: i * 8, as: Int64.self)) : Int(index.load(fromByteOffset: i * 4, as: Int32.self))
                    if k < 0 { k += size }
                    let destination = y + (o * count + i) * chunk
                    if k < 0 || k >= size { destination.initializeMemory(as: UInt8.self, repeating: 0, count: chunk); continue }
                    destination.copyMemory(from: source + (o * size + k) * chunk, byteCount: chunk)
                }
            }
        })
    }
}

/// Constant: `value` tensor or one of the value_float(s) / value_int(s) attributes.
struct ConstantOperator: Operator {
    let tensor: HostTensor

    init(_ node: NodeContext) throws {
        guard node.attributes.count == 1, let (key, attribute) = node.attributes.first else {
            throw node.invalid("Constant needs exactly one value attribute")
        }
        switch (key, attribute) {
        case ("value", .tensor(let value)): tensor = value
        case ("value_float", .float(let value)): tensor = HostTensor(shape: [], floats: [value])
        case ("value_floats", .floats(let values)): tensor = HostTensor(shape: [values.count], floats: values)
        case ("value_int", .int(let value)): tensor = HostTensor(shape: [], int64s: [Int64(value)])
        case ("value_ints", .ints(let values)): tensor = HostTensor(shape: [values.count], int64s: values.map { Int64($0) })
        default: throw node.unsupported("Constant attribute '\(key)'")
        }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        Prepared(outputs: [ValueSpec(tensor)], kernel: nil)
    }
}

/// ConstantOfShape: a tensor of the (known) input shape filled with `value` (default float 0).
struct ConstantOfShapeOperator: Operator {
    let fill: HostTensor

    init(_ node: NodeContext) throws {
        try node.allowOnly(["value"])
        switch node.attributes["value"] {
        case nil: fill = HostTensor(shape: [1], floats: [0])
        case .tensor(let value)? where value.count == 1: fill = value
        default: throw node.invalid("value must be a one-element tensor")
        }
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        guard let shapeTensor = try node.known(inputs, 0, "input") else { throw node.invalid("missing input") }
        let shape = shapeTensor.integers
        guard shape.allSatisfy({ $0 >= 0 }) else { throw node.invalid("negative dimension in \(shape)") }
        _ = try TensorSize.bytes(shape, fill.dtype, "the output of node '\(node.name)' (ConstantOfShape)")
        let result = HostTensor(dtype: fill.dtype, shape: shape)
        for i in 0..<result.count {
            (result.bytes + i * fill.dtype.size).copyMemory(from: fill.bytes, byteCount: fill.dtype.size)
        }
        return Prepared(outputs: [ValueSpec(result)], kernel: nil)
    }
}

/// Cast between float32, float64, int64, int32, int8, uint8 and bool.
struct CastOperator: Operator {
    let target: DType

    init(_ node: NodeContext) throws {
        try node.allowOnly(["to", "saturate", "round_mode"])
        let code = try node.int("to", default: 0)
        guard let target = DType(rawValue: code) else { throw node.unsupported("cast to \(DType.onnxName(code))") }
        self.target = target
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "input")
        let (source, target, count) = (x.dtype, self.target, x.shape.elementCount)
        return Prepared(outputs: [ValueSpec(dtype: target, shape: x.shape)], kernel: ClosureKernel { io in
            let from = io.inputs[0]!, to = io.outputs[0]!
            if source == target { to.copyMemory(from: from, byteCount: count * source.size); return }
            for i in 0..<count {
                let p = from + i * source.size, q = to + i * target.size
                switch source {
                case .float32, .float64:
                    let v = source == .float32 ? Double(p.load(as: Float.self)) : p.load(as: Double.self)
                    switch target {
                    case .float32: q.storeBytes(of: Float(v), as: Float.self)
                    case .float64: q.storeBytes(of: v, as: Double.self)
                    case .bool: q.storeBytes(of: v != 0 ? 1 : 0, as: UInt8.self)
                    default:
                        // NaN and out-of-range values have no defined result in ONNX; give 0 / saturate, never trap.
                        let t = v.isNaN ? 0 : min(max(v.rounded(.towardZero), -9.2e18), 9.2e18)
                        storeInteger(Int64(t), target, q)
                    }
                default:
                    let v: Int64
                    switch source {
                    case .int64: v = p.load(as: Int64.self)
                    case .int32: v = Int64(p.load(as: Int32.self))
                    case .int8: v = Int64(p.load(as: Int8.self))
                    default: v = Int64(p.load(as: UInt8.self))
                    }
                    switch target {
                    case .float32: q.storeBytes(of: Float(v), as: Float.self)
                    case .float64: q.storeBytes(of: Double(v), as: Double.self)
                    default: storeInteger(v, target, q)
                    }
                }
            }
        })
    }
}

/// Stores an integer converted (wrapping, as C casts do) to an integer or bool dtype.
private func storeInteger(_ value: Int64, _ dtype: DType, _ destination: UnsafeMutableRawPointer) {
    switch dtype {
    case .int64: destination.storeBytes(of: value, as: Int64.self)
    case .int32: destination.storeBytes(of: Int32(truncatingIfNeeded: value), as: Int32.self)
    case .int8: destination.storeBytes(of: Int8(truncatingIfNeeded: value), as: Int8.self)
    case .uint8: destination.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
    case .bool: destination.storeBytes(of: value != 0 ? 1 : 0, as: UInt8.self)
    case .float32: destination.storeBytes(of: Float(value), as: Float.self)
    case .float64: destination.storeBytes(of: Double(value), as: Double.self)
    }
}

/// ReduceMean over `axes` (attribute before opset 18, input from 18), keepdims,
/// noop_with_empty_axes.
struct ReduceMeanOperator: Operator {
    let axesAttribute: [Int]?
    let keepDims: Bool
    let noopWithEmptyAxes: Bool

    init(_ node: NodeContext) throws {
        try node.allowOnly(["axes", "keepdims", "noop_with_empty_axes"])
        axesAttribute = try node.ints("axes")
        keepDims = try node.int("keepdims", default: 1) != 0
        noopWithEmptyAxes = try node.int("noop_with_empty_axes", default: 0) != 0
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "data")
        try node.requireFloat(x, "data")
        let rank = x.shape.count
        var axes = try (axesAttribute ?? node.known(inputs, 1, "axes")?.integers ?? []).map { try node.axis($0, rank: rank) }
        if axes.isEmpty && noopWithEmptyAxes {
            let count = x.shape.elementCount
            return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
                io.outputs[0]!.copyMemory(from: io.inputs[0]!, byteCount: count * 4)
            })
        }
        if axes.isEmpty { axes = Array(0..<rank) }
        let reduced = Set(axes)
        let keptShape = (0..<rank).map { reduced.contains($0) ? 1 : x.shape[$0] }
        let outShape = keepDims ? keptShape : (0..<rank).filter { !reduced.contains($0) }.map { x.shape[$0] }
        // Walk the input in order; the output offset ignores reduced axes.
        let keptStrides = contiguousStrides(keptShape)
        let walk = StridedWalk(shape: x.shape, strides: [(0..<rank).map { reduced.contains($0) ? 0 : keptStrides[$0] }])
        let outCount = keptShape.elementCount
        let divisor = Float(x.shape.elementCount / max(outCount, 1))
        let inner = walk.innerCount, step = walk.strides[0].last!
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: outShape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), y = io.output(0, Float.self)
            y.update(repeating: 0, count: outCount)
            walk.forEachRow { o, offset, _ in
                if step == 0 {
                    var sum: Float = 0
                    for i in 0..<inner { sum += source[o + i] }
                    y[offset] += sum
                } else {
                    for i in 0..<inner { y[offset + i * step] += source[o + i] }
                }
            }
            for i in 0..<outCount { y[i] /= divisor }
        })
    }
}
