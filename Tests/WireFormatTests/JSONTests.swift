#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import WireFormat

/// Deterministic generator for the randomized cases.
private struct JSONTestRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func parse(_ text: String, _ options: JSONParser.Options = .init()) throws(JSONError) -> JSONValue {
    try JSONParser.parse(text, options: options)
}

private func parseError(_ text: String, _ options: JSONParser.Options = .init()) -> JSONError? {
    parseError(Array(text.utf8), options)
}

private func parseError(_ bytes: [UInt8], _ options: JSONParser.Options = .init()) -> JSONError? {
    do {
        _ = try JSONParser.parse(bytes, options: options)
        return nil
    } catch {
        return error
    }
}

private func numeric(_ text: String, _ options: JSONParser.Options = .init()) throws -> JSONNumericArray {
    let value = try parse(text, options)
    return try #require(value.numericArrayValue, "\(text) did not parse as a numeric array: \(value)")
}

private func decoded<T: JSONNumericElement>(_ text: String, as type: T.Type, _ options: JSONParser.Options = .init()) throws -> [T] {
    try numeric(text, options).decode(as: T.self)
}

private func decodeError<T: JSONNumericElement>(_ text: String, as type: T.Type, _ options: JSONParser.Options = .init()) throws -> JSONError? {
    let array = try numeric(text, options)
    do {
        _ = try array.decode(as: T.self)
        return nil
    } catch {
        return error
    }
}

private func written(_ options: JSONWriter.Options = .init(), _ body: (inout JSONWriter) throws -> Void) rethrows -> String {
    var writer = JSONWriter(options: options)
    try body(&writer)
    return String(decoding: writer.bytes, as: UTF8.self)
}

// MARK: - Documents

@Suite struct JSONDocumentTests {
    @Test func scalars() throws {
        #expect(try parse("null").isNull)
        #expect(try parse("true").boolValue == true)
        #expect(try parse(" false ").boolValue == false)
        #expect(try parse("\"hi\"").stringValue == "hi")
        let number = try #require(try parse("-12.5e1").numberValue)
        #expect(number.doubleValue == -125)
        #expect(number.text == "-12.5e1")
        #expect(try parse("0").numberValue?.int64Value == 0)
        #expect(try parse("\n\t\r 42 \n").numberValue?.int64Value == 42)
    }

