/// Shortest round-trip decimal output for Float and Double, written straight into a byte
/// buffer (no String per number).
///
/// The digits come from Ryu (Ulf Adams, "Ryū: fast float-to-string conversion", PLDI 2018):
/// the shortest decimal in the rounding interval of the value, and of those the closest to
/// it, which is what Swift's `description` prints. The layout also matches `description`:
/// positional when 1e-4 <= |v| <= 2^24 (Float) / 2^53 (Double), integral values with ".0"
/// (`3.0`), otherwise `d.ddde±XX` (`1e-05`, `1.5e+20`).
enum FloatFormatting {
    /// Upper bound on the bytes `write` produces.
    static let maxFloatLength = 16
    static let maxDoubleLength = 26

    // MARK: Layout

    /// Writes a finite `value` (sign included) and returns the byte count.
    @inline(__always)
    static func write(_ value: Float, to out: UnsafeMutablePointer<UInt8>) -> Int {
        let bits = value.bitPattern
        var k = 0
        if bits >> 31 != 0 {
            out[0] = JSONByte.minus
            k = 1
        }
        if bits & 0x7FFF_FFFF == 0 {
            out[k] = JSONByte.zero
            out[k + 1] = JSONByte.dot
            out[k + 2] = JSONByte.zero
            return k + 3
        }
        let (digits, exponent) = float32Decimal(bits)
        let positional = value.magnitude <= 0x1p24
        return k + layout(UInt64(digits), Int(exponent), positional: positional, to: out + k)
    }

    @inline(__always)
    static func write(_ value: Double, to out: UnsafeMutablePointer<UInt8>) -> Int {
        let bits = value.bitPattern
        var k = 0
        if bits >> 63 != 0 {
            out[0] = JSONByte.minus
            k = 1
        }
        if bits & 0x7FFF_FFFF_FFFF_FFFF == 0 {
            out[k] = JSONByte.zero
            out[k + 1] = JSONByte.dot
            out[k + 2] = JSONByte.zero
            return k + 3
        }
        let (digits, exponent) = float64Decimal(bits)
        let positional = value.magnitude <= 0x1p53
        return k + layout(digits, Int(exponent), positional: positional, to: out + k)
    }

    /// "00" "01" ... "99", for writing two digits at a time. A literal, so the global is
    /// statically initialized (no lazy-initialization call per access).
    static let digitPairs: [UInt8] = [
        48, 48, 48, 49, 48, 50, 48, 51, 48, 52, 48, 53, 48, 54, 48, 55, 48, 56, 48, 57,
        49, 48, 49, 49, 49, 50, 49, 51, 49, 52, 49, 53, 49, 54, 49, 55, 49, 56, 49, 57,
        50, 48, 50, 49, 50, 50, 50, 51, 50, 52, 50, 53, 50, 54, 50, 55, 50, 56, 50, 57,
        51, 48, 51, 49, 51, 50, 51, 51, 51, 52, 51, 53, 51, 54, 51, 55, 51, 56, 51, 57,
        52, 48, 52, 49, 52, 50, 52, 51, 52, 52, 52, 53, 52, 54, 52, 55, 52, 56, 52, 57,
        53, 48, 53, 49, 53, 50, 53, 51, 53, 52, 53, 53, 53, 54, 53, 55, 53, 56, 53, 57,
        54, 48, 54, 49, 54, 50, 54, 51, 54, 52, 54, 53, 54, 54, 54, 55, 54, 56, 54, 57,
        55, 48, 55, 49, 55, 50, 55, 51, 55, 52, 55, 53, 55, 54, 55, 55, 55, 56, 55, 57,
        56, 48, 56, 49, 56, 50, 56, 51, 56, 52, 56, 53, 56, 54, 56, 55, 56, 56, 56, 57,
        57, 48, 57, 49, 57, 50, 57, 51, 57, 52, 57, 53, 57, 54, 57, 55, 57, 56, 57, 57,
    ]

