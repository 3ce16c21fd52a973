import Foundation
import Testing
@testable import Engine

/// The ONNX backend node tests (and the wheel's shipped converted-model tests) for the
/// operators the engine implements. Cases are listed in Tests/Fixtures/node_tests.txt;
/// the data comes from `scripts/node-tests.sh`, which the test script runs first and whose
/// directories it passes in ONNX_NODE_TESTS (generated `node/` suite) and ONNX_SHIPPED_TESTS
/// (the onnx wheel's `backend/test/data`).
struct NodeTests {
    static let listed: [String] = {
        guard let text = try? String(contentsOfFile: Fixtures.directory + "/node_tests.txt", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }()

    /// Default tolerances of ONNX's backend test runner.
    static let rtol = 1e-3
    static let atol = 1e-7
    /// A little more absolute slack for float sums whose exact result is near zero.
    static let floatAtol = 1e-5

    @Test func caseListAndDataArePresent() throws {
        #expect(Self.listed.count >= 200, "node_tests.txt lists \(Self.listed.count) cases")
        let node = try #require(Fixtures.environmentDirectory("ONNX_NODE_TESTS"), "set ONNX_NODE_TESTS (run scripts/test.sh)")
        let shipped = try #require(Fixtures.environmentDirectory("ONNX_SHIPPED_TESTS"), "set ONNX_SHIPPED_TESTS (run scripts/test.sh)")
        #expect(FileManager.default.fileExists(atPath: node + "/test_conv_with_strides_padding/model.onnx"))
        #expect(FileManager.default.fileExists(atPath: shipped + "/pytorch-converted"))
    }

    static func directory(of listedCase: String) -> String? {
        let parts = listedCase.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        if parts[0] == "node" { return Fixtures.environmentDirectory("ONNX_NODE_TESTS").map { $0 + "/" + parts[1] } }
        return Fixtures.environmentDirectory("ONNX_SHIPPED_TESTS").map { $0 + "/" + listedCase }
    }

    @Test(arguments: listed)
    func nodeCase(_ listedCase: String) throws {
        let directory = try #require(Self.directory(of: listedCase), "no data directory for \(listedCase); set ONNX_NODE_TESTS / ONNX_SHIPPED_TESTS")
        let dataSets = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("test_data_set_") }.sorted()
        #expect(!dataSets.isEmpty, "no test_data_set_* in \(directory)")
        for dataSet in dataSets {
            let path = directory + "/" + dataSet
            let files = try FileManager.default.contentsOfDirectory(atPath: path)
            func numbered(_ prefix: String) throws -> [(name: String, tensor: HostTensor)] {
                let count = files.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".pb") }.count
                return try (0..<count).map { try Fixtures.readTensorProto("\(path)/\(prefix)\($0).pb") }
            }
            let given = try numbered("input_"), expected = try numbered("output_")
            // The engine plans shapes at load: inputs that determine shapes (Reshape's shape,
            // Pad's pads, axes) are bound to their test values, as a deployment would bind them.
            var bound: [String: HostTensor] = [:]
            var model: Model
            while true {
                do {
                    model = try Model(path: directory + "/model.onnx", options: .init(boundInputs: bound))
                    break
                } catch EngineError.inputNeededAtLoad(_, _, let input) where bound[input] == nil {
                    let graphInputs = try ONNXLoader.load(path: directory + "/model.onnx").inputs.map(\.name)
                    let index = try #require(graphInputs.firstIndex(of: input), "\(input) is not a graph input")
                    bound[input] = given.first { $0.name == input }?.tensor ?? given[index].tensor
                }
            }
            // Match inputs by name where the file names its value; otherwise by position among
            // the model's non-initializer inputs (converted models also list weights as inputs).
            var inputs: [HostTensor] = []
            for (index, info) in model.inputs.enumerated() {
                if let match = given.first(where: { $0.name == info.name }) { inputs.append(match.tensor); continue }
                try #require(index < given.count, "\(listedCase): no data for input '\(info.name)'")
                inputs.append(given[index].tensor)
            }
            let session = model.makeSession()
            let outputs = try session.run(inputs)
            #expect(outputs.count >= expected.count)
            for (index, (name, reference)) in expected.enumerated() where index < outputs.count {
                let atol = reference.dtype == .float32 ? Self.floatAtol : Self.atol
                if let difference = compare(outputs[index], reference, atol: atol, rtol: Self.rtol) {
                    Issue.record("\(listedCase) \(dataSet) output \(index) '\(name)': \(difference)")
                }
            }
        }
    }
}
