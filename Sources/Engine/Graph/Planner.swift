/// Where a tensor lives while a plan runs.
enum Location {
    /// Bytes at this offset of the session's arena.
    case arena(Int)
    /// A constant owned by the model (initializer, folded value).
    case constant(HostTensor)
}

/// One kernel invocation with its tensors' locations resolved.
struct Step {
    let name: String
    let opType: String
    let kernel: any Kernel
    let inputs: [Location?]
    /// Arena offsets of outputs; nil for omitted outputs.
    let outputs: [Int?]
    let scratchBytes: Int
    let flops: Double
}

/// Everything needed to run the model at one batch size: concrete shapes, kernels and arena
/// offsets. Built at load; read-only afterwards.
struct ExecutionPlan: @unchecked Sendable {
    struct Output {
        let name: String
        let dtype: DType
        let shape: Shape
        let location: Location
    }
    let inputShapes: [Shape]
    /// Arena offsets the caller's input bytes are copied to.
    let inputOffsets: [Int]
    let steps: [Step]
    let outputs: [Output]
    /// Offset of the scratch region shared by all steps (worker 0's; others follow).
    let scratchOffset: Int
    /// Largest scratch any step needs, per worker, rounded to the alignment.
    let scratchBytes: Int
    /// Bytes of activations plus one worker's scratch.
    var arenaBytes: Int { scratchOffset + scratchBytes }
    let flops: Double
}

enum Planner {
    static let alignment = 64

    static func makeOperators(_ graph: Graph) throws -> [any Operator] {
        var consumed = Set(graph.outputs.map(\.name))
        for node in graph.nodes { consumed.formUnion(node.inputs) }
        return try graph.nodes.map { node in
            let context = context(for: node, graph: graph, consumed: consumed)
            let registry: [String: any Operator.Type]
            switch node.domain {
            case "", "ai.onnx": registry = OperatorRegistry.types
            case ContribOperatorRegistry.domain: registry = ContribOperatorRegistry.types
            default: throw context.unsupported("operator domain '\(node.domain)'")
            }
            guard let type = registry[node.opType] else {
                throw context.unsupported("operator \(node.opType)\(node.domain.isEmpty ? "" : " (domain \(node.domain))") is not implemented")
            }
            let arity = OperatorRegistry.arity(node.opType)
            guard arity.inputs.contains(node.inputs.count) else {
                throw context.invalid("has \(node.inputs.count) inputs; \(node.opType) takes \(describe(arity.inputs))")
            }
            guard arity.outputs.contains(node.outputs.count) else {
                throw context.invalid("has \(node.outputs.count) outputs; \(node.opType) produces \(describe(arity.outputs))")
            }
            return try type.init(context)
        }
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        range.upperBound == Int.max ? "at least \(range.lowerBound)"
            : range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
    }

    static func context(for node: Node, graph: Graph, consumed: Set<String>) -> NodeContext {
        NodeContext(name: node.name, opType: node.opType, opset: graph.opset, nativeKernels: graph.nativeKernels,
                    inputCount: node.inputs.count, inputNames: node.inputs,
                    outputCount: node.outputs.count,
                    outputsUsed: node.outputs.map { !$0.isEmpty && consumed.contains($0) },
                    attributes: node.attributes)
    }

    /// Evaluates, once, every node whose inputs are all constants (initializers and earlier
    /// folded values), replacing it by its outputs. Nodes that depend on graph inputs stay.
    static func foldConstants(_ graph: inout Graph, operators: [any Operator]) throws {
        var consumed = Set(graph.outputs.map(\.name))
        for node in graph.nodes { consumed.formUnion(node.inputs) }
        var kept: [Node] = []
        for (node, op) in zip(graph.nodes, operators) {
            let allConstant = node.inputs.allSatisfy { $0.isEmpty || graph.constants[$0] != nil }
            guard allConstant else { kept.append(node); continue }
            let context = context(for: node, graph: graph, consumed: consumed)
            let specs = node.inputs.map { $0.isEmpty ? nil : ValueSpec(graph.constants[$0]!) }
            var prepared = try op.prepare(specs, context)
            try checkSizes(prepared, node)
            knowEmptyOutputs(&prepared)
            let values = try evaluate(prepared, inputs: specs.map { $0?.value }, context)
            for (name, value) in zip(node.outputs, values) where !name.isEmpty { graph.constants[name] = value }
        }
        graph.nodes = kept
    }

