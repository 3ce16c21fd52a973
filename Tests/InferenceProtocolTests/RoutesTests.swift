import Testing
@testable import InferenceProtocol
@testable import Serving
import WireFormat

struct RoutesTests {
    @Test func v1AndTFServingPaths() throws {
        #expect(try Route.parse(method: "GET", path: "/") == .serverLive)
        #expect(try Route.parse(method: "GET", path: "/v1/models") == .v1ListModels)
        #expect(try Route.parse(method: "GET", path: "/v1/models/m") == .v1ModelStatus("m", nil))
        #expect(try Route.parse(method: "GET", path: "/V1/Models/m/versions/3") == .v1ModelStatus("m", .number(3)))
        #expect(try Route.parse(method: "GET", path: "/v1/models/m/labels/stable/metadata") == .v1ModelMetadata("m", .label("stable")))
        #expect(try Route.parse(method: "POST", path: "/v1/models/m:predict") == .v1Predict("m", nil))
        #expect(try Route.parse(method: "POST", path: "/v1/models/m/versions/2:predict") == .v1Predict("m", .number(2)))
        #expect(try Route.parse(method: "POST", path: "/v1/models/m:classify") == .v1Examples("m", nil, "classify"))
        #expect(try Route.parse(method: "POST", path: "/v1/models/m/versions/3:regress") == .v1Examples("m", .number(3), "regress"))
        #expect(try Route.parse(method: "POST", path: "/v1/models/m:explain") == .v1Unimplemented("m", "explain"))
        #expect(try Route.parse(method: "POST", path: "/v1/models/my%20model:predict") == .v1Predict("my model", nil))
        #expect(try Route.parse(method: "GET", path: "/v1/models/m:predict") == .methodNotAllowed(allow: "POST"))
        #expect(throws: ServingError.self) { try Route.parse(method: "GET", path: "/v1/models/m/versions/x") }
        #expect(throws: ServingError.self) { try Route.parse(method: "POST", path: "/v1/models/m:bogus") }
    }

    @Test func v2Paths() throws {
        #expect(try Route.parse(method: "GET", path: "/v2") == .v2Server)
        #expect(try Route.parse(method: "GET", path: "/v2/health/live") == .v2Live)
        #expect(try Route.parse(method: "GET", path: "/v2/health/ready") == .v2Ready)
        #expect(try Route.parse(method: "GET", path: "/v2/models/m") == .v2ModelMetadata("m", nil))
        #expect(try Route.parse(method: "GET", path: "/v2/models/m/versions/4/ready") == .v2ModelReady("m", 4))
        #expect(try Route.parse(method: "POST", path: "/v2/models/m/infer") == .v2Infer("m", nil))
        #expect(try Route.parse(method: "POST", path: "/v2/models/m/versions/1/infer") == .v2Infer("m", 1))
        #expect(try Route.parse(method: "GET", path: "/v2/models/m/infer") == .methodNotAllowed(allow: "POST"))
        #expect(try Route.parse(method: "PUT", path: "/v2/models/m") == .methodNotAllowed(allow: "GET, HEAD"))
        #expect(try Route.parse(method: "POST", path: "/v2/repository/index") == .v2RepositoryIndex)
        #expect(try Route.parse(method: "POST", path: "/v2/repository/models/m/load") == .v2RepositoryLoad("m"))
        #expect(try Route.parse(method: "POST", path: "/v2/repository/models/m/unload") == .v2RepositoryUnload("m"))
        #expect(try Route.parse(method: "GET", path: "/v2/nothing") == .notFound)
        #expect(try Route.parse(method: "GET", path: "/metrics") == .metrics)
    }

    /// Every ServingError case has one HTTP status, one gRPC code and one metrics label.
    @Test(arguments: [
        (ServingError.modelNotFound("m"), 404, GRPCStatusCode.notFound),
        (.versionNotFound(model: "m", version: "2"), 404, .notFound),
        (.modelNotReady("m"), 503, .unavailable),
        (.invalidInput("x"), 400, .invalidArgument),
        (.unsupported("x"), 501, .unimplemented),
        (.queueFull("x"), 503, .resourceExhausted),
        (.deadlineExceeded("x"), 504, .deadlineExceeded),
        (.cancelled("x"), 499, .cancelled),
        (.unavailable("x"), 503, .unavailable),
        (.notFound("x"), 404, .notFound),
        (.methodNotAllowed("x"), 405, .unimplemented),
        (.internalError("x"), 500, .internalError),
    ])
    func errorTable(_ error: ServingError, _ http: Int, _ grpc: GRPCStatusCode) {
        #expect(ErrorMapping.httpStatus(error) == http)
        #expect(ErrorMapping.grpcStatus(error) == grpc)
        #expect(!ErrorMapping.outcome(error).isEmpty)
    }

    @Test func versionPolicies() {
        #expect(VersionPolicy.latest(1).select([1, 3, 2]) == [3])
        #expect(VersionPolicy.latest(2).select([1, 3, 2]) == [2, 3])
        #expect(VersionPolicy.all.select([1, 2]) == [1, 2])
        #expect(VersionPolicy.specific([2, 5]).select([1, 2, 3]) == [2])
    }
}
