import TensorFlowProto

/// Translates the numeric part of a flattened TensorFlow graph, from given feeds to given
/// fetches, into the engine's `Graph` (ONNX operator semantics).
///
/// Layout: TF image graphs are NHWC; the engine's convolutions and pools are NCHW. A rank-4
/// tensor is kept in NCHW from the first layout-aware op on, and converted back only where an
/// op needs TF's order (Reshape, Transpose, a graph output...): a transpose at the edges of
/// the network, not one per layer. Element-wise ops follow their operands' layout; constant
/// operands are permuted at load (the planner folds their transposes).
struct TFTranslator {
    /// What the translator knows of one TF tensor.
    struct Value {
        /// Engine value name holding it.
        var name: String
        /// TF rank, when known.
        var rank: Int?
        /// Rank 4 stored as NCHW while TF sees NHWC.
        var nchw = false
        /// The value itself when it is a constant known now (Const, variables).
        var constant: HostTensor?
        /// For rank-1 integer tensors (shapes): their length when known.
        var length: Int?
    }

    let flat: TFFlatGraph
    /// The value of a variable node (VariableV2 / VarHandleOp), from the checkpoint.
    let variable: (TFNode) throws -> HostTensor

    private(set) var nodes: [Node] = []
    private(set) var constants: [String: HostTensor] = [:]
    private var values: [TFTensorRef: Value] = [:]
    private var toNCHW: [String: String] = [:]
    private var toNHWC: [String: String] = [:]
    private var counter = 0
    /// Ops that nothing here translates, with one node each, for the load error.
    private(set) var unsupported: [String: String] = [:]

    init(flat: TFFlatGraph, variable: @escaping (TFNode) throws -> HostTensor) {
        self.flat = flat
        self.variable = variable
    }

    /// Binds a TF tensor (a signature input, or the output of a stage run outside the
    /// engine such as image decoding) to an engine graph input.
    mutating func feed(_ ref: TFTensorRef, name: String, rank: Int?) {
        values[flat.resolved(ref)] = Value(name: name, rank: rank)
    }

    /// Translates everything `fetches` depend on; returns engine value names in TF layout.
    /// Throws one error naming every unsupported op when any is reached.
    mutating func translate(_ fetches: [TFTensorRef]) throws -> [Value] {
        let order = try topologicalOrder(fetches.map { flat.resolved($0) })
        var failed = Set<String>()
        for name in order {
            guard let node = flat.node(name) else { continue }
            if node.inputs.contains(where: { failed.contains(flat.resolved($0).node) }) {
                // Downstream of an op that failed: still name it if it has no translation.
                if !Self.translatedOps.contains(node.op), unsupported[node.op] == nil { unsupported[node.op] = node.name }
                failed.insert(name)
                continue
            }
            do {
                try translate(node)
            } catch is NoTranslation {
                if unsupported[node.op] == nil { unsupported[node.op] = node.name }
                failed.insert(name)
            }
        }
        if !unsupported.isEmpty {
            let list = unsupported.sorted { $0.key < $1.key }.map { "\($0.key) (e.g. '\($0.value)')" }.joined(separator: ", ")
            throw EngineError.invalidModel("the signature uses TensorFlow ops this server cannot run: \(list)")
        }
        return try fetches.map { ref in
            var value = try self.value(flat.resolved(ref), for: "a fetched output")
            value.name = nhwc(value)
            value.nchw = false
            return value
        }
    }

    // MARK: - Graph walking

    /// Nodes the fetches need, producers first (iterative: graphs are thousands deep).
    private func topologicalOrder(_ fetches: [TFTensorRef]) throws -> [String] {
        var order: [String] = []
        var state: [String: Bool] = [:]  // false: on the stack, true: done
        var stack: [(String, Bool)] = fetches.filter { values[$0] == nil }.map { ($0.node, false) }
        while let (name, expanded) = stack.popLast() {
            if expanded { state[name] = true; order.append(name); continue }
            if state[name] != nil { continue }
            guard let node = flat.node(name) else {
                throw EngineError.invalidModel("the graph has no node '\(name)'")
            }
            state[name] = false
            stack.append((name, true))
            for input in node.inputs {
                let source = flat.resolved(input)
                if values[source] != nil { continue }
                if state[source.node] == false, !Self.loopOps.contains(node.op) {
                    throw EngineError.invalidModel("the graph has a cycle through '\(source.node)'")
                }
                if state[source.node] == nil { stack.append((source.node, false)) }
            }
        }
        return order
    }

