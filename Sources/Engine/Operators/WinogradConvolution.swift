/// 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray,
/// "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 output tile is
/// `A^T [U ⊙ V] A` with `U = G g G^T` (weights, transformed at load) and `V = B^T d B`
/// (the tile's 4x4 input window), so the multiply work is 16 (M x C) x (C x tiles) GEMMs,
/// 2.25x fewer multiply-adds than the direct convolution.
///
/// x: (N, C, H, W), b: (M) optional; y: (N, M, outH, outW), f32. Per image: the input is
/// copied into a zero-bordered source that covers every tile's window (worker 0's scratch,
/// read by all workers; with at least as many images as workers, each worker takes whole
/// images into its own source instead); then bands of tile rows are work items, each
/// transformed into the worker's V (16 x C x tiles), multiplied by OpenBLAS into its M
/// (16 x M x tiles) and transformed back into the output with bias and activation. When one
/// image is split across workers and its tiles form a single band, the workers split the
/// input channels (pad and transform into worker 0's V), then the output channels (GEMM rows
/// into their own M, and the output transform).
/// Transforms run on 8 tiles at a time (one tile row segment) in vectors (no `addProduct`:
/// this target is built without FMA, where it would call `fmaf` per lane).
struct WinogradConvKernel: Kernel {
    let plan: WinogradPlan
    let batch: Int
    let hasBias: Bool
    let activation: Activation

    var scratchBytes: Int { plan.scratchFloats * MemoryLayout<Float>.size }

    func run(_ io: KernelIO) {
        let x = io.input(0, Float.self), y = io.output(0, Float.self)
        let bias = hasBias ? io.input(2, Float.self) : nil
        let g = plan.geometry
        if batch >= io.width && io.width > 1 {
            // Whole images per worker, each padded into the worker's own source area.
            io.parallelItems(batch) { image, worker in
                let scratch = io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self)
                let source = scratch + plan.bandFloats
                plan.pad(x + image * g.channels * g.inputPlane, into: source, channels: 0..<g.channels)
                for band in 0..<plan.minimumBands {
                    compute(band: band, of: plan.minimumBands, source: UnsafePointer(source), v: scratch, m: scratch + plan.vFloats,
                            bias: bias, y: y + image * plan.outChannels * g.outputPlane)
                }
            }
            return
        }
        let source = io.scratch!.assumingMemoryBound(to: Float.self) + plan.bandFloats
        if io.width > 1 && plan.minimumBands == 1 {
            // Every tile of the image in one band: split the output channels instead of the
            // tile rows (a handful of tile rows splits unevenly, and each band would read all
            // of U). Each worker pads and transforms its share of the input channels into worker
            // 0's V, then multiplies and transforms back its share of the output channels.
            let v = io.scratch!.assumingMemoryBound(to: Float.self)
            for image in 0..<batch {
                let xi = x + image * g.channels * g.inputPlane
                io.parallelRanges(g.channels) { channels, _ in
                    plan.pad(xi, into: source, channels: channels)
                    plan.transformInput(UnsafePointer(source), rows: 0..<plan.tilesH, channels: channels, into: v)
                }
                let yi = y + image * plan.outChannels * g.outputPlane
                io.parallelRanges(plan.outChannels) { outChannels, worker in
                    let m = io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self) + plan.vFloats
                    multiply(UnsafePointer(v), tiles: plan.tilesH * plan.tilesW, outChannels: outChannels, into: m)
                    plan.transformOutput(UnsafePointer(m), rows: 0..<plan.tilesH, outChannels: outChannels, bias: bias,
                                         activation: activation, into: yi)
                }
            }
            return
        }
        for image in 0..<batch {
            let xi = x + image * g.channels * g.inputPlane
            io.parallelRanges(g.channels) { channels, _ in plan.pad(xi, into: source, channels: channels) }
            let yi = y + image * plan.outChannels * g.outputPlane
            let bands = plan.bands(workers: io.width)
            io.parallelItems(bands) { band, worker in
                let scratch = io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self)
                compute(band: band, of: bands, source: UnsafePointer(source), v: scratch, m: scratch + plan.vFloats, bias: bias, y: yi)
            }
        }
    }

    private func compute(band: Int, of bands: Int, source: UnsafePointer<Float>, v: UnsafeMutablePointer<Float>,
                         m: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let g = plan.geometry
        let firstRow = band * plan.tilesH / bands, endRow = (band + 1) * plan.tilesH / bands
        guard endRow > firstRow else { return }
        let tiles = (endRow - firstRow) * plan.tilesW
        plan.transformInput(source, rows: firstRow..<endRow, channels: 0..<g.channels, into: v)
        multiply(UnsafePointer(v), tiles: tiles, outChannels: 0..<plan.outChannels, into: m)
        plan.transformOutput(UnsafePointer(m), rows: firstRow..<endRow, outChannels: 0..<plan.outChannels, bias: bias,
                             activation: activation, into: y)
    }

    /// M[ξ][o][t] = sum over c of U[ξ][o][c] V[ξ][c][t] for output channels `outChannels`
    /// and the first `tiles` tiles (rows of V and M at stride `ldTiles`).
    private func multiply(_ v: UnsafePointer<Float>, tiles: Int, outChannels: Range<Int>, into m: UnsafeMutablePointer<Float>) {
        guard !outChannels.isEmpty else { return }
        let u = plan.weights.pointer(as: Float.self)
        let (allOut, channels, ld) = (plan.outChannels, plan.geometry.channels, plan.ldTiles)
        let first = outChannels.lowerBound
        for xi in 0..<16 {
            sgemm(m: outChannels.count, n: tiles, k: channels, a: u + (xi * allOut + first) * channels, lda: channels,
                  b: v + xi * channels * ld, ldb: ld, beta: 0, c: m + (xi * allOut + first) * ld, ldc: ld)
        }
    }
}

