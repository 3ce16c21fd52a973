import CQuantKernels
import Glibc

/// The integer GEMM path quantized convolutions and matrix products run on (`CQuantKernels`):
/// AVX-512 VNNI (vpdpbusd), AVX2 (vpmaddwd on s16, exact) or portable C. The CPU's best by
/// default; the environment variable ENGINE_INT8_KERNELS=vnni|avx2|scalar forces one (for
/// tests and benchmarks of every path on one machine). Read once per process.
enum QuantizedKernelPath: Int32, Sendable, CustomStringConvertible {
    case scalar = 0, avx2 = 1, vnni = 2

    static let variable = "ENGINE_INT8_KERNELS"

    /// The path in force, or why the forced one cannot run.
    static let selected: Result<QuantizedKernelPath, EngineError> = {
        guard let raw = getenv(variable) else { return .success(QuantizedKernelPath(rawValue: cqk_best_path()) ?? .scalar) }
        let name = String(cString: raw)
        let path: QuantizedKernelPath
        switch name {
        case "vnni": path = .vnni
        case "avx2": path = .avx2
        case "scalar": path = .scalar
        case "", "auto": return .success(QuantizedKernelPath(rawValue: cqk_best_path()) ?? .scalar)
        default: return .failure(.invalidModel("\(variable)='\(name)': expected vnni, avx2, scalar or auto"))
        }
        guard cqk_path_supported(path.rawValue) != 0 else {
            return .failure(.invalidModel("\(variable)=\(name): this CPU does not run the \(path) integer kernels"))
        }
        return .success(path)
    }()

    static func current() throws -> QuantizedKernelPath { try selected.get() }

    var description: String {
        switch self {
        case .scalar: return "scalar"
        case .avx2: return "AVX2"
        case .vnni: return "AVX-512 VNNI"
        }
    }
}

/// What a quantized product writes: requantized u8/s8 (QLinearConv, QLinearMatMul, QGemm),
/// the raw s32 sum (ConvInteger, MatMulInteger), or float (QGemm without y_scale).
enum QuantizedOutput: Equatable {
    case quantized(DType)
    case int32
    case float
}

/// The weight side of a quantized product, ready for `CQuantKernels`: `groups` matrices of
/// `rows x depth` s8 values (u8 weights shifted by -128, their zero points too) packed for
/// `path`, with per-row corrections folded from the zero points and bias:
///   v = acc(x', w') + bias[r] - wzp[r] * colsum(x')   (x' = u8 activations, s8 shifted +128)
/// and per-row float scales applied in the epilogue. Immutable; shared by all runs.
final class QuantizedWeights: @unchecked Sendable {
    let path: QuantizedKernelPath
    let groups: Int, rows: Int, depth: Int
    let packed: UnsafeMutableRawPointer
    let groupBytes: Int
    /// groups * rows values each, owned (freed in deinit).
    let bias: UnsafeMutablePointer<Int32>
    let zeroPoints: UnsafeMutablePointer<Int32>?
    let scales: UnsafeMutablePointer<Float>
    let floatBias: UnsafeMutablePointer<Float>?

