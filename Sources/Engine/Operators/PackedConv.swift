import AVX512Kernels
import CLinuxShims
import Glibc
import Locks

/// Convolution on the engine's own AVX-512 GEMM (`AVX512Kernels.PackedGemm`): weights packed
/// once at load, im2col written straight into the GEMM's packed-B layout in cache-sized
/// column tiles, and bias plus Relu/Clip applied as the result leaves the registers.
enum PackedConvolution {
    static let cpuSupported = VectorISA.detected == .avx512

    /// Columns per im2col tile for a patch of `patch` rows: the tile stays within ~512 KiB
    /// of L2 while every row block of the weights streams over it.
    static func tileColumns(patch: Int) -> Int {
        let panel = PackedGemm.columnPanel
        return max(panel, min(16 * panel, (131_072 / max(patch, 1)) / panel * panel))
    }
}

/// Packed weights shared by the kernels of every batch size's plan (packed once per tensor).
final class PackedWeightsCache: @unchecked Sendable {
    private let lock = Lock()
    private var packed: [ObjectIdentifier: HostTensor] = [:]
    private struct PlanKey: Hashable {
        let weights: ObjectIdentifier
        let kind: ObjectIdentifier
    }
    private var plans: [PlanKey: AnyObject] = [:]

    /// W: (M, C/group, kh, kw) f32 -> per group, `PackedGemm.packA` of that group's (M/group, patch) rows.
    func packed(_ weights: HostTensor, group: Int) -> HostTensor {
        lock.lock()
        defer { lock.unlock() }
        if let hit = packed[ObjectIdentifier(weights)] { return hit }
        let m = weights.shape[0] / group, patch = weights.count / weights.shape[0]
        let blocks = (m + PackedGemm.rowBlock - 1) / PackedGemm.rowBlock
        let perGroup = blocks * patch * PackedGemm.rowBlock
        let result = HostTensor(dtype: .float32, shape: [group * perGroup])
        for g in 0..<group {
            PackedGemm.packA(weights.pointer(as: Float.self) + g * m * patch, lda: patch, m: m, k: patch,
                             into: result.pointer(as: Float.self) + g * perGroup)
        }
        packed[ObjectIdentifier(weights)] = result
        return result
    }

    /// The direct-convolution plan for `weights` (M, C, kh, kw) under `geometry`.
    func directPlan(_ weights: HostTensor, geometry: ConvGeometry) -> DirectConvPlan {
        plan(for: weights) { DirectConvPlan(geometry: geometry, weights: weights) }
    }

    /// The pointwise plan for `weights` (M, C, 1, 1).
    func pointwisePlan(_ weights: HostTensor) -> PointwisePlan {
        plan(for: weights) { PointwisePlan(weights: weights) }
    }

    /// The Winograd plan for `weights` (M, C, 3, 3) under `geometry`.
    func winogradPlan(_ weights: HostTensor, geometry: ConvGeometry) -> WinogradPlan {
        plan(for: weights) { WinogradPlan(geometry: geometry, weights: weights) }
    }

    /// The plan of kind `Plan` for `weights`, made by `make` on first use. A node's geometry is
    /// the same for every batch size, so one plan serves all.
    private func plan<Plan: AnyObject>(for weights: HostTensor, _ make: () -> Plan) -> Plan {
        lock.lock()
        defer { lock.unlock() }
        let key = PlanKey(weights: ObjectIdentifier(weights), kind: ObjectIdentifier(Plan.self))
        if let hit = plans[key] as? Plan { return hit }
        let made = make()
        plans[key] = made
        return made
    }
}

/// x: (N, C, H, W), b: (M) optional; y: (N, M, outH, outW), f32. The weights are `packedWeights`.
/// 1x1 convolutions read the input in place; others build a row-major im2col tile per worker.
struct PackedConvKernel: Kernel {
    let batch: Int
    let group: Int
    let outChannels: Int
    let geometry: ConvGeometry
    let packedWeights: HostTensor
    let hasBias: Bool
    let activation: Activation

    var columns: Int { geometry.outputPlane }
    var patch: Int { geometry.patchSize }
    var groupOut: Int { outChannels / group }
    var rowBlocks: Int { (groupOut + PackedGemm.rowBlock - 1) / PackedGemm.rowBlock }
    var isPointwise: Bool { geometry.isPointwise }
    /// Columns per tile: a multiple of the 32-column panel that keeps the tile near 256 KiB.
    var tile: Int { min(PackedConvolution.tileColumns(patch: patch), (columns + 31) / 32 * 32) }
    /// Row stride of an im2col tile: an odd number of 64-byte lines, so the rows a panel reads
    /// spread over the L1 sets instead of aliasing.
    static func tileStride(_ count: Int) -> Int { (count + 15) / 32 * 32 + 16 }
    var edgeFloats: Int { (patch + PackedGemm.rowBlock) * PackedGemm.columnPanel }
    /// Per worker: the edge panel, then (unless 1x1) one im2col tile.
    var scratchBytes: Int { (edgeFloats + (isPointwise ? 0 : patch * Self.tileStride(tile))) * MemoryLayout<Float>.size }

