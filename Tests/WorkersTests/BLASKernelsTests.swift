import Engine
import Testing
@testable import Workers

@Suite struct BLASKernelsTests {
    // Feature flags as /proc/cpuinfo lists them (the subsets the decision reads, plus noise).
    static let base: Set<String> = ["fpu", "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "avx", "popcnt"]
    static let avx2 = base.union(["avx2", "fma", "bmi2", "f16c"])
    static let skylakeX = avx2.union(["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"])
    static let sapphireRapids = skylakeX.union(["avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"])
    static let zen4 = skylakeX.union(["avx512_bf16", "avx512_vnni", "avx512ifma"])

    @Test func avx512CPUsGetAVX512Kernels() {
        // 5th-generation Xeon, unknown to OpenBLAS 0.3.21: it falls back to Prescott.
        #expect(BLASKernels.betterCoreType(picked: "Prescott", cpuFlags: Self.sapphireRapids, limit: nil) == "SkylakeX")
        // Zen 4: OpenBLAS picks its AVX2 families.
        #expect(BLASKernels.betterCoreType(picked: "Haswell", cpuFlags: Self.zen4, limit: nil) == "SkylakeX")
        #expect(BLASKernels.betterCoreType(picked: "Zen", cpuFlags: Self.zen4, limit: nil) == "SkylakeX")
        #expect(BLASKernels.betterCoreType(picked: "Zen", cpuFlags: Self.zen4, limit: .avx512) == "SkylakeX")
        // Already an AVX-512 family: kept.
        #expect(BLASKernels.betterCoreType(picked: "SkylakeX", cpuFlags: Self.skylakeX, limit: nil) == nil)
        #expect(BLASKernels.betterCoreType(picked: "Cooperlake", cpuFlags: Self.sapphireRapids, limit: nil) == nil)
        // AVX-512 F without BW/DQ/VL (Knights Landing): not the SkylakeX kernels.
        let knightsLanding = Self.avx2.union(["avx512f", "avx512cd", "avx512er", "avx512pf"])
        #expect(BLASKernels.betterCoreType(picked: "Haswell", cpuFlags: knightsLanding, limit: nil) == nil)
    }

    @Test func avx2CPUs() {
        #expect(BLASKernels.betterCoreType(picked: "Haswell", cpuFlags: Self.avx2, limit: nil) == nil)
        #expect(BLASKernels.betterCoreType(picked: "Zen", cpuFlags: Self.avx2, limit: nil) == nil)
        // An AVX2 CPU newer than the library (e.g. a new Intel core): Prescott/Sandybridge -> Haswell.
        #expect(BLASKernels.betterCoreType(picked: "Prescott", cpuFlags: Self.avx2, limit: nil) == "Haswell")
        #expect(BLASKernels.betterCoreType(picked: "Sandybridge", cpuFlags: Self.avx2, limit: nil) == "Haswell")
        // AVX without AVX2/FMA, or less: left alone.
        #expect(BLASKernels.betterCoreType(picked: "Sandybridge", cpuFlags: Self.base, limit: nil) == nil)
        #expect(BLASKernels.betterCoreType(picked: "Prescott", cpuFlags: ["sse", "sse2", "pni"], limit: nil) == nil)
        #expect(BLASKernels.betterCoreType(picked: "Prescott", cpuFlags: [], limit: nil) == nil)
    }

    @Test func limitCapsTheChoice() {
        #expect(BLASKernels.betterCoreType(picked: "SkylakeX", cpuFlags: Self.skylakeX, limit: .avx2) == "Haswell")
        #expect(BLASKernels.betterCoreType(picked: "Prescott", cpuFlags: Self.sapphireRapids, limit: .avx2) == "Haswell")
        #expect(BLASKernels.betterCoreType(picked: "Zen", cpuFlags: Self.zen4, limit: .avx2) == nil)
        #expect(BLASKernels.betterCoreType(picked: "Prescott", cpuFlags: Self.sapphireRapids, limit: .portable) == nil)
    }

    @Test func cpuFlagsOfThisMachine() {
        // Whatever this CPU is, an x86-64 Linux lists at least SSE2.
        #expect(BLASKernels.cpuFlags().contains("sse2"))
    }
}