    static let powersOfTen: [UInt64] = [
        1, 10, 100, 1000, 10000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000,
        10_000_000_000, 100_000_000_000, 1_000_000_000_000, 10_000_000_000_000, 100_000_000_000_000,
        1_000_000_000_000_000, 10_000_000_000_000_000, 100_000_000_000_000_000,
        1_000_000_000_000_000_000, 10_000_000_000_000_000_000,
    ]

    /// Number of decimal digits of `v` (1 for 0).
    @inline(__always)
    static func decimalLength(_ v: UInt64) -> Int {
        let bits = 64 &- v.leadingZeroBitCount
        let estimate = (bits &* 1233) >> 12  // floor(log10(2^bits)), 0...19
        return powersOfTen.withUnsafeBufferPointer { powers in
            estimate &+ (v >= powers[estimate] ? 1 : 0)
        } | (v == 0 ? 1 : 0)
    }

    /// Writes exactly `count` digits of `value` at out[0..<count], in independent groups of
    /// four so the divisions do not form one long dependency chain.
    @inline(__always)
    static func writeDigits(_ value: UInt64, _ count: Int, to out: UnsafeMutablePointer<UInt8>) {
        digitPairs.withUnsafeBufferPointer { table in
            let pairs = UnsafeRawPointer(table.baseAddress!)
            @inline(__always) func pair(_ r: UInt32, _ at: UnsafeMutablePointer<UInt8>) {
                UnsafeMutableRawPointer(at).storeBytes(
                    of: pairs.loadUnaligned(fromByteOffset: Int(r) &* 2, as: UInt16.self), as: UInt16.self)
            }
            @inline(__always) func four(_ x: UInt32, _ at: UnsafeMutablePointer<UInt8>) {
                let high = x / 100
                pair(high, at)
                pair(x &- high &* 100, at + 2)
            }
            var rest = value
            var end = count
            while end > 8 {
                let q = rest / 100_000_000
                let chunk = UInt32(truncatingIfNeeded: rest &- q &* 100_000_000)
                let high = chunk / 10000
                four(high, out + (end &- 8))
                four(chunk &- high &* 10000, out + (end &- 4))
                end &-= 8
                rest = q
            }
            var small = UInt32(truncatingIfNeeded: rest)
            while end >= 4 {
                let q = small / 10000
                four(small &- q &* 10000, out + (end &- 4))
                end &-= 4
                small = q
            }
            if end >= 2 {
                let q = small / 100
                pair(small &- q &* 100, out + (end &- 2))
                end &-= 2
                small = q
            }
            if end == 1 { out[0] = UInt8(truncatingIfNeeded: small) &+ JSONByte.zero }
        }
    }

    /// Lays out digits × 10^exponent (digits > 0).
    @inline(__always)
    static func layout(_ digits: UInt64, _ exponent: Int, positional: Bool, to out: UnsafeMutablePointer<UInt8>) -> Int {
        let count = decimalLength(digits)
        let scientific = exponent &+ count &- 1  // value = d.ddd × 10^scientific
        if positional && scientific >= -4 {
            if scientific >= 0 {
                let integerDigits = scientific &+ 1
                if count <= integerDigits {
                    writeDigits(digits, count, to: out)
                    var k = count
                    while k < integerDigits {
                        out[k] = JSONByte.zero
                        k &+= 1
                    }
                    out[k] = JSONByte.dot
                    out[k &+ 1] = JSONByte.zero
                    return k &+ 2
                }
                // Digits at out[1...count], then the integer digits move left over the gap.
                writeDigits(digits, count, to: out + 1)
                for k in 0..<integerDigits { out[k] = out[k &+ 1] }
                out[integerDigits] = JSONByte.dot
                return count &+ 1
            }
            out[0] = JSONByte.zero
            out[1] = JSONByte.dot
            var k = 2
            let zeros = -scientific &- 1
            while k < zeros &+ 2 {
                out[k] = JSONByte.zero
                k &+= 1
            }
            writeDigits(digits, count, to: out + k)
            return k &+ count
        }
        writeDigits(digits, count, to: out + 1)
        out[0] = out[1]
        var k = 1
        if count > 1 {
            out[1] = JSONByte.dot
            k = count &+ 1
        }
        out[k] = JSONByte.lowerE
        out[k &+ 1] = scientific < 0 ? JSONByte.minus : JSONByte.plus
        k &+= 2
        var e = Int(scientific.magnitude)
        if e >= 100 {
            out[k] = UInt8(truncatingIfNeeded: e / 100) &+ JSONByte.zero
            e %= 100
            k &+= 1
        }
        out[k] = UInt8(truncatingIfNeeded: e / 10) &+ JSONByte.zero
        out[k &+ 1] = UInt8(truncatingIfNeeded: e % 10) &+ JSONByte.zero
        return k &+ 2
    }