    /// Throws when an output shape `node` computed is negative, overflows or exceeds memory.
    static func checkSizes(_ prepared: Prepared, _ node: Node) throws {
        for (index, spec) in prepared.outputs.enumerated() {
            _ = try TensorSize.bytes(spec.shape, spec.dtype, "output \(index) of node '\(node.name)' (\(node.opType))")
        }
        _ = try TensorSize.bytes([prepared.scratchBytes], .uint8, "the working memory of node '\(node.name)' (\(node.opType))")
    }

    /// A node whose outputs all have no elements has nothing to compute: its outputs become
    /// known (empty) values and its kernel never runs, so no kernel meets a zero-sized
    /// geometry (tile counts, strides and divisors of 0).
    static func knowEmptyOutputs(_ prepared: inout Prepared) {
        guard !prepared.outputs.isEmpty, !prepared.aliasesFirstInput,
              prepared.outputs.allSatisfy({ $0.shape.elementCount == 0 }) else { return }
        for index in prepared.outputs.indices where prepared.outputs[index].value == nil {
            prepared.outputs[index].value = HostTensor(dtype: prepared.outputs[index].dtype, shape: prepared.outputs[index].shape)
        }
    }

    /// Runs a prepared node on host tensors (plan-time evaluation).
    static func evaluate(_ prepared: Prepared, inputs: [HostTensor?], _ context: NodeContext) throws -> [HostTensor] {
        if prepared.outputs.allSatisfy({ $0.value != nil }) { return prepared.outputs.map { $0.value! } }
        if prepared.aliasesFirstInput {
            guard let source = inputs[0] else { throw context.invalid("missing input 0") }
            return prepared.outputs.enumerated().map { index, spec in
                spec.value ?? (index == 0 ? HostTensor(dtype: spec.dtype, shape: spec.shape,
                                                      copying: UnsafeRawBufferPointer(start: source.bytes, count: source.byteCount))
                                          : HostTensor(dtype: spec.dtype, shape: spec.shape))
            }
        }
        guard let kernel = prepared.kernel else { throw context.invalid("no kernel to evaluate") }
        let outputs = prepared.outputs.map { $0.value ?? HostTensor(dtype: $0.dtype, shape: $0.shape) }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(prepared.scratchBytes, 1), alignment: alignment)
        defer { scratch.deallocate() }
        let inputPointers = inputs.map { $0.map { UnsafeRawPointer($0.bytes) } }
        let outputPointers: [UnsafeMutableRawPointer?] = outputs.map { $0.bytes }
        inputPointers.withUnsafeBufferPointer { inBuffer in
            outputPointers.withUnsafeBufferPointer { outBuffer in
                kernel.run(KernelIO(inputs: inBuffer, outputs: outBuffer, scratch: scratch))
            }
        }
        return outputs
    }

    /// Plans one batch size: prepares every node for concrete shapes, evaluates what is known
    /// at plan time (shape arithmetic), and assigns arena offsets by liveness.
    static func plan(_ graph: Graph, operators: [any Operator], inputShapes: [Shape]) throws -> ExecutionPlan {
        var consumed = Set(graph.outputs.map(\.name))
        for node in graph.nodes { consumed.formUnion(node.inputs) }

        struct Pending {
            let node: Node
            let prepared: Prepared
            let flops: Double
        }
        var specs: [String: ValueSpec] = [:]
        for (name, value) in graph.constants { specs[name] = ValueSpec(value) }
        for (input, shape) in zip(graph.inputs, inputShapes) {
            _ = try TensorSize.bytes(shape, input.dtype!, "input '\(input.name)'")
            specs[input.name] = ValueSpec(dtype: input.dtype!, shape: shape)
        }
        var runtime: [Pending] = []
        for (node, op) in zip(graph.nodes, operators) {
            let context = context(for: node, graph: graph, consumed: consumed)
            let inputSpecs = node.inputs.map { $0.isEmpty ? nil : specs[$0] }
            for (name, spec) in zip(node.inputs, inputSpecs) where !name.isEmpty && spec == nil {
                throw context.invalid("input '\(name)' is not available")
            }
            var prepared = try op.prepare(inputSpecs, context)
            guard prepared.outputs.count >= node.outputs.count else {
                throw context.invalid("declares \(node.outputs.count) outputs, the operator produces \(prepared.outputs.count)")
            }
            try checkSizes(prepared, node)
            knowEmptyOutputs(&prepared)
            let allKnown = inputSpecs.allSatisfy { $0 == nil || $0!.value != nil }
            if allKnown || prepared.outputs.allSatisfy({ $0.value != nil }) {
                let values = try evaluate(prepared, inputs: inputSpecs.map { $0?.value }, context)
                for (name, value) in zip(node.outputs, values) where !name.isEmpty { specs[name] = ValueSpec(value) }
                continue
            }
            // Outputs known at plan time (a Dropout mask) become constants; the rest run.
            for (name, spec) in zip(node.outputs, prepared.outputs) where !name.isEmpty { specs[name] = spec }
            prepared.outputs = Array(prepared.outputs.prefix(node.outputs.count))
            runtime.append(Pending(node: node, prepared: prepared, flops: flopCount(node.opType, inputSpecs, prepared.outputs)))
        }

        // Liveness over runtime values; aliases (reshape family) share their root's bytes.
        var root: [String: String] = [:]
        func rootOf(_ name: String) -> String { root[name] ?? name }
        var lastUse: [String: Int] = [:]
        let endOfPlan = runtime.count
        for (index, step) in runtime.enumerated() {
            if step.prepared.aliasesFirstInput { root[step.node.outputs[0]] = rootOf(step.node.inputs[0]) }
            for input in step.node.inputs where !input.isEmpty && specs[input]?.value == nil {
                lastUse[rootOf(input)] = index
            }
            for output in step.node.outputs where !output.isEmpty && specs[output]?.value == nil && lastUse[rootOf(output)] == nil {
                lastUse[rootOf(output)] = index
            }
        }
        for output in graph.outputs where specs[output.name]?.value == nil { lastUse[rootOf(output.name)] = endOfPlan }
        for input in graph.inputs where lastUse[input.name] == nil { lastUse[input.name] = -1 }

        var allocator = ArenaAllocator()
        var offsets: [String: Int] = [:]
        func bytes(_ name: String) -> Int { specs[name]!.shape.elementCount * specs[name]!.dtype.size }
        var inputOffsets: [Int] = []
        for input in graph.inputs {
            let offset = allocator.allocate(bytes(input.name))
            offsets[input.name] = offset
            inputOffsets.append(offset)
        }
        var freeAt: [Int: [String]] = [:]
        for (name, index) in lastUse { freeAt[max(index, -1), default: []].append(name) }
        for name in freeAt[-1] ?? [] { allocator.free(offsets[name]!, bytes(name)) }

        var steps: [Step] = []
        var scratchBytes = 0
        for (index, pending) in runtime.enumerated() {
            let node = pending.node
            if pending.prepared.aliasesFirstInput {
                offsets[node.outputs[0]] = offsets[rootOf(node.inputs[0])]
            }
            var outputOffsets: [Int?] = []
            for (outputIndex, name) in node.outputs.enumerated() {
                if name.isEmpty { outputOffsets.append(nil); continue }
                if outputIndex == 0 && pending.prepared.aliasesFirstInput { outputOffsets.append(offsets[name]); continue }
                if specs[name]!.value != nil { outputOffsets.append(nil); continue }
                let offset = allocator.allocate(bytes(name))
                offsets[name] = offset
                outputOffsets.append(offset)
            }
            if !pending.prepared.aliasesFirstInput {
                let inputs: [Location?] = node.inputs.enumerated().map { index, name in
                    if name.isEmpty || pending.prepared.unusedInputs.contains(index) { return nil }
                    if let value = specs[name]!.value { return .constant(value) }
                    return .arena(offsets[rootOf(name)]!)
                }
                steps.append(Step(name: node.name, opType: node.opType, kernel: pending.prepared.kernel!, inputs: inputs,
                                  outputs: outputOffsets, scratchBytes: pending.prepared.scratchBytes, flops: pending.flops))
                scratchBytes = max(scratchBytes, pending.prepared.scratchBytes)
            }
            for name in freeAt[index] ?? [] { allocator.free(offsets[name]!, bytes(name)) }
        }

        let outputs: [ExecutionPlan.Output] = try graph.outputs.map { output in
            guard let spec = specs[output.name] else {
                throw EngineError.invalidModel("graph output '\(output.name)' is not produced by any node")
            }
            let location: Location = spec.value.map { .constant($0) } ?? .arena(offsets[rootOf(output.name)]!)
            return ExecutionPlan.Output(name: output.name, dtype: spec.dtype, shape: spec.shape, location: location)
        }
        let scratchOffset = allocator.high
        guard scratchBytes <= TensorSize.maxBytes - scratchOffset else {
            throw EngineError.invalidModel("running the model at input shapes \(inputShapes) needs \(scratchOffset) + \(scratchBytes) bytes of working memory, more than this machine's \(TensorSize.maxBytes)")
        }
        return ExecutionPlan(inputShapes: inputShapes, inputOffsets: inputOffsets, steps: steps, outputs: outputs,
                             scratchOffset: scratchOffset,
                             scratchBytes: (scratchBytes + alignment - 1) / alignment * alignment,
                             flops: steps.reduce(0) { $0 + $1.flops })
    }

    /// Multiply-add count x2 of the GEMM-shaped operators (float and quantized), for GFLOP/s
    /// (GOP/s) reports.
    static func flopCount(_ opType: String, _ inputs: [ValueSpec?], _ outputs: [ValueSpec]) -> Double {
        switch opType {
        case "Conv":
            guard let weight = inputs[1] else { return 0 }
            // Each output element needs (C/group * kernel) multiply-adds.
            return 2 * Double(outputs[0].shape.elementCount) * Double(weight.shape.dropFirst().reduce(1, *))
        case "QLinearConv", "NhwcQLinearConv", "ConvInteger":
            // Integer operations, counted like the float ones (2 per multiply-add).
            let index = opType == "ConvInteger" ? 1 : 3
            guard index < inputs.count, let weight = inputs[index] else { return 0 }
            return 2 * Double(outputs[0].shape.elementCount) * Double(weight.shape.dropFirst().reduce(1, *))
        case "QLinearMatMul", "MatMulInteger", "QGemm":
            guard let a = inputs[0] else { return 0 }
            return 2 * Double(outputs[0].shape.elementCount) * Double(a.shape.last ?? 1)
        case "Gemm", "MatMul":
            guard let a = inputs[0] else { return 0 }
            let k = opType == "Gemm" ? Double(a.shape.elementCount / outputs[0].shape[0]) : Double(a.shape.last ?? 1)
            return 2 * Double(outputs[0].shape.elementCount) * k
        default: return 0
        }
    }
}

