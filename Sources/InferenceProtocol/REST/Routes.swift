import Serving
import WireFormat

/// A REST request as the protocol layer sees it (transport-independent).
public struct RESTRequest: Sendable {
    public var method: String
    /// Path without the query string, not yet percent-decoded.
    public var path: String
    /// (lower-cased name, value) pairs.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(method: String, path: String, headers: [(String, String)], body: [UInt8]) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? { HeaderList.first(name, in: headers) }
}

public struct RESTResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: Int, _ body: [UInt8]) -> RESTResponse {
        RESTResponse(status: status, headers: [("Content-Type", "application/json")], body: body)
    }
}

/// Every REST endpoint the server answers, parsed from method and path.
enum Route: Equatable {
    // KServe V1 / TF Serving (paths under /v1 are matched case-insensitively, like TF Serving)
    case serverLive                                   // GET /
    case v1ListModels                                 // GET /v1/models
    case v1ModelStatus(String, VersionSelector?)      // GET /v1/models/<m>[/versions/<v>|/labels/<l>]
    case v1ModelMetadata(String, VersionSelector?)    // GET .../metadata
    case v1Predict(String, VersionSelector?)          // POST .../<m>[...]:predict
    case v1Examples(String, VersionSelector?, String) // POST ...:classify / :regress (model, version, verb)
    case v1Unimplemented(String, String)              // :explain (model, verb)
    // Open Inference Protocol V2
    case v2Server                                     // GET /v2
    case v2Live, v2Ready                              // GET /v2/health/live|ready
    case v2ListModels                                 // GET /v2/models (KServe)
    case v2ModelMetadata(String, Int?)                // GET /v2/models/<m>[/versions/<v>]
    case v2ModelReady(String, Int?)
    case v2ModelConfig(String, Int?)
    case v2Infer(String, Int?)
    case v2RepositoryIndex
    case v2RepositoryLoad(String), v2RepositoryUnload(String)
    case metrics
    case notFound
    /// The path exists but not for this method; `allow` lists the methods it takes.
    case methodNotAllowed(allow: String)

    static func parse(method: String, path rawPath: String) throws(ServingError) -> Route {
        let path = rawPath.count > 1 && rawPath.hasSuffix("/") ? String(rawPath.dropLast()) : rawPath
        let get = method == "GET" || method == "HEAD", post = method == "POST"
        if path == "/" || path.isEmpty { return get ? .serverLive : .methodNotAllowed(allow: "GET, HEAD") }
        if path == "/metrics" { return get ? .metrics : .methodNotAllowed(allow: "GET, HEAD") }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard let root = segments.first else { return .notFound }
        if root.lowercased() == "v1" { return try parseV1(get: get, post: post, Array(segments.dropFirst()), path: path, method: method) }
        if root == "v2" { return try parseV2(get: get, post: post, Array(segments.dropFirst())) }
        return .notFound
    }

    private static func parseV1(get: Bool, post: Bool, _ segments: [String], path: String, method: String) throws(ServingError) -> Route {
        guard let first = segments.first, first.lowercased() == "models" else { return .notFound }
        var rest = Array(segments.dropFirst())
        if rest.isEmpty { return get ? .v1ListModels : .methodNotAllowed(allow: "GET, HEAD") }
        // The last segment may carry ":verb".
        var verb: String?
        if let colon = rest[rest.count - 1].lastIndex(of: ":") {
            verb = String(rest[rest.count - 1][rest[rest.count - 1].index(after: colon)...]).lowercased()
            rest[rest.count - 1] = String(rest[rest.count - 1][..<colon])
        }
        let model = try percentDecoded(rest.removeFirst())
        var selector: VersionSelector?
        var metadata = false
        if rest.count >= 2 {
            switch rest[0].lowercased() {
            case "versions":
                guard let number = Int(rest[1]), rest[1].allSatisfy(\.isNumber) else {
                    throw .invalidInput("Malformed request: \(method) \(path)")
                }
                selector = .number(number)
            case "labels": selector = .label(try percentDecoded(rest[1]))
            default: throw .invalidInput("Malformed request: \(method) \(path)")
            }
            rest.removeFirst(2)
        }
        if rest.count == 1 && rest[0].lowercased() == "metadata" { metadata = true; rest.removeFirst() }
        guard rest.isEmpty, !model.isEmpty else { throw .invalidInput("Malformed request: \(method) \(path)") }
        if let verb {
            guard post else { return .methodNotAllowed(allow: "POST") }
            switch verb {
            case "predict": return .v1Predict(model, selector)
            case "classify", "regress": return .v1Examples(model, selector, verb)
            case "explain": return .v1Unimplemented(model, verb)
            default: throw .invalidInput("Malformed request: \(method) \(path)")
            }
        }
        guard get else { return .methodNotAllowed(allow: "GET, HEAD") }
        return metadata ? .v1ModelMetadata(model, selector) : .v1ModelStatus(model, selector)
    }

    private static func parseV2(get: Bool, post: Bool, _ segments: [String]) throws(ServingError) -> Route {
        if segments.isEmpty { return get ? .v2Server : .methodNotAllowed(allow: "GET, HEAD") }
        switch segments[0] {
        case "health":
            guard segments.count == 2 else { return .notFound }
            guard get else { return .methodNotAllowed(allow: "GET, HEAD") }
            switch segments[1] {
            case "live": return .v2Live
            case "ready": return .v2Ready
            default: return .notFound
            }
        case "repository":
            if segments == ["repository", "index"] { return post ? .v2RepositoryIndex : .methodNotAllowed(allow: "POST") }
            if segments.count == 4 && segments[1] == "models" {
                let model = try percentDecoded(segments[2])
                guard post else { return .methodNotAllowed(allow: "POST") }
                switch segments[3] {
                case "load": return .v2RepositoryLoad(model)
                case "unload": return .v2RepositoryUnload(model)
                default: return .notFound
                }
            }
            return .notFound
        case "models":
            if segments.count == 1 { return get ? .v2ListModels : .methodNotAllowed(allow: "GET, HEAD") }
            let model = try percentDecoded(segments[1])
            var rest = Array(segments.dropFirst(2))
            var version: Int?
            if rest.count >= 2 && rest[0] == "versions" {
                guard let number = Int(rest[1]), rest[1].allSatisfy(\.isNumber) else {
                    throw .invalidInput("version '\(rest[1])' is not a number")
                }
                version = number
                rest.removeFirst(2)
            }
            switch rest {
            case []: return get ? .v2ModelMetadata(model, version) : .methodNotAllowed(allow: "GET, HEAD")
            case ["ready"]: return get ? .v2ModelReady(model, version) : .methodNotAllowed(allow: "GET, HEAD")
            case ["config"]: return get ? .v2ModelConfig(model, version) : .methodNotAllowed(allow: "GET, HEAD")
            case ["infer"]: return post ? .v2Infer(model, version) : .methodNotAllowed(allow: "POST")
            default: return .notFound
            }
        default:
            return .notFound
        }
    }

    static func percentDecoded(_ text: String) throws(ServingError) -> String {
        do {
            return try PercentEncoding.decodePathSegment(text)
        } catch {
            switch error {
            case .malformed: throw .invalidInput("bad percent-encoding in '\(text)'")
            case .notUTF8: throw .invalidInput("'\(text)' is not UTF-8")
            }
        }
    }
}
