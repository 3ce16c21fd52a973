import AVX2Kernels
import AVX512Kernels
import CLinuxShims
import Glibc

/// The instruction set the engine's own vector kernels (direct convolution, pooling rows,
/// packed GEMM) are run with, chosen once from the CPU and `ISALimit`; nil: none, BLAS and
/// scalar code only.
enum VectorISA: Sendable {
    case avx512, avx2

    static let detected: VectorISA? = choose(limit: ISALimit.current, avx512: cls_cpu_has_avx512() != 0,
                                             avx2: cls_cpu_has_avx2_fma() != 0)

    static func choose(limit: ISALimit?, avx512: Bool, avx2: Bool) -> VectorISA? {
        if avx512 && limit != .avx2 && limit != .portable { return .avx512 }
        if avx2 && limit != .portable { return .avx2 }
        return nil
    }
}

/// A cap on the vector instructions the process uses, from the environment variable
/// `MODEL_SERVER_MAX_ISA` (read once): `avx2` runs the AVX2 kernels (and OpenBLAS's AVX2
/// kernels, see `BLASKernels` in Workers) on an AVX-512 CPU, which is how that path is tested
/// on one; `portable` runs no engine vector kernel (OpenBLAS and scalar code); `avx512` or
/// unset: whatever the CPU has. The executables refuse other values at start
/// (`environmentProblem`); the engine alone ignores them.
public enum ISALimit: String, Sendable, CaseIterable {
    case avx512, avx2, portable

    public static let variable = "MODEL_SERVER_MAX_ISA"

    public static let current: ISALimit? = getenv(variable).flatMap { ISALimit(rawValue: String(cString: $0).lowercased()) }

    /// A message naming the variable and its accepted values when it is set to anything else.
    public static var environmentProblem: String? {
        guard let raw = getenv(variable).map({ String(cString: $0) }), !raw.isEmpty,
              ISALimit(rawValue: raw.lowercased()) == nil else { return nil }
        return "\(variable)=\(raw) is not one of \(allCases.map(\.rawValue).joined(separator: ", "))"
    }
}

/// The direct convolution and row kernels of the detected instruction set (same contracts
/// as `AVX512Kernels.DirectConv` and `AVX512Kernels.Rows`). Call only when
/// `VectorISA.detected` is not nil.
enum VectorKernels {
    static let isa = VectorISA.detected ?? .avx2

    static var directMaxBlocks: Int { isa == .avx512 ? AVX512Kernels.DirectConv.maxBlocks : AVX2Kernels.DirectConv.maxBlocks }

    static func pixelsPerTile(blocks: Int) -> Int {
        isa == .avx512 ? AVX512Kernels.DirectConv.pixelsPerTile(blocks: blocks) : AVX2Kernels.DirectConv.pixelsPerTile(blocks: blocks)
    }

    @inline(__always)
    static func directTile(blocks: Int, weights: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, depth: Int,
                           pixels: UnsafePointer<UnsafePointer<Float>>, acc: UnsafeMutablePointer<Float>, ldAcc: Int,
                           accumulate: Bool) {
        if isa == .avx512 {
            AVX512Kernels.DirectConv.tile(blocks: blocks, weights: weights, offsets: offsets, depth: depth, pixels: pixels,
                                          acc: acc, ldAcc: ldAcc, accumulate: accumulate)
        } else {
            AVX2Kernels.DirectConv.tile(blocks: blocks, weights: weights, offsets: offsets, depth: depth, pixels: pixels,
                                        acc: acc, ldAcc: ldAcc, accumulate: accumulate)
        }
    }

    static func storeTransposed(acc: UnsafePointer<Float>, ldAcc: Int, count: Int, channels: Int,
                                bias: UnsafePointer<Float>?, low: Float, high: Float, out: UnsafeMutablePointer<Float>, ldOut: Int,
                                residual: UnsafePointer<Float>? = nil, activation: (kind: Int, alpha: Float, beta: Float) = (0, 0, 0),
                                isa: VectorISA = isa) {
        if isa == .avx512 {
            AVX512Kernels.DirectConv.storeTransposed(acc: acc, ldAcc: ldAcc, count: count, channels: channels, bias: bias,
                                                     low: low, high: high, out: out, ldOut: ldOut, residual: residual,
                                                     activation: activation.kind, alpha: activation.alpha, beta: activation.beta)
        } else {
            AVX2Kernels.DirectConv.storeTransposed(acc: acc, ldAcc: ldAcc, count: count, channels: channels, bias: bias,
                                                   low: low, high: high, out: out, ldOut: ldOut, residual: residual,
                                                   activation: activation.kind, alpha: activation.alpha, beta: activation.beta)
        }
    }

    // Element-wise kernels (`AVX512Kernels.Elementwise`). `isa` defaults to the CPU's; tests
    // pass the other one to check both builds on one machine (AVX2 runs on AVX-512 CPUs).

    /// target[i] = f(source[i] + bias), f an activation with a vector form (`Activation.vectorCode`).
    static func activate(_ code: (kind: Int, alpha: Float, beta: Float), _ source: UnsafePointer<Float>,
                         _ target: UnsafeMutablePointer<Float>, count: Int, bias: Float = 0, isa: VectorISA = isa) {
        if isa == .avx512 {
            AVX512Kernels.Elementwise.activate(code.kind, alpha: code.alpha, beta: code.beta, source, target, count: count, bias: bias)
        } else {
            AVX2Kernels.Elementwise.activate(code.kind, alpha: code.alpha, beta: code.beta, source, target, count: count, bias: bias)
        }
    }

