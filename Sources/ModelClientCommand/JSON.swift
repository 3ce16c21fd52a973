import WireFormat

/// The client's view of server answers: WireFormat's JSON tree with the few accessors the
/// response readers need. Parsing is lenient where servers differ (NaN/Infinity tokens, as
/// TF Serving writes them; a repeated key keeps its last value).
extension JSONValue {
    /// `bytes` parsed; the error says where the text stops being JSON.
    static func parseResponse(_ bytes: ArraySlice<UInt8>) throws(JSONError) -> JSONValue {
        try JSONParser.parse(bytes, options: .init(maxDepth: 256, allowNonFiniteNumbers: true, duplicateKeys: .lastWins))
    }

    var string: String? { stringValue }
    var number: Double? { numberValue?.doubleValue }
    /// The elements of either kind of array.
    var array: [JSONValue]? { arrayElements }
    /// An object's members in document order.
    var members: [(key: String, value: JSONValue)]? { objectValue.map { object in object.map { ($0.key, $0.value) } } }

    /// Depth of list nesting at the front: 0 for a scalar, 2 for [[1, 2]].
    var listDepth: Int {
        if case .numericArray(let array) = self { return array.shape.count }
        var depth = 0
        var value = self
        while let items = value.arrayElements {
            depth += 1
            guard let first = items.first else { break }
            value = first
        }
        return depth
    }

    /// All leaves in order, flattening nested lists.
    var leaves: [JSONValue] {
        var out: [JSONValue] = []
        func walk(_ value: JSONValue) {
            if let items = value.arrayElements { items.forEach(walk) } else { out.append(value) }
        }
        walk(self)
        return out
    }
}

/// `text` as a JSON string literal.
func jsonString(_ text: String) -> String {
    var writer = JSONWriter(reservingCapacity: text.utf8.count + 2)
    writer.value(text)
    return String(decoding: writer.bytes, as: UTF8.self)
}

extension NPYArray {
    /// The array as nested JSON lists (a bare value for rank 0): floats as the shortest
    /// round-trip decimal (NaN, Infinity and -Infinity for non-finite values, as TF Serving
    /// accepts them), booleans as true/false.
    func jsonNested() -> String {
        var writer = JSONWriter(options: .init(nonFiniteFloats: .tokens), reservingCapacity: count * 12)
        func write<T: JSONNumericElement>(_: T.Type, _ load: (UnsafeRawBufferPointer, Int) -> T) {
            let values = data.withUnsafeBytes { raw in (0..<count).map { load(raw, $0 * dtype.size) } }
            try? writer.array(values, shape: shape)  // cannot fail: non-finite floats are tokens
        }
        func little<T: FixedWidthInteger>(_: T.Type) -> (UnsafeRawBufferPointer, Int) -> T {
            { T(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: T.self)) }
        }
        switch dtype {
        case .float32: write(Float.self) { Float(bitPattern: little(UInt32.self)($0, $1)) }
        case .float64: write(Double.self) { Double(bitPattern: little(UInt64.self)($0, $1)) }
        case .int64: write(Int64.self, little(Int64.self))
        case .int32: write(Int32.self, little(Int32.self))
        case .int8: write(Int8.self, little(Int8.self))
        case .uint8: write(UInt8.self, little(UInt8.self))
        case .bool: write(Bool.self) { $0[$1] != 0 }
        }
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
