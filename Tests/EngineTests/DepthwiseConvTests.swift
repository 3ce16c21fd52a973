import Foundation
import Testing
@testable import Engine

/// The depthwise convolution kernel against a plain loop: 3x3 and 5x5 windows, strides 1 and
/// 2 (and a row stride of 3), symmetric and asymmetric pads, dilation, output widths that leave
/// partial vectors, fused activations (clamp, SiLU, Tanh that has no vector form) and a fused
/// residual. Through the model (the CPU's instruction set, one and two workers) and, for the
/// AVX2 build on AVX-512 machines, by running the kernel directly with `isa: .avx2`.
@Suite(.enabled(if: VectorISA.detected != nil, "the CPU has neither AVX-512 nor AVX2"))
struct DepthwiseConvTests {
    struct Case: Sendable, CustomStringConvertible {
        var batch = 1, channels: Int, height: Int, width: Int
        var kernel: (Int, Int), strides: (Int, Int) = (1, 1), dilations: (Int, Int) = (1, 1)
        var pads: (Int, Int, Int, Int) = (0, 0, 0, 0)   // top, left, bottom, right
        var activation: String? = nil
        var residual = false
        var description: String {
            "\(batch)x\(channels)x\(height)x\(width) k\(kernel) s\(strides) d\(dilations) p\(pads) \(activation ?? "") \(residual ? "+residual" : "")"
        }
    }

    static let cases: [Case] = [
        Case(batch: 2, channels: 5, height: 9, width: 11, kernel: (3, 3), pads: (1, 1, 1, 1), activation: "Clip"),
        Case(channels: 3, height: 112, width: 112, kernel: (3, 3), pads: (1, 1, 1, 1), activation: "SiLU"),
        Case(channels: 4, height: 113, width: 113, kernel: (3, 3), strides: (2, 2), pads: (0, 0, 1, 1), activation: "Relu"),
        Case(channels: 6, height: 14, width: 14, kernel: (5, 5), pads: (2, 2, 2, 2), activation: "Tanh"),
        Case(batch: 2, channels: 3, height: 15, width: 37, kernel: (5, 5), strides: (2, 2), pads: (1, 2, 2, 1)),
        Case(channels: 2, height: 20, width: 70, kernel: (3, 3), strides: (3, 1), dilations: (2, 2), pads: (2, 2, 2, 2)),
        Case(channels: 7, height: 7, width: 7, kernel: (3, 3), pads: (1, 1, 1, 1), residual: true),
        Case(batch: 2, channels: 3, height: 33, width: 65, kernel: (3, 5), strides: (1, 2), pads: (1, 2, 1, 2), activation: "Relu", residual: true),
    ]

    struct Data {
        let x: [Float], w: [Float], b: [Float], r: [Float]
        let expected: [Double], outShape: [Int]
    }

    static func data(_ c: Case) -> Data {
        let (kh, kw) = c.kernel
        let x = randomFloats(c.batch * c.channels * c.height * c.width, seed: UInt64(c.height * 31 + c.width))
        let w = randomFloats(c.channels * kh * kw, seed: UInt64(c.channels * 7 + kh))
        let b = randomFloats(c.channels, seed: 99)
        var (y, shape) = referenceConv(x, [c.batch, c.channels, c.height, c.width], w, [c.channels, 1, kh, kw], bias: b,
                                       group: c.channels, strides: c.strides, pads: c.pads, dilations: c.dilations)
        let r = c.residual ? randomFloats(y.count, seed: 5) : []
        for i in y.indices {
            var v = y[i] + (c.residual ? Double(r[i]) : 0)
            switch c.activation {
            case "Relu": v = max(v, 0)
            case "Clip": v = min(max(v, 0), 6)
            case "SiLU": v = v * sigmoid(v)
            case "Tanh": v = tanh(v)
            default: break
            }
            y[i] = v
        }
        return Data(x: x, w: w, b: b, r: r, expected: y, outShape: shape)
    }

