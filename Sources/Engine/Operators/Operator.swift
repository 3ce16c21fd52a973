import Synchronization

/// Operator contract. Each ONNX operator is one type that
///  1. parses and validates its attributes in `init(_:)` (load time), and
///  2. in `prepare(_:)`, given its inputs' dtypes and concrete shapes (and the values of inputs
///     known before any request arrives), checks them, computes its outputs' dtypes and shapes,
///     and returns a `Kernel` specialised to those shapes.
/// Kernels only move and compute bytes: every shape decision was made in `prepare`.

/// What the planner knows about one input when preparing a node.
struct ValueSpec {
    var dtype: DType
    var shape: Shape
    /// The tensor's elements when known at plan time (initializers, folded shape arithmetic).
    var value: HostTensor?

    init(dtype: DType, shape: Shape, value: HostTensor? = nil) {
        self.dtype = dtype
        self.shape = shape
        self.value = value
    }

    init(_ tensor: HostTensor) { self.init(dtype: tensor.dtype, shape: tensor.shape, value: tensor) }
}

/// Threads a caller lends the engine. The engine never creates threads: a session runs its
/// kernels on the thread that calls `run`, and a kernel may split its work across the
/// workers of the runner the session was given.
public protocol ParallelRunner: AnyObject, Sendable {
    /// Number of workers, the calling thread included (worker 0). At least 1.
    var width: Int { get }
    /// Calls `body(0)` on the calling thread and, concurrently, `body(worker)` for workers in
    /// 1..<width that are free to start before `body(0)` returns (any subset, possibly none:
    /// a runner need not wait for a thread that is not running); returns when every call has
    /// returned. Callers therefore claim work dynamically, never by worker index. Not reentrant.
    func forEachWorker(_ body: (Int) -> Void)
}

/// Pointers a kernel reads and writes, valid only during `run`.
/// `inputs[i]` is nil for an omitted optional input; `outputs[i]` for an omitted output
/// points at a scratch-sized dummy only if the kernel declared it, else it is never written.
struct KernelIO {
    var inputs: UnsafeBufferPointer<UnsafeRawPointer?>
    var outputs: UnsafeBufferPointer<UnsafeMutableRawPointer?>
    /// Worker 0's scratch: `Prepared.scratchBytes` bytes, 64-byte aligned, contents undefined on entry.
    var scratch: UnsafeMutableRawPointer?
    /// Distance between consecutive workers' scratch areas.
    var scratchStride: Int = 0
    /// Workers for splitting the kernel's work; nil runs everything on the calling thread.
    var runner: (any ParallelRunner)? = nil

    /// The scratch area of `worker`.
    @inline(__always) func scratch(worker: Int) -> UnsafeMutableRawPointer? { scratch.map { $0 + worker * scratchStride } }

    /// Number of workers available (1 without a runner).
    var width: Int { runner?.width ?? 1 }

    /// Runs `body(item, worker)` once for every item in 0..<count; free workers claim the next
    /// item in order, so a worker slowed down (a preempted vCPU, a cache-cold start) takes
    /// fewer items instead of holding the others at the end. Items should cost at least
    /// microseconds (one atomic increment each).
    func parallelItems(_ count: Int, _ body: (Int, Int) -> Void) {
        guard let runner, runner.width > 1, count > 1 else {
            for item in 0..<count { body(item, 0) }
            return
        }
        let next = Atomic<Int>(0)
        runner.forEachWorker { worker in
            while true {
                let item = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard item < count else { return }
                body(item, worker)
            }
        }
    }

    /// Splits 0..<count into one contiguous range per worker (equal shares) and runs
    /// `body(range, worker)` for each; a worker may take several ranges (one that did not
    /// start in time leaves its share to the others). Runs inline when there is one worker.
    func parallelRanges(_ count: Int, _ body: (Range<Int>, Int) -> Void) {
        guard let runner, runner.width > 1, count > 1 else { body(0..<count, 0); return }
        let parts = min(runner.width, count)
        let next = Atomic<Int>(0)
        runner.forEachWorker { worker in
            while true {
                let part = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard part < parts else { return }
                body(part * count / parts ..< (part + 1) * count / parts, worker)
            }
        }
    }