/// First-fit offset allocator over a growing arena, with coalescing of freed blocks.
/// Offsets are multiples of `Planner.alignment`.
struct ArenaAllocator {
    private(set) var high = 0
    private var freeBlocks: [(offset: Int, size: Int)] = []

    static func rounded(_ bytes: Int) -> Int { max((bytes + Planner.alignment - 1) / Planner.alignment * Planner.alignment, Planner.alignment) }

    mutating func allocate(_ bytes: Int) -> Int {
        let size = Self.rounded(bytes)
        var best: Int?
        for (index, block) in freeBlocks.enumerated() where block.size >= size {
            if best == nil || block.size < freeBlocks[best!].size { best = index }
        }
        if let best {
            let block = freeBlocks[best]
            if block.size == size { freeBlocks.remove(at: best) } else { freeBlocks[best] = (block.offset + size, block.size - size) }
            return block.offset
        }
        // Grow: extend a free block that ends at the top, if any.
        if let last = freeBlocks.firstIndex(where: { $0.offset + $0.size == high }) {
            let block = freeBlocks.remove(at: last)
            high = block.offset + size
            return block.offset
        }
        let offset = high
        high += size
        return offset
    }

    mutating func free(_ offset: Int, _ bytes: Int) {
        var block = (offset: offset, size: Self.rounded(bytes))
        freeBlocks.removeAll { other in
            if other.offset + other.size == block.offset { block = (other.offset, other.size + block.size); return true }
            if block.offset + block.size == other.offset { block.size += other.size; return true }
            return false
        }
        // A second pass catches a neighbour on the other side after merging.
        freeBlocks.removeAll { other in
            if other.offset + other.size == block.offset { block = (other.offset, other.size + block.size); return true }
            if block.offset + block.size == other.offset { block.size += other.size; return true }
            return false
        }
        freeBlocks.append(block)
    }
}
