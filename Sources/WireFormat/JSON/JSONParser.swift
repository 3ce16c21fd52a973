/// Parses JSON text (RFC 8259) into a ``JSONValue``.
///
/// - Numeric arrays (leaves all numbers or all booleans, any nesting) become
///   ``JSONValue/numericArray(_:)``: validated and measured (shape, raggedness, count) in the
///   same pass, never boxed. Other arrays become ``JSONValue/array(_:)``.
/// - The input is retained, not copied: numbers and numeric arrays refer to its bytes.
/// - Strings must be valid UTF-8 without raw control characters; all escapes are decoded,
///   including surrogate pairs (a lone surrogate is an error).
/// - Errors carry a message and the byte offset where parsing stopped.
public enum JSONParser {
    public struct Options: Sendable {
        public enum DuplicateKeys: Sendable {
            /// A key that repeats in one object is an error (the default).
            case reject
            /// The last value wins; the member keeps the position of the first occurrence.
            case lastWins
        }

        /// Maximum number of nested arrays and objects (the root counts as 1). Values above
        /// 1000 are treated as 1000 (the parser recurses once per level).
        public var maxDepth: Int
        /// Accept `NaN`, `Infinity` and `-Infinity` as numbers (TF Serving does). They decode
        /// into `Float` / `Double` only.
        public var allowNonFiniteNumbers: Bool
        public var duplicateKeys: DuplicateKeys

        public init(maxDepth: Int = 64, allowNonFiniteNumbers: Bool = false, duplicateKeys: DuplicateKeys = .reject) {
            self.maxDepth = maxDepth
            self.allowNonFiniteNumbers = allowNonFiniteNumbers
            self.duplicateKeys = duplicateKeys
        }
    }

    /// Parses `bytes`, keeping a reference to them (no copy).
    public static func parse(_ bytes: [UInt8], options: Options = Options()) throws(JSONError) -> JSONValue {
        try parse(bytes[...], options: options)
    }

    /// Parses `bytes`, keeping a reference to their storage (no copy). Offsets in errors,
    /// numbers and numeric arrays are relative to `bytes.startIndex`.
    public static func parse(_ bytes: ArraySlice<UInt8>, options: Options = Options()) throws(JSONError) -> JSONValue {
        guard bytes.count < Int(UInt32.max) else {
            throw JSONError("input of \(bytes.count) bytes is larger than the 4 GiB limit", offset: 0)
        }
        let source = JSONSource(bytes)
        return try source.withBytes { (buffer) throws(JSONError) -> JSONValue in
            var parser = JSONParserCore(source: source, buffer: buffer, options: options)
            defer { parser.release() }
            return try parser.parseDocument()
        }
    }

    public static func parse(_ text: String, options: Options = Options()) throws(JSONError) -> JSONValue {
        try parse(Array(text.utf8), options: options)
    }

    /// Parses a copy of `bytes` (for input in memory the caller reuses).
    public static func parse(copying bytes: UnsafeRawBufferPointer, options: Options = Options()) throws(JSONError) -> JSONValue {
        try parse(Array(bytes), options: options)
    }
}

// MARK: - Byte constants

enum JSONByte {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let newline = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let lowerE = UInt8(ascii: "e")
    static let upperN = UInt8(ascii: "N")
    static let upperI = UInt8(ascii: "I")
    static let lowerT = UInt8(ascii: "t")
    static let lowerF = UInt8(ascii: "f")
    static let lowerN = UInt8(ascii: "n")

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c &- zero < 10 }
    @inline(__always) static func isWhitespace(_ c: UInt8) -> Bool {
        c == space || c == newline || c == carriageReturn || c == tab
    }

    /// "'x'" for printable ASCII, "byte 0xNN" otherwise; for error messages.
    static func describe(_ c: UInt8) -> String {
        if c >= 0x21 && c < 0x7F { return "character '\(Character(Unicode.Scalar(c)))'" }
        let hex = String(c, radix: 16, uppercase: true)
        return "byte 0x" + (hex.count == 1 ? "0" + hex : hex)
    }
}

