/// A JSON document tree, built for inference requests.
///
/// Arrays whose leaves are all numbers (or all booleans), at any nesting depth, are never
/// boxed into `[JSONValue]`: the parser records them as ``numericArray(_:)``, a reference to
/// the bytes of the input plus the shape, validated in the same pass. Their elements are
/// converted only when a caller decodes them into a typed buffer
/// (``JSONNumericArray/decode(into:)``).
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    /// A number outside a numeric array (an object member, a mixed array's element, the root).
    case number(JSONNumber)
    case string(String)
    /// An array with at least one element that is a string, object or null, or that mixes
    /// numbers and booleans.
    case array([JSONValue])
    case object(JSONObject)
    /// An array (possibly nested) whose leaves are all numbers or all booleans; `[]` too.
    case numericArray(JSONNumericArray)

    /// The member `key` of an object; nil for other values or a missing key.
    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var numberValue: JSONNumber? {
        if case .number(let value) = self { return value }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var numericArrayValue: JSONNumericArray? {
        if case .numericArray(let value) = self { return value }
        return nil
    }

    /// The elements of an array of either kind, boxed (a numeric array's sub-arrays stay
    /// numeric arrays). Meant for small arrays; decode tensors with
    /// ``JSONNumericArray/decode(into:)``. Nil for non-arrays.
    public var arrayElements: [JSONValue]? {
        switch self {
        case .array(let values): return values
        case .numericArray(let array): return array.elements
        default: return nil
        }
    }

    /// A short name of the kind of value, for error messages ("string", "object", ...).
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array, .numericArray: return "array"
        case .object: return "object"
        }
    }
}

extension JSONValue: Equatable {
    /// Structural equality. Numbers compare by value (`1.0 == 1`, `1e2 == 100`; NaN never
    /// equals anything), and a numeric array equals a boxed array with the same elements.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        case (.numericArray(let a), .numericArray(let b)) where a === b: return true
        case (.array, .array), (.array, .numericArray), (.numericArray, .array), (.numericArray, .numericArray):
            return lhs.arrayElements! == rhs.arrayElements!
        default: return false
        }
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .number(JSONNumber(value)) }
    public init(floatLiteral value: Double) { self = .number(JSONNumber(value)) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// Duplicate keys: the last one wins (literals are not checked like parsed input).
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}

extension JSONValue: CustomStringConvertible {
    /// Compact JSON text (non-finite numbers as `NaN` / `Infinity` tokens).
    public var description: String {
        var writer = JSONWriter(options: .init(nonFiniteFloats: .tokens))
        try? writer.value(self)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

// MARK: - Objects

/// A JSON object: members in document order, looked up by key.
///
/// Parsing rejects duplicate keys by default (``JSONParser/Options/duplicateKeys``).
/// Lookup is a linear scan for small objects and a hash lookup once an object has more than
/// ``indexThreshold`` members.
public struct JSONObject: Sendable, RandomAccessCollection {
    public typealias Element = (key: String, value: JSONValue)
    public typealias Index = Int

    /// Objects with more members than this get a key -> position index.
    public static let indexThreshold = 12

    public private(set) var members: [Element]
    private var index: [String: Int]?

    public init() {
        members = []
        index = nil
    }

    /// Members in order; a repeated key replaces the earlier value (keeping its position).
    public init(_ members: [(String, JSONValue)]) {
        self.init()
        for (key, value) in members { self[key] = value }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { members.count }
    public subscript(position: Int) -> Element { members[position] }

    public var keys: [String] { members.map(\.key) }

    /// The position of `key`, if present.
    public func position(of key: String) -> Int? {
        if let index { return index[key] }
        return members.firstIndex { $0.key == key }
    }

    /// The value for `key`. Setting a new key appends it; setting an existing key replaces the
    /// value in place; setting nil removes the member.
    public subscript(key: String) -> JSONValue? {
        get {
            guard let position = position(of: key) else { return nil }
            return members[position].value
        }
        set {
            if let position = position(of: key) {
                if let newValue {
                    members[position].value = newValue
                } else {
                    members.remove(at: position)
                    rebuildIndex()
                }
            } else if let newValue {
                append(key: key, value: newValue)
            }
        }
    }

    /// Appends without checking for an existing member (the parser checks first).
    mutating func append(key: String, value: JSONValue) {
        members.append((key, value))
        if index != nil {
            index![key] = members.count - 1
        } else if members.count > Self.indexThreshold {
            rebuildIndex()
        }
    }

    mutating func reserveCapacity(_ n: Int) { members.reserveCapacity(n) }

    private mutating func rebuildIndex() {
        guard members.count > Self.indexThreshold else {
            index = nil
            return
        }
        var built = [String: Int](minimumCapacity: members.count)
        for (position, member) in members.enumerated() { built[member.key] = position }
        index = built
    }
}

extension JSONObject: Equatable {
    /// Same keys in the same order with equal values.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (a, b) in zip(lhs.members, rhs.members) where a.key != b.key || a.value != b.value { return false }
        return true
    }
}

// MARK: - Errors

/// A parse or conversion error: what went wrong and the byte offset in the input where it
/// did (for conversion errors, the offset of the offending value).
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// Byte offset into the parsed input; -1 when there is none (writer errors, values built
    /// in code).
    public var offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    /// "message at offset N".
    public var description: String { offset >= 0 ? "\(message) at offset \(offset)" : message }
}

// MARK: - Input storage

/// The retained input of one parse. Numbers and numeric arrays point into it, so it lives as
/// long as any of them does; it is never copied or mutated.
final class JSONSource: Sendable {
    let bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    /// Runs `body` over the input (offset 0 = first byte of the parsed input).
    @inline(__always)
    func withBytes<R, E: Error>(_ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        var result: Result<R, E>!
        bytes.withUnsafeBufferPointer { buffer in
            do throws(E) { result = .success(try body(buffer)) } catch { result = .failure(error) }
        }
        return try result.get()
    }

