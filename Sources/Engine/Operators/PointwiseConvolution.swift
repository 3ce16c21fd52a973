import AVX512Kernels

/// Pointwise convolution (1x1, stride 1, no padding, ungrouped) on the AVX-512 tile with
/// pixels in the vectors (`AVX512Kernels.Pointwise`): the output leaves channel-major as it
/// lies, without the direct convolution's transposed store, which costs as much as the
/// multiply-adds when there are few input channels.
///
/// x: (N, C, H, W), b: (M) optional, residual (input 3, when fused) like y; y: (N, M, H, W),
/// f32. Work items are (image, strip of up to `stripPixels` pixels, range of channel groups);
/// an item runs every channel group of its range over its strip, so the strip's input stays
/// in L1/L2 while the weights stream.
struct PointwiseConvKernel: Kernel, ResidualEpilogue {
    let plan: PointwisePlan
    let batch: Int
    let pixels: Int
    let hasBias: Bool
    let activation: Activation
    var hasResidual = false

    static let stripPixels = 256

    /// Used up to this many input channels; above, the direct convolution's tile (one input
    /// line per step, contiguous weights) is faster and its transposed store matters less.
    /// One-thread CPU time on Zen 4 (b1): MobileNetV2 -4 to -14%, EfficientNetB0 -2%,
    /// ResNet50 -2% at 64; with every pointwise layer, +15 to +18% on all three.
    static let maxInputChannels = 64

    func takesResidual(shape: Shape, outShape: Shape) -> Bool { hasResidual && shape == outShape }

    var scratchBytes: Int { Pointwise.scratchFloats(depth: plan.channels) * MemoryLayout<Float>.size }

    func run(_ io: KernelIO) {
        let x = io.input(0, Float.self), y = io.output(0, Float.self)
        let bias = hasBias ? io.input(2, Float.self) : nil
        let residual = hasResidual ? io.input(3, Float.self) : nil
        let (channels, outChannels, groups) = (plan.channels, plan.outChannels, plan.groups)
        let strips = (pixels + Self.stripPixels - 1) / Self.stripPixels
        // Channel ranges only when images x strips would leave workers idle.
        var ranges = 1
        while batch * strips * ranges < 4 * io.width && ranges < groups { ranges += 1 }
        let (low, high) = activation.clampBounds
        let late = !activation.isClamp && activation.vectorCode == nil
        let weights = plan.weights.pointer(as: Float.self)
        io.parallelItems(batch * strips * ranges) { item, worker in
            let scratch = io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self)
            let range = item % ranges, strip = item / ranges % strips, image = item / (ranges * strips)
            let code = activation.isClamp ? (kind: 0, alpha: Float(0), beta: Float(0)) : activation.vectorCode ?? (0, 0, 0)
            let first = strip * Self.stripPixels, count = min(Self.stripPixels, pixels - first)
            let groupRange = range * groups / ranges ..< (range + 1) * groups / ranges
            let out = y + image * outChannels * pixels + first
            Pointwise.strip(groups: groupRange, outChannels: outChannels, weights: weights, depth: channels,
                            x: x + image * channels * pixels + first, ldx: pixels, count: count, bias: bias,
                            residual: residual.map { $0 + image * outChannels * pixels + first }, out: out, ldOut: pixels,
                            low: low, high: high, kind: code.kind, alpha: code.alpha, beta: code.beta, scratch: scratch)
            if late {
                let m = groupRange.lowerBound * Pointwise.maxChannels, end = min(outChannels, groupRange.upperBound * Pointwise.maxChannels)
                for c in m..<end { activation.apply(out + c * pixels, out + c * pixels, count: count) }
            }
        }
    }
}

/// The pointwise convolution's weights, packed at load: per group of up to 6 output channels
/// (group g starts at output channel 6 g, at float offset 6 g * C), C steps of the group's
/// channels. Shared by the kernels of every batch size.
final class PointwisePlan: @unchecked Sendable {
    let channels: Int, outChannels: Int
    var groups: Int { (outChannels + Pointwise.maxChannels - 1) / Pointwise.maxChannels }
    let weights: HostTensor

    /// `weights`: (M, C, 1, 1) f32.
    init(weights w: HostTensor) {
        outChannels = w.shape[0]
        channels = w.shape[1]
        let packed = HostTensor(dtype: .float32, shape: [outChannels * channels])
        let source = w.pointer(as: Float.self), target = packed.pointer(as: Float.self)
        var m = 0
        while m < outChannels {
            let rows = min(Pointwise.maxChannels, outChannels - m)
            for k in 0..<channels {
                for r in 0..<rows { target[m * channels + k * rows + r] = source[(m + r) * channels + k] }
            }
            m += rows
        }
        weights = packed
    }
}