    @Test func objectsKeepOrderAndLookUpKeys() throws {
        let value = try parse(#"{"b": 1, "a": [1, 2], "c": {"d": null}, "e": "x", "f": true}"#)
        let object = try #require(value.objectValue)
        #expect(object.keys == ["b", "a", "c", "e", "f"])
        #expect(value["b"]?.numberValue?.int64Value == 1)
        #expect(value["a"]?.numericArrayValue?.count == 2)
        #expect(value["c"]?["d"]?.isNull == true)
        #expect(value["e"]?.stringValue == "x")
        #expect(value["missing"] == nil)
        #expect(value["c"]?["missing"] == nil)
        #expect(try parse("{}").objectValue?.isEmpty == true)
        #expect(try parse("[1]")["a"] == nil)
    }

    @Test func largeObjectsUseAnIndex() throws {
        var text = "{"
        for k in 0..<200 { text += (k > 0 ? "," : "") + "\"key\(k)\": \(k)" }
        text += "}"
        let object = try #require(try parse(text).objectValue)
        #expect(object.count == 200)
        for k in stride(from: 0, to: 200, by: 7) { #expect(object["key\(k)"]?.numberValue?.int64Value == Int64(k)) }
        #expect(object["key200"] == nil)
        #expect(object[150].key == "key150")
    }

    @Test func duplicateKeysAreRejectedByDefault() throws {
        let error = try #require(parseError(#"{"a": 1, "b": 2, "a": 3}"#))
        #expect(error.message == #"duplicate key "a" in object"#)
        #expect(error.offset == 17)
        // Also in large (indexed) objects.
        var text = "{"
        for k in 0..<30 { text += "\"k\(k)\": \(k)," }
        text += "\"k3\": 0}"
        #expect(parseError(text)?.message == #"duplicate key "k3" in object"#)
    }

    @Test func duplicateKeysLastWinsWhenAsked() throws {
        let value = try parse(#"{"a": 1, "b": 2, "a": 3}"#, .init(duplicateKeys: .lastWins))
        let object = try #require(value.objectValue)
        #expect(object.keys == ["a", "b"])
        #expect(object["a"]?.numberValue?.int64Value == 3)
    }

    @Test func objectEditing() {
        var object = JSONObject([("x", 1), ("y", "two")])
        object["z"] = true
        object["x"] = 5
        #expect(object.keys == ["x", "y", "z"])
        #expect(object["x"] == 5)
        object["y"] = nil
        #expect(object.keys == ["x", "z"])
    }

    @Test func parsesSlicesWithRelativeOffsets() throws {
        let buffer = Array("garbage[1.5, 2.5]garbage".utf8)
        let value = try JSONParser.parse(buffer[7..<17])
        let array = try #require(value.numericArrayValue)
        #expect(array.offset == 0)
        #expect(try array.decode(as: Float.self) == [1.5, 2.5])
        let error = try #require(parseError(Array(buffer[7..<18])))
        #expect(error.offset == 10)
    }

    @Test func parsesCopiedBytes() throws {
        let bytes = Array(#"{"a":[1,2]}"#.utf8)
        let value = try bytes.withUnsafeBytes { raw in try JSONParser.parse(copying: raw) }
        #expect(try value["a"]?.numericArrayValue?.decode(as: Int32.self) == [1, 2])
    }

    @Test func roundTripsThroughTheWriter() throws {
        let text = #"{"name":"m\"x\\y","inputs":[{"b64":"aGk="},[1,2.5,-3e2],[[true,false]],[],null,"é😀"],"n":-0.0}"#
        let value = try parse(text)
        let again = try parse(value.description)
        #expect(again == value)
        #expect(value.description == text)
    }

    @Test func equalityComparesNumbersByValue() throws {
        #expect(try parse("[1, 2.0, 3e0]") == parse("[1.0, 2, 3]"))
        #expect(try parse("[1, \"a\"]") == JSONValue.array([1, "a"]))
        #expect(try parse("[[1,2],[3]]") == JSONValue.array([[1, 2], [3]]))
        #expect(try parse("[1, 2]") != parse("[1, 2, 3]"))
        #expect(try parse(#"{"a":1,"b":2}"#) != parse(#"{"b":2,"a":1}"#))
    }
}

// MARK: - Errors

@Suite struct JSONErrorTests {
    /// (input, message, offset)
    static let cases: [(String, String, Int)] = [
        ("", "empty input", 0),
        ("   ", "no JSON value, only whitespace", 3),
        ("[1,2", "unexpected end of input, expected ',' or ']'", 4),
        ("[1,]", "unexpected character ']', expected a value", 3),
        ("[,1]", "unexpected character ',', expected a value", 1),
        ("[1 2]", "unexpected character '2', expected ',' or ']'", 3),
        ("[\"a\" \"b\"]", "unexpected character '\"', expected ',' or ']'", 5),
        ("{\"a\" 1}", "unexpected character '1', expected ':' after the object key", 5),
        ("{\"a\":1,}", "unexpected character '}', expected a string key", 7),
        ("{a:1}", "unexpected character 'a', expected a string key", 1),
        ("{\"a\":1 \"b\":2}", "unexpected character '\"', expected ',' or '}'", 7),
        ("{\"a\":", "unexpected end of input, expected a value", 5),
        ("01", "invalid number: leading zeros are not allowed", 0),
        ("[-01]", "invalid number: leading zeros are not allowed", 2),
        ("1.", "unexpected end of input, expected a digit", 2),
        ("[1.]", "unexpected character ']', expected a digit", 3),
        ("-", "unexpected end of input, expected a digit", 1),
        ("[-a]", "unexpected character 'a', expected a digit", 2),
        ("1e", "unexpected end of input, expected a digit", 2),
        ("[1e+]", "unexpected character ']', expected a digit", 4),
        ("+1", "unexpected character '+', expected a value", 0),
        (".5", "unexpected character '.', expected a value", 0),
        ("tru", "invalid literal, expected 'true'", 0),
        ("[nul]", "invalid literal, expected 'null'", 1),
        ("[1] x", "unexpected character 'x' after the JSON value", 4),
        ("{} {}", "unexpected character '{' after the JSON value", 3),
        ("\"abc", "unterminated string", 0),
        ("[\"a\tb\"]", "unescaped control character byte 0x09 in string", 3),
        ("\"\\x\"", "invalid escape sequence '\\x' in string", 1),
        ("\"\\u12\"", "invalid \\u escape: expected 4 hex digits", 1),
        ("\"\\u12G4\"", "invalid \\u escape: expected 4 hex digits", 1),
        ("\"a\\ud800\"", "invalid \\u escape: high surrogate without a low surrogate", 2),
        ("\"\\ud800\\u0041\"", "invalid \\u escape: high surrogate without a low surrogate", 1),
        ("\"\\udc00\"", "invalid \\u escape: low surrogate without a high surrogate", 1),
        ("[1, NaN]", "unexpected character 'N', expected a value", 4),
        ("Infinity", "unexpected character 'I', expected a value", 0),
        ("[-Infinity]", "unexpected character 'I', expected a digit", 2),
        ("[1, x]", "unexpected character 'x', expected a value", 4),
        ("[1, \"a\", x]", "unexpected character 'x', expected a value", 9),
    ]

    @Test func invalidDocuments() {
        for (text, message, offset) in Self.cases {
            let error = parseError(text)
            #expect(error?.message == message, "\(text)")
            #expect(error?.offset == offset, "\(text)")
        }
    }

    @Test func descriptionNamesTheOffset() {
        #expect(parseError("{\"key\": [1, 2, x]}")?.description == "unexpected character 'x', expected a value at offset 15")
    }

    @Test func invalidUTF8() {
        let cases: [[UInt8]] = [
            [0x22, 0xC3, 0x28, 0x22],  // bad continuation
            [0x22, 0xC0, 0xAF, 0x22],  // overlong
            [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong 3-byte
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-16 surrogate
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
            [0x22, 0xFF, 0x22],
            [0x22, 0x80, 0x22],  // lone continuation
            [0x22, 0xE2, 0x82],  // truncated at end
        ]
        for bytes in cases {
            let error = parseError(bytes)
            #expect(error?.message == "invalid UTF-8 in string", "\(bytes)")
            #expect(error?.offset == 1, "\(bytes)")
        }
        // Outside strings, a non-ASCII byte is just unexpected.
        #expect(parseError([0x5B, 0xC3, 0xA9, 0x5D])?.message == "unexpected byte 0xC3, expected a value")
    }

    @Test func controlCharactersInLongStrings() {
        // The 8-byte scan must notice a control byte at any position.
        for position in 0..<24 {
            var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 24)
            bytes[position] = 0x01
            let error = parseError([0x22] + bytes + [0x22])
            #expect(error?.offset == position + 1)
        }
    }
}

// MARK: - Strings

@Suite struct JSONStringTests {
    @Test func escapes() throws {
        #expect(try parse(#""\" \\ \/ \b \f \n \r \t""#).stringValue == "\" \\ / \u{08} \u{0C} \n \r \t")
        #expect(try parse(#""\u0041\u00e9\u4E2D""#).stringValue == "Aé中")
        #expect(try parse(#""\ud83d\ude00 \uD83D\uDE00""#).stringValue == "😀 😀")
        #expect(try parse(#""a\u0000b""#).stringValue == "a\u{0}b")
        #expect(try parse("\"raw é 中 😀\"").stringValue == "raw é 中 😀")
        #expect(try parse(#"{"k\n\u00e9y": 1}"#)["k\néy"]?.numberValue?.int64Value == 1)
    }

    @Test func quotesAndEscapesAtEveryPosition() throws {
        for length in 0..<40 {
            let body = String(repeating: "x", count: length)
            #expect(try parse("\"\(body)\"").stringValue == body)
            #expect(try parse("[\"\(body)\\n\(body)\", 1]").arrayElements?.first?.stringValue == body + "\n" + body)
            #expect(try parse("\"\(body)é\(body)\"").stringValue == body + "é" + body)
        }
    }

    @Test func writerEscapesAtEveryPosition() throws {
        for position in 0..<24 {
            for special in ["\u{01}", "\"", "\\", "\n"] {
                var characters = Array(repeating: "a", count: 24)
                characters[position] = special
                let text = "é" + characters.joined()
                let escaped = special == "\u{01}" ? "\\u0001" : special == "\n" ? "\\n" : "\\" + special
                var expected = "\"é" + String(repeating: "a", count: position) + escaped
                expected += String(repeating: "a", count: 23 - position) + "\""
                #expect(written { $0.value(text) } == expected)
                #expect(try parse(expected).stringValue == text)
            }
        }
    }

    @Test func writerEscapes() throws {
        let text = "q\" b\\ / \n\r\t\u{08}\u{0C} \u{01}\u{1F} é 😀"
        let json = written { $0.value(text) }
        #expect(json == #""q\" b\\ / \n\r\t\b\f \u0001\u001f é 😀""#)
        #expect(try parse(json).stringValue == text)
    }
}

// MARK: - Nesting

@Suite struct JSONNestingTests {
    static func nested(_ depth: Int, open: String, close: String, leaf: String) -> String {
        String(repeating: open, count: depth - 1) + leaf + String(repeating: close, count: depth - 1)
    }

    @Test func depthLimitDefaultsTo64() throws {
        // Numeric arrays, generic arrays, objects and a mix, at the limit and one past it.
        let leaves = [("[", "]", "[1]"), ("[", "]", "[\"s\"]"), ("{\"a\":", "}", "{}"), ("[{\"a\":", "}]", "[]")]
        for (open, close, leaf) in leaves {
            let levelsPerOpen = open.filter { $0 == "[" || $0 == "{" }.count
            let depth = 64 / levelsPerOpen
            let ok = Self.nested(depth, open: open, close: close, leaf: leaf)
            #expect(parseError(ok) == nil, "\(open)")
            let tooDeep = open + ok + close
            let error = parseError(tooDeep)
            #expect(error?.message == "maximum nesting depth 64 exceeded", "\(open)")
        }
        let error = parseError(Self.nested(65, open: "[", close: "]", leaf: "[0]"))
        #expect(error?.offset == 64)
    }

    @Test func configurableDepth() throws {
        let text = "[[[1]]]"
        #expect(parseError(text, .init(maxDepth: 3)) == nil)
        #expect(parseError(text, .init(maxDepth: 2))?.offset == 2)
        #expect(parseError("[\"a\", [[1]]]", .init(maxDepth: 2))?.offset == 7)
    }

    @Test func veryDeepInputFailsCleanly() {
        let text = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(parseError(text)?.message == "maximum nesting depth 64 exceeded")
        let objects = String(repeating: "{\"a\":", count: 100_000)
        #expect(parseError(objects)?.message == "maximum nesting depth 64 exceeded")
    }
}

// MARK: - Numeric arrays

@Suite struct JSONNumericArrayTests {
    @Test func flatAndNested() throws {
        let flat = try numeric("[1, 2.5, -3e2]")
        #expect(flat.shape == [3])
        #expect(!flat.isRagged)
        #expect(flat.count == 3)
        #expect(flat.elementKind == .numbers)
        #expect(!flat.allIntegerLiterals)
        #expect(try flat.decode(as: Float.self) == [1, 2.5, -300])

        let matrix = try numeric("[[1,2,3],\n [4,5,6]]")
        #expect(matrix.shape == [2, 3])
        #expect(matrix.count == 6)
        #expect(matrix.allIntegerLiterals)
        #expect(try matrix.decode(as: Double.self) == [1, 2, 3, 4, 5, 6])

        let cube = try numeric("[ [ [1,2] , [3,4] ] , [ [5,6] , [7,8] ] , [ [9,10] , [11,12] ] ]")
        #expect(cube.shape == [3, 2, 2])
        #expect(try cube.decode(as: Int32.self) == Array(1...12))
    }

    @Test func decodesIntoAGivenBuffer() throws {
        let array = try numeric("[[0.5, 1.5], [2.5, 3.5]]")
        var out = [Float](repeating: .nan, count: 4)
        try out.withUnsafeMutableBufferPointer { try array.decode(into: $0) }
        #expect(out == [0.5, 1.5, 2.5, 3.5])
        var short = [Float](repeating: 0, count: 3)
        #expect(throws: JSONError.self) { try short.withUnsafeMutableBufferPointer { try array.decode(into: $0) } }
    }

    @Test func emptyArrays() throws {
        let empty = try numeric("[]")
        #expect(empty.shape == [0])
        #expect(empty.count == 0)
        #expect(empty.elementKind == .empty)
        #expect(try empty.decode(as: Float.self) == [])
        #expect(try empty.decode(as: Bool.self) == [])
        #expect(try numeric("[ ]").shape == [0])
        #expect(try numeric("[[]]").shape == [1, 0])
        let twoEmpty = try numeric("[[], []]")
        #expect(twoEmpty.shape == [2, 0])
        #expect(!twoEmpty.isRagged)
        #expect(try numeric("[[[]],[[]]]").shape == [2, 1, 0])
    }

    @Test func raggedArrays() throws {
        for text in ["[[1,2],[3]]", "[[1],[2,3]]", "[1,[2]]", "[[1],2]", "[[], [1]]", "[[[1]], [2]]", "[[1,2],[[3,4]]]"] {
            let array = try numeric(text)
            #expect(array.isRagged, "\(text)")
        }
        let ragged = try numeric("[[1, 2], [3], [4, 5, 6]]")
        #expect(ragged.count == 6)
        // Leaves still decode in document order; checking the shape is the caller's job.
        #expect(try ragged.decode(as: Int64.self) == [1, 2, 3, 4, 5, 6])
    }

    @Test func mixedArraysFallBackToGenericArrays() throws {
        #expect(try parse("[1, \"a\"]") == JSONValue.array([1, "a"]))
        #expect(try parse("[1, null]") == JSONValue.array([1, nil]))
        #expect(try parse("[1, true]") == JSONValue.array([1, true]))
        #expect(try parse("[{\"b64\": \"x\"}]") == JSONValue.array([["b64": "x"]]))

        // Sub-arrays that are numeric stay numeric inside a generic array.
        let value = try parse("[[1, 2], [\"a\"], [[3, 4], [5, 6]], [true, false]]")
        guard case .array(let elements) = value else {
            Issue.record("expected a generic array: \(value)")
            return
        }
        #expect(elements.count == 4)
        #expect(elements[0].numericArrayValue?.shape == [2])
        if case .array(let inner) = elements[1] { #expect(inner == ["a"]) } else { Issue.record("\(elements[1])") }
        #expect(elements[2].numericArrayValue?.shape == [2, 2])
        #expect(elements[3].numericArrayValue?.elementKind == .booleans)
    }

    @Test func numbersAndBooleansInDifferentSubarrays() throws {
        // The arrays holding both kinds are generic; the ones below them are numeric again.
        let value = try parse("[[[1, 2], [true]], [[3]]]")
        guard case .array(let outer) = value, case .array(let first) = outer[0] else {
            Issue.record("\(value)")
            return
        }
        #expect(first[0].numericArrayValue?.elementKind == .numbers)
        #expect(first[1].numericArrayValue?.elementKind == .booleans)
        #expect(outer[1].numericArrayValue?.shape == [1, 1])
    }

    @Test func genericFallbackPreservesEverything() throws {
        // A non-numeric element deep inside, after long numeric prefixes at several levels.
        let prefix = (0..<1000).map(String.init).joined(separator: ",")
        let text = "[[\(prefix)], [[\(prefix)], [\(prefix), \"x\"]], [\(prefix)], {\"k\": [\(prefix)]}]"
        let value = try parse(text)
        #expect(try parse(value.description) == value)
        guard case .array(let outer) = value, case .array(let second) = outer[1], case .array(let deepest) = second[1] else {
            Issue.record("unexpected structure")
            return
        }
        #expect(outer[0].numericArrayValue?.count == 1000)
        #expect(second[0].numericArrayValue?.count == 1000)
        #expect(deepest.count == 1001)
        #expect(deepest.last?.stringValue == "x")
        #expect(outer[2].numericArrayValue?.count == 1000)
        #expect(outer[3]["k"]?.numericArrayValue?.count == 1000)
    }

    @Test func elementsOfNumericArrays() throws {
        let array = try numeric("[[1, 2], [3, 4]]")
        let elements = array.elements
        #expect(elements.count == 2)
        #expect(try elements[1].numericArrayValue?.decode(as: Int64.self) == [3, 4])
        #expect(try numeric("[7, -8]").elements == [7, -8])
        #expect(try numeric("[true]").elements == [true])
        #expect(try parse("[1, [2]]").arrayElements?.count == 2)
    }

    @Test func textAndOffsets() throws {
        let value = try parse(#"{"x": [1, 2]}"#)
        let array = try #require(value["x"]?.numericArrayValue)
        #expect(array.offset == 6)
        #expect(array.byteCount == 6)
        #expect(array.text == "[1, 2]")
    }

    @Test func largeTensorIsNotBoxed() throws {
        let count = 1_000_000
        var random = JSONTestRandom(state: 99)
        var values = [Float](repeating: 0, count: count)
        for k in 0..<count { values[k] = Float(Int64(bitPattern: random.next()) >> 40) * 0x1p-20 }
        var writer = JSONWriter(reservingCapacity: count * 12)
        writer.beginObject()
        writer.key("instances")
        try values.withUnsafeBufferPointer { try writer.array($0, shape: [1000, 1000]) }
        writer.endObject()
        let value = try JSONParser.parse(writer.bytes)
        // The one structural check that matters: the tensor is a numeric array, not [JSONValue].
        let tensor = try #require(value["instances"]?.numericArrayValue)
        #expect(tensor.shape == [1000, 1000])
        #expect(tensor.count == count)
        var decoded = [Float](repeating: .nan, count: count)
        try decoded.withUnsafeMutableBufferPointer { try tensor.decode(into: $0) }
        #expect(decoded == values)
    }
}

// MARK: - Integer decoding

@Suite struct JSONIntegerTests {
    @Test func limitsOfEveryType() throws {
        #expect(try decoded("[0, 255]", as: UInt8.self) == [0, 255])
        #expect(try decoded("[-128, 127]", as: Int8.self) == [-128, 127])
        #expect(try decoded("[-32768, 32767]", as: Int16.self) == [.min, .max])
        #expect(try decoded("[0, 65535]", as: UInt16.self) == [0, .max])
        #expect(try decoded("[-2147483648, 2147483647]", as: Int32.self) == [.min, .max])
        #expect(try decoded("[0, 4294967295]", as: UInt32.self) == [0, .max])
        #expect(try decoded("[-9223372036854775808, 9223372036854775807]", as: Int64.self) == [.min, .max])
        #expect(try decoded("[0, 18446744073709551615]", as: UInt64.self) == [0, .max])
        #expect(try decoded("[-9223372036854775808, 1]", as: Int.self) == [.min, 1])
    }

    @Test func outOfRangeValuesAreNamed() throws {
        let cases: [(String, String, Int)] = [
            ("[1, 256]", "value 256 is out of range for uint8", 4),
            ("[-1]", "value -1 is out of range for uint8", 1),
            ("[0, -0, 1000]", "value 1000 is out of range for uint8", 8),
        ]
        for (text, message, offset) in cases {
            let error = try decodeError(text, as: UInt8.self)
            #expect(error?.message == message)
            #expect(error?.offset == offset)
        }
        #expect(try decodeError("[-129]", as: Int8.self)?.message == "value -129 is out of range for int8")
        #expect(try decodeError("[2147483648]", as: Int32.self)?.message == "value 2147483648 is out of range for int32")
        #expect(try decodeError("[9223372036854775808]", as: Int64.self)?.message == "value 9223372036854775808 is out of range for int64")
        #expect(try decodeError("[-9223372036854775809]", as: Int64.self)?.message == "value -9223372036854775809 is out of range for int64")
        #expect(try decodeError("[18446744073709551616]", as: UInt64.self)?.message == "value 18446744073709551616 is out of range for uint64")
        #expect(try decodeError("[123456789012345678901234567890]", as: UInt64.self)?.message == "value 123456789012345678901234567890 is out of range for uint64")
        #expect(try decodeError("[1e20]", as: Int64.self)?.message == "value 1e20 is out of range for int64")
        #expect(try decodeError("[1e999999999999]", as: Int64.self)?.message == "value 1e999999999999 is out of range for int64")
    }

    @Test func fractionsAreRejected() throws {
        let error = try decodeError("[1, 2, 1.5]", as: Int32.self)
        #expect(error?.message == "fractional value 1.5 cannot be converted to int32")
        #expect(error?.offset == 7)
        for text in ["[0.1]", "[1e-1]", "[12e-1]", "[-2.0001]", "[1.000000000000000000001]"] {
            #expect(try decodeError(text, as: Int64.self)?.message.hasPrefix("fractional value") == true, "\(text)")
        }
    }

    @Test func integralValuesWithFractionOrExponent() throws {
        #expect(try decoded("[1.0, 2e1, 2.50e1, -0, -0.0, 0e5, 1E+2, 120e-1, 0.0e-7, 1.5e3]", as: Int32.self)
                == [1, 20, 25, 0, 0, 0, 100, 12, 0, 1500])
        #expect(try decoded("[1e19, 18446744073709551615.000]", as: UInt64.self) == [10_000_000_000_000_000_000, .max])
        #expect(try decoded("[-9223372036854775808.0e0]", as: Int64.self) == [.min])
    }

    @Test func booleansAndTokensAreNotIntegers() throws {
        #expect(try decodeError("[true]", as: Int32.self)?.message == "an array of booleans cannot be decoded as int32")
        let options = JSONParser.Options(allowNonFiniteNumbers: true)
        let error = try decodeError("[1, -Infinity]", as: Int64.self, options)
        #expect(error?.message == "non-finite value -Infinity cannot be converted to int64")
        #expect(error?.offset == 4)
        #expect(try decodeError("[NaN]", as: UInt8.self, options)?.message == "non-finite value NaN cannot be converted to uint8")
    }

    @Test func scalarNumbers() throws {
        let big = try #require(try parse("9007199254740993").numberValue)
        #expect(big.int64Value == 9_007_199_254_740_993)  // exact, not via Double
        #expect(big.isIntegerLiteral)
        #expect(try parse("3.0").numberValue?.int64Value == 3)
        #expect(try parse("3.0").numberValue?.isIntegerLiteral == false)
        #expect(try parse("3.5").numberValue?.int64Value == nil)
        #expect(try parse("1e30").numberValue?.int64Value == nil)
        #expect(try parse("300").numberValue?.decode(as: Int16.self) == 300)
        let error = #expect(throws: JSONError.self) { try parse(#"{"n": 300}"#)["n"]?.numberValue?.decode(as: UInt8.self) }
        #expect(error?.message == "value 300 is out of range for uint8")
        #expect(error?.offset == 6)
        #expect(throws: JSONError.self) { try JSONNumber(1).decode(as: Bool.self) }
    }
}

// MARK: - Booleans

@Suite struct JSONBoolTests {
    @Test func boolArrays() throws {
        let array = try numeric("[[true, false], [false, true]]")
        #expect(array.elementKind == .booleans)
        #expect(array.shape == [2, 2])
        #expect(try array.decode(as: Bool.self) == [true, false, false, true])
    }

    @Test func numbersAreNotBooleansAndBooleansAreNotNumbers() throws {
        #expect(try decodeError("[1, 0]", as: Bool.self)?.message == "an array of numbers cannot be decoded as bool")
        #expect(try decodeError("[true]", as: Float.self)?.message == "an array of booleans cannot be decoded as float32")
    }
}

// MARK: - Floats

@Suite struct JSONFloatTests {
    @Test func floatsAreRoundedOnceFromTheDecimalText() throws {
        // Just above the midpoint between 1 and its successor: via Double it would round to
        // exactly the midpoint and then (ties to even) to 1.
        let text = "1.00000005960464477550"
        let expected = Float(1).nextUp
        #expect(try decoded("[\(text)]", as: Float.self) == [expected])
        #expect(try parse(text).numberValue?.floatValue == expected)
        #expect(Float(Double(text)!) == 1)  // the double-rounding result we avoid
        // Exact midpoints round to even.
        #expect(try decoded("[1.000000059604644775390625, 16777217, 16777219]", as: Float.self) == [1, 16_777_216, 16_777_220])
    }

    @Test func edgeValues() throws {
        let floats = try decoded("[3.4028235e38, 1e-45, 7.1e-46, 7e-46, 1.17549435e-38, -0.0, 0e-999, 1e-999]", as: Float.self)
        #expect(floats.map(\.bitPattern) == [Float.greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNonzeroMagnitude, 0,
                                             .leastNormalMagnitude, -0.0, 0, 0].map(\.bitPattern))
        let doubles = try decoded("[4.9e-324, 2.4e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1e-999]", as: Double.self)
        #expect(doubles.map(\.bitPattern) == [Double.leastNonzeroMagnitude, 0, .leastNormalMagnitude, .greatestFiniteMagnitude,
                                              -0.0, 0].map(\.bitPattern))
    }

    @Test func overflowIsAnError() throws {
        let error = try decodeError("[1, 3.5e38]", as: Float.self)
        #expect(error?.message == "value 3.5e38 is out of range for float32")
        #expect(error?.offset == 4)
        #expect(try decodeError("[-1e309]", as: Double.self)?.message == "value -1e309 is out of range for float64")
        #expect(try decoded("[3.5e38]", as: Double.self) == [3.5e38])
        #expect(try parse("1e400").numberValue?.doubleValue == .infinity)
    }

    @Test func longMantissas() throws {
        let digits = "0." + String(repeating: "1", count: 400)
        #expect(try decoded("[\(digits)]", as: Double.self) == [Double("0." + String(repeating: "1", count: 400))!])
        let zeros = "0." + String(repeating: "0", count: 300) + "1e300"
        #expect(try decoded("[\(zeros)]", as: Float.self) == [0.1])
        #expect(try decoded("[123456789012345678901234567890]", as: Float.self) == [1.2345679e29])
    }

    @Test func nonFiniteTokensNeedTheOption() throws {
        #expect(parseError("[NaN]") != nil)
        #expect(parseError("NaN") != nil)
        let options = JSONParser.Options(allowNonFiniteNumbers: true)
        let array = try numeric("[NaN, Infinity, -Infinity, 1.5]", options)
        #expect(array.containsNonFinite)
        let floats = try array.decode(as: Float.self)
        #expect(floats[0].isNaN && floats[1] == .infinity && floats[2] == -.infinity && floats[3] == 1.5)
        let doubles = try array.decode(as: Double.self)
        #expect(doubles[0].isNaN && doubles[1] == .infinity && doubles[2] == -.infinity)
        #expect(try parse("-Infinity", options).numberValue?.doubleValue == -.infinity)
        #expect(try parse("NaN", options).numberValue?.floatValue.isNaN == true)
        for bad in ["[-NaN]", "[Infinit]", "[NaNa]", "[nan]", "[inf]"] {
            #expect(parseError(bad, options) != nil, "\(bad)")
        }
    }

    @Test func randomFloatsRoundTripBitExactly() throws {
        var random = JSONTestRandom(state: 2024)
        var values: [Float] = []
        while values.count < 200_000 {
            let value = Float(bitPattern: UInt32(truncatingIfNeeded: random.next()))
            if value.isFinite { values.append(value) }
        }
        values += [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNormalMagnitude, .leastNonzeroMagnitude,
                   -0.0, 0, 1, 3, 16_777_216, 16_777_218, 0.1, 1e-4, 1e-5]
        var writer = JSONWriter()
        try values.withUnsafeBufferPointer { try writer.array($0) }
        let decoded = try JSONParser.parse(writer.bytes).numericArrayValue!.decode(as: Float.self)
        #expect(decoded.map(\.bitPattern) == values.map(\.bitPattern))
        // Each number is the shortest round trip, formatted like `description`.
        for value in values.prefix(20_000) {
            #expect(try written { try $0.value(value) } == value.description)
        }
    }

    @Test func randomDoublesRoundTripBitExactly() throws {
        var random = JSONTestRandom(state: 77)
        var values: [Double] = []
        while values.count < 200_000 {
            let value = Double(bitPattern: random.next())
            if value.isFinite { values.append(value) }
        }
        values += [.greatestFiniteMagnitude, .leastNormalMagnitude, .leastNonzeroMagnitude, -0.0, 1, 0.1, 0.3,
                   9_007_199_254_740_992, 9_007_199_254_740_994, 1e22, 1e23, .leastNonzeroMagnitude.nextUp]
        var writer = JSONWriter()
        try values.withUnsafeBufferPointer { try writer.array($0) }
        let decoded = try JSONParser.parse(writer.bytes).numericArrayValue!.decode(as: Double.self)
        #expect(decoded.map(\.bitPattern) == values.map(\.bitPattern))
        for value in values.prefix(20_000) {
            #expect(try written { try $0.value(value) } == value.description)
        }
    }

    @Test func matchesStrtodOnAwkwardDecimals() throws {
        // Random digit strings, exponents and near-midpoint values, against the C library.
        var random = JSONTestRandom(state: 5)
        var texts: [String] = []
        for _ in 0..<30_000 {
            var text = random.next() & 1 == 0 ? "-" : ""
            let digits = Int(random.next() % 25) + 1
            var mantissa = ""
            for k in 0..<digits { mantissa += String(k == 0 ? max(1, Int(random.next() % 10)) : Int(random.next() % 10)) }
            let point = Int(random.next() % UInt64(digits))
            text += point == 0 ? mantissa : String(mantissa.prefix(point)) + "." + String(mantissa.dropFirst(point))
            switch random.next() % 4 {
            case 0: text += "e\(Int(random.next() % 90) - 60)"
            case 1:
                let f = Float(bitPattern: UInt32(truncatingIfNeeded: random.next()) & 0x7F7F_FFFF)
                text = String((Double(f) + Double(f.nextUp)) / 2)
            default: break
            }
            if strtof(text, nil).isFinite { texts.append(text) }
        }
        let array = try numeric("[" + texts.joined(separator: ",") + "]")
        let floats = try array.decode(as: Float.self)
        let doubles = try array.decode(as: Double.self)
        for (k, text) in texts.enumerated() {
            #expect(floats[k].bitPattern == strtof(text, nil).bitPattern, "\(text)")
            #expect(doubles[k].bitPattern == strtod(text, nil).bitPattern, "\(text)")
        }
    }
}

// MARK: - Writer

@Suite struct JSONWriterTests {
    @Test func structureAndScalars() throws {
        let json = try written { w in
            w.beginObject()
            w.key("a")
            w.value(Int64.min)
            w.key("b")
            w.beginArray()
            w.value(true)
            w.value(false)
            w.null()
            w.value(UInt64.max)
            w.beginObject()
            w.endObject()
            w.beginArray()
            w.endArray()
            try w.value(Float(3))
            try w.value(0.1)
            w.endArray()
            w.key("c")
            w.value("s")
            w.endObject()
        }
        #expect(json == #"{"a":-9223372036854775808,"b":[true,false,null,18446744073709551615,{},[],3.0,0.1],"c":"s"}"#)
        #expect(try parse(json)["b"]?.arrayElements?.count == 8)
    }

