import Synchronization
import WireFormat

/// One unary gRPC call as Transport delivers it: the un-framed request message and what the
/// headers said. Transport knows nothing of what the message means.
public struct GRPCRequest: Sendable {
    /// `:path`, e.g. "/inference.GRPCInferenceService/ModelInfer".
    public var path: String
    /// Request metadata (pseudo-headers removed), names lowercase.
    public var headers: HTTPHeaders
    /// The request message (protobuf bytes, without the 5-byte prefix).
    public var message: [UInt8]
    /// From `grpc-timeout`: CLOCK_MONOTONIC seconds after which the answer is DEADLINE_EXCEEDED.
    public var deadline: Double?
    /// Turns cancelled when the client resets the stream or the deadline passes.
    public let cancellation: GRPCCancellation
}

/// Set on the loop thread when a call is abandoned; read from any thread.
public final class GRPCCancellation: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public var isCancelled: Bool { flag.load(ordering: .acquiring) }
    func cancel() { flag.store(true, ordering: .releasing) }
}

/// The answer to a unary call: `payload` (the response message) only with status 0.
public struct GRPCResponse: Sendable {
    /// A gRPC status code (0 OK ... 16 UNAUTHENTICATED).
    public var status: Int
    /// `grpc-message`, unencoded ("" for none); Transport percent-encodes it.
    public var message: String
    public var payload: [UInt8]?

    public init(status: Int, message: String = "", payload: [UInt8]? = nil) {
        self.status = status
        self.message = message
        self.payload = payload
    }

    static let cancelled = GRPCStatusCode.cancelled.rawValue, deadlineExceeded = GRPCStatusCode.deadlineExceeded.rawValue,
               resourceExhausted = GRPCStatusCode.resourceExhausted.rawValue, unimplemented = GRPCStatusCode.unimplemented.rawValue,
               internalError = GRPCStatusCode.internalError.rawValue
}

/// Sends the answer to one call. Thread-safe; call `send` once. Later calls and calls after the
/// client went away are ignored.
public struct GRPCResponder: Sendable {
    let deliver: @Sendable (GRPCResponse) -> Void

    public func send(_ response: GRPCResponse) { deliver(response) }
}

/// Answers gRPC calls. Called on an event-loop thread; must not block.
public protocol GRPCHandler: Sendable {
    /// Called once per call on an event-loop thread (for a compressed message: on the thread
    /// the server's `HTTPHandler.offload` ran its inflation on). Must not block.
    func handle(_ request: GRPCRequest, responder: GRPCResponder)
    /// False for client- or bidi-streaming methods: those are handed over as soon as their
    /// headers arrive (with an empty message), so the handler can refuse them at once.
    func isUnary(path: String) -> Bool
}

extension GRPCHandler {
    public func isUnary(path: String) -> Bool { true }
}

/// gRPC's wire details that do not depend on HTTP/2 itself.
public enum GRPCWire {
    // The wire details themselves live in WireFormat (shared with model-client); these
    // names keep Transport's callers and tests as they are.

    /// Seconds from a `grpc-timeout` value; nil when malformed (`GRPCFraming.timeoutSeconds`).
    public static func timeoutSeconds(_ value: String) -> Double? { GRPCFraming.timeoutSeconds(value) }

    /// `grpc-message` encoding (`PercentEncoding.encodeGRPCMessage`).
    public static func percentEncode(_ message: String) -> String { PercentEncoding.encodeGRPCMessage(message) }

    /// The 5-byte prefix of an uncompressed message of `length` bytes (`GRPCFraming.prefix`).
    public static func prefix(length: Int) -> [UInt8] { GRPCFraming.prefix(length: length) }

    /// A message with its 5-byte prefix.
    public static func frame(_ message: [UInt8]) -> [UInt8] { GRPCFraming.frame(message) }

    enum Unframed {
        /// The message, still compressed with `compressedWith` (a grpc-encoding) if not nil.
        case message([UInt8], compressedWith: String?)
        case rejected(GRPCResponse)
    }