/// Eight bytes at a time, little-endian (the first byte is the lowest).
enum JSONSWAR {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highs: UInt64 = 0x8080_8080_8080_8080

    /// High bit set in each byte of `word` that is not an ASCII digit. Exact up to the first
    /// non-digit (a byte >= 0xFA may disturb the bytes after it, which callers ignore).
    @inline(__always)
    static func nonDigitBytes(_ word: UInt64) -> UInt64 {
        let highNibbles = (word & 0xF0F0_F0F0_F0F0_F0F0) ^ 0x3030_3030_3030_3030
        let lowNibbles = ((word &+ 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) ^ 0x3030_3030_3030_3030
        let v = highNibbles | lowNibbles
        return (((v & 0x7F7F_7F7F_7F7F_7F7F) &+ 0x7F7F_7F7F_7F7F_7F7F) | v) & highs
    }

    /// True if some byte is a quote, a backslash or a control character (< 0x20).
    @inline(__always)
    static func needsEscape(_ word: UInt64) -> Bool {
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let zeroInQuote = (quote &- ones) & ~quote
        let zeroInBackslash = (backslash &- ones) & ~backslash
        let control = (word &- ones &* 0x20) & ~word
        return (zeroInQuote | zeroInBackslash | control) & highs != 0
    }

    /// The value of eight ASCII digits, the first byte most significant.
    @inline(__always)
    static func eightDigits(_ word: UInt64) -> UInt64 {
        var v = word &- 0x3030_3030_3030_3030
        v = (v &* 10) &+ (v >> 8)
        v = ((v & 0x0000_00FF_0000_00FF) &* (100 &+ (1_000_000 << 32))
            &+ ((v >> 16) & 0x0000_00FF_0000_00FF) &* (1 &+ (10000 << 32))) >> 32
        return v
    }
}

// MARK: - Number syntax

enum JSONNumberScanner {
    /// Scans one JSON number (or, if allowed, `NaN` / `Infinity` / `-Infinity`) starting at
    /// `i`. Returns the index after it, or `-(k + 1)` when the byte at `k` breaks the grammar.
    /// `integerLiteral` is cleared if it has a fraction or exponent (or is a token),
    /// `nonFinite` set if it is a token.
    @inline(__always)
    static func scanNumber(
        _ p: UnsafePointer<UInt8>, _ start: Int, _ n: Int, allowNonFinite: Bool,
        integerLiteral: inout Bool, nonFinite: inout Bool
    ) -> Int {
        var i = start
        if p[i] == JSONByte.minus {
            i += 1
            guard i < n else { return -(i + 1) }
        }
        var c = p[i]
        if c == JSONByte.zero {
            i += 1
            if i < n && JSONByte.isDigit(p[i]) { return -(i + 1) }  // leading zero
        } else if JSONByte.isDigit(c) {
            i = skipDigits(p, i + 1, n)
        } else if allowNonFinite {
            return scanNonFinite(p, start, i, n, integerLiteral: &integerLiteral, nonFinite: &nonFinite)
        } else {
            return -(i + 1)
        }
        guard i < n else { return i }
        c = p[i]
        if c == JSONByte.dot {
            integerLiteral = false
            i += 1
            guard i < n, JSONByte.isDigit(p[i]) else { return -(i + 1) }
            i = skipDigits(p, i + 1, n)
            guard i < n else { return i }
            c = p[i]
        }
        if c | 0x20 == JSONByte.lowerE {
            integerLiteral = false
            i += 1
            guard i < n else { return -(i + 1) }
            if p[i] == JSONByte.plus || p[i] == JSONByte.minus {
                i += 1
                guard i < n else { return -(i + 1) }
            }
            guard JSONByte.isDigit(p[i]) else { return -(i + 1) }
            i = skipDigits(p, i + 1, n)
        }
        return i
    }

