/// Pointwise (1x1, stride 1, unpadded) convolution with pixels in the vectors (AVX-512 only:
/// a tile holds 24 accumulators). A register tile is R <= 6 output channels x 16 * NB pixels;
/// each reduction step k (one input channel) loads NB vectors of the input plane k and
/// broadcasts the R weights of step k. Results leave channel-major as they lie, with bias,
/// residual and clamp applied on the way: unlike the direct convolution's tile, no transposed
/// store, which dominates when there are few input channels per output.
///
/// Layouts (f32):
/// - x: `depth` rows (input planes) at row stride `ldx` floats, starting at the strip's first pixel.
/// - weights: one channel group's `depth` steps of `rows` floats (step-major).
/// - out, residual: `rows` rows at row stride `ldOut` floats, starting at the strip's first pixel.
public enum Pointwise {
    typealias V = SIMD16<Float>

    /// Most output channels of one tile (one channel group).
    public static let maxChannels = 6

    /// Floats of scratch `strip` uses for a pixel tail (fewer than 16 pixels).
    public static func scratchFloats(depth: Int) -> Int { depth * 16 + 2 * maxChannels * 16 }

    /// For each channel group g in `groups` (output channels 6 g ..< min(6 g + 6, `outChannels`),
    /// R of them, weights at `weights + 6 g * depth`, steps of R floats) and p < count:
    /// out[m][p] = f(clamp(sum over k < depth of w[k][m] * x[k * ldx + p] + bias[m]
    /// + residual[m * ldOut + p], low, high)), f the `Elementwise` activation `kind` (0: none).
    /// `bias` and `residual` may be nil; `scratch` holds `scratchFloats(depth:)` floats.
    public static func strip(groups: Range<Int>, outChannels: Int, weights: UnsafePointer<Float>, depth: Int,
                             x: UnsafePointer<Float>, ldx: Int, count: Int, bias: UnsafePointer<Float>?,
                             residual: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, ldOut: Int,
                             low: Float, high: Float, kind: Int, alpha: Float, beta: Float, scratch: UnsafeMutablePointer<Float>) {
        let whole = count / 16 * 16, tail = count - whole
        if tail > 0 {
            // The tail's input columns, zero-filled into rows of 16, once for every group.
            for k in 0..<depth {
                let row = scratch + k * 16, from = x + k * ldx + whole
                store(row, V())
                for i in 0..<tail { row[i] = from[i] }
            }
        }
        let residualRows = scratch + depth * 16, outRows = residualRows + maxChannels * 16
        for group in groups {
            let m = group * maxChannels, rows = min(maxChannels, outChannels - m)
            let w = weights + m * depth, b = bias.map { $0 + m }, o = out + m * ldOut
            let r0 = residual.map { $0 + m * ldOut }
            var p = 0
            while p + 64 <= whole {
                tile(rows, 4, w, depth, x + p, ldx, b, r0.map { $0 + p }, o + p, ldOut, low, high)
                p += 64
            }
            while p < whole {
                tile(rows, 1, w, depth, x + p, ldx, b, r0.map { $0 + p }, o + p, ldOut, low, high)
                p += 16
            }
            if tail > 0 {
                if let r0 {
                    for r in 0..<rows { for i in 0..<tail { residualRows[r * 16 + i] = r0[r * ldOut + whole + i] } }
                }
                tile(rows, 1, w, depth, UnsafePointer(scratch), 16, b, r0 == nil ? nil : UnsafePointer(residualRows),
                     outRows, 16, low, high)
                for r in 0..<rows { for i in 0..<tail { o[r * ldOut + whole + i] = outRows[r * 16 + i] } }
            }
            if kind != 0 {
                for r in 0..<rows { Elementwise.activate(kind, alpha: alpha, beta: beta, o + r * ldOut, o + r * ldOut, count: count) }
            }
        }
    }

