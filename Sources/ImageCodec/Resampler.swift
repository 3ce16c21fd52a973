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

/// The triangle (bilinear) filter, support 1.
@inline(__always)
func triangle(_ x: Double) -> Double {
    let a = abs(x)
    return a < 1 ? 1 - a : 0
}

/// Per-output-sample taps of a 1-D resize with Pillow's BILINEAR geometry
/// (`precompute_coeffs`): the source interval `[in0, in1)` maps onto `outSize` samples,
/// sample centres at `in0 + (i + 0.5) * scale`, the triangle's support widened by the
/// shrink factor (antialiasing), taps clipped to the image and normalised in Double.
/// Only samples `first ..< first + count` are computed (a crop of the full resize).
struct CoefficientTable {
    /// Per sample: index of its first source pixel and number of taps.
    var starts = ScratchBuffer<Int32>()
    var taps = ScratchBuffer<Int32>()
    /// `count * stride` weights; sample j's taps start at `j * stride`, zero-padded.
    var weights = ScratchBuffer<Float>()
    /// The same weights, each repeated in four lanes (for interleaved RGB), when requested.
    var lanes = ScratchBuffer<SIMD4<Float>>()
    private var work = ScratchBuffer<Double>()
    private(set) var stride = 0
    private(set) var count = 0

    mutating func compute(
        inSize: Int, in0: Double, in1: Double, outSize: Int, first: Int, count: Int, broadcast: Bool = false
    ) {
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
            for t in 0..<n { row[t] = Float(total != 0 ? work[t] / total : work[t]) }
            for t in n..<stride { row[t] = 0 }
            starts[j] = Int32(lo)
            taps[j] = Int32(n)
        }
        if broadcast {
            let lanes = self.lanes.reserve(count * stride)
            for i in 0..<(count * stride) { lanes[i] = SIMD4(repeating: weights[i]) }
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
        weights.release(above: limit)
        lanes.release(above: limit)
        work.release(above: limit)
    }

    mutating func release() {
        starts.release()
        taps.release()
        weights.release()
        lanes.release()
        work.release()
    }
}

enum Resample {
    /// 8-bit samples to Float (vectorised by the compiler).
    @inline(__always)
    static func widen(_ bytes: UnsafePointer<UInt8>, into floats: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { floats[i] = Float(bytes[i]) }
    }

    /// Horizontal pass over one row. `row` holds the row's pixels as Float from source
    /// column `origin` on (`channels` interleaved values each) followed by at least one
    /// readable padding value; writes `table.count * channels` values to `output`, which
    /// must have one padding value after them (RGB is computed four lanes at a time, with
    /// the table's `lanes`, so it must have been computed with `broadcast`).
    static func horizontal(
        _ row: UnsafePointer<Float>, origin: Int, channels: Int,
        table: CoefficientTable, into output: UnsafeMutablePointer<Float>
    ) {
        guard let starts = table.starts.pointer, let taps = table.taps.pointer,
              let weights = table.weights.pointer else { return }
        let stride = table.stride
        if channels == 3, let lanes = table.lanes.pointer {
            for j in 0..<table.count {
                let k = lanes + j * stride
                let n = Int(taps[j])
                var p = row + (Int(starts[j]) - origin) * 3
                var a = SIMD4<Float>.zero, b = SIMD4<Float>.zero
                var t = 0
                while t + 1 < n {
                    a += UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self) * k[t]
                    b += UnsafeRawPointer(p + 3).loadUnaligned(as: SIMD4<Float>.self) * k[t + 1]
                    p += 6
                    t += 2
                }
                if t < n { a += UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self) * k[t] }
                // The fourth lane lands on the next pixel's first value, written next.
                UnsafeMutableRawPointer(output + 3 * j).storeBytes(of: a + b, as: SIMD4<Float>.self)
            }
        } else if channels == 1 {
            for j in 0..<table.count {
                let k = weights + j * stride
                let p = row + (Int(starts[j]) - origin)
                var sum: Float = 0
                for t in 0..<Int(taps[j]) { sum += p[t] * k[t] }
                output[j] = sum
            }
        }
    }

    /// `accumulator[i] (+)= weight * row[i]` for `count` values.
    @inline(__always)
    static func accumulate(
        _ row: UnsafePointer<Float>, weight: Float, into accumulator: UnsafeMutablePointer<Float>,
        count: Int, first: Bool
    ) {
        if first {
            for i in 0..<count { accumulator[i] = weight * row[i] }
        } else {
            for i in 0..<count { accumulator[i] += weight * row[i] }
        }
    }

    /// Rounds non-negative values below 255.5 to bytes (half to even): adding 1.5 * 2^23
    /// leaves the rounded integer in the low mantissa bits.
    static func quantize(_ values: UnsafePointer<Float>, into bytes: UnsafeMutablePointer<UInt8>, count: Int) {
        let magic = SIMD8<Float>(repeating: 12_582_912)
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<Float>.self) + magic
            let bits = unsafeBitCast(v, to: SIMD8<UInt32>.self)
            UnsafeMutableRawPointer(bytes + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: bits), as: SIMD8<UInt8>.self)
            i += 8
        }
        while i < count {
            bytes[i] = UInt8(truncatingIfNeeded: (values[i] + 12_582_912).bitPattern)
            i += 1
        }
    }
}
