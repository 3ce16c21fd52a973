/// Exact Float <-> Int32 arithmetic of the Pillow-exact resize (see `Resampler.swift`).
/// One source compiled into two targets: ImageCodec (baseline x86-64) and AVX2Kernels
/// (AVX2 + FMA, symlinked), so both sets of loops round identically.

/// 2^23: for an integer-valued Float 0 <= x < 2^23, the bits of `x + 2^23` are
/// `0x4B000000 | x`, which converts between Float and Int32 exactly with no range checks.
let twoPow23: Float = 8_388_608

@inline(__always)
func integerBits(_ x: SIMD4<Float>) -> SIMD4<Int32> {
    unsafeBitCast(x + SIMD4(repeating: twoPow23), to: SIMD4<Int32>.self) &- 0x4B00_0000
}

@inline(__always)
func integerBits(_ x: SIMD8<Float>) -> SIMD8<Int32> {
    unsafeBitCast(x + SIMD8(repeating: twoPow23), to: SIMD8<Int32>.self) &- 0x4B00_0000
}

@inline(__always)
func integerBits(_ x: Float) -> Int32 {
    Int32(bitPattern: (x + twoPow23).bitPattern) &- 0x4B00_0000
}

/// Pillow's `(sum + 2^21) >> 22` from the split partial sums `high * 256 + low` (never above
/// 255: the weights exceed 2^22 by at most half a unit per tap).
@inline(__always)
func pillowRound(high: SIMD4<Float>, low: SIMD4<Float>) -> SIMD4<Int32> {
    ((integerBits(high) &<< 8) &+ integerBits(low) &+ (1 << 21)) &>> 22
}

@inline(__always)
func pillowRound(high: SIMD8<Float>, low: SIMD8<Float>) -> SIMD8<Int32> {
    ((integerBits(high) &<< 8) &+ integerBits(low) &+ (1 << 21)) &>> 22
}

@inline(__always)
func pillowRound(high: Float, low: Float) -> Int32 {
    ((integerBits(high) &<< 8) &+ integerBits(low) &+ (1 << 21)) &>> 22
}

/// An integer 0...255 (in Int32 lanes) as the exact Float.
@inline(__always)
func floatValue(_ v: SIMD4<Int32>) -> SIMD4<Float> {
    unsafeBitCast(v | 0x4B00_0000, to: SIMD4<Float>.self) - SIMD4(repeating: twoPow23)
}

@inline(__always)
func floatValue(_ v: SIMD8<Int32>) -> SIMD8<Float> {
    unsafeBitCast(v | 0x4B00_0000, to: SIMD8<Float>.self) - SIMD8(repeating: twoPow23)
}
