import COpenBLAS

/// Row-major single-precision GEMM: C[M,N] = alpha * op(A) * op(B) + beta * C.
/// `lda`, `ldb`, `ldc` are row strides in elements. Runs on the calling thread plus
/// OpenBLAS's own workers (see `BLAS.setThreadCount`).
@inline(__always)
func sgemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        for row in 0..<m { for col in 0..<n { c[row * ldc + col] = beta == 0 ? 0 : beta * c[row * ldc + col] } }
        return
    }
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// y[columns] = x[rows] * A, A row-major (rows, columns) with row stride `lda`: a row vector
/// times a matrix (BLAS's transposed GEMV on the row-major matrix).
@inline(__always)
func sgemv(rows: Int, columns: Int, a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    if columns == 0 { return }
    if rows == 0 { y.update(repeating: 0, count: columns); return }
    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(rows), Int32(columns), 1, a, Int32(lda), x, 1, 0, y, 1)
}

/// Process-wide OpenBLAS settings. Only the executables call `setThreadCount`: the engine
/// never decides how many threads exist.
public enum BLAS {
    /// Sets how many threads OpenBLAS may use for one GEMM (1 = the calling thread only).
    public static func setThreadCount(_ count: Int) { openblas_set_num_threads(Int32(max(1, count))) }
    public static var threadCount: Int { Int(openblas_get_num_threads()) }
}

extension BLAS {
    /// The CPU kernel family OpenBLAS picked at load ("Haswell", "SkylakeX", ...).
    public static var coreName: String { String(cString: openblas_get_corename()) }
}
