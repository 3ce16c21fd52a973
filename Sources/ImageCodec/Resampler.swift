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

/// Fixed-point bits of the resampling weights, as in Pillow's 8-bit resampler: a weight
/// sum of 1 is 2^22, so 255 * weights + rounding fits in Int32.
let precisionBits: Int32 = 22
let roundingBias: Int32 = 1 << (precisionBits - 1)

/// Pillow's clip8: a fixed-point accumulator to 0...255.
@inline(__always)
func clip8(_ value: Int32) -> UInt8 {
    if value >= (1 << (precisionBits + 8)) { return 255 }
    if value <= 0 { return 0 }
    return UInt8(truncatingIfNeeded: value >> precisionBits)
}

/// The triangle (bilinear) filter, support 1.
@inline(__always)
func triangle(_ x: Double) -> Double {
    let a = abs(x)
    return a < 1 ? 1 - a : 0
}

/// Per-output-sample taps of a 1-D resize, computed exactly like Pillow's
/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the BILINEAR filter: the source
/// interval `[in0, in1)` maps onto `outSize` samples, the filter support grows by the
/// shrink factor, weights are normalised in Double and rounded to 22-bit fixed point.
/// Only samples `first ..< first + count` are computed (a crop of the full resize).
struct CoefficientTable {
    /// Per sample: index of its first source pixel and number of taps.
    var starts = ScratchBuffer<Int32>()
    var taps = ScratchBuffer<Int32>()
    /// `count * stride` fixed-point weights; sample j's taps start at `j * stride`.
    var weights = ScratchBuffer<Int32>()
    private var work = ScratchBuffer<Double>()
    private(set) var stride = 0
    private(set) var count = 0

    mutating func compute(inSize: Int, in0: Double, in1: Double, outSize: Int, first: Int, count: Int) {
        let scale = (in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filterScale  // triangle support 1, widened when shrinking
        let stride = Int(support.rounded(.up)) * 2 + 1
        self.stride = stride
        self.count = count
        let starts = self.starts.reserve(count)
        let taps = self.taps.reserve(count)
        let weights = self.weights.reserve(count * stride)
        let work = self.work.reserve(stride)
        let inverse = 1 / filterScale
        let one = Double(1 << precisionBits)
        for j in 0..<count {
            let center = in0 + (Double(first + j) + 0.5) * scale
            // C's (int) cast truncates towards zero, as Swift's Int(_:) does.
            var lo = Int(center - support + 0.5)
            if lo < 0 { lo = 0 }
            var hi = Int(center + support + 0.5)
            if hi > inSize { hi = inSize }
            let n = max(0, min(hi - lo, stride))
            var total = 0.0
            for t in 0..<n {
                let w = triangle((Double(t + lo) - center + 0.5) * inverse)
                work[t] = w
                total += w
            }
            let row = weights + j * stride
            for t in 0..<n {
                let w = total != 0 ? work[t] / total : work[t]
                row[t] = Int32(w < 0 ? -0.5 + w * one : 0.5 + w * one)
            }
            for t in n..<stride { row[t] = 0 }
            starts[j] = Int32(lo)
            taps[j] = Int32(n)
        }
    }

    /// Source pixels `lowerBound ..< upperBound` used by the samples (non-empty, monotonic).
    var sourceRange: Range<Int> {
        guard count > 0, let starts = starts.pointer, let taps = taps.pointer else { return 0..<0 }
        let lower = Int(starts[0])
        let upper = Int(starts[count - 1]) + Int(taps[count - 1])
        return lower..<max(lower, upper)
    }

    mutating func release(above limit: Int) {
        starts.release(above: limit)
        taps.release(above: limit)
        weights.release(above: limit)
        work.release(above: limit)
    }

    mutating func release() {
        starts.release()
        taps.release()
        weights.release()
        work.release()
    }
}

/// 8-bit interleaved image rows: row r starts at `base + (r - origin) * stride`.
struct RowSource {
    var base: UnsafePointer<UInt8>
    var stride: Int
    var origin: Int

    @inline(__always)
    func row(_ r: Int) -> UnsafePointer<UInt8> { base + (r - origin) * stride }
}

enum Resample {
    /// Horizontal pass: for each source row in `rows`, the table's samples from the pixels
    /// of `source` (interleaved, `channels` bytes each) into `destination` rows of
    /// `table.count * channels` bytes, row `rows.lowerBound` first.
    static func horizontal(
        _ source: RowSource, rows: Range<Int>, channels: Int,
        table: CoefficientTable, into destination: UnsafeMutablePointer<UInt8>
    ) {
        let count = table.count
        let stride = table.stride
        guard count > 0, let starts = table.starts.pointer, let taps = table.taps.pointer,
              let weights = table.weights.pointer else { return }
        let outStride = count * channels
        for (index, r) in rows.enumerated() {
            let input = source.row(r)
            let output = destination + index * outStride
            if channels == 3 {
                for j in 0..<count {
                    let k = weights + j * stride
                    var p = input + Int(starts[j]) * 3
                    var s0 = roundingBias, s1 = roundingBias, s2 = roundingBias
                    for t in 0..<Int(taps[j]) {
                        let w = k[t]
                        s0 &+= Int32(p[0]) &* w
                        s1 &+= Int32(p[1]) &* w
                        s2 &+= Int32(p[2]) &* w
                        p += 3
                    }
                    let o = output + j * 3
                    o[0] = clip8(s0)
                    o[1] = clip8(s1)
                    o[2] = clip8(s2)
                }
            } else {
                for j in 0..<count {
                    let k = weights + j * stride
                    let p = input + Int(starts[j])
                    var s = roundingBias
                    for t in 0..<Int(taps[j]) { s &+= Int32(p[t]) &* k[t] }
                    output[j] = clip8(s)
                }
            }
        }
    }

    /// Vertical pass for one output row: sample `j` of `table` over the rows of `source`,
    /// `length` bytes wide, into `output`. `accumulator` holds at least `length` values.
    static func verticalRow(
        _ source: RowSource, table: CoefficientTable, sample j: Int, length: Int,
        accumulator: UnsafeMutablePointer<Int32>, into output: UnsafeMutablePointer<UInt8>
    ) {
        guard let starts = table.starts.pointer, let tapCounts = table.taps.pointer,
              let weights = table.weights.pointer else { return }
        let k = weights + j * table.stride
        let start = Int(starts[j])
        let taps = Int(tapCounts[j])
        accumulator.update(repeating: roundingBias, count: length)
        var t = 0
        // Two rows per sweep over the accumulator.
        while t + 1 < taps {
            let a = source.row(start + t), b = source.row(start + t + 1)
            let wa = k[t], wb = k[t + 1]
            for i in 0..<length {
                accumulator[i] &+= Int32(a[i]) &* wa &+ Int32(b[i]) &* wb
            }
            t += 2
        }
        if t < taps {
            let a = source.row(start + t)
            let wa = k[t]
            for i in 0..<length { accumulator[i] &+= Int32(a[i]) &* wa }
        }
        for i in 0..<length { output[i] = clip8(accumulator[i]) }
    }
}