/// What the Winograd convolution fixes at load: the transformed weights, the tiling and the
/// split into bands. Shared by the kernels of every batch size.
final class WinogradPlan: @unchecked Sendable {
    typealias V8 = SIMD8<Float>
    typealias V16 = SIMD16<Float>

    let geometry: ConvGeometry
    let outChannels: Int
    /// U: 16 row-major (M, C) matrices, index ξ = 4 * i + j of the 4x4 transformed filter.
    let weights: HostTensor
    /// 2x2 output tiles per column and per row.
    let tilesH: Int, tilesW: Int
    /// Tile rows are split into at least this many bands (work items) of nearly equal
    /// height: enough that none has more than `bandTileTarget` tiles.
    let minimumBands: Int
    /// Row stride (in tiles) of V and M: a band's tile count plus room for the 8-wide
    /// stores that run past a tile row's end.
    let ldTiles: Int
    /// The zero-bordered source: rows 2 * tilesH + 2 (each tile reads 4), columns enough for
    /// 8-tile groups reading 18 columns.
    let sourceHeight: Int, sourceWidth: Int
    var sourcePlane: Int { sourceHeight * sourceWidth }
    var vFloats: Int { 16 * geometry.channels * ldTiles }
    var mFloats: Int { 16 * outChannels * ldTiles }
    /// Per worker: V and M of one band, then a source (worker 0's is shared when workers split
    /// one image).
    var bandFloats: Int { vFloats + mFloats }
    var scratchFloats: Int { bandFloats + geometry.channels * sourcePlane }

    /// Most tiles a band should have: its V and M stay within a few MiB (L3), and the GEMMs
    /// are wide enough for OpenBLAS.
    static let bandTileTarget = 512

    /// Whether the kernel handles `g` with `outChannels` and pays off: ungrouped 2-D 3x3,
    /// stride 1, no dilation; an output plane of at least `minimumPlane` pixels and at least
    /// 32 input and 64 output channels (InceptionV3 on AVX2: 32 -> 32 at 147x147 ran 14%
    /// slower than the direct tile, 80 -> 192 at 71x71 35% faster, 64 -> 96 at 35x35 18%
    /// faster; on 8x8 planes the whole model was 4% slower).
    static func supports(_ g: ConvGeometry, outChannels: Int, group: Int) -> Bool {
        group == 1 && g.isPlanar && g.kernelH == 3 && g.kernelW == 3 && g.strideH == 1 && g.strideW == 1
            && g.dilationH == 1 && g.dilationW == 1 && g.outputPlane >= minimumPlane && g.channels >= 32 && outChannels >= 64
    }