    @Test func floatFormatting() throws {
        let floats: [Float] = [3, -3, 0.1, 1e-4, 1e-5, 1.5e-5, 123456.7, 1e7, 16_777_216, 16_777_218, 1e15,
                               .greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNormalMagnitude, -0.0, 0]
        for f in floats { #expect(try written { try $0.value(f) } == f.description) }
        #expect(try written { try $0.value(Float(3)) } == "3.0")
        #expect(try written { try $0.value(Float(1e-5)) } == "1e-05")
        let doubles: [Double] = [3, 0.1, 0.3, 1e-4, 1e-5, 1e15, 1e16, 9_007_199_254_740_992, 1e22, 1e23, .leastNonzeroMagnitude.nextUp,
                                 .greatestFiniteMagnitude, 2.2250738585072014e-308, 123.456, -0.0]
        for d in doubles { #expect(try written { try $0.value(d) } == d.description) }
    }

    @Test func nonFiniteFloats() throws {
        #expect(throws: JSONError.self) { _ = try written { try $0.value(Float.nan) } }
        #expect(throws: JSONError.self) { _ = try written { try $0.value(-Double.infinity) } }
        #expect(try written(.init(nonFiniteFloats: .null)) { try $0.array([Float.nan, 1, -.infinity]) } == "[null,1.0,null]")
        #expect(try written(.init(nonFiniteFloats: .tokens)) { try $0.array([Double.nan, .infinity, -.infinity]) } == "[NaN,Infinity,-Infinity]")
        #expect(throws: JSONError.self) { _ = try written { try $0.array([Float(1), .infinity]) } }

        // Parsed tokens follow the writer's option too.
        let value = try parse(#"{"a": [1, NaN, -Infinity], "b": Infinity}"#, .init(allowNonFiniteNumbers: true))
        #expect(try written(.init(nonFiniteFloats: .tokens)) { try $0.value(value) } == #"{"a":[1, NaN, -Infinity],"b":Infinity}"#)
        #expect(try written(.init(nonFiniteFloats: .null)) { try $0.value(value) } == #"{"a":[1, null, null],"b":null}"#)
        #expect(throws: JSONError.self) { _ = try written { try $0.value(value) } }
    }

    @Test func tensors() throws {
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        #expect(try written { try $0.array(values) } == "[1.0,2.0,3.0,4.0,5.0,6.0]")
        #expect(try written { try $0.array(values, shape: [2, 3]) } == "[[1.0,2.0,3.0],[4.0,5.0,6.0]]")
        #expect(try written { try $0.array(values, shape: [3, 1, 2]) } == "[[[1.0,2.0]],[[3.0,4.0]],[[5.0,6.0]]]")
        #expect(try written { try $0.array(values, shape: [1, 6, 1]) } == "[[[1.0],[2.0],[3.0],[4.0],[5.0],[6.0]]]")
        #expect(try written { try $0.array([Float(7)], shape: []) } == "7.0")
        #expect(try written { try $0.array([Float](), shape: [0]) } == "[]")
        #expect(try written { try $0.array([Float](), shape: [2, 0]) } == "[[],[]]")
        #expect(try written { try $0.array([Float](), shape: [0, 3]) } == "[]")
        #expect(try written { try $0.array([Float](), shape: [2, 2, 0]) } == "[[[],[]],[[],[]]]")
        #expect(throws: JSONError.self) { _ = try written { try $0.array(values, shape: [4, 2]) } }
        #expect(throws: JSONError.self) { _ = try written { try $0.array(values, shape: [-2, -3]) } }

        #expect(try written { try $0.array([Int32.min, 0, .max], shape: [3]) } == "[-2147483648,0,2147483647]")
        #expect(try written { try $0.array([UInt8(0), 9, 10, 99, 100, 255]) } == "[0,9,10,99,100,255]")
        #expect(try written { try $0.array([Int64.min, Int64.max]) } == "[-9223372036854775808,9223372036854775807]")
        #expect(try written { try $0.array([true, false, true, true], shape: [2, 2]) } == "[[true,false],[true,true]]")
        #expect(try written { try $0.array([0.1, 2.5e-8]) } == "[0.1,2.5e-08]")

        // Inside a document, with commas around.
        let json = try written { w in
            w.beginObject()
            w.key("outputs")
            try w.array([Float(0.5), 0.25], shape: [1, 2])
            w.key("shape")
            try w.array([1, 2] as [Int])
            w.endObject()
        }
        #expect(json == #"{"outputs":[[0.5,0.25]],"shape":[1,2]}"#)
    }

    @Test func largeNestedTensorRoundTrips() throws {
        var random = JSONTestRandom(state: 3)
        let shape = [7, 33, 65]
        let values = (0..<(7 * 33 * 65)).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: random.next()) & 0xBF7F_FFFF) }
        let json = try written { try $0.array(values, shape: shape) }
        let array = try numeric(json)
        #expect(array.shape == shape)
        #expect(try array.decode(as: Float.self).map(\.bitPattern) == values.map(\.bitPattern))
        let ints = (0..<(7 * 33 * 65)).map { _ in Int64(bitPattern: random.next()) }
        #expect(try numeric(written { try $0.array(ints, shape: shape) }).decode(as: Int64.self) == ints)
    }

    @Test func numbersKeepTheirText() throws {
        let value = try parse(#"[1.50, 1e2, -0, {"n": 12345678901234567890123}]"#)
        #expect(written { try? $0.value(value) } == #"[1.50,1e2,-0,{"n":12345678901234567890123}]"#)
        #expect(JSONNumber(Int64(-42)).text == "-42")
        #expect(JSONNumber(0.1).text == "0.1")
        #expect(JSONNumber(Float(3)).text == "3.0")
        #expect(JSONNumber(Double.nan).text == "NaN")
        #expect(JSONNumber(literal: "1.5e3")?.doubleValue == 1500)
        #expect(JSONNumber(literal: "01") == nil)
        #expect(JSONNumber(literal: "1 ") == nil)
    }

    @Test func rawValuesAndReset() {
        var writer = JSONWriter()
        writer.beginArray()
        writer.rawValue(Array("{\"pre\":1}".utf8))
        writer.value(2)
        writer.endArray()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"[{"pre":1},2]"#)
        writer.reset()
        writer.value("x")
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #""x""#)
    }
}
