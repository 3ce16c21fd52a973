/// Ungrouped 2-D convolution without im2col, on the direct-convolution tiles of
/// `VectorKernels` (AVX-512 or AVX2).
///
/// x: (N, C, H, W), b: (M) optional; y: (N, M, outH, outW), f32. Weights are packed at load
/// into output-channel chunks of up to 64 (`DirectConvPlan.chunks`). An input with padding is
/// first copied, per image, into a zero-bordered buffer that all workers read, so the kernel
/// needs no bounds checks. Work items are (output-channel chunk, pixel group) pairs; each
/// runs the full reduction per register tile into a small per-worker buffer and writes each
/// block of 8 tiles out channel-major while it is in L1.
struct DirectConvKernel: Kernel, ResidualEpilogue {
    let plan: DirectConvPlan
    let batch: Int
    let hasBias: Bool
    let activation: Activation
    /// Input 3, laid out like the output, is added before the activation.
    var hasResidual = false

    func takesResidual(shape: Shape, outShape: Shape) -> Bool { hasResidual && shape == outShape }

    var scratchBytes: Int { plan.scratchFloats * MemoryLayout<Float>.size + plan.pointerSlots * MemoryLayout<UnsafePointer<Float>>.size }

    func run(_ io: KernelIO) {
        let x = io.input(0, Float.self)
        let bias = hasBias ? io.input(2, Float.self) : nil
        let y = io.output(0, Float.self)
        let g = plan.geometry
        let items = plan.itemsPerImage
        if plan.padded {
            let buffer = io.scratch!.assumingMemoryBound(to: Float.self) + plan.tileFloats
            for image in 0..<batch {
                let xi = x + image * g.channels * g.inputPlane
                io.parallelRanges(g.channels) { channels, _ in plan.pad(xi, into: buffer, channels: channels) }
                io.parallelItems(items) { item, worker in
                    compute(io, item: item, image: image, source: UnsafePointer(buffer), bias, y, worker: worker)
                }
            }
        } else {
            io.parallelItems(batch * items) { item, worker in
                let image = item / items
                compute(io, item: item % items, image: image, source: x + image * g.channels * g.inputPlane, bias, y, worker: worker)
            }
        }
    }

    private func compute(_ io: KernelIO, item: Int, image: Int, source: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                         _ y: UnsafeMutablePointer<Float>, worker: Int) {
        let scratch = io.scratch(worker: worker)!
        let tile = scratch.assumingMemoryBound(to: Float.self)
        let pointers = (scratch + plan.scratchFloats * MemoryLayout<Float>.size).assumingMemoryBound(to: UnsafePointer<Float>.self)
        let chunkIndex = plan.pixelGroupMajor ? item % plan.chunks.count : item / plan.pixelGroups
        let group = plan.pixelGroupMajor ? item / plan.chunks.count : item % plan.pixelGroups
        let chunk = plan.chunks[chunkIndex]
        let firstPixel = group * plan.pixels / plan.pixelGroups
        let count = (group + 1) * plan.pixels / plan.pixelGroups - firstPixel
        guard count > 0 else { return }
        let perTile = VectorKernels.pixelsPerTile(blocks: chunk.blocks)
        let lanes = chunk.blocks * 16
        let weights = plan.weights.pointer(as: Float.self) + chunk.weightOffset
        let offsets = plan.offsets.pointer(as: Int32.self)
        let pixelOffsets = plan.pixelOffsets.pointer(as: Int32.self) + firstPixel
        let outChannels = plan.outChannels
        let channels = min(lanes, outChannels - chunk.firstChannel)
        let out = y + (image * outChannels + chunk.firstChannel) * plan.pixels + firstPixel
        let residual = hasResidual ? io.input(3, Float.self) + (image * outChannels + chunk.firstChannel) * plan.pixels + firstPixel : nil
        let (low, high) = activation.clampBounds
        // Non-clamp activations run in the store when they have a vector form (Tanh after it).
        let epilogue = activation.isClamp ? (kind: 0, alpha: Float(0), beta: Float(0)) : activation.vectorCode ?? (0, 0, 0)
        let late = !activation.isClamp && activation.vectorCode == nil
        let rowFloats = DirectConvPlan.tileRowFloats
        // Blocks of 8 tiles: the block's results are still in L1 when they are transposed out.
        let block = perTile * 8
        var start = 0
        while start < count {
            let blockCount = min(block, count - start)
            // The block's pixel pointers, the last one repeated to fill its final tile.
            let filled = (blockCount + perTile - 1) / perTile * perTile
            for p in 0..<filled { pointers[p] = source + Int(pixelOffsets[start + min(p, blockCount - 1)]) }
            // The reduction in slices whose input lines and weights stay in L1 across the
            // block's tiles.
            var k = 0
            while k < plan.reduction {
                let depth = min(plan.reductionSlice, plan.reduction - k)
                var t = 0
                while t < blockCount {
                    VectorKernels.directTile(blocks: chunk.blocks, weights: weights + k * lanes, offsets: offsets + k, depth: depth,
                                             pixels: pointers + t, acc: tile + t * rowFloats, ldAcc: rowFloats, accumulate: k > 0)
                    t += perTile
                }
                k += depth
            }
            VectorKernels.storeTransposed(acc: tile, ldAcc: rowFloats, count: blockCount, channels: channels,
                                          bias: bias.map { $0 + chunk.firstChannel }, low: low, high: high, out: out + start,
                                          ldOut: plan.pixels, residual: residual.map { $0 + start }, activation: epilogue)
            if late {
                for c in 0..<channels { activation.apply(out + c * plan.pixels + start, out + c * plan.pixels + start, count: blockCount) }
            }
            start += blockCount
        }
    }
}

