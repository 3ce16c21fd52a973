/// Load-time rewrites on the node list, applied after constant folding:
/// BatchNormalization and per-channel Mul/Add/Sub/Div by constants folded into the Conv
/// before them, zero Pad merged into the pads of the Conv/AveragePool after it, a residual
/// Add fused into the Conv that produces one of its operands, activations (SiLU included)
/// fused into Conv/Gemm epilogues, and nodes nothing reads removed. Each rewrite keeps the
/// graph's outputs numerically equal (up to float rounding). Nothing here looks at shapes
/// (they are known only when planning), so every rewrite is decided from constants and
/// attributes alone.
enum GraphOptimizer {
    /// Attribute names the engine adds to fused nodes; never present in ONNX files.
    static let fusedActivationKey = "__fused_activation"
    static let fusedAlphaKey = "__fused_alpha"
    static let fusedBetaKey = "__fused_beta"
    /// On a Conv: input 3 is a tensor added to the result (before the activation).
    static let fusedResidualKey = "__fused_residual"

    static func optimize(_ graph: inout Graph) {
        foldBatchNormalization(&graph)
        // Keras batch norm arrives as Mul then Add (and a frontend may add more): fold until
        // nothing changes.
        while foldConvAffine(&graph) {}
        mergePads(&graph)
        fuseResidualAdds(&graph)
        fuseActivations(&graph)
        removeDeadNodes(&graph)
    }

    /// Number of readers of each value (graph outputs count as a reader).
    static func consumerCounts(_ graph: Graph) -> [String: Int] {
        var counts: [String: Int] = [:]
        for node in graph.nodes { for input in node.inputs where !input.isEmpty { counts[input, default: 0] += 1 } }
        for output in graph.outputs { counts[output.name, default: 0] += 1 }
        return counts
    }

    /// Index of the node producing each value.
    static func producers(_ graph: Graph) -> [String: Int] {
        var result: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() { for output in node.outputs { result[output] = index } }
        return result
    }

    /// Conv(X, W, B) -> BatchNormalization(scale, bias, mean, var) with constant parameters
    /// becomes Conv(X, W * s, (B - mean) * s + bias) with s = scale / sqrt(var + epsilon).
    static func foldBatchNormalization(_ graph: inout Graph) {
        let consumers = consumerCounts(graph), producerIndex = producers(graph)
        var removed = Set<Int>()
        for (bnIndex, bn) in graph.nodes.enumerated() where bn.opType == "BatchNormalization" && bn.domain.isEmpty {
            guard bn.inputs.count == 5, bn.outputs.count == 1 || bn.outputs.dropFirst().allSatisfy({ $0.isEmpty }),
                  (try? trainingMode(bn)) == false,
                  let convIndex = producerIndex[bn.inputs[0]], !removed.contains(convIndex),
                  consumers[bn.inputs[0]] == 1 else { continue }
            let conv = graph.nodes[convIndex]
            guard conv.opType == "Conv", conv.domain.isEmpty, conv.outputs.count == 1,
                  conv.attributes[fusedActivationKey] == nil,
                  conv.inputs.count >= 2, let weight = graph.constants[conv.inputs[1]], weight.dtype == .float32, weight.shape.count >= 3,
                  let scale = graph.constants[bn.inputs[1]], let bias = graph.constants[bn.inputs[2]],
                  let mean = graph.constants[bn.inputs[3]], let variance = graph.constants[bn.inputs[4]]
            else { continue }
            let channels = weight.shape[0]
            guard channels > 0, [scale, bias, mean, variance].allSatisfy({ $0.dtype == .float32 && $0.count == channels }) else { continue }
            var convBias: HostTensor?
            if conv.inputs.count > 2, !conv.inputs[2].isEmpty {
                guard let b = graph.constants[conv.inputs[2]], b.dtype == .float32, b.count == channels else { continue }
                convBias = b
            }
            let epsilon: Float
            if case .float(let e)? = bn.attributes["epsilon"] { epsilon = e } else { epsilon = 1e-5 }
            let newWeight = HostTensor(dtype: .float32, shape: weight.shape)
            let newBias = HostTensor(dtype: .float32, shape: [channels])
            let perChannel = weight.count / channels
            let w = weight.pointer(as: Float.self), nw = newWeight.pointer(as: Float.self)
            for c in 0..<channels {
                let s = scale.pointer(as: Float.self)[c] / (variance.pointer(as: Float.self)[c] + epsilon).squareRoot()
                for k in 0..<perChannel { nw[c * perChannel + k] = w[c * perChannel + k] * s }
                let b0 = convBias?.pointer(as: Float.self)[c] ?? 0
                newBias.pointer(as: Float.self)[c] = (b0 - mean.pointer(as: Float.self)[c]) * s + bias.pointer(as: Float.self)[c]
            }
            let weightName = "\(conv.name)__bn_folded_W", biasName = "\(conv.name)__bn_folded_B"
            graph.constants[weightName] = newWeight
            graph.constants[biasName] = newBias
            var fused = conv
            fused.inputs = [conv.inputs[0], weightName, biasName]
            fused.outputs = [bn.outputs[0]]
            graph.nodes[convIndex] = fused
            removed.insert(bnIndex)
        }
        graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }

    /// The per-output-channel values of a constant that broadcasts against a Conv output of
    /// rank `rank` with `channels` channels only along the channel axis: shapes [M, 1, 1],
    /// [1, M, 1, 1], [1], [] and the like. One value (a scalar) or `channels` values; nil for
    /// any other constant.
    static func perChannel(_ tensor: HostTensor, rank: Int, channels: Int) -> [Float]? {
        guard tensor.dtype == .float32, tensor.shape.count <= rank else { return nil }
        let offset = rank - tensor.shape.count
        for (d, size) in tensor.shape.enumerated() where size != 1 {
            guard d + offset == 1, size == channels else { return nil }
        }
        let values = Array(UnsafeBufferPointer(start: tensor.pointer(as: Float.self), count: tensor.count))
        return values.count == 1 ? Array(repeating: values[0], count: channels) : values
    }

    /// Conv(X, W, B) followed by Mul, Add, Sub or Div with a per-channel constant (when the
    /// Conv's output has no other reader): Mul scales W and B per output channel, Add/Sub
    /// shift B, Div by a constant scales by its reciprocal, and constant - Conv negates W.
    /// Returns whether anything changed (a chain folds one node per call).
    static func foldConvAffine(_ graph: inout Graph) -> Bool {
        let consumers = consumerCounts(graph), producerIndex = producers(graph)
        var removed = Set<Int>()
        var changed = false
        for (index, node) in graph.nodes.enumerated() where node.domain.isEmpty && ["Mul", "Add", "Sub", "Div"].contains(node.opType) {
            guard node.inputs.count == 2, node.outputs.count == 1 else { continue }
            // Which operand is the Conv's output, which the constant.
            var convSide: Int?
            for side in 0..<2 {
                if let producer = producerIndex[node.inputs[side]], !removed.contains(producer),
                   graph.nodes[producer].opType == "Conv", graph.constants[node.inputs[1 - side]] != nil {
                    convSide = side
                }
            }
            guard let side = convSide, consumers[node.inputs[side]] == 1, let convIndex = producerIndex[node.inputs[side]] else { continue }
            if node.opType == "Div" && side == 1 { continue }
            let conv = graph.nodes[convIndex]
            guard conv.domain.isEmpty, conv.outputs.count == 1, conv.attributes[fusedActivationKey] == nil,
                  conv.attributes[fusedResidualKey] == nil,
                  conv.inputs.count >= 2, let weight = graph.constants[conv.inputs[1]], weight.dtype == .float32, weight.shape.count >= 3,
                  let constant = graph.constants[node.inputs[1 - side]] else { continue }
            let channels = weight.shape[0]
            guard channels > 0, let values = perChannel(constant, rank: weight.shape.count, channels: channels) else { continue }
            var bias = [Float](repeating: 0, count: channels)
            if conv.inputs.count > 2, !conv.inputs[2].isEmpty {
                guard let b = graph.constants[conv.inputs[2]], b.dtype == .float32, b.count == channels else { continue }
                bias = Array(UnsafeBufferPointer(start: b.pointer(as: Float.self), count: channels))
            }
            // y' = y * scale + shift, per channel.
            var scale = [Float](repeating: 1, count: channels), shift = [Float](repeating: 0, count: channels)
            switch (node.opType, side) {
            case ("Mul", _): scale = values
            case ("Div", _): scale = values.map { 1 / $0 }
            case ("Add", _): shift = values
            case ("Sub", 0): shift = values.map { -$0 }
            default: scale = [Float](repeating: -1, count: channels); shift = values   // constant - Conv
            }
            var newWeight = weight
            if scale.contains(where: { $0 != 1 }) {
                newWeight = HostTensor(dtype: .float32, shape: weight.shape)
                let perChannel = weight.count / channels
                let w = weight.pointer(as: Float.self), nw = newWeight.pointer(as: Float.self)
                for c in 0..<channels { for k in 0..<perChannel { nw[c * perChannel + k] = w[c * perChannel + k] * scale[c] } }
            }
            let newBias = HostTensor(shape: [channels], floats: (0..<channels).map { bias[$0] * scale[$0] + shift[$0] })
            let weightName = "\(node.outputs[0])__folded_W", biasName = "\(node.outputs[0])__folded_B"
            graph.constants[weightName] = newWeight
            graph.constants[biasName] = newBias
            var fused = conv
            fused.inputs = [conv.inputs[0], weightName, biasName]
            fused.outputs = node.outputs
            graph.nodes[convIndex] = fused
            removed.insert(index)
            changed = true
        }
        graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        return changed
    }

