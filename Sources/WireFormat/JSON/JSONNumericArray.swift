#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An array (possibly nested) whose leaves are all numbers or all booleans, as the parser
/// found it: a byte range of the retained input plus its shape, validated while parsing.
/// Nothing is converted until ``decode(into:)`` writes the leaves, in document (row-major)
/// order, into a typed buffer.
public final class JSONNumericArray: Sendable {
    public enum ElementKind: Sendable, Equatable {
        case numbers
        case booleans
        /// No leaves (`[]`, `[[], []]`); decodes into a buffer of any element type.
        case empty
    }

    let source: JSONSource
    /// Offset of `[` and of the byte after the matching `]`.
    let start: Int
    let end: Int

    /// Dimensions, outermost first: `[[1,2,3],[4,5,6]]` has shape `[2, 3]`, `[]` has `[0]`,
    /// `[[]]` has `[1, 0]`. Meaningful only when ``isRagged`` is false; for a ragged array it
    /// holds the lengths of the first array met at each level.
    public let shape: [Int]
    /// True when arrays at one level differ in length, or one level holds both arrays and
    /// scalars (`[[1,2],[3]]`, `[1,[2]]`). ``decode(into:)`` still writes all leaves in
    /// order; checking the shape is the caller's business.
    public let isRagged: Bool
    /// Number of leaves (scalars).
    public let count: Int
    public let elementKind: ElementKind
    /// Every leaf is a number written without fraction or exponent (`[1, -2]`, not `[1.0]`).
    public let allIntegerLiterals: Bool
    /// Some leaf is `NaN`, `Infinity` or `-Infinity` (only with
    /// ``JSONParser/Options/allowNonFiniteNumbers``).
    public let containsNonFinite: Bool

    init(source: JSONSource, start: Int, end: Int, shape: [Int], isRagged: Bool, count: Int,
         elementKind: ElementKind, allIntegerLiterals: Bool, containsNonFinite: Bool) {
        self.source = source
        self.start = start
        self.end = end
        self.shape = shape
        self.isRagged = isRagged
        self.count = count
        self.elementKind = elementKind
        self.allIntegerLiterals = allIntegerLiterals
        self.containsNonFinite = containsNonFinite
    }

    /// Byte offset of the opening `[` in the parsed input.
    public var offset: Int { start }
    /// Length in bytes of the array's text.
    public var byteCount: Int { end - start }
    /// The array's text as written.
    public var text: String { source.text(start, end) }

    /// Converts every leaf into `buffer`, which must hold exactly ``count`` elements.
    ///
    /// - Float / Double: correctly rounded from the decimal text (Float directly, not via
    ///   Double). A finite literal beyond the type's range is an error; `NaN` / `Infinity`
    ///   tokens decode to NaN / infinities.
    /// - Integers: the value must be integral (`3`, `3.0`, `3e2`; not `3.5`) and in range;
    ///   otherwise the error names the value and its offset. Tokens are an error.
    /// - Bool: only arrays of `true` / `false`; numbers are rejected, and booleans do not
    ///   decode into numeric types.
    public func decode<T: JSONNumericElement>(into buffer: UnsafeMutableBufferPointer<T>) throws(JSONError) {
        try T._jsonDecode(self, into: buffer)
    }

