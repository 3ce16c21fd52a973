import InferenceProtocol
import ONNXProto
import Serving
import SwiftProtobuf
import Glibc

/// The REST and gRPC services over a repository of three tiny real models, loaded once per
/// process; compute jobs run inline (`executor.drain()`).
///
/// - `relu`:  y = Relu(x), x FP32 [N, 2]; max_batch_size 4, dynamic batching, labels.txt
///            and classification_output (classification, TF classify/regress).
/// - `mixed`: y = Add(x, Cast(k)), x FP32 [N, 3], k INT64 [N, 3] (two inputs, two dtypes).
/// - `image`: y = Relu(img), img FP32 [N, 3, 8, 8] fed from JPEGs (image_input).
public final class FuzzServices: Sendable {
    public let rest: RESTService
    public let grpc: GRPCService
    public let executor: InlineExecutor

    public static let modelNames = ["relu", "mixed", "image"]

    public init() {
        let base = makeTemporaryDirectory("models")
        Self.write(base + "/relu", nodes: [("Relu", ["x"], ["y"], nil)],
                   inputs: [("x", 1, [2])], outputs: [("y", 1, [2])],
                   config: """
                   max_batch_size: 4
                   dynamic_batching { max_queue_delay_microseconds: 100 }
                   parameters { key: "classification_output" value { string_value: "y" } }
                   """, labels: "negative\npositive\n")
        Self.write(base + "/mixed", nodes: [("Cast", ["k"], ["kf"], 1), ("Add", ["x", "kf"], ["y"], nil)],
                   inputs: [("x", 1, [3]), ("k", 7, [3])], outputs: [("y", 1, [3])], config: nil, labels: nil)
        Self.write(base + "/image", nodes: [("Relu", ["img"], ["y"], nil)],
                   inputs: [("img", 1, [3, 8, 8])], outputs: [("y", 1, [3, 8, 8])],
                   config: """
                   parameters { key: "image_input" value { string_value: "img" } }
                   parameters { key: "image_max_pixels" value { string_value: "65536" } }
                   """, labels: nil)
        executor = InlineExecutor()
        let metrics = Metrics()
        let repository = ModelRepository(sources: Self.modelNames.map { ModelSource(name: $0, basePath: base + "/" + $0) },
                                         executor: executor, metrics: metrics) { level, message in
            if level == .error { fuzzFailure("fixture model failed to load: \(message)") }
        }
        repository.poll()
        executor.drain()
        let core = ServerCore(repository: repository, executor: executor, metrics: metrics, control: { $0() })
        rest = RESTService(core: core)
        grpc = GRPCService(core: core)
    }

    /// Answers `request`, running its compute jobs; fails on anything but exactly one reply.
    public func answer(_ request: RESTRequest) -> RESTResponse {
        let replies = Replies<RESTResponse>()
        rest.handle(request) { replies.add($0) }
        executor.drain()
        return replies.exactlyOne("\(request.method) \(request.path)")
    }

    /// Answers one unary gRPC call; fails on anything but exactly one reply.
    public func call(_ path: String, _ message: [UInt8]) -> GRPCReply {
        let replies = Replies<GRPCReply>()
        grpc.handle(path: path, message: message, deadline: nil, isCancelled: { false }) { replies.add($0) }
        executor.drain()
        return replies.exactlyOne(path)
    }

    /// `<base>/1/model.onnx` (opset 13; every tensor's leading dimension dynamic) and the
    /// optional config.pbtxt and labels.txt in `<base>`.
    static func write(_ base: String, nodes: [(String, [String], [String], Int?)],
                      inputs: [(String, Int32, [Int])], outputs: [(String, Int32, [Int])],
                      config: String?, labels: String?) {
        func value(_ name: String, _ type: Int32, _ dims: [Int]) -> Onnx_ValueInfoProto {
            var info = Onnx_ValueInfoProto()
            info.name = name
            info.type.tensorType.elemType = type
            var batch = Onnx_TensorShapeProto.Dimension()
            batch.dimParam = "N"
            info.type.tensorType.shape.dim = [batch] + dims.map { size in
                var dimension = Onnx_TensorShapeProto.Dimension()
                dimension.dimValue = Int64(size)
                return dimension
            }
            return info
        }
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 13
        model.opsetImport = [opset]
        model.graph.name = "fuzz"
        model.graph.node = nodes.map { op, ins, outs, castTo in
            var node = Onnx_NodeProto()
            node.opType = op
            node.input = ins
            node.output = outs
            if let castTo {
                var to = Onnx_AttributeProto()
                to.name = "to"
                to.type = .int
                to.i = Int64(castTo)
                node.attribute = [to]
            }
            return node
        }
        model.graph.input = inputs.map { value($0.0, $0.1, $0.2) }
        model.graph.output = outputs.map { value($0.0, $0.1, $0.2) }
        mkdir(base, 0o755)
        mkdir(base + "/1", 0o755)
        guard let bytes: [UInt8] = try? model.serializedBytes() else { fuzzFailure("cannot serialise a fixture model") }
        writeFile(base + "/1/model.onnx", bytes)
        if let config { writeFile(base + "/config.pbtxt", Array(config.utf8)) }
        if let labels { writeFile(base + "/labels.txt", Array(labels.utf8)) }
    }
}