    /// Smallest output plane: 36 full tiles (12 x 12). Below, the transformed weights (16/9 of
    /// the direct ones) serve too few tiles: on Zen 4, 256 -> 256 at 14x14 ran 13% (batch 1)
    /// to 20% (batch 8) faster than the direct tile, 512 -> 512 at 7x7 (16 tiles, a quarter of
    /// their outputs past the edge) 45% slower.
    static let minimumPlane = 144

    /// Bands of one image for `workers` threads: the minimum (wider GEMMs, one weight
    /// packing each) rounded up to a multiple of the workers, so that each gets the same
    /// number (3 bands on 2 workers left one idle for a third of the layer), where the tile
    /// rows allow.
    func bands(workers: Int) -> Int {
        min(tilesH, (minimumBands + workers - 1) / workers * workers)
    }

    /// `weights`: (M, C, 3, 3) f32.
    init(geometry g: ConvGeometry, weights w: HostTensor) {
        geometry = g
        outChannels = w.shape[0]
        tilesH = (g.outH + 1) / 2
        tilesW = (g.outW + 1) / 2
        minimumBands = min(tilesH, max(1, (tilesH * tilesW + Self.bandTileTarget - 1) / Self.bandTileTarget))
        ldTiles = (tilesH + minimumBands - 1) / minimumBands * tilesW + 8
        sourceHeight = 2 * tilesH + 2
        sourceWidth = 2 * ((tilesW + 7) / 8 * 8) + 2

        // U = G g G^T, G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
        let (m, c) = (outChannels, g.channels)
        let u = HostTensor(dtype: .float32, shape: [16 * m * c])
        let source = w.pointer(as: Float.self), target = u.pointer(as: Float.self)
        @inline(__always) func expand(_ a: Float, _ b: Float, _ e: Float) -> (Float, Float, Float, Float) {
            (a, (a + b + e) * 0.5, (a - b + e) * 0.5, e)
        }
        for o in 0..<m {
            for i in 0..<c {
                let f = source + (o * c + i) * 9
                // G g: 4 rows of 3, expanded column-wise; then each row times G^T.
                let c0 = expand(f[0], f[3], f[6]), c1 = expand(f[1], f[4], f[7]), c2 = expand(f[2], f[5], f[8])
                let rows = [(c0.0, c1.0, c2.0), (c0.1, c1.1, c2.1), (c0.2, c1.2, c2.2), (c0.3, c1.3, c2.3)]
                for (r, row) in rows.enumerated() {
                    let t = expand(row.0, row.1, row.2)
                    for (col, value) in [t.0, t.1, t.2, t.3].enumerated() {
                        target[((4 * r + col) * m + o) * c + i] = value
                    }
                }
            }
        }
        weights = u
    }

    /// Copies channels `channels` of one image into the source: input row r, column q at
    /// source row r + padTop, column q + padLeft; zero elsewhere.
    func pad(_ x: UnsafePointer<Float>, into buffer: UnsafeMutablePointer<Float>, channels: Range<Int>) {
        geometry.copyZeroBordered(x, into: buffer, sourceHeight: sourceHeight, sourceWidth: sourceWidth, channels: channels)
    }