    @inline(__always) func input<T>(_ index: Int, _ type: T.Type) -> UnsafePointer<T> {
        inputs[index]!.assumingMemoryBound(to: type)
    }
    @inline(__always) func output<T>(_ index: Int, _ type: T.Type) -> UnsafeMutablePointer<T> {
        outputs[index]!.assumingMemoryBound(to: type)
    }
}

/// Computes a node for the concrete shapes it was prepared with. Called from the caller's
/// thread; kernels hold no mutable state, so one kernel may run on several threads at once.
protocol Kernel: Sendable {
    func run(_ io: KernelIO)
}

/// A kernel written as a closure, for operators whose work is a few lines.
struct ClosureKernel: Kernel {
    let body: @Sendable (KernelIO) -> Void
    func run(_ io: KernelIO) { body(io) }
}

struct Prepared {
    /// Output dtypes and shapes; `value` set means the output is known now and needs no kernel.
    var outputs: [ValueSpec]
    var kernel: (any Kernel)?
    var scratchBytes: Int = 0
    /// Output 0 shares input 0's bytes (reshape family): no kernel runs, no memory is planned.
    var aliasesFirstInput = false
    /// Inputs the kernel never reads (it holds a transformed copy, like packed weights): the
    /// step gets nil for them, so the model need not keep them.
    var unusedInputs: Set<Int> = []
}

protocol Operator: Sendable {
    /// Validates the node's attributes. Throws `EngineError.unsupported` / `.invalidNode`.
    init(_ node: NodeContext) throws
    /// Checks input dtypes and shapes and returns output specs plus the kernel to run.
    func prepare(_ inputs: [ValueSpec?], _ node: NodeContext) throws -> Prepared
}

/// A node as its operator sees it: name, opset, attributes, with typed accessors whose
/// errors name the node.
struct NodeContext: Sendable {
    let name: String
    let opType: String
    let opset: Int
    /// Whether the engine's own vector kernels may be used (option and CPU, see `VectorISA`).
    let nativeKernels: Bool
    let inputCount: Int
    /// Graph value names of the inputs ("" for omitted ones), for error messages.
    let inputNames: [String]
    let outputCount: Int
    /// Which outputs the graph consumes ("" outputs are omitted).
    let outputsUsed: [Bool]
    nonisolated(unsafe) let attributes: [String: Attribute]

    func unsupported(_ reason: String) -> EngineError { .unsupported(node: name, op: opType, reason: reason) }
    func invalid(_ reason: String) -> EngineError { .invalidNode(node: name, op: opType, reason: reason) }

    func has(_ key: String) -> Bool { attributes[key] != nil }

    /// Integer attributes are axes, sizes, counts and codes: any magnitude beyond Int32 is
    /// refused here, so the operators' arithmetic on them (with dimensions, which
    /// `TensorSize` bounds) cannot overflow. Slice's starts/ends, whose ONNX idiom is
    /// INT64_MAX, are read with `unbounded`.
    static let attributeLimit = Int(Int32.max)

    private func bounded(_ key: String, _ values: [Int], _ unbounded: Bool) throws -> [Int] {
        if !unbounded, let bad = values.first(where: { $0 < -Self.attributeLimit || $0 > Self.attributeLimit }) {
            throw invalid("attribute '\(key)' has the value \(bad), beyond the +-\(Self.attributeLimit) an axis, size or count can have")
        }
        return values
    }