    /// The index of the first non-digit at or after `i` (or `n`), eight bytes at a time.
    @inline(__always)
    static func skipDigits(_ p: UnsafePointer<UInt8>, _ start: Int, _ n: Int) -> Int {
        var i = start
        while i &+ 8 <= n {
            let word = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
            let nonDigits = JSONSWAR.nonDigitBytes(word)
            if nonDigits != 0 { return i &+ (nonDigits.trailingZeroBitCount >> 3) }
            i &+= 8
        }
        while i < n && JSONByte.isDigit(p[i]) { i &+= 1 }
        return i
    }

    @inline(never)
    static func scanNonFinite(
        _ p: UnsafePointer<UInt8>, _ start: Int, _ i: Int, _ n: Int,
        integerLiteral: inout Bool, nonFinite: inout Bool
    ) -> Int {
        let negative = i > start
        let token: StaticString = p[i] == JSONByte.upperN && !negative ? "NaN" : "Infinity"
        let length = token.utf8CodeUnitCount
        for k in 0..<length {
            guard i + k < n, p[i + k] == token.utf8Start[k] else { return -(i + k + 1) }
        }
        integerLiteral = false
        nonFinite = true
        return i + length
    }

    /// Scans without flags (for validating a literal given in code).
    static func scanNumber(_ p: UnsafePointer<UInt8>, _ start: Int, _ n: Int, allowNonFinite: Bool) -> Int {
        var integer = true, nonFinite = false
        return scanNumber(p, start, n, allowNonFinite: allowNonFinite, integerLiteral: &integer, nonFinite: &nonFinite)
    }
}

// MARK: - JSONParserCore

struct JSONParserCore {
    let source: JSONSource
    let p: UnsafePointer<UInt8>
    let n: Int
    var i = 0
    let maxDepth: Int
    let allowNonFinite: Bool
    let duplicateKeys: JSONParser.Options.DuplicateKeys
    /// Containers open around the current position.
    var depth = 0

    /// Start offsets of arrays a failed numeric scan proved non-numeric, in document order;
    /// the generic parse takes them as generic without scanning them again.
    var genericStarts: [Int] = []
    var genericCursor = 0

    /// Per-level scratch of the numeric scan (maxDepth + 1 entries each).
    let levelDims: UnsafeMutablePointer<Int>
    let levelCounts: UnsafeMutablePointer<Int>
    let levelOpen: UnsafeMutablePointer<Int>
    let levelKind: UnsafeMutablePointer<UInt8>
    let firstLeafPath: UnsafeMutablePointer<Int>

    /// Decoded bytes of strings with escapes.
    var scratch: [UInt8] = []

    init(source: JSONSource, buffer: UnsafeBufferPointer<UInt8>, options: JSONParser.Options) {
        self.source = source
        // An empty buffer may have no base address; point at a byte that is never read.
        self.p = buffer.baseAddress ?? UnsafePointer(JSONParserCore.emptyByte)
        self.n = buffer.count
        self.maxDepth = max(1, min(options.maxDepth, 1000))
        self.allowNonFinite = options.allowNonFiniteNumbers
        self.duplicateKeys = options.duplicateKeys
        let levels = maxDepth + 2
        levelDims = .allocate(capacity: levels * 4)
        levelCounts = levelDims + levels
        levelOpen = levelDims + 2 * levels
        firstLeafPath = levelDims + 3 * levels
        levelKind = .allocate(capacity: levels)
    }

    nonisolated(unsafe) static let emptyByte = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)

    func release() {
        levelDims.deallocate()
        levelKind.deallocate()
    }

    // MARK: Errors

    func error(_ message: String, at offset: Int) -> JSONError { JSONError(message, offset: offset) }

