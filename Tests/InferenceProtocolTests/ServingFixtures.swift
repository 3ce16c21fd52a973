import Dispatch
import Foundation
import ONNXProto
import Synchronization
@testable import InferenceProtocol
@testable import Serving

/// A tiny real model and executors for tests that run requests end to end.
enum ServingFixtures {
    /// Writes `<base>/<version>/model.onnx`: y = Relu(x), x and y FLOAT [N] + `dims` (N
    /// dynamic), and `<base>/config.pbtxt` when `config` is given.
    static func writeReluModel(base: String, version: Int = 1, dims: [Int] = [2], config: String? = nil) throws {
        func value(_ name: String) -> Onnx_ValueInfoProto {
            var info = Onnx_ValueInfoProto()
            info.name = name
            var batch = Onnx_TensorShapeProto.Dimension()
            batch.dimParam = "N"
            info.type.tensorType.elemType = 1  // FLOAT
            info.type.tensorType.shape.dim = [batch] + dims.map { size in
                var dimension = Onnx_TensorShapeProto.Dimension()
                dimension.dimValue = Int64(size)
                return dimension
            }
            return info
        }
        var node = Onnx_NodeProto()
        node.opType = "Relu"
        node.input = ["x"]
        node.output = ["y"]
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 13
        model.opsetImport = [opset]
        model.graph.name = "relu"
        model.graph.node = [node]
        model.graph.input = [value("x")]
        model.graph.output = [value("y")]
        let directory = base + "/\(version)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let bytes: [UInt8] = try model.serializedBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/model.onnx"))
        if let config { try Data(config.utf8).write(to: URL(fileURLWithPath: base + "/config.pbtxt")) }
    }

    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "grpc-tests-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A RESTService + GRPCService over a repository holding the Relu model "relu" (loaded).
    static func services(executor: any ComputeExecutor = SerialExecutor(), dims: [Int] = [2], config: String? = nil) throws
        -> (rest: RESTService, grpc: GRPCService, repository: ModelRepository) {
        let base = temporaryDirectory() + "/relu"
        try writeReluModel(base: base, dims: dims, config: config)
        let metrics = Metrics()
        let repository = ModelRepository(sources: [ModelSource(name: "relu", basePath: base)], executor: executor, metrics: metrics) { _, _ in }
        repository.poll()
        let core = ServerCore(repository: repository, executor: executor, metrics: metrics, control: { $0() })
        return (RESTService(core: core), GRPCService(core: core), repository)
    }

    /// Calls `service` and waits for its one reply.
    static func call(_ service: GRPCService, _ path: String, _ message: [UInt8] = [], deadline: Double? = nil,
                     isCancelled: @escaping @Sendable () -> Bool = { false }) -> GRPCReply {
        let box = Mutex<[GRPCReply]>([])
        let done = DispatchSemaphore(value: 0)
        service.handle(path: path, message: message, deadline: deadline, isCancelled: isCancelled) { reply in
            box.withLock { $0.append(reply) }
            done.signal()
        }
        guard done.wait(timeout: .now() + 20) == .success else {
            return GRPCReply(status: .unknown, message: "test: no reply within 20 s", payload: nil)
        }
        // Exactly once: a second reply would arrive almost at once.
        Thread.sleep(forTimeInterval: 0.01)
        let replies = box.withLock { $0 }
        return replies.count == 1 ? replies[0] : GRPCReply(status: .unknown, message: "test: \(replies.count) replies", payload: nil)
    }
}

/// One worker: jobs run in order on a serial queue (worker index 0).
final class SerialExecutor: ComputeExecutor {
    let queue = DispatchQueue(label: "test-compute")
    var workerCount: Int { 1 }
    func submit(_ job: @escaping @Sendable (Int) -> Void) { queue.async { job(0) } }
    func submit(after seconds: Double, _ job: @escaping @Sendable (Int) -> Void) {
        queue.asyncAfter(deadline: .now() + max(0, seconds)) { job(0) }
    }
}

/// Jobs wait until the test runs them (worker 0), so a test decides what runs when.
final class ManualExecutor: ComputeExecutor {
    private let jobs = Mutex<[@Sendable (Int) -> Void]>([])
    var workerCount: Int { 1 }
    func submit(_ job: @escaping @Sendable (Int) -> Void) { jobs.withLock { $0.append(job) } }
    func submit(after seconds: Double, _ job: @escaping @Sendable (Int) -> Void) { submit(job) }
    var pending: Int { jobs.withLock { $0.count } }
    /// Runs the oldest job; false when none is queued.
    @discardableResult func runNext() -> Bool {
        guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { return false }
        job(0)
        return true
    }
}
