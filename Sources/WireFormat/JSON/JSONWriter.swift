/// Writes compact JSON into a byte array.
///
/// Calls are a flat event stream; commas and colons are inserted automatically:
///
///     var w = JSONWriter()
///     w.beginObject()
///     w.key("predictions")
///     try w.array(outputBuffer, shape: [batch, classes])
///     w.endObject()
///     send(w.bytes)
///
/// The writer does not check nesting (a key inside an array, unbalanced ends); callers
/// write well-formed sequences.
///
/// Floats are written as the shortest decimal that reads back bit-exactly, formatted like
/// Swift's `description` (`3.0`, `0.1`, `1e-05`, `3.4028235e+38`), without allocating.
public struct JSONWriter: Sendable {
    /// What to do with NaN and infinities, which JSON cannot represent.
    public enum NonFiniteFloats: Sendable {
        /// Throw a ``JSONError`` (the default).
        case error
        /// Write `null`.
        case null
        /// Write `NaN`, `Infinity`, `-Infinity` (TF Serving's and Python's extension).
        case tokens
    }

    public struct Options: Sendable {
        public var nonFiniteFloats: NonFiniteFloats
        public init(nonFiniteFloats: NonFiniteFloats = .error) {
            self.nonFiniteFloats = nonFiniteFloats
        }
    }

    /// The output so far.
    public var bytes: [UInt8]

    public var options: Options
    /// A value was written at the current level, so the next one needs a comma.
    var needsComma = false

