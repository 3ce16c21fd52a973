import WireFormat
/// The response writer the protocol layer uses: `JSONWriter` with TF Serving's non-finite
/// float tokens (`NaN`, `Infinity`, `-Infinity`), so no write can fail.
struct JSONBuilder {
    private var writer: JSONWriter

    init(capacity: Int = 256) {
        writer = JSONWriter(options: .init(nonFiniteFloats: .tokens), reservingCapacity: capacity)
    }

    var bytes: [UInt8] { writer.bytes }

    mutating func beginObject() { writer.beginObject() }
    mutating func endObject() { writer.endObject() }
    mutating func beginArray() { writer.beginArray() }
    mutating func endArray() { writer.endArray() }
    mutating func key(_ name: String) { writer.key(name) }
    mutating func string(_ value: String) { writer.value(value) }
    mutating func bool(_ value: Bool) { writer.value(value) }
    mutating func null() { writer.null() }
    mutating func int(_ value: Int64) { writer.value(value) }
    mutating func int(_ value: Int) { writer.value(value) }
    mutating func uint(_ value: UInt64) { writer.value(value) }
    // With `.tokens`, float writes never throw.
    mutating func float(_ value: Float) { try? writer.value(value) }
    mutating func double(_ value: Double) { try? writer.value(value) }
}
