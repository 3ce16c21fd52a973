/// The hot loops of ImageCodec's Pillow-exact resize, built for AVX2 + FMA (this target's
/// flags); call only on a CPU that has them. Arithmetic contract (see ImageCodec's
/// `Resampler.swift`): samples are integer-valued Floats 0...255, each fixed-point weight is
/// split as `high * 256 + low`, and both partial sums stay integers below 2^23, so every
/// product, fused multiply-add and sum is exact in Float whatever the order. Rounding is
/// `PillowArithmetic.swift`, the same source as ImageCodec's.
public enum Resample {
    typealias V4 = SIMD4<Float>
    typealias V8 = SIMD8<Float>

    /// Horizontal pass over one RGB row, two output pixels per step (one per 128-bit half).
    ///
    /// - row: the row's pixels as Floats from source column `origin` on (3 interleaved values
    ///   each), readable and finite for `(stride + 2) * 3 + 4` values past the last pixel any
    ///   sample uses (pair partners read up to `stride` taps; their extra weights are zero).
    /// - starts: per output pixel, its first source column; `pairTaps[q]`: the larger tap
    ///   count of pixels 2q and 2q + 1.
    /// - pairHigh / pairLow: per pair q and tap t < `stride`, 8 floats: pixel 2q's weight part
    ///   four times, then pixel 2q + 1's (zero past a pixel's taps, and for a missing last pixel).
    /// - output: `count * 3` values plus one padding value (a pixel's fourth lane lands there).
    public static func horizontalRGB(
        row: UnsafePointer<Float>, origin: Int, starts: UnsafePointer<Int32>, pairTaps: UnsafePointer<Int32>,
        pairHigh: UnsafePointer<Float>, pairLow: UnsafePointer<Float>, stride: Int, count: Int,
        output: UnsafeMutablePointer<Float>
    ) {
        var q = 0
        while 2 * q < count {
            let j = 2 * q
            let hasSecond = j + 1 < count
            var p0 = row + (Int(starts[j]) - origin) * 3
            var p1 = hasSecond ? row + (Int(starts[j + 1]) - origin) * 3 : p0
            var wh = pairHigh + q * stride * 8, wl = pairLow + q * stride * 8
            let n = Int(pairTaps[q])
            var h = V8(), l = V8(), h1 = V8(), l1 = V8()
            var t = 0
            while t + 1 < n {
                let a = V8(lowHalf: UnsafeRawPointer(p0).loadUnaligned(as: V4.self),
                           highHalf: UnsafeRawPointer(p1).loadUnaligned(as: V4.self))
                let b = V8(lowHalf: UnsafeRawPointer(p0 + 3).loadUnaligned(as: V4.self),
                           highHalf: UnsafeRawPointer(p1 + 3).loadUnaligned(as: V4.self))
                h.addProduct(a, UnsafeRawPointer(wh).loadUnaligned(as: V8.self))
                l.addProduct(a, UnsafeRawPointer(wl).loadUnaligned(as: V8.self))
                h1.addProduct(b, UnsafeRawPointer(wh + 8).loadUnaligned(as: V8.self))
                l1.addProduct(b, UnsafeRawPointer(wl + 8).loadUnaligned(as: V8.self))
                p0 += 6; p1 += 6; wh += 16; wl += 16
                t += 2
            }
            if t < n {
                let a = V8(lowHalf: UnsafeRawPointer(p0).loadUnaligned(as: V4.self),
                           highHalf: UnsafeRawPointer(p1).loadUnaligned(as: V4.self))
                h.addProduct(a, UnsafeRawPointer(wh).loadUnaligned(as: V8.self))
                l.addProduct(a, UnsafeRawPointer(wl).loadUnaligned(as: V8.self))
            }
            let value = floatValue(pillowRound(high: h + h1, low: l + l1))
            UnsafeMutableRawPointer(output + 3 * j).storeBytes(of: value.lowHalf, as: V4.self)
            if hasSecond { UnsafeMutableRawPointer(output + 3 * j + 3).storeBytes(of: value.highHalf, as: V4.self) }
            q += 1
        }
    }

    /// Vertical pass for one output row: `output[i] = round(sum over t < taps of rows[t][i] *
    /// (high[t] * 256 + low[t]))` for i < `length`, Pillow's rounding, as bytes.
    public static func vertical(
        rows: UnsafePointer<UnsafePointer<Float>>, high: UnsafePointer<Float>, low: UnsafePointer<Float>, taps: Int,
        length: Int, output: UnsafeMutablePointer<UInt8>
    ) {
        var i = 0
        while i + 8 <= length {
            var h = V8(), l = V8()
            for t in 0..<taps {
                let x = UnsafeRawPointer(rows[t] + i).loadUnaligned(as: V8.self)
                h.addProduct(x, V8(repeating: high[t]))
                l.addProduct(x, V8(repeating: low[t]))
            }
            UnsafeMutableRawPointer(output + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: pillowRound(high: h, low: l)), as: SIMD8<UInt8>.self)
            i += 8
        }
        while i < length {
            var h: Float = 0, l: Float = 0
            for t in 0..<taps {
                h += rows[t][i] * high[t]
                l += rows[t][i] * low[t]
            }
            output[i] = UInt8(truncatingIfNeeded: pillowRound(high: h, low: l))
            i += 1
        }
    }
}
