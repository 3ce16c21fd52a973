/// Element-wise kernels for the engine's memory-bound operators and convolution epilogues:
/// activations (with a bias or a residual added first), the four arithmetic operators on
/// two rows or a row and a scalar. Compiled like `DirectConv` once for AVX-512 and once for
/// AVX2 + FMA (the same source, linked); call each only on a CPU that has its instruction set.
///
/// Every loop runs over contiguous floats 16 at a time; the tail (fewer than 16) goes
/// through the same vector code on a copy, so every element gets bit-identical arithmetic.
/// Sources and destination may be the same buffer (in place) but must not partially overlap.
public enum Elementwise {
    typealias V = SIMD16<Float>

    /// Activation codes (the engine's `Activation` cases). `alpha`/`beta` carry LeakyRelu's
    /// slope, Clip's bounds and HardSigmoid's coefficients.
    public static let identity = 0, relu = 1, leakyRelu = 2, clip = 3, sigmoid = 4, hardSigmoid = 5, hardSwish = 6, silu = 7

    /// Operator codes for `binary` and `binaryScalar`.
    public static let add = 0, subtract = 1, multiply = 2, divide = 3

    // MARK: exp and the activations on one vector

    /// e^x for every lane: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by a degree-6 polynomial
    /// (Cephes expf; relative error about 2e-7 over the range), 2^n from the exponent bits.
    /// Lanes below -87.3 give about 1e-38, above 88.7 about 3.4e38 (no infinities, no NaN
    /// from finite input).
    @inline(__always)
    static func exp(_ input: V) -> V {
        var x = input
        x.replace(with: V(repeating: 88.37626), where: x .> V(repeating: 88.37626))
        x.replace(with: V(repeating: -87.33654), where: x .< V(repeating: -87.33654))
        let n = (x * V(repeating: 1.44269504088896341)).rounded(.toNearestOrEven)
        var r = x - n * V(repeating: 0.693359375)
        r = r - n * V(repeating: -2.12194440e-4)
        var p = V(repeating: 1.9875691500e-4)
        p = p * r + V(repeating: 1.3981999507e-3)
        p = p * r + V(repeating: 8.3334519073e-3)
        p = p * r + V(repeating: 4.1665795894e-2)
        p = p * r + V(repeating: 1.6666665459e-1)
        p = p * r + V(repeating: 5.0000001201e-1)
        p = p * (r * r) + r + V(repeating: 1)
        let bits = (SIMD16<Int32>(n, rounding: .towardZero) &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: V.self)
    }