    // MARK: Ryu helpers

    @inline(__always) static func pow5bits(_ e: Int32) -> Int32 { ((e &* 1_217_359) >> 19) &+ 1 }
    @inline(__always) static func log10Pow2(_ e: Int32) -> Int32 { (e &* 78913) >> 18 }
    @inline(__always) static func log10Pow5(_ e: Int32) -> Int32 { (e &* 732_923) >> 20 }

    @inline(__always)
    static func pow5Factor(_ value: UInt64) -> Int32 {
        var v = value
        var count: Int32 = 0
        while v % 5 == 0 {
            v /= 5
            count += 1
        }
        return count
    }

    @inline(__always) static func multipleOfPowerOf5(_ value: UInt64, _ p: Int32) -> Bool { pow5Factor(value) >= p }
    @inline(__always) static func multipleOfPowerOf2(_ value: UInt64, _ p: Int32) -> Bool {
        value & ((1 << UInt64(p)) &- 1) == 0
    }

    // MARK: Float (Ryu f2s)

    @inline(__always)
    static func mulShift32(_ m: UInt32, _ factor: UInt64, _ shift: Int32) -> UInt32 {
        let bits0 = UInt64(m) &* (factor & 0xFFFF_FFFF)
        let bits1 = UInt64(m) &* (factor >> 32)
        let sum = (bits0 >> 32) &+ bits1
        return UInt32(truncatingIfNeeded: sum >> UInt64(truncatingIfNeeded: shift &- 32))
    }

