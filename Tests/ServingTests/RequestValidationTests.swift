import Testing
@testable import Serving

/// `RequestValidator` and `OutputShaper` on plain values: no model, no files.
struct RequestValidationTests {
    func validator(dynamic: Bool = true, maxBatch: Int = 4, configured: Bool = true) -> RequestValidator {
        RequestValidator(inputs: [LoadedVersion.TensorMetadata(name: "x", datatype: .fp32, shape: [-1, 2]),
                                  LoadedVersion.TensorMetadata(name: "mask", datatype: .uint8, shape: [-1, 2])],
                         hasDynamicBatch: dynamic, maxBatchSize: maxBatch, maxBatchSizeConfigured: configured,
                         outputNames: ["y", "classes", "scores"])
    }

    func request(rows: Int = 1, maskRows: Int? = nil, outputs: [RequestedOutput]? = nil) -> InferRequest {
        InferRequest(id: "r", inputs: [InferTensor(name: "x", datatype: .fp32, shape: [rows, 2], data: [UInt8](repeating: 0, count: rows * 8)),
                                       InferTensor(name: "mask", datatype: .uint8, shape: [maskRows ?? rows, 2],
                                                   data: [UInt8](repeating: 1, count: (maskRows ?? rows) * 2))],
                     outputs: outputs)
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch let error as ServingError { return error.message } catch { return "\(error)" }
    }

    @Test func aGoodRequestBecomesBuffersInModelOrder() throws {
        let prepared = try validator().prepare(request(rows: 3))
        #expect(prepared.rows == 3 && prepared.inputs.map(\.count) == [24, 6] && prepared.id == "r" && prepared.wanted == nil)
    }

    @Test func eachProblemIsNamed() {
        let v = validator()
        #expect(message { _ = try v.prepare(InferRequest(inputs: [])) }.contains("missing input 'x' (FP32 [-1, 2])"))
        #expect(message { _ = try v.prepare(request(rows: 2, maskRows: 3)) } == "inputs disagree on the batch size (2 and 3)")
        #expect(message { _ = try v.prepare(request(rows: 5)) } == "batch size 5 exceeds max_batch_size 4")
        #expect(message { _ = try v.prepare(request(outputs: [RequestedOutput(name: "z")])) }.hasPrefix("unknown output 'z'"))
        #expect(message { _ = try v.prepare(request(outputs: [RequestedOutput(name: "y", parameters: ["classification": .int(0)])])) }
            .contains("must be a positive integer"))
        var wrongType = request()
        wrongType.inputs[0].datatype = .fp64
        #expect(message { _ = try v.prepare(wrongType) } == "input 'x' must be FP32, got FP64")
        var short = request()
        short.inputs[0].data.removeLast()
        #expect(message { _ = try v.prepare(short) }.contains("needs 8"))
        var extra = request()
        extra.inputs.append(InferTensor(name: "z", datatype: .fp32, shape: [1], data: [0, 0, 0, 0]))
        #expect(message { _ = try v.prepare(extra) }.hasPrefix("unknown input 'z'"))
    }

    @Test func anUnconfiguredMaxBatchRunsLargeBatchesInSlices() throws {
        #expect(try validator(configured: false).prepare(request(rows: 9)).rows == 9)
    }

    func tensor(_ name: String, _ values: [Float]) -> InferTensor {
        InferTensor(name: name, datatype: .fp32, shape: [1, values.count], data: values.withUnsafeBytes { Array($0) })
    }

    @Test func shaperAnswersWhatWasAskedInItsOrder() throws {
        let shaper = OutputShaper(name: "m", version: 3, classification: nil, labels: [:], declaredOutputs: nil)
        let outputs = [tensor("a", [1]), tensor("b", [2])]
        var prepared = try validator().prepare(request())
        let all = try shaper.response(prepared, outputs: outputs)
        #expect(all.outputs.map(\.name) == ["a", "b"] && all.modelName == "m" && all.modelVersion == 3 && all.id == "r")
        prepared.outputs = [RequestedOutput(name: "b"), RequestedOutput(name: "a")]
        #expect(try shaper.response(prepared, outputs: outputs).outputs.map(\.name) == ["b", "a"])
    }

    @Test func topKReplacesTheClassificationOutput() throws {
        let classification = Classification(output: "a", softmax: false, topK: 2, labels: ["zero", "one", "two"])
        let shaper = OutputShaper(name: "m", version: 1, classification: classification, labels: [:], declaredOutputs: nil)
        let response = try shaper.response(try validator().prepare(request()), outputs: [tensor("a", [0.1, 0.7, 0.2]), tensor("b", [5])])
        #expect(response.outputs.map(\.name) == ["classes", "scores", "b"])
    }

    @Test func aSignatureAnswersOnlyItsDeclaredOutputs() throws {
        let shaper = OutputShaper(name: "m", version: 1, classification: nil, labels: [:], declaredOutputs: ["b"])
        let response = try shaper.response(try validator().prepare(request()), outputs: [tensor("a", [1]), tensor("b", [2])])
        #expect(response.outputs.map(\.name) == ["b"])
    }
}