    @inline(__always)
    static func tile(_ rows: Int, _ vectors: Int, _ w: UnsafePointer<Float>, _ depth: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                     _ bias: UnsafePointer<Float>?, _ residual: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, _ ldOut: Int,
                     _ low: Float, _ high: Float) {
        if vectors == 4 {
            switch rows {
            case 6: tile6x4(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 5: tile5x4(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 4: tile4x4(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 3: tile3x4(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 2: tile2x4(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            default: tile1x4(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            }
        } else {
            switch rows {
            case 6: tile6x1(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 5: tile5x1(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 4: tile4x1(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 3: tile3x1(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            case 2: tile2x1(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            default: tile1x1(w, depth, x, ldx, bias, residual, out, ldOut, low, high)
            }
        }
    }

    @inline(never) static func tile6x4(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<6, Int>.self, vectors: InlineArray<4, Int>.self)
    }
    @inline(never) static func tile5x4(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<5, Int>.self, vectors: InlineArray<4, Int>.self)
    }
    @inline(never) static func tile4x4(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<4, Int>.self, vectors: InlineArray<4, Int>.self)
    }
    @inline(never) static func tile3x4(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<3, Int>.self, vectors: InlineArray<4, Int>.self)
    }
    @inline(never) static func tile2x4(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<2, Int>.self, vectors: InlineArray<4, Int>.self)
    }
    @inline(never) static func tile1x4(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<1, Int>.self, vectors: InlineArray<4, Int>.self)
    }
    @inline(never) static func tile6x1(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<6, Int>.self, vectors: InlineArray<1, Int>.self)
    }
    @inline(never) static func tile5x1(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<5, Int>.self, vectors: InlineArray<1, Int>.self)
    }
    @inline(never) static func tile4x1(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<4, Int>.self, vectors: InlineArray<1, Int>.self)
    }
    @inline(never) static func tile3x1(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<3, Int>.self, vectors: InlineArray<1, Int>.self)
    }
    @inline(never) static func tile2x1(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<2, Int>.self, vectors: InlineArray<1, Int>.self)
    }
    @inline(never) static func tile1x1(_ w: UnsafePointer<Float>, _ d: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ b: UnsafePointer<Float>?,
                                       _ res: UnsafePointer<Float>?, _ o: UnsafeMutablePointer<Float>, _ ld: Int, _ lo: Float, _ hi: Float) {
        body(w, d, x, ldx, b, res, o, ld, lo, hi, rows: InlineArray<1, Int>.self, vectors: InlineArray<1, Int>.self)
    }

    /// The register tile for every (R, NB): the fixed-size loops unroll, the accumulators
    /// stay in registers.
    @inline(__always)
    static func body<let R: Int, let NB: Int>(_ w: UnsafePointer<Float>, _ depth: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                                               _ bias: UnsafePointer<Float>?, _ residual: UnsafePointer<Float>?,
                                               _ out: UnsafeMutablePointer<Float>, _ ldOut: Int, _ low: Float, _ high: Float,
                                               rows: InlineArray<R, Int>.Type, vectors: InlineArray<NB, Int>.Type) {
        var sums = InlineArray<R, InlineArray<NB, V>>(repeating: InlineArray<NB, V>(repeating: V()))
        var wp = w, xp = x
        for _ in 0..<depth {
            var xv = InlineArray<NB, V>(repeating: V())
            for j in 0..<NB { xv[j] = load(xp + j * 16) }
            for r in 0..<R {
                let weight = V(repeating: wp[r])
                for j in 0..<NB { sums[r][j].addProduct(weight, xv[j]) }
            }
            wp += R
            xp += ldx
        }
        let lowV = V(repeating: low), highV = V(repeating: high)
        for r in 0..<R {
            let shift = V(repeating: bias?[r] ?? 0)
            for j in 0..<NB {
                var v = sums[r][j] + shift
                if let residual { v += load(residual + r * ldOut + j * 16) }
                v.replace(with: lowV, where: v .< lowV)
                v.replace(with: highV, where: v .> highV)
                store(out + r * ldOut + j * 16, v)
            }
        }
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) static func store(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
}