    func unexpected(at k: Int, expecting: String? = nil) -> JSONError {
        guard k < n else {
            return JSONError("unexpected end of input" + (expecting.map { ", expected \($0)" } ?? ""), offset: k)
        }
        return JSONError("unexpected \(JSONByte.describe(p[k]))" + (expecting.map { ", expected \($0)" } ?? ""), offset: k)
    }

    func depthError(at k: Int) -> JSONError {
        JSONError("maximum nesting depth \(maxDepth) exceeded", offset: k)
    }

    func numberError(_ code: Int) -> JSONError {
        let k = -code - 1
        if k < n, JSONByte.isDigit(p[k]), k > 0, p[k - 1] == JSONByte.zero {
            return JSONError("invalid number: leading zeros are not allowed", offset: k - 1)
        }
        return unexpected(at: k, expecting: "a digit")
    }

    // MARK: Document

    @inline(__always)
    mutating func skipWhitespace() {
        while i < n && JSONByte.isWhitespace(p[i]) { i += 1 }
    }

    mutating func parseDocument() throws(JSONError) -> JSONValue {
        skipWhitespace()
        guard i < n else { throw error(n == 0 ? "empty input" : "no JSON value, only whitespace", at: i) }
        let value = try parseValue()
        skipWhitespace()
        guard i == n else { throw error("unexpected \(JSONByte.describe(p[i])) after the JSON value", at: i) }
        return value
    }

    mutating func parseValue() throws(JSONError) -> JSONValue {
        guard i < n else { throw unexpected(at: i, expecting: "a value") }
        switch p[i] {
        case JSONByte.openBrace:
            return try parseObject()
        case JSONByte.openBracket:
            if genericCursor < genericStarts.count && genericStarts[genericCursor] == i {
                genericCursor += 1
                return try parseGenericArray()
            }
            let start = i
            if let array = try scanNumericArray() { return .numericArray(array) }
            // The scan stored the non-numeric arrays it was inside; the first is this one.
            i = start
            genericCursor = 1
            return try parseGenericArray()
        case JSONByte.quote:
            return .string(try parseString())
        case JSONByte.lowerT:
            try expectLiteral("true")
            return .bool(true)
        case JSONByte.lowerF:
            try expectLiteral("false")
            return .bool(false)
        case JSONByte.lowerN:
            try expectLiteral("null")
            return .null
        default:
            let start = i
            var integer = true, nonFinite = false
            let end = JSONNumberScanner.scanNumber(p, i, n, allowNonFinite: allowNonFinite,
                                                   integerLiteral: &integer, nonFinite: &nonFinite)
            guard end >= 0 else {
                if -end - 1 == start { throw unexpected(at: start, expecting: "a value") }
                throw numberError(end)
            }
            i = end
            return .number(JSONNumber(source: source, start: start, end: end))
        }
    }

    mutating func expectLiteral(_ word: StaticString) throws(JSONError) {
        let length = word.utf8CodeUnitCount
        for k in 0..<length where i + k >= n || p[i + k] != word.utf8Start[k] {
            throw k == 0 ? unexpected(at: i + k, expecting: "a value") : error("invalid literal, expected '\(word)'", at: i)
        }
        i += length
    }

    // MARK: Objects

