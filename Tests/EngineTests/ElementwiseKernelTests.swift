import Foundation
import Testing
@testable import Engine

/// The element-wise vector kernels (`AVX512Kernels.Elementwise`, built for AVX-512 and for
/// AVX2) against plain loops, on both builds where the CPU runs them, over lengths that leave
/// every tail size; and the float Add/Sub/Mul/Div, Pad and activation operators end to end
/// with broadcasting on one and two workers.
@Suite(.enabled(if: VectorISA.detected != nil, "the CPU has neither AVX-512 nor AVX2"))
struct ElementwiseKernelTests {
    /// The builds this CPU can run: AVX2 always (AVX-512 CPUs have it), AVX-512 when present.
    static let isas: [VectorISA] = VectorISA.detected == .avx512 ? [.avx2, .avx512] : [.avx2]
    static let lengths = [0, 1, 5, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257]

    static let activations: [(Activation, @Sendable (Double) -> Double)] = [
        (.identity, { $0 }),
        (.relu, { max($0, 0) }),
        (.leakyRelu(alpha: 0.1), { $0 < 0 ? 0.1 * $0 : $0 }),
        (.clip(low: -0.3, high: 0.6), { min(max($0, -0.3), 0.6) }),
        (.sigmoid, { sigmoid($0) }),
        (.hardSigmoid(alpha: 0.2, beta: 0.5), { min(max(0.2 * $0 + 0.5, 0), 1) }),
        (.hardSwish, { $0 * min(max($0 / 6 + 0.5, 0), 1) }),
        (.silu, { $0 * sigmoid($0) }),
    ]

