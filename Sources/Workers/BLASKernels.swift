import Engine
import Glibc

/// OpenBLAS picks its kernels once, when the library loads, from the CPU model it knows; the
/// Debian 12 build (0.3.21) does not know several CPUs this server runs on and then picks far
/// slower ones: AVX2 "Haswell"/"Zen" on AMD Zen 4/5 (half of what their AVX-512 units do),
/// and SSE3 "Prescott" on Intel Xeons newer than it (5th generation, Emerald Rapids, which
/// have AVX-512). It reads OPENBLAS_CORETYPE only at load, so an executable calls
/// `relaunchWithBestKernels` first thing: when `betterCoreType` names a better family it sets
/// OPENBLAS_CORETYPE and re-executes itself once. A user-set OPENBLAS_CORETYPE is always left
/// alone. `MODEL_SERVER_MAX_ISA` (`ISALimit`) caps the choice like the engine's kernels.
public enum BLASKernels {
    public static func relaunchWithBestKernels() {
        if let problem = ISALimit.environmentProblem {
            let message = "\(problem)\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            exit(2)
        }
        guard getenv("OPENBLAS_CORETYPE") == nil else { return }
        guard let core = betterCoreType(picked: BLAS.coreName, cpuFlags: cpuFlags(), limit: ISALimit.current) else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv returned: keep running with the kernels already loaded.
        unsetenv("OPENBLAS_CORETYPE")
    }

    /// OpenBLAS 0.3.21's x86-64 families with AVX-512 SGEMM kernels, and with AVX2 + FMA ones
    /// (lower-cased `openblas_get_corename()` names).
    static let avx512Families: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]
    static let avx2Families: Set<String> = ["haswell", "zen"]

    /// The OPENBLAS_CORETYPE to relaunch with, or nil to keep OpenBLAS's choice. `picked`:
    /// the family OpenBLAS chose; `cpuFlags`: the CPU's feature names as /proc/cpuinfo lists
    /// them (the kernel lists only what the OS enabled). A CPU with AVX-512 F/BW/DQ/VL gets
    /// SkylakeX (CooperLake and SapphireRapids use SkylakeX's SGEMM; kept when picked); a CPU
    /// with AVX2 + FMA that OpenBLAS gave an older family (or an AVX-512 one under
    /// `limit` avx2) gets Haswell. Other CPUs, and `limit` portable, keep the choice.
    static func betterCoreType(picked: String, cpuFlags: Set<String>, limit: ISALimit?) -> String? {
        let core = picked.lowercased()
        if limit == .portable { return nil }
        let avx512 = limit != .avx2 && ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(cpuFlags.contains)
        let avx2 = ["avx2", "fma"].allSatisfy(cpuFlags.contains)
        if avx512 { return avx512Families.contains(core) ? nil : "SkylakeX" }
        if avx2 && !avx2Families.contains(core) { return "Haswell" }
        return nil
    }

    /// The feature flags of the first CPU in /proc/cpuinfo (empty when unreadable).
    static func cpuFlags() -> Set<String> {
        guard let file = fopen("/proc/cpuinfo", "r") else { return [] }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 8192)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard line.hasPrefix("flags") else { continue }
            return Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == ":" }).map(String.init))
        }
        return []
    }
}