    @inline(__always) private static func load8(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
    @inline(__always) private static func load16(_ p: UnsafePointer<Float>) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
    @inline(__always) private static func store8(_ p: UnsafeMutablePointer<Float>, _ v: V8) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self)
    }

    /// V[ξ][c][t] = (B^T d B)[ξ] for input channels `channels` and the tiles of tile rows
    /// `rows` (t counts from the band's first tile), B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
    func transformInput(_ source: UnsafePointer<Float>, rows: Range<Int>, channels inputChannels: Range<Int>,
                        into v: UnsafeMutablePointer<Float>) {
        let channels = geometry.channels, ld = ldTiles
        for c in inputChannels {
            let plane = source + c * sourcePlane
            for ty in rows {
                let base = (ty - rows.lowerBound) * tilesW
                var tx = 0
                while tx < tilesW {
                    // d[i][j]: window row i, column j of the 8 tiles tx..tx+7 (columns 2 tx + j).
                    var d = InlineArray<16, V8>(repeating: V8())
                    for i in 0..<4 {
                        let line = plane + (2 * ty + i) * sourceWidth + 2 * tx
                        let a = Self.load16(line), b = Self.load16(line + 2)
                        d[4 * i] = a.evenHalf; d[4 * i + 1] = a.oddHalf
                        d[4 * i + 2] = b.evenHalf; d[4 * i + 3] = b.oddHalf
                    }
                    // Rows: B^T d.
                    var t = InlineArray<16, V8>(repeating: V8())
                    for j in 0..<4 {
                        t[j] = d[j] - d[8 + j]
                        t[4 + j] = d[4 + j] + d[8 + j]
                        t[8 + j] = d[8 + j] - d[4 + j]
                        t[12 + j] = d[4 + j] - d[12 + j]
                    }
                    // Columns: (B^T d) B, stored per ξ.
                    let out = v + c * ld + base + tx
                    let step = channels * ld
                    for i in 0..<4 {
                        let r0 = t[4 * i], r1 = t[4 * i + 1], r2 = t[4 * i + 2], r3 = t[4 * i + 3]
                        Self.store8(out + (4 * i) * step, r0 - r2)
                        Self.store8(out + (4 * i + 1) * step, r1 + r2)
                        Self.store8(out + (4 * i + 2) * step, r2 - r1)
                        Self.store8(out + (4 * i + 3) * step, r1 - r3)
                    }
                    tx += 8
                }
            }
        }
    }

    /// y = A^T M A plus bias, then the activation, for output channels `outChannels` and the
    /// tiles of tile rows `rows`,
    /// A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; outputs past the image edge are dropped.
    func transformOutput(_ m: UnsafePointer<Float>, rows: Range<Int>, outChannels channelRange: Range<Int>, bias: UnsafePointer<Float>?,
                         activation: Activation, into y: UnsafeMutablePointer<Float>) {
        let g = geometry, ld = ldTiles, outW = g.outW, outH = g.outH
        let (low, high) = activation.clampBounds
        let lowV = V16(repeating: low), highV = V16(repeating: high)
        let step = outChannels * ld
        for o in channelRange {
            let shift = bias?[o] ?? 0
            let plane = y + o * g.outputPlane
            for ty in rows {
                let base = (ty - rows.lowerBound) * tilesW
                var tx = 0
                while tx < tilesW {
                    let p = m + o * ld + base + tx
                    var s = InlineArray<8, V8>(repeating: V8())  // A^T M: 2 rows of 4
                    for j in 0..<4 {
                        let m0 = Self.load8(p + j * step), m1 = Self.load8(p + (4 + j) * step)
                        let m2 = Self.load8(p + (8 + j) * step), m3 = Self.load8(p + (12 + j) * step)
                        s[j] = m0 + m1 + m2
                        s[4 + j] = m1 - m2 - m3
                    }
                    for r in 0..<2 where 2 * ty + r < outH {
                        let left = s[4 * r] + s[4 * r + 1] + s[4 * r + 2] + V8(repeating: shift)
                        let right = s[4 * r + 1] - s[4 * r + 2] - s[4 * r + 3] + V8(repeating: shift)
                        // Interleaved: output columns 2 tx ..< 2 tx + 16.
                        var line = V16(left[0], right[0], left[1], right[1], left[2], right[2], left[3], right[3],
                                       left[4], right[4], left[5], right[5], left[6], right[6], left[7], right[7])
                        line.replace(with: lowV, where: line .< lowV)
                        line.replace(with: highV, where: line .> highV)
                        let target = plane + (2 * ty + r) * outW + 2 * tx
                        let count = min(16, outW - 2 * tx)
                        if count == 16 {
                            UnsafeMutableRawPointer(target).storeBytes(of: line, as: V16.self)
                        } else {
                            for k in 0..<count { target[k] = line[k] }
                        }
                    }
                    tx += 8
                }
                if !activation.isClamp {
                    for r in 0..<2 where 2 * ty + r < outH {
                        let line = plane + (2 * ty + r) * outW
                        activation.apply(line, line, count: outW)
                    }
                }
            }
        }
    }
}