    static func owned<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: max(values.count, 1))
        pointer.initialize(from: values, count: values.count)
        return pointer
    }

    /// `weight(group, row, k)` returns w - 128 for u8 weights, w for s8 (a value in -128...127);
    /// `zeroPoint(globalRow)` the matching shifted zero point; `xZeroPoint` the activations'
    /// zero point in the u8 domain (s8 activations shifted by +128).
    init(path: QuantizedKernelPath, groups: Int, rows: Int, depth: Int, weights: [Int8],
         zeroPoint: (Int) -> Int32, xZeroPoint: Int32, bias: (Int) -> Int32, scale: (Int) -> Float, floatBias: [Float]? = nil) {
        self.path = path
        self.groups = groups
        self.rows = rows
        self.depth = depth
        let groupBytes = cqk_packed_weight_bytes(path.rawValue, Int32(rows), Int32(depth))
        let packed = UnsafeMutableRawPointer.allocate(byteCount: max(groupBytes * groups, 64), alignment: 64)
        self.groupBytes = groupBytes
        self.packed = packed
        var corrected = [Int32](repeating: 0, count: groups * rows)
        var points = [Int32](repeating: 0, count: groups * rows)
        weights.withUnsafeBufferPointer { w in
            for g in 0..<groups {
                cqk_pack_weights(path.rawValue, w.baseAddress! + g * rows * depth, Int32(depth), Int32(rows), Int32(depth),
                                 packed + g * groupBytes)
            }
            for row in 0..<groups * rows {
                var sum: Int32 = 0
                for k in 0..<depth { sum &+= Int32(w[row * depth + k]) }
                let z = zeroPoint(row)
                points[row] = z
                corrected[row] = bias(row) &- xZeroPoint &* sum &+ Int32(depth) &* xZeroPoint &* z
            }
        }
        self.bias = Self.owned(corrected)
        zeroPoints = points.contains { $0 != 0 } ? Self.owned(points) : nil
        scales = Self.owned((0..<groups * rows).map(scale))
        self.floatBias = floatBias.map(Self.owned)
    }

    deinit {
        packed.deallocate()
        bias.deallocate()
        zeroPoints?.deallocate()
        scales.deallocate()
        floatBias?.deallocate()
    }

    /// Depth per pass over a panel (a multiple of 4): 128 rows of 64 pixels, 8 KiB of u8 panel.
    static let depthChunk = 128

    var blocksPerGroup: Int { (rows + Int(CQK_ROWS) - 1) / Int(CQK_ROWS) }
    var panelBytes: Int { cqk_panel_bytes(path.rawValue, Int32(depth)) }
}

/// Reads a scalar or per-row scale/zero-point input at run time or from its constant.
struct QuantParameter {
    let index: Int
    let dtype: DType
    let count: Int
    let value: HostTensor?

    init?(_ inputs: [ValueSpec?], _ index: Int) {
        guard index < inputs.count, let spec = inputs[index] else { return nil }
        self.index = index
        dtype = spec.dtype
        count = spec.shape.elementCount
        value = spec.value
    }

    /// Value for row `row` (broadcast when there is one value), from the constant or `io`.
    func integer(_ io: KernelIO?, _ row: Int) -> Int32 {
        let pointer = value.map { UnsafeRawPointer($0.bytes) } ?? io!.inputs[index]!
        return loadInteger(pointer, dtype, count == 1 ? 0 : row % count)
    }
    func float(_ io: KernelIO?, _ row: Int) -> Float {
        let pointer = value.map { UnsafeRawPointer($0.bytes) } ?? io!.inputs[index]!
        return pointer.load(fromByteOffset: (count == 1 ? 0 : row % count) * 4, as: Float.self)
    }
}

/// The operands of a quantized convolution or matrix product, by input index, checked at
/// prepare: activations x (u8/s8), weights w (u8/s8), optional zero points and scales,
/// optional int32 bias (or float bias for float output).
struct QuantizedOperands {
    var x: ValueSpec
    var w: ValueSpec
    var xScale: QuantParameter?, xZero: QuantParameter?
    var wScale: QuantParameter?, wZero: QuantParameter?
    var yScale: QuantParameter?, yZero: QuantParameter?
    var bias: ValueSpec?
    var biasIndex: Int?
    var output: QuantizedOutput

    /// Whether everything the weights' preparation reads is a constant.
    var weightsConstant: Bool {
        w.value != nil && [xScale, xZero, wScale, wZero, yScale, yZero].allSatisfy { $0 == nil || $0!.value != nil }
            && (bias == nil || bias!.value != nil)
    }

