import FoundationEssentials
import FuzzSupport
@testable import Engine

// The ONNX loader and planner: any bytes as a model file are a Model (graph checked node by
// node, constants folded, plans for batch 1 and 2) or a thrown error, never a crash.
// External tensor data is refused (no directory), so inputs cannot reach the file system.
//
// Input: the model file.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    guard let graph = try? ONNXLoader.load(data: bytes, directory: nil, label: "fuzz.onnx") else { return 0 }
    _ = try? Model(graph: graph, options: Model.Options(maxBatchSize: 2, kernels: .blas))
    return 0
}
