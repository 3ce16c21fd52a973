/// Depthwise convolution (one filter per channel) on one zero-bordered plane, output columns
/// in 16-wide vectors; compiled like `DirectConv` once for AVX-512 and once for AVX2 + FMA.
///
/// The source plane is already padded (the caller copies it into a zero-bordered buffer), so
/// the loops have no bounds checks: output (oy, ox) reads source row oy * strideH + ky *
/// dilationH, column ox * strideW + kx * dilationW. Per group of up to four output vectors the
/// taps run in the outer loop (one weight broadcast feeds four FMAs), the bias is the
/// accumulators' start and the activation runs on the row while it is in L1 (3x3 and 5x5 at
/// stride 1: weights held in registers, the activation applied in registers).
public enum Depthwise {
    typealias V = SIMD16<Float>

    /// Columns the caller's source buffer must hold per row (the row stride `ld` at least
    /// this): vectors past `outW` read up to the next multiple of 16 output columns, and
    /// stride 2 loads 32 floats per vector.
    public static func sourceWidth(outW: Int, kernelW: Int, stride: Int, dilation: Int) -> Int {
        let vectors = (outW + 15) / 16
        return (vectors * 16 - 1) * stride + (kernelW - 1) * dilation + 1 + (stride == 2 ? 16 : 0)
    }

    /// Whether `plane` handles a column stride (1 and 2 load whole vectors).
    public static func supports(strideW: Int) -> Bool { strideW == 1 || strideW == 2 }

    /// out[oy * ldOut + ox] = f(bias + sum over ky < kh, kx < kw of weights[ky * kw + kx] *
    /// source[(oy * strideH + ky * dilationH) * ld + ox * strideW + kx * dilationW]) for
    /// oy < outH, ox < outW; f is `Elementwise`'s activation `kind`. `strideW` is 1 or 2;
    /// `ld` >= `sourceWidth(...)`, and rows up to (outH - 1) * strideH + (kh - 1) * dilationH
    /// must be readable. Output rows are written in order; with `ldOut` == `outW` a row's last
    /// vector may spill into later rows of the plane (never past it) before they are written.
    public static func plane(source: UnsafePointer<Float>, ld: Int, weights: UnsafePointer<Float>, kh: Int, kw: Int,
                             strideH: Int, strideW: Int, dilationH: Int, dilationW: Int, outH: Int, outW: Int, bias: Float,
                             out: UnsafeMutablePointer<Float>, ldOut: Int, kind: Int, alpha: Float, beta: Float) {
        // Relu and Clip are clamps applied as results leave the registers; other functions
        // run over the plane afterwards.
        let low: Float = kind == Elementwise.relu ? 0 : kind == Elementwise.clip ? alpha : -.infinity
        let high: Float = kind == Elementwise.clip ? beta : .infinity
        // 3x3 and 5x5 filters at stride 1 on rows of 16 columns or more keep the weights and
        // apply the activation in registers. (Narrower rows are mostly unused lanes; there,
        // and at stride 2, this form measured slower than `rows` on EfficientNetB0, Zen 4.)
        let square = kh == kw && (kh == 3 || kh == 5) && strideH == 1 && strideW == 1 && dilationH == 1 && dilationW == 1
            && outW >= 16
        if square {
            let f = kind == Elementwise.relu || kind == Elementwise.clip ? Elementwise.identity : kind
            if kh == 3 {
                square3x3Stride1(source, ld, weights, outH, outW, bias, out, ldOut, low, high, f, alpha, beta)
            } else {
                square5x5Stride1(source, ld, weights, outH, outW, bias, out, ldOut, low, high, f, alpha, beta)
            }
            if f != Elementwise.identity { return }
        } else if strideW == 2 {
            rowsStride2(source, ld, weights, kh, kw, strideH, dilationH, dilationW, outH, outW, bias, out, ldOut, low, high)
        } else {
            rowsStride1(source, ld, weights, kh, kw, strideH, dilationH, dilationW, outH, outW, bias, out, ldOut, low, high)
        }
        if kind == Elementwise.relu || kind == Elementwise.clip {
            return
        } else if kind != 0 && ldOut == outW {
            // Contiguous rows: one pass over the plane (rows of 7 or 14 would be all tail).
            Elementwise.activate(kind, alpha: alpha, beta: beta, out, out, count: outH * outW)
        } else if kind != 0 {   // Elementwise.identity is 0
            for oy in 0..<outH {
                Elementwise.activate(kind, alpha: alpha, beta: beta, out + oy * ldOut, out + oy * ldOut, count: outW)
            }
        }
    }

