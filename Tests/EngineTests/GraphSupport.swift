import Foundation
import Testing
@testable import Engine

/// A graph written node by node for the rewrite and kernel tests, loaded as a `Model` the way
/// the ONNX loader's graphs are (constant folding, optimizer, plans).
struct TestGraph {
    var nodes: [Node] = []
    var constants: [String: HostTensor] = [:]
    var inputs: [ValueInfo] = []
    var outputs: [String] = []

    mutating func input(_ name: String, _ shape: [Int], dynamicBatch: Bool = true) {
        let dims: [Engine.Dimension] = shape.enumerated().map { $0.offset == 0 && dynamicBatch ? .symbolic("N") : .fixed($0.element) }
        inputs.append(ValueInfo(name: name, dtype: .float32, typeName: "float", dims: dims))
    }

    mutating func constant(_ name: String, _ shape: [Int], _ values: [Float]) {
        precondition(shape.elementCount == values.count)
        constants[name] = HostTensor(shape: shape, floats: values)
    }

    mutating func node(_ op: String, _ inputs: [String], _ outputs: [String], _ attributes: [String: Attribute] = [:]) {
        nodes.append(Node(name: "\(op)_\(nodes.count)", opType: op, domain: "", inputs: inputs, outputs: outputs, attributes: attributes))
    }

    func model(maxBatchSize: Int = 1, kernels: Model.Kernels = .automatic) throws -> Model {
        let graph = Graph(nodes: nodes, constants: constants, inputs: inputs,
                          outputs: outputs.map { ValueInfo(name: $0, dtype: .float32, typeName: "float", dims: nil) }, opset: 13)
        return try Model(graph: graph, options: .init(maxBatchSize: maxBatchSize, kernels: kernels))
    }
}

extension Model {
    /// The op types of the steps that run at `batch`, in order (what the rewrites left).
    func stepTypes(batch: Int = 1) -> [String] { plans[batch]!.steps.map(\.opType) }
}

/// Random floats in [-1, 1) from a fixed seed.
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix(seed: seed)
    return (0..<count).map { _ in generator.nextFloat() }
}

func hostTensor(_ shape: [Int], _ values: [Float]) -> HostTensor { HostTensor(shape: shape, floats: values) }

/// The largest |actual - expected| / (atol + rtol |expected|) (at most 1 passes).
func worstError(_ actual: [Float], _ expected: [Double], atol: Double = 1e-5, rtol: Double = 1e-4) -> Double {
    // A wrong element count fails the comparison (not the whole test run).
    guard actual.count == expected.count else { return .infinity }
    var worst = 0.0
    for (a, e) in zip(actual, expected) {
        if a.isNaN != e.isNaN { return .infinity }
        if a.isNaN { continue }
        worst = max(worst, abs(Double(a) - e) / (atol + rtol * abs(e)))
    }
    return worst
}

/// Plain 2-D convolution in double precision: x (N, C, H, W), w (M, C / group, kh, kw);
/// pads (top, left, bottom, right).
func referenceConv(_ x: [Float], _ shape: [Int], _ w: [Float], _ wShape: [Int], bias: [Float]?, group: Int = 1,
                   strides: (Int, Int) = (1, 1), pads: (Int, Int, Int, Int) = (0, 0, 0, 0), dilations: (Int, Int) = (1, 1))
    -> (values: [Double], shape: [Int]) {
    let (n, c, h, wd) = (shape[0], shape[1], shape[2], shape[3])
    let (m, cg, kh, kw) = (wShape[0], wShape[1], wShape[2], wShape[3])
    let outH = (h + pads.0 + pads.2 - ((kh - 1) * dilations.0 + 1)) / strides.0 + 1
    let outW = (wd + pads.1 + pads.3 - ((kw - 1) * dilations.1 + 1)) / strides.1 + 1
    let mg = m / group
    var y = [Double](repeating: 0, count: n * m * outH * outW)
    for b in 0..<n {
        for o in 0..<m {
            let g = o / mg
            for oy in 0..<outH {
                for ox in 0..<outW {
                    var sum = Double(bias?[o] ?? 0)
                    for ci in 0..<cg {
                        let channel = g * cg + ci
                        for ky in 0..<kh {
                            let iy = oy * strides.0 - pads.0 + ky * dilations.0
                            guard iy >= 0, iy < h else { continue }
                            for kx in 0..<kw {
                                let ix = ox * strides.1 - pads.1 + kx * dilations.1
                                guard ix >= 0, ix < wd else { continue }
                                sum += Double(w[((o * cg + ci) * kh + ky) * kw + kx]) * Double(x[((b * c + channel) * h + iy) * wd + ix])
                            }
                        }
                    }
                    y[((b * m + o) * outH + oy) * outW + ox] = sum
                }
            }
        }
    }
    return (y, [n, m, outH, outW])
}

func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

/// Two workers: the calling thread and one thread started per call (enough for tests).
final class TestRunner: ParallelRunner, @unchecked Sendable {
    let width = 2
    /// The job while a call runs; the thread's block holds the box, not the closure.
    final class Box: @unchecked Sendable { var job: ((Int) -> Void)? }

    func forEachWorker(_ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let box = Box()
            box.job = body
            let done = DispatchSemaphore(value: 0)
            let thread = Thread { box.job?(1); done.signal() }
            thread.start()
            body(0)
            done.wait()
            box.job = nil
        }
    }
}

/// Runs `model` on `inputs` (one session, with `runner` when given) and returns output 0.
func runModel(_ model: Model, _ inputs: [HostTensor], runner: (any ParallelRunner)? = nil) throws -> HostTensor {
    try model.makeSession(runner: runner).run(inputs)[0]
}