    static let loopOps: Set<String> = ["Merge", "NextIteration", "Enter", "Exit", "Switch", "LoopCond"]

    /// Every op `translate(_:)` handles (kept beside its switch).
    static let translatedOps: Set<String> = [
        "Const", "VariableV2", "Variable", "VarHandleOp", "Identity", "ReadVariableOp", "StopGradient", "Snapshot",
        "PreventGradient", "EnsureShape", "CheckNumerics", "IdentityN", "Placeholder", "PlaceholderWithDefault",
        "Conv2D", "DepthwiseConv2dNative", "BiasAdd", "BiasAddV1", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
        "Relu", "Sigmoid", "Tanh", "Elu", "Sqrt", "Reciprocal", "Inv", "Neg", "Exp", "Softplus", "Abs", "Rsqrt", "Square",
        "Relu6", "LeakyRelu", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum", "SquaredDifference",
        "AddN", "MaxPool", "AvgPool", "Mean", "Max", "Sum", "Min", "Prod", "ConcatV2", "Concat", "Pad", "PadV2", "MirrorPad",
        "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Softmax", "Reshape", "Squeeze", "ExpandDims",
        "Transpose", "Shape", "StridedSlice", "Slice", "Pack", "Cast",
    ]

    private func value(_ ref: TFTensorRef, for what: String) throws -> Value {
        guard let value = values[flat.resolved(ref)] else {
            throw EngineError.invalidModel("tensor \(ref) (\(what)) was not computed: its producer is missing or unsupported")
        }
        return value
    }

    private func input(_ node: TFNode, _ index: Int) throws -> Value {
        guard index < node.inputs.count else {
            throw EngineError.invalidNode(node: node.name, op: node.op, reason: "missing input \(index)")
        }
        return try value(node.inputs[index], for: "input \(index) of '\(node.name)'")
    }

    private mutating func set(_ node: TFNode, _ value: Value) {
        values[TFTensorRef(node: node.name, index: 0)] = value
    }

    private mutating func set(_ node: TFNode, output index: Int, _ value: Value) {
        values[TFTensorRef(node: node.name, index: index)] = value
    }

    // MARK: - Emitting engine nodes

    private mutating func fresh(_ hint: String) -> String {
        counter += 1
        return "\(hint)#\(counter)"
    }

