/// A loaded model: a graph checked node by node, constants folded, and an execution plan
/// (kernels, shapes, arena offsets) for every batch size it accepts. Immutable and shareable
/// across threads; run it through a `Session`, one per thread.
///
///     let model = try Model(path: "resnet50.onnx", options: .init(maxBatchSize: 8))
///     let session = model.makeSession()
///     let outputs = try session.run([input])      // [HostTensor], one per model output
public final class Model: Sendable {
    public struct Options: Sendable {
        /// Largest batch a request may carry when the inputs' leading dimension is dynamic.
        public var maxBatchSize: Int
        /// Graph inputs given a fixed value at load: they become constants and leave `inputs`.
        /// For models that take shape-determining values (Reshape's shape, axes) as inputs.
        public var boundInputs: [String: HostTensor]
        /// Which convolution kernels to use.
        public var kernels: Kernels
        public init(maxBatchSize: Int = 1, boundInputs: [String: HostTensor] = [:], kernels: Kernels = .automatic) {
            self.maxBatchSize = max(1, maxBatchSize)
            self.boundInputs = boundInputs
            self.kernels = kernels
        }
    }

    public enum Kernels: String, Sendable, CaseIterable {
        /// The engine's own convolution and pooling kernels when the CPU has AVX-512 (direct
        /// convolution and packed GEMM) or AVX2 + FMA (direct convolution), otherwise OpenBLAS.
        case automatic
        /// OpenBLAS `cblas_sgemm` only.
        case blas
    }

