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

    public var description: String {
        switch self {
        case .invalidModel(let message): return "invalid model: \(message)"
        case .unsupported(let node, let op, let reason): return "node '\(node)' (\(op)): unsupported: \(reason)"
        case .invalidNode(let node, let op, let reason): return "node '\(node)' (\(op)): \(reason)"
        case .invalidInput(let message): return "invalid input: \(message)"
        }
    }
}
