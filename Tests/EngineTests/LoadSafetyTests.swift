import Foundation
import ONNXProto
import TensorFlowProto
import Testing
@testable import Engine

/// Malformed graphs that used to stop the process (index out of range, integer overflow,
/// division by zero, float-to-int conversion traps) while loading: each must now be a load
/// error naming the node, its operator and the problem, or load and compute correctly.
struct LoadSafetyTests {
    /// The load error of `graph`, or nil when it loads.
    static func loadError(_ graph: TestGraph) -> String? {
        do { _ = try graph.model(); return nil } catch { return "\(error)" }
    }

    static func expectError(_ graph: TestGraph, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        guard let message = loadError(graph) else {
            Issue.record("the graph loaded; expected an error containing \(fragments)", sourceLocation: sourceLocation)
            return
        }
        for fragment in fragments {
            #expect(message.contains(fragment), "\(message)", sourceLocation: sourceLocation)
        }
    }

    /// A graph with one fixed-shape float input `x` of `shape`.
    static func graph(input shape: [Int]) -> TestGraph {
        var graph = TestGraph()
        graph.input("x", shape, dynamicBatch: false)
        return graph
    }

    static func int64s(_ values: [Int64]) -> HostTensor { HostTensor(shape: [values.count], int64s: values) }

    // MARK: rank 0: axis-taking operators on scalars (issue 15: Split and Concat trapped)

    @Test func splitOfAScalarIsALoadError() {
        var graph = Self.graph(input: [])
        graph.node("Split", ["x"], ["a", "b"], ["axis": .int(0)])
        graph.outputs = ["a", "b"]
        Self.expectError(graph, ["Split_0", "(Split)", "scalar"])
    }

    @Test func concatOfScalarsIsALoadError() {
        var graph = TestGraph()
        graph.input("x", [], dynamicBatch: false)
        graph.input("z", [], dynamicBatch: false)
        graph.node("Concat", ["x", "z"], ["y"], ["axis": .int(0)])
        graph.outputs = ["y"]
        Self.expectError(graph, ["Concat_0", "(Concat)", "scalar"])
    }

    @Test(arguments: ["Gather", "Squeeze", "Slice", "Pad", "ReduceMean", "Unsqueeze"])
    func axisOperatorsOnScalarsAreLoadErrors(op: String) {
        var graph = Self.graph(input: [])
        graph.constants["zero"] = Self.int64s([0])
        graph.constants["one"] = Self.int64s([1])
        switch op {
        case "Gather": graph.node("Gather", ["x", "zero"], ["y"], ["axis": .int(0)])
        case "Squeeze": graph.node("Squeeze", ["x", "zero"], ["y"])
        case "Slice": graph.node("Slice", ["x", "zero", "one", "zero"], ["y"])
        case "Pad": graph.node("Pad", ["x", Self.padsName(&graph), "", "zero"], ["y"])
        case "ReduceMean": graph.node("ReduceMean", ["x"], ["y"], ["axes": .ints([0])])
        default: graph.node("Unsqueeze", ["x"], ["y"], ["axes": .ints([1])])  // rank 1 after: axis 1 is out of range
        }
        graph.outputs = ["y"]
        Self.expectError(graph, ["(\(op))", "axis"])
    }

    static func padsName(_ graph: inout TestGraph) -> String {
        graph.constants["pads"] = int64s([1, 1])
        return "pads"
    }

    @Test func softmaxOfAScalarIsOne() throws {
        var graph = Self.graph(input: [])
        graph.node("Softmax", ["x"], ["y"])
        graph.outputs = ["y"]
        let outputs = try graph.model().makeSession().run([HostTensor(shape: [], floats: [3.5])])
        #expect(outputs[0].shape == [])
        #expect(outputs[0].floats == [1])
    }

    // MARK: sizes and counts from the file

    /// 0 divided by; 2^31 - 1 listed 2^31 sizes (16 GiB, found by the fuzz test).
    @Test(arguments: [0, Int(Int32.max)])
    func splitIntoAnotherNumberOfOutputsIsALoadError(count: Int) {
        var graph = Self.graph(input: [4])
        graph.node("Split", ["x"], ["a"], ["axis": .int(0), "num_outputs": .int(count)])
        graph.outputs = ["a"]
        Self.expectError(graph, ["(Split)", "num_outputs \(count)"])
    }