    @Test(arguments: isas)
    func activationsWithBiasAndResidual(_ isa: VectorISA) {
        for (activation, f) in Self.activations {
            for count in Self.lengths {
                // Wide inputs reach exp's clamped range (|x| > 88).
                let x = randomFloats(count, seed: UInt64(count)).map { $0 * 120 }
                let r = randomFloats(count, seed: UInt64(count + 1000))
                var y = [Float](repeating: .nan, count: count + 1)
                x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in
                    VectorKernels.activate(activation.vectorCode!, px.baseAddress!, py.baseAddress!, count: count, bias: 0.5, isa: isa)
                } }
                #expect(y[count].isNaN, "\(activation) wrote past \(count)")
                let expected = x.map { f(Double($0) + 0.5) }
                #expect(worstError(Array(y.prefix(count)), expected, atol: 1e-6, rtol: 1e-6) <= 1, "\(isa) \(activation) \(count)")
                x.withUnsafeBufferPointer { px in r.withUnsafeBufferPointer { pr in y.withUnsafeMutableBufferPointer { py in
                    VectorKernels.addActivate(activation.vectorCode!, px.baseAddress!, pr.baseAddress!, py.baseAddress!, count: count, isa: isa)
                } } }
                let summed = x.indices.map { f(Double(x[$0]) + Double(r[$0])) }
                #expect(worstError(Array(y.prefix(count)), summed, atol: 1e-6, rtol: 1e-6) <= 1, "\(isa) \(activation) + residual \(count)")
            }
        }
    }

    @Test(arguments: isas)
    func arithmeticRowsAndScalars(_ isa: VectorISA) {
        let ops: [(Int, (Float, Float) -> Float)] = [(0, { $0 + $1 }), (1, { $0 - $1 }), (2, { $0 * $1 }), (3, { $0 / $1 })]
        for (op, f) in ops {
            for count in Self.lengths {
                let a = randomFloats(count, seed: UInt64(count * 3)), b = randomFloats(count, seed: UInt64(count * 3 + 1)).map { $0 + 3 }
                var y = [Float](repeating: .nan, count: count + 1)
                a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in y.withUnsafeMutableBufferPointer { py in
                    VectorKernels.binary(op, pa.baseAddress!, pb.baseAddress!, py.baseAddress!, count: count, isa: isa)
                } } }
                // IEEE arithmetic lane by lane: exactly the scalar result.
                #expect(Array(y.prefix(count)) == a.indices.map { f(a[$0], b[$0]) }, "\(isa) op \(op) count \(count)")
                #expect(y[count].isNaN)
                for scalarFirst in [false, true] {
                    a.withUnsafeBufferPointer { pa in y.withUnsafeMutableBufferPointer { py in
                        VectorKernels.binaryScalar(op, pa.baseAddress!, 1.75, scalarFirst: scalarFirst, py.baseAddress!, count: count, isa: isa)
                    } }
                    let expected = a.map { scalarFirst ? f(1.75, $0) : f($0, 1.75) }
                    #expect(Array(y.prefix(count)) == expected, "\(isa) op \(op) scalar first \(scalarFirst) count \(count)")
                }
            }
        }
    }

    /// The direct convolution's transposed store (both builds): bias, residual, clamp and the
    /// other activations in the epilogue, for pixel counts with and without a partial block.
    @Test(arguments: isas)
    func directConvStoreEpilogue(_ isa: VectorISA) {
        let channels = 37, ldAcc = 64, ldOut = 90
        let cases: [(Activation, (Double) -> Double)] = [
            (.identity, { $0 }), (.relu, { max($0, 0) }), (.clip(low: -0.5, high: 0.5), { min(max($0, -0.5), 0.5) }),
            (.silu, { $0 * sigmoid($0) }), (.sigmoid, { sigmoid($0) }), (.hardSwish, { $0 * min(max($0 / 6 + 0.5, 0), 1) }),
        ]
        for count in [5, 16, 37, 80] {
            let acc = randomFloats(count * ldAcc, seed: UInt64(count)), bias = randomFloats(channels, seed: 3)
            let residual = randomFloats(channels * ldOut, seed: 4)
            for (activation, f) in cases {
                for withResidual in [false, true] {
                    var out = [Float](repeating: .nan, count: channels * ldOut)
                    let (low, high) = activation.clampBounds
                    let code = activation.isClamp ? (kind: 0, alpha: Float(0), beta: Float(0)) : activation.vectorCode!
                    acc.withUnsafeBufferPointer { a in bias.withUnsafeBufferPointer { b in residual.withUnsafeBufferPointer { r in
                        out.withUnsafeMutableBufferPointer { o in
                            VectorKernels.storeTransposed(acc: a.baseAddress!, ldAcc: ldAcc, count: count, channels: channels,
                                                          bias: b.baseAddress!, low: low, high: high, out: o.baseAddress!, ldOut: ldOut,
                                                          residual: withResidual ? r.baseAddress! : nil, activation: code, isa: isa)
                        }
                    } } }
                    var actual: [Float] = [], expected: [Double] = []
                    for c in 0..<channels {
                        for p in 0..<count {
                            actual.append(out[c * ldOut + p])
                            let sum = Double(acc[p * ldAcc + c]) + Double(bias[c]) + (withResidual ? Double(residual[c * ldOut + p]) : 0)
                            expected.append(f(sum))
                        }
                        #expect(out[c * ldOut + count].isNaN, "wrote past the pixels")
                    }
                    #expect(worstError(actual, expected, atol: 1e-6, rtol: 1e-5) <= 1,
                            "\(isa) \(activation) residual \(withResidual) count \(count)")
                }
            }
        }
    }

    @Test(arguments: isas)
    func sumsAndMaxima(_ isa: VectorISA) {
        for count in Self.lengths + [1000, 4099] where count > 0 {
            let x = randomFloats(count, seed: UInt64(count * 5))
            let sum = x.withUnsafeBufferPointer { VectorKernels.reduce($0.baseAddress!, count: count, isMax: false, isa: isa) }
            let maximum = x.withUnsafeBufferPointer { VectorKernels.reduce($0.baseAddress!, count: count, isMax: true, isa: isa) }
            #expect(abs(Double(sum) - x.reduce(0.0) { $0 + Double($1) }) <= 1e-5 * Double(count), "\(isa) sum of \(count)")
            #expect(maximum == x.max()!, "\(isa) max of \(count)")
        }
    }

    /// Shapes whose broadcast leaves rows of both kinds (row-row, row-scalar, scalar-row,
    /// strided), and a tensor large enough to be split across workers.
    static let broadcasts: [([Int], [Int])] = [
        ([2, 3, 4, 5], [2, 3, 4, 5]), ([2, 3, 4, 5], [3, 1, 1]), ([2, 3, 4, 5], [5]), ([1], [2, 3, 4, 5]),
        ([2, 1, 4, 1], [1, 3, 1, 5]), ([2, 3, 4, 5], [2, 3, 1, 1]), ([3, 1], [3, 100000]), ([1, 64, 90, 90], [1, 64, 90, 90]),
        ([1, 64, 90, 90], [1, 64, 1, 1]), ([4, 40000], [4, 1]), ([2, 224, 224, 3], [3]), ([7], [5, 9, 7]),
    ]

    @Test(arguments: ["Add", "Sub", "Mul", "Div"])
    func binaryOperatorsBroadcast(_ op: String) throws {
        for (aShape, bShape) in Self.broadcasts {
            var g = TestGraph()
            g.input("a", aShape, dynamicBatch: false)
            g.input("b", bShape, dynamicBatch: false)
            g.node(op, ["a", "b"], ["y"])
            g.outputs = ["y"]
            let a = randomFloats(aShape.elementCount, seed: 1), b = randomFloats(bShape.elementCount, seed: 2).map { $0 + 3 }
            let shape = broadcastShapes(aShape, bShape)!
            let aStrides = broadcastStrides(aShape, to: shape), bStrides = broadcastStrides(bShape, to: shape)
            let outStrides = contiguousStrides(shape)
            let expected: [Double] = (0..<shape.elementCount).map { i in
                var ia = 0, ib = 0
                for d in shape.indices { let k = (i / outStrides[d]) % shape[d]; ia += k * aStrides[d]; ib += k * bStrides[d] }
                let (x, z) = (a[ia], b[ib])
                switch op {
                case "Add": return Double(x + z)
                case "Sub": return Double(x - z)
                case "Mul": return Double(x * z)
                default: return Double(x / z)
                }
            }
            let model = try g.model()
            for runner in [nil, TestRunner()] as [(any ParallelRunner)?] {
                let y = try runModel(model, [hostTensor(aShape, a), hostTensor(bShape, b)], runner: runner)
                #expect(y.shape == shape)
                #expect(worstError(y.floats, expected, atol: 1e-12, rtol: 0) <= 1, "\(op) \(aShape) \(bShape)")
            }
        }
    }

    @Test func unaryOperatorsSplitAcrossWorkers() throws {
        for op in ["Relu", "Sigmoid", "HardSwish", "Clip"] {
            var g = TestGraph()
            g.input("x", [2, 3, 200, 250])
            g.node(op, ["x"], ["y"], op == "Clip" ? ["min": .float(-0.25), "max": .float(0.5)] : [:])
            g.outputs = ["y"]
            let x = randomFloats(2 * 3 * 200 * 250, seed: 4).map { $0 * 8 }
            let f: (Double) -> Double = switch op {
            case "Relu": { max($0, 0) }
            case "Sigmoid": { sigmoid($0) }
            case "HardSwish": { $0 * min(max($0 / 6 + 0.5, 0), 1) }
            default: { min(max($0, -0.25), 0.5) }
            }
            let model = try g.model(maxBatchSize: 2)
            for runner in [nil, TestRunner()] as [(any ParallelRunner)?] {
                let y = try runModel(model, [hostTensor([2, 3, 200, 250], x)], runner: runner)
                #expect(worstError(y.floats, x.map { f(Double($0)) }, atol: 1e-6, rtol: 1e-6) <= 1, "\(op)")
            }
        }
    }

    /// Pad in every mode, with crops (negative pads), against an index-by-index reference.
    @Test(arguments: ["constant", "reflect", "edge", "wrap"])
    func padRows(_ mode: String) throws {
        let shape = [2, 3, 7, 9]
        let padLists: [[Int64]] = [[0, 0, 1, 2, 0, 0, 3, 4], [0, 1, 0, 3, 1, 0, 2, 0], [0, 0, -1, 2, 0, 0, 1, -3], [1, 0, 0, 0, 0, 1, 0, 0],
                                   [0, 0, 120, 140, 0, 0, 120, 140]]
        for pads in padLists where mode == "constant" || pads.allSatisfy({ $0 <= 5 }) {
            var g = TestGraph()
            g.input("x", shape, dynamicBatch: false)
            g.constants["pads"] = HostTensor(shape: [8], int64s: pads)
            g.constant("value", [], [2.5])
            g.node("Pad", mode == "constant" ? ["x", "pads", "value"] : ["x", "pads"], ["y"], ["mode": .string(mode)])
            g.outputs = ["y"]
            let x = randomFloats(shape.elementCount, seed: 9)
            let outShape = (0..<4).map { shape[$0] + Int(pads[$0]) + Int(pads[$0 + 4]) }
            let inStrides = contiguousStrides(shape), outStrides = contiguousStrides(outShape)
            let expected: [Double] = (0..<outShape.elementCount).map { o in
                var offset = 0
                for d in 0..<4 {
                    let size = shape[d]
                    var i = (o / outStrides[d]) % outShape[d] - Int(pads[d])
                    if i < 0 || i >= size {
                        switch mode {
                        case "edge": i = min(max(i, 0), size - 1)
                        case "wrap": i = ((i % size) + size) % size
                        case "reflect":
                            let period = 2 * (size - 1)
                            i = ((i % period) + period) % period
                            if i >= size { i = period - i }
                        default: return 2.5
                        }
                    }
                    offset += i * inStrides[d]
                }
                return Double(x[offset])
            }
            let model = try g.model()
            for runner in [nil, TestRunner()] as [(any ParallelRunner)?] {
                let y = try runModel(model, [hostTensor(shape, x)], runner: runner)
                #expect(y.shape == outShape)
                #expect(worstError(y.floats, expected, atol: 1e-12, rtol: 0) <= 1, "\(mode) \(pads)")
            }
        }
    }
}