    /// Copies `rows` rows of `columns` floats (source row stride `sourceStride`) to `target`
    /// (row stride `ld`): the interior of a zero-bordered plane whose borders the caller
    /// zeroed once (they are never written here).
    ///
    /// The target buffer must extend at least 16 floats past its last interior row's start
    /// plus `ld`: a row narrower than 16 columns is stored as a whole vector whose lanes past
    /// `columns` are zero, which lands on border (or not yet copied interior) positions.
    public static func copyRows(_ source: UnsafePointer<Float>, sourceStride: Int, rows: Int, columns: Int,
                                _ target: UnsafeMutablePointer<Float>, ld: Int) {
        guard columns > 0 else { return }
        let lanes = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        let kept = lanes .< SIMD16<Int32>(repeating: Int32(columns))
        // Source rows r with r * sourceStride + 16 <= (rows - 1) * sourceStride + columns can be
        // read as a whole vector without passing the plane's last element.
        let planeEnd = (rows - 1) * sourceStride + columns
        for r in 0..<rows {
            let from = source + r * sourceStride, to = target + r * ld
            if columns >= 16 {
                var c = 0
                while c + 16 <= columns {
                    Elementwise.store(to + c, Elementwise.load(from + c))
                    c += 16
                }
                // The tail as the row's last 16 columns (overlapping what was just copied).
                if c < columns { Elementwise.store(to + columns - 16, Elementwise.load(from + columns - 16)) }
            } else if r * sourceStride + 16 <= planeEnd {
                var v = Elementwise.load(from)
                v.replace(with: V(), where: .!kept)
                Elementwise.store(to, v)
            } else {
                for c in 0..<columns { to[c] = from[c] }
            }
        }
    }