    /// Decodes into a new array (see ``decode(into:)``).
    public func decode<T: JSONNumericElement>(as type: T.Type = T.self) throws(JSONError) -> [T] {
        var failure: JSONError?
        let values = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(JSONError) {
                // Every element type is a trivial numeric type, so writing through the
                // uninitialized memory is fine.
                try T._jsonDecode(self, into: buffer)
                initialized = buffer.count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return values
    }

    /// The top-level elements, boxed: numbers and booleans as values, sub-arrays as numeric
    /// arrays. For small arrays such as shapes; tensors should use ``decode(into:)``.
    public var elements: [JSONValue] {
        source.withBytes { buffer in
            var parser = JSONParserCore(source: source, buffer: buffer,
                                options: .init(maxDepth: 1000, allowNonFiniteNumbers: true))
            defer { parser.release() }
            var result: [JSONValue] = []
            parser.i = start + 1
            while true {
                parser.skipWhitespace()
                let c = parser.p[parser.i]
                if c == JSONByte.closeBracket { break }
                if c == JSONByte.comma {
                    parser.i += 1
                    continue
                }
                // Already validated: none of these can fail or come back generic.
                guard let value = try? parser.parseValue() else { break }
                result.append(value)
            }
            return result
        }
    }
}

// MARK: - Element types

/// Element types a numeric array decodes into and ``JSONWriter`` writes tensors of:
/// `Float`, `Double`, `Int8` ... `Int64`, `UInt8` ... `UInt64`, `Int` and `Bool`.
/// The underscored requirements are implementation hooks, not API.
public protocol JSONNumericElement: Sendable {
    /// The data type name used in error messages: "float32", "int64", "bool", ...
    static var jsonTypeName: String { get }
    static func _jsonDecode(_ array: JSONNumericArray, into buffer: UnsafeMutableBufferPointer<Self>) throws(JSONError)
    static func _jsonConvert(_ number: JSONNumber) throws(JSONError) -> Self
    static func _jsonWrite(_ buffer: UnsafeBufferPointer<Self>, shape: [Int]?, to writer: inout JSONWriter) throws(JSONError)
}

/// Conversion of one validated token, shared by array decoding and scalar conversion.
protocol JSONTokenDecodable: JSONNumericElement {
    /// True for Bool (decodes arrays of booleans), false for numeric types.
    static var decodesBooleans: Bool { get }
    /// Converts the token starting at `p[i]` and moves `i` past it. The token is valid and
    /// followed by at least one byte that cannot continue it; bytes before `limit` may be
    /// read.
    static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Self
}

extension JSONTokenDecodable {
    public static func _jsonDecode(_ array: JSONNumericArray, into buffer: UnsafeMutableBufferPointer<Self>) throws(JSONError) {
        try JSONNumericDecoding.decode(array, into: buffer)
    }