    mutating func parseObject() throws(JSONError) -> JSONValue {
        depth += 1
        guard depth <= maxDepth else { throw depthError(at: i) }
        i += 1
        var object = JSONObject()
        skipWhitespace()
        if i < n && p[i] == JSONByte.closeBrace {
            i += 1
            depth -= 1
            return .object(object)
        }
        while true {
            guard i < n, p[i] == JSONByte.quote else { throw unexpected(at: i, expecting: "a string key") }
            let keyOffset = i
            let key = try parseString()
            skipWhitespace()
            guard i < n, p[i] == JSONByte.colon else { throw unexpected(at: i, expecting: "':' after the object key") }
            i += 1
            skipWhitespace()
            let value = try parseValue()
            if object.position(of: key) != nil {
                guard duplicateKeys == .lastWins else {
                    throw error("duplicate key \"\(Self.truncated(key))\" in object", at: keyOffset)
                }
                object[key] = value
            } else {
                object.append(key: key, value: value)
            }
            skipWhitespace()
            guard i < n else { throw unexpected(at: i, expecting: "',' or '}'") }
            if p[i] == JSONByte.comma {
                i += 1
                skipWhitespace()
                continue
            }
            guard p[i] == JSONByte.closeBrace else { throw unexpected(at: i, expecting: "',' or '}'") }
            i += 1
            depth -= 1
            return .object(object)
        }
    }

    static func truncated(_ text: String, limit: Int = 64) -> String {
        text.utf8.count <= limit ? text : String(text.prefix(limit)) + "..."
    }

    // MARK: Generic arrays

    mutating func parseGenericArray() throws(JSONError) -> JSONValue {
        depth += 1
        guard depth <= maxDepth else { throw depthError(at: i) }
        i += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if i < n && p[i] == JSONByte.closeBracket {
            i += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard i < n else { throw unexpected(at: i, expecting: "',' or ']'") }
            if p[i] == JSONByte.comma {
                i += 1
                continue
            }
            guard p[i] == JSONByte.closeBracket else { throw unexpected(at: i, expecting: "',' or ']'") }
            i += 1
            depth -= 1
            return .array(elements)
        }
    }

    // MARK: Numeric arrays