    func run(_ io: KernelIO) {
        let x = io.input(0, Float.self)
        let bias = hasBias ? io.input(2, Float.self) : nil
        let y = io.output(0, Float.self)
        let width = io.width, units = batch * group
        var tilesPerUnit = (columns + tile - 1) / tile
        if width > 1 && units < 2 * width {
            let shared = isPointwise ? 0 : patch * Self.tileStride(columns)
            if columns < 128 * width && edgeFloats + shared <= width * io.scratchStride / 4 - (width - 1) * edgeFloats {
                for unit in 0..<units { splitRows(io, unit: unit, x, bias, y) }
                return
            }
            while (units * tilesPerUnit) % width != 0 { tilesPerUnit += 1 }
        }
        let step = ((columns + tilesPerUnit - 1) / tilesPerUnit + 31) / 32 * 32
        io.parallelRanges(units * tilesPerUnit) { items, worker in
            let edge = io.scratch(worker: worker)!.assumingMemoryBound(to: Float.self)
            let cols = edge + edgeFloats
            for item in items {
                let unit = item / tilesPerUnit, start = (item % tilesPerUnit) * step
                let count = min(step, columns - start)
                guard count > 0 else { continue }
                let xg = x + unit * geometry.channels * geometry.inputPlane
                if isPointwise {
                    multiply(unit: unit, rowBlocks: 0..<rowBlocks, b: xg + start, ldb: columns, edge: edge,
                             columnStart: start, count: count, bias, y)
                } else {
                    let stride = Self.tileStride(count)
                    im2col(geometry, x: xg, cols: cols, columnStart: start, columnCount: count, rowStride: stride)
                    multiply(unit: unit, rowBlocks: 0..<rowBlocks, b: cols, ldb: stride, edge: edge, columnStart: start, count: count, bias, y)
                }
            }
        }
    }

    private func multiply(unit: Int, rowBlocks blocks: Range<Int>, b: UnsafePointer<Float>, ldb: Int, edge: UnsafeMutablePointer<Float>,
                          columnStart: Int, count: Int, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        let gi = unit % group
        let a = packedWeights.pointer(as: Float.self) + gi * rowBlocks * patch * PackedGemm.rowBlock
        let yg = y + (unit / group * outChannels + gi * groupOut) * columns
        let (low, high) = activation.clampBounds
        PackedGemm.multiply(packedA: a, m: groupOut, k: patch, rowBlocks: blocks, b: b, ldb: ldb, n: count, edge: edge,
                            c: yg + columnStart, ldc: columns, bias: bias.map { $0 + gi * groupOut }, low: low, high: high)
        if !activation.isClamp {
            for m in blocks.lowerBound * PackedGemm.rowBlock ..< min(blocks.upperBound * PackedGemm.rowBlock, groupOut) {
                let row = yg + m * columns + columnStart
                activation.apply(row, row, count: count)
            }
        }
    }

    /// Few columns: the workers build the whole im2col matrix together (unless 1x1), then split
    /// the row blocks. Worker w's edge panel sits at the start of its scratch; the matrix uses
    /// the space after worker 0's edge panel, across the other workers' areas.
    private func splitRows(_ io: KernelIO, unit: Int, _ x: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        let base = io.scratch!.assumingMemoryBound(to: Float.self)
        let xg = x + unit * geometry.channels * geometry.inputPlane
        var b = UnsafePointer(xg), ldb = columns
        let width = io.width
        // Edge panels for workers at the very end of the combined area.
        let total = io.scratchStride / 4 * width
        let edges = base + total - width * edgeFloats
        if !isPointwise {
            ldb = Self.tileStride(columns)
            let cols = base
            io.parallelRanges(patch) { rows, _ in
                im2col(geometry, x: xg, cols: cols, columnStart: 0, columnCount: columns, rows: rows, rowStride: ldb)
            }
            b = UnsafePointer(cols)
        }
        io.parallelRanges(rowBlocks) { blocks, worker in
            if !blocks.isEmpty {
                multiply(unit: unit, rowBlocks: blocks, b: b, ldb: ldb, edge: edges + worker * edgeFloats,
                         columnStart: 0, count: columns, bias, y)
            }
        }
    }
}
