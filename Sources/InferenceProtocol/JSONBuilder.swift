/// Appends a JSON document to a byte array, inserting commas itself. Floats use the shortest
/// round-trip form; non-finite floats are written as the `NaN` / `Infinity` / `-Infinity`
/// tokens TF Serving uses.
struct JSONBuilder {
    private(set) var bytes: [UInt8] = []
    /// Per open container: whether it already has an element.
    private var hasElement: [Bool] = []
    private var afterKey = false

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    private mutating func separate() {
        if afterKey { afterKey = false; return }
        if let last = hasElement.last {
            if last { bytes.append(UInt8(ascii: ",")) }
            hasElement[hasElement.count - 1] = true
        }
    }

    mutating func beginObject() { separate(); bytes.append(UInt8(ascii: "{")); hasElement.append(false) }
    mutating func endObject() { hasElement.removeLast(); bytes.append(UInt8(ascii: "}")) }
    mutating func beginArray() { separate(); bytes.append(UInt8(ascii: "[")); hasElement.append(false) }
    mutating func endArray() { hasElement.removeLast(); bytes.append(UInt8(ascii: "]")) }

    mutating func key(_ name: String) {
        separate()
        appendQuoted(name)
        bytes.append(UInt8(ascii: ":"))
        afterKey = true
    }

    mutating func string(_ value: String) { separate(); appendQuoted(value) }
    mutating func bool(_ value: Bool) { separate(); bytes.append(contentsOf: value ? Array("true".utf8) : Array("false".utf8)) }
    mutating func null() { separate(); bytes.append(contentsOf: Array("null".utf8)) }
    mutating func int(_ value: Int64) { separate(); bytes.append(contentsOf: Array(String(value).utf8)) }
    mutating func int(_ value: Int) { int(Int64(value)) }
    mutating func uint(_ value: UInt64) { separate(); bytes.append(contentsOf: Array(String(value).utf8)) }

    mutating func float(_ value: Float) {
        separate()
        guard value.isFinite else { appendNonFinite(Double(value)); return }
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: FloatFormatting.maxFloatLength))
        let written = bytes.withUnsafeMutableBufferPointer { FloatFormatting.write(value, to: $0.baseAddress! + start) }
        bytes.removeLast(FloatFormatting.maxFloatLength - written)
    }

    mutating func double(_ value: Double) {
        separate()
        guard value.isFinite else { appendNonFinite(value); return }
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: FloatFormatting.maxDoubleLength))
        let written = bytes.withUnsafeMutableBufferPointer { FloatFormatting.write(value, to: $0.baseAddress! + start) }
        bytes.removeLast(FloatFormatting.maxDoubleLength - written)
    }

    private mutating func appendNonFinite(_ value: Double) {
        bytes.append(contentsOf: Array((value.isNaN ? "NaN" : value > 0 ? "Infinity" : "-Infinity").utf8))
    }

    private mutating func appendQuoted(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
