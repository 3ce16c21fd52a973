import FoundationEssentials
import Glibc
import Serving
import TensorFlowProto
import Synchronization
import WireFormat

/// Answers every REST endpoint: KServe V1, TF Serving REST, Open Inference Protocol V2 (with
/// the binary tensor and model repository extensions) and /metrics. Metadata requests are
/// answered on the calling thread; bodies above `inlineDecodeBytes` are parsed, and inference
/// runs, on the compute executor; repository changes on the control queue, so an event loop
/// never blocks here.
public final class RESTService: Sendable {
    /// The repository, pipeline, control queue and readiness shared with the gRPC service.
    public let core: ServerCore
    var repository: ModelRepository { core.repository }
    var metrics: Metrics { core.metrics }
    var control: @Sendable (@escaping @Sendable () -> Void) -> Void { core.control }
    var pipeline: InferencePipeline { core.pipeline }
    /// Seconds a REST inference may take from the moment it is queued (TF Serving's
    /// --rest_api_timeout_in_ms); nil: no limit. Past it the answer is 504.
    let inferenceTimeout: Double?

    public static var serverName: String { ServerCore.serverName }
    public static var serverVersion: String { ServerCore.serverVersion }

    public init(core: ServerCore, inferenceTimeout: Double? = nil) {
        self.core = core
        self.inferenceTimeout = inferenceTimeout
    }

    /// Readiness turns false on every protocol; requests are still answered until the
    /// listeners close.
    public func beginShutdown() { core.beginShutdown() }

    /// Server readiness (every protocol): not draining and every enabled model has a version.
    var serverReady: Bool { core.serverReady }

    public func errorResponse(status: Int, message: String) -> RESTResponse {
        var out = JSONBuilder()
        out.beginObject(); out.key("error"); out.string(message); out.endObject()
        return .json(status, out.bytes)
    }

    func error(_ error: ServingError) -> RESTResponse {
        var response = errorResponse(status: ErrorMapping.httpStatus(error), message: error.message)
        if case .queueFull = error { response.headers.append(("Retry-After", "1")) }
        return response
    }

    /// Bodies up to this many bytes are decoded on the calling (event-loop) thread.
    static var inlineDecodeBytes: Int { ServerCore.inlineDecodeBytes }

    /// Answers `request`; `completion` runs exactly once, on this thread or a worker's.
    public func handle(_ request: RESTRequest, completion: @escaping @Sendable (RESTResponse) -> Void) {
        if request.body.count > Self.inlineDecodeBytes {
            pipeline.executor.submit { [self] _ in answer(request, completion) }
        } else {
            answer(request, completion)
        }
    }

    /// Runs `work` on a compute worker (CPU-heavy request handling that must not hold an
    /// event loop, such as inflating a compressed body).
    public func offload(_ work: @escaping @Sendable () -> Void) {
        pipeline.executor.submit { _ in work() }
    }

    private func answer(_ request: RESTRequest, _ completion: @escaping @Sendable (RESTResponse) -> Void) {
        do {
            let route = try Route.parse(method: request.method, path: request.path)
            try dispatch(route, request, completion)
        } catch {
            completion(self.error(error))
        }
    }