    public init(options: Options = Options(), reservingCapacity capacity: Int = 256) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
        self.options = options
    }

    /// Clears the output (keeping its capacity) to write a new document.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        needsComma = false
    }

    // MARK: Structure

    public mutating func beginObject() {
        separate()
        bytes.append(JSONByte.openBrace)
        needsComma = false
    }

    public mutating func endObject() {
        bytes.append(JSONByte.closeBrace)
        needsComma = true
    }

    public mutating func beginArray() {
        separate()
        bytes.append(JSONByte.openBracket)
        needsComma = false
    }

    public mutating func endArray() {
        bytes.append(JSONByte.closeBracket)
        needsComma = true
    }

    /// An object key; the next call writes its value.
    public mutating func key(_ key: String) {
        separate()
        appendEscaped(key)
        bytes.append(JSONByte.colon)
        needsComma = false
    }

    @inline(__always)
    mutating func separate() {
        if needsComma { bytes.append(JSONByte.comma) }
    }

    // MARK: Scalars

    public mutating func null() {
        separate()
        Self.append("null", to: &bytes)
        needsComma = true
    }

    public mutating func value(_ value: Bool) {
        separate()
        Self.appendBool(value, to: &bytes)
        needsComma = true
    }

    public mutating func value(_ value: String) {
        separate()
        appendEscaped(value)
        needsComma = true
    }

    public mutating func value(_ value: Int64) {
        separate()
        Self.appendInteger(value, to: &bytes)
        needsComma = true
    }

    public mutating func value(_ value: Int) {
        self.value(Int64(value))
    }

    public mutating func value(_ value: UInt64) {
        separate()
        Self.appendUnsigned(value, to: &bytes)
        needsComma = true
    }

    /// Shortest round-trip decimal; non-finite values per ``Options/nonFiniteFloats``.
    public mutating func value(_ value: Float) throws(JSONError) {
        separate()
        let policy = options.nonFiniteFloats
        try withScratch(FloatFormatting.maxFloatLength) { (out) throws(JSONError) in try Float.formatToken(value, out, policy) }
        needsComma = true
    }

    /// Shortest round-trip decimal; non-finite values per ``Options/nonFiniteFloats``.
    public mutating func value(_ value: Double) throws(JSONError) {
        separate()
        let policy = options.nonFiniteFloats
        try withScratch(FloatFormatting.maxDoubleLength) { (out) throws(JSONError) in try Double.formatToken(value, out, policy) }
        needsComma = true
    }

    /// The literal as parsed (exact); a non-finite token follows ``Options/nonFiniteFloats``.
    public mutating func value(_ number: JSONNumber) throws(JSONError) {
        separate()
        let policy = options.nonFiniteFloats
        try number.withLiteral { (p, length) throws(JSONError) in
            let last = p[length - 1]
            if last == JSONByte.upperN || last == UInt8(ascii: "y") {  // NaN, Infinity
                let value: Double = last == JSONByte.upperN ? .nan : p[0] == JSONByte.minus ? -.infinity : .infinity
                let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
                defer { scratch.deallocate() }
                let n = try Self.writeNonFinite(value, scratch, policy)
                bytes.append(contentsOf: UnsafeBufferPointer(start: scratch, count: n))
            } else {
                bytes.append(contentsOf: UnsafeBufferPointer(start: p, count: length))
            }
        }
        needsComma = true
    }

    /// Any value: objects and arrays recursively; numbers and numeric arrays as their
    /// parsed text.
    public mutating func value(_ value: JSONValue) throws(JSONError) {
        switch value {
        case .null: null()
        case .bool(let b): self.value(b)
        case .string(let s): self.value(s)
        case .number(let number): try self.value(number)
        case .numericArray(let array): try self.value(array)
        case .array(let elements):
            beginArray()
            for element in elements { try self.value(element) }
            endArray()
        case .object(let object):
            beginObject()
            for (key, member) in object {
                self.key(key)
                try self.value(member)
            }
            endObject()
        }
    }

    /// A parsed numeric array, copied as written (whitespace included) unless it holds
    /// non-finite tokens that ``Options/nonFiniteFloats`` does not write as tokens.
    public mutating func value(_ array: JSONNumericArray) throws(JSONError) {
        separate()
        let policy = options.nonFiniteFloats
        try array.source.withBytes { (buffer) throws(JSONError) in
            let p = buffer.baseAddress! + array.start
            let length = array.end - array.start
            if !array.containsNonFinite || policy == .tokens {
                bytes.append(contentsOf: UnsafeBufferPointer(start: p, count: length))
                return
            }
            var k = 0
            var runStart = 0
            while k < length {
                let c = p[k]
                if c == JSONByte.upperN || c == JSONByte.upperI {
                    let negative = k > 0 && p[k - 1] == JSONByte.minus
                    let tokenStart = negative ? k - 1 : k
                    bytes.append(contentsOf: UnsafeBufferPointer(start: p + runStart, count: tokenStart - runStart))
                    let value: Double = c == JSONByte.upperN ? .nan : negative ? -.infinity : .infinity
                    if policy == .null {
                        Self.append("null", to: &bytes)
                    } else {
                        throw JSONError("cannot write \(value) as JSON", offset: array.start + tokenStart)
                    }
                    k += c == JSONByte.upperN ? 3 : 8
                    runStart = k
                } else {
                    k += 1
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(start: p + runStart, count: length - runStart))
        }
        needsComma = true
    }

    /// Pre-encoded JSON, inserted as one value without validation.
    public mutating func rawValue(_ json: some Sequence<UInt8>) {
        separate()
        bytes.append(contentsOf: json)
        needsComma = true
    }

    // MARK: Tensors

    /// Writes `buffer` as a JSON array: flat when `shape` is nil, otherwise nested by
    /// `shape` in row-major order (`[2, 3]` -> `[[a,b,c],[d,e,f]]`; `[]` writes the single
    /// element as a scalar). The shape's element count must equal `buffer.count`.
    /// Floats: shortest round-trip; non-finite per ``Options/nonFiniteFloats``.
    public mutating func array<T: JSONNumericElement>(_ buffer: UnsafeBufferPointer<T>, shape: [Int]? = nil) throws(JSONError) {
        try T._jsonWrite(buffer, shape: shape, to: &self)
    }

    /// Flat array of `values` (see ``array(_:shape:)``).
    public mutating func array<T: JSONNumericElement>(_ values: [T], shape: [Int]? = nil) throws(JSONError) {
        try values.withUnsafeBufferPointer { (buffer) throws(JSONError) in try array(buffer, shape: shape) }
    }

    // MARK: Internals

    /// Runs `body` on a scratch area of `capacity` bytes, then appends what it wrote.
    @inline(__always)
    mutating func withScratch(_ capacity: Int, _ body: (UnsafeMutablePointer<UInt8>) throws(JSONError) -> Int) throws(JSONError) {
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        assert(capacity <= 32)
        let count = try withUnsafeMutableBytes(of: &scratch) { (raw) throws(JSONError) -> Int in
            try body(raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        withUnsafeBytes(of: &scratch) { raw in bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[0..<count])) }
    }

    mutating func appendEscaped(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in Self.appendEscaped(utf8, to: &bytes) }
    }

    @inline(__always)
    static func append(_ text: StaticString, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to bytes: inout [UInt8]) {
        bytes.append(JSONByte.quote)
        guard let p = utf8.baseAddress else {
            bytes.append(JSONByte.quote)
            return
        }
        let n = utf8.count
        var runStart = 0
        var k = 0
        while k < n {
            // Skip eight bytes at a time while none needs escaping.
            while k &+ 8 <= n && !JSONSWAR.needsEscape(UnsafeRawPointer(p + k).loadUnaligned(as: UInt64.self)) { k &+= 8 }
            guard k < n else { break }
            let c = p[k]
            guard c < 0x20 || c == JSONByte.quote || c == JSONByte.backslash else {
                k &+= 1
                continue
            }
            if k > runStart { bytes.append(contentsOf: UnsafeBufferPointer(start: p + runStart, count: k - runStart)) }
            switch c {
            case JSONByte.quote: append("\\\"", to: &bytes)
            case JSONByte.backslash: append("\\\\", to: &bytes)
            case 0x0A: append("\\n", to: &bytes)
            case 0x0D: append("\\r", to: &bytes)
            case 0x09: append("\\t", to: &bytes)
            case 0x08: append("\\b", to: &bytes)
            case 0x0C: append("\\f", to: &bytes)
            default:
                let hex: StaticString = "0123456789abcdef"
                append("\\u00", to: &bytes)
                bytes.append(hex.utf8Start[Int(c >> 4)])
                bytes.append(hex.utf8Start[Int(c & 0xF)])
            }
            k &+= 1
            runStart = k
        }
        if n > runStart { bytes.append(contentsOf: UnsafeBufferPointer(start: p + runStart, count: n - runStart)) }
        bytes.append(JSONByte.quote)
    }

    static func appendBool(_ value: Bool, to bytes: inout [UInt8]) {
        append(value ? "true" : "false", to: &bytes)
    }

    static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let n = JSONIntegerFormatting.write(value, to: out)
            bytes.append(contentsOf: UnsafeBufferPointer(start: out, count: n))
        }
    }

    static func appendUnsigned(_ value: UInt64, to bytes: inout [UInt8]) {
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let n = JSONIntegerFormatting.write(value, to: out)
            bytes.append(contentsOf: UnsafeBufferPointer(start: out, count: n))
        }
    }

    /// Shortest round-trip text; NaN and infinities as tokens.
    static func appendFloatingPoint<F: JSONTokenFormattable>(_ value: F, to bytes: inout [UInt8]) {
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let n = (try? F.formatToken(value, out, .tokens)) ?? 0
            bytes.append(contentsOf: UnsafeBufferPointer(start: out, count: n))
        }
    }

    static func writeNonFinite<F: BinaryFloatingPoint>(_ value: F, _ out: UnsafeMutablePointer<UInt8>, _ policy: NonFiniteFloats) throws(JSONError) -> Int {
        let token: StaticString
        switch policy {
        case .error:
            throw JSONError("cannot write \(value.isNaN ? "NaN" : value < 0 ? "-infinity" : "infinity") as JSON (non-finite floats are not allowed)", offset: -1)
        case .null: token = "null"
        case .tokens: token = value.isNaN ? "NaN" : value < 0 ? "-Infinity" : "Infinity"
        }
        out.update(from: token.utf8Start, count: token.utf8CodeUnitCount)
        return token.utf8CodeUnitCount
    }
}

