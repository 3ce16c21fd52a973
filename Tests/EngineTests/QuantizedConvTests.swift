import Testing
@testable import Engine

/// A QDQ convolution group (QuantizeLinear to int8 -> DequantizeLinear -> Conv with u8
/// per-channel weights that have zero points and an int32 bias -> QuantizeLinear ->
/// DequantizeLinear) must be rewritten into QLinearConv and give, exactly, the integer
/// formula of ONNX QLinearConv computed here: awkward sizes on purpose (depth 333 is no
/// multiple of 4 and is split into chunks, 13 output channels leave a partial weight block,
/// 11 x 13 pixels a partial panel, padding reads the zero point). With uint8 activations the
/// group runs channels-last (`QuantizedLayout`: NhwcQLinearConv, weight zero points through
/// the row sums), with int8 ones on the NCHW kernels.
struct QuantizedConvTests {
    @Test(arguments: [false, true]) func qdqConvEqualsIntegerReference(unsignedX: Bool) throws {
        let (channels, outChannels, height, width) = (37, 13, 11, 13)
        var graph = TestGraph()
        graph.input("x", [1, channels, height, width], dynamicBatch: false)
        let xScale: Float = 0.02, xZero: Int32 = unsignedX ? 131 : -3, yScale: Float = 0.05, yZero: UInt8 = 117
        let (xLow, xHigh): (Float, Float) = unsignedX ? (0, 255) : (-128, 127)
        let taps = 9, depth = channels * taps
        var weights = [UInt8](repeating: 0, count: outChannels * depth)
        var wZeros = [UInt8](repeating: 0, count: outChannels), wScales = [Float](repeating: 0, count: outChannels)
        var bias = [Int32](repeating: 0, count: outChannels)
        let noise = randomFloats(outChannels * depth + 3 * outChannels, seed: 7)
        for index in 0..<weights.count { weights[index] = UInt8((noise[index] + 1) * 127.5) }
        for m in 0..<outChannels {
            wZeros[m] = UInt8(100 + m * 3)
            wScales[m] = 0.001 * Float(m + 1)
            bias[m] = Int32(noise[weights.count + m] * 3000)
        }
        func tensor<T>(_ dtype: DType, _ shape: [Int], _ values: [T]) -> HostTensor {
            values.withUnsafeBytes { HostTensor(dtype: dtype, shape: shape, copying: $0) }
        }
        graph.constants["xs"] = tensor(.float32, [], [xScale])
        graph.constants["xz"] = unsignedX ? tensor(.uint8, [], [UInt8(xZero)]) : tensor(.int8, [], [Int8(xZero)])
        graph.constants["w"] = tensor(.uint8, [outChannels, channels, 3, 3], weights)
        graph.constants["ws"] = tensor(.float32, [outChannels], wScales)
        graph.constants["wz"] = tensor(.uint8, [outChannels], wZeros)
        graph.constants["b"] = tensor(.int32, [outChannels], bias)
        graph.constants["bs"] = tensor(.float32, [outChannels], wScales.map { $0 * xScale })
        graph.constants["ys"] = tensor(.float32, [], [yScale])
        graph.constants["yz"] = tensor(.uint8, [], [yZero])
        graph.node("QuantizeLinear", ["x", "xs", "xz"], ["xq"])
        graph.node("DequantizeLinear", ["xq", "xs", "xz"], ["xf"])
        graph.node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], ["axis": .int(0)])
        graph.node("DequantizeLinear", ["b", "bs"], ["bf"], ["axis": .int(0)])
        graph.node("Conv", ["xf", "wf", "bf"], ["yf"], ["pads": .ints([1, 0, 1, 2]), "strides": .ints([1, 1])])
        graph.node("QuantizeLinear", ["yf", "ys", "yz"], ["yq"])
        graph.node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])
        graph.outputs = ["y"]
        let model = try graph.model()
        #expect(model.stepTypes().contains(unsignedX ? "NhwcQLinearConv" : "QLinearConv"), "\(model.stepTypes())")

        let x = randomFloats(channels * height * width, seed: 11).map { $0 * 2.5 }
        let output = try model.makeSession().run([hostTensor([1, channels, height, width], x)])[0]
        // Reference: ONNX QLinearConv on the quantized input.
        let xq = x.map { Int32(min(max(($0 / xScale).rounded(.toNearestOrEven) + Float(xZero), xLow), xHigh)) }
        let (outH, outW) = (height + 2 - 2, width + 2 - 2)
        #expect(output.shape == [1, outChannels, outH, outW])
        var mismatches = 0
        for m in 0..<outChannels {
            for oh in 0..<outH {
                for ow in 0..<outW {
                    var sum = bias[m]
                    for c in 0..<channels {
                        for i in 0..<3 {
                            for j in 0..<3 {
                                let ih = oh + i - 1, iw = ow + j - 0
                                let value = ih >= 0 && ih < height && iw >= 0 && iw < width ? xq[(c * height + ih) * width + iw] : xZero
                                sum += (value - xZero) * (Int32(weights[(m * channels + c) * taps + i * 3 + j]) - Int32(wZeros[m]))
                            }
                        }
                    }
                    let multiplier = xScale * wScales[m] / yScale
                    let q = min(max((Float(sum) * multiplier).rounded(.toNearestOrEven) + Float(yZero), 0), 255)
                    let expected = (q - Float(yZero)) * yScale
                    if output.pointer(as: Float.self)[(m * outH + oh) * outW + ow] != expected { mismatches += 1 }
                }
            }
        }
        #expect(mismatches == 0)
    }
}
