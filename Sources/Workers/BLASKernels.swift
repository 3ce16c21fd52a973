import Engine
import Glibc

/// OpenBLAS 0.3.21 (Debian 12) does not know AMD Zen 4/5 and falls back to its AVX2 Haswell
/// kernels there, at about half of what the CPU's AVX-512 units can do. It reads its kernel
/// choice from OPENBLAS_CORETYPE only when the library loads, so an executable calls this
/// first thing: when the CPU has the AVX-512 subsets SkylakeX kernels use and OpenBLAS chose
/// an AVX2 family, it sets OPENBLAS_CORETYPE=SkylakeX and re-executes itself once.
/// A user-set OPENBLAS_CORETYPE is always left alone.
public enum BLASKernels {
    public static func relaunchWithAVX512KernelsIfBetter() {
        guard getenv("OPENBLAS_CORETYPE") == nil else { return }
        let core = BLAS.coreName.lowercased()
        guard core == "haswell" || core == "zen", cpuHasAVX512() else { return }
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv returned: keep running with the kernels already loaded.
        unsetenv("OPENBLAS_CORETYPE")
    }

    static func cpuHasAVX512() -> Bool {
        guard let file = fopen("/proc/cpuinfo", "r") else { return false }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 8192)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard line.hasPrefix("flags") else { continue }
            let flags = Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init))
            return ["avx512f", "avx512dq", "avx512bw", "avx512vl"].allSatisfy(flags.contains)
        }
        return false
    }
}