    /// Pad(X) with constant zeros on spatial axes only, read only by Convs (not SAME-padded)
    /// and AveragePools (not SAME-padded, no ceil_mode, counting pads or having none of their
    /// own): each reader takes X and adds the Pad's amounts to its own pads (average pools then
    /// count the pads, as they counted the zeros). MaxPool is left alone: its pads are -inf.
    static func mergePads(_ graph: inout Graph) {
        var readers: [String: [Int]] = [:]
        for (index, node) in graph.nodes.enumerated() {
            for input in Set(node.inputs) where !input.isEmpty { readers[input, default: []].append(index) }
        }
        let outputs = Set(graph.outputs.map(\.name))
        for pad in graph.nodes where pad.opType == "Pad" && pad.domain.isEmpty && pad.outputs.count == 1 {
            let mode: String
            if case .string(let m)? = pad.attributes["mode"] { mode = m } else { mode = "constant" }
            guard mode == "constant", !outputs.contains(pad.outputs[0]) else { continue }
            // Amounts: attribute (opset < 11) or constant input 1; no `axes` input.
            var amounts: [Int]
            if case .ints(let list)? = pad.attributes["pads"] { amounts = list } else {
                guard pad.inputs.count > 1, let list = graph.constants[pad.inputs[1]], list.dtype == .int64 else { continue }
                amounts = list.integers
            }
            guard pad.inputs.count < 4 || pad.inputs[3].isEmpty else { continue }
            // The fill value must be zero.
            if case .float(let value)? = pad.attributes["value"], value != 0 { continue }
            if pad.inputs.count > 2, !pad.inputs[2].isEmpty {
                guard let value = graph.constants[pad.inputs[2]], value.count == 1,
                      value.dtype == .float32, value.pointer(as: Float.self)[0] == 0 else { continue }
            }
            let rank = amounts.count / 2
            // Amounts beyond Int32 are no real padding; leaving them to the Pad keeps the sums
            // below from overflowing.
            guard rank >= 3, amounts.count == 2 * rank, amounts.allSatisfy({ (0...Int(Int32.max)).contains($0) }),
                  amounts[0] == 0, amounts[1] == 0, amounts[rank] == 0, amounts[rank + 1] == 0 else { continue }
            let spatial = rank - 2
            let begin = Array(amounts[2..<rank]), end = Array(amounts[(rank + 2)...])
            guard let users = readers[pad.outputs[0]], !users.isEmpty else { continue }
            // Every reader must accept the pads, else the Pad stays for all.
            let accepted = users.allSatisfy { index in
                let node = graph.nodes[index]
                guard node.domain.isEmpty, node.inputs.first == pad.outputs[0],
                      !node.inputs.dropFirst().contains(pad.outputs[0]) else { return false }
                let autoPad: String
                if case .string(let a)? = node.attributes["auto_pad"] { autoPad = a } else { autoPad = "NOTSET" }
                guard autoPad == "NOTSET" || autoPad == "VALID" else { return false }
                if case .ints(let list)? = node.attributes["pads"],
                   list.count != 2 * spatial || !list.allSatisfy({ (0...Int(Int32.max)).contains($0) }) { return false }
                switch node.opType {
                case "Conv":
                    guard let weight = graph.constants[node.inputs.count > 1 ? node.inputs[1] : ""], weight.shape.count == rank else { return false }
                    return true
                case "AveragePool":
                    guard case .ints(let kernel)? = node.attributes["kernel_shape"], kernel.count == spatial else { return false }
                    if case .int(let ceil)? = node.attributes["ceil_mode"], ceil != 0 { return false }
                    var countsPads = false
                    if case .int(let include)? = node.attributes["count_include_pad"] { countsPads = include != 0 }
                    var ownPads = false
                    if autoPad == "NOTSET", case .ints(let list)? = node.attributes["pads"] { ownPads = list.contains { $0 != 0 } }
                    return countsPads || !ownPads
                default:
                    return false
                }
            }
            guard accepted else { continue }
            for index in users {
                var node = graph.nodes[index]
                var pads = [Int](repeating: 0, count: 2 * spatial)
                if case .string(let a)? = node.attributes["auto_pad"], a == "VALID" {} else if case .ints(let list)? = node.attributes["pads"], list.count == 2 * spatial {
                    pads = list
                }
                for axis in 0..<spatial {
                    pads[axis] += begin[axis]
                    pads[spatial + axis] += end[axis]
                }
                node.attributes["auto_pad"] = .string("NOTSET")
                node.attributes["pads"] = .ints(pads)
                if node.opType == "AveragePool" { node.attributes["count_include_pad"] = .int(1) }
                node.inputs[0] = pad.inputs[0]
                graph.nodes[index] = node
            }
        }
    }

