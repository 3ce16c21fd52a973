/// A single-precision GEMM for convolutions, compiled for AVX-512 (this target alone is built
/// with `-target-cpu skylake-avx512`). Call it only when `cls_cpu_has_avx512()` is true.
///
/// Layouts (f32, all 64-byte aligned):
/// - packed A (weights, packed once at load): `rowBlocks = ceil(M / 8)` blocks, each `K x 8`
///   floats: element (m, k) at `((m / 8) * K + k) * 8 + m % 8`; rows past M are zero.
/// - B: row-major (K, N) with any row stride (an im2col tile, or the input itself for 1x1
///   convolutions); read 32 columns at a time.
/// - C: row-major, row stride `ldc`.

public enum PackedGemm {
    public static let rowBlock = 8
    public static let columnPanel = 32

    /// Packs A[M, K] (row stride `lda`) into `packed`, which holds `ceil(M/8) * K * 8` floats.
    public static func packA(_ a: UnsafePointer<Float>, lda: Int, m: Int, k: Int, into packed: UnsafeMutablePointer<Float>) {
        let blocks = (m + rowBlock - 1) / rowBlock
        for block in 0..<blocks {
            let base = packed + block * k * rowBlock
            for p in 0..<k {
                for r in 0..<rowBlock {
                    let row = block * rowBlock + r
                    base[p * rowBlock + r] = row < m ? a[row * lda + p] : 0
                }
            }
        }
    }

    /// Depth of one pass over K: a 32-column panel of B (kc x 32) stays in L1 and the weights'
    /// chunk (M x kc) in L2 while all row blocks and panels use them.
    public static let depthChunk = 256

    /// C[rows, 0..<n] = clamp(A x B + bias[row], low, high) for the row blocks in `rowBlocks`.
    /// B is row-major (K, n) with row stride `ldb` (in floats, at least n). `bias` may be nil.
    /// `edge` is scratch for `k * 32 + 8 * 32` floats: the last, partial panel of B is copied
    /// there with zero padding (so no load reads past a row's n columns), followed by a tile
    /// buffer for partial C tiles.
    public static func multiply(packedA: UnsafePointer<Float>, m: Int, k: Int, rowBlocks: Range<Int>,
                                b: UnsafePointer<Float>, ldb: Int, n: Int, edge: UnsafeMutablePointer<Float>,
                                c: UnsafeMutablePointer<Float>, ldc: Int,
                                bias: UnsafePointer<Float>?, low: Float, high: Float) {
        let fullPanels = n / columnPanel, rest = n - fullPanels * columnPanel
        if rest > 0 {
            let source = b + fullPanels * columnPanel
            for p in 0..<k {
                for i in 0..<columnPanel { edge[p * columnPanel + i] = i < rest ? source[p * ldb + i] : 0 }
            }
        }
        let tile = edge + k * columnPanel
        var k0 = 0
        while k0 < k {
            let depth = min(depthChunk, k - k0)
            let first = k0 == 0, last = k0 + depth == k
            let (lo, hi) = last ? (low, high) : (-Float.infinity, Float.infinity)
            let bChunk = b + k0 * ldb
            // Panel outer, row blocks inner: the panel's chunk (depth x 32) stays in L1 while the
            // weights' chunk streams from L2.
            let fullBlocks = rowBlocks.lowerBound..<min(rowBlocks.upperBound, m / rowBlock)
            for panel in 0..<fullPanels {
                for block in fullBlocks {
                    kernel8x32(packedA + (block * k + k0) * rowBlock, bChunk + panel * columnPanel, ldb, depth,
                               c + block * rowBlock * ldc + panel * columnPanel, ldc,
                               accumulate: !first, last ? bias.map { $0 + block * rowBlock } : nil, lo, hi)
                }
            }
            for block in rowBlocks {
                let a = packedA + (block * k + k0) * rowBlock
                let rows = min(rowBlock, m - block * rowBlock)
                let rowBias = last ? bias.map { $0 + block * rowBlock } : nil
                let cBlock = c + block * rowBlock * ldc
                // Partial tiles go through `tile`: copy in what C holds, compute, copy back.
                let partialPanels = rows == rowBlock ? (fullPanels..<fullPanels + (rest > 0 ? 1 : 0)) : (0..<fullPanels + (rest > 0 ? 1 : 0))
                for panel in partialPanels {
                    let columns = min(columnPanel, n - panel * columnPanel)
                    let source = panel < fullPanels ? bChunk + panel * columnPanel : UnsafePointer(edge) + k0 * columnPanel
                    let sourceStride = panel < fullPanels ? ldb : columnPanel
                    let cTile = cBlock + panel * columnPanel
                    for r in 0..<rowBlock {
                        for i in 0..<columnPanel { tile[r * columnPanel + i] = !first && r < rows && i < columns ? cTile[r * ldc + i] : 0 }
                    }
                    kernel8x32(a, source, sourceStride, depth, tile, columnPanel, accumulate: !first, rowBias, lo, hi)
                    for r in 0..<rows {
                        for i in 0..<columns { cTile[r * ldc + i] = tile[r * columnPanel + i] }
                    }
                }
            }
            k0 += depth
        }
    }

