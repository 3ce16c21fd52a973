/// Load-time rewrites on the node list, applied after constant folding:
/// BatchNormalization folded into the Conv before it, activations fused into Conv/Gemm
/// epilogues, and nodes nothing reads removed. Each rewrite keeps the graph's outputs
/// numerically equal (up to float rounding).
enum GraphOptimizer {
    /// Attribute names the engine adds to fused nodes; never present in ONNX files.
    static let fusedActivationKey = "__fused_activation"
    static let fusedAlphaKey = "__fused_alpha"
    static let fusedBetaKey = "__fused_beta"

    static func optimize(_ graph: inout Graph) {
        foldBatchNormalization(&graph)
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
                  let weight = graph.constants[conv.inputs[1]], weight.dtype == .float32, weight.shape.count >= 3,
                  let scale = graph.constants[bn.inputs[1]], let bias = graph.constants[bn.inputs[2]],
                  let mean = graph.constants[bn.inputs[3]], let variance = graph.constants[bn.inputs[4]]
            else { continue }
            let channels = weight.shape[0]
            guard [scale, bias, mean, variance].allSatisfy({ $0.dtype == .float32 && $0.count == channels }) else { continue }
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
        for (actIndex, act) in graph.nodes.enumerated() where act.domain.isEmpty && !act.inputs.isEmpty {
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
