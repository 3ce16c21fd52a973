import Glibc

/// Sqrt, Reciprocal, Neg, Exp, Abs, Softplus, Elu: float32 pointwise functions that
/// TensorFlow graphs use (mostly on constants, where they are folded at load).
struct FloatUnaryOperator: Operator {
    enum Function: Sendable { case sqrt, reciprocal, neg, exp, abs, softplus, elu(Float) }
    let function: Function

    init(_ node: NodeContext) throws {
        switch node.opType {
        case "Sqrt": function = .sqrt
        case "Reciprocal": function = .reciprocal
        case "Neg": function = .neg
        case "Exp": function = .exp
        case "Abs": function = .abs
        case "Softplus": function = .softplus
        case "Elu":
            try node.allowOnly(["alpha"])
            function = .elu(try node.float("alpha", default: 1))
            return
        default: throw node.unsupported("operator \(node.opType)")
        }
        try node.allowOnly([])
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        let x = try node.required(inputs, 0, "X")
        try node.requireFloat(x, "X")
        let count = x.shape.elementCount
        let function = function
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: x.shape)], kernel: ClosureKernel { io in
            let source = io.input(0, Float.self), y = io.output(0, Float.self)
            switch function {
            case .sqrt: for i in 0..<count { y[i] = source[i].squareRoot() }
            case .reciprocal: for i in 0..<count { y[i] = 1 / source[i] }
            case .neg: for i in 0..<count { y[i] = -source[i] }
            case .exp: for i in 0..<count { y[i] = expf(source[i]) }
            case .abs: for i in 0..<count { y[i] = Swift.abs(source[i]) }
            case .softplus: for i in 0..<count { y[i] = source[i] > 20 ? source[i] : log1pf(expf(source[i])) }
            case .elu(let alpha): for i in 0..<count { y[i] = source[i] > 0 ? source[i] : alpha * (expf(source[i]) - 1) }
            }
        })
    }
}

/// Max and Min of two float32 tensors with numpy broadcasting (NaN propagates, as in TF).
struct MinMaxOperator: Operator {
    let isMax: Bool

    init(_ node: NodeContext) throws {
        try node.allowOnly([])
        isMax = node.opType == "Max"
    }

    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared {
        guard inputs.count == 2 else { throw node.unsupported("\(node.opType) of \(inputs.count) inputs (2 are implemented)") }
        let a = try node.required(inputs, 0, "A"), b = try node.required(inputs, 1, "B")
        try node.requireFloat(a, "A")
        try node.requireFloat(b, "B")
        guard let shape = broadcastShapes(a.shape, b.shape) else {
            throw node.invalid("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let aStrides = broadcastStrides(a.shape, to: shape), bStrides = broadcastStrides(b.shape, to: shape)
        let count = shape.elementCount, rank = shape.count, isMax = isMax
        return Prepared(outputs: [ValueSpec(dtype: .float32, shape: shape)], kernel: ClosureKernel { io in
            let x = io.input(0, Float.self), z = io.input(1, Float.self), y = io.output(0, Float.self)
            var index = [Int](repeating: 0, count: rank)
            var offsetA = 0, offsetB = 0
            for i in 0..<count {
                let p = x[offsetA], q = z[offsetB]
                y[i] = p.isNaN || q.isNaN ? .nan : (isMax ? Swift.max(p, q) : Swift.min(p, q))
                var d = rank - 1
                while d >= 0 {
                    index[d] += 1
                    offsetA += aStrides[d]
                    offsetB += bStrides[d]
                    if index[d] < shape[d] { break }
                    offsetA -= aStrides[d] * shape[d]
                    offsetB -= bStrides[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        })
    }
}