    /// Scans the array at `i` as a numeric array in one pass: validates it, counts leaves and
    /// measures the shape. Returns nil (with `genericStarts` set) as soon as an element rules
    /// it out: a string, object or null, or a mix of numbers and booleans. Syntax errors are
    /// thrown where they occur, as the generic parse would report them.
    mutating func scanNumericArray() throws(JSONError) -> JSONNumericArray? {
        let start = i
        let depthLimit = maxDepth - depth  // levels this array may nest, itself included
        guard depthLimit >= 1 else { throw depthError(at: i) }
        var level = 0
        var levelsSeen = 1
        levelDims[0] = -1
        levelCounts[0] = 0
        levelOpen[0] = start
        levelKind[0] = 0  // 0 unknown, 1 arrays, 2 scalars
        var leafKind: UInt8 = 0  // 0 none yet, 1 numbers, 2 booleans
        var firstLeafLevel = -1
        var ragged = false
        var integers = true
        var nonFinite = false
        var total = 0
        var expectValue = true
        var allowClose = true
        i += 1

        scan: while true {
            while i < n && JSONByte.isWhitespace(p[i]) { i += 1 }
            guard i < n else { throw unexpected(at: i, expecting: expectValue ? "a value" : "',' or ']'") }
            let c = p[i]
            if !expectValue {
                if c == JSONByte.comma {
                    i += 1
                    expectValue = true
                    allowClose = false
                    continue scan
                }
                guard c == JSONByte.closeBracket else { throw unexpected(at: i, expecting: "',' or ']'") }
            }
            if c == JSONByte.closeBracket {
                guard allowClose || !expectValue else { throw unexpected(at: i, expecting: "a value") }
                if levelDims[level] < 0 {
                    levelDims[level] = levelCounts[level]
                } else if levelDims[level] != levelCounts[level] {
                    ragged = true
                }
                i += 1
                if level == 0 { break scan }
                level -= 1
                expectValue = false
                continue scan
            }
            // A value.
            let kind: UInt8
            if c == JSONByte.openBracket {
                guard level + 2 <= depthLimit else { throw depthError(at: i) }
                if levelKind[level] == 0 { levelKind[level] = 1 } else if levelKind[level] != 1 { ragged = true }
                levelCounts[level] += 1
                level += 1
                if level == levelsSeen {
                    levelDims[level] = -1
                    levelKind[level] = 0
                    levelsSeen += 1
                }
                levelCounts[level] = 0
                levelOpen[level] = i
                i += 1
                allowClose = true
                continue scan
            } else if JSONByte.isDigit(c) || c == JSONByte.minus || (allowNonFinite && (c == JSONByte.upperN || c == JSONByte.upperI)) {
                var end = JSONNumberScanner.scanNumber(p, i, n, allowNonFinite: allowNonFinite,
                                                       integerLiteral: &integers, nonFinite: &nonFinite)
                guard end >= 0 else { throw numberError(end) }
                i = end
                kind = 1
                if leafKind == 1 && levelKind[level] == 2 {
                    // Hot loop: more numbers in the same innermost array ("1.5,2.5" or
                    // "1.5, 2.5"); anything else goes back to the general loop.
                    var run = 0
                    while i &+ 2 < n && p[i] == JSONByte.comma {
                        var j = i &+ 1
                        if p[j] == JSONByte.space { j &+= 1 }
                        let c = p[j]
                        guard JSONByte.isDigit(c) || c == JSONByte.minus else { break }
                        end = JSONNumberScanner.scanNumber(p, j, n, allowNonFinite: allowNonFinite,
                                                           integerLiteral: &integers, nonFinite: &nonFinite)
                        guard end >= 0 else { throw numberError(end) }
                        i = end
                        run &+= 1
                    }
                    levelCounts[level] &+= run
                    total &+= run
                }
            } else if c == JSONByte.lowerT {
                try expectLiteral("true")
                kind = 2
            } else if c == JSONByte.lowerF {
                try expectLiteral("false")
                kind = 2
            } else if c == JSONByte.quote || c == JSONByte.openBrace || c == JSONByte.lowerN {
                // Not numeric: this array and every array around this element are generic.
                genericStarts.removeAll(keepingCapacity: true)
                for k in 0...level { genericStarts.append(levelOpen[k]) }
                return nil
            } else {
                throw unexpected(at: i, expecting: "a value")
            }
            if kind != leafKind {
                if leafKind == 0 {
                    leafKind = kind
                    firstLeafLevel = level
                    for k in 0...level { firstLeafPath[k] = levelOpen[k] }
                } else {
                    // Numbers and booleans: the arrays holding both (down to their lowest
                    // common one) are generic; the arrays below it get scanned again.
                    genericStarts.removeAll(keepingCapacity: true)
                    var k = 0
                    while k <= level && k <= firstLeafLevel && levelOpen[k] == firstLeafPath[k] {
                        genericStarts.append(levelOpen[k])
                        k += 1
                    }
                    return nil
                }
            }
            if levelKind[level] == 0 { levelKind[level] = 2 } else if levelKind[level] != 2 { ragged = true }
            levelCounts[level] += 1
            total += 1
            expectValue = false
        }

        let shape = Array(UnsafeBufferPointer(start: levelDims, count: levelsSeen))
        let elementKind: JSONNumericArray.ElementKind = leafKind == 1 ? .numbers : leafKind == 2 ? .booleans : .empty
        return JSONNumericArray(
            source: source, start: start, end: i, shape: shape, isRagged: ragged, count: total,
            elementKind: elementKind, allIntegerLiterals: integers && leafKind == 1, containsNonFinite: nonFinite)
    }

    // MARK: Strings

    /// Parses the string at `i` (an opening quote).
    mutating func parseString() throws(JSONError) -> String {
        let open = i
        i += 1
        let start = i
        // Eight bytes at a time while none is a quote, backslash, control byte or non-JSONByte.
        while i + 8 <= n {
            let word = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
            if Self.needsAttention(word) { break }
            i += 8
        }
        while i < n {
            let c = p[i]
            if c == JSONByte.quote {
                let text = String(decoding: UnsafeBufferPointer(start: p + start, count: i - start), as: UTF8.self)
                i += 1
                return text
            }
            if c == JSONByte.backslash { return try parseEscapedString(open: open, start: start) }
            if c < 0x20 { throw controlCharacterError(at: i) }
            if c >= 0x80 {
                i += try utf8SequenceLength(at: i)
            } else {
                i += 1
            }
        }
        throw error("unterminated string", at: open)
    }