    private func dispatch(_ route: Route, _ request: RESTRequest, _ completion: @escaping @Sendable (RESTResponse) -> Void) throws(ServingError) {
        switch route {
        case .serverLive:
            completion(object { $0.key("status"); $0.string("alive") })
        case .v1ListModels, .v2ListModels:
            completion(object { out in
                out.key("models"); out.beginArray(); for name in repository.modelNames { out.string(name) }; out.endArray()
            })
        case .v1ModelStatus(let model, let selector):
            completion(try modelStatus(model, selector))
        case .v1ModelMetadata(let model, let selector):
            completion(tfMetadata(try repository.lookup(model: model, version: selector ?? .latest).version))
        case .v1Predict(let model, let selector):
            try predictV1(try repository.lookup(model: model, version: selector ?? .latest), request, completion)
        case .v1Examples(let model, let selector, let verb):
            try examplesV1(try repository.lookup(model: model, version: selector ?? .latest), verb: verb, request, completion)
        case .v1Unimplemented:
            throw .unsupported("this server has no explainer (:explain)")
        case .v2Server:
            completion(object { out in
                out.key("name"); out.string(Self.serverName)
                out.key("version"); out.string(Self.serverVersion)
                out.key("extensions"); out.beginArray()
                for name in ServerCore.extensions { out.string(name) }
                out.endArray()
            })
        case .v2Live:
            completion(object { $0.key("live"); $0.bool(true) })
        case .v2Ready:
            let ready = serverReady
            completion(object(status: ready ? 200 : 503) { $0.key("ready"); $0.bool(ready) })
        case .v2ModelMetadata(let model, let number):
            completion(v2Metadata(try repository.lookup(model: model, version: number.map { .number($0) } ?? .latest).version))
        case .v2ModelReady(let model, let number):
            do {
                _ = try repository.lookup(model: model, version: number.map { .number($0) } ?? .latest)
                completion(object { $0.key("name"); $0.string(model); $0.key("ready"); $0.bool(true) })
            } catch .modelNotFound(let name) {
                throw .modelNotFound(name)
            } catch .versionNotFound(let name, let version) {
                throw .versionNotFound(model: name, version: version)
            } catch {
                completion(object(status: 503) { out in
                    out.key("name"); out.string(model); out.key("ready"); out.bool(false); out.key("error"); out.string(error.message)
                })
            }
        case .v2ModelConfig(let model, let number):
            completion(v2Config(try repository.lookup(model: model, version: number.map { .number($0) } ?? .latest).version))
        case .v2Infer(let model, let number):
            try inferV2(try repository.lookup(model: model, version: number.map { .number($0) } ?? .latest), request, completion)
        case .v2RepositoryIndex:
            completion(try repositoryIndex(request))
        case .v2RepositoryLoad(let model):
            if let parameters = try repositoryRequestBody(request.body)["parameters"] {
                guard case .object(let object) = parameters else { throw .invalidInput("'parameters' must be an object") }
                try ServerCore.rejectLoadParameters(Array(object.keys))
            }
            control { [self] in
                do throws(ServingError) {
                    try repository.load(model: model)
                    completion(object { $0.key("name"); $0.string(model); $0.key("load"); $0.bool(true) })
                } catch { completion(self.error(error)) }
            }
        case .v2RepositoryUnload(let model):
            control { [self] in
                do throws(ServingError) {
                    try repository.unload(model: model)
                    completion(object { $0.key("name"); $0.string(model); $0.key("unload"); $0.bool(true) })
                } catch { completion(self.error(error)) }
            }
        case .metrics:
            completion(RESTResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")],
                                    body: Array(metrics.render(queued: repository.loadedSchedulers.map { ($0.version.name, $0.version.version, $0.queuedCount) }).utf8)))
        case .notFound:
            throw .notFound("Not Found: \(request.method) \(request.path)")
        case .methodNotAllowed(let allow):
            var response = error(.methodNotAllowed("Method Not Allowed: \(request.method) \(request.path) (allowed: \(allow))"))
            response.headers.append(("Allow", allow))
            completion(response)
        }
    }

    private func object(status: Int = 200, _ body: (inout JSONBuilder) -> Void) -> RESTResponse {
        var out = JSONBuilder()
        out.beginObject()
        body(&out)
        out.endObject()
        return .json(status, out.bytes)
    }

    // MARK: Status and metadata

    func versionStatuses(_ model: String, _ selector: VersionSelector?) throws(ServingError) -> [VersionStatus] {
        try core.versionStatuses(model, selector)
    }

    /// TF Serving's GetModelStatus JSON plus KServe V1's `name` / `ready` keys.
    private func modelStatus(_ model: String, _ selector: VersionSelector?) throws(ServingError) -> RESTResponse {
        let statuses = try versionStatuses(model, selector)
        let ready = statuses.contains { $0.state == .available }
        return object { out in
            out.key("name"); out.string(model)
            out.key("ready"); out.bool(ready)
            out.key("model_version_status"); out.beginArray()
            for status in statuses {
                out.beginObject()
                out.key("version"); out.string(String(status.version))
                out.key("state"); out.string(status.state == .failed ? "END" : status.state.rawValue)
                out.key("status"); out.beginObject()
                out.key("error_code"); out.string(status.error == nil ? "OK" : "UNKNOWN")
                out.key("error_message"); out.string(status.error ?? "")
                out.endObject()
                out.endObject()
            }
            out.endArray()
        }
    }

    static func tfType(_ type: TensorDataType) -> String {
        switch type {
        case .fp32: return "DT_FLOAT"
        case .fp64: return "DT_DOUBLE"
        case .int64: return "DT_INT64"
        case .int32: return "DT_INT32"
        case .int16: return "DT_INT16"
        case .int8: return "DT_INT8"
        case .uint8: return "DT_UINT8"
        case .uint16: return "DT_UINT16"
        case .uint32: return "DT_UINT32"
        case .uint64: return "DT_UINT64"
        case .bool: return "DT_BOOL"
        case .fp16: return "DT_HALF"
        case .bf16: return "DT_BFLOAT16"
        case .bytes: return "DT_STRING"
        }
    }

    /// TF Serving's GET .../metadata: the SignatureDefMap (the export's own for TensorFlow
    /// models) in TF Serving's JSON form.
    private func tfMetadata(_ version: LoadedVersion) -> RESTResponse {
        let map = GRPCService.signatureDefMap(version)
        return object { out in
            out.key("model_spec"); out.beginObject()
            out.key("name"); out.string(version.name)
            out.key("signature_name"); out.string("")
            out.key("version"); out.string(String(version.version))
            out.endObject()
            out.key("metadata"); out.beginObject(); out.key("signature_def"); out.beginObject(); out.key("signature_def"); out.beginObject()
            for (name, signature) in map.signatureDef.sorted(by: { $0.key < $1.key }) {
                out.key(name); out.beginObject()
                for (key, tensors) in [("inputs", signature.inputs), ("outputs", signature.outputs)] {
                    out.key(key); out.beginObject()
                    for (alias, info) in tensors.sorted(by: { $0.key < $1.key }) {
                        out.key(alias); out.beginObject()
                        out.key("dtype"); out.string(info.dtype.enumName)
                        out.key("tensor_shape"); out.beginObject()
                        out.key("dim"); out.beginArray()
                        for dim in info.tensorShape.dim {
                            out.beginObject(); out.key("size"); out.string(String(dim.size)); out.key("name"); out.string(dim.name); out.endObject()
                        }
                        out.endArray()
                        out.key("unknown_rank"); out.bool(info.tensorShape.unknownRank)
                        out.endObject()
                        if case .name(let tensor)? = info.encoding { out.key("name"); out.string(tensor) }
                        out.endObject()
                    }
                    out.endObject()
                }
                out.key("method_name"); out.string(signature.methodName)
                out.key("defaults"); out.beginObject(); out.endObject()
                out.endObject()
            }
            out.endObject(); out.endObject(); out.endObject()
        }
    }

    func availableVersions(_ model: String) -> [String] { core.availableVersions(model) }

    private func v2Metadata(_ version: LoadedVersion) -> RESTResponse {
        let versions = availableVersions(version.name)
        return object { out in
            out.key("name"); out.string(version.name)
            out.key("versions"); out.beginArray(); for v in versions { out.string(v) }; out.endArray()
            out.key("platform"); out.string(ServerCore.metadataPlatform(version))
            for (key, tensors) in [("inputs", version.inputs), ("outputs", version.advertisedOutputs)] {
                out.key(key); out.beginArray()
                for tensor in tensors {
                    out.beginObject()
                    out.key("name"); out.string(tensor.name)
                    out.key("datatype"); out.string(tensor.datatype.rawValue)
                    out.key("shape"); out.beginArray(); for size in tensor.shape { out.int(size) }; out.endArray()
                    out.endObject()
                }
                out.endArray()
            }
        }
    }

    /// Triton's model configuration extension (the fields this server knows).
    private func v2Config(_ version: LoadedVersion) -> RESTResponse {
        let batching = version.maxBatchSize > 0
        return object { out in
            out.key("name"); out.string(version.name)
            out.key("platform"); out.string(ServerCore.configPlatform(version))
            out.key("backend"); out.string(Self.serverName)
            out.key("max_batch_size"); out.int(version.maxBatchSize)
            for (key, tensors) in [("input", version.inputs), ("output", version.advertisedOutputs)] {
                out.key(key); out.beginArray()
                for tensor in tensors {
                    out.beginObject()
                    out.key("name"); out.string(tensor.name)
                    out.key("data_type"); out.string("TYPE_" + (tensor.datatype == .bytes ? "STRING" : tensor.datatype.rawValue))
                    out.key("dims"); out.beginArray(); for size in (batching ? Array(tensor.shape.dropFirst()) : tensor.shape) { out.int(size) }; out.endArray()
                    out.endObject()
                }
                out.endArray()
            }
        }
    }

    /// The JSON object of a repository request; an empty body is `null` (no members).
    private func repositoryRequestBody(_ body: [UInt8]) throws(ServingError) -> JSONValue {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .null }
        let value = try parseJSON(body[...])
        guard case .object = value else { throw .invalidInput("the repository request must be a JSON object") }
        return value
    }

    private func repositoryIndex(_ request: RESTRequest) throws(ServingError) -> RESTResponse {
        var onlyReady = false
        if let ready = try repositoryRequestBody(request.body)["ready"] {
            guard let flag = ready.boolValue else { throw .invalidInput("'ready' must be a boolean") }
            onlyReady = flag
        }
        var out = JSONBuilder()
        out.beginArray()
        for entry in repository.index() where !onlyReady || entry.state == "READY" {
            out.beginObject()
            out.key("name"); out.string(entry.name)
            if let version = entry.version { out.key("version"); out.string(String(version)) }
            out.key("state"); out.string(entry.state)
            out.key("reason"); out.string(entry.reason)
            out.endObject()
        }
        out.endArray()
        return .json(200, out.bytes)
    }

    // MARK: Inference

    /// Runs `request` through the shared inference pipeline; `encode` turns the result into
    /// the REST response on the worker thread, and errors become JSON error responses.
    func run(_ request: InferRequest, on servable: BatchScheduler, protocolName: String,
             encode: @escaping @Sendable (InferResponse) throws(ServingError) -> RESTResponse,
             completion: @escaping @Sendable (RESTResponse) -> Void) {
        let deadline = inferenceTimeout.map { monotonicNow() + $0 }
        pipeline.run(request, on: servable, protocolName: protocolName, deadline: deadline, encode: encode) { [self] result in
            switch result {
            case .success(let response): completion(response)
            case .failure(let error): completion(self.error(error))
            }
        }
    }

    func parseJSON(_ bytes: ArraySlice<UInt8>, allowNonFinite: Bool = false) throws(ServingError) -> JSONValue {
        do {
            return try JSONParser.parse(bytes, options: .init(allowNonFiniteNumbers: allowNonFinite))
        } catch {
            throw .invalidInput("Unrecognized request format: \(error)")
        }
    }
}

func monotonicNow() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
