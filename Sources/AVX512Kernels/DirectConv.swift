/// Direct convolution micro-kernels (no im2col): output pixels in registers as rows, output
/// channels as 16-wide vectors. This file is compiled twice: into `AVX512Kernels` (AVX-512, 32
/// vector registers of 16 floats) and into `AVX2Kernels` (AVX2 + FMA, 16 registers of 8 floats,
/// so a 16-float vector takes two); call each only after the CPU check for its instruction set.
///
/// A step k of the reduction (one input channel and kernel tap) reads, for each of the tile's R
/// pixels, the scalar `pixel[r][offsets[k]]` and multiplies it into the `NB` weight vectors
/// (16 output channels each) stored for k. Pixels are addressed through per-pixel base pointers,
/// so one kernel serves every stride, dilation and kernel size, and the R pixels of a tile may
/// span output rows and images.
///
/// Layouts (f32):
/// - weights: `depth` steps of `NB * 16` floats (step-major), 64-byte aligned.
/// - offsets: `depth` Int32 element offsets from each pixel's base pointer.
/// - accumulator tile: R rows of `NB * 16` floats at row stride `ldAcc` floats.
import CLinuxShims

public enum DirectConv {
    typealias V = SIMD16<Float>

#if AVX2_KERNELS
    /// Most vectors of 16 output channels one tile holds.
    public static let maxBlocks = 1

    /// Pixels per tile for `blocks` (1...maxBlocks) vectors: 12 of the 16 registers accumulate.
    public static func pixelsPerTile(blocks: Int) -> Int { blocks == 2 ? 3 : 6 }

    /// acc[r][0..<blocks*16] (+)= sum over k < depth of pixels[r][offsets[k]] * weights[k][...].
    /// `pixels` holds `pixelsPerTile(blocks:)` base pointers (repeat one to fill a short tile).
    /// Starts from the tile's contents when `accumulate`, else from zero.
    public static func tile(blocks: Int, weights: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, depth: Int,
                            pixels: UnsafePointer<UnsafePointer<Float>>, acc: UnsafeMutablePointer<Float>, ldAcc: Int,
                            accumulate: Bool) {
        if blocks == 2 {
            tile2x3(weights, offsets, depth, pixels, acc, ldAcc, accumulate)
        } else {
            tile1x6(weights, offsets, depth, pixels, acc, ldAcc, accumulate)
        }
    }

    @inline(never)
    static func tile2x3(_ w: UnsafePointer<Float>, _ o: UnsafePointer<Int32>, _ depth: Int, _ px: UnsafePointer<UnsafePointer<Float>>,
                        _ acc: UnsafeMutablePointer<Float>, _ ldAcc: Int, _ accumulate: Bool) {
        tileBody(w, o, depth, px, acc, ldAcc, accumulate, blocks: InlineArray<2, V>.self, pixels: InlineArray<3, Int>.self)
    }
    @inline(never)
    static func tile1x6(_ w: UnsafePointer<Float>, _ o: UnsafePointer<Int32>, _ depth: Int, _ px: UnsafePointer<UnsafePointer<Float>>,
                        _ acc: UnsafeMutablePointer<Float>, _ ldAcc: Int, _ accumulate: Bool) {
        tileBody(w, o, depth, px, acc, ldAcc, accumulate, blocks: InlineArray<1, V>.self, pixels: InlineArray<6, Int>.self)
    }
#else
    /// Most vectors of 16 output channels one tile holds.
    public static let maxBlocks = 4

    /// Pixels per tile for `blocks` (1...4) vectors of 16 output channels: keeps the
    /// accumulators plus one broadcast and the weight vectors within the 32 vector registers.
    public static func pixelsPerTile(blocks: Int) -> Int {
        switch blocks {
        case 4: return 6
        case 3: return 8
        default: return 10
        }
    }

    /// acc[r][0..<blocks*16] (+)= sum over k < depth of pixels[r][offsets[k]] * weights[k][...].
    /// `pixels` holds `pixelsPerTile(blocks:)` base pointers (repeat one to fill a short tile).
    /// Starts from the tile's contents when `accumulate`, else from zero.
    public static func tile(blocks: Int, weights: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, depth: Int,
                            pixels: UnsafePointer<UnsafePointer<Float>>, acc: UnsafeMutablePointer<Float>, ldAcc: Int,
                            accumulate: Bool) {
        switch blocks {
        case 4: tile4x6(weights, offsets, depth, pixels, acc, ldAcc, accumulate)
        case 3: tile3x8(weights, offsets, depth, pixels, acc, ldAcc, accumulate)
        case 2: tile2x10(weights, offsets, depth, pixels, acc, ldAcc, accumulate)
        default: tile1x10(weights, offsets, depth, pixels, acc, ldAcc, accumulate)
        }
    }