    /// The full 8 x 32 register tile: 16 accumulators of 16 floats, K steps of 2 loads +
    /// 8 broadcasts + 16 FMAs. Starts from C when `accumulate`, else from zero; stores
    /// clamp(acc + bias, low, high).
    @inline(__always)
    static func kernel8x32(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ ldb: Int, _ k: Int,
                           _ c: UnsafeMutablePointer<Float>, _ ldc: Int, accumulate: Bool,
                           _ bias: UnsafePointer<Float>?, _ low: Float, _ high: Float) {
        typealias V = SIMD16<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
        var c40 = V(), c41 = V(), c50 = V(), c51 = V(), c60 = V(), c61 = V(), c70 = V(), c71 = V()
        if accumulate {
            let cv = UnsafeRawPointer(c)
            @inline(__always) func load(_ row: Int, _ half: Int) -> V { cv.loadUnaligned(fromByteOffset: (row * ldc + half * 16) * 4, as: V.self) }
            c00 = load(0, 0); c01 = load(0, 1); c10 = load(1, 0); c11 = load(1, 1)
            c20 = load(2, 0); c21 = load(2, 1); c30 = load(3, 0); c31 = load(3, 1)
            c40 = load(4, 0); c41 = load(4, 1); c50 = load(5, 0); c51 = load(5, 1)
            c60 = load(6, 0); c61 = load(6, 1); c70 = load(7, 0); c71 = load(7, 1)
        }
        let bv = UnsafeRawPointer(b)
        var ap = a
        for p in 0..<k {
            let b0 = bv.loadUnaligned(fromByteOffset: p * ldb * 4, as: V.self)
            let b1 = bv.loadUnaligned(fromByteOffset: p * ldb * 4 + 64, as: V.self)
            var s = V(repeating: ap[0]); c00.addProduct(s, b0); c01.addProduct(s, b1)
            s = V(repeating: ap[1]); c10.addProduct(s, b0); c11.addProduct(s, b1)
            s = V(repeating: ap[2]); c20.addProduct(s, b0); c21.addProduct(s, b1)
            s = V(repeating: ap[3]); c30.addProduct(s, b0); c31.addProduct(s, b1)
            s = V(repeating: ap[4]); c40.addProduct(s, b0); c41.addProduct(s, b1)
            s = V(repeating: ap[5]); c50.addProduct(s, b0); c51.addProduct(s, b1)
            s = V(repeating: ap[6]); c60.addProduct(s, b0); c61.addProduct(s, b1)
            s = V(repeating: ap[7]); c70.addProduct(s, b0); c71.addProduct(s, b1)
            ap += 8
        }
        let lowV = V(repeating: low), highV = V(repeating: high)
        storeRow(c, ldc, 0, c00, c01, bias, lowV, highV); storeRow(c, ldc, 1, c10, c11, bias, lowV, highV)
        storeRow(c, ldc, 2, c20, c21, bias, lowV, highV); storeRow(c, ldc, 3, c30, c31, bias, lowV, highV)
        storeRow(c, ldc, 4, c40, c41, bias, lowV, highV); storeRow(c, ldc, 5, c50, c51, bias, lowV, highV)
        storeRow(c, ldc, 6, c60, c61, bias, lowV, highV); storeRow(c, ldc, 7, c70, c71, bias, lowV, highV)
    }

    @inline(__always)
    static func storeRow(_ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ row: Int, _ x0: SIMD16<Float>, _ x1: SIMD16<Float>,
                         _ bias: UnsafePointer<Float>?, _ low: SIMD16<Float>, _ high: SIMD16<Float>) {
        let shift = SIMD16<Float>(repeating: bias?[row] ?? 0)
        let destination = UnsafeMutableRawPointer(c + row * ldc)
        destination.storeBytes(of: clamp(x0 + shift, low, high), as: SIMD16<Float>.self)
        destination.storeBytes(of: clamp(x1 + shift, low, high), toByteOffset: 64, as: SIMD16<Float>.self)
    }

    /// Written with masked moves: the standard library's `clamped` is not inlined here.
    @inline(__always)
    static func clamp(_ x: SIMD16<Float>, _ low: SIMD16<Float>, _ high: SIMD16<Float>) -> SIMD16<Float> {
        var y = x
        y.replace(with: low, where: y .< low)
        y.replace(with: high, where: y .> high)
        return y
    }
}