    @Test func splitSizesThatOverflowAreALoadError() {
        var graph = Self.graph(input: [4])
        graph.constants["sizes"] = Self.int64s([Int64.max, 2])
        graph.node("Split", ["x", "sizes"], ["a", "b"], ["axis": .int(0)])
        graph.outputs = ["a", "b"]
        Self.expectError(graph, ["(Split)", "split sizes"])
    }

    /// Steps of any magnitude (INT64_MIN included) slice correctly: one element.
    @Test(arguments: [Int64.max, Int64.min, Int64.min + 1])
    func sliceWithExtremeStepsTakesOneElement(step: Int64) throws {
        var graph = Self.graph(input: [4])
        let forward = step > 0
        graph.constants["starts"] = Self.int64s([forward ? 1 : 2])
        graph.constants["ends"] = Self.int64s([forward ? Int64.max : Int64.min])
        graph.constants["axes"] = Self.int64s([0])
        graph.constants["steps"] = Self.int64s([step])
        graph.node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
        graph.outputs = ["y"]
        let outputs = try graph.model().makeSession().run([HostTensor(shape: [4], floats: [10, 11, 12, 13])])
        #expect(outputs[0].floats == [forward ? 11 : 12])
    }

    @Test(arguments: [Int(Int32.max) + 1, Int.max, Int.min])
    func hugeIntegerAttributesAreLoadErrors(value: Int) {
        var graph = Self.graph(input: [1, 1, 4, 4])
        graph.constant("w", [1, 1, 1, 1], [1])
        graph.node("Conv", ["x", "w"], ["y"], ["group": .int(value)])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Conv)", "attribute 'group'", "\(value)"])
    }

    /// A dilation that multiplies the kernel past Int.max: (k - 1) * d overflowed.
    @Test func convolutionExtentOverflowIsALoadError() {
        var graph = Self.graph(input: [1, 1, 4, 4])
        graph.constant("w", [1, 1, 3, 1], [1, 1, 1])
        graph.node("Conv", ["x", "w"], ["y"], ["dilations": .ints([1 << 62, 1])])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Conv)", "dilations"])
    }

    /// Within the attribute bound, a kernel spanning more than memory is refused by name.
    @Test func convolutionExtentBeyondMemoryIsALoadError() {
        var graph = Self.graph(input: [1, 1, 4, 4])
        graph.constants["w"] = HostTensor(dtype: .float32, shape: [1, 1, 1 << 16, 1])
        graph.node("Conv", ["x", "w"], ["y"], ["dilations": .ints([Int(Int32.max), 1])])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Conv)", "kernel size 65536 with dilation \(Int32.max)"])
    }

    /// The integer convolutions share Conv's extent check (their geometry once computed it unchecked).
    @Test func integerConvolutionExtentBeyondMemoryIsALoadError() {
        var graph = Self.graph(input: [1, 1, 4, 4])
        graph.constant("scale", [], [1])
        graph.constants["zero"] = HostTensor(dtype: .uint8, shape: [])
        graph.constants["w"] = HostTensor(dtype: .uint8, shape: [1, 1, 1 << 16, 1])
        graph.node("QuantizeLinear", ["x", "scale", "zero"], ["q"])
        graph.node("ConvInteger", ["q", "w"], ["y"], ["dilations": .ints([Int(Int32.max), 1])])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(ConvInteger)", "kernel size 65536 with dilation \(Int32.max)"])
    }

    /// Zero channels let a huge group pass the divisibility checks; W's channels x group overflowed.
    @Test func convolutionGroupProductOverflowIsALoadError() {
        var graph = Self.graph(input: [1, 0, 4, 4])
        graph.constants["w"] = HostTensor(dtype: .float32, shape: [0, 4, 1, 1])
        graph.node("Conv", ["x", "w"], ["y"], ["group": .int(1 << 62)])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Conv)", "attribute 'group'"])
    }

    /// A one-input Conv before a BatchNormalization: the batch-norm fold read its input 1.
    @Test func convolutionWithoutWeightsIsALoadError() {
        var graph = Self.graph(input: [1, 1, 4, 4])
        for name in ["scale", "bias", "mean", "var"] { graph.constant(name, [1], [1]) }
        graph.node("Conv", ["x"], ["c"])
        graph.node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"])
        graph.outputs = ["y"]
        Self.expectError(graph, ["Conv_0", "(Conv)", "1 inputs", "2 to 4"])
    }

    /// Zero output channels: the batch-norm fold divided by them.
    @Test func convolutionWithZeroOutputChannelsIsALoadError() {
        var graph = Self.graph(input: [1, 1, 4, 4])
        graph.constants["w"] = HostTensor(dtype: .float32, shape: [0, 1, 1, 1])
        for name in ["scale", "bias", "mean", "var"] { graph.constants[name] = HostTensor(dtype: .float32, shape: [0]) }
        graph.node("Conv", ["x", "w"], ["c"])
        graph.node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Conv)", "channels"])
    }

    /// Pads near Int.max merged into a Conv's own pads used to overflow in the optimizer.
    @Test func hugePadsBeforeAConvAreALoadError() {
        var graph = Self.graph(input: [1, 1, 4, 4])
        let huge = Int64.max / 2
        graph.constants["pads"] = Self.int64s([0, 0, huge, huge, 0, 0, huge, huge])
        graph.constant("w", [1, 1, 1, 1], [1])
        graph.node("Pad", ["x", "pads"], ["p"])
        graph.node("Conv", ["p", "w"], ["y"], ["pads": .ints([Int.max / 2, 0, 0, 0])])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Conv)", "attribute 'pads'"])
    }

    /// The same pads with a Conv whose own pads are fine: the Pad reports the overflow.
    @Test func hugePadsAreALoadError() {
        var graph = Self.graph(input: [1, 1, 4, 4])
        let huge = Int64.max / 2
        graph.constants["pads"] = Self.int64s([0, 0, huge, huge, 0, 0, huge, huge])
        graph.constant("w", [1, 1, 1, 1], [1])
        graph.node("Pad", ["x", "pads"], ["p"])
        graph.node("Conv", ["p", "w"], ["y"])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Pad)", "overflow"])
    }

    /// A shape tensor of floats holding NaN: Int(NaN) trapped.
    @Test func reshapeToANaNShapeIsALoadError() {
        var graph = Self.graph(input: [4])
        graph.constant("shape", [2], [.nan, 2])
        graph.node("Reshape", ["x", "shape"], ["y"])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(Reshape)", "reshape"])
    }

    /// A float pad value beyond the integer data's range saturates (Int64(1e30) trapped).
    @Test func padValueBeyondTheIntegerRangeSaturates() throws {
        var graph = Self.graph(input: [2])
        graph.constants["data"] = Self.int64s([1, 2])
        graph.node("Pad", ["data"], ["padded"], ["pads": .ints([1, 0]), "value": .float(1e30)])
        graph.node("Cast", ["padded"], ["asFloat"], ["to": .int(1)])
        graph.node("Add", ["x", "asFloat"], ["y"])  // [2] + [3]: does not broadcast
        graph.outputs = ["y"]
        // Folding the Pad must not trap; the Add then fails on shapes.
        Self.expectError(graph, ["(Add)", "broadcast"])
    }

    /// An empty tensor whose other dimensions multiply past memory (strides of them overflow).
    @Test func emptyTensorWithHugeDimensionsIsALoadError() {
        var graph = Self.graph(input: [1])
        graph.constants["shape"] = Self.int64s([0, 1 << 32, 1 << 32])
        graph.node("ConstantOfShape", ["shape"], ["c"])
        graph.node("ReduceMean", ["c"], ["r"], ["axes": .ints([1]), "keepdims": .int(0)])
        graph.node("Add", ["x", "r"], ["y"])
        graph.outputs = ["y"]
        Self.expectError(graph, ["ConstantOfShape", "bytes"])
    }

    /// An empty input makes SAME-padded convolutions and pools produce empty outputs: their
    /// kernels' tile counts were 0 and divided by (at every request). Nothing runs now.
    @Test(arguments: [Model.Kernels.automatic, .blas])
    func emptyConvolutionOutputsRunNothing(kernels: Model.Kernels) throws {
        var graph = Self.graph(input: [1, 2, 0, 5])
        graph.constant("w", [3, 2, 3, 3], randomFloats(54, seed: 7))
        graph.node("Conv", ["x", "w"], ["c"], ["auto_pad": .string("SAME_UPPER")])
        graph.node("MaxPool", ["c"], ["y"], ["kernel_shape": .ints([2, 2]), "auto_pad": .string("SAME_UPPER")])
        graph.outputs = ["y"]
        let model = try graph.model(kernels: kernels)
        let outputs = try model.makeSession().run([HostTensor(dtype: .float32, shape: [1, 2, 0, 5])])
        #expect(outputs[0].shape == [1, 3, 0, 5])
    }

    /// A SAME-padded pool with a 2^31 kernel walked every tap of every window (minutes) and
    /// sized a row buffer by it: windows are bounded now.
    @Test func hugePoolingWindowsAreLoadErrors() {
        var graph = Self.graph(input: [1, 2, 4, 4])
        graph.node("AveragePool", ["x"], ["y"], ["kernel_shape": .ints([Int(Int32.max), 2]), "auto_pad": .string("SAME_UPPER")])
        graph.outputs = ["y"]
        Self.expectError(graph, ["(AveragePool)", "kernel_shape"])
    }

    /// Windows are counted arithmetically: a window larger than the input pools all of it.
    @Test func poolingWindowsLargerThanTheInput() throws {
        var graph = Self.graph(input: [1, 1, 2, 3])
        graph.node("AveragePool", ["x"], ["a"], ["kernel_shape": .ints([9, 9]), "auto_pad": .string("SAME_UPPER")])
        graph.node("MaxPool", ["x"], ["m"], ["kernel_shape": .ints([9, 9]), "auto_pad": .string("SAME_LOWER")])
        graph.outputs = ["a", "m"]
        let outputs = try graph.model().makeSession().run([HostTensor(shape: [1, 1, 2, 3], floats: [1, 2, 3, 4, 5, 6])])
        #expect(outputs[0].floats == [Float](repeating: 3.5, count: 6))
        #expect(outputs[1].floats == [Float](repeating: 6, count: 6))
    }

    /// A mean over an empty input (found by the fuzz test: x [1, 2, 4, 0]) divided by the
    /// walk's empty row length; it is NaN, as in numpy and onnxruntime.
    @Test func meanOfAnEmptyInputIsNaN() throws {
        var graph = Self.graph(input: [1, 2, 4, 0])
        graph.node("ReduceMean", ["x"], ["y"], ["axes": .ints([2, 3]), "keepdims": .int(1)])
        graph.outputs = ["y"]
        let outputs = try graph.model().makeSession().run([HostTensor(dtype: .float32, shape: [1, 2, 4, 0])])
        #expect(outputs[0].shape == [1, 2, 1, 1])
        let means = outputs[0].floats
        #expect(means.count == 2 && means.allSatisfy { $0.isNaN })
    }

    // MARK: graph structure (ONNX files)

    /// x -> Relu -> y, with `mutate` applied to the model before it is written.
    static func onnxError(_ mutate: (inout Onnx_ModelProto) -> Void) -> String? {
        var proto = ModelLimitsTests.model(opset: 13)
        mutate(&proto)
        return ModelLimitsTests.loadError(proto)
    }

    @Test func aValueWrittenTwiceIsALoadError() throws {
        let message = try #require(Self.onnxError { proto in
            var second = proto.graph.node[1]
            second.name = "again"
            proto.graph.node.append(second)
        })
        #expect(message.contains("'again'") && message.contains("already provides"), "\(message)")
    }

    @Test func aNodeOverwritingAnInitializerIsALoadError() throws {
        let message = try #require(Self.onnxError { proto in proto.graph.node[1].output = ["c"] })
        #expect(message.contains("'relu'") && message.contains("'c'"), "\(message)")
    }
}

/// SavedModel constants: TensorFlow's splat encoding (fewer values than elements) expanded
/// gigabytes from a few bytes of saved_model.pb.
struct SavedModelConstantTests {
    static func splat(_ dims: [Int64], values: [Float]) -> Tensorflow_TensorProto {
        var proto = Tensorflow_TensorProto()
        proto.dtype = .dtFloat
        proto.tensorShape.dim = dims.map { size in var dim = Tensorflow_TensorShapeProto.Dim(); dim.size = size; return dim }
        proto.floatVal = values
        return proto
    }

    @Test func hugeSplatConstantsAreLoadErrors() {
        #expect(throws: EngineError.self) { try TFTypes.decode(Self.splat([1 << 30], values: [1]), what: "Const 'big'") }
        do {
            _ = try TFTypes.decode(Self.splat([1 << 30], values: [1]), what: "Const 'big'")
        } catch {
            #expect("\(error)".contains("Const 'big'") && "\(error)".contains("limited"), "\(error)")
        }
    }

    @Test func smallSplatConstantsExpand() throws {
        let tensor = try TFTypes.decode(Self.splat([2, 3], values: [1, 2]), what: "Const 'small'")
        #expect(tensor.floats == [1, 2, 2, 2, 2, 2])
    }
}
