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
        // n = round(x / ln 2) by the 1.5 * 2^23 trick: the sum's low mantissa bits hold n.
        let magic = V(repeating: 12582912)
        let shifted = x * V(repeating: 1.44269504088896341) + magic
        let n = shifted - magic
        var r = x - n * V(repeating: 0.693359375)
        r = r - n * V(repeating: -2.12194440e-4)
        var p = V(repeating: 1.9875691500e-4)
        p = p * r + V(repeating: 1.3981999507e-3)
        p = p * r + V(repeating: 8.3334519073e-3)
        p = p * r + V(repeating: 4.1665795894e-2)
        p = p * r + V(repeating: 1.6666665459e-1)
        p = p * r + V(repeating: 5.0000001201e-1)
        p = p * (r * r) + r + V(repeating: 1)
        let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- SIMD16<Int32>(repeating: 0x4B40_0000)
        let bits = (integer &+ SIMD16<Int32>(repeating: 127)) &<< SIMD16<Int32>(repeating: 23)
        return p * unsafeBitCast(bits, to: V.self)
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) static func store(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

    /// The first `count` (< 16) floats of `p` in a vector, zeros after. Through memory (a
    /// lane-by-lane build made the compiler scalarise the whole operation on the tail).
    @inline(never) static func loadPartial(_ p: UnsafePointer<Float>, _ count: Int) -> V {
        var v = V()
        withUnsafeMutableBytes(of: &v) { $0.baseAddress!.copyMemory(from: p, byteCount: count * 4) }
        return v
    }
    @inline(never) static func storePartial(_ p: UnsafeMutablePointer<Float>, _ v: V, _ count: Int) {
        withUnsafeBytes(of: v) { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: count * 4) }
    }

    /// f(v) for an activation code (the vector form of `activate`'s functions), for kernels
    /// that apply it in registers.
    @inline(__always)
    static func activation(_ kind: Int, _ v: V, alpha: Float, beta: Float) -> V {
        let k = Constants(0, alpha, beta)
        switch kind {
        case 1: return Relu.apply(v, k)
        case 2: return LeakyRelu.apply(v, k)
        case 3: return Clip.apply(v, k)
        case 4: return Sigmoid.apply(v, k)
        case 5: return HardSigmoid.apply(v, k)
        case 6: return HardSwish.apply(v, k)
        case 7: return SiLU.apply(v, k)
        default: return v
        }
    }

    /// Per-call constants of an operation, broadcast once: a bias or scalar, and two parameters.
    struct Constants {
        var shift: V, alpha: V, beta: V
        init(_ shift: Float = 0, _ alpha: Float = 0, _ beta: Float = 0) {
            self.shift = V(repeating: shift)
            self.alpha = V(repeating: alpha)
            self.beta = V(repeating: beta)
        }
    }

    /// One operation on vectors, as a type: the loops below are specialised per operation, so
    /// the operation inlines into them (closures did not reliably).
    protocol Unary { static func apply(_ x: V, _ k: Constants) -> V }
    protocol Binary { static func apply(_ x: V, _ y: V, _ k: Constants) -> V }

    enum Shift: Unary { @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { x + k.shift } }
    enum ShiftedActivation<F: Unary>: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { F.apply(x + k.shift, k) }
    }
    enum SumActivation<F: Unary>: Binary {
        @inline(__always) static func apply(_ x: V, _ y: V, _ k: Constants) -> V { F.apply(x + y, k) }
    }
    enum Identity: Unary { @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { x } }
    enum Relu: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { var v = x; v.replace(with: V(), where: v .< V()); return v }
    }
    enum LeakyRelu: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { var v = x; v.replace(with: v * k.alpha, where: v .< V()); return v }
    }
    enum Clip: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V {
            var v = x
            v.replace(with: k.alpha, where: v .< k.alpha)
            v.replace(with: k.beta, where: v .> k.beta)
            return v
        }
    }
    enum Sigmoid: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { V(repeating: 1) / (V(repeating: 1) + exp(-x)) }
    }
    enum HardSigmoid: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V {
            var v = x * k.alpha + k.beta
            v.replace(with: V(), where: v .< V())
            v.replace(with: V(repeating: 1), where: v .> V(repeating: 1))
            return v
        }
    }
    enum HardSwish: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V {
            var t = x * V(repeating: 1.0 / 6.0) + V(repeating: 0.5)
            t.replace(with: V(), where: t .< V())
            t.replace(with: V(repeating: 1), where: t .> V(repeating: 1))
            return x * t
        }
    }
    enum SiLU: Unary {
        @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { x / (V(repeating: 1) + exp(-x)) }
    }
    enum AddOp: Binary { @inline(__always) static func apply(_ x: V, _ y: V, _ k: Constants) -> V { x + y } }
    enum SubOp: Binary { @inline(__always) static func apply(_ x: V, _ y: V, _ k: Constants) -> V { x - y } }
    enum MulOp: Binary { @inline(__always) static func apply(_ x: V, _ y: V, _ k: Constants) -> V { x * y } }
    enum DivOp: Binary { @inline(__always) static func apply(_ x: V, _ y: V, _ k: Constants) -> V { x / y } }
    /// x op s, and s op x (`Reversed`), with s in `shift`.
    enum WithScalar<F: Binary>: Unary { @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { F.apply(x, k.shift, k) } }
    enum ScalarWith<F: Binary>: Unary { @inline(__always) static func apply(_ x: V, _ k: Constants) -> V { F.apply(k.shift, x, k) } }

    @inline(never)
    static func map1<F: Unary>(_ f: F.Type, _ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int,
                               _ k: Constants) {
        var i = 0
        while i + 64 <= count {
            let a = load(source + i), b = load(source + i + 16), c = load(source + i + 32), d = load(source + i + 48)
            store(target + i, F.apply(a, k)); store(target + i + 16, F.apply(b, k))
            store(target + i + 32, F.apply(c, k)); store(target + i + 48, F.apply(d, k))
            i += 64
        }
        while i + 16 <= count { store(target + i, F.apply(load(source + i), k)); i += 16 }
        if i < count { storePartial(target + i, F.apply(loadPartial(source + i, count - i), k), count - i) }
    }

    @inline(never)
    static func map2<F: Binary>(_ f: F.Type, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>,
                                _ count: Int, _ k: Constants) {
        var i = 0
        while i + 64 <= count {
            let a0 = load(a + i), a1 = load(a + i + 16), a2 = load(a + i + 32), a3 = load(a + i + 48)
            let b0 = load(b + i), b1 = load(b + i + 16), b2 = load(b + i + 32), b3 = load(b + i + 48)
            store(target + i, F.apply(a0, b0, k)); store(target + i + 16, F.apply(a1, b1, k))
            store(target + i + 32, F.apply(a2, b2, k)); store(target + i + 48, F.apply(a3, b3, k))
            i += 64
        }
        while i + 16 <= count { store(target + i, F.apply(load(a + i), load(b + i), k)); i += 16 }
        if i < count { storePartial(target + i, F.apply(loadPartial(a + i, count - i), loadPartial(b + i, count - i), k), count - i) }
    }

    // MARK: entry points

    /// The sum (or the maximum, when `isMax`) of `count` floats, in four vector accumulators.
    public static func reduce(_ source: UnsafePointer<Float>, count: Int, isMax: Bool) -> Float {
        let start = isMax ? V(repeating: -.infinity) : V()
        var a0 = start, a1 = start, a2 = start, a3 = start
        var i = 0
        @inline(__always) func combine(_ a: inout V, _ v: V) {
            if isMax { a.replace(with: v, where: v .> a) } else { a += v }
        }
        while i + 64 <= count {
            combine(&a0, load(source + i)); combine(&a1, load(source + i + 16))
            combine(&a2, load(source + i + 32)); combine(&a3, load(source + i + 48))
            i += 64
        }
        while i + 16 <= count { combine(&a0, load(source + i)); i += 16 }
        combine(&a0, a1); combine(&a2, a3); combine(&a0, a2)
        var result = isMax ? a0.max() : a0.sum()
        while i < count { result = isMax ? Swift.max(result, source[i]) : result + source[i]; i += 1 }
        return result
    }

    /// target[i] = f(source[i] + bias) for i < count.
    public static func activate(_ kind: Int, alpha: Float, beta: Float, _ source: UnsafePointer<Float>,
                                _ target: UnsafeMutablePointer<Float>, count: Int, bias: Float = 0) {
        let k = Constants(bias, alpha, beta)
        switch kind {
        case 1: map1(ShiftedActivation<Relu>.self, source, target, count, k)
        case 2: map1(ShiftedActivation<LeakyRelu>.self, source, target, count, k)
        case 3: map1(ShiftedActivation<Clip>.self, source, target, count, k)
        case 4: map1(ShiftedActivation<Sigmoid>.self, source, target, count, k)
        case 5: map1(ShiftedActivation<HardSigmoid>.self, source, target, count, k)
        case 6: map1(ShiftedActivation<HardSwish>.self, source, target, count, k)
        case 7: map1(ShiftedActivation<SiLU>.self, source, target, count, k)
        default: map1(Shift.self, source, target, count, k)
        }
    }

    /// target[i] = f(a[i] + b[i]) for i < count (a residual added before the activation).
    public static func addActivate(_ kind: Int, alpha: Float, beta: Float, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                   _ target: UnsafeMutablePointer<Float>, count: Int) {
        let k = Constants(0, alpha, beta)
        switch kind {
        case 1: map2(SumActivation<Relu>.self, a, b, target, count, k)
        case 2: map2(SumActivation<LeakyRelu>.self, a, b, target, count, k)
        case 3: map2(SumActivation<Clip>.self, a, b, target, count, k)
        case 4: map2(SumActivation<Sigmoid>.self, a, b, target, count, k)
        case 5: map2(SumActivation<HardSigmoid>.self, a, b, target, count, k)
        case 6: map2(SumActivation<HardSwish>.self, a, b, target, count, k)
        case 7: map2(SumActivation<SiLU>.self, a, b, target, count, k)
        default: map2(AddOp.self, a, b, target, count, k)
        }
    }

    /// target[i] = a[i] op b[i] for i < count.
    public static func binary(_ op: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>,
                              count: Int) {
        let k = Constants()
        switch op {
        case 0: map2(AddOp.self, a, b, target, count, k)
        case 1: map2(SubOp.self, a, b, target, count, k)
        case 2: map2(MulOp.self, a, b, target, count, k)
        default: map2(DivOp.self, a, b, target, count, k)
        }
    }

    /// target[i] = a[i] op s (or s op a[i] when `scalarFirst`) for i < count.
    public static func binaryScalar(_ op: Int, _ a: UnsafePointer<Float>, _ scalar: Float, scalarFirst: Bool,
                                    _ target: UnsafeMutablePointer<Float>, count: Int) {
        let k = Constants(scalar)
        switch (op, scalarFirst) {
        case (0, _): map1(WithScalar<AddOp>.self, a, target, count, k)
        case (1, false): map1(WithScalar<SubOp>.self, a, target, count, k)
        case (1, true): map1(ScalarWith<SubOp>.self, a, target, count, k)
        case (2, _): map1(WithScalar<MulOp>.self, a, target, count, k)
        case (3, false): map1(WithScalar<DivOp>.self, a, target, count, k)
        default: map1(ScalarWith<DivOp>.self, a, target, count, k)
        }
    }
}