    @discardableResult
    private mutating func emit(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:], hint: String, outputs: Int = 1) -> [String] {
        let names = (0..<outputs).map { _ in fresh(hint) }
        nodes.append(Node(name: fresh(hint + "/" + op), opType: op, domain: "", inputs: inputs, outputs: names, attributes: attributes))
        return names
    }

    private mutating func constant(_ tensor: HostTensor, hint: String) -> String {
        let name = fresh(hint + "/const")
        constants[name] = tensor
        return name
    }

    private mutating func int64s(_ values: [Int], hint: String) -> String {
        constant(HostTensor(shape: [values.count], int64s: values.map { Int64($0) }), hint: hint)
    }

    /// `value` in NCHW (rank 4).
    private mutating func nchw(_ value: Value) -> String {
        if value.nchw { return value.name }
        if let done = toNCHW[value.name] { return done }
        let name = emit("Transpose", [value.name], ["perm": .ints([0, 3, 1, 2])], hint: value.name)[0]
        toNCHW[value.name] = name
        toNHWC[name] = value.name
        return name
    }

    /// `value` in TF's own layout.
    private mutating func nhwc(_ value: Value) -> String {
        guard value.nchw else { return value.name }
        if let done = toNHWC[value.name] { return done }
        let name = emit("Transpose", [value.name], ["perm": .ints([0, 2, 3, 1])], hint: value.name)[0]
        toNHWC[value.name] = name
        toNCHW[name] = value.name
        return name
    }

    /// NHWC axis -> NCHW axis.
    private static let nchwAxis = [0, 2, 3, 1]

    // MARK: - Attributes

    private func attr(_ node: TFNode, _ key: String) -> Tensorflow_AttrValue.OneOf_Value? { node.attributes[key]?.value }

    private func ints(_ node: TFNode, _ key: String) throws -> [Int] {
        guard case .list(let list)? = attr(node, key) else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "attribute '\(key)' missing") }
        return list.i.map { Int($0) }
    }

    private func string(_ node: TFNode, _ key: String, default value: String? = nil) throws -> String {
        if case .s(let bytes)? = attr(node, key) { return String(decoding: bytes, as: UTF8.self) }
        if let value { return value }
        throw EngineError.invalidNode(node: node.name, op: node.op, reason: "attribute '\(key)' missing")
    }

    private func float(_ node: TFNode, _ key: String, default value: Float) -> Float {
        if case .f(let v)? = attr(node, key) { return v }
        return value
    }

    private func bool(_ node: TFNode, _ key: String) -> Bool {
        if case .b(let v)? = attr(node, key) { return v }
        return false
    }

    private func int(_ node: TFNode, _ key: String, default value: Int) -> Int {
        if case .i(let v)? = attr(node, key) { return Int(v) }
        return value
    }

    /// The rank a node declares in its `_output_shapes` hint, if any.
    private func declaredRank(_ node: TFNode, _ index: Int = 0) -> Int? {
        guard case .list(let list)? = attr(node, "_output_shapes"), index < list.shape.count else { return nil }
        return TFTypes.dims(list.shape[index])?.count
    }

    /// A constant input's integers (axes, paddings, sizes).
    private func constantIntegers(_ node: TFNode, _ index: Int, _ label: String) throws -> [Int] {
        guard let value = try input(node, index).constant, value.dtype != .float32 else {
            throw EngineError.unsupported(node: node.name, op: node.op, reason: "\(label) must be a constant")
        }
        return value.integers
    }

    private func unsupportedAttribute(_ node: TFNode, _ reason: String) -> EngineError {
        .unsupported(node: node.name, op: node.op, reason: reason)
    }

    /// An op with no translation: collected, so the load error lists every one.
    private struct NoTranslation: Error {}

    /// Checks the TF data_format attribute; returns true for NHWC.
    private func channelsLast(_ node: TFNode) throws -> Bool {
        let format = try string(node, "data_format", default: "NHWC")
        switch format {
        case "NHWC": return true
        case "NCHW": return false
        default: throw unsupportedAttribute(node, "data_format \(format)")
        }
    }

    // MARK: - Ops

    private mutating func translate(_ node: TFNode) throws {
        let hint = node.name
        switch node.op {
        case "Const":
            guard case .tensor(let proto)? = attr(node, "value") else {
                throw EngineError.invalidModel("Const '\(node.name)' has no value")
            }
            guard proto.dtype != .dtString else {
                throw EngineError.unsupported(node: node.name, op: "Const", reason: "string constants in the numeric graph")
            }
            let tensor = try TFTypes.decode(proto, what: "Const '\(node.name)'")
            set(node, Value(name: constant(tensor, hint: hint), rank: tensor.shape.count, constant: tensor,
                            length: tensor.shape.count == 1 ? tensor.shape[0] : nil))
        case "VariableV2", "Variable", "VarHandleOp":
            var tensor = try variable(node)
            if tensor.dtype == .int32 {
                // TF's int32 arithmetic runs as int64 here (see TFTypes).
                let wide = HostTensor(dtype: .int64, shape: tensor.shape)
                for i in 0..<tensor.count { wide.pointer(as: Int64.self)[i] = Int64(tensor.pointer(as: Int32.self)[i]) }
                tensor = wide
            }
            set(node, Value(name: constant(tensor, hint: hint), rank: tensor.shape.count, constant: tensor))
        case "Identity", "ReadVariableOp", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape", "CheckNumerics":
            set(node, try input(node, 0))
        case "IdentityN":
            for index in node.inputs.indices { set(node, output: index, try input(node, index)) }
        case "Placeholder", "PlaceholderWithDefault":
            if node.op == "PlaceholderWithDefault" { set(node, try input(node, 0)); return }
            throw EngineError.invalidModel("placeholder '\(node.name)' is needed but the signature does not feed it")
        case "Conv2D", "DepthwiseConv2dNative":
            try convolution(node)
        case "BiasAdd", "BiasAddV1":
            let x = try input(node, 0), bias = try input(node, 1)
            let last = try channelsLast(node)
            if x.rank == 4 && last {
                let shaped = emit("Reshape", [bias.name, int64s([-1, 1, 1], hint: hint)], hint: hint)[0]
                set(node, Value(name: emit("Add", [nchw(x), shaped], hint: hint)[0], rank: 4, nchw: true))
            } else if x.rank == 4 {
                let shaped = emit("Reshape", [bias.name, int64s([-1, 1, 1], hint: hint)], hint: hint)[0]
                set(node, Value(name: emit("Add", [x.name, shaped], hint: hint)[0], rank: 4))
            } else {
                set(node, Value(name: emit("Add", [nhwc(x), bias.name], hint: hint)[0], rank: x.rank))
            }
        case "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3":
            if bool(node, "is_training") { throw unsupportedAttribute(node, "is_training=true") }
            let x = try input(node, 0)
            guard x.rank == 4 else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "input of rank \(x.rank.map(String.init) ?? "unknown")") }
            let operands = try (1...4).map { try input(node, $0).name }
            let epsilon = float(node, "epsilon", default: 0.0001)
            let last = try channelsLast(node)
            let out = emit("BatchNormalization", [last ? nchw(x) : x.name] + operands, ["epsilon": .float(epsilon)], hint: hint)[0]
            set(node, Value(name: out, rank: 4, nchw: last))
        case "Relu", "Sigmoid", "Tanh", "Elu", "Sqrt", "Reciprocal", "Inv", "Neg", "Exp", "Softplus", "Abs":
            let x = try input(node, 0)
            let op = ["Inv": "Reciprocal"][node.op] ?? node.op
            set(node, Value(name: emit(op, [x.name], hint: hint)[0], rank: x.rank, nchw: x.nchw))
        case "Rsqrt":
            let x = try input(node, 0)
            let root = emit("Sqrt", [x.name], hint: hint)[0]
            set(node, Value(name: emit("Reciprocal", [root], hint: hint)[0], rank: x.rank, nchw: x.nchw))
        case "Square":
            let x = try input(node, 0)
            set(node, Value(name: emit("Mul", [x.name, x.name], hint: hint)[0], rank: x.rank, nchw: x.nchw))
        case "Relu6":
            let x = try input(node, 0)
            set(node, Value(name: emit("Clip", [x.name], ["min": .float(0), "max": .float(6)], hint: hint)[0], rank: x.rank, nchw: x.nchw))
        case "LeakyRelu":
            let x = try input(node, 0)
            set(node, Value(name: emit("LeakyRelu", [x.name], ["alpha": .float(float(node, "alpha", default: 0.2))], hint: hint)[0], rank: x.rank, nchw: x.nchw))
        case "Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum", "SquaredDifference":
            try binary(node)
        case "AddN":
            let operands = try node.inputs.indices.map { try input(node, $0) }
            let layoutNCHW = operands.contains { $0.nchw } && operands.allSatisfy { $0.rank == 4 }
            let names = operands.map { layoutNCHW ? nchw($0) : nhwc($0) }
            set(node, Value(name: emit("Sum", names, hint: hint)[0], rank: operands.first?.rank, nchw: layoutNCHW))
        case "MaxPool", "AvgPool":
            try pool(node)
        case "Mean", "Max", "Sum", "Min", "Prod":
            try reduction(node)
        case "ConcatV2", "Concat":
            try concat(node)
        case "Pad", "PadV2", "MirrorPad":
            try pad(node)
        case "MatMul":
            let a = try input(node, 0), b = try input(node, 1)
            guard a.rank == 2, b.rank == 2 else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "operands of rank other than 2") }
            let transposed = bool(node, "transpose_a") || bool(node, "transpose_b")
            let out = transposed
                ? emit("Gemm", [nhwc(a), nhwc(b)], ["transA": .int(bool(node, "transpose_a") ? 1 : 0),
                                                     "transB": .int(bool(node, "transpose_b") ? 1 : 0)], hint: hint)[0]
                : emit("MatMul", [nhwc(a), nhwc(b)], hint: hint)[0]
            set(node, Value(name: out, rank: 2))
        case "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3":
            var a = try input(node, 0), b = try input(node, 1)
            guard let ra = a.rank, let rb = b.rank, ra >= 2, rb >= 2 else {
                throw EngineError.unsupported(node: node.name, op: node.op, reason: "operands of unknown rank")
            }
            a.name = nhwc(a); b.name = nhwc(b)
            func swapped(_ name: String, rank: Int) -> String {
                var perm = Array(0..<rank)
                perm.swapAt(rank - 1, rank - 2)
                return emit("Transpose", [name], ["perm": .ints(perm)], hint: hint)[0]
            }
            let left = bool(node, "adj_x") ? swapped(a.name, rank: ra) : a.name
            let right = bool(node, "adj_y") ? swapped(b.name, rank: rb) : b.name
            set(node, Value(name: emit("MatMul", [left, right], hint: hint)[0], rank: max(ra, rb)))
        case "Softmax":
            let x = try input(node, 0)
            let axis = x.nchw ? 1 : -1
            set(node, Value(name: emit("Softmax", [x.name], ["axis": .int(axis)], hint: hint)[0], rank: x.rank, nchw: x.nchw))
        case "Reshape":
            let x = try input(node, 0), shape = try input(node, 1)
            let length = shape.length ?? shape.constant?.count ?? declaredRank(node)
            set(node, Value(name: emit("Reshape", [nhwc(x), shape.name], hint: hint)[0], rank: length,
                            constant: nil, length: length == 1 ? shape.constant?.integers.first : nil))
        case "Squeeze":
            try squeeze(node)
        case "ExpandDims":
            let x = try input(node, 0)
            guard let rank = x.rank else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "input of unknown rank") }
            var axis = try constantIntegers(node, 1, "axis").first ?? 0
            if axis < 0 { axis += rank + 1 }
            let out = emit("Unsqueeze", [nhwc(x)], ["axes": .ints([axis])], hint: hint)[0]
            set(node, Value(name: out, rank: rank + 1, length: rank == 0 ? 1 : nil))
        case "Transpose":
            let x = try input(node, 0)
            let perm = try constantIntegers(node, 1, "perm")
            set(node, Value(name: emit("Transpose", [nhwc(x)], ["perm": .ints(perm)], hint: hint)[0], rank: perm.count))
        case "Shape":
            let x = try input(node, 0)
            guard let rank = x.rank else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "input of unknown rank") }
            var out = emit("Shape", [x.name], hint: hint)[0]
            if x.nchw { out = emit("Gather", [out, int64s([0, 2, 3, 1], hint: hint)], ["axis": .int(0)], hint: hint)[0] }
            set(node, Value(name: out, rank: 1, length: rank))
        case "StridedSlice":
            try stridedSlice(node)
        case "Slice":
            let x = try input(node, 0)
            let begin = try constantIntegers(node, 1, "begin"), size = try constantIntegers(node, 2, "size")
            guard begin.count == size.count else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "begin and size differ in length") }
            // size -1 (or any overflowing end) means "to the end".
            let ends = zip(begin, size).map { b, s in
                let (end, overflow) = b.addingReportingOverflow(s)
                return s < 0 || overflow ? Int(Int64.max) : end
            }
            let out = emit("Slice", [nhwc(x), int64s(begin, hint: hint), int64s(ends, hint: hint), int64s(Array(0..<begin.count), hint: hint)], hint: hint)[0]
            set(node, Value(name: out, rank: x.rank))
        case "Pack":
            let operands = try node.inputs.indices.map { try input(node, $0) }
            guard let rank = operands.first?.rank else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "operands of unknown rank") }
            var axis = int(node, "axis", default: 0)
            if axis < 0 { axis += rank + 1 }
            let expanded = operands.map { emit("Unsqueeze", [nhwc($0)], ["axes": .ints([axis])], hint: hint)[0] }
            set(node, Value(name: emit("Concat", expanded, ["axis": .int(axis)], hint: hint)[0], rank: rank + 1,
                            length: rank == 0 ? operands.count : nil))
        case "Cast":
            let x = try input(node, 0)
            guard case .type(let target)? = attr(node, "DstT"), let dtype = TFTypes.engineType(target) else {
                throw EngineError.unsupported(node: node.name, op: node.op, reason: "cast to an unsupported type")
            }
            set(node, Value(name: emit("Cast", [x.name], ["to": .int(dtype.rawValue)], hint: hint)[0], rank: x.rank, nchw: x.nchw, length: x.length))
        default:
            throw NoTranslation()
        }
    }

    private mutating func binary(_ node: TFNode) throws {
        let hint = node.name
        let a = try input(node, 0), b = try input(node, 1)
        let op: String
        switch node.op {
        case "Add", "AddV2": op = "Add"
        case "Sub": op = "Sub"
        case "Mul": op = "Mul"
        case "RealDiv", "Div": op = "Div"
        case "Maximum": op = "Max"
        case "Minimum": op = "Min"
        default: op = "Sub"  // SquaredDifference: (a - b)^2 below
        }
        let rank = max(a.rank ?? 0, b.rank ?? 0)
        var left = a.name, right = b.name, layoutNCHW = false
        if a.nchw || b.nchw {
            // One side is NCHW: the other follows (lower ranks broadcast against NHWC's
            // trailing axes, so they are first made rank 4, then permuted).
            guard let ra = a.rank, let rb = b.rank, ra <= 4, rb <= 4 else {
                throw EngineError.unsupported(node: node.name, op: node.op, reason: "an operand of unknown rank or rank above 4 beside a rank-4 image tensor")
            }
            left = aligned(a, hint: hint)
            right = aligned(b, hint: hint)
            layoutNCHW = true
        }
        var out = emit(op, [left, right], hint: hint)[0]
        if node.op == "SquaredDifference" { out = emit("Mul", [out, out], hint: hint)[0] }
        set(node, Value(name: out, rank: a.rank == nil || b.rank == nil ? nil : rank, nchw: layoutNCHW))
    }

    /// An element-wise operand in NCHW: rank 4 values permuted, lower ranks unsqueezed to
    /// rank 4 first (NHWC broadcasting aligns trailing axes). `value.rank` is at most 4.
    private mutating func aligned(_ value: Value, hint: String) -> String {
        if value.nchw { return value.name }
        let rank = value.rank ?? 4
        if rank == 4 { return nchw(value) }
        if rank == 0 { return value.name }
        let padded = emit("Unsqueeze", [value.name], ["axes": .ints(Array(0..<(4 - rank)))], hint: hint)[0]
        return nchw(Value(name: padded, rank: 4))
    }

    private mutating func convolution(_ node: TFNode) throws {
        let hint = node.name
        let x = try input(node, 0), filter = try input(node, 1)
        guard x.rank == 4 || x.rank == nil else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "input of rank \(x.rank!)") }
        let last = try channelsLast(node)
        let (h, w) = last ? (1, 2) : (2, 3)
        let strides = try ints(node, "strides")
        guard strides.count == 4 else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "strides must have 4 values") }
        var dilations = (try? ints(node, "dilations")) ?? [1, 1, 1, 1]
        if dilations.isEmpty { dilations = [1, 1, 1, 1] }
        guard dilations.count == 4 else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "dilations must have 4 values") }
        var attributes: [String: Attribute] = ["strides": .ints([strides[h], strides[w]]), "dilations": .ints([dilations[h], dilations[w]])]
        switch try string(node, "padding") {
        case "SAME": attributes["auto_pad"] = .string("SAME_UPPER")
        case "VALID": attributes["auto_pad"] = .string("VALID")
        case "EXPLICIT":
            let pads = try ints(node, "explicit_paddings")
            guard pads.count == 8 else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "explicit_paddings must have 8 values") }
            attributes["pads"] = .ints([pads[2 * h], pads[2 * w], pads[2 * h + 1], pads[2 * w + 1]])
        case let other: throw unsupportedAttribute(node, "padding \(other)")
        }
        let weights: String
        if node.op == "Conv2D" {
            // HWIO -> OIHW.
            weights = emit("Transpose", [filter.name], ["perm": .ints([3, 2, 0, 1])], hint: hint)[0]
        } else {
            // Depthwise [H, W, C, M] -> [C*M, 1, H, W], one group per input channel.
            guard let shape = filter.constant?.shape, shape.count == 4 else {
                throw EngineError.unsupported(node: node.name, op: node.op, reason: "the filter must be a constant of rank 4")
            }
            let flattened = emit("Reshape", [filter.name, int64s([shape[0], shape[1], 1, shape[2] * shape[3]], hint: hint)], hint: hint)[0]
            weights = emit("Transpose", [flattened], ["perm": .ints([3, 2, 0, 1])], hint: hint)[0]
            attributes["group"] = .int(shape[2])
        }
        let out = emit("Conv", [last ? nchw(x) : x.name, weights], attributes, hint: hint)[0]
        set(node, Value(name: out, rank: 4, nchw: last))
    }

    private mutating func pool(_ node: TFNode) throws {
        let x = try input(node, 0)
        guard x.rank == 4 || x.rank == nil else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "input of rank \(x.rank!)") }
        let last = try channelsLast(node)
        let (h, w) = last ? (1, 2) : (2, 3)
        let size = try ints(node, "ksize"), strides = try ints(node, "strides")
        guard size.count == 4, strides.count == 4 else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "ksize and strides must have 4 values") }
        guard size[0] == 1, size[last ? 3 : 1] == 1 else { throw unsupportedAttribute(node, "pooling across the batch or channel axis") }
        var attributes: [String: Attribute] = ["kernel_shape": .ints([size[h], size[w]]), "strides": .ints([strides[h], strides[w]])]
        switch try string(node, "padding") {
        case "SAME": attributes["auto_pad"] = .string("SAME_UPPER")
        case "VALID": attributes["auto_pad"] = .string("VALID")
        case let other: throw unsupportedAttribute(node, "padding \(other)")
        }
        let out = emit(node.op == "MaxPool" ? "MaxPool" : "AveragePool", [last ? nchw(x) : x.name], attributes, hint: node.name)[0]
        set(node, Value(name: out, rank: 4, nchw: last))
    }

    private mutating func reduction(_ node: TFNode) throws {
        let x = try input(node, 0)
        guard node.op == "Mean" else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "only Mean is implemented among reductions") }
        guard let rank = x.rank else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "input of unknown rank") }
        let axes = try constantIntegers(node, 1, "reduction_indices").map { $0 < 0 ? $0 + rank : $0 }
        guard axes.allSatisfy({ (0..<rank).contains($0) }) else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "axes \(axes) out of range") }
        let keep = bool(node, "keep_dims")
        let outRank = keep ? rank : rank - Set(axes).count
        if x.nchw {
            let mapped = axes.map { Self.nchwAxis[$0] }
            // Dropping axes keeps the order the same in both layouts only if what remains is
            // in the same relative order: true when H and W (or only they) are dropped.
            let keptNHWC = (0..<4).filter { !axes.contains($0) }
            let keptNCHW = [0, 3, 1, 2].filter { !axes.contains($0) }
            if keep || keptNHWC == keptNCHW {
                let out = emit("ReduceMean", [x.name], ["axes": .ints(mapped), "keepdims": .int(keep ? 1 : 0)], hint: node.name)[0]
                set(node, Value(name: out, rank: outRank, nchw: keep))
                return
            }
        }
        let out = emit("ReduceMean", [nhwc(x)], ["axes": .ints(axes), "keepdims": .int(keep ? 1 : 0)], hint: node.name)[0]
        set(node, Value(name: out, rank: outRank))
    }

    private mutating func concat(_ node: TFNode) throws {
        let count = node.op == "ConcatV2" ? node.inputs.count - 1 : node.inputs.count - 1
        guard count >= 1 else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "nothing to concatenate") }
        let axisIndex = node.op == "ConcatV2" ? node.inputs.count - 1 : 0
        let operandIndices = node.op == "ConcatV2" ? Array(0..<count) : Array(1...count)
        let operands = try operandIndices.map { try input(node, $0) }
        guard let rank = operands.compactMap(\.rank).first else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "operands of unknown rank") }
        var axis = try constantIntegers(node, axisIndex, "axis").first ?? 0
        if axis < 0 { axis += rank }
        guard (0..<rank).contains(axis) else {
            throw EngineError.invalidNode(node: node.name, op: node.op, reason: "axis \(axis) is out of range for operands of rank \(rank)")
        }
        let lengths = operands.map(\.length)
        if rank == 4 && operands.contains(where: \.nchw) {
            let out = emit("Concat", operands.map { nchw($0) }, ["axis": .int(Self.nchwAxis[axis])], hint: node.name)[0]
            set(node, Value(name: out, rank: 4, nchw: true))
        } else {
            let out = emit("Concat", operands.map { nhwc($0) }, ["axis": .int(axis)], hint: node.name)[0]
            // Lengths come from constants: a sum that overflows is no length.
            let total = rank == 1 && lengths.allSatisfy({ $0 != nil })
                ? lengths.reduce(Optional(0)) { sum, length in sum.flatMap { s in
                    let (t, overflow) = s.addingReportingOverflow(length!)
                    return overflow ? nil : t } }
                : nil
            set(node, Value(name: out, rank: rank, length: total))
        }
    }

    private mutating func pad(_ node: TFNode) throws {
        let hint = node.name
        var x = try input(node, 0)
        let paddings = try constantIntegers(node, 1, "paddings")
        guard let rank = x.rank, paddings.count == 2 * rank else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "paddings do not match the input's rank") }
        var mode = "constant"
        if node.op == "MirrorPad" {
            let tfMode = try string(node, "mode")
            guard tfMode == "REFLECT" else { throw unsupportedAttribute(node, "MirrorPad mode \(tfMode)") }
            mode = "reflect"
        }
        var inputs: [String]
        var begins = (0..<rank).map { paddings[2 * $0] }, ends = (0..<rank).map { paddings[2 * $0 + 1] }
        // A rank-4 pad goes to NCHW first: the planner merges a zero pad into the Conv or
        // pool that reads it, which it can only do in the conv's layout.
        if rank == 4 && !x.nchw && mode == "constant" && node.op != "PadV2" {
            x = Value(name: nchw(x), rank: 4, nchw: true)
        }
        if x.nchw {
            begins = [begins[0], begins[3], begins[1], begins[2]]
            ends = [ends[0], ends[3], ends[1], ends[2]]
            inputs = [x.name]
        } else {
            inputs = [x.name]
        }
        inputs.append(int64s(begins + ends, hint: hint))
        if node.op == "PadV2" { inputs.append(try input(node, 2).name) }
        let out = emit("Pad", inputs, ["mode": .string(mode)], hint: hint)[0]
        set(node, Value(name: out, rank: rank, nchw: x.nchw))
    }

    private mutating func squeeze(_ node: TFNode) throws {
        let x = try input(node, 0)
        var axes = (try? ints(node, "squeeze_dims")) ?? []
        if axes.isEmpty, case .list(let list)? = attr(node, "axis") { axes = list.i.map { Int($0) } }
        guard let rank = x.rank else { throw EngineError.unsupported(node: node.name, op: node.op, reason: "input of unknown rank") }
        guard !axes.isEmpty else {
            guard let declared = declaredRank(node) else {
                throw EngineError.unsupported(node: node.name, op: node.op, reason: "squeezing every size-1 axis of a tensor whose shape is not declared")
            }
            set(node, Value(name: emit("Squeeze", [nhwc(x)], hint: node.name)[0], rank: declared))
            return
        }
        axes = axes.map { $0 < 0 ? $0 + rank : $0 }
        guard axes.allSatisfy({ (0..<rank).contains($0) }) else {
            throw EngineError.invalidNode(node: node.name, op: node.op, reason: "squeeze axes \(axes) are out of range for rank \(rank)")
        }
        if x.nchw {
            let keptNHWC = (0..<4).filter { !axes.contains($0) }
            let keptNCHW = [0, 3, 1, 2].filter { !axes.contains($0) }
            if keptNHWC == keptNCHW {
                let out = emit("Squeeze", [x.name], ["axes": .ints(axes.map { Self.nchwAxis[$0] })], hint: node.name)[0]
                set(node, Value(name: out, rank: rank - Set(axes).count))
                return
            }
        }
        set(node, Value(name: emit("Squeeze", [nhwc(x)], ["axes": .ints(axes)], hint: node.name)[0], rank: rank - Set(axes).count))
    }

    private mutating func stridedSlice(_ node: TFNode) throws {
        let hint = node.name
        let x = try input(node, 0)
        let begin = try constantIntegers(node, 1, "begin"), end = try constantIntegers(node, 2, "end")
        let strides = try constantIntegers(node, 3, "strides")
        guard begin.count == end.count, end.count == strides.count else {
            throw EngineError.invalidNode(node: node.name, op: node.op, reason: "begin, end and strides differ in length")
        }
        guard int(node, "ellipsis_mask", default: 0) == 0, int(node, "new_axis_mask", default: 0) == 0 else {
            throw unsupportedAttribute(node, "ellipsis or new-axis masks")
        }
        let beginMask = int(node, "begin_mask", default: 0), endMask = int(node, "end_mask", default: 0)
        let shrinkMask = int(node, "shrink_axis_mask", default: 0)
        var starts: [Int] = [], ends: [Int] = [], squeezed: [Int] = []
        let big = Int(Int64.max), small = Int(Int64.min)
        for axis in 0..<begin.count {
            let step = strides[axis]
            guard step != 0 else { throw EngineError.invalidNode(node: node.name, op: node.op, reason: "stride 0") }
            if shrinkMask & (1 << axis) != 0 {
                starts.append(begin[axis])
                ends.append(begin[axis] == -1 || begin[axis] == big ? big : begin[axis] + 1)
                squeezed.append(axis)
                continue
            }
            starts.append(beginMask & (1 << axis) != 0 ? (step > 0 ? 0 : big) : begin[axis])
            ends.append(endMask & (1 << axis) != 0 ? (step > 0 ? big : small) : end[axis])
        }
        var out = emit("Slice", [nhwc(x), int64s(starts, hint: hint), int64s(ends, hint: hint),
                                 int64s(Array(0..<begin.count), hint: hint), int64s(strides, hint: hint)], hint: hint)[0]
        let rank = x.rank.map { $0 - squeezed.count }
        if !squeezed.isEmpty { out = emit("Squeeze", [out], ["axes": .ints(squeezed)], hint: hint)[0] }
        var length: Int?
        if rank == 1, x.rank == 1, let total = x.length, squeezed.isEmpty, strides[0] == 1 {
            func clamp(_ v: Int) -> Int { v < 0 ? max(v + total, 0) : min(v, total) }
            length = max(clamp(ends[0] == big ? total : ends[0]) - clamp(starts[0]), 0)
        }
        set(node, Value(name: out, rank: rank, length: length))
    }
}