    func int(_ key: String, default value: Int) throws -> Int {
        switch attributes[key] {
        case nil: return value
        case .int(let v)?: return try bounded(key, [v], false)[0]
        default: throw invalid("attribute '\(key)' must be an int")
        }
    }
    func float(_ key: String, default value: Float) throws -> Float {
        switch attributes[key] {
        case nil: return value
        case .float(let v)?: return v
        case .int(let v)?: return Float(v)
        default: throw invalid("attribute '\(key)' must be a float")
        }
    }
    func string(_ key: String, default value: String) throws -> String {
        switch attributes[key] {
        case nil: return value
        case .string(let v)?: return v
        default: throw invalid("attribute '\(key)' must be a string")
        }
    }
    func ints(_ key: String, unbounded: Bool = false) throws -> [Int]? {
        switch attributes[key] {
        case nil: return nil
        case .ints(let v)?: return try bounded(key, v, unbounded)
        case .int(let v)?: return try bounded(key, [v], unbounded)
        default: throw invalid("attribute '\(key)' must be a list of ints")
        }
    }
    func floats(_ key: String) throws -> [Float]? {
        switch attributes[key] {
        case nil: return nil
        case .floats(let v)?: return v
        case .float(let v)?: return [v]
        default: throw invalid("attribute '\(key)' must be a list of floats")
        }
    }
    /// Rejects attributes the operator does not implement, so models never run with a
    /// silently ignored setting.
    func allowOnly(_ keys: Set<String>) throws {
        for key in attributes.keys where !keys.contains(key) {
            throw unsupported("attribute '\(key)'")
        }
    }

    /// Input `index` must be present.
    func required(_ inputs: [ValueSpec?], _ index: Int, _ label: String) throws -> ValueSpec {
        guard index < inputs.count, let spec = inputs[index] else { throw invalid("missing input \(label)") }
        return spec
    }
    /// Input `index`, absent if omitted.
    func optional(_ inputs: [ValueSpec?], _ index: Int) -> ValueSpec? {
        index < inputs.count ? inputs[index] : nil
    }
    /// The plan-time value of an input that the engine needs before running (shapes, axes, pads).
    func known(_ inputs: [ValueSpec?], _ index: Int, _ label: String) throws -> HostTensor? {
        guard let spec = optional(inputs, index) else { return nil }
        guard let value = spec.value else {
            throw EngineError.inputNeededAtLoad(node: name, op: opType, input: index < inputNames.count ? inputNames[index] : label)
        }
        return value
    }
    func requireFloat(_ spec: ValueSpec, _ label: String) throws {
        if spec.dtype != .float32 { throw unsupported("input \(label) has dtype \(spec.dtype); only float32 is implemented") }
    }
    /// Normalises a possibly negative axis against `rank`: the result is in 0..<rank, so it
    /// indexes the shape. A scalar (rank 0) has no axis: any value throws.
    func axis(_ value: Int, rank: Int) throws -> Int {
        guard rank > 0 else { throw invalid("axis \(value) given for a scalar (rank-0) input, which has no axes") }
        let axis = value < 0 ? value + rank : value
        guard axis >= 0, axis < rank else { throw invalid("axis \(value) is out of range for rank \(rank)") }
        return axis
    }
}

