import Foundation
import ONNXProto
import Testing
@testable import Engine

/// Paths and helpers shared by the engine tests.
enum Fixtures {
    /// Tests/Fixtures in this checkout.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path

    /// A directory named by an environment variable that the test script sets.
    static func environmentDirectory(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// Reads a serialized TensorProto file (ONNX test data).
    static func readTensorProto(_ path: String) throws -> (name: String, tensor: HostTensor) {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let proto = try Onnx_TensorProto(serializedBytes: data)
        return (proto.name, try ONNXLoader.decodeTensor(proto, directory: nil))
    }
}

/// Element-wise comparison |actual - expected| <= atol + rtol * |expected|; NaNs must match.
/// Returns nil when close, else a description of the worst element.
func compare(_ actual: HostTensor, _ expected: HostTensor, atol: Double, rtol: Double) -> String? {
    if actual.shape != expected.shape { return "shape \(actual.shape) != expected \(expected.shape)" }
    if actual.dtype != expected.dtype { return "dtype \(actual.dtype) != expected \(expected.dtype)" }
    let a = actual.doubles, e = expected.doubles
    var worst: (index: Int, excess: Double)?
    for i in a.indices {
        if a[i].isNaN || e[i].isNaN {
            if a[i].isNaN != e[i].isNaN { return "element \(i): \(a[i]) vs expected \(e[i])" }
            continue
        }
        if a[i] == e[i] { continue }
        let excess = abs(a[i] - e[i]) - (atol + rtol * abs(e[i]))
        if excess > 0 && (worst == nil || excess > worst!.excess) { worst = (i, excess) }
    }
    guard let worst else { return nil }
    let mismatches = a.indices.filter { !a[$0].isNaN && abs(a[$0] - e[$0]) > atol + rtol * abs(e[$0]) }.count
    return "\(mismatches) of \(a.count) elements differ; worst at \(worst.index): \(a[worst.index]) vs expected \(e[worst.index])"
}