    func check(_ node: NodeContext, rowsTotal: Int) throws {
        guard x.dtype.quantizedRange != nil else { throw node.unsupported("activations of type \(x.dtype); uint8 and int8 are implemented") }
        guard w.dtype.quantizedRange != nil else { throw node.unsupported("weights of type \(w.dtype); uint8 and int8 are implemented") }
        for (label, parameter, isScale) in [("x scale", xScale, true), ("w scale", wScale, true), ("y scale", yScale, true),
                                            ("x zero point", xZero, false), ("w zero point", wZero, false), ("y zero point", yZero, false)] {
            guard let parameter else { continue }
            if isScale { guard parameter.dtype == .float32 else { throw node.invalid("\(label) must be float32, is \(parameter.dtype)") } }
            let perRow = label.hasPrefix("w")
            guard parameter.count == 1 || perRow && parameter.count == rowsTotal else {
                throw node.invalid("\(label) has \(parameter.count) values; expected 1\(perRow ? " or \(rowsTotal)" : "")")
            }
        }
        if let xZero, xZero.dtype != x.dtype { throw node.invalid("x zero point is \(xZero.dtype), x is \(x.dtype)") }
        if let wZero, wZero.dtype != w.dtype { throw node.invalid("w zero point is \(wZero.dtype), w is \(w.dtype)") }
        if case .quantized(let dtype) = output, let yZero, yZero.dtype != dtype { throw node.invalid("y zero point type \(yZero.dtype) differs from the output's \(dtype)") }
        if let bias {
            let wanted: DType = output == .float ? .float32 : .int32
            guard bias.dtype == wanted, bias.shape.elementCount == rowsTotal, bias.shape.count == 1 else {
                throw node.invalid("bias must be a 1-D \(wanted) tensor of \(rowsTotal) values, is \(bias.dtype) \(bias.shape)")
            }
        }
    }

    /// Builds the packed weights; `weight(globalRow, k)` reads the raw weight value.
    func makeWeights(_ io: KernelIO?, path: QuantizedKernelPath, groups: Int, rows: Int, depth: Int,
                     weight: (UnsafeRawPointer, Int, Int) -> Int32) -> QuantizedWeights {
        let wPointer = w.value.map { UnsafeRawPointer($0.bytes) } ?? io!.inputs[wIndex]!
        let shiftW: Int32 = w.dtype == .uint8 ? 128 : 0
        let shiftX: Int32 = x.dtype == .int8 ? 128 : 0
        var values = [Int8](repeating: 0, count: groups * rows * depth)
        for row in 0..<groups * rows {
            for k in 0..<depth { values[row * depth + k] = Int8(truncatingIfNeeded: weight(wPointer, row, k) - shiftW) }
        }
        let xZero = (self.xZero?.integer(io, 0) ?? 0) + shiftX
        let biasPointer: UnsafeRawPointer? = bias.map { b in b.value.map { UnsafeRawPointer($0.bytes) } ?? io!.inputs[biasIndex!]! }
        let isFloat = output == .float
        let floatBias: [Float]? = isFloat ? biasPointer.map { p in (0..<groups * rows).map { p.load(fromByteOffset: $0 * 4, as: Float.self) } } : nil
        let xs = xScale?.float(io, 0) ?? 1, ys = yScale?.float(io, 0) ?? 1
        return QuantizedWeights(
            path: path, groups: groups, rows: rows, depth: depth, weights: values,
            zeroPoint: { (self.wZero?.integer(io, $0) ?? 0) - shiftW },
            xZeroPoint: xZero,
            bias: { row in isFloat ? 0 : biasPointer.map { $0.load(fromByteOffset: row * 4, as: Int32.self) } ?? 0 },
            scale: { row in
                switch self.output {
                case .int32: return 1
                case .float: return xs * (self.wScale?.float(io, row) ?? 1)
                case .quantized: return xs * (self.wScale?.float(io, row) ?? 1) / ys
                }
            },
            floatBias: floatBias)
    }

    var wIndex: Int
}

/// Per-worker scratch of a quantized product: gathered activation rows [depth][PANEL] u8,
/// the packed panel, the accumulator tile and the column sums.
struct QuantizedScratch {
    let rowsOffset: Int, panelOffset: Int, accOffset: Int, sumOffset: Int, bytes: Int

    /// `rows`: weight rows per group (the accumulators of every block are kept when the depth
    /// is split into chunks).
    init(depth: Int, rows: Int, path: QuantizedKernelPath) {
        let panel = Int(CQK_PANEL)
        func round(_ n: Int) -> Int { (n + 63) / 64 * 64 }
        let blocks = (rows + Int(CQK_ROWS) - 1) / Int(CQK_ROWS)
        rowsOffset = 0
        panelOffset = round(depth * panel)
        accOffset = panelOffset + round(cqk_panel_bytes(path.rawValue, Int32(depth)))
        sumOffset = accOffset + round(Int(CQK_ROWS) * panel * 4 * blocks)
        bytes = sumOffset + round(panel * 4)
    }
}

