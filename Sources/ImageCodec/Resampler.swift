import AVX2Kernels
import CLinuxShims

/// A growable raw buffer owned by one decoder; contents are scratch between calls.
struct ScratchBuffer<Element> {
    private(set) var pointer: UnsafeMutablePointer<Element>?
    private(set) var capacity = 0

    /// At least `count` elements (contents undefined). Grows geometrically.
    mutating func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if let pointer, capacity >= count { return pointer }
        pointer?.deallocate()
        let newCapacity = max(count, capacity + capacity / 2, 64)
        let fresh = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        pointer = fresh
        capacity = newCapacity
        return fresh
    }

    var bytes: Int { capacity * MemoryLayout<Element>.stride }

    /// Frees the buffer if it holds more than `limit` bytes.
    mutating func release(above limit: Int) {
        if bytes > limit { release() }
    }

    mutating func release() {
        pointer?.deallocate()
        pointer = nil
        capacity = 0
    }
}

/// Pillow's 8-bit resampling arithmetic, reproduced exactly: weights are 22-bit fixed point
/// `k` (`normalize_coeffs_8bpc`), a sample is `(sum(pixel * k) + 2^21) >> 22` clipped to
/// 0...255, and the horizontal pass is rounded to 8 bits before the vertical one.
///
/// Done in Float SIMD without losing exactness: each weight is split as `k = high * 256 +
/// low` (`high` < 2^14, `low` < 2^8) and the two partial sums of `pixel * high` and
/// `pixel * low` are integers below 2^23 (the first because the weights sum to ~2^22, the
/// second for up to `exactTapLimit` taps), which Float holds exactly. Tables with longer
/// filters (shrinking by more than 63x after the DCT reduction) use a scalar Int32 path.
/// The Float <-> Int32 helpers are in `PillowArithmetic.swift`.
let fixedOne = Double(1 << 22)
let exactTapLimit = 128

/// Clamped to 0...255 (for the Int32 fallback, like Pillow's clip8).
@inline(__always)
func clip8(_ sum: Int32) -> Int32 {
    let v = (sum &+ (1 << 21)) &>> 22
    return v < 0 ? 0 : (v > 255 ? 255 : v)
}

/// The triangle (bilinear) filter, support 1.
@inline(__always)
func triangle(_ x: Double) -> Double {
    let a = abs(x)
    return a < 1 ? 1 - a : 0
}

/// Per-output-sample taps of a 1-D resize, Pillow's BILINEAR (`precompute_coeffs` and
/// `normalize_coeffs_8bpc`): the source interval `[in0, in1)` maps onto `outSize` samples,
/// sample centres at `in0 + (i + 0.5) * scale`, the triangle's support widened by the
/// shrink factor (antialiasing), taps clipped to the image, normalised in Double and
/// rounded to 22-bit fixed point. Only samples `first ..< first + count` are computed
/// (a crop of the full resize).
struct CoefficientTable {
    /// Per sample: index of its first source pixel and number of taps.
    var starts = ScratchBuffer<Int32>()
    var taps = ScratchBuffer<Int32>()
    /// `count * stride` fixed-point weights; sample j's taps start at `j * stride`.
    var fixed = ScratchBuffer<Int32>()
    /// The same weights split as `high * 256 + low`, as Floats, singly and in four lanes.
    var high = ScratchBuffer<Float>()
    var low = ScratchBuffer<Float>()
    var highLanes = ScratchBuffer<SIMD4<Float>>()
    var lowLanes = ScratchBuffer<SIMD4<Float>>()
    /// With `pairs`, the lanes for two samples at once (`AVX2Kernels.Resample.horizontalRGB`):
    /// per pair q and tap, sample 2q's weight part four times, then sample 2q + 1's; and
    /// per pair, the larger tap count.
    var pairHigh = ScratchBuffer<Float>()
    var pairLow = ScratchBuffer<Float>()
    var pairTaps = ScratchBuffer<Int32>()
    private var work = ScratchBuffer<Double>()
    private(set) var stride = 0
    private(set) var count = 0
    /// Whether `highLanes` and `lowLanes` (or, with `hasPairs`, the pair tables) hold this
    /// table's weights.
    private(set) var hasLanes = false
    private(set) var hasPairs = false