    /// Add(Conv(...), R) where the Conv's output has no other reader and R is computed before
    /// the Conv runs (a ResNet shortcut, an inverted-residual input): the Conv adds R in its
    /// epilogue (input 3), before any activation fused later (Add then Relu). When both
    /// operands are such Convs, the later one takes the other as R.
    static func fuseResidualAdds(_ graph: inout Graph) {
        let consumers = consumerCounts(graph), producerIndex = producers(graph)
        var removed = Set<Int>()
        for (index, add) in graph.nodes.enumerated() where add.opType == "Add" && add.domain.isEmpty {
            guard add.inputs.count == 2, add.outputs.count == 1, add.inputs[0] != add.inputs[1],
                  !add.inputs.contains(where: { $0.isEmpty || graph.constants[$0] != nil }) else { continue }
            var best: (conv: Int, residual: String)?
            for side in 0..<2 {
                guard let convIndex = producerIndex[add.inputs[side]], !removed.contains(convIndex),
                      consumers[add.inputs[side]] == 1 else { continue }
                let conv = graph.nodes[convIndex]
                guard conv.opType == "Conv", conv.domain.isEmpty, conv.outputs.count == 1, conv.inputs.count >= 2,
                      conv.inputs.count <= 3, conv.attributes[fusedActivationKey] == nil,
                      conv.attributes[fusedResidualKey] == nil else { continue }
                let other = add.inputs[1 - side]
                if let otherProducer = producerIndex[other], otherProducer >= convIndex { continue }
                if best == nil || convIndex > best!.conv { best = (convIndex, other) }
            }
            guard let (convIndex, residual) = best else { continue }
            var conv = graph.nodes[convIndex]
            if conv.inputs.count == 2 { conv.inputs.append("") }
            conv.inputs.append(residual)
            conv.attributes[fusedResidualKey] = .int(1)
            conv.outputs = add.outputs
            graph.nodes[convIndex] = conv
            removed.insert(index)
        }
        graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }

    static func trainingMode(_ node: Node) throws -> Bool {
        if case .int(let mode)? = node.attributes["training_mode"] { return mode != 0 }
        return false
    }