    @inline(never)
    static func tile4x6(_ w: UnsafePointer<Float>, _ o: UnsafePointer<Int32>, _ depth: Int, _ px: UnsafePointer<UnsafePointer<Float>>,
                        _ acc: UnsafeMutablePointer<Float>, _ ldAcc: Int, _ accumulate: Bool) {
        tileBody(w, o, depth, px, acc, ldAcc, accumulate, blocks: InlineArray<4, V>.self, pixels: InlineArray<6, Int>.self)
    }
    @inline(never)
    static func tile3x8(_ w: UnsafePointer<Float>, _ o: UnsafePointer<Int32>, _ depth: Int, _ px: UnsafePointer<UnsafePointer<Float>>,
                        _ acc: UnsafeMutablePointer<Float>, _ ldAcc: Int, _ accumulate: Bool) {
        tileBody(w, o, depth, px, acc, ldAcc, accumulate, blocks: InlineArray<3, V>.self, pixels: InlineArray<8, Int>.self)
    }
    @inline(never)
    static func tile2x10(_ w: UnsafePointer<Float>, _ o: UnsafePointer<Int32>, _ depth: Int, _ px: UnsafePointer<UnsafePointer<Float>>,
                         _ acc: UnsafeMutablePointer<Float>, _ ldAcc: Int, _ accumulate: Bool) {
        tileBody(w, o, depth, px, acc, ldAcc, accumulate, blocks: InlineArray<2, V>.self, pixels: InlineArray<10, Int>.self)
    }
    @inline(never)
    static func tile1x10(_ w: UnsafePointer<Float>, _ o: UnsafePointer<Int32>, _ depth: Int, _ px: UnsafePointer<UnsafePointer<Float>>,
                         _ acc: UnsafeMutablePointer<Float>, _ ldAcc: Int, _ accumulate: Bool) {
        tileBody(w, o, depth, px, acc, ldAcc, accumulate, blocks: InlineArray<1, V>.self, pixels: InlineArray<10, Int>.self)
    }
#endif

    /// The register tile, written once for every (NB, R): the fixed-size loops unroll and the
    /// inline arrays live in registers.
    @inline(__always)
    static func tileBody<let NB: Int, let R: Int>(_ w: UnsafePointer<Float>, _ offsets: UnsafePointer<Int32>, _ depth: Int,
                                                   _ px: UnsafePointer<UnsafePointer<Float>>, _ acc: UnsafeMutablePointer<Float>,
                                                   _ ldAcc: Int, _ accumulate: Bool,
                                                   blocks: InlineArray<NB, V>.Type, pixels: InlineArray<R, Int>.Type) {
        var base = InlineArray<R, UnsafePointer<Float>>(repeating: px[0])
        for r in 0..<R { base[r] = px[r] }
        var sums = InlineArray<R, InlineArray<NB, V>>(repeating: InlineArray<NB, V>(repeating: V()))
        if accumulate {
            for r in 0..<R { for j in 0..<NB { sums[r][j] = load(acc + r * ldAcc + j * 16) } }
        }
        var wp = w
#if !AVX2_KERNELS
        let ahead = base[0] + prefetchDistance
#endif
        for k in 0..<depth {
            let offset = Int(offsets[k])
            // The line later tiles of this pixel run will read: input planes are many streams
            // at once, more than the hardware prefetchers follow.
            // Not on AVX2: no measurable gain there, where a step already issues 9 loads for 12 FMAs.
#if !AVX2_KERNELS
            cls_prefetch(ahead + offset)
#endif
            var wv = InlineArray<NB, V>(repeating: V())
            for j in 0..<NB { wv[j] = load(wp + j * 16) }
            for r in 0..<R {
                let x = V(repeating: base[r][offset])
                for j in 0..<NB { sums[r][j].addProduct(x, wv[j]) }
            }
            wp += NB * 16
        }
        for r in 0..<R { for j in 0..<NB { store(acc + r * ldAcc + j * 16, sums[r][j]) } }
    }