    /// The shortest decimal (digits, exponent) of a finite nonzero Float's magnitude.
    @inline(__always)
    static func float32Decimal(_ bits: UInt32) -> (UInt32, Int32) {
        let ieeeMantissa = bits & 0x7F_FFFF
        let ieeeExponent = (bits >> 23) & 0xFF
        let e2: Int32
        let m2: UInt32
        if ieeeExponent == 0 {
            e2 = 1 - 127 - 23 - 2
            m2 = ieeeMantissa
        } else {
            e2 = Int32(ieeeExponent) - 127 - 23 - 2
            m2 = (1 << 23) | ieeeMantissa
        }
        let acceptBounds = m2 & 1 == 0
        let mv = 4 &* m2
        let mp = 4 &* m2 &+ 2
        let mmShift: UInt32 = ieeeMantissa != 0 || ieeeExponent <= 1 ? 1 : 0
        let mm = 4 &* m2 &- 1 &- mmShift

        var vr: UInt32, vp: UInt32, vm: UInt32
        let e10: Int32
        var vmIsTrailingZeros = false
        var vrIsTrailingZeros = false
        var lastRemovedDigit: UInt32 = 0
        let inverse = RyuTables.floatPow5InvSplit
        let forward = RyuTables.floatPow5Split
        if e2 >= 0 {
            let q = log10Pow2(e2)
            e10 = q
            let k = 59 &+ pow5bits(q) &- 1
            let i = q &+ k &- e2
            vr = mulShift32(mv, inverse[Int(q)], i)
            vp = mulShift32(mp, inverse[Int(q)], i)
            vm = mulShift32(mm, inverse[Int(q)], i)
            if q != 0 && (vp &- 1) / 10 <= vm / 10 {
                // One removed digit is needed even when the loop below does not run.
                let l = 59 &+ pow5bits(q &- 1) &- 1
                lastRemovedDigit = mulShift32(mv, inverse[Int(q &- 1)], q &- 1 &+ l &- e2) % 10
            }
            if q <= 9 {
                // Only one of mp, mv and mm can be a multiple of 5, if any.
                if mv % 5 == 0 {
                    vrIsTrailingZeros = multipleOfPowerOf5(UInt64(mv), q)
                } else if acceptBounds {
                    vmIsTrailingZeros = multipleOfPowerOf5(UInt64(mm), q)
                } else if multipleOfPowerOf5(UInt64(mp), q) {
                    vp &-= 1
                }
            }
        } else {
            let q = log10Pow5(-e2)
            e10 = q &+ e2
            let i = 0 &- e2 &- q
            let k = pow5bits(i) &- 61
            var j = q &- k
            vr = mulShift32(mv, forward[Int(i)], j)
            vp = mulShift32(mp, forward[Int(i)], j)
            vm = mulShift32(mm, forward[Int(i)], j)
            if q != 0 && (vp &- 1) / 10 <= vm / 10 {
                j = q &- 1 &- (pow5bits(i &+ 1) &- 61)
                lastRemovedDigit = mulShift32(mv, forward[Int(i &+ 1)], j) % 10
            }
            if q <= 1 {
                // mv = 4 * m2 has at least two trailing zero bits.
                vrIsTrailingZeros = true
                if acceptBounds {
                    vmIsTrailingZeros = mmShift == 1
                } else {
                    vp &-= 1
                }
            } else if q < 31 {
                vrIsTrailingZeros = multipleOfPowerOf2(UInt64(mv), q - 1)
            }
        }

        var removed: Int32 = 0
        let output: UInt32
        if vmIsTrailingZeros || vrIsTrailingZeros {
            while vp / 10 > vm / 10 {
                vmIsTrailingZeros = vmIsTrailingZeros && vm % 10 == 0
                vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit == 0
                lastRemovedDigit = vr % 10
                vr /= 10
                vp /= 10
                vm /= 10
                removed &+= 1
            }
            if vmIsTrailingZeros {
                while vm % 10 == 0 {
                    vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit == 0
                    lastRemovedDigit = vr % 10
                    vr /= 10
                    vp /= 10
                    vm /= 10
                    removed &+= 1
                }
            }
            if vrIsTrailingZeros && lastRemovedDigit == 5 && vr % 2 == 0 {
                lastRemovedDigit = 4  // exactly ...50..0: round to even
            }
            let roundUp = (vr == vm && (!acceptBounds || !vmIsTrailingZeros)) || lastRemovedDigit >= 5
            output = vr &+ (roundUp ? 1 : 0)
        } else {
            while vp / 10 > vm / 10 {
                lastRemovedDigit = vr % 10
                vr /= 10
                vp /= 10
                vm /= 10
                removed &+= 1
            }
            output = vr &+ (vr == vm || lastRemovedDigit >= 5 ? 1 : 0)
        }
        return (output, e10 &+ removed)
    }

    // MARK: Double (Ryu d2s)

    @inline(__always)
    static func mulShift64(_ m: UInt64, _ low: UInt64, _ high: UInt64, _ j: Int32) -> UInt64 {
        let b0 = m.multipliedFullWidth(by: low)
        let b2 = m.multipliedFullWidth(by: high)
        let (sumLow, carry) = b2.low.addingReportingOverflow(b0.high)
        let sumHigh = b2.high &+ (carry ? 1 : 0)
        let distance = UInt64(truncatingIfNeeded: j &- 64)  // 0 < distance < 64
        return (sumHigh << (64 &- distance)) | (sumLow >> distance)
    }

