/// Every failure a request can meet, independent of protocol. `InferenceProtocol.ErrorMapping`
/// maps each case to one HTTP status and one gRPC status code.
public enum ServingError: Error, Equatable, Sendable, CustomStringConvertible {
    case modelNotFound(String)
    case versionNotFound(model: String, version: String)
    case modelNotReady(String)
    case invalidInput(String)
    case unsupported(String)
    /// The model's queue is full: retry later.
    case queueFull(String)
    case deadlineExceeded(String)
    /// The client gave up on the request (gRPC stream reset); its result is never delivered.
    case cancelled(String)
    /// The server is shutting down or the model is being unloaded.
    case unavailable(String)
    case notFound(String)
    case methodNotAllowed(String)
    case internalError(String)

    public var message: String {
        switch self {
        case .modelNotFound(let name): return "Model with name \(name) does not exist."
        case .versionNotFound(let model, let version): return "Model \(model) has no version \(version) available."
        case .modelNotReady(let name): return "Model with name \(name) is not ready."
        case .invalidInput(let text), .unsupported(let text), .queueFull(let text), .deadlineExceeded(let text),
             .cancelled(let text), .unavailable(let text), .notFound(let text), .methodNotAllowed(let text), .internalError(let text):
            return text
        }
    }

    public var description: String { message }
}