    static func graph(_ c: Case, _ d: Data) -> TestGraph {
        var g = TestGraph()
        g.input("x", [c.batch, c.channels, c.height, c.width])
        g.constant("W", [c.channels, 1, c.kernel.0, c.kernel.1], d.w)
        g.constant("B", [c.channels], d.b)
        g.node("Conv", ["x", "W", "B"], ["c"], ["group": .int(c.channels), "kernel_shape": .ints([c.kernel.0, c.kernel.1]),
                                               "strides": .ints([c.strides.0, c.strides.1]),
                                               "dilations": .ints([c.dilations.0, c.dilations.1]),
                                               "pads": .ints([c.pads.0, c.pads.1, c.pads.2, c.pads.3])])
        var last = "c"
        if c.residual {
            g.input("r", d.outShape)
            g.node("Add", [last, "r"], ["sum"])
            last = "sum"
        }
        switch c.activation {
        case "Clip": g.node("Clip", [last], ["y"], ["min": .float(0), "max": .float(6)])
        case "SiLU":
            g.node("Sigmoid", [last], ["s"])
            g.node("Mul", [last, "s"], ["y"])
        case let name?: g.node(name, [last], ["y"])
        case nil: g.node("Identity", [last], ["y"])
        }
        g.outputs = ["y"]
        return g
    }

    @Test(arguments: cases)
    func matchesNaive(_ c: Case) throws {
        let d = Self.data(c)
        let model = try Self.graph(c, d).model(maxBatchSize: c.batch)
        // Everything fused into the one convolution (Tanh has no epilogue form: it stays).
        #expect(model.stepTypes(batch: c.batch) == (c.activation == "Tanh" ? ["Conv", "Tanh"] : ["Conv"]))
        let step = model.plans[c.batch]!.steps[0]
        #expect(step.kernel is DepthwiseConvKernel, "\(type(of: step.kernel))")
        var inputs = [hostTensor([c.batch, c.channels, c.height, c.width], d.x)]
        if c.residual { inputs.append(hostTensor(d.outShape, d.r)) }
        for runner in [nil, TestRunner()] as [(any ParallelRunner)?] {
            let y = try runModel(model, inputs, runner: runner)
            #expect(y.shape == d.outShape)
            let worst = worstError(y.floats, d.expected, atol: 1e-5, rtol: 1e-5)
            #expect(worst <= 1, "\(c): worst error \(worst) x tolerance")
        }
    }

    /// The AVX2 build of the kernel on this machine (on AVX2-only machines the model test above
    /// already runs it).
    @Test(.enabled(if: VectorISA.detected == .avx512, "AVX2-only CPU: covered by matchesNaive"), arguments: cases)
    func avx2BuildMatchesNaive(_ c: Case) throws {
        let d = Self.data(c)
        let model = try Self.graph(c, d).model(maxBatchSize: c.batch)
        var kernel = model.plans[c.batch]!.steps[0].kernel as! DepthwiseConvKernel
        kernel.isa = .avx2
        let out = [Float](repeating: .nan, count: d.expected.count)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: kernel.scratchBytes, alignment: 64)
        defer { scratch.deallocate() }
        let y = try d.x.withUnsafeBytes { x in
            try d.w.withUnsafeBytes { w in
                try d.b.withUnsafeBytes { b in
                    try d.r.withUnsafeBytes { r in
                        var out = out
                        try out.withUnsafeMutableBytes { o in
                            let inputs: [UnsafeRawPointer?] = [x.baseAddress, w.baseAddress, b.baseAddress, c.residual ? r.baseAddress : nil]
                            let outputs: [UnsafeMutableRawPointer?] = [o.baseAddress]
                            inputs.withUnsafeBufferPointer { ins in
                                outputs.withUnsafeBufferPointer { outs in
                                    kernel.run(KernelIO(inputs: ins, outputs: outs, scratch: scratch, scratchStride: kernel.scratchBytes))
                                }
                            }
                            _ = try #require(o.baseAddress)
                        }
                        return out
                    }
                }
            }
        }
        var expected = d.expected
        if c.activation == "Tanh" {
            // The model runs Tanh as its own step after the kernel.
            expected = Self.data(Case(batch: c.batch, channels: c.channels, height: c.height, width: c.width, kernel: c.kernel,
                                      strides: c.strides, dilations: c.dilations, pads: c.pads, residual: c.residual)).expected
        }
        let worst = worstError(y, expected, atol: 1e-5, rtol: 1e-5)
        #expect(worst <= 1, "\(c): worst error \(worst) x tolerance")
    }
}
