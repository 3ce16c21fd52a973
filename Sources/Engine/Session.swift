/// Runs a model on the calling thread. Owns one arena sized for the model's largest batch,
/// allocated once: a run allocates no tensor memory. Not thread-safe: use one session per
/// thread (sessions of one model share its weights).
public final class Session {
    public let model: Model
    /// Workers kernels may split work across; nil runs on the calling thread only.
    public let runner: (any ParallelRunner)?
    private let arena: UnsafeMutableRawPointer
    /// Per-worker scratch stride (the largest scratch of any plan).
    private let scratchStride: Int
    /// Per batch size: per step, the input and output pointers into the arena or constants.
    private var pointerTables: [Int: PointerTable] = [:]

    private struct PointerTable {
        var inputs: [UnsafeRawPointer?]
        var outputs: [UnsafeMutableRawPointer?]
        /// Start of each step's inputs/outputs in the flat arrays above.
        var inputStart: [Int]
        var outputStart: [Int]
    }

    init(model: Model, runner: (any ParallelRunner)?) {
        self.model = model
        self.runner = runner
        let width = max(runner?.width ?? 1, 1)
        scratchStride = model.plans.values.map(\.scratchBytes).max() ?? 0
        let valueBytes = model.plans.values.map(\.scratchOffset).max() ?? 0
        arena = UnsafeMutableRawPointer.allocate(byteCount: max(valueBytes + scratchStride * width, Planner.alignment),
                                                 alignment: Planner.alignment)
        for (batch, plan) in model.plans { pointerTables[batch] = makeTable(plan) }
    }

    deinit { arena.deallocate() }

    private func makeTable(_ plan: ExecutionPlan) -> PointerTable {
        var table = PointerTable(inputs: [], outputs: [], inputStart: [], outputStart: [])
        for step in plan.steps {
            table.inputStart.append(table.inputs.count)
            table.outputStart.append(table.outputs.count)
            for location in step.inputs { table.inputs.append(location.map { UnsafeRawPointer(resolve($0)) }) }
            for offset in step.outputs { table.outputs.append(offset.map { arena + $0 }) }
        }
        table.inputStart.append(table.inputs.count)
        table.outputStart.append(table.outputs.count)
        return table
    }

    private func resolve(_ location: Location) -> UnsafeMutableRawPointer {
        switch location {
        case .arena(let offset): return arena + offset
        case .constant(let tensor): return tensor.bytes
        }
    }

    /// Runs the model on `inputs` (in `model.inputs` order) and returns copies of its outputs.
    public func run(_ inputs: [HostTensor]) throws -> [HostTensor] {
        let batch = try model.batchSize(for: inputs.map(\.shape), dtypes: inputs.map(\.dtype))
        return try run(batchSize: batch, inputs: inputs.map { UnsafeRawBufferPointer(start: $0.bytes, count: $0.byteCount) }) { views in
            views.map { view in HostTensor(dtype: view.dtype, shape: view.shape, copying: view.bytes) }
        }
    }

    /// An output as the session holds it: valid only inside the `body` closure of `run`.
    public struct OutputView {
        public let name: String
        public let dtype: DType
        public let shape: Shape
        public let bytes: UnsafeRawBufferPointer
    }

    /// Copies each input's bytes (C order, `model.inputs` order, shapes as `batchSize` implies)
    /// into the arena, runs every step, and hands `body` views of the outputs without copying.
    public func run<R>(batchSize: Int, inputs: [UnsafeRawBufferPointer], _ body: ([OutputView]) throws -> R) throws -> R {
        guard let plan = model.plans[batchSize], let table = pointerTables[batchSize] else {
            throw EngineError.invalidInput("batch size \(batchSize) is outside 1...\(model.maxBatchSize)")
        }
        guard inputs.count == plan.inputOffsets.count else {
            throw EngineError.invalidInput("the model takes \(plan.inputOffsets.count) input(s), got \(inputs.count)")
        }
        for (index, input) in inputs.enumerated() {
            let expected = plan.inputShapes[index].elementCount * model.inputs[index].dtype.size
            guard input.count == expected else {
                throw EngineError.invalidInput("input '\(model.inputs[index].name)' must be \(expected) bytes for shape \(plan.inputShapes[index]), got \(input.count)")
            }
            if expected > 0 { (arena + plan.inputOffsets[index]).copyMemory(from: input.baseAddress!, byteCount: expected) }
        }
        execute(plan, table, timings: nil)
        let views = plan.outputs.map { output in
            OutputView(name: output.name, dtype: output.dtype, shape: output.shape,
                       bytes: UnsafeRawBufferPointer(start: resolve(output.location), count: output.shape.elementCount * output.dtype.size))
        }
        return try body(views)
    }

    /// Runs every step of `plan`; with `timings`, stores each step's wall time (ms) there.
    private func execute(_ plan: ExecutionPlan, _ table: PointerTable, timings: UnsafeMutablePointer<Double>?) {
        let scratch = arena + plan.scratchOffset
        table.inputs.withUnsafeBufferPointer { allInputs in
            table.outputs.withUnsafeBufferPointer { allOutputs in
                for (index, step) in plan.steps.enumerated() {
                    let inputs = UnsafeBufferPointer(rebasing: allInputs[table.inputStart[index]..<table.inputStart[index + 1]])
                    let outputs = UnsafeBufferPointer(rebasing: allOutputs[table.outputStart[index]..<table.outputStart[index + 1]])
                    let io = KernelIO(inputs: inputs, outputs: outputs, scratch: scratch, scratchStride: scratchStride, runner: runner)
                    if let timings {
                        let start = ContinuousClock.now
                        step.kernel.run(io)
                        let elapsed = ContinuousClock.now - start
                        timings[index] = Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15
                    } else {
                        step.kernel.run(io)
                    }
                }
            }
        }
    }

    /// Per-step wall time of one run at `batchSize`, in plan order (for profiling).
    public func profile(batchSize: Int, inputs: [UnsafeRawBufferPointer]) throws -> [(name: String, opType: String, milliseconds: Double, flops: Double)] {
        guard let plan = model.plans[batchSize], let table = pointerTables[batchSize] else {
            throw EngineError.invalidInput("batch size \(batchSize) is outside 1...\(model.maxBatchSize)")
        }
        var timings = [Double](repeating: 0, count: plan.steps.count)
        _ = try run(batchSize: batchSize, inputs: inputs) { _ in 0 }   // copies the inputs in
        for (index, input) in inputs.enumerated() {
            (arena + plan.inputOffsets[index]).copyMemory(from: input.baseAddress!, byteCount: input.count)
        }
        timings.withUnsafeMutableBufferPointer { execute(plan, table, timings: $0.baseAddress!) }
        return plan.steps.enumerated().map { ($1.name, $1.opType, timings[$0], $1.flops) }
    }
}
