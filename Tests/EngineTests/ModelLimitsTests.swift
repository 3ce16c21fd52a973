import Foundation
import ONNXProto
import Testing
@testable import Engine

/// What a model file may not make the engine do: run operators of an opset newer than it
/// implements, or allocate tensors whose sizes overflow or exceed the machine's memory. Each
/// is a load error with a message, never a crash.
struct ModelLimitsTests {
    /// y = Relu(x + c), x FP32 [N, 4], with `c` an extra initializer of `constantDims` (none: [4]).
    static func model(opset: Int64, constantDims: [Int64] = [4]) -> Onnx_ModelProto {
        func info(_ name: String) -> Onnx_ValueInfoProto {
            var value = Onnx_ValueInfoProto()
            value.name = name
            var tensorType = Onnx_TypeProto.Tensor()
            tensorType.elemType = 1
            var shape = Onnx_TensorShapeProto()
            var batch = Onnx_TensorShapeProto.Dimension(), width = Onnx_TensorShapeProto.Dimension()
            batch.dimParam = "N"
            width.dimValue = 4
            shape.dim = [batch, width]
            tensorType.shape = shape
            value.type.tensorType = tensorType
            return value
        }
        var constant = Onnx_TensorProto()
        constant.name = "c"
        constant.dataType = 1
        constant.dims = constantDims
        if constantDims == [4] { constant.floatData = [1, -2, 3, -4] }
        var add = Onnx_NodeProto(), relu = Onnx_NodeProto()
        add.opType = "Add"; add.name = "add"; add.input = ["x", "c"]; add.output = ["s"]
        relu.opType = "Relu"; relu.name = "relu"; relu.input = ["s"]; relu.output = ["y"]
        var graph = Onnx_GraphProto()
        graph.name = "limits"
        graph.node = [add, relu]
        graph.initializer = [constant]
        graph.input = [info("x")]
        graph.output = [info("y")]
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var set = Onnx_OperatorSetIdProto()
        set.version = opset
        model.opsetImport = [set]
        model.graph = graph
        return model
    }

    static func load(_ proto: Onnx_ModelProto) throws -> Model {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString).onnx").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try proto.serializedData().write(to: URL(fileURLWithPath: path))
        return try Model(path: path)
    }

    static func loadError(_ proto: Onnx_ModelProto) -> String? {
        do { _ = try load(proto); return nil } catch { return "\(error)" }
    }

    /// y = Reshape(x, target) with the target shape an initializer.
    static func reshape(_ target: [Int64]) -> Onnx_ModelProto {
        var model = model(opset: 13)
        var shape = Onnx_TensorProto()
        shape.name = "target"
        shape.dataType = 7  // INT64
        shape.dims = [Int64(target.count)]
        shape.int64Data = target
        var node = Onnx_NodeProto()
        node.opType = "Reshape"; node.name = "reshape"; node.input = ["x", "target"]; node.output = ["y"]
        model.graph.node = [node]
        model.graph.initializer = [shape]
        model.graph.output[0].type.tensorType.clearShape()
        return model
    }

    @Test(arguments: [[-1, Int64(1) << 62, 4], [Int64(1) << 62, 4, 0], [Int64(1) << 31, Int64(1) << 31, Int64(1) << 31]])
    func oversizedReshapeTargetsAreLoadErrors(target: [Int64]) throws {
        _ = try Self.load(Self.reshape([-1, 2, 2]))
        let message = try #require(Self.loadError(Self.reshape(target)))
        #expect(message.contains("bytes") || message.contains("reshape"), "\(message)")
    }

    @Test func newestImplementedOpsetLoadsNewerIsRefused() throws {
        _ = try Self.load(Self.model(opset: Int64(ONNXLoader.newestOpset)))
        let message = try #require(Self.loadError(Self.model(opset: Int64(ONNXLoader.newestOpset) + 1)))
        #expect(message.contains("opset \(ONNXLoader.newestOpset + 1)"), "\(message)")
    }

    @Test(arguments: [[Int64(1) << 32, Int64(1) << 32], [Int64(1) << 62, 4], [Int64(1) << 40], [Int64(1) << 62, 4, 0]])
    func oversizedInitializersAreLoadErrors(dims: [Int64]) throws {
        let message = try #require(Self.loadError(Self.model(opset: 13, constantDims: dims)))
        #expect(message.contains("bytes"), "\(message)")
    }
}
