/// Every failure the engine reports. Load-time errors name the node, its operator and
/// what is unsupported, so nothing unsupported surfaces later at request time.
public enum EngineError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file is not a readable ONNX model (truncated, corrupt, missing external data).
    case invalidModel(String)
    /// A node uses an operator, attribute, dtype or shape the engine does not implement.
    case unsupported(node: String, op: String, reason: String)
    /// A node's inputs contradict its operator's rules (shapes that cannot broadcast, ...).
    case invalidNode(node: String, op: String, reason: String)
    /// A caller's input does not match the model (unknown name, shape, dtype, size).
    case invalidInput(String)
    /// A node needs the value of `input` (a graph input) at load time, because it determines
    /// shapes (Reshape's shape, Pad's pads, axes). Bind it with `Model.Options.boundInputs`.
    case inputNeededAtLoad(node: String, op: String, input: String)

    public var description: String {
        switch self {
        case .invalidModel(let message): return "invalid model: \(message)"
        case .unsupported(let node, let op, let reason): return "node '\(node)' (\(op)): unsupported: \(reason)"
        case .invalidNode(let node, let op, let reason): return "node '\(node)' (\(op)): \(reason)"
        case .invalidInput(let message): return "invalid input: \(message)"
        case .inputNeededAtLoad(let node, let op, let input):
            return "node '\(node)' (\(op)): input '\(input)' determines shapes and must be known when the model loads (an initializer, a value computed from shapes, or a bound input); it is request data here"
        }
    }
}
