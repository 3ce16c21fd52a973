import Foundation
import ServingProto
import TensorFlowProto
import SwiftProtobuf
import Testing
@testable import InferenceProtocol
@testable import Serving

func floats(_ data: [UInt8]) -> [Float] { data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
func bytes<T: BitwiseCopyable>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
func lengthPrefixed(_ elements: [[UInt8]]) -> [UInt8] {
    var data: [UInt8] = []
    for element in elements { BytesElements.append(element, to: &data) }
    return data
}

/// Whether `body` throws `invalidInput` with a message containing `text`.
func isInvalid(_ body: () throws -> Void, containing text: String = "") -> Bool {
    do {
        try body()
        return false
    } catch {
        guard case .invalidInput(let message)? = error as? ServingError else { return false }
        return text.isEmpty || message.contains(text)
    }
}

/// TensorProto <-> InferTensor (TF Serving Predict).
struct TensorProtoTests {
    func proto(_ dtype: Tensorflow_DataType, _ shape: [Int], _ fill: (inout Tensorflow_TensorProto) -> Void) -> Tensorflow_TensorProto {
        var proto = Tensorflow_TensorProto()
        proto.dtype = dtype
        proto.tensorShape = GRPCTensors.shapeProto(shape)
        fill(&proto)
        return proto
    }

    func convert(_ proto: Tensorflow_TensorProto, maxBytes: Int = 1 << 20) throws(ServingError) -> InferTensor {
        try GRPCTensors.tensor(named: "x", from: proto, maxBytes: maxBytes)
    }

    @Test func tensorContentIsTakenAsIs() throws {
        let tensor = try convert(proto(.dtFloat, [2, 2]) { $0.tensorContent = Data(bytes([Float(1), 2, 3, 4])) })
        #expect(tensor.datatype == .fp32 && tensor.shape == [2, 2])
        #expect(floats(tensor.data) == [1, 2, 3, 4])
        #expect(isInvalid({ _ = try convert(proto(.dtFloat, [3]) { $0.tensorContent = Data(bytes([Float(1), 2])) }) }, containing: "tensor_content"))
    }

    @Test func fillRuleRepeatsTheLastValue() throws {
        #expect(floats(try convert(proto(.dtFloat, [4]) { $0.floatVal = [1, 2] }).data) == [1, 2, 2, 2])
        #expect(floats(try convert(proto(.dtFloat, [3]) { $0.floatVal = [7] }).data) == [7, 7, 7])
        let ints = try convert(proto(.dtInt64, [2, 2]) { $0.int64Val = [5] })
        #expect(ints.data == bytes([Int64(5), 5, 5, 5]))
        let flags = try convert(proto(.dtBool, [3]) { $0.boolVal = [false, true] })
        #expect(flags.data == [0, 1, 1])
    }

    @Test func fillRuleErrors() {
        #expect(isInvalid({ _ = try convert(proto(.dtFloat, [3]) { _ in }) }, containing: "float_val is empty"))
        #expect(isInvalid({ _ = try convert(proto(.dtFloat, [1]) { $0.floatVal = [1, 2] }) }, containing: "more than"))
        // A tiny message may not expand beyond the limit.
        #expect(isInvalid({ _ = try convert(proto(.dtFloat, [1 << 30]) { $0.floatVal = [1] }, maxBytes: 1 << 20) }, containing: "exceeds"))
        // An empty tensor needs no values.
        #expect((try? convert(proto(.dtFloat, [0, 3]) { _ in }))?.data == [])
    }

    @Test func narrowIntegersFromIntVal() throws {
        #expect(try convert(proto(.dtUint8, [3]) { $0.intVal = [0, 255, 7] }).data == [0, 255, 7])
        #expect(try convert(proto(.dtInt8, [2]) { $0.intVal = [-128, 127] }).data == [0x80, 0x7f])
        #expect(try convert(proto(.dtInt16, [1]) { $0.intVal = [-2] }).data == [0xfe, 0xff])
        #expect(isInvalid({ _ = try convert(proto(.dtUint8, [1]) { $0.intVal = [256] }) }, containing: "out of range"))
    }

    @Test func halfValCarriesFP16AndBF16Patterns() throws {
        let half = try convert(proto(.dtHalf, [2]) { $0.halfVal = [0x3c00, 0xc000] })   // 1.0, -2.0
        #expect(half.datatype == .fp16 && half.data == [0x00, 0x3c, 0x00, 0xc0])
        let bf16 = try convert(proto(.dtBfloat16, [3]) { $0.halfVal = [0x3f80] })        // 1.0, filled
        #expect(bf16.datatype == .bf16 && bf16.data == [0x80, 0x3f, 0x80, 0x3f, 0x80, 0x3f])
    }

    @Test func stringValBecomesLengthPrefixedBytes() throws {
        let tensor = try convert(proto(.dtString, [2]) { $0.stringVal = [Data([0xff, 0xd8]), Data("ab".utf8)] })
        #expect(tensor.datatype == .bytes && tensor.shape == [2])
        #expect(tensor.data == lengthPrefixed([[0xff, 0xd8], Array("ab".utf8)]))
        let filled = try convert(proto(.dtString, [3]) { $0.stringVal = [Data("z".utf8)] })
        #expect(filled.data == lengthPrefixed([[0x7a], [0x7a], [0x7a]]))
    }

    @Test func badShapesAndTypes() {
        #expect(isInvalid({ _ = try convert(proto(.dtFloat, [-1, 2]) { $0.floatVal = [1] }) }, containing: "shape"))
        #expect(isInvalid({ _ = try convert(proto(.dtFloat, [Int.max, 4]) { $0.floatVal = [1] }) }, containing: "shape"))
        #expect(isInvalid({ _ = try convert(proto(.dtComplex64, [1]) { $0.scomplexVal = [1, 2] }) }, containing: "dtype"))
        var unknownRank = proto(.dtFloat, []) { $0.floatVal = [1] }
        unknownRank.tensorShape.unknownRank = true
        #expect(isInvalid({ _ = try convert(unknownRank) }, containing: "rank"))
    }

    /// The classic Inception client's request (protocols.md 5.4), byte for byte.
    @Test func inceptionClientRequest() throws {
        let wire: [UInt8] = [0x0a, 0x1b, 0x0a, 0x09] + Array("inception".utf8) + [0x1a, 0x0e] + Array("predict_images".utf8)
            + [0x12, 0x18, 0x0a, 0x06] + Array("images".utf8) + [0x12, 0x0e, 0x08, 0x07, 0x12, 0x04, 0x12, 0x02, 0x08, 0x01, 0x42, 0x04, 0xff, 0xd8, 0xff, 0xe0]
        #expect(wire.count == 55)
        let request = try Tensorflow_Serving_PredictRequest(serializedBytes: wire)
        #expect(request.modelSpec.name == "inception" && request.modelSpec.signatureName == "predict_images")
        let tensor = try GRPCTensors.tensor(named: "images", from: request.inputs["images"]!, maxBytes: 1 << 20)
        #expect(tensor.datatype == .bytes && tensor.shape == [1] && tensor.data == lengthPrefixed([[0xff, 0xd8, 0xff, 0xe0]]))
        // A version 3 ModelSpec.
        let spec = try Tensorflow_Serving_ModelSpec(serializedBytes: [0x0a, 0x01, 0x6d, 0x12, 0x02, 0x08, 0x03] as [UInt8])
        #expect(GRPCService.selector(spec) == .number(3))
    }

    @Test func outputsAsTensorProtos() throws {
        let numeric = try GRPCTensors.tensorProto(InferTensor(name: "y", datatype: .fp32, shape: [1, 2], data: bytes([Float(0.5), 2])))
        #expect(numeric.dtype == .dtFloat && numeric.tensorShape.dim.map(\.size) == [1, 2])
        #expect(floats([UInt8](numeric.tensorContent)) == [0.5, 2])
        let strings = try GRPCTensors.tensorProto(InferTensor(name: "c", datatype: .bytes, shape: [2], data: lengthPrefixed([Array("cat".utf8), []])))
        #expect(strings.dtype == .dtString && strings.stringVal == [Data("cat".utf8), Data()] && strings.tensorContent.isEmpty)
        // Round trip through the request direction.
        let back = try GRPCTensors.tensor(named: "c", from: strings, maxBytes: 1 << 20)
        #expect(back.data == lengthPrefixed([Array("cat".utf8), []]))
    }
}

/// ModelInferRequest / ModelInferResponse (Open Inference Protocol).
struct InferTensorContentsTests {
    func input(_ name: String, _ datatype: String, _ shape: [Int64], _ fill: (inout Inference_InferTensorContents) -> Void = { _ in })
        -> Inference_ModelInferRequest.InferInputTensor {
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = name
        input.datatype = datatype
        input.shape = shape
        var contents = Inference_InferTensorContents()
        fill(&contents)
        if contents != Inference_InferTensorContents() { input.contents = contents }
        return input
    }

    @Test func typedContentsAreNarrowedToTheDatatype() throws {
        var request = Inference_ModelInferRequest()
        request.inputs = [
            input("a", "INT8", [2]) { $0.intContents = [-1, 100] },
            input("b", "UINT16", [2]) { $0.uintContents = [1, 65535] },
            input("c", "BOOL", [1]) { $0.boolContents = [true] },
            input("d", "FP64", [1]) { $0.fp64Contents = [0.25] },
            input("e", "BYTES", [2]) { $0.bytesContents = [Data("hi".utf8), Data()] },
            input("f", "UINT64", [1]) { $0.uint64Contents = [UInt64.max] },
        ]
        let converted = try GRPCTensors.inferRequest(request)
        #expect(converted.inputs.map(\.data) == [[0xff, 100], [1, 0, 0xff, 0xff], [1], bytes([0.25]), lengthPrefixed([Array("hi".utf8), []]),
                                                 bytes([UInt64.max])])
        #expect(converted.inputs.map(\.datatype) == [.int8, .uint16, .bool, .fp64, .bytes, .uint64])
    }

    @Test func typedContentsErrors() {
        func convert(_ input: Inference_ModelInferRequest.InferInputTensor) throws {
            var request = Inference_ModelInferRequest()
            request.inputs = [input]
            _ = try GRPCTensors.inferRequest(request)
        }
        #expect(isInvalid({ try convert(input("a", "INT8", [1]) { $0.intContents = [128] }) }, containing: "out of range"))
        #expect(isInvalid({ try convert(input("a", "UINT8", [1]) { $0.uintContents = [256] }) }, containing: "out of range"))
        #expect(isInvalid({ try convert(input("a", "FP32", [3]) { $0.fp32Contents = [1, 2] }) }, containing: "fp32_contents"))
        #expect(isInvalid({ try convert(input("a", "FP32", [1]) { $0.fp64Contents = [1] }) }, containing: "fp32_contents"))
        #expect(isInvalid({ try convert(input("a", "FP16", [1]) { $0.fp32Contents = [1] }) }, containing: "raw_input_contents"))
        #expect(isInvalid({ try convert(input("a", "FLOAT", [1]) { $0.fp32Contents = [1] }) }, containing: "datatype"))
        #expect(isInvalid({ try convert(input("a", "FP32", [-1]) { $0.fp32Contents = [1] }) }, containing: "shape"))
        #expect(isInvalid({ try convert(input("a", "FP32", [Int64.max, Int64.max]) { $0.fp32Contents = [1] }) }, containing: "shape"))
    }

    @Test func rawAndTypedMustNotMix() {
        var request = Inference_ModelInferRequest()
        request.inputs = [input("a", "FP32", [1]), input("b", "FP32", [1]) { $0.fp32Contents = [1] }]
        request.rawInputContents = [Data(bytes([Float(1)])), Data(bytes([Float(2)]))]
        #expect(isInvalid({ _ = try GRPCTensors.inferRequest(request) }, containing: "must not be specified when using raw_input_contents"))
    }

    @Test func rawContents() throws {
        var request = Inference_ModelInferRequest()
        request.inputs = [input("a", "FP16", [2]), input("s", "BYTES", [1])]
        request.rawInputContents = [Data([0, 0x3c, 0, 0x40]), Data(lengthPrefixed([[1, 2, 3]]))]
        let converted = try GRPCTensors.inferRequest(request)
        #expect(converted.inputs[0].data == [0, 0x3c, 0, 0x40] && converted.inputs[1].data == lengthPrefixed([[1, 2, 3]]))
        // One entry per input, sizes matching the shapes.
        var short = request
        short.rawInputContents.removeLast()
        #expect(isInvalid({ _ = try GRPCTensors.inferRequest(short) }, containing: "one per input"))
        var wrongSize = request
        wrongSize.rawInputContents[0] = Data([0, 0x3c])
        #expect(isInvalid({ _ = try GRPCTensors.inferRequest(wrongSize) }, containing: "needs 4"))
        var wrongCount = request
        wrongCount.rawInputContents[1] = Data(lengthPrefixed([[1], [2]]))
        #expect(isInvalid({ _ = try GRPCTensors.inferRequest(wrongCount) }, containing: "needs 1"))
        var malformed = request
        malformed.rawInputContents[1] = Data([9, 0, 0, 0, 1])
        #expect(isInvalid({ _ = try GRPCTensors.inferRequest(malformed) }, containing: "4-byte"))
    }

    @Test func parametersAndRequestedOutputs() throws {
        var request = Inference_ModelInferRequest()
        request.id = "r1"
        request.parameters["priority"] = .with { $0.uint64Param = 3 }
        request.parameters["timeout"] = .with { $0.int64Param = 5000 }
        request.parameters["flag"] = .with { $0.boolParam = true }
        var output = Inference_ModelInferRequest.InferRequestedOutputTensor()
        output.name = "y"
        output.parameters["classification"] = .with { $0.int64Param = 2 }
        request.outputs = [output]
        let converted = try GRPCTensors.inferRequest(request)
        #expect(converted.id == "r1")
        #expect(converted.parameters == ["priority": .int(3), "timeout": .int(5000), "flag": .bool(true)])
        #expect(converted.outputs?.map(\.name) == ["y"] && converted.outputs?[0].parameters["classification"] == .int(2))
    }

    @Test func responseUsesRawOutputContentsInOrder() {
        let response = InferResponse(modelName: "m", modelVersion: 4, id: "q", outputs: [
            InferTensor(name: "b", datatype: .bf16, shape: [1], data: [0x80, 0x3f]),
            InferTensor(name: "a", datatype: .bytes, shape: [1], data: lengthPrefixed([[1]])),
        ])
        let message = GRPCTensors.inferResponse(response)
        #expect(message.modelName == "m" && message.modelVersion == "4" && message.id == "q")
        #expect(message.outputs.map(\.name) == ["b", "a"] && message.outputs.map(\.datatype) == ["BF16", "BYTES"])
        #expect(message.rawOutputContents == [Data([0x80, 0x3f]), Data(lengthPrefixed([[1]]))])
    }
}