/// Everything the direct convolution decides at load: weight packing, tap offsets, pixel
/// addresses and the split into work items. Shared by the kernels of every batch size.
final class DirectConvPlan: @unchecked Sendable {
    struct Chunk {
        var firstChannel: Int
        /// Vectors of 16 output channels (1...`VectorKernels.directMaxBlocks`); channels past M are zero weights.
        var blocks: Int
        /// Offset of the chunk's packed weights, in floats.
        var weightOffset: Int
    }

    static let tileRowFloats = 64
    static let avx2ReductionSlice = 128
    /// Largest pixel group (a work item's share of the output plane).
    static let maxGroupPixels = 480

    let geometry: ConvGeometry
    let outChannels: Int
    let chunks: [Chunk]
    /// (depth, chunk lanes) step-major per chunk, see `DirectConv`.
    let weights: HostTensor
    /// Reduction length: channels x kernelH x kernelW.
    let reduction: Int
    /// Reduction steps each register tile runs before the next tile of its block.
    let reductionSlice: Int
    /// Work items ordered by pixel group, then chunk: a worker keeps one group's input rows in
    /// its L2 while the weights stream (narrow AVX2 chunks would otherwise stream the whole
    /// input once per 16 output channels). Else chunk-major.
    let pixelGroupMajor: Bool
    /// Int32 per reduction step: element offset from a pixel's base address.
    let offsets: HostTensor
    /// Int32 per output pixel: element offset of its window's top-left in the source image.
    let pixelOffsets: HostTensor
    /// Whether the input is copied into a zero-bordered buffer first.
    let padded: Bool
    let sourceHeight: Int, sourceWidth: Int
    var pixels: Int { geometry.outputPlane }
    /// Output pixels are split into this many nearly equal groups.
    let pixelGroups: Int
    var itemsPerImage: Int { chunks.count * pixelGroups }
    /// Per worker: the accumulator tile for one block of 8 register tiles (at most 80 pixels);
    /// worker 0's area also holds the padded image.
    var tileFloats: Int { 96 * Self.tileRowFloats }
    var scratchFloats: Int { tileFloats + (padded ? geometry.channels * sourceHeight * sourceWidth : 0) }
    /// Pixel pointers per worker: one block of 8 tiles, the last tile filled up.
    let pointerSlots = 96