    /// target[i] = f(a[i] + b[i]).
    static func addActivate(_ code: (kind: Int, alpha: Float, beta: Float), _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                            _ target: UnsafeMutablePointer<Float>, count: Int, isa: VectorISA = isa) {
        if isa == .avx512 {
            AVX512Kernels.Elementwise.addActivate(code.kind, alpha: code.alpha, beta: code.beta, a, b, target, count: count)
        } else {
            AVX2Kernels.Elementwise.addActivate(code.kind, alpha: code.alpha, beta: code.beta, a, b, target, count: count)
        }
    }

    /// target[i] = a[i] op b[i]; `op` is an `Elementwise` operator code.
    static func binary(_ op: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>,
                       count: Int, isa: VectorISA = isa) {
        if isa == .avx512 {
            AVX512Kernels.Elementwise.binary(op, a, b, target, count: count)
        } else {
            AVX2Kernels.Elementwise.binary(op, a, b, target, count: count)
        }
    }

    /// target[i] = a[i] op scalar, or scalar op a[i] when `scalarFirst`.
    static func binaryScalar(_ op: Int, _ a: UnsafePointer<Float>, _ scalar: Float, scalarFirst: Bool,
                             _ target: UnsafeMutablePointer<Float>, count: Int, isa: VectorISA = isa) {
        if isa == .avx512 {
            AVX512Kernels.Elementwise.binaryScalar(op, a, scalar, scalarFirst: scalarFirst, target, count: count)
        } else {
            AVX2Kernels.Elementwise.binaryScalar(op, a, scalar, scalarFirst: scalarFirst, target, count: count)
        }
    }

    /// Sum or maximum of `count` floats.
    static func reduce(_ source: UnsafePointer<Float>, count: Int, isMax: Bool, isa: VectorISA = isa) -> Float {
        isa == .avx512 ? AVX512Kernels.Elementwise.reduce(source, count: count, isMax: isMax)
                       : AVX2Kernels.Elementwise.reduce(source, count: count, isMax: isMax)
    }

    /// `AVX512Kernels.Depthwise.copyRows`.
    static func copyRows(_ source: UnsafePointer<Float>, sourceStride: Int, rows: Int, columns: Int,
                         _ target: UnsafeMutablePointer<Float>, ld: Int, isa: VectorISA = isa) {
        if isa == .avx512 {
            AVX512Kernels.Depthwise.copyRows(source, sourceStride: sourceStride, rows: rows, columns: columns, target, ld: ld)
        } else {
            AVX2Kernels.Depthwise.copyRows(source, sourceStride: sourceStride, rows: rows, columns: columns, target, ld: ld)
        }
    }

    /// One depthwise plane (`AVX512Kernels.Depthwise.plane`).
    static func depthwisePlane(source: UnsafePointer<Float>, ld: Int, weights: UnsafePointer<Float>, kh: Int, kw: Int,
                               strideH: Int, strideW: Int, dilationH: Int, dilationW: Int, outH: Int, outW: Int, bias: Float,
                               out: UnsafeMutablePointer<Float>, ldOut: Int, code: (kind: Int, alpha: Float, beta: Float),
                               isa: VectorISA = isa) {
        if isa == .avx512 {
            AVX512Kernels.Depthwise.plane(source: source, ld: ld, weights: weights, kh: kh, kw: kw, strideH: strideH, strideW: strideW,
                                          dilationH: dilationH, dilationW: dilationW, outH: outH, outW: outW, bias: bias,
                                          out: out, ldOut: ldOut, kind: code.kind, alpha: code.alpha, beta: code.beta)
        } else {
            AVX2Kernels.Depthwise.plane(source: source, ld: ld, weights: weights, kh: kh, kw: kw, strideH: strideH, strideW: strideW,
                                        dilationH: dilationH, dilationW: dilationW, outH: outH, outW: outW, bias: bias,
                                        out: out, ldOut: ldOut, kind: code.kind, alpha: code.alpha, beta: code.beta)
        }
    }

    static func maximum(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        if isa == .avx512 { AVX512Kernels.Rows.maximum(target, source, count: count) } else { AVX2Kernels.Rows.maximum(target, source, count: count) }
    }

    static func add(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        if isa == .avx512 { AVX512Kernels.Rows.add(target, source, count: count) } else { AVX2Kernels.Rows.add(target, source, count: count) }
    }

    static func scale(_ target: UnsafeMutablePointer<Float>, by scale: UnsafePointer<Float>, factor: Float, count: Int) {
        if isa == .avx512 {
            AVX512Kernels.Rows.scale(target, by: scale, factor: factor, count: count)
        } else {
            AVX2Kernels.Rows.scale(target, by: scale, factor: factor, count: count)
        }
    }

    static func reduceRows(_ target: UnsafeMutablePointer<Float>, _ first: UnsafePointer<Float>, stride: Int, rows: Int,
                           count: Int, isMax: Bool) {
        if isa == .avx512 {
            AVX512Kernels.Rows.reduceRows(target, first, stride: stride, rows: rows, count: count, isMax: isMax)
        } else {
            AVX2Kernels.Rows.reduceRows(target, first, stride: stride, rows: rows, count: count, isMax: isMax)
        }
    }

    static func windows(_ out: UnsafeMutablePointer<Float>, _ row: UnsafePointer<Float>, count: Int, kernel: Int, stride: Int,
                        isMax: Bool, scale: UnsafePointer<Float>?, factor: Float) {
        if isa == .avx512 {
            AVX512Kernels.Rows.windows(out, row, count: count, kernel: kernel, stride: stride, isMax: isMax, scale: scale, factor: factor)
        } else {
            AVX2Kernels.Rows.windows(out, row, count: count, kernel: kernel, stride: stride, isMax: isMax, scale: scale, factor: factor)
        }
    }
}
