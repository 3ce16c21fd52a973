/// Load-time layout choice for quantized graphs (after `QDQFusion` and the optimizer): runs of
/// quantized operators keep their activations channels-last (N x H x W x C u8), as
/// onnxruntime's NHWC transformer does, so 1x1 convolutions need no im2col and the integer
/// kernels write each pixel's channels contiguously. Eligible nodes are rewritten to their
/// channels-last forms (`NhwcQLinearConv`, `NhwcMaxPool`, QLinear(Global)AveragePool with
/// channels_last; QLinearAdd/QLinearMul and
/// QLinearConcat unchanged but on NHWC values, the concat axis moved to the channel axis);
/// a Transpose converts at each boundary with an NCHW operator or a graph output, inserted
/// only where an NCHW reader needs the value (once per value). A Transpose NHWC -> NCHW
/// (a Keras export's input) makes its source the channels-last form of its output, so a
/// per-tensor QuantizeLinear after it runs channels-last and the two conversions vanish.
///
/// Eligible: QLinearConv with 4-D constant weights, group 1 or depthwise, uint8 x (its zero
/// point a constant uint8), constant scalar scales and zero points, constant bias; MaxPool
/// (no ceil_mode, storage order or Indices output, padding narrower than the window) and the
/// element-wise/concat nodes only when their data inputs already are channels-last, so a
/// graph without eligible convolutions is unchanged.
enum QuantizedLayout {
    static let toChannelsLast = [0, 2, 3, 1]
    static let toChannelsFirst = [0, 3, 1, 2]

    static func useChannelsLast(_ graph: inout Graph) {
        var names = Set(graph.inputs.map(\.name)).union(graph.constants.keys)
        for node in graph.nodes { names.formUnion(node.outputs) }
        func unique(_ base: String) -> String {
            var name = base, index = 1
            while names.contains(name) { name = "\(base)_\(index)"; index += 1 }
            names.insert(name)
            return name
        }
        func constant(_ graph: Graph, _ nodeInputs: [String], _ index: Int) -> HostTensor? {
            guard index < nodeInputs.count, !nodeInputs[index].isEmpty else { return nil }
            return graph.constants[nodeInputs[index]]
        }

        var nodes: [Node] = []
        /// NCHW name -> its channels-last copy, for every value available channels-last.
        var channelsLast: [String: String] = [:]
        /// Values produced only channels-last so far (their NCHW form is made on demand).
        var pending = Set<String>()
        var changed = false

        func lastName(_ value: String) -> String {
            if let name = channelsLast[value] { return name }
            let name = unique(value + "/nhwc")
            nodes.append(Node(name: name, opType: "Transpose", domain: "", inputs: [value], outputs: [name],
                              attributes: ["perm": .ints(toChannelsLast)]))
            channelsLast[value] = name
            return name
        }
        func materialise(_ value: String) {
            guard pending.contains(value), let source = channelsLast[value] else { return }
            nodes.append(Node(name: value + "/nchw", opType: "Transpose", domain: "", inputs: [source], outputs: [value],
                              attributes: ["perm": .ints(toChannelsFirst)]))
            pending.remove(value)
        }
        func produceChannelsLast(_ node: Node, opType: String, domain: String, inputs: [String], attributes: [String: Attribute]) {
            let output = node.outputs[0]
            let name = unique(output + "/nhwc")
            nodes.append(Node(name: node.name, opType: opType, domain: domain, inputs: inputs, outputs: [name], attributes: attributes))
            channelsLast[output] = name
            pending.insert(output)
            changed = true
        }

        for node in graph.nodes {
            let isDefault = node.domain.isEmpty || node.domain == "ai.onnx"
            switch (node.opType, isDefault || node.domain == ContribOperatorRegistry.domain) {
            case ("QLinearConv", true) where convEligible(node, graph):
                var inputs = node.inputs
                inputs[0] = lastName(node.inputs[0])
                produceChannelsLast(node, opType: "NhwcQLinearConv", domain: ContribOperatorRegistry.domain, inputs: inputs,
                                    attributes: node.attributes)
                continue
            case ("QLinearAdd", true), ("QLinearMul", true):
                let data = [node.inputs[0], node.inputs[3]]
                if node.domain == ContribOperatorRegistry.domain, node.outputs.count == 1,
                   data.allSatisfy({ channelsLast[$0] != nil }), data.contains(where: pending.contains) {
                    var inputs = node.inputs
                    inputs[0] = channelsLast[data[0]]!
                    inputs[3] = channelsLast[data[1]]!
                    produceChannelsLast(node, opType: node.opType, domain: node.domain, inputs: inputs, attributes: node.attributes)
                    continue
                }
            case ("MaxPool", true):
                if isDefault, node.inputs.count == 1, node.outputs.count == 1, pending.contains(node.inputs[0]),
                   maxPoolEligible(node) {
                    produceChannelsLast(node, opType: "NhwcMaxPool", domain: ContribOperatorRegistry.domain,
                                        inputs: [channelsLast[node.inputs[0]]!], attributes: node.attributes)
                    continue
                }
            case ("Transpose", true):
                // NHWC -> NCHW (a Keras export's input): its input is the value channels-last, free.
                if isDefault, node.inputs.count == 1, node.outputs.count == 1, case .ints(let perm)? = node.attributes["perm"],
                   perm == toChannelsFirst, channelsLast[node.outputs[0]] == nil {
                    channelsLast[node.outputs[0]] = node.inputs[0]
                }
            case ("QuantizeLinear", true):
                // Per-tensor quantization is element-wise: it runs channels-last when its input is.
                if isDefault, node.outputs.count == 1, let source = channelsLast[node.inputs[0]],
                   node.attributes.keys.allSatisfy({ $0 == "axis" || $0 == "saturate" }),
                   constant(graph, node.inputs, 1)?.count == 1,
                   node.inputs.count < 3 || node.inputs[2].isEmpty || constant(graph, node.inputs, 2)?.count == 1 {
                    var inputs = node.inputs
                    inputs[0] = source
                    produceChannelsLast(node, opType: node.opType, domain: node.domain, inputs: inputs, attributes: node.attributes)
                    continue
                }
            case ("QLinearAveragePool", true):
                if node.domain == ContribOperatorRegistry.domain, node.outputs.count == 1, pending.contains(node.inputs[0]),
                   averagePoolEligible(node, graph) {
                    var inputs = node.inputs
                    inputs[0] = channelsLast[node.inputs[0]]!
                    var attributes = node.attributes
                    attributes["channels_last"] = .int(1)
                    produceChannelsLast(node, opType: node.opType, domain: node.domain, inputs: inputs, attributes: attributes)
                    continue
                }
            case ("QLinearGlobalAveragePool", true):
                if node.domain == ContribOperatorRegistry.domain, node.outputs.count == 1, pending.contains(node.inputs[0]),
                   averagePoolEligible(node, graph, needsKernel: false) {
                    var inputs = node.inputs
                    inputs[0] = channelsLast[node.inputs[0]]!
                    produceChannelsLast(node, opType: node.opType, domain: node.domain, inputs: inputs, attributes: ["channels_last": .int(1)])
                    continue
                }
            case ("QLinearConcat", true):
                let data = stride(from: 2, to: node.inputs.count, by: 3).map { node.inputs[$0] }
                var axis = 0
                if case .int(let a)? = node.attributes["axis"] { axis = a }
                if node.domain == ContribOperatorRegistry.domain, axis == 1 || axis == -3,
                   data.allSatisfy({ channelsLast[$0] != nil }), data.contains(where: pending.contains) {
                    var inputs = node.inputs
                    for index in stride(from: 2, to: inputs.count, by: 3) { inputs[index] = channelsLast[inputs[index]]! }
                    var attributes = node.attributes
                    attributes["axis"] = .int(3)
                    produceChannelsLast(node, opType: node.opType, domain: node.domain, inputs: inputs, attributes: attributes)
                    continue
                }
            default:
                break
            }
            for input in node.inputs { materialise(input) }
            nodes.append(node)
        }
        guard changed else { return }
        for output in graph.outputs { materialise(output.name) }
        graph.nodes = nodes
        // Transposes to NCHW nothing reads any more (their readers moved to the NHWC source).
        GraphOptimizer.removeDeadNodes(&graph)
    }