    /// The shortest decimal (digits, exponent) of a finite nonzero Double's magnitude.
    @inline(__always)
    static func float64Decimal(_ bits: UInt64) -> (UInt64, Int32) {
        let ieeeMantissa = bits & ((1 << 52) - 1)
        let ieeeExponent = UInt32((bits >> 52) & 0x7FF)
        let e2: Int32
        let m2: UInt64
        if ieeeExponent == 0 {
            e2 = 1 - 1023 - 52 - 2
            m2 = ieeeMantissa
        } else {
            e2 = Int32(ieeeExponent) - 1023 - 52 - 2
            m2 = (1 << 52) | ieeeMantissa
        }
        let acceptBounds = m2 & 1 == 0
        let mv = 4 &* m2
        let mmShift: UInt64 = ieeeMantissa != 0 || ieeeExponent <= 1 ? 1 : 0

        var vr: UInt64, vp: UInt64, vm: UInt64
        let e10: Int32
        var vmIsTrailingZeros = false
        var vrIsTrailingZeros = false
        if e2 >= 0 {
            let q = log10Pow2(e2) - (e2 > 3 ? 1 : 0)
            e10 = q
            let k = 125 &+ pow5bits(q) &- 1
            let i = q &+ k &- e2
            let low = RyuTables.doublePow5InvSplit[2 * Int(q)]
            let high = RyuTables.doublePow5InvSplit[2 * Int(q) + 1]
            vr = mulShift64(mv, low, high, i)
            vp = mulShift64(mv &+ 2, low, high, i)
            vm = mulShift64(mv &- 1 &- mmShift, low, high, i)
            if q <= 21 {
                // Only one of mp, mv and mm can be a multiple of 5, if any.
                if mv % 5 == 0 {
                    vrIsTrailingZeros = multipleOfPowerOf5(mv, q)
                } else if acceptBounds {
                    vmIsTrailingZeros = multipleOfPowerOf5(mv - 1 - mmShift, q)
                } else if multipleOfPowerOf5(mv + 2, q) {
                    vp &-= 1
                }
            }
        } else {
            let q = log10Pow5(-e2) - (-e2 > 1 ? 1 : 0)
            e10 = q &+ e2
            let i = 0 &- e2 &- q
            let k = pow5bits(i) &- 125
            let j = q &- k
            let low = RyuTables.doublePow5Split[2 * Int(i)]
            let high = RyuTables.doublePow5Split[2 * Int(i) + 1]
            vr = mulShift64(mv, low, high, j)
            vp = mulShift64(mv &+ 2, low, high, j)
            vm = mulShift64(mv &- 1 &- mmShift, low, high, j)
            if q <= 1 {
                // mv = 4 * m2 has at least two trailing zero bits.
                vrIsTrailingZeros = true
                if acceptBounds {
                    vmIsTrailingZeros = mmShift == 1
                } else {
                    vp &-= 1
                }
            } else if q < 63 {
                vrIsTrailingZeros = multipleOfPowerOf2(mv, q)
            }
        }

        var removed: Int32 = 0
        var lastRemovedDigit: UInt64 = 0
        let output: UInt64
        if vmIsTrailingZeros || vrIsTrailingZeros {
            while vp / 10 > vm / 10 {
                vmIsTrailingZeros = vmIsTrailingZeros && vm % 10 == 0
                vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit == 0
                lastRemovedDigit = vr % 10
                vr /= 10
                vp /= 10
                vm /= 10
                removed &+= 1
            }
            if vmIsTrailingZeros {
                while vm % 10 == 0 {
                    vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit == 0
                    lastRemovedDigit = vr % 10
                    vr /= 10
                    vp /= 10
                    vm /= 10
                    removed &+= 1
                }
            }
            if vrIsTrailingZeros && lastRemovedDigit == 5 && vr % 2 == 0 {
                lastRemovedDigit = 4  // exactly ...50..0: round to even
            }
            let roundUp = (vr == vm && (!acceptBounds || !vmIsTrailingZeros)) || lastRemovedDigit >= 5
            output = vr &+ (roundUp ? 1 : 0)
        } else {
            // Common case: remove two digits at a time while possible, then one.
            var roundUp = false
            while vp / 100 > vm / 100 {
                roundUp = vr % 100 >= 50
                vr /= 100
                vp /= 100
                vm /= 100
                removed &+= 2
            }
            while vp / 10 > vm / 10 {
                roundUp = vr % 10 >= 5
                vr /= 10
                vp /= 10
                vm /= 10
                removed &+= 1
            }
            output = vr &+ (vr == vm || roundUp ? 1 : 0)
        }
        return (output, e10 &+ removed)
    }
}
