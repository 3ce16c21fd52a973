import Serving

/// gRPC status codes (grpc/doc/statuscodes.md).
public enum GRPCStatusCode: Int, Sendable {
    case ok = 0, cancelled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4, notFound = 5, alreadyExists = 6
    case permissionDenied = 7, resourceExhausted = 8, failedPrecondition = 9, aborted = 10, outOfRange = 11
    case unimplemented = 12, internalError = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16
}

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