    public static func _jsonConvert(_ number: JSONNumber) throws(JSONError) -> Self {
        try JSONNumericDecoding.convert(number)
    }
}

extension Float: JSONTokenDecodable {
    public static var jsonTypeName: String { "float32" }
    static var decodesBooleans: Bool { false }
    @inline(__always)
    static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Float {
        let start = i
        let literal = JSONDecimalLiteral.scan(p, &i, limit)
        return try literal.floatValue(p, start, i)
    }
}

extension Double: JSONTokenDecodable {
    public static var jsonTypeName: String { "float64" }
    static var decodesBooleans: Bool { false }
    @inline(__always)
    static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Double {
        let start = i
        let literal = JSONDecimalLiteral.scan(p, &i, limit)
        return try literal.doubleValue(p, start, i)
    }
}

extension Bool: JSONTokenDecodable {
    public static var jsonTypeName: String { "bool" }
    static var decodesBooleans: Bool { true }
    @inline(__always)
    static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Bool {
        if p[i] == JSONByte.lowerT {
            i += 4
            return true
        }
        if p[i] == JSONByte.lowerF {
            i += 5
            return false
        }
        throw JSONError("a number cannot be converted to bool", offset: i)
    }
}

extension Int8: JSONTokenDecodable {
    public static var jsonTypeName: String { "int8" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Int8 {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension Int16: JSONTokenDecodable {
    public static var jsonTypeName: String { "int16" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Int16 {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension Int32: JSONTokenDecodable {
    public static var jsonTypeName: String { "int32" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Int32 {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension Int64: JSONTokenDecodable {
    public static var jsonTypeName: String { "int64" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Int64 {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension Int: JSONTokenDecodable {
    public static var jsonTypeName: String { "int64" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> Int {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension UInt8: JSONTokenDecodable {
    public static var jsonTypeName: String { "uint8" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> UInt8 {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension UInt16: JSONTokenDecodable {
    public static var jsonTypeName: String { "uint16" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> UInt16 {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension UInt32: JSONTokenDecodable {
    public static var jsonTypeName: String { "uint32" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> UInt32 {
        try JSONIntegerToken.parse(p, &i)
    }
}

extension UInt64: JSONTokenDecodable {
    public static var jsonTypeName: String { "uint64" }
    static var decodesBooleans: Bool { false }
    @inline(__always) static func parseToken(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) throws(JSONError) -> UInt64 {
        try JSONIntegerToken.parse(p, &i)
    }
}

// MARK: - Decoding loop

enum JSONNumericDecoding {
    static func checkKind<T: JSONTokenDecodable>(_ array: JSONNumericArray, _: T.Type) throws(JSONError) {
        switch array.elementKind {
        case .empty: return
        case .numbers where T.decodesBooleans:
            throw JSONError("an array of numbers cannot be decoded as bool", offset: array.start)
        case .booleans where !T.decodesBooleans:
            throw JSONError("an array of booleans cannot be decoded as \(T.jsonTypeName)", offset: array.start)
        default: return
        }
    }

    static func decode<T: JSONTokenDecodable>(_ array: JSONNumericArray, into buffer: UnsafeMutableBufferPointer<T>) throws(JSONError) {
        guard buffer.count == array.count else {
            throw JSONError("the array has \(array.count) elements but the \(T.jsonTypeName) buffer holds \(buffer.count)",
                            offset: array.start)
        }
        try checkKind(array, T.self)
        guard array.count > 0, let out = buffer.baseAddress else { return }
        let count = array.count
        try array.source.withBytes { (bytes) throws(JSONError) in
            let p = bytes.baseAddress!
            var i = array.start
            let end = array.end
            var k = 0
            while i < end {
                let c = p[i]
                // Whitespace, ',', '[' and ']' separate tokens; every token starts above ','.
                if c <= JSONByte.comma || c == JSONByte.openBracket || c == JSONByte.closeBracket {
                    i += 1
                    continue
                }
                guard k < count else { break }
                out[k] = try T.parseToken(p, &i, end)
                k += 1
            }
        }
    }

    /// Scalar conversion: the literal may end the input, so convert a terminated copy.
    static func convert<T: JSONTokenDecodable>(_ number: JSONNumber) throws(JSONError) -> T {
        if T.decodesBooleans { throw JSONError("a number cannot be converted to bool", offset: number.offset) }
        return try number.withLiteral { (literal, length) throws(JSONError) -> T in
            let copy = UnsafeMutablePointer<UInt8>.allocate(capacity: length + 1)
            defer { copy.deallocate() }
            copy.initialize(from: literal, count: length)
            copy[length] = 0
            var i = 0
            do throws(JSONError) {
                return try T.parseToken(copy, &i, length + 1)
            } catch {
                throw JSONError(error.message, offset: number.offset + max(0, error.offset))
            }
        }
    }

    /// The token's text for messages, shortened if long.
    static func tokenText(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> String {
        let length = min(end - start, 40)
        let text = String(decoding: UnsafeBufferPointer(start: p + start, count: length), as: UTF8.self)
        return end - start > length ? text + "..." : text
    }
}

// MARK: - Floating point

/// A decimal literal reduced to at most 19 significant digits.
struct JSONDecimalLiteral {
    /// The first (up to) 19 significant digits.
    var mantissa: UInt64 = 0
    /// value ≈ mantissa × 10^exponent.
    var exponent = 0
    var negative = false
    /// Nonzero digits beyond the 19th were dropped (the value is slightly above mantissa×10^exponent).
    var truncated = false
    /// 0 finite, 1 NaN, 2 infinity.
    var special: UInt8 = 0

    /// Scans a validated number token at `p[i]`, moving `i` past it. Bytes up to `limit`
    /// may be read in words.
    @inline(__always)
    static func scan(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int) -> JSONDecimalLiteral {
        var literal = JSONDecimalLiteral()
        var c = p[i]
        if c == JSONByte.minus {
            literal.negative = true
            i += 1
            c = p[i]
        }
        if c >= UInt8(ascii: "A") {  // NaN, Infinity
            if c == JSONByte.upperN {
                literal.special = 1
                i += 3
            } else {
                literal.special = 2
                i += 8
            }
            return literal
        }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        // Integer part: "0" or a nonzero digit and more digits.
        while true {
            let d = c &- JSONByte.zero
            guard d < 10 else { break }
            if digits < 19 {
                mantissa = mantissa &* 10 &+ UInt64(d)
                if mantissa != 0 { digits += 1 }
            } else {
                exponent += 1
                if d != 0 { literal.truncated = true }
            }
            i += 1
            c = p[i]
        }
        if c == JSONByte.dot {
            i += 1
            // Eight fraction digits at a time while they fit in the 19 kept digits.
            while digits <= 11 && i &+ 8 <= limit {
                let word = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                guard JSONSWAR.nonDigitBytes(word) == 0 else { break }
                let eight = JSONSWAR.eightDigits(word)
                if mantissa == 0 {
                    mantissa = eight
                    digits = eight == 0 ? 0 : FloatFormatting.decimalLength(eight)
                } else {
                    mantissa = mantissa &* 100_000_000 &+ eight
                    digits &+= 8
                }
                exponent &-= 8
                i &+= 8
            }
            c = p[i]
            while true {
                let d = c &- JSONByte.zero
                guard d < 10 else { break }
                if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(d)
                    if mantissa != 0 { digits += 1 }
                    exponent -= 1
                } else if d != 0 {
                    literal.truncated = true
                }
                i += 1
                c = p[i]
            }
        }
        if c | 0x20 == JSONByte.lowerE {
            i += 1
            c = p[i]
            var negativeExponent = false
            if c == JSONByte.minus || c == JSONByte.plus {
                negativeExponent = c == JSONByte.minus
                i += 1
                c = p[i]
            }
            var e = 0
            while true {
                let d = c &- JSONByte.zero
                guard d < 10 else { break }
                if e < 1_000_000 { e = e * 10 + Int(d) }
                i += 1
                c = p[i]
            }
            exponent += negativeExponent ? -e : e
        }
        literal.mantissa = mantissa
        literal.exponent = exponent
        return literal
    }

    /// 10^0 ... 10^64, each correctly rounded (exact up to 10^22).
    static let powersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32,
        1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47, 1e48,
        1e49, 1e50, 1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59, 1e60, 1e61, 1e62, 1e63, 1e64,
    ]

    /// 10^-0 ... 10^-64, each correctly rounded (none exact beyond 10^0).
    static let negativePowersOfTen: [Double] = [
        1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
        1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22, 1e-23, 1e-24, 1e-25, 1e-26, 1e-27,
        1e-28, 1e-29, 1e-30, 1e-31, 1e-32, 1e-33, 1e-34, 1e-35, 1e-36, 1e-37, 1e-38, 1e-39, 1e-40,
        1e-41, 1e-42, 1e-43, 1e-44, 1e-45, 1e-46, 1e-47, 1e-48, 1e-49, 1e-50, 1e-51, 1e-52, 1e-53,
        1e-54, 1e-55, 1e-56, 1e-57, 1e-58, 1e-59, 1e-60, 1e-61, 1e-62, 1e-63, 1e-64,
    ]

    /// The literal correctly rounded to Float.
    ///
    /// Fast path: x = mantissa ⊗ 10^exponent in Double has a relative error of at most about
    /// 3 Double ulps (mantissa conversion, correctly rounded table entry, one multiply;
    /// truncated digits add < 0.02 ulp). Rounding x to Float drops 29 bits; unless those bits lie within 8
    /// ulps of the halfway point, the exact value rounds to the same Float. Otherwise (about
    /// 1 in 2^24 random inputs), and outside the normal Float range, strtof decides.
    @inline(__always)
    func floatValue(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) throws(JSONError) -> Float {
        if special != 0 {
            if special == 1 { return .nan }
            return negative ? -.infinity : .infinity
        }
        if mantissa == 0 { return negative ? -0.0 : 0.0 }
        if exponent >= -64 && exponent <= 38 {
            let m = Double(mantissa)
            let x = m * (exponent >= 0 ? Self.powersOfTen[exponent] : Self.negativePowersOfTen[-exponent])
            if x >= 0x1p-126 && x <= 0x1.fffffep127 {
                let dropped = UInt32(truncatingIfNeeded: x.bitPattern) & 0x1FFF_FFFF
                if dropped &- (0x1000_0000 - 8) > 16 {
                    let f = Float(x)
                    return negative ? -f : f
                }
            }
        }
        return try JSONCNumbers.float(p, start, end)
    }

    #if arch(x86_64)
    /// 10^0 ... 10^27, all exact in Float80's 64-bit significand.
    static let extendedPowersOfTen: [Float80] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27,
    ]
    #endif

    /// The literal correctly rounded to Double.
    ///
    /// Exact (Clinger) path when mantissa < 2^53 and |exponent| <= 22: one IEEE operation on
    /// exact operands. On x86-64, otherwise for |exponent| <= 27: one Float80 operation on
    /// exact operands (error <= 0.5 Float80 ulp, plus < 19 ulps if digits were truncated);
    /// rounding to Double drops 11 bits, decided unless they lie within the error margin of
    /// halfway. Everything else goes to strtod.
    @inline(__always)
    func doubleValue(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) throws(JSONError) -> Double {
        if special != 0 {
            if special == 1 { return .nan }
            return negative ? -.infinity : .infinity
        }
        if mantissa == 0 { return negative ? -0.0 : 0.0 }
        if mantissa <= 1 << 53 && !truncated && exponent >= -22 && exponent <= 22 {
            let m = Double(mantissa)
            let x = exponent >= 0 ? m * Self.powersOfTen[exponent] : m / Self.powersOfTen[-exponent]
            return negative ? -x : x
        }
        #if arch(x86_64)
        if exponent >= -27 && exponent <= 27 {
            let m = Float80(mantissa)
            let x = exponent >= 0 ? m * Self.extendedPowersOfTen[exponent] : m / Self.extendedPowersOfTen[-exponent]
            if x >= 0x1p-1022 && x <= 0x1.fffffffffffffp1023 {
                let margin: UInt64 = truncated ? 48 : 4
                let dropped = x.significandBitPattern & 0x7FF
                if dropped &- (0x400 - margin) > 2 * margin {
                    let d = Double(x)
                    return negative ? -d : d
                }
            }
        }
        #endif
        return try JSONCNumbers.double(p, start, end)
    }
}

/// strtof / strtod in the C locale (so a process-wide locale with a decimal comma cannot
/// change the result). Both are correctly rounded in glibc.
enum JSONCNumbers {
    #if canImport(Glibc) || canImport(Musl)
    nonisolated(unsafe) static let cLocale = newlocale(Int32(1) << LC_NUMERIC, "C", nil)
    #endif

    @inline(never)
    static func float(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) throws(JSONError) -> Float {
        let value = withCLocale { UnsafeRawPointer(p + start).withMemoryRebound(to: CChar.self, capacity: end - start + 1) { strtof($0, nil) } }
        guard value.isFinite else {
            throw JSONError("value \(JSONNumericDecoding.tokenText(p, start, end)) is out of range for float32", offset: start)
        }
        return value
    }

    @inline(never)
    static func double(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) throws(JSONError) -> Double {
        let value = withCLocale { UnsafeRawPointer(p + start).withMemoryRebound(to: CChar.self, capacity: end - start + 1) { strtod($0, nil) } }
        guard value.isFinite else {
            throw JSONError("value \(JSONNumericDecoding.tokenText(p, start, end)) is out of range for float64", offset: start)
        }
        return value
    }

    @inline(__always)
    static func withCLocale<R>(_ body: () -> R) -> R {
        #if canImport(Glibc) || canImport(Musl)
        let previous = uselocale(cLocale)
        defer { uselocale(previous) }
        #endif
        return body()
    }
}

// MARK: - Integers

enum JSONIntegerToken {
    /// Parses a validated number token as an exact integer of type T.
    @inline(__always)
    static func parse<T: FixedWidthInteger>(_ p: UnsafePointer<UInt8>, _ i: inout Int) throws(JSONError) -> T {
        let start = i
        var negative = false
        if p[i] == JSONByte.minus {
            negative = true
            i += 1
        }
        var c = p[i]
        var magnitude: UInt64 = 0
        var overflow = false
        var d = c &- JSONByte.zero
        guard d < 10 else {
            // NaN / Infinity
            i += c == JSONByte.upperN ? 3 : 8
            throw JSONError("non-finite value \(JSONNumericDecoding.tokenText(p, start, i)) cannot be converted to \(T.jsonName)",
                            offset: start)
        }
        repeat {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(d))
            magnitude = sum
            overflow = overflow || o1 || o2
            i += 1
            c = p[i]
            d = c &- JSONByte.zero
        } while d < 10
        if c == JSONByte.dot || c | 0x20 == JSONByte.lowerE {
            (magnitude, overflow) = try integralValue(p, start, &i, T.self)
        }
        if negative {
            if !overflow && magnitude == 0 { return 0 }
            if T.isSigned && !overflow && magnitude <= UInt64(T.max) + 1 {
                return T(truncatingIfNeeded: 0 &- magnitude)
            }
        } else if !overflow && magnitude <= UInt64(T.max) {
            return T(truncatingIfNeeded: magnitude)
        }
        throw JSONError("value \(JSONNumericDecoding.tokenText(p, start, i)) is out of range for \(T.jsonName)", offset: start)
    }

    /// The magnitude of a literal with a fraction or exponent that must be an integer
    /// (`2.50e1` is 25; `2.5` is an error). Moves `i` past the token.
    @inline(never)
    static func integralValue<T: FixedWidthInteger>(
        _ p: UnsafePointer<UInt8>, _ start: Int, _ i: inout Int, _: T.Type
    ) throws(JSONError) -> (UInt64, Bool) {
        var k = start
        if p[k] == JSONByte.minus { k += 1 }
        let integerStart = k
        while JSONByte.isDigit(p[k]) { k += 1 }
        let integerEnd = k
        var fractionStart = k, fractionEnd = k
        if p[k] == JSONByte.dot {
            k += 1
            fractionStart = k
            while JSONByte.isDigit(p[k]) { k += 1 }
            fractionEnd = k
        }
        var exponent = 0
        if p[k] | 0x20 == JSONByte.lowerE {
            k += 1
            var negativeExponent = false
            if p[k] == JSONByte.minus || p[k] == JSONByte.plus {
                negativeExponent = p[k] == JSONByte.minus
                k += 1
            }
            while JSONByte.isDigit(p[k]) {
                if exponent < 1_000_000 { exponent = exponent * 10 + Int(p[k] - JSONByte.zero) }
                k += 1
            }
            if negativeExponent { exponent = -exponent }
        }
        i = k
        // The significant digits are integer digits followed by fraction digits; the value is
        // digits × 10^(exponent - fraction length). Walk them as one sequence.
        let total = (integerEnd - integerStart) + (fractionEnd - fractionStart)
        @inline(__always) func digit(_ index: Int) -> UInt8 {
            let integerCount = integerEnd - integerStart
            return index < integerCount ? p[integerStart + index] : p[fractionStart + index - integerCount]
        }
        var first = 0
        while first < total && digit(first) == JSONByte.zero { first += 1 }
        if first == total { return (0, false) }  // zero, whatever the exponent
        var last = total
        var scale = exponent - (fractionEnd - fractionStart)
        while digit(last - 1) == JSONByte.zero {
            last -= 1
            scale += 1
        }
        guard scale >= 0 else {
            throw JSONError("fractional value \(JSONNumericDecoding.tokenText(p, start, k)) cannot be converted to \(T.jsonName)",
                            offset: start)
        }
        if last - first + scale > 20 { return (0, true) }
        var magnitude: UInt64 = 0
        var overflow = false
        for index in first..<last {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit(index) - JSONByte.zero))
            magnitude = sum
            overflow = overflow || o1 || o2
        }
        for _ in 0..<scale {
            let (times10, o) = magnitude.multipliedReportingOverflow(by: 10)
            magnitude = times10
            overflow = overflow || o
        }
        return (magnitude, overflow)
    }
}

extension FixedWidthInteger {
    /// "int32", "uint8", ... for messages.
    static var jsonName: String { (Self.isSigned ? "int" : "uint") + String(Self.bitWidth) }
}