    @inline(__always)
    static func activation(_ kind: Int, _ alpha: Float, _ beta: Float, _ x: V) -> V {
        var v = x
        switch kind {
        case relu:
            v.replace(with: V(), where: v .< V())
        case leakyRelu:
            v.replace(with: v * V(repeating: alpha), where: v .< V())
        case clip:
            v.replace(with: V(repeating: alpha), where: v .< V(repeating: alpha))
            v.replace(with: V(repeating: beta), where: v .> V(repeating: beta))
        case sigmoid:
            v = V(repeating: 1) / (V(repeating: 1) + exp(-v))
        case hardSigmoid:
            v = v * V(repeating: alpha) + V(repeating: beta)
            v.replace(with: V(), where: v .< V())
            v.replace(with: V(repeating: 1), where: v .> V(repeating: 1))
        case hardSwish:
            var t = v * V(repeating: 1.0 / 6.0) + V(repeating: 0.5)
            t.replace(with: V(), where: t .< V())
            t.replace(with: V(repeating: 1), where: t .> V(repeating: 1))
            v = v * t
        case silu:
            v = v / (V(repeating: 1) + exp(-v))
        default:
            break
        }
        return v
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) static func store(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

    /// The first `count` (< 16) floats of `p` in a vector, zeros after.
    @inline(__always) static func loadPartial(_ p: UnsafePointer<Float>, _ count: Int) -> V {
        var v = V()
        for i in 0..<count { v[i] = p[i] }
        return v
    }
    @inline(__always) static func storePartial(_ p: UnsafeMutablePointer<Float>, _ v: V, _ count: Int) {
        for i in 0..<count { p[i] = v[i] }
    }

    /// Runs `body` on vectors of 16 (4 at a time while it can) and on the tail; `body(i, n)`
    /// handles floats i..<i+16 given as loaded vectors by the caller's closures.
    @inline(__always)
    static func map1(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int, _ f: (V) -> V) {
        var i = 0
        while i + 64 <= count {
            let a = load(source + i), b = load(source + i + 16), c = load(source + i + 32), d = load(source + i + 48)
            store(target + i, f(a)); store(target + i + 16, f(b)); store(target + i + 32, f(c)); store(target + i + 48, f(d))
            i += 64
        }
        while i + 16 <= count { store(target + i, f(load(source + i))); i += 16 }
        if i < count { storePartial(target + i, f(loadPartial(source + i, count - i)), count - i) }
    }

    @inline(__always)
    static func map2(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int,
                     _ f: (V, V) -> V) {
        var i = 0
        while i + 64 <= count {
            let a0 = load(a + i), a1 = load(a + i + 16), a2 = load(a + i + 32), a3 = load(a + i + 48)
            let b0 = load(b + i), b1 = load(b + i + 16), b2 = load(b + i + 32), b3 = load(b + i + 48)
            store(target + i, f(a0, b0)); store(target + i + 16, f(a1, b1))
            store(target + i + 32, f(a2, b2)); store(target + i + 48, f(a3, b3))
            i += 64
        }
        while i + 16 <= count { store(target + i, f(load(a + i), load(b + i))); i += 16 }
        if i < count { storePartial(target + i, f(loadPartial(a + i, count - i), loadPartial(b + i, count - i)), count - i) }
    }

    // MARK: entry points

    /// target[i] = f(source[i] + bias) for i < count.
    public static func activate(_ kind: Int, alpha: Float, beta: Float, _ source: UnsafePointer<Float>,
                                _ target: UnsafeMutablePointer<Float>, count: Int, bias: Float = 0) {
        let b = V(repeating: bias)
        switch kind {
        case identity: map1(source, target, count) { $0 + b }
        case relu: map1(source, target, count) { activation(relu, alpha, beta, $0 + b) }
        case clip: map1(source, target, count) { activation(clip, alpha, beta, $0 + b) }
        case leakyRelu: map1(source, target, count) { activation(leakyRelu, alpha, beta, $0 + b) }
        case sigmoid: map1(source, target, count) { activation(sigmoid, alpha, beta, $0 + b) }
        case hardSigmoid: map1(source, target, count) { activation(hardSigmoid, alpha, beta, $0 + b) }
        case hardSwish: map1(source, target, count) { activation(hardSwish, alpha, beta, $0 + b) }
        case silu: map1(source, target, count) { activation(silu, alpha, beta, $0 + b) }
        default: map1(source, target, count) { $0 + b }
        }
    }

    /// target[i] = f(a[i] + b[i]) for i < count (a residual added before the activation).
    public static func addActivate(_ kind: Int, alpha: Float, beta: Float, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                   _ target: UnsafeMutablePointer<Float>, count: Int) {
        switch kind {
        case identity: map2(a, b, target, count) { $0 + $1 }
        case relu: map2(a, b, target, count) { activation(relu, alpha, beta, $0 + $1) }
        case clip: map2(a, b, target, count) { activation(clip, alpha, beta, $0 + $1) }
        case leakyRelu: map2(a, b, target, count) { activation(leakyRelu, alpha, beta, $0 + $1) }
        case sigmoid: map2(a, b, target, count) { activation(sigmoid, alpha, beta, $0 + $1) }
        case hardSigmoid: map2(a, b, target, count) { activation(hardSigmoid, alpha, beta, $0 + $1) }
        case hardSwish: map2(a, b, target, count) { activation(hardSwish, alpha, beta, $0 + $1) }
        case silu: map2(a, b, target, count) { activation(silu, alpha, beta, $0 + $1) }
        default: map2(a, b, target, count) { $0 + $1 }
        }
    }

    /// target[i] = a[i] op b[i] for i < count.
    public static func binary(_ op: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>,
                              count: Int) {
        switch op {
        case add: map2(a, b, target, count) { $0 + $1 }
        case subtract: map2(a, b, target, count) { $0 - $1 }
        case multiply: map2(a, b, target, count) { $0 * $1 }
        default: map2(a, b, target, count) { $0 / $1 }
        }
    }

    /// target[i] = a[i] op s (or s op a[i] when `scalarFirst`) for i < count.
    public static func binaryScalar(_ op: Int, _ a: UnsafePointer<Float>, _ scalar: Float, scalarFirst: Bool,
                                    _ target: UnsafeMutablePointer<Float>, count: Int) {
        let s = V(repeating: scalar)
        switch (op, scalarFirst) {
        case (add, _): map1(a, target, count) { $0 + s }
        case (subtract, false): map1(a, target, count) { $0 - s }
        case (subtract, true): map1(a, target, count) { s - $0 }
        case (multiply, _): map1(a, target, count) { $0 * s }
        case (divide, false): map1(a, target, count) { $0 / s }
        default: map1(a, target, count) { s / $0 }
        }
    }
}