    /// Whether the split Float arithmetic is exact for this table.
    var splitIsExact: Bool { stride <= exactTapLimit }

    mutating func compute(
        inSize: Int, in0: Double, in1: Double, outSize: Int, first: Int, count: Int, lanes: Bool = false, pairs: Bool = false
    ) {
        let scale = (in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filterScale  // triangle support 1, widened when shrinking
        let stride = Int(support.rounded(.up)) * 2 + 1
        self.stride = stride
        self.count = count
        let total = count * stride
        let starts = self.starts.reserve(count)
        let taps = self.taps.reserve(count)
        let fixed = self.fixed.reserve(total)
        let high = self.high.reserve(total)
        let low = self.low.reserve(total)
        let work = self.work.reserve(stride)
        let inverse = 1 / filterScale
        for j in 0..<count {
            let center = in0 + (Double(first + j) + 0.5) * scale
            // C's (int) cast truncates towards zero, as Swift's Int(_:) does.
            var lo = Int(center - support + 0.5)
            if lo < 0 { lo = 0 }
            var hi = Int(center + support + 0.5)
            if hi > inSize { hi = inSize }
            let n = max(0, min(hi - lo, stride))
            var sum = 0.0
            for t in 0..<n {
                let w = triangle((Double(t + lo) - center + 0.5) * inverse)
                work[t] = w
                sum += w
            }
            let row = j * stride
            for t in 0..<stride {
                var k: Int32 = 0
                if t < n {
                    let w = sum != 0 ? work[t] / sum : work[t]
                    k = Int32(w < 0 ? -0.5 + w * fixedOne : 0.5 + w * fixedOne)  // >= 0 for a triangle
                }
                fixed[row + t] = k
                high[row + t] = Float(k >> 8)
                low[row + t] = Float(k & 255)
            }
            starts[j] = Int32(lo)
            taps[j] = Int32(n)
        }
        hasLanes = lanes
        hasPairs = lanes && pairs
        if hasPairs {
            let pairs = (count + 1) / 2
            let pairHigh = self.pairHigh.reserve(pairs * stride * 8), pairLow = self.pairLow.reserve(pairs * stride * 8)
            let pairTaps = self.pairTaps.reserve(pairs)
            for q in 0..<pairs {
                let second = 2 * q + 1 < count
                pairTaps[q] = second ? max(taps[2 * q], taps[2 * q + 1]) : taps[2 * q]
                for t in 0..<stride {
                    let target = (q * stride + t) * 8
                    let first = 2 * q * stride + t, next = first + stride
                    for lane in 0..<4 {
                        pairHigh[target + lane] = high[first]
                        pairLow[target + lane] = low[first]
                        pairHigh[target + 4 + lane] = second ? high[next] : 0
                        pairLow[target + 4 + lane] = second ? low[next] : 0
                    }
                }
            }
        } else if lanes {
            let highLanes = self.highLanes.reserve(total), lowLanes = self.lowLanes.reserve(total)
            for i in 0..<total {
                highLanes[i] = SIMD4(repeating: high[i])
                lowLanes[i] = SIMD4(repeating: low[i])
            }
        }
    }

    /// Source pixels used by the samples (taps are monotonic in the sample index).
    var sourceRange: Range<Int> {
        guard count > 0, let starts = starts.pointer, let taps = taps.pointer else { return 0..<0 }
        let lower = Int(starts[0])
        let upper = Int(starts[count - 1]) + Int(taps[count - 1])
        return lower..<max(lower, upper)
    }

    /// Most taps of any sample.
    var maxTaps: Int {
        guard let taps = taps.pointer else { return 0 }
        var most = 0
        for j in 0..<count { most = max(most, Int(taps[j])) }
        return most
    }

    mutating func release(above limit: Int) {
        starts.release(above: limit)
        taps.release(above: limit)
        fixed.release(above: limit)
        high.release(above: limit)
        low.release(above: limit)
        highLanes.release(above: limit)
        lowLanes.release(above: limit)
        pairHigh.release(above: limit)
        pairLow.release(above: limit)
        pairTaps.release(above: limit)
        work.release(above: limit)
    }

    mutating func release() {
        release(above: -1)
    }
}

enum Resample {
    /// Whether the AVX2 + FMA loops (`AVX2Kernels.Resample`) can run on this CPU.
    static let cpuHasAVX2 = cls_cpu_has_avx2_fma() != 0