    /// Conv/Gemm followed by Relu, LeakyRelu, Clip (constant bounds), Sigmoid, HardSigmoid or
    /// HardSwish, when the activation is the only reader: the activation runs in the producer's
    /// epilogue while the data is still in cache.
    static func fuseActivations(_ graph: inout Graph) {
        let consumers = consumerCounts(graph), producerIndex = producers(graph)
        var removed = Set<Int>()
        // SiLU / Swish: Mul(Y, Sigmoid(Y)) with Y read only by the two.
        for (mulIndex, mul) in graph.nodes.enumerated() where mul.opType == "Mul" && mul.domain.isEmpty {
            guard mul.inputs.count == 2, mul.outputs.count == 1 else { continue }
            for side in 0..<2 {
                let y = mul.inputs[side], s = mul.inputs[1 - side]
                guard let sigmoidIndex = producerIndex[s], !removed.contains(sigmoidIndex) else { continue }
                let sigmoid = graph.nodes[sigmoidIndex]
                guard sigmoid.opType == "Sigmoid", sigmoid.domain.isEmpty, sigmoid.inputs == [y], consumers[s] == 1,
                      consumers[y] == 2, let producer = producerIndex[y], !removed.contains(producer) else { continue }
                var node = graph.nodes[producer]
                guard node.opType == "Conv" || node.opType == "Gemm", node.domain.isEmpty, node.outputs.count == 1,
                      node.attributes[fusedActivationKey] == nil else { continue }
                node.attributes[fusedActivationKey] = .string("SiLU")
                node.attributes[fusedAlphaKey] = .float(0)
                node.attributes[fusedBetaKey] = .float(0)
                node.outputs = mul.outputs
                graph.nodes[producer] = node
                removed.insert(sigmoidIndex)
                removed.insert(mulIndex)
                break
            }
        }
        for (actIndex, act) in graph.nodes.enumerated() where act.domain.isEmpty && !act.inputs.isEmpty && !removed.contains(actIndex) {
            guard let activation = fusibleActivation(act, graph: graph),
                  let producer = producerIndex[act.inputs[0]], !removed.contains(producer),
                  consumers[act.inputs[0]] == 1 else { continue }
            var node = graph.nodes[producer]
            guard node.opType == "Conv" || node.opType == "Gemm", node.domain.isEmpty, node.outputs.count == 1,
                  node.attributes[fusedActivationKey] == nil else { continue }
            node.attributes[fusedActivationKey] = .string(activation.kind)
            node.attributes[fusedAlphaKey] = .float(activation.alpha)
            node.attributes[fusedBetaKey] = .float(activation.beta)
            node.outputs = [act.outputs[0]]
            graph.nodes[producer] = node
            removed.insert(actIndex)
        }
        graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }

    static func fusibleActivation(_ node: Node, graph: Graph) -> (kind: String, alpha: Float, beta: Float)? {
        guard node.outputs.count == 1 else { return nil }
        func attr(_ key: String, _ value: Float) -> Float {
            switch node.attributes[key] {
            case .float(let v)?: return v
            default: return value
            }
        }
        switch node.opType {
        case "Relu": return ("Relu", 0, 0)
        case "LeakyRelu": return ("LeakyRelu", attr("alpha", 0.01), 0)
        case "Sigmoid": return ("Sigmoid", 0, 0)
        case "HardSwish": return ("HardSwish", 0, 0)
        case "HardSigmoid": return ("HardSigmoid", attr("alpha", 0.2), attr("beta", 0.5))
        case "Clip":
            var low = -Float.greatestFiniteMagnitude, high = Float.greatestFiniteMagnitude
            if node.inputs.count > 1 {
                for (index, name) in node.inputs.enumerated().dropFirst() where !name.isEmpty {
                    guard let value = graph.constants[name], value.dtype == .float32, value.count == 1 else { return nil }
                    if index == 1 { low = value.pointer(as: Float.self)[0] } else { high = value.pointer(as: Float.self)[0] }
                }
            } else {
                low = attr("min", low)
                high = attr("max", high)
            }
            return ("Clip", low, high)
        default: return nil
        }
    }

    /// Drops nodes none of whose outputs reach a graph output.
    static func removeDeadNodes(_ graph: inout Graph) {
        var needed = Set(graph.outputs.map(\.name))
        var keep = [Bool](repeating: false, count: graph.nodes.count)
        for index in stride(from: graph.nodes.count - 1, through: 0, by: -1) {
            let node = graph.nodes[index]
            if node.outputs.contains(where: { needed.contains($0) }) {
                keep[index] = true
                for input in node.inputs where !input.isEmpty { needed.insert(input) }
            }
        }
        graph.nodes = graph.nodes.enumerated().filter { keep[$0.offset] }.map(\.element)
    }
}