    static func convEligible(_ node: Node, _ graph: Graph) -> Bool {
        guard node.inputs.count >= 8, node.outputs.count == 1,
              node.attributes.keys.allSatisfy({ ["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"].contains($0) }),
              let w = graph.constants[node.inputs[3]], w.shape.count == 4,
              let xZero = graph.constants[node.inputs[2]], xZero.dtype == .uint8, xZero.count == 1,
              [1, 4, 6].allSatisfy({ graph.constants[node.inputs[$0]] != nil }),
              node.inputs[5].isEmpty || graph.constants[node.inputs[5]] != nil,
              node.inputs[7].isEmpty || graph.constants[node.inputs[7]]?.count == 1,
              node.inputs.count < 9 || node.inputs[8].isEmpty || graph.constants[node.inputs[8]] != nil else { return false }
        var group = 1
        if case .int(let g)? = node.attributes["group"] { group = g }
        return group == 1 || (w.shape[0] == group && w.shape[1] == 1)
    }

    /// QLinearAveragePool (2-D kernel_shape, `needsKernel`) or QLinearGlobalAveragePool with
    /// constant scalar scales and zero points.
    static func averagePoolEligible(_ node: Node, _ graph: Graph, needsKernel: Bool = true) -> Bool {
        var kernel: [Int] = []
        if case .ints(let k)? = node.attributes["kernel_shape"] { kernel = k }
        guard node.attributes.keys.allSatisfy({ ["auto_pad", "ceil_mode", "channels_last", "count_include_pad", "kernel_shape", "pads", "strides"].contains($0) }),
              !needsKernel || kernel.count == 2, node.inputs.count >= 4,
              [1, 3].allSatisfy({ graph.constants[node.inputs[$0]]?.count == 1 }),
              [2, 4].allSatisfy({ $0 >= node.inputs.count || node.inputs[$0].isEmpty || graph.constants[node.inputs[$0]]?.count == 1 })
        else { return false }
        for key in ["ceil_mode", "channels_last"] { if case .int(let value)? = node.attributes[key], value != 0 { return false } }
        return true
    }

    static func maxPoolEligible(_ node: Node) -> Bool {
        guard node.attributes.keys.allSatisfy({ ["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides", "storage_order"].contains($0) }),
              case .ints(let kernel)? = node.attributes["kernel_shape"], kernel.count == 2 else { return false }
        if case .int(let ceil)? = node.attributes["ceil_mode"], ceil != 0 { return false }
        if case .int(let order)? = node.attributes["storage_order"], order != 0 { return false }
        var dilations = [1, 1]
        if case .ints(let d)? = node.attributes["dilations"] { dilations = d }
        guard dilations.count == 2 else { return false }
        if case .ints(let pads)? = node.attributes["pads"] {
            guard pads.count == 4 else { return false }
            for (index, pad) in pads.enumerated() where pad >= (kernel[index % 2] - 1) * dilations[index % 2] + 1 { return false }
        }
        return true
    }
}