/// The operators the engine implements, by ONNX op type (default domain); `arity` also covers
/// the com.microsoft operators of `ContribOperatorRegistry`.
enum OperatorRegistry {
    /// How many inputs and outputs (omitted ones, "", included) a node of each type may list,
    /// checked before anything (the graph optimizer included) indexes them. From the ONNX
    /// operator specifications (all opsets up to `ONNXLoader.newestOpset`); a fused Conv
    /// carries a 4th input (`GraphOptimizer.fusedResidualKey`).
    static func arity(_ opType: String) -> (inputs: ClosedRange<Int>, outputs: ClosedRange<Int>) {
        let many = Int.max
        switch opType {
        case "Conv": return (2...4, 1...1)
        case "Gemm": return (2...3, 1...1)
        case "MatMul", "Add", "Sub", "Mul", "Div", "Gather": return (2...2, 1...1)
        case "BatchNormalization": return (5...5, 1...5)
        case "Clip": return (1...3, 1...1)
        case "Sum", "Max", "Min", "Concat": return (1...many, 1...1)
        case "MaxPool": return (1...1, 1...2)
        case "Split": return (1...2, 1...many)
        case "Slice": return (1...5, 1...1)
        case "Pad": return (1...4, 1...1)
        case "Reshape", "Squeeze", "Unsqueeze", "ReduceMean": return (1...2, 1...1)
        case "Dropout": return (1...3, 1...2)
        case "Constant": return (0...0, 1...1)
        // Quantization (ONNX, and onnxruntime's com.microsoft contrib operators).
        case "QuantizeLinear", "DequantizeLinear": return (2...3, 1...1)
        case "DynamicQuantizeLinear": return (1...1, 3...3)
        case "QLinearConv", "NhwcQLinearConv": return (8...9, 1...1)
        case "QLinearMatMul": return (8...8, 1...1)
        case "ConvInteger", "MatMulInteger": return (2...4, 1...1)
        case "QGemm": return (6...9, 1...1)
        case "QLinearAdd", "QLinearMul": return (7...8, 1...1)
        case "QLinearAveragePool", "QLinearGlobalAveragePool": return (4...5, 1...1)
        case "QLinearConcat": return (5...many, 1...1)
        default: return (1...1, 1...1)
        }
    }

    static let types: [String: any Operator.Type] = [
        "Conv": ConvOperator.self,
        "Gemm": GemmOperator.self,
        "MatMul": MatMulOperator.self,
        "BatchNormalization": BatchNormalizationOperator.self,
        "Relu": UnaryOperator.self, "LeakyRelu": UnaryOperator.self, "Sigmoid": UnaryOperator.self,
        "HardSigmoid": UnaryOperator.self, "HardSwish": UnaryOperator.self, "Tanh": UnaryOperator.self,
        "Clip": ClipOperator.self,
        "Add": BinaryOperator.self, "Sub": BinaryOperator.self, "Mul": BinaryOperator.self, "Div": BinaryOperator.self,
        "Sum": SumOperator.self,
        "MaxPool": AnyTypePoolOperator.self, "AveragePool": AnyTypePoolOperator.self,
        "GlobalAveragePool": GlobalPoolOperator.self, "GlobalMaxPool": GlobalPoolOperator.self,
        "LRN": LRNOperator.self,
        "Concat": ConcatOperator.self,
        "Split": SplitOperator.self,
        "Slice": SliceOperator.self,
        "Pad": PadOperator.self,
        "Reshape": ReshapeOperator.self, "Flatten": ReshapeOperator.self, "Squeeze": ReshapeOperator.self,
        "Unsqueeze": ReshapeOperator.self, "Identity": ReshapeOperator.self, "Dropout": ReshapeOperator.self,
        "Transpose": TransposeOperator.self,
        "Softmax": SoftmaxOperator.self,
        "Shape": ShapeOperator.self,
        "Gather": GatherOperator.self,
        "Constant": ConstantOperator.self,
        "ConstantOfShape": ConstantOfShapeOperator.self,
        "Cast": CastOperator.self,
        "ReduceMean": ReduceMeanOperator.self,
        "Sqrt": FloatUnaryOperator.self, "Reciprocal": FloatUnaryOperator.self, "Neg": FloatUnaryOperator.self,
        "Exp": FloatUnaryOperator.self, "Abs": FloatUnaryOperator.self, "Softplus": FloatUnaryOperator.self,
        "Elu": FloatUnaryOperator.self,
        "Max": MinMaxOperator.self, "Min": MinMaxOperator.self,
        // Quantization (Quantization.swift, QuantizedConv.swift, QuantizedMatMul.swift).
        "QuantizeLinear": QuantizeLinearOperator.self, "DequantizeLinear": DequantizeLinearOperator.self,
        "DynamicQuantizeLinear": DynamicQuantizeLinearOperator.self,
        "QLinearConv": QuantizedConvOperator.self, "ConvInteger": QuantizedConvOperator.self,
        "QLinearMatMul": QuantizedMatMulOperator.self, "MatMulInteger": QuantizedMatMulOperator.self,
    ]
}
