import AVX512Kernels
import Testing
@testable import Engine

/// The AVX-512 GEMM against a plain triple loop, over shapes that exercise partial row blocks,
/// partial column panels, several K chunks, bias and clamping.
@Suite(.enabled(if: PackedConvolution.cpuSupported, "the CPU has no AVX-512"))
struct PackedGemmTests {
    @Test(arguments: [(1, 1, 1), (8, 32, 5), (13, 45, 27), (64, 289, 300), (20, 70, 520), (192, 96, 1344)])
    func matchesNaive(_ shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var generator = SplitMix(seed: UInt64(m * 1_000_003 + n * 1009 + k))
        let a = (0..<m * k).map { _ in generator.nextFloat() }
        let ldb = n + 3
        let b = (0..<k * ldb).map { _ in generator.nextFloat() }
        let bias = (0..<m).map { _ in generator.nextFloat() }
        let (low, high): (Float, Float) = (-0.5, 2)
        let blocks = (m + 7) / 8
        var packed = [Float](repeating: .nan, count: blocks * 8 * k)
        var edge = [Float](repeating: .nan, count: (k + 8) * 32)
        let ldc = n + 5
        var c = [Float](repeating: .nan, count: m * ldc)
        a.withUnsafeBufferPointer { pa in packed.withUnsafeMutableBufferPointer { PackedGemm.packA(pa.baseAddress!, lda: k, m: m, k: k, into: $0.baseAddress!) } }
        packed.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                bias.withUnsafeBufferPointer { pbias in
                    edge.withUnsafeMutableBufferPointer { pe in
                        c.withUnsafeMutableBufferPointer { pc in
                            PackedGemm.multiply(packedA: pa.baseAddress!, m: m, k: k, rowBlocks: 0..<blocks, b: pb.baseAddress!, ldb: ldb, n: n,
                                                edge: pe.baseAddress!, c: pc.baseAddress!, ldc: ldc, bias: pbias.baseAddress!, low: low, high: high)
                        }
                    }
                }
            }
        }
        var worst: Float = 0
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = 0
                for p in 0..<k { sum += Double(a[i * k + p]) * Double(b[p * ldb + j]) }
                let expected = min(max(Float(sum) + bias[i], low), high)
                worst = max(worst, abs(c[i * ldc + j] - expected) / (1 + abs(expected)))
            }
            // Padding columns past n are never written.
            for j in n..<ldc { #expect(c[i * ldc + j].isNaN, "column \(j) of row \(i) was written") }
        }
        #expect(worst < 1e-4, "relative error \(worst) for m=\(m) n=\(n) k=\(k)")
    }
}

/// A small deterministic generator of floats in [-1, 1).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
}