// MARK: - Element formatting

/// Formatting of one element, shared by scalar writes and tensor writes.
protocol JSONTokenFormattable: JSONNumericElement {
    /// Upper bound on the bytes `formatToken` writes.
    static var maxTokenLength: Int { get }
    static func formatToken(_ value: Self, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int
}

extension JSONTokenFormattable {
    public static func _jsonWrite(_ buffer: UnsafeBufferPointer<Self>, shape: [Int]?, to writer: inout JSONWriter) throws(JSONError) {
        try JSONTensorWriting.write(buffer, shape: shape, to: &writer)
    }
}

extension Float: JSONTokenFormattable {
    static var maxTokenLength: Int { FloatFormatting.maxFloatLength }
    @inline(__always)
    static func formatToken(_ value: Float, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        guard value.isFinite else { return try JSONWriter.writeNonFinite(value, out, policy) }
        return FloatFormatting.write(value, to: out)
    }
}

extension Double: JSONTokenFormattable {
    static var maxTokenLength: Int { FloatFormatting.maxDoubleLength }
    @inline(__always)
    static func formatToken(_ value: Double, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        guard value.isFinite else { return try JSONWriter.writeNonFinite(value, out, policy) }
        return FloatFormatting.write(value, to: out)
    }
}

extension Bool: JSONTokenFormattable {
    static var maxTokenLength: Int { 5 }
    @inline(__always)
    static func formatToken(_ value: Bool, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        let token: StaticString = value ? "true" : "false"
        out.update(from: token.utf8Start, count: token.utf8CodeUnitCount)
        return token.utf8CodeUnitCount
    }
}

extension Int8: JSONTokenFormattable {
    static var maxTokenLength: Int { 4 }
    @inline(__always) static func formatToken(_ value: Int8, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(Int64(value), to: out)
    }
}

extension Int16: JSONTokenFormattable {
    static var maxTokenLength: Int { 6 }
    @inline(__always) static func formatToken(_ value: Int16, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(Int64(value), to: out)
    }
}

extension Int32: JSONTokenFormattable {
    static var maxTokenLength: Int { 11 }
    @inline(__always) static func formatToken(_ value: Int32, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(Int64(value), to: out)
    }
}

extension Int64: JSONTokenFormattable {
    static var maxTokenLength: Int { 20 }
    @inline(__always) static func formatToken(_ value: Int64, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(value, to: out)
    }
}

extension Int: JSONTokenFormattable {
    static var maxTokenLength: Int { 20 }
    @inline(__always) static func formatToken(_ value: Int, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(Int64(value), to: out)
    }
}

extension UInt8: JSONTokenFormattable {
    static var maxTokenLength: Int { 3 }
    @inline(__always) static func formatToken(_ value: UInt8, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(UInt64(value), to: out)
    }
}

extension UInt16: JSONTokenFormattable {
    static var maxTokenLength: Int { 5 }
    @inline(__always) static func formatToken(_ value: UInt16, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(UInt64(value), to: out)
    }
}

extension UInt32: JSONTokenFormattable {
    static var maxTokenLength: Int { 10 }
    @inline(__always) static func formatToken(_ value: UInt32, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(UInt64(value), to: out)
    }
}

extension UInt64: JSONTokenFormattable {
    static var maxTokenLength: Int { 20 }
    @inline(__always) static func formatToken(_ value: UInt64, _ out: UnsafeMutablePointer<UInt8>, _ policy: JSONWriter.NonFiniteFloats) throws(JSONError) -> Int {
        JSONIntegerFormatting.write(value, to: out)
    }
}

enum JSONIntegerFormatting {
    @inline(__always)
    static func write(_ value: Int64, to out: UnsafeMutablePointer<UInt8>) -> Int {
        if value < 0 {
            out[0] = JSONByte.minus
            return 1 + write(value.magnitude, to: out + 1)
        }
        return write(UInt64(value), to: out)
    }

