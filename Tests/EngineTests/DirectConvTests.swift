import Foundation
import ONNXProto
import Testing
@testable import Engine

/// Conv through the engine's automatic kernels (the direct convolution, AVX-512 or AVX2 as the
/// CPU has, for these ungrouped 2-D shapes, on one thread and two workers; the larger 3x3 stride-1 cases run as Winograd
/// F(2x2, 3x3), 1x1 ones with few input channels on AVX-512's pointwise tile) against a plain loop in double precision: asymmetric pads, strides,
/// dilations, output channels that are not multiples of 16 or 64, 1x1 and 1x7 windows, batches
/// whose pixel counts leave partial register tiles, and fused clamp / non-clamp activations.
@Suite(.enabled(if: VectorISA.detected != nil, "the CPU has neither AVX-512 nor AVX2"))
struct DirectConvTests {
    struct Case: Sendable, CustomStringConvertible {
        var batch: Int, channels: Int, height: Int, width: Int, outChannels: Int
        var kernel: (Int, Int), strides: (Int, Int) = (1, 1), dilations: (Int, Int) = (1, 1)
        var pads: (Int, Int, Int, Int) = (0, 0, 0, 0)   // top, left, bottom, right
        var activation: String? = nil
        var description: String { "\(batch)x\(channels)x\(height)x\(width) -> \(outChannels) k\(kernel) s\(strides) d\(dilations) p\(pads) \(activation ?? "")" }
    }

    static let cases: [Case] = [
        Case(batch: 3, channels: 3, height: 11, width: 11, outChannels: 37, kernel: (3, 3), strides: (2, 2), pads: (1, 0, 2, 1), activation: "Relu"),
        Case(batch: 2, channels: 20, height: 9, width: 13, outChannels: 80, kernel: (1, 1)),
        Case(batch: 1, channels: 5, height: 10, width: 10, outChannels: 48, kernel: (3, 3), dilations: (2, 2), pads: (2, 2, 2, 2), activation: "Sigmoid"),
        Case(batch: 2, channels: 7, height: 7, width: 18, outChannels: 100, kernel: (1, 7), pads: (0, 3, 0, 3), activation: "Relu"),
        Case(batch: 1, channels: 33, height: 17, width: 17, outChannels: 192, kernel: (3, 3), strides: (2, 2)),
        // 3x3 stride 1 on planes of 144+ pixels, 32+ in and 64+ out channels: Winograd
        // F(2x2, 3x3) on AVX2 (odd output sizes, several bands, asymmetric pads).
        Case(batch: 2, channels: 32, height: 23, width: 21, outChannels: 70, kernel: (3, 3), pads: (1, 1, 1, 1), activation: "Relu"),
        Case(batch: 1, channels: 40, height: 25, width: 30, outChannels: 64, kernel: (3, 3), activation: "Sigmoid"),
        Case(batch: 1, channels: 33, height: 20, width: 41, outChannels: 96, kernel: (3, 3), pads: (0, 1, 2, 0)),
        Case(batch: 1, channels: 32, height: 50, width: 50, outChannels: 64, kernel: (3, 3), pads: (1, 1, 1, 1), activation: "Relu"),
        // Winograd from 144-pixel planes: one band per image (two workers split the output
        // channels at batch 1, take whole images at batch 3), and 3 minimum bands rounded up
        // to 4 for two workers.
        Case(batch: 1, channels: 32, height: 14, width: 14, outChannels: 70, kernel: (3, 3), pads: (1, 1, 1, 1), activation: "Relu"),
        Case(batch: 3, channels: 36, height: 14, width: 13, outChannels: 64, kernel: (3, 3), pads: (1, 1, 1, 1)),
        Case(batch: 1, channels: 32, height: 72, width: 70, outChannels: 64, kernel: (3, 3)),
        // 1x1 with at most 64 input channels: the pointwise tile on AVX-512 (strips of 64 and
        // 16 pixels, pixel tails of 3 and 1, channel groups of 6 with remainders, several strips).
        Case(batch: 1, channels: 16, height: 17, width: 19, outChannels: 13, kernel: (1, 1), activation: "Relu"),
        Case(batch: 3, channels: 64, height: 7, width: 7, outChannels: 40, kernel: (1, 1), activation: "Sigmoid"),
        Case(batch: 2, channels: 3, height: 1, width: 1, outChannels: 7, kernel: (1, 1), activation: "Tanh"),
        Case(batch: 1, channels: 24, height: 32, width: 33, outChannels: 6, kernel: (1, 1)),
        Case(batch: 1, channels: 65, height: 9, width: 9, outChannels: 20, kernel: (1, 1), activation: "Relu"),
    ]