    /// Why a gRPC request (content-type application/grpc...) cannot be served, if it cannot:
    /// calls are POSTs of protobuf (`application/grpc`, `+proto`, optional parameters); JSON
    /// and gRPC-Web codecs are not spoken.
    static func checkRequest(method: String, contentType: String) -> GRPCResponse? {
        if method != "POST" {
            return GRPCResponse(status: GRPCResponse.unimplemented, message: "gRPC calls are POST requests, not \(method)")
        }
        let subtype = (contentType.split(separator: ";", maxSplits: 1).first ?? "").filter { $0 != " " && $0 != "\t" }.lowercased()
        if subtype != "application/grpc" && subtype != "application/grpc+proto" {
            return GRPCResponse(status: GRPCResponse.unimplemented,
                                message: "content-type '\(contentType)' is not supported: send application/grpc (protobuf messages)")
        }
        return nil
    }

    /// Checks a unary request body, received as its first 5 bytes (`prefix`, fewer when the
    /// body was shorter) and the rest (`message`), and answers its one message (with
    /// `encoding`, the grpc-encoding header, when the prefix flags it compressed: inflate it
    /// with `decompress`) or what is wrong.
    static func unframeUnary(prefix: [UInt8], message: [UInt8], encoding: String?, maxMessageBytes: Int) -> Unframed {
        guard prefix.count == 5 else {
            return .rejected(GRPCResponse(status: GRPCResponse.unimplemented,
                                         message: prefix.isEmpty ? "a unary call needs one request message; none was sent"
                                                                 : "truncated gRPC message prefix (\(prefix.count) bytes)"))
        }
        let length = messageLength(prefix)
        if length > maxMessageBytes {
            return .rejected(tooLarge(length, limit: maxMessageBytes))
        }
        guard message.count >= length else {
            return .rejected(GRPCResponse(status: GRPCResponse.internalError,
                                         message: "gRPC message truncated: prefix says \(length) bytes, \(message.count) arrived"))
        }
        guard message.count == length else {
            return .rejected(GRPCResponse(status: GRPCResponse.unimplemented,
                                         message: "a unary call takes exactly one request message; more were sent"))
        }
        guard prefix[0] != 0 else { return .message(message, compressedWith: nil) }
        guard let encoding, !ContentCoding.isIdentity(encoding) else {
            return .rejected(GRPCResponse(status: GRPCResponse.internalError,
                                         message: "the message is flagged compressed but grpc-encoding names no compression"))
        }
        return .message(message, compressedWith: encoding)
    }

    /// A compressed message inflated per `encoding` (gzip, deflate), or the status saying why
    /// not. CPU-heavy for large messages: call it off the event loop.
    static func decompress(_ message: [UInt8], encoding: String, maxMessageBytes: Int) -> Unframed {
        do {
            return .message(try ContentCoding.decode(message, coding: encoding, limit: maxMessageBytes), compressedWith: nil)
        } catch {
            switch error {
            case .unsupported:
                return .rejected(GRPCResponse(status: GRPCResponse.unimplemented,
                                             message: "grpc-encoding '\(encoding)' is not supported; use gzip, deflate or identity"))
            case .corrupt(let text): return .rejected(GRPCResponse(status: GRPCResponse.internalError, message: "compressed gRPC message: \(text)"))
            case .tooLarge:
                return .rejected(GRPCResponse(status: GRPCResponse.resourceExhausted,
                                             message: "decompressed gRPC message exceeds the server's limit of \(maxMessageBytes) bytes"))
            }
        }
    }

    /// The big-endian length in a message prefix; `bytes` holds at least 5 bytes.
    static func messageLength(_ bytes: [UInt8]) -> Int { GRPCFraming.messageLength(bytes) }

    static func tooLarge(_ length: Int, limit: Int) -> GRPCResponse {
        GRPCResponse(status: GRPCResponse.resourceExhausted,
                     message: "gRPC message of \(length) bytes exceeds the server's limit of \(limit) bytes")
    }
}