    @inline(__always)
    static func write(_ value: UInt64, to out: UnsafeMutablePointer<UInt8>) -> Int {
        let length = FloatFormatting.decimalLength(value)
        FloatFormatting.writeDigits(value, length, to: out)
        return length
    }
}

// MARK: - Tensor output

enum JSONTensorWriting {
    static let chunkSize = 16_384

    static func write<T: JSONTokenFormattable>(_ buffer: UnsafeBufferPointer<T>, shape: [Int]?, to writer: inout JSONWriter) throws(JSONError) {
        let dims = shape ?? [buffer.count]
        var product = 1
        for d in dims {
            guard d >= 0 else { throw JSONError("invalid shape \(dims): negative dimension", offset: -1) }
            let (p, overflow) = product.multipliedReportingOverflow(by: d)
            guard !overflow else { throw JSONError("invalid shape \(dims): too many elements", offset: -1) }
            product = p
        }
        guard product == buffer.count else {
            throw JSONError("shape \(dims) has \(product) elements but the buffer holds \(buffer.count)", offset: -1)
        }
        let policy = writer.options.nonFiniteFloats
        writer.separate()
        writer.needsComma = true
        if dims.isEmpty {
            try writer.withScratch(T.maxTokenLength) { (out) throws(JSONError) in try T.formatToken(buffer[0], out, policy) }
            return
        }
        if product == 0 {
            writeEmpty(dims[...], to: &writer.bytes)
            return
        }
        let rank = dims.count
        let innermost = dims[rank - 1]
        // Output is built in a chunk-sized scratch buffer and appended in large pieces.
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { scratch.deallocate() }
        // Room for one element plus the brackets and commas that may surround it.
        let reserve = T.maxTokenLength + 2 * rank + 2
        var used = 0
        var index = [Int](repeating: 0, count: rank)
        for _ in 0..<rank {
            scratch[used] = JSONByte.openBracket
            used += 1
        }
        var k = 0
        let count = buffer.count
        while k < count {
            // One innermost row.
            let rowEnd = k + innermost
            while k < rowEnd {
                if used > chunkSize - reserve {
                    writer.bytes.append(contentsOf: UnsafeBufferPointer(start: scratch, count: used))
                    used = 0
                }
                used += try T.formatToken(buffer[k], scratch + used, policy)
                k += 1
                if k < rowEnd {
                    scratch[used] = JSONByte.comma
                    used += 1
                }
            }
            // Close the rows that ended and open the next ones.
            var closed = 1
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                if index[d] < dims[d] { break }
                index[d] = 0
                closed += 1
                d -= 1
            }
            if used > chunkSize - reserve {
                writer.bytes.append(contentsOf: UnsafeBufferPointer(start: scratch, count: used))
                used = 0
            }
            for _ in 0..<closed {
                scratch[used] = JSONByte.closeBracket
                used += 1
            }
            if k < count {
                scratch[used] = JSONByte.comma
                used += 1
                for _ in 0..<closed {
                    scratch[used] = JSONByte.openBracket
                    used += 1
                }
            }
        }
        writer.bytes.append(contentsOf: UnsafeBufferPointer(start: scratch, count: used))
    }

    /// A shape with a zero dimension: nested empty arrays.
    static func writeEmpty(_ dims: ArraySlice<Int>, to bytes: inout [UInt8]) {
        bytes.append(JSONByte.openBracket)
        if let first = dims.first, first > 0, dims.count > 1 {
            for k in 0..<first {
                if k > 0 { bytes.append(JSONByte.comma) }
                writeEmpty(dims.dropFirst(), to: &bytes)
            }
        }
        bytes.append(JSONByte.closeBracket)
    }
}