    /// Floats past a widened source row that `horizontal` may read (zero-filled): a pair's
    /// partner runs up to `stride` taps past its own.
    static func rowPadding(_ table: CoefficientTable, channels: Int) -> Int { (table.stride + 2) * channels + 4 }

    /// 8-bit samples to Float (vectorised by the compiler).
    @inline(__always)
    static func widen(_ bytes: UnsafePointer<UInt8>, into floats: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { floats[i] = Float(bytes[i]) }
    }

    /// Horizontal pass over one row: Pillow's 8-bit samples, as integer-valued Floats.
    /// `row` holds the row's pixels as Float from source column `origin` on (`channels`
    /// interleaved values each) followed by `rowPadding(table, channels:)` zeros; writes
    /// `table.count * channels` values to `output`, which must have one padding value after
    /// them (RGB is computed four lanes at a time with the table's lanes, or two pixels at a
    /// time with its pairs: compute it with `lanes: true`, and `pairs: true` for AVX2).
    static func horizontal(
        _ row: UnsafePointer<Float>, origin: Int, channels: Int,
        table: CoefficientTable, into output: UnsafeMutablePointer<Float>
    ) {
        guard let starts = table.starts.pointer, let taps = table.taps.pointer else { return }
        let stride = table.stride
        if table.splitIsExact, channels == 3, table.hasPairs, let pairHigh = table.pairHigh.pointer,
           let pairLow = table.pairLow.pointer, let pairTaps = table.pairTaps.pointer {
            AVX2Kernels.Resample.horizontalRGB(row: row, origin: origin, starts: starts, pairTaps: pairTaps, pairHigh: pairHigh,
                                               pairLow: pairLow, stride: stride, count: table.count, output: output)
        } else if table.splitIsExact, channels == 3, table.hasLanes, let kh = table.highLanes.pointer, let kl = table.lowLanes.pointer {
            for j in 0..<table.count {
                let n = Int(taps[j])
                let wh = kh + j * stride, wl = kl + j * stride
                var p = row + (Int(starts[j]) - origin) * 3
                // Even and odd taps in separate sums: shorter dependency chains.
                var h = SIMD4<Float>.zero, l = SIMD4<Float>.zero
                var h1 = SIMD4<Float>.zero, l1 = SIMD4<Float>.zero
                var t = 0
                while t + 1 < n {
                    let a = UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
                    let b = UnsafeRawPointer(p + 3).loadUnaligned(as: SIMD4<Float>.self)
                    h += a * wh[t]
                    l += a * wl[t]
                    h1 += b * wh[t + 1]
                    l1 += b * wl[t + 1]
                    p += 6
                    t += 2
                }
                if t < n {
                    let a = UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
                    h += a * wh[t]
                    l += a * wl[t]
                }
                // The fourth lane lands on the next pixel's first value, written next.
                let value = floatValue(pillowRound(high: h + h1, low: l + l1))
                UnsafeMutableRawPointer(output + 3 * j).storeBytes(of: value, as: SIMD4<Float>.self)
            }
        } else if table.splitIsExact, let kh = table.high.pointer, let kl = table.low.pointer {
            for j in 0..<table.count {
                let wh = kh + j * stride, wl = kl + j * stride
                for c in 0..<channels {
                    var p = row + (Int(starts[j]) - origin) * channels + c
                    var h: Float = 0, l: Float = 0
                    for t in 0..<Int(taps[j]) {
                        h += p.pointee * wh[t]
                        l += p.pointee * wl[t]
                        p += channels
                    }
                    output[j * channels + c] = Float(pillowRound(high: h, low: l))
                }
            }
        } else if let k = table.fixed.pointer {
            for j in 0..<table.count {
                let w = k + j * stride
                for c in 0..<channels {
                    var p = row + (Int(starts[j]) - origin) * channels + c
                    var sum: Int32 = 0
                    for t in 0..<Int(taps[j]) {
                        sum &+= Int32(p.pointee) &* w[t]
                        p += channels
                    }
                    output[j * channels + c] = Float(clip8(sum))
                }
            }
        }
    }