    /// Floats at `p`, `p + stride`, ... (16 of them): stride 1 is one load, stride 2 takes the
    /// even lanes of two.
    @inline(__always)
    static func strided(_ p: UnsafePointer<Float>, _ stride: Int) -> V {
        if stride == 1 { return UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        let pair = UnsafeRawPointer(p).loadUnaligned(as: SIMD32<Float>.self)
        return pair.evenHalf
    }

    /// 3x3 and 5x5 filters at stride 1 (no dilation): the taps' weights stay in registers and
    /// the loops unroll.
    @inline(never)
    static func square3x3Stride1(_ source: UnsafePointer<Float>, _ ld: Int, _ weights: UnsafePointer<Float>, _ outH: Int,
                                 _ outW: Int, _ bias: Float, _ out: UnsafeMutablePointer<Float>, _ ldOut: Int, _ low: Float, _ high: Float,
                                 _ kind: Int, _ alpha: Float, _ beta: Float) {
        activated(source, ld, weights, outH, outW, bias, out, ldOut, low, high, kind, alpha, beta, taps: InlineArray<3, Int>.self, stride: InlineArray<1, Int>.self)
    }
    @inline(never)
    static func square5x5Stride1(_ source: UnsafePointer<Float>, _ ld: Int, _ weights: UnsafePointer<Float>, _ outH: Int,
                                 _ outW: Int, _ bias: Float, _ out: UnsafeMutablePointer<Float>, _ ldOut: Int, _ low: Float, _ high: Float,
                                 _ kind: Int, _ alpha: Float, _ beta: Float) {
        activated(source, ld, weights, outH, outW, bias, out, ldOut, low, high, kind, alpha, beta, taps: InlineArray<5, Int>.self, stride: InlineArray<1, Int>.self)
    }

    /// `square` specialised for the activation `kind` (identity, sigmoid, SiLU, LeakyRelu,
    /// HardSigmoid, HardSwish; Relu and Clip are the clamp), so it inlines into the loops.
    @inline(__always)
    static func activated<let K: Int, let S: Int>(_ source: UnsafePointer<Float>, _ ld: Int, _ weights: UnsafePointer<Float>,
                                                  _ outH: Int, _ outW: Int, _ bias: Float, _ out: UnsafeMutablePointer<Float>,
                                                  _ ldOut: Int, _ low: Float, _ high: Float, _ kind: Int, _ alpha: Float,
                                                  _ beta: Float, taps: InlineArray<K, Int>.Type, stride: InlineArray<S, Int>.Type) {
        let k = Elementwise.Constants(0, alpha, beta)
        switch kind {
        case Elementwise.sigmoid:
            square(source, ld, weights, outH, outW, bias, out, ldOut, low, high, k, Elementwise.Sigmoid.self, taps: taps, stride: stride)
        case Elementwise.silu:
            square(source, ld, weights, outH, outW, bias, out, ldOut, low, high, k, Elementwise.SiLU.self, taps: taps, stride: stride)
        case Elementwise.leakyRelu:
            square(source, ld, weights, outH, outW, bias, out, ldOut, low, high, k, Elementwise.LeakyRelu.self, taps: taps, stride: stride)
        case Elementwise.hardSigmoid:
            square(source, ld, weights, outH, outW, bias, out, ldOut, low, high, k, Elementwise.HardSigmoid.self, taps: taps,
                   stride: stride)
        case Elementwise.hardSwish:
            square(source, ld, weights, outH, outW, bias, out, ldOut, low, high, k, Elementwise.HardSwish.self, taps: taps, stride: stride)
        default:
            square(source, ld, weights, outH, outW, bias, out, ldOut, low, high, k, Elementwise.Identity.self, taps: taps, stride: stride)
        }
    }

    /// `rows` for a K x K filter with stride S both ways and no dilation (K, S fixed at compile
    /// time), with the activation F applied after the clamp, in registers.
    @inline(__always)
    static func square<let K: Int, let S: Int, F: Elementwise.Unary>(_ source: UnsafePointer<Float>, _ ld: Int,
                                                                     _ weights: UnsafePointer<Float>, _ outH: Int, _ outW: Int,
                                                                     _ bias: Float, _ out: UnsafeMutablePointer<Float>, _ ldOut: Int,
                                                                     _ low: Float, _ high: Float, _ k: Elementwise.Constants,
                                                                     _ f: F.Type, taps: InlineArray<K, Int>.Type,
                                                                     stride: InlineArray<S, Int>.Type) {
        var w = InlineArray<K, InlineArray<K, V>>(repeating: InlineArray<K, V>(repeating: V()))
        for ky in 0..<K { for kx in 0..<K { w[ky][kx] = V(repeating: weights[ky * K + kx]) } }
        let b = V(repeating: bias)
        let lowV = V(repeating: low), highV = V(repeating: high)
        @inline(__always) func clamped(_ v: V) -> V {
            var v = v
            v.replace(with: lowV, where: v .< lowV)
            v.replace(with: highV, where: v .> highV)
            return F.apply(v, k)
        }
        for oy in 0..<outH {
            let top = source + oy * S * ld
            let target = out + oy * ldOut
            var ox = 0
            // Named accumulators: an InlineArray of them indexed in a loop left the registers.
            let step = 16 * S
            while ox + 64 <= outW {
                var a0 = b, a1 = b, a2 = b, a3 = b
                for ky in 0..<K {
                    let line = top + ky * ld + ox * S
                    for kx in 0..<K {
                        let weight = w[ky][kx], p = line + kx
                        a0.addProduct(weight, strided(p, S))
                        a1.addProduct(weight, strided(p + step, S))
                        a2.addProduct(weight, strided(p + 2 * step, S))
                        a3.addProduct(weight, strided(p + 3 * step, S))
                    }
                }
                Elementwise.store(target + ox, clamped(a0))
                Elementwise.store(target + ox + 16, clamped(a1))
                Elementwise.store(target + ox + 32, clamped(a2))
                Elementwise.store(target + ox + 48, clamped(a3))
                ox += 64
            }
            while ox + 32 <= outW {
                var a0 = b, a1 = b
                for ky in 0..<K {
                    let line = top + ky * ld + ox * S
                    for kx in 0..<K {
                        let weight = w[ky][kx], p = line + kx
                        a0.addProduct(weight, strided(p, S))
                        a1.addProduct(weight, strided(p + step, S))
                    }
                }
                Elementwise.store(target + ox, clamped(a0))
                Elementwise.store(target + ox + 16, clamped(a1))
                ox += 32
            }
            while ox < outW {
                var a0 = b
                for ky in 0..<K {
                    let line = top + ky * ld + ox * S
                    for kx in 0..<K { a0.addProduct(w[ky][kx], strided(line + kx, S)) }
                }
                // A short last vector: as in `rows`.
                if ox + 16 <= outW || (ldOut == outW && oy * ldOut + ox + 16 <= outH * ldOut) {
                    Elementwise.store(target + ox, clamped(a0))
                } else {
                    Elementwise.storePartial(target + ox, clamped(a0), outW - ox)
                }
                ox += 16
            }
        }
    }

    /// `rows` with the column stride fixed (other filters).
    @inline(never)
    static func rowsStride1(_ source: UnsafePointer<Float>, _ ld: Int, _ weights: UnsafePointer<Float>, _ kh: Int, _ kw: Int,
                            _ strideH: Int, _ dilationH: Int, _ dilation: Int, _ outH: Int, _ outW: Int, _ bias: Float,
                            _ out: UnsafeMutablePointer<Float>, _ ldOut: Int, _ low: Float, _ high: Float) {
        rows(source, ld, weights, kh, kw, strideH, 1, dilationH, dilation, outH, outW, bias, out, ldOut, low, high)
    }
    @inline(never)
    static func rowsStride2(_ source: UnsafePointer<Float>, _ ld: Int, _ weights: UnsafePointer<Float>, _ kh: Int, _ kw: Int,
                            _ strideH: Int, _ dilationH: Int, _ dilation: Int, _ outH: Int, _ outW: Int, _ bias: Float,
                            _ out: UnsafeMutablePointer<Float>, _ ldOut: Int, _ low: Float, _ high: Float) {
        rows(source, ld, weights, kh, kw, strideH, 2, dilationH, dilation, outH, outW, bias, out, ldOut, low, high)
    }

    @inline(__always)
    static func rows(_ source: UnsafePointer<Float>, _ ld: Int, _ weights: UnsafePointer<Float>, _ kh: Int, _ kw: Int,
                     _ strideH: Int, _ stride: Int, _ dilationH: Int, _ dilation: Int, _ outH: Int, _ outW: Int, _ bias: Float,
                     _ out: UnsafeMutablePointer<Float>, _ ldOut: Int, _ low: Float, _ high: Float) {
        let b = V(repeating: bias)
        let lowV = V(repeating: low), highV = V(repeating: high)
        @inline(__always) func clamped(_ v: V) -> V {
            var v = v
            v.replace(with: lowV, where: v .< lowV)
            v.replace(with: highV, where: v .> highV)
            return v
        }
        let step = 16 * stride
        for oy in 0..<outH {
            let top = source + oy * strideH * ld
            let target = out + oy * ldOut
            var ox = 0
            // Four vectors (64 columns) per pass: one broadcast per tap feeds four FMAs.
            while ox + 64 <= outW {
                var a0 = b, a1 = b, a2 = b, a3 = b
                let start = top + ox * stride
                for ky in 0..<kh {
                    let line = start + ky * dilationH * ld
                    for kx in 0..<kw {
                        let w = V(repeating: weights[ky * kw + kx])
                        let p = line + kx * dilation
                        a0.addProduct(w, strided(p, stride))
                        a1.addProduct(w, strided(p + step, stride))
                        a2.addProduct(w, strided(p + 2 * step, stride))
                        a3.addProduct(w, strided(p + 3 * step, stride))
                    }
                }
                Elementwise.store(target + ox, clamped(a0))
                Elementwise.store(target + ox + 16, clamped(a1))
                Elementwise.store(target + ox + 32, clamped(a2))
                Elementwise.store(target + ox + 48, clamped(a3))
                ox += 64
            }
            // Two vectors, then one, the last possibly partial.
            while ox + 32 <= outW {
                var a0 = b, a1 = b
                let start = top + ox * stride
                for ky in 0..<kh {
                    let line = start + ky * dilationH * ld
                    for kx in 0..<kw {
                        let w = V(repeating: weights[ky * kw + kx])
                        let p = line + kx * dilation
                        a0.addProduct(w, strided(p, stride))
                        a1.addProduct(w, strided(p + step, stride))
                    }
                }
                Elementwise.store(target + ox, clamped(a0))
                Elementwise.store(target + ox + 16, clamped(a1))
                ox += 32
            }
            while ox < outW {
                var a0 = b
                let start = top + ox * stride
                for ky in 0..<kh {
                    let line = start + ky * dilationH * ld
                    for kx in 0..<kw {
                        a0.addProduct(V(repeating: weights[ky * kw + kx]), strided(line + kx * dilation, stride))
                    }
                }
                // A short last vector: a whole store when its spill lands in later rows of a
                // contiguous plane (each rewritten in its turn), else a partial one.
                if ox + 16 <= outW || (ldOut == outW && oy * ldOut + ox + 16 <= outH * ldOut) {
                    Elementwise.store(target + ox, clamped(a0))
                } else {
                    Elementwise.storePartial(target + ox, clamped(a0), outW - ox)
                }
                ox += 16
            }
        }
    }
}