    func text(_ start: Int, _ end: Int) -> String {
        withBytes { String(decoding: UnsafeBufferPointer(rebasing: $0[start..<end]), as: UTF8.self) }
    }
}

// MARK: - Numbers

/// A JSON number as written: the literal's bytes in the input, converted on request (so an
/// integer converts to `Int64` exactly and a fraction to `Float` with a single rounding).
/// With ``JSONParser/Options/allowNonFiniteNumbers`` the literal may also be `NaN`,
/// `Infinity` or `-Infinity`.
public struct JSONNumber: Sendable {
    let source: JSONSource
    let start: UInt32
    let end: UInt32

    init(source: JSONSource, start: Int, end: Int) {
        self.source = source
        self.start = UInt32(truncatingIfNeeded: start)
        self.end = UInt32(truncatingIfNeeded: end)
    }

    /// A number from its JSON literal text; nil unless `text` is a valid JSON number
    /// (or `NaN` / `Infinity` / `-Infinity`).
    public init?(literal text: String) {
        let bytes = Array(text.utf8)
        let valid = bytes.withUnsafeBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            let length = JSONNumberScanner.scanNumber(base, 0, buffer.count, allowNonFinite: true)
            return length == buffer.count
        }
        guard valid else { return nil }
        self.init(source: JSONSource(bytes[...]), start: 0, end: bytes.count)
    }

    public init(_ value: Int64) {
        var digits = [UInt8]()
        digits.reserveCapacity(20)
        JSONWriter.appendInteger(value, to: &digits)
        self.init(source: JSONSource(digits[...]), start: 0, end: digits.count)
    }

    public init(_ value: Int) { self.init(Int64(value)) }

    /// The shortest literal that reads back as `value`; NaN and infinities become the
    /// `NaN` / `Infinity` / `-Infinity` tokens.
    public init(_ value: Double) {
        var digits = [UInt8]()
        JSONWriter.appendFloatingPoint(value, to: &digits)
        self.init(source: JSONSource(digits[...]), start: 0, end: digits.count)
    }

    public init(_ value: Float) {
        var digits = [UInt8]()
        JSONWriter.appendFloatingPoint(value, to: &digits)
        self.init(source: JSONSource(digits[...]), start: 0, end: digits.count)
    }

    /// Byte offset of the literal in the parsed input.
    public var offset: Int { Int(start) }

    /// The literal as written.
    public var text: String { source.text(Int(start), Int(end)) }

    @inline(__always)
    func withLiteral<R, E: Error>(_ body: (UnsafePointer<UInt8>, Int) throws(E) -> R) throws(E) -> R {
        try source.withBytes { (buffer) throws(E) -> R in
            try body(buffer.baseAddress! + Int(start), Int(end - start))
        }
    }

    /// True when the literal has no fraction or exponent (`-12`, not `12.0` or `1e3`).
    public var isIntegerLiteral: Bool {
        withLiteral { p, n in
            for k in 0..<n where p[k] == UInt8(ascii: ".") || p[k] | 0x20 == UInt8(ascii: "e") || p[k] == UInt8(ascii: "N") || p[k] == UInt8(ascii: "I") {
                return false
            }
            return true
        }
    }

    /// The value as an `Int64` if it is an integer in range (`3`, also `3.0` and `3e0`);
    /// nil for fractions, out-of-range integers and non-finite tokens.
    public var int64Value: Int64? { try? decode(as: Int64.self) }

    /// The value correctly rounded to `Double` (±infinity beyond its range).
    public var doubleValue: Double {
        // The only conversion error for Double is overflow.
        (try? JSONNumericDecoding.convert(self) as Double) ?? (isNegative ? -.infinity : .infinity)
    }

    /// The value correctly rounded to `Float` directly from the decimal text (no rounding via
    /// `Double`; ±infinity beyond its range).
    public var floatValue: Float {
        (try? JSONNumericDecoding.convert(self) as Float) ?? (isNegative ? -.infinity : .infinity)
    }

    var isNegative: Bool { withLiteral { p, _ in p[0] == JSONByte.minus } }

    /// Converts with the same rules as decoding a numeric array into a `T` buffer: integers
    /// must be integral and in range, floats must not overflow to infinity (the tokens do),
    /// and numbers never convert to `Bool`.
    public func decode<T: JSONNumericElement>(as type: T.Type = T.self) throws(JSONError) -> T {
        try T._jsonConvert(self)
    }
}

extension JSONNumber: Equatable, CustomStringConvertible {
    /// Equal by value: integers exactly, anything else as `Double` (NaN never equals).
    public static func == (lhs: JSONNumber, rhs: JSONNumber) -> Bool {
        if let a = lhs.int64Value, let b = rhs.int64Value { return a == b }
        return lhs.doubleValue == rhs.doubleValue
    }

    public var description: String { text }
}