    /// `weights`: (M, C, kh, kw) f32. `workers` is only a hint for splitting pixels into groups.
    init(geometry g: ConvGeometry, weights w: HostTensor, workers: Int = 2) {
        geometry = g
        outChannels = w.shape[0]
        reduction = g.patchSize
        reductionSlice = VectorKernels.isa == .avx512 ? reduction : min(reduction, Self.avx2ReductionSlice)
        pixelGroupMajor = VectorKernels.isa != .avx512
        // As few chunks as the widest tile allows, with the vectors spread evenly over them so
        // that work items cost the same (96 channels in 4-vector tiles: 3 + 3, not 4 + 2).
        var chunks: [Chunk] = []
        var first = 0, offset = 0
        let maxBlocks = VectorKernels.directMaxBlocks
        let vectors = (outChannels + 15) / 16, chunkCount = (vectors + maxBlocks - 1) / maxBlocks
        for index in 0..<chunkCount {
            let blocks = (index + 1) * vectors / chunkCount - index * vectors / chunkCount
            chunks.append(Chunk(firstChannel: first, blocks: blocks, weightOffset: offset))
            offset += reduction * blocks * 16
            first += blocks * 16
        }
        self.chunks = chunks
        let packed = HostTensor(dtype: .float32, shape: [offset])
        let source = w.pointer(as: Float.self), target = packed.pointer(as: Float.self)
        for chunk in chunks {
            let lanes = chunk.blocks * 16
            for k in 0..<reduction {
                for lane in 0..<lanes {
                    let m = chunk.firstChannel + lane
                    target[chunk.weightOffset + k * lanes + lane] = m < outChannels ? source[m * reduction + k] : 0
                }
            }
        }
        weights = packed

        padded = g.padTop > 0 || g.padLeft > 0
            || (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1 > g.height + g.padTop
            || (g.outW - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1 > g.width + g.padLeft
        sourceHeight = padded ? max(g.height + g.padTop, (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1) : g.height
        sourceWidth = padded ? max(g.width + g.padLeft, (g.outW - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1) : g.width
        let plane = sourceHeight * sourceWidth
        let taps = HostTensor(dtype: .int32, shape: [reduction])
        let tapPointer = taps.pointer(as: Int32.self)
        for c in 0..<g.channels {
            for ky in 0..<g.kernelH {
                for kx in 0..<g.kernelW {
                    tapPointer[(c * g.kernelH + ky) * g.kernelW + kx] = Int32(c * plane + ky * g.dilationH * sourceWidth + kx * g.dilationW)
                }
            }
        }
        offsets = taps
        let pixelTable = HostTensor(dtype: .int32, shape: [g.outputPlane])
        let pixelPointer = pixelTable.pointer(as: Int32.self)
        for oy in 0..<g.outH {
            for ox in 0..<g.outW { pixelPointer[oy * g.outW + ox] = Int32(oy * g.strideH * sourceWidth + ox * g.strideW) }
        }
        pixelOffsets = pixelTable

        // Enough items that every worker gets several and the same number, groups no larger
        // than `maxGroupPixels` and no smaller than a few register tiles.
        let pixels = g.outputPlane
        var groups = (pixels + Self.maxGroupPixels - 1) / Self.maxGroupPixels
        while (chunks.count * groups < 4 * workers || (chunks.count * groups) % workers != 0) && pixels / (groups + 1) >= 24 {
            groups += 1
        }
        pixelGroups = groups
    }

    /// Whether `DirectConvPlan` handles a convolution: 2-D, ungrouped, offsets within Int32.
    static func supports(_ g: ConvGeometry, group: Int) -> Bool {
        guard group == 1, g.isPlanar else { return false }
        let padH = max(g.height + g.padTop, (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1)
        let padW = max(g.width + g.padLeft, (g.outW - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1)
        return g.channels * padH * padW < Int(Int32.max)
    }

    /// Copies channels `channels` of one image into the zero-bordered source buffer.
    func pad(_ x: UnsafePointer<Float>, into buffer: UnsafeMutablePointer<Float>, channels: Range<Int>) {
        geometry.copyZeroBordered(x, into: buffer, sourceHeight: sourceHeight, sourceWidth: sourceWidth, channels: channels)
    }
}