    @inline(__always)
    static func needsAttention(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let hasQuote = (quote &- ones) & ~quote
        let hasBackslash = (backslash &- ones) & ~backslash
        let hasControl = word &- (ones &* 0x20)  // high bit set where a byte < 0x20 (or borrows)
        return ((hasQuote | hasBackslash | hasControl) & ~word & highs) != 0 || word & highs != 0
    }

    func controlCharacterError(at k: Int) -> JSONError {
        error("unescaped control character \(JSONByte.describe(p[k])) in string", at: k)
    }

    /// Validates the UTF-8 sequence at `k` (lead byte >= 0x80) and returns its length.
    @inline(__always)
    func utf8SequenceLength(at k: Int) throws(JSONError) -> Int {
        let lead = p[k]
        let length: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xBF  // allowed range of the second byte
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw error("invalid UTF-8 in string", at: k)
        }
        guard k + length <= n else { throw error("invalid UTF-8 in string", at: k) }
        guard p[k + 1] >= low && p[k + 1] <= high else { throw error("invalid UTF-8 in string", at: k) }
        for m in 2..<max(2, length) where p[k + m] & 0xC0 != 0x80 {
            throw error("invalid UTF-8 in string", at: k)
        }
        return length
    }

    mutating func parseEscapedString(open: Int, start: Int) throws(JSONError) -> String {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(start: p + start, count: i - start))
        while i < n {
            let c = p[i]
            if c == JSONByte.quote {
                i += 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if c == JSONByte.backslash {
                let escape = i
                i += 1
                guard i < n else { break }
                switch p[i] {
                case JSONByte.quote: scratch.append(JSONByte.quote)
                case JSONByte.backslash: scratch.append(JSONByte.backslash)
                case JSONByte.slash: scratch.append(JSONByte.slash)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4(at: i + 1)
                    i += 4
                    if scalar >= 0xD800 && scalar <= 0xDBFF {
                        guard i + 2 < n, p[i + 1] == JSONByte.backslash, p[i + 2] == UInt8(ascii: "u") else {
                            throw error("invalid \\u escape: high surrogate without a low surrogate", at: escape)
                        }
                        let low = try hex4(at: i + 3)
                        guard low >= 0xDC00 && low <= 0xDFFF else {
                            throw error("invalid \\u escape: high surrogate without a low surrogate", at: escape)
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                        throw error("invalid \\u escape: low surrogate without a high surrogate", at: escape)
                    }
                    Self.appendUTF8(scalar, to: &scratch)
                default:
                    throw error("invalid escape sequence '\\\(Character(Unicode.Scalar(p[i])))' in string", at: escape)
                }
                i += 1
                continue
            }
            if c < 0x20 { throw controlCharacterError(at: i) }
            if c >= 0x80 {
                let length = try utf8SequenceLength(at: i)
                scratch.append(contentsOf: UnsafeBufferPointer(start: p + i, count: length))
                i += length
            } else {
                scratch.append(c)
                i += 1
            }
        }
        throw error("unterminated string", at: open)
    }

    func hex4(at k: Int) throws(JSONError) -> UInt32 {
        guard k + 4 <= n else { throw error("invalid \\u escape: expected 4 hex digits", at: k - 2) }
        var value: UInt32 = 0
        for m in 0..<4 {
            let c = p[k + m]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape: expected 4 hex digits", at: k - 2)
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | (scalar >> 6) & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | (scalar >> 12) & 0x3F))
            out.append(UInt8(0x80 | (scalar >> 6) & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }
}
