/// Element-wise row primitives for the engine's memory-bound operators (pooling), compiled
/// like `DirectConv` once for AVX-512 and once for AVX2 + FMA; call each only on a CPU that
/// has its instruction set. `target` and `source` may not
/// overlap partially (identical is allowed).
public enum Rows {
    typealias V = SIMD16<Float>

    /// target[i] = max(target[i], source[i]) for i < count.
    public static func maximum(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 16 <= count {
            var t = load(target + i)
            let s = load(UnsafeMutablePointer(mutating: source + i))
            t.replace(with: s, where: s .> t)
            store(target + i, t)
            i += 16
        }
        while i < count { target[i] = Swift.max(target[i], source[i]); i += 1 }
    }

    /// target[i] += source[i] for i < count.
    public static func add(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 16 <= count {
            store(target + i, load(target + i) + load(UnsafeMutablePointer(mutating: source + i)))
            i += 16
        }
        while i < count { target[i] += source[i]; i += 1 }
    }

    /// target[i] *= scale[i] * factor for i < count.
    public static func scale(_ target: UnsafeMutablePointer<Float>, by scale: UnsafePointer<Float>, factor: Float, count: Int) {
        var i = 0
        let f = V(repeating: factor)
        while i + 16 <= count {
            store(target + i, load(target + i) * load(UnsafeMutablePointer(mutating: scale + i)) * f)
            i += 16
        }
        while i < count { target[i] *= scale[i] * factor; i += 1 }
    }

    /// target[i] = source[i * stride] for i < count.
    public static func subsample(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, stride: Int, count: Int) {
        for i in 0..<count { target[i] = source[i * stride] }
    }

    /// Elements first, first + 2, ..., first + 30 of `row` (floats).
    @inline(__always) static func evenLanes(_ row: UnsafeRawPointer, _ first: Int) -> V {
        let a = row.loadUnaligned(fromByteOffset: first * 4, as: V.self)
        let b = row.loadUnaligned(fromByteOffset: first * 4 + 64, as: V.self)
        return V(a[0], a[2], a[4], a[6], a[8], a[10], a[12], a[14], b[0], b[2], b[4], b[6], b[8], b[10], b[12], b[14])
    }

    @inline(__always) static func load(_ p: UnsafeMutablePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) static func store(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
}

extension Rows {
    /// target[i] = max or sum over r < rows of first[r * stride + i], for i < count.
    public static func reduceRows(_ target: UnsafeMutablePointer<Float>, _ first: UnsafePointer<Float>, stride: Int, rows: Int,
                                  count: Int, isMax: Bool) {
        @inline(__always) func column(_ i: Int) -> V {
            var v = load(UnsafeMutablePointer(mutating: first + i))
            for r in 1..<max(rows, 1) {
                let s = load(UnsafeMutablePointer(mutating: first + r * stride + i))
                if isMax { v.replace(with: s, where: s .> v) } else { v += s }
            }
            return v
        }
        var i = 0
        while i + 16 <= count { store(target + i, column(i)); i += 16 }
        // The last vector overlaps the previous one instead of reading past the rows' end.
        if i < count && count >= 16 { store(target + count - 16, column(count - 16)); return }
        while i < count {
            var value = first[i]
            for r in 1..<max(rows, 1) { value = isMax ? Swift.max(value, first[r * stride + i]) : value + first[r * stride + i] }
            target[i] = value
            i += 1
        }
    }

    /// Sliding-window reduction along a row: out[i] = max or sum of row[i * stride + k] for
    /// k < kernel, i < count, times `scale[i] * factor` when `scale` is given. Reads up to 32
    /// floats past the last window, which the caller must have allocated (the values do not
    /// matter); writes exactly `count` floats.
    public static func windows(_ out: UnsafeMutablePointer<Float>, _ row: UnsafePointer<Float>, count: Int, kernel: Int, stride: Int,
                               isMax: Bool, scale: UnsafePointer<Float>? = nil, factor: Float = 1) {
        let raw = UnsafeRawPointer(row)
        @inline(__always) func window(_ i: Int) -> V {
            var v: V
            if stride == 1 {
                v = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
                for k in 1..<max(kernel, 1) {
                    let s = raw.loadUnaligned(fromByteOffset: (i + k) * 4, as: V.self)
                    if isMax { v.replace(with: s, where: s .> v) } else { v += s }
                }
            } else {
                v = evenLanes(raw, i * 2)
                for k in 1..<max(kernel, 1) {
                    let s = evenLanes(raw, i * 2 + k)
                    if isMax { v.replace(with: s, where: s .> v) } else { v += s }
                }
            }
            if let scale { v *= load(UnsafeMutablePointer(mutating: scale + i)) * V(repeating: factor) }
            return v
        }
        if stride <= 2 {
            var i = 0
            while i + 16 <= count { store(out + i, window(i)); i += 16 }
            if i < count {
                if count >= 16 { store(out + count - 16, window(count - 16)) } else {
                    let v = window(i)
                    for lane in 0..<(count - i) { out[i + lane] = v[lane] }
                }
            }
            return
        }
        for j in 0..<count {
            var value = row[j * stride]
            for k in 1..<max(kernel, 1) { value = isMax ? Swift.max(value, row[j * stride + k]) : value + row[j * stride + k] }
            out[j] = value * (scale.map { $0[j] * factor } ?? 1)
        }
    }
}