    /// Writes a finished accumulator tile out channel-major: for channel j < `channels` and
    /// pixel i < `count`, out[j * ldOut + i] = clamp(acc[i * ldAcc + j] + bias[j] +
    /// residual[j * ldOut + i], low, high). `bias` and `residual` (laid out like `out`) may be nil.
    public static func storeTransposed(acc: UnsafePointer<Float>, ldAcc: Int, count: Int, channels: Int,
                                       bias: UnsafePointer<Float>?, low: Float, high: Float,
                                       out: UnsafeMutablePointer<Float>, ldOut: Int,
                                       residual: UnsafePointer<Float>? = nil,
                                       activation kind: Int = 0, alpha: Float = 0, beta: Float = 0) {
        var i = 0
#if AVX2_KERNELS
        // Blocks of 8 pixels x 8 channels, transposed in registers by three perfect shuffles
        // (16 x 16 would not fit the 16 registers).
        typealias H = SIMD8<Float>
        let lowH = H(repeating: low), highH = H(repeating: high)
        while i + 8 <= count {
            var j = 0
            while j < channels {
                var rows = InlineArray<8, H>(repeating: H())
                for p in 0..<8 { rows[p] = UnsafeRawPointer(acc + (i + p) * ldAcc + j).loadUnaligned(as: H.self) }
                for _ in 0..<3 {
                    var next = InlineArray<8, H>(repeating: H())
                    for q in 0..<4 {
                        let pair = SIMD16<Float>(lowHalf: rows[2 * q], highHalf: rows[2 * q + 1])
                        next[q] = pair.evenHalf
                        next[q + 4] = pair.oddHalf
                    }
                    rows = next
                }
                for c in 0..<min(8, channels - j) {
                    var v = rows[c] + H(repeating: bias?[j + c] ?? 0)
                    if let residual { v += UnsafeRawPointer(residual + (j + c) * ldOut + i).loadUnaligned(as: H.self) }
                    v.replace(with: lowH, where: v .< lowH)
                    v.replace(with: highH, where: v .> highH)
                    UnsafeMutableRawPointer(out + (j + c) * ldOut + i).storeBytes(of: v, as: H.self)
                }
                j += 8
            }
            i += 8
        }
        // Other activations over the vector part while it is in L1 (the tail gets it below).
        if kind != 0 && i > 0 {
            for c in 0..<channels { Elementwise.activate(kind, alpha: alpha, beta: beta, out + c * ldOut, out + c * ldOut, count: i) }
        }
#else
        // One specialisation per activation: the function inlines into the store.
        let k = Elementwise.Constants(0, alpha, beta)
        switch kind {
        case 2: i = storeBlocks(Elementwise.LeakyRelu.self, k, acc, ldAcc, count, channels, bias, low, high, out, ldOut, residual)
        case 4: i = storeBlocks(Elementwise.Sigmoid.self, k, acc, ldAcc, count, channels, bias, low, high, out, ldOut, residual)
        case 5: i = storeBlocks(Elementwise.HardSigmoid.self, k, acc, ldAcc, count, channels, bias, low, high, out, ldOut, residual)
        case 6: i = storeBlocks(Elementwise.HardSwish.self, k, acc, ldAcc, count, channels, bias, low, high, out, ldOut, residual)
        case 7: i = storeBlocks(Elementwise.SiLU.self, k, acc, ldAcc, count, channels, bias, low, high, out, ldOut, residual)
        default: i = storeBlocks(Elementwise.Identity.self, k, acc, ldAcc, count, channels, bias, low, high, out, ldOut, residual)
        }
#endif
        for c in 0..<channels {
            let shift = bias?[c] ?? 0
            for p in i..<count {
                let sum = acc[p * ldAcc + c] + shift + (residual?[c * ldOut + p] ?? 0)
                out[c * ldOut + p] = min(max(sum, low), high)
            }
            if kind != 0 && i < count {
                Elementwise.activate(kind, alpha: alpha, beta: beta, out + c * ldOut + i, out + c * ldOut + i, count: count - i)
            }
        }
    }

#if !AVX2_KERNELS
    /// `storeTransposed`'s whole blocks of 16 pixels x 16 channels, transposed in registers by
    /// four perfect shuffles, with bias, residual, clamp and then `F`; returns the pixels done.
    @inline(never)
    static func storeBlocks<F: Elementwise.Unary>(_ f: F.Type, _ k: Elementwise.Constants, _ acc: UnsafePointer<Float>, _ ldAcc: Int,
                                                  _ count: Int, _ channels: Int, _ bias: UnsafePointer<Float>?, _ low: Float,
                                                  _ high: Float, _ out: UnsafeMutablePointer<Float>, _ ldOut: Int,
                                                  _ residual: UnsafePointer<Float>?) -> Int {
        let lowV = V(repeating: low), highV = V(repeating: high)
        var i = 0
        while i + 16 <= count {
            var j = 0
            while j < channels {
                var rows = InlineArray<16, V>(repeating: V())
                for p in 0..<16 { rows[p] = load(acc + (i + p) * ldAcc + j) }
                for _ in 0..<4 {
                    var next = InlineArray<16, V>(repeating: V())
                    for q in 0..<8 {
                        let pair = SIMD32<Float>(lowHalf: rows[2 * q], highHalf: rows[2 * q + 1])
                        next[q] = pair.evenHalf
                        next[q + 8] = pair.oddHalf
                    }
                    rows = next
                }
                for c in 0..<min(16, channels - j) {
                    var v = rows[c] + V(repeating: bias?[j + c] ?? 0)
                    if let residual { v += UnsafeRawPointer(residual + (j + c) * ldOut + i).loadUnaligned(as: V.self) }
                    v.replace(with: lowV, where: v .< lowV)
                    v.replace(with: highV, where: v .> highV)
                    store(out + (j + c) * ldOut + i, F.apply(v, k))
                }
                j += 16
            }
            i += 16
        }
        return i
    }
#endif

    /// Floats ahead of a tile's first pixel that its steps prefetch (three cache lines).
    static let prefetchDistance = 48

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) static func load(_ p: UnsafeMutablePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) static func store(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
}