    /// A graph input or output as callers see it; `shape[0] == -1` marks the dynamic batch dimension.
    public struct TensorInfo: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
    }

    public let inputs: [TensorInfo]
    public let outputs: [TensorInfo]
    /// Whether the inputs' leading dimension is the (dynamic) batch dimension.
    public let hasDynamicBatch: Bool
    public let maxBatchSize: Int
    /// Floating-point operations of one batch-1 run (Conv, Gemm and MatMul only).
    public let flopsPerSample: Double
    /// Bytes a session allocates for activations and one worker's scratch (at the largest batch).
    public let arenaBytes: Int
    /// Plans retain the constants their steps read; nothing else is kept.
    let plans: [Int: ExecutionPlan]

    public convenience init(path: String, options: Options = Options()) throws {
        try self.init(graph: ONNXLoader.load(path: path), options: options)
    }

    init(graph source: Graph, options: Options) throws {
        var graph = source
        graph.nativeKernels = options.kernels == .automatic && VectorISA.detected != nil
        for (name, value) in options.boundInputs {
            guard let input = graph.inputs.first(where: { $0.name == name }) else {
                throw EngineError.invalidInput("cannot bind '\(name)': the model has no such input")
            }
            if let dtype = input.dtype, dtype != value.dtype {
                throw EngineError.invalidInput("cannot bind '\(name)': the model declares \(dtype), the value is \(value.dtype)")
            }
            graph.constants[name] = value
            graph.inputs.removeAll { $0.name == name }
        }
        QDQFusion.fuse(&graph)
        let operators = try Planner.makeOperators(graph)
        try Planner.foldConstants(&graph, operators: operators)
        GraphOptimizer.optimize(&graph)
        QuantizedLayout.useChannelsLast(&graph)
        let finalOperators = try Planner.makeOperators(graph)

        // Inputs: every dimension fixed except, optionally, a leading batch dimension.
        var dynamic: Bool?
        var infos: [TensorInfo] = []
        for input in graph.inputs {
            guard let dtype = input.dtype else {
                throw EngineError.unsupported(node: input.name, op: "graph input", reason: "element type \(input.typeName)")
            }
            guard let dims = input.dims else {
                throw EngineError.unsupported(node: input.name, op: "graph input", reason: "the model declares no shape for it")
            }
            var shape: [Int] = []
            for (axis, dim) in dims.enumerated() {
                switch dim {
                case .fixed(let size): shape.append(size)
                case .symbolic(let label):
                    guard axis == 0 else {
                        throw EngineError.unsupported(node: input.name, op: "graph input",
                                                      reason: "dimension \(axis) ('\(label)') is dynamic; only the leading batch dimension may be")
                    }
                    shape.append(-1)
                }
            }
            let isDynamic = shape.first == -1
            if let dynamic, dynamic != isDynamic {
                throw EngineError.unsupported(node: input.name, op: "graph input",
                                              reason: "some inputs have a dynamic batch dimension and others do not")
            }
            dynamic = isDynamic
            infos.append(TensorInfo(name: input.name, dtype: dtype, shape: shape))
        }
        let hasDynamicBatch = dynamic ?? false
        self.hasDynamicBatch = hasDynamicBatch
        inputs = infos
        maxBatchSize = hasDynamicBatch ? options.maxBatchSize : (infos.first?.shape.first ?? 1)

        var plans: [Int: ExecutionPlan] = [:]
        let batchSizes = hasDynamicBatch ? Array(1...options.maxBatchSize) : [infos.first?.shape.first ?? 1]
        for batch in batchSizes {
            let shapes = infos.map { info in hasDynamicBatch ? [batch] + info.shape.dropFirst() : info.shape }
            plans[batch] = try Planner.plan(graph, operators: finalOperators, inputShapes: shapes)
        }
        self.plans = plans
        // An output is batched when its leading dimension follows the batch size; a second
        // plan at batch 2 tells (planned here even when maxBatchSize is 1).
        let reference = plans[batchSizes[0]]!
        var outputInfos: [TensorInfo] = []
        let probe = hasDynamicBatch ? try (plans[2] ?? Planner.plan(graph, operators: finalOperators,
                                                                    inputShapes: infos.map { [2] + $0.shape.dropFirst() })) : nil
        for (index, output) in reference.outputs.enumerated() {
            let batched = probe.map { $0.outputs[index].shape.first != output.shape.first } ?? false
            outputInfos.append(TensorInfo(name: output.name, dtype: output.dtype, shape: batched ? [-1] + output.shape.dropFirst() : output.shape))
        }
        outputs = outputInfos
        arenaBytes = plans.values.map(\.arenaBytes).max() ?? 0
        flopsPerSample = reference.flops / Double(batchSizes[0])
    }

    /// A session owns the activation arena; use one per thread. Kernels split their work
    /// across `runner`'s workers when one is given.
    public func makeSession(runner: (any ParallelRunner)? = nil) -> Session { Session(model: self, runner: runner) }

    /// The batch size a set of input shapes implies, after checking them against the model.
    func batchSize(for shapes: [Shape], dtypes: [DType]) throws -> Int {
        guard shapes.count == inputs.count else {
            throw EngineError.invalidInput("the model takes \(inputs.count) input(s) (\(inputs.map(\.name).joined(separator: ", "))), got \(shapes.count)")
        }
        var batch = maxBatchSize
        for (index, info) in inputs.enumerated() {
            let shape = shapes[index]
            if dtypes[index] != info.dtype {
                throw EngineError.invalidInput("input '\(info.name)' must be \(info.dtype), got \(dtypes[index])")
            }
            let fits = shape.count == info.shape.count && zip(shape, info.shape).allSatisfy { $1 == -1 || $0 == $1 }
            if !fits { throw EngineError.invalidInput("input '\(info.name)' must have shape \(Self.describe(info.shape)), got \(shape)") }
            if hasDynamicBatch {
                if index == 0 { batch = shape[0] } else if shape[0] != batch {
                    throw EngineError.invalidInput("input '\(info.name)' has batch \(shape[0]), input '\(inputs[0].name)' has \(batch)")
                }
            }
        }
        if hasDynamicBatch, batch < 1 || batch > maxBatchSize {
            throw EngineError.invalidInput("batch size \(batch) is outside 1...\(maxBatchSize)")
        }
        return batch
    }

    static func describe(_ shape: [Int]) -> String {
        "[" + shape.map { $0 == -1 ? "-1" : String($0) }.joined(separator: ", ") + "]"
    }
}