    @Test(arguments: cases)
    func matchesNaive(_ c: Case) throws {
        var generator = SplitMix(seed: UInt64(c.channels * 7919 + c.outChannels * 31 + c.width))
        let (kh, kw) = c.kernel
        let weights = (0..<c.outChannels * c.channels * kh * kw).map { _ in generator.nextFloat() - 0.5 }
        let bias = (0..<c.outChannels).map { _ in generator.nextFloat() - 0.5 }
        let x = (0..<c.batch * c.channels * c.height * c.width).map { _ in generator.nextFloat() }

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("direct-conv-\(UUID().uuidString).onnx").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.model(c, weights: weights, bias: bias).serializedData().write(to: URL(fileURLWithPath: path))
        let model = try Model(path: path, options: .init(maxBatchSize: c.batch))
        let input = HostTensor(dtype: .float32, shape: [c.batch, c.channels, c.height, c.width])
        x.withUnsafeBytes { input.bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        // One thread, and two workers (the kernels' split of one image or of the batch).
        let outputs = try [nil, TestRunner()].map { (runner: (any ParallelRunner)?) in try runModel(model, [input], runner: runner) }

        let outH = (c.height + c.pads.0 + c.pads.2 - ((kh - 1) * c.dilations.0 + 1)) / c.strides.0 + 1
        let outW = (c.width + c.pads.1 + c.pads.3 - ((kw - 1) * c.dilations.1 + 1)) / c.strides.1 + 1
        for output in outputs { #expect(output.shape == [c.batch, c.outChannels, outH, outW]) }
        let ys = outputs.map { $0.pointer(as: Float.self) }
        var worst = 0.0
        for n in 0..<c.batch {
            for m in 0..<c.outChannels {
                for oy in 0..<outH {
                    for ox in 0..<outW {
                        var sum = Double(bias[m])
                        for ch in 0..<c.channels {
                            for ky in 0..<kh {
                                for kx in 0..<kw {
                                    let iy = oy * c.strides.0 - c.pads.0 + ky * c.dilations.0
                                    let ix = ox * c.strides.1 - c.pads.1 + kx * c.dilations.1
                                    guard iy >= 0, iy < c.height, ix >= 0, ix < c.width else { continue }
                                    sum += Double(weights[((m * c.channels + ch) * kh + ky) * kw + kx])
                                        * Double(x[((n * c.channels + ch) * c.height + iy) * c.width + ix])
                                }
                            }
                        }
                        switch c.activation {
                        case "Relu": sum = max(sum, 0)
                        case "Sigmoid": sum = 1 / (1 + exp(-sum))
                        case "Tanh": sum = tanh(sum)
                        default: break
                        }
                        for y in ys {
                            let actual = Double(y[((n * c.outChannels + m) * outH + oy) * outW + ox])
                            worst = max(worst, abs(actual - sum) / (1e-4 + 1e-4 * abs(sum)))
                        }
                    }
                }
            }
        }
        #expect(worst <= 1, "worst error \(worst) x tolerance for \(c)")
    }

    /// One Conv (and optional activation) with the weights and bias as initializers.
    static func model(_ c: Case, weights: [Float], bias: [Float]) -> Onnx_ModelProto {
        func tensor(_ name: String, _ dims: [Int], _ values: [Float]) -> Onnx_TensorProto {
            var t = Onnx_TensorProto()
            t.name = name
            t.dims = dims.map(Int64.init)
            t.dataType = 1
            t.floatData = values
            return t
        }
        func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto()
            a.name = name
            a.type = .ints
            a.ints = values.map(Int64.init)
            return a
        }
        func valueInfo(_ name: String, _ dims: [Int]?) -> Onnx_ValueInfoProto {
            var info = Onnx_ValueInfoProto()
            info.name = name
            var tensorType = Onnx_TypeProto.Tensor()
            tensorType.elemType = 1
            if let dims {
                var shape = Onnx_TensorShapeProto()
                shape.dim = dims.enumerated().map { index, size in
                    var d = Onnx_TensorShapeProto.Dimension()
                    if index == 0 { d.dimParam = "N" } else { d.dimValue = Int64(size) }
                    return d
                }
                tensorType.shape = shape
            }
            info.type.tensorType = tensorType
            return info
        }
        var conv = Onnx_NodeProto()
        conv.opType = "Conv"
        conv.name = "conv"
        conv.input = ["x", "W", "B"]
        conv.output = [c.activation == nil ? "y" : "conv_out"]
        conv.attribute = [ints("kernel_shape", [c.kernel.0, c.kernel.1]), ints("strides", [c.strides.0, c.strides.1]),
                          ints("dilations", [c.dilations.0, c.dilations.1]), ints("pads", [c.pads.0, c.pads.1, c.pads.2, c.pads.3])]
        var graph = Onnx_GraphProto()
        graph.name = "direct_conv"
        graph.node = [conv]
        if let activation = c.activation {
            var node = Onnx_NodeProto()
            node.opType = activation
            node.name = "activation"
            node.input = ["conv_out"]
            node.output = ["y"]
            graph.node.append(node)
        }
        graph.initializer = [tensor("W", [c.outChannels, c.channels, c.kernel.0, c.kernel.1], weights), tensor("B", [c.outChannels], bias)]
        graph.input = [valueInfo("x", [c.batch, c.channels, c.height, c.width])]
        graph.output = [valueInfo("y", nil)]
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 13
        model.opsetImport = [opset]
        model.graph = graph
        return model
    }
}
