import Foundation
import Testing
@testable import Engine

/// The graph optimizer's rewrites (per-channel affine folding, SiLU, residual Add and Pad
/// merging): each test checks that the rewrite happened (the steps left in the plan) and that
/// the outputs equal a plain double-precision computation of the original graph. Run with the
/// engine's own kernels and with `blas` (other convolution kernels take the fused parts through
/// the generic epilogue), on one and two workers.
struct GraphRewriteTests {
    static let kernelChoices: [Model.Kernels] = [.automatic, .blas]

    /// x (2, 5, 9, 11) -> Conv 3x3 (7 out, pads 1) -> ... per test.
    struct ConvSetup {
        let x: [Float], xShape = [2, 5, 9, 11]
        let w: [Float], wShape = [7, 5, 3, 3]
        let b: [Float]
        init(seed: UInt64) {
            x = randomFloats(2 * 5 * 9 * 11, seed: seed)
            w = randomFloats(7 * 5 * 9, seed: seed + 1).map { $0 * 0.3 }
            b = randomFloats(7, seed: seed + 2)
        }
        func reference() -> [Double] {
            referenceConv(x, xShape, w, wShape, bias: b, pads: (1, 1, 1, 1)).values
        }
        func graph(bias: Bool = true) -> TestGraph {
            var g = TestGraph()
            g.input("x", xShape)
            g.constant("W", wShape, w)
            g.constant("B", [7], b)
            g.node("Conv", bias ? ["x", "W", "B"] : ["x", "W"], ["c"], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])])
            return g
        }
        /// Channel of element i of the (2, 7, 9, 11) output.
        func channel(_ i: Int) -> Int { (i / 99) % 7 }
    }

    func check(_ g: TestGraph, _ inputs: [HostTensor], expected: [Double], steps: [String], batch: Int = 2,
               atol: Double = 1e-5) throws {
        for kernels in Self.kernelChoices {
            let model = try g.model(maxBatchSize: batch, kernels: kernels)
            #expect(model.stepTypes(batch: batch) == steps, "\(kernels)")
            for runner in [nil, TestRunner()] as [(any ParallelRunner)?] {
                let y = try runModel(model, inputs, runner: runner)
                let worst = worstError(y.floats, expected, atol: atol)
                #expect(worst <= 1, "\(kernels), \(runner == nil ? 1 : 2) workers: worst error \(worst) x tolerance")
            }
        }
    }

    @Test func mulAddAfterConvFoldIntoIt() throws {
        let s = ConvSetup(seed: 11)
        var g = s.graph(bias: false)
        let scale = randomFloats(7, seed: 5), shift = randomFloats(7, seed: 6)
        g.constant("scale", [1, 7, 1, 1], scale)
        g.constant("shift", [7, 1, 1], shift)
        g.node("Mul", ["c", "scale"], ["m"])
        g.node("Add", ["shift", "m"], ["a"])
        g.node("Relu", ["a"], ["y"])
        g.outputs = ["y"]
        let conv = referenceConv(s.x, s.xShape, s.w, s.wShape, bias: nil, pads: (1, 1, 1, 1)).values
        let expected = conv.indices.map { max(conv[$0] * Double(scale[s.channel($0)]) + Double(shift[s.channel($0)]), 0) }
        try check(g, [hostTensor(s.xShape, s.x)], expected: expected, steps: ["Conv"])
    }

    @Test func subDivAndConstantMinusConvFold() throws {
        let s = ConvSetup(seed: 21)
        var g = s.graph()
        let divisor = randomFloats(7, seed: 7).map { $0 + 2 }
        g.constant("offset", [], [0.25])
        g.constant("divisor", [1, 7, 1, 1], divisor)
        g.constant("base", [1], [1.5])
        g.node("Sub", ["c", "offset"], ["s"])
        g.node("Div", ["s", "divisor"], ["d"])
        g.node("Sub", ["base", "d"], ["y"])
        g.outputs = ["y"]
        let conv = s.reference()
        let expected = conv.indices.map { 1.5 - (conv[$0] - 0.25) / Double(divisor[s.channel($0)]) }
        try check(g, [hostTensor(s.xShape, s.x)], expected: expected, steps: ["Conv"])
    }

    @Test func notFoldedWhenSharedOrNotPerChannel() throws {
        let s = ConvSetup(seed: 31)
        var g = s.graph()
        // Mul by a per-column constant (broadcast along W): not a per-channel affine.
        let columns = randomFloats(11, seed: 8)
        g.constant("columns", [1, 1, 1, 11], columns)
        g.node("Mul", ["c", "columns"], ["m"])
        // Constant / Conv: not foldable.
        g.constant("two", [], [2])
        g.node("Div", ["two", "m"], ["d"])
        // Read twice: the Add must stay (and so must the Conv's own output).
        g.node("Add", ["d", "d"], ["y"])
        g.outputs = ["y"]
        let conv = s.reference()
        let expected = conv.indices.map { 2 * (2 / (conv[$0] * Double(columns[$0 % 11]))) }
        try check(g, [hostTensor(s.xShape, s.x)], expected: expected, steps: ["Conv", "Mul", "Div", "Add"], atol: 1e-3)
    }

    @Test func siluFusesIntoConv() throws {
        let s = ConvSetup(seed: 41)
        var g = s.graph()
        g.node("Sigmoid", ["c"], ["s"])
        g.node("Mul", ["s", "c"], ["y"])
        g.outputs = ["y"]
        let expected = s.reference().map { $0 * sigmoid($0) }
        try check(g, [hostTensor(s.xShape, s.x)], expected: expected, steps: ["Conv"])
    }

    @Test func residualAddAndReluFuseIntoTheLaterConv() throws {
        let s = ConvSetup(seed: 51)
        var g = s.graph()
        // A second branch: 1x1 conv of x to 7 channels; Add(c, shortcut) then Relu.
        let w2 = randomFloats(7 * 5, seed: 9)
        g.constant("W2", [7, 5, 1, 1], w2)
        g.node("Conv", ["x", "W2"], ["shortcut"], ["kernel_shape": .ints([1, 1])])
        g.node("Add", ["shortcut", "c"], ["a"])
        g.node("Relu", ["a"], ["y"])
        g.outputs = ["y"]
        let main = s.reference()
        let shortcut = referenceConv(s.x, s.xShape, w2, [7, 5, 1, 1], bias: nil).values
        let expected = main.indices.map { max(main[$0] + shortcut[$0], 0) }
        try check(g, [hostTensor(s.xShape, s.x)], expected: expected, steps: ["Conv", "Conv"])
        // The later conv (the 1x1) took the residual; the first one kept its plain output.
        let model = try g.model(maxBatchSize: 2)
        #expect(model.plans[2]!.steps[1].inputs.count == 4)
    }

    @Test func residualFromAGraphInputThatBroadcasts() throws {
        let s = ConvSetup(seed: 61)
        var g = s.graph()
        g.input("r", [2, 7, 1, 11])
        g.node("Add", ["c", "r"], ["a"])
        g.node("Clip", ["a"], ["y"], ["min": .float(-0.5), "max": .float(0.5)])
        g.outputs = ["y"]
        let r = randomFloats(2 * 7 * 11, seed: 10)
        let conv = s.reference()
        let expected = conv.indices.map { i -> Double in
            let (n, c, x) = (i / (7 * 99), s.channel(i), i % 11)
            return min(max(conv[i] + Double(r[(n * 7 + c) * 11 + x]), -0.5), 0.5)
        }
        try check(g, [hostTensor(s.xShape, s.x), hostTensor([2, 7, 1, 11], r)], expected: expected, steps: ["Conv"])
    }

    @Test func residualThatEnlargesTheOutput() throws {
        // Conv output (1, 7, 9, 11) + residual (3, 7, 9, 11): the fused conv writes a broadcast sum.
        let s = ConvSetup(seed: 71)
        var g = TestGraph()
        g.input("x", [1, 5, 9, 11], dynamicBatch: false)
        g.input("r", [3, 7, 9, 11], dynamicBatch: false)
        g.constant("W", s.wShape, s.w)
        g.node("Conv", ["x", "W"], ["c"], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])])
        g.node("Add", ["r", "c"], ["y"])
        g.outputs = ["y"]
        let x = Array(s.x.prefix(5 * 99)), r = randomFloats(3 * 7 * 99, seed: 12)
        let conv = referenceConv(x, [1, 5, 9, 11], s.w, s.wShape, bias: nil, pads: (1, 1, 1, 1)).values
        let expected = r.indices.map { Double(r[$0]) + conv[$0 % (7 * 99)] }
        try check(g, [hostTensor([1, 5, 9, 11], x), hostTensor([3, 7, 9, 11], r)], expected: expected, steps: ["Conv"], batch: 1)
    }

    @Test func zeroPadMergesIntoConvAndAveragePool() throws {
        let s = ConvSetup(seed: 81)
        var g = TestGraph()
        g.input("x", s.xShape)
        g.constant("W", s.wShape, s.w)
        g.constant("B", [7], s.b)
        g.constants["pads"] = HostTensor(shape: [8], int64s: [0, 0, 1, 0, 0, 0, 2, 1])
        g.node("Pad", ["x", "pads"], ["p"])
        // The conv's own pads add to the Pad's: (top 1 + 1, left 0 + 1, bottom 2 + 0, right 1 + 0).
        g.node("Conv", ["p", "W", "B"], ["c"], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 0, 0]), "strides": .ints([2, 1])])
        g.node("AveragePool", ["p"], ["q"], ["kernel_shape": .ints([2, 3]), "strides": .ints([2, 2])])
        g.outputs = ["c", "q"]
        for kernels in Self.kernelChoices {
            let model = try g.model(maxBatchSize: 2, kernels: kernels)
            #expect(model.stepTypes(batch: 2) == ["Conv", "AveragePool"])
            let outputs = try model.makeSession().run([hostTensor(s.xShape, s.x)])
            let conv = referenceConv(s.x, s.xShape, s.w, s.wShape, bias: s.b, strides: (2, 1), pads: (2, 1, 2, 1)).values
            #expect(worstError(outputs[0].floats, conv) <= 1)
            // Average over the zero-padded input, pads counted.
            let (ph, pw) = (9 + 3, 11 + 1)
            var padded = [Double](repeating: 0, count: 2 * 5 * ph * pw)
            for i in s.x.indices {
                let (n, c, y, x) = (i / 495, (i / 99) % 5, (i / 11) % 9, i % 11)
                padded[((n * 5 + c) * ph + y + 1) * pw + x] = Double(s.x[i])
            }
            let (oh, ow) = ((ph - 2) / 2 + 1, (pw - 3) / 2 + 1)
            var pooled: [Double] = []
            for p in 0..<10 { for oy in 0..<oh { for ox in 0..<ow {
                var sum = 0.0
                for ky in 0..<2 { for kx in 0..<3 { sum += padded[(p * ph + oy * 2 + ky) * pw + ox * 2 + kx] } }
                pooled.append(sum / 6)
            } } }
            #expect(outputs[1].shape == [2, 5, oh, ow])
            #expect(worstError(outputs[1].floats, pooled) <= 1)
        }
    }

    @Test func padStaysForMaxPoolAndNonZeroValues() throws {
        var g = TestGraph()
        let x = randomFloats(1 * 2 * 4 * 4, seed: 3)
        g.input("x", [1, 2, 4, 4])
        g.constants["pads"] = HostTensor(shape: [8], int64s: [0, 0, 1, 1, 0, 0, 1, 1])
        g.constant("value", [], [0.75])
        g.node("Pad", ["x", "pads"], ["p"])
        g.node("MaxPool", ["p"], ["m"], ["kernel_shape": .ints([2, 2])])
        g.node("Pad", ["x", "pads", "value"], ["p2"])
        // 2x2 window that picks its top-left element of the same channel: 5x5 like the pool.
        g.constant("W", [2, 2, 2, 2], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        g.node("Conv", ["p2", "W"], ["c"], ["kernel_shape": .ints([2, 2])])
        g.node("Add", ["m", "c"], ["y"])
        g.outputs = ["y"]
        let model = try g.model()
        #expect(model.stepTypes().filter { $0 == "Pad" }.count == 2)
        let y = try runModel(model, [hostTensor([1, 2, 4, 4], x)]).floats
        // Padded 6x6 planes: zeros (MaxPool input) and 0.75 (Conv input, identity weights).
        var expected: [Double] = []
        for c in 0..<2 { for oy in 0..<5 { for ox in 0..<5 {
            func at(_ py: Int, _ px: Int, _ fill: Double) -> Double {
                let (iy, ix) = (py - 1, px - 1)
                return iy >= 0 && iy < 4 && ix >= 0 && ix < 4 ? Double(x[(c * 4 + iy) * 4 + ix]) : fill
            }
            let m = max(at(oy, ox, 0), at(oy, ox + 1, 0), at(oy + 1, ox, 0), at(oy + 1, ox + 1, 0))
            expected.append(m + at(oy, ox, 0.75))
        } } }
        #expect(worstError(y, expected) <= 1)
    }
}