extension QuantizedWeights {
    /// Packs the activation rows (`depth` rows of `count` u8 at `rows`, `rowStride` apart),
    /// computes column sums if needed, and runs every weight block of `group`, handing each
    /// accumulator tile to `store(block, rowsInBlock, acc, colsum)`.
    @inline(__always)
    func multiplyPanel(group: Int, count: Int, rows rowsBuffer: UnsafePointer<UInt8>, rowStride: Int,
                       scratch: UnsafeMutableRawPointer, layout: QuantizedScratch,
                       store: (Int, Int, UnsafePointer<Int32>, UnsafePointer<Int32>?) -> Void) {
        let panel = Int(CQK_PANEL)
        let panelBuffer = scratch + layout.panelOffset
        let acc = (scratch + layout.accOffset).assumingMemoryBound(to: Int32.self)
        let sums = (scratch + layout.sumOffset).assumingMemoryBound(to: Int32.self)
        cqk_pack_panel(path.rawValue, rowsBuffer, rowStride, Int32(depth), Int32(count), panelBuffer)
        if zeroPoints != nil {
            for t in 0..<panel { sums[t] = 0 }
            for k in 0..<depth {
                let row = rowsBuffer + k * rowStride
                for t in 0..<count { sums[t] &+= Int32(row[t]) }
            }
        }
        let weights = UnsafeRawPointer(packed + group * groupBytes)
        let colsum = zeroPoints != nil ? UnsafePointer(sums) : nil
        let tile = Int(CQK_ROWS) * panel
        if depth <= Self.depthChunk * 3 / 2 {
            for block in 0..<blocksPerGroup {
                cqk_block(path.rawValue, weights, Int32(block), Int32(depth), 0, Int32(depth), panelBuffer, acc, 0)
                store(block, min(Int(CQK_ROWS), rows - block * Int(CQK_ROWS)), acc, colsum)
            }
            return
        }
        // Deep products: the panel's depth in chunks that stay in L1 while every weight block
        // passes over them; each block's accumulators wait in scratch.
        var k0 = 0
        while k0 < depth {
            let k1 = min(depth, k0 + Self.depthChunk)
            for block in 0..<blocksPerGroup {
                cqk_block(path.rawValue, weights, Int32(block), Int32(depth), Int32(k0), Int32(k1), panelBuffer,
                          acc + block * tile, k0 > 0 ? 1 : 0)
            }
            k0 = k1
        }
        for block in 0..<blocksPerGroup {
            store(block, min(Int(CQK_ROWS), rows - block * Int(CQK_ROWS)), acc + block * tile, colsum)
        }
    }

    /// Writes a tile with contiguous pixels per row (NCHW convolution output).
    @inline(__always)
    func storeRows(_ output: QuantizedOutput, globalRow: Int, rowCount: Int, count: Int, acc: UnsafePointer<Int32>,
                   colsum: UnsafePointer<Int32>?, yZero: Int32, out: UnsafeMutableRawPointer, ldo: Int) {
        let z = zeroPoints.map { UnsafePointer($0 + globalRow) }
        switch output {
        case .quantized(let dtype):
            let (lo, hi) = dtype.quantizedRange!
            cqk_requantize(acc, Int32(rowCount), Int32(count), bias + globalRow, z, colsum,
                           scales + globalRow, yZero, lo, hi, out, ldo, dtype == .int8 ? 1 : 0)
        case .int32:
            cqk_store_s32(acc, Int32(rowCount), Int32(count), bias + globalRow, z, colsum,
                          out.assumingMemoryBound(to: Int32.self), ldo)
        case .float:
            cqk_store_float(acc, Int32(rowCount), Int32(count), bias + globalRow, z, colsum,
                            scales + globalRow, floatBias.map { UnsafePointer($0 + globalRow) }, out.assumingMemoryBound(to: Float.self), ldo)
        }
    }
}
