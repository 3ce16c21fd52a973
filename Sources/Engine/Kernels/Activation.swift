import Glibc

/// A pointwise float function, applied standalone (Relu, Sigmoid, ...) or fused into the
/// epilogue of Conv and Gemm.
enum Activation: Sendable, Equatable {
    case identity
    case relu
    case leakyRelu(alpha: Float)
    case clip(low: Float, high: Float)
    case sigmoid
    case tanh
    case hardSigmoid(alpha: Float, beta: Float)
    case hardSwish
    /// x * sigmoid(x) (SiLU, Swish): a Sigmoid and a Mul in ONNX graphs.
    case silu

    init?(kind: String, alpha: Float, beta: Float) {
        switch kind {
        case "Relu": self = .relu
        case "LeakyRelu": self = .leakyRelu(alpha: alpha)
        case "Clip": self = .clip(low: alpha, high: beta)
        case "Sigmoid": self = .sigmoid
        case "Tanh": self = .tanh
        case "HardSigmoid": self = .hardSigmoid(alpha: alpha, beta: beta)
        case "HardSwish": self = .hardSwish
        case "SiLU": self = .silu
        default: return nil
        }
    }

    /// Bounds a kernel can apply as results leave its registers (identity, Relu and Clip are
    /// clamps); `isClamp` false means the function must run afterwards.
    var clampBounds: (Float, Float) {
        switch self {
        case .relu: return (0, .infinity)
        case .clip(let low, let high): return (low, high)
        default: return (-.infinity, .infinity)
        }
    }
    var isClamp: Bool {
        switch self {
        case .identity, .relu, .clip: return true
        default: return false
        }
    }

    /// The function's code for the vector kernels (`AVX512Kernels.Elementwise`); nil for Tanh,
    /// which has no vector form.
    var vectorCode: (kind: Int, alpha: Float, beta: Float)? {
        switch self {
        case .identity: return (0, 0, 0)
        case .relu: return (1, 0, 0)
        case .leakyRelu(let alpha): return (2, alpha, 0)
        case .clip(let low, let high): return (3, low, high)
        case .sigmoid: return (4, 0, 0)
        case .hardSigmoid(let alpha, let beta): return (5, alpha, beta)
        case .hardSwish: return (6, 0, 0)
        case .silu: return (7, 0, 0)
        case .tanh: return nil
        }
    }

    /// Whether the vector kernels run activations (the CPU has AVX-512 or AVX2).
    static let vectorized = VectorISA.detected != nil

    /// Applies the function to `count` floats from `source` into `destination` (may be the same buffer).
    @inline(__always)
    func apply(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        if self == .identity {
            if UnsafePointer(destination) != source { destination.update(from: source, count: count) }
            return
        }
        if Self.vectorized, let code = vectorCode {
            VectorKernels.activate(code, source, destination, count: count)
            return
        }
        applyScalar(source, destination, count: count)
    }

    /// `destination[i] = f(source[i] + residual[i])`.
    func applyWithResidual(_ source: UnsafePointer<Float>, _ residual: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>,
                           count: Int) {
        if Self.vectorized, let code = vectorCode {
            VectorKernels.addActivate(code, source, residual, destination, count: count)
            return
        }
        for i in 0..<count { destination[i] = source[i] + residual[i] }
        applyScalar(destination, destination, count: count)
    }

    /// The portable loops (no vector kernels).
    func applyScalar(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .identity:
            if UnsafePointer(destination) != source { destination.update(from: source, count: count) }
        case .relu:
            for i in 0..<count { destination[i] = max(source[i], 0) }
        case .leakyRelu(let alpha):
            for i in 0..<count { let x = source[i]; destination[i] = x < 0 ? x * alpha : x }
        case .clip(let low, let high):
            for i in 0..<count { destination[i] = min(max(source[i], low), high) }
        case .sigmoid:
            for i in 0..<count { destination[i] = 1 / (1 + expf(-source[i])) }
        case .tanh:
            for i in 0..<count { destination[i] = tanhf(source[i]) }
        case .hardSigmoid(let alpha, let beta):
            for i in 0..<count { destination[i] = min(max(alpha * source[i] + beta, 0), 1) }
        case .hardSwish:
            for i in 0..<count { let x = source[i]; destination[i] = x * min(max(x / 6 + 0.5, 0), 1) }
        case .silu:
            for i in 0..<count { let x = source[i]; destination[i] = x / (1 + expf(-x)) }
        }
    }

    /// Adds `bias` to each of `count` floats in place, then applies the function.
    @inline(__always)
    func applyWithBias(_ data: UnsafeMutablePointer<Float>, count: Int, bias: Float) {
        switch self {
        case .identity:
            if bias != 0 { for i in 0..<count { data[i] += bias } }
        case .relu:
            for i in 0..<count { data[i] = max(data[i] + bias, 0) }
        case .clip(let low, let high):
            for i in 0..<count { data[i] = min(max(data[i] + bias, low), high) }
        default:
            if Self.vectorized, let code = vectorCode {
                VectorKernels.activate(code, data, data, count: count, bias: bias)
                return
            }
            if bias != 0 { for i in 0..<count { data[i] += bias } }
            apply(data, data, count: count)
        }
    }
}