    /// Vertical pass for one output row: sample `j` of `table` over `rows` (integer-valued
    /// Floats, `length` each), rounded like Pillow to bytes. `high` and `low` are scratch of
    /// at least `length + 8` values (unused with `vectorLoops`, which needs AVX2).
    static func vertical(
        _ rows: (Int) -> UnsafePointer<Float>, table: CoefficientTable, sample j: Int, length: Int,
        high: UnsafeMutablePointer<Float>, low: UnsafeMutablePointer<Float>, into output: UnsafeMutablePointer<UInt8>,
        vectorLoops: Bool
    ) {
        guard let starts = table.starts.pointer, let tapCounts = table.taps.pointer else { return }
        let start = Int(starts[j]), taps = Int(tapCounts[j])
        if table.splitIsExact, vectorLoops, let kh = table.high.pointer, let kl = table.low.pointer {
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: max(taps, 1)) { pointers in
                for t in 0..<taps { pointers[t] = rows(start + t) }
                AVX2Kernels.Resample.vertical(rows: UnsafePointer(pointers.baseAddress!), high: kh + j * table.stride,
                                              low: kl + j * table.stride, taps: taps, length: length, output: output)
            }
        } else if table.splitIsExact, let kh = table.high.pointer, let kl = table.low.pointer {
            let wh = kh + j * table.stride, wl = kl + j * table.stride
            high.update(repeating: 0, count: length)
            low.update(repeating: 0, count: length)
            for t in 0..<taps {
                let row = rows(start + t)
                let a = wh[t], b = wl[t]
                for i in 0..<length {
                    high[i] += row[i] * a
                    low[i] += row[i] * b
                }
            }
            var i = 0
            while i + 8 <= length {
                let h = UnsafeRawPointer(high + i).loadUnaligned(as: SIMD8<Float>.self)
                let l = UnsafeRawPointer(low + i).loadUnaligned(as: SIMD8<Float>.self)
                let v = pillowRound(high: h, low: l)
                UnsafeMutableRawPointer(output + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: v), as: SIMD8<UInt8>.self)
                i += 8
            }
            while i < length {
                output[i] = UInt8(truncatingIfNeeded: pillowRound(high: high[i], low: low[i]))
                i += 1
            }
        } else if let k = table.fixed.pointer {
            let w = k + j * table.stride
            for i in 0..<length {
                var sum: Int32 = 0
                for t in 0..<taps { sum &+= Int32(rows(start + t)[i]) &* w[t] }
                output[i] = UInt8(truncatingIfNeeded: clip8(sum))
            }
        }
    }

    /// Integer-valued Floats (0...255) to bytes.
    static func narrow(_ values: UnsafePointer<Float>, into bytes: UnsafeMutablePointer<UInt8>, count: Int) {
        var i = 0
        while i + 8 <= count {
            let v = integerBits(UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<Float>.self))
            UnsafeMutableRawPointer(bytes + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: v), as: SIMD8<UInt8>.self)
            i += 8
        }
        while i < count {
            bytes[i] = UInt8(truncatingIfNeeded: integerBits(values[i]))
            i += 1
        }
    }
}
