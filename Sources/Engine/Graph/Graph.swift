/// The engine's view of an ONNX graph after loading: nodes in topological order,
/// initializers as host tensors, and the graph's declared inputs and outputs.
/// Built once at load; immutable afterwards.
struct Graph {
    var nodes: [Node]
    /// Initializers and folded constants, by value name.
    var constants: [String: HostTensor]
    /// Graph inputs that are not initializers, in declaration order.
    var inputs: [ValueInfo]
    var outputs: [ValueInfo]
    /// Version of the default ("" / "ai.onnx") operator set.
    var opset: Int
    /// Whether operators may use the engine's own vector kernels (when the CPU has AVX-512 or AVX2).
    var nativeKernels = true
}

struct Node {
    var name: String
    var opType: String
    var domain: String
    /// Input value names; "" marks an omitted optional input.
    var inputs: [String]
    /// Output value names; "" marks an omitted optional output.
    var outputs: [String]
    var attributes: [String: Attribute]
}

enum Attribute {
    case float(Float)
    case int(Int)
    case string(String)
    case tensor(HostTensor)
    case floats([Float])
    case ints([Int])
    case strings([String])
    /// A kind the engine never reads (graphs, sparse tensors, type protos); named for errors.
    case other(String)
}

/// One declared dimension: a size, or a symbolic name (a dynamic dimension).
enum Dimension: Equatable {
    case fixed(Int)
    case symbolic(String)
}

struct ValueInfo {
    var name: String
    /// nil when the declared type is not one the engine supports; `typeName` says which.
    var dtype: DType?
    var typeName: String
    /// nil when the model declares no shape.
    var dims: [Dimension]?
}
