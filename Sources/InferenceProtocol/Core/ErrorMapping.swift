import Serving
import WireFormat

/// The one table from `ServingError` to protocol statuses.
public enum ErrorMapping {
    public static func httpStatus(_ error: ServingError) -> Int {
        switch error {
        case .modelNotFound, .versionNotFound, .notFound: return 404
        case .modelNotReady, .unavailable, .queueFull: return 503
        case .invalidInput: return 400
        case .unsupported: return 501
        case .deadlineExceeded: return 504
        case .cancelled: return 499
        case .methodNotAllowed: return 405
        case .internalError: return 500
        }
    }

    public static func grpcStatus(_ error: ServingError) -> GRPCStatusCode {
        switch error {
        case .modelNotFound, .versionNotFound, .notFound: return .notFound
        case .modelNotReady, .unavailable: return .unavailable
        case .invalidInput: return .invalidArgument
        case .unsupported, .methodNotAllowed: return .unimplemented
        case .queueFull: return .resourceExhausted
        case .deadlineExceeded: return .deadlineExceeded
        case .cancelled: return .cancelled
        case .internalError: return .internalError
        }
    }

    /// The label `/metrics` counts a failure under.
    public static func outcome(_ error: ServingError) -> String {
        switch error {
        case .modelNotFound, .versionNotFound, .notFound: return "not_found"
        case .modelNotReady, .unavailable: return "unavailable"
        case .invalidInput: return "invalid_input"
        case .unsupported, .methodNotAllowed: return "unsupported"
        case .queueFull: return "queue_full"
        case .deadlineExceeded: return "deadline_exceeded"
        case .cancelled: return "cancelled"
        case .internalError: return "internal_error"
        }
    }
}
