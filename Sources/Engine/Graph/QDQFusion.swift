/// Load-time rewrite of QDQ groups (the form onnxruntime's quantize_static writes by default)
/// into the integer operators, as onnxruntime's own QDQ transformer does: a float node whose
/// data inputs each come from a DequantizeLinear and whose only reader is a QuantizeLinear,
///
///     DequantizeLinear(x_q) ─┐
///     DequantizeLinear(W_q) ─┼─> Conv ─> QuantizeLinear ─> y_q
///     DequantizeLinear(B_32)─┘
///
/// becomes QLinearConv(x_q, x_scale, x_zp, W_q, w_scale, w_zp, y_scale, y_zp, B_32); Gemm and
/// MatMul by constant weights become QGemm / QLinearMatMul, Add QLinearAdd, (Global)AveragePool
/// QLinear(Global)AveragePool, Concat QLinearConcat, and MaxPool (same scale and zero point on
/// both sides) MaxPool on the quantized values. Runs before constant folding (which would
/// otherwise turn the weights' DequantizeLinear into float constants). Activation scales and
/// zero points must be constant scalars; weight scales constant (per tensor or per output
/// channel). Groups that do not match stay as they are and run in float.
enum QDQFusion {
    static func fuse(_ graph: inout Graph) {
        var producer: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() { for output in node.outputs where !output.isEmpty { producer[output] = index } }
        var readers: [String: Int] = [:]
        for node in graph.nodes { for input in node.inputs where !input.isEmpty { readers[input, default: 0] += 1 } }
        for output in graph.outputs { readers[output.name, default: 0] += 1 }
        var readerIndex: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() { for input in node.inputs where !input.isEmpty { readerIndex[input] = index } }

        func isDefault(_ node: Node) -> Bool { node.domain.isEmpty || node.domain == "ai.onnx" }
        func scalarConstant(_ name: String?) -> HostTensor? {
            guard let name, !name.isEmpty, let value = graph.constants[name], value.count == 1 else { return nil }
            return value
        }
        /// A DequantizeLinear producing `value` with constant scalar scale (and zero point).
        func dequantized(_ value: String, perChannelAllowed: Bool = false) -> Node? {
            guard let index = producer[value] else { return nil }
            let node = graph.nodes[index]
            guard node.opType == "DequantizeLinear", isDefault(node), node.inputs.count >= 2, node.attributes["block_size"] == nil,
                  let scale = graph.constants[node.inputs[1]], scale.dtype == .float32 else { return nil }
            if !perChannelAllowed && scale.count != 1 { return nil }
            if node.inputs.count > 2, !node.inputs[2].isEmpty {
                guard let zero = graph.constants[node.inputs[2]], zero.count == scale.count else { return nil }
            }
            return node
        }
        func zeroName(_ node: Node) -> String { node.inputs.count > 2 ? node.inputs[2] : "" }

        var removed = Set<Int>()
        var replacements: [Int: Node] = [:]
        for (index, node) in graph.nodes.enumerated() where isDefault(node) && node.outputs.count == 1 {
            let kinds = ["Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "AveragePool", "MaxPool", "Concat"]
            guard kinds.contains(node.opType), readers[node.outputs[0]] == 1,
                  let qIndex = readerIndex[node.outputs[0]], !removed.contains(qIndex) else { continue }
            let q = graph.nodes[qIndex]
            guard q.opType == "QuantizeLinear", isDefault(q), q.inputs.count >= 2, q.inputs[0] == node.outputs[0],
                  q.attributes.keys.allSatisfy({ $0 == "axis" || $0 == "saturate" }),
                  let qScale = scalarConstant(q.inputs[1]), qScale.dtype == .float32 else { continue }
            let qZero = q.inputs.count > 2 ? q.inputs[2] : ""
            if !qZero.isEmpty && scalarConstant(qZero) == nil { continue }
            var fused: Node?
            switch node.opType {
            case "Conv", "Gemm", "MatMul":
                guard node.inputs.count >= 2, let x = dequantized(node.inputs[0]),
                      let w = dequantized(node.inputs[1], perChannelAllowed: true), graph.constants[w.inputs[0]] != nil,
                      let xScale = graph.constants[x.inputs[1]], let wScale = graph.constants[w.inputs[1]] else { continue }
                // Per-channel weight scales run along the output channels only.
                if wScale.count != 1 {
                    var axis = 1
                    if case .int(let a)? = w.attributes["axis"] { axis = a }
                    let rank = graph.constants[w.inputs[0]]!.shape.count
                    let outputAxis = node.opType == "Conv" ? 0 : (node.opType == "Gemm" && isTrue(node.attributes["transB"]) ? 0 : 1)
                    guard (axis + rank) % rank == outputAxis else { continue }
                }
                var bias = ""
                if node.inputs.count > 2, !node.inputs[2].isEmpty {
                    guard node.opType != "MatMul", let b = dequantized(node.inputs[2], perChannelAllowed: true),
                          let bq = graph.constants[b.inputs[0]], bq.dtype == .int32, bq.shape.count == 1,
                          let bScale = graph.constants[b.inputs[1]] else { continue }
                    if !zeroName(b).isEmpty, graph.constants[zeroName(b)]!.integers.contains(where: { $0 != 0 }) { continue }
                    // The bias must be quantized with x_scale * w_scale (what the integer sum carries).
                    let xs = xScale.pointer(as: Float.self)[0]
                    let ok = (0..<bq.count).allSatisfy { c in
                        let expected = xs * wScale.pointer(as: Float.self)[wScale.count == 1 ? 0 : c]
                        let actual = bScale.pointer(as: Float.self)[bScale.count == 1 ? 0 : c]
                        return abs(actual - expected) <= 1e-6 * abs(expected)
                    }
                    guard ok else { continue }
                    bias = b.inputs[0]
                }
                let inputs = [x.inputs[0], x.inputs[1], zeroName(x), w.inputs[0], w.inputs[1], zeroName(w)]
                switch node.opType {
                case "Conv":
                    guard node.attributes.keys.allSatisfy({ ["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"].contains($0) }) else { continue }
                    fused = Node(name: node.name, opType: "QLinearConv", domain: "", inputs: inputs + [q.inputs[1], qZero] + (bias.isEmpty ? [] : [bias]),
                                 outputs: q.outputs, attributes: node.attributes)
                case "Gemm":
                    guard !isTrue(node.attributes["transA"]), floatAttribute(node.attributes["alpha"]) == 1,
                          floatAttribute(node.attributes["beta"]) == 1 || bias.isEmpty else { continue }
                    var attributes: [String: Attribute] = [:]
                    if isTrue(node.attributes["transB"]) { attributes["transB"] = .int(1) }
                    fused = Node(name: node.name, opType: "QGemm", domain: ContribOperatorRegistry.domain,
                                 inputs: inputs + [bias, q.inputs[1], qZero], outputs: q.outputs, attributes: attributes)
                default:
                    guard graph.constants[w.inputs[0]]!.shape.count == 2 else { continue }
                    fused = Node(name: node.name, opType: "QLinearMatMul", domain: "", inputs: inputs + [q.inputs[1], qZero],
                                 outputs: q.outputs, attributes: [:])
                }
            case "Add":
                guard node.inputs.count == 2, let a = dequantized(node.inputs[0]), let b = dequantized(node.inputs[1]) else { continue }
                fused = Node(name: node.name, opType: "QLinearAdd", domain: ContribOperatorRegistry.domain,
                             inputs: [a.inputs[0], a.inputs[1], zeroName(a), b.inputs[0], b.inputs[1], zeroName(b), q.inputs[1], qZero],
                             outputs: q.outputs, attributes: [:])
            case "GlobalAveragePool", "AveragePool":
                guard let x = dequantized(node.inputs[0]) else { continue }
                fused = Node(name: node.name, opType: "QLinear" + node.opType, domain: ContribOperatorRegistry.domain,
                             inputs: [x.inputs[0], x.inputs[1], zeroName(x), q.inputs[1], qZero], outputs: q.outputs,
                             attributes: node.attributes)
            case "MaxPool":
                guard let x = dequantized(node.inputs[0]), node.inputs.count == 1,
                      let xScale = scalarConstant(x.inputs[1]), xScale.floats == qScale.floats,
                      (scalarConstant(zeroName(x))?.integers ?? [0]) == (scalarConstant(qZero)?.integers ?? [0]),
                      (scalarConstant(zeroName(x))?.dtype ?? .uint8) == (scalarConstant(qZero)?.dtype ?? .uint8) else { continue }
                fused = Node(name: node.name, opType: "MaxPool", domain: "", inputs: [x.inputs[0]], outputs: q.outputs,
                             attributes: node.attributes)
            case "Concat":
                let sources = node.inputs.map { dequantized($0) }
                guard !sources.isEmpty, sources.allSatisfy({ $0 != nil }) else { continue }
                fused = Node(name: node.name, opType: "QLinearConcat", domain: ContribOperatorRegistry.domain,
                             inputs: [q.inputs[1], qZero] + sources.flatMap { [$0!.inputs[0], $0!.inputs[1], zeroName($0!)] },
                             outputs: q.outputs, attributes: node.attributes)
            default:
                continue
            }
            guard let fused else { continue }
            replacements[index] = fused
            removed.insert(qIndex)
        }
        guard !replacements.isEmpty else { return }
        graph.nodes = graph.nodes.enumerated().compactMap { index, node in
            removed.contains(index) ? nil : (replacements[index] ?? node)
        }
        // DequantizeLinear nodes nothing reads any more go now, before constant folding would
        // dequantize the weights they read into float copies.
        GraphOptimizer.removeDeadNodes(&graph)
    }

    static func isTrue(_ attribute: Attribute?) -> Bool {
        if case .int(let value)? = attribute { return value != 0 }
        return false
    }

    static func floatAttribute(_ attribute: Attribute?) -> Float {
        switch attribute {
        case .float(let value)?: return value
        case .int(let value)?: return Float(value)
        default: return 1
        }
    }
}
