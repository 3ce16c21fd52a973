import Foundation
import WireFormat

// The JSON tensor path of a V2 REST request (parse the body, decode `data` into Float32)
// with WireFormat against Foundation's JSONDecoder and JSONSerialization on the same bytes,
// and the writing of a V2 answer with a large FP32 output with WireFormat's float formatter
// against `Float.description`. Release build only:
//   swift build -c release --static-swift-stdlib --product wireformat-bench
//   .build/release/wireformat-bench [elements] [repeats]
// Prints the median time per document and MB/s for each method.

let arguments = CommandLine.arguments
let elements = arguments.count > 1 ? Int(arguments[1])! : 150_528  // one 224x224x3 image
let repeats = arguments.count > 2 ? Int(arguments[2])! : 15

// Values like a normalised image, written as Python's json.dumps writes float(np.float32):
// the shortest Double text of the Float32 value (e.g. 0.12345679104328156).
var generator = SystemRandomNumberGenerator()
let values = (0..<elements).map { _ in Float.random(in: -2.2...2.7, using: &generator) }
var text = "{\"inputs\":[{\"name\":\"input_1\",\"shape\":[1,\(elements)],\"datatype\":\"FP32\",\"data\":["
text += values.map { Double($0).description }.joined(separator: ",")
text += "]}]}"
let body = Array(text.utf8)

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Median seconds of `repeats` runs of `body` (one unmeasured warm-up run first).
func measure(_ name: String, bytes: Int, _ body: () throws -> [Float]) rethrows {
    let check = try body()
    precondition(check.count == elements && check == values, "\(name) decoded different values")
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = now()
        let result = try body()
        times.append(now() - start)
        precondition(result.count == elements)
    }
    let median = times.sorted()[times.count / 2]
    print(name.padding(toLength: 46, withPad: " ", startingAt: 0) + String(format: "%8.2f ms  %7.1f MB/s", median * 1e3, Double(bytes) / median / 1e6))
}

struct Request: Decodable {
    struct Tensor: Decodable {
        let name: String
        let shape: [Int]
        let datatype: String
        let data: [Float]
    }
    let inputs: [Tensor]
}

print("V2 request: \(elements) FP32 values, \(body.count) bytes of JSON; median of \(repeats) runs")
try measure("WireFormat JSONParser + decode(into: Float)", bytes: body.count) {
    let document = try JSONParser.parse(body)
    guard let data = document["inputs"]?.arrayElements?.first?["data"]?.numericArrayValue else { fatalError("no data") }
    return try data.decode(as: Float.self)
}
let bodyData = Data(body)
try measure("Foundation JSONDecoder (Codable [Float])", bytes: body.count) {
    try JSONDecoder().decode(Request.self, from: bodyData).inputs[0].data
}
try measure("Foundation JSONSerialization -> [Float]", bytes: body.count) {
    let object = try JSONSerialization.jsonObject(with: bodyData) as! [String: Any]
    let input = (object["inputs"] as! [[String: Any]])[0]
    return (input["data"] as! [NSNumber]).map(\.floatValue)
}

// Writing: an answer whose one FP32 output holds `elements` values.
func answer(_ writeData: (inout JSONWriter) -> Void) -> [UInt8] {
    var writer = JSONWriter(reservingCapacity: elements * 12 + 128)
    writer.beginObject()
    writer.key("model_name"); writer.value("m")
    writer.key("outputs"); writer.beginArray(); writer.beginObject()
    writer.key("name"); writer.value("y")
    writer.key("datatype"); writer.value("FP32")
    writer.key("shape"); try! writer.array([1, elements])
    writer.key("data"); writeData(&writer)
    writer.endObject(); writer.endArray(); writer.endObject()
    return writer.bytes
}
/// The data list with each element's `description` appended to the bytes (what the writer
/// would do without its own formatter).
func describedList() -> [UInt8] {
    var list: [UInt8] = [UInt8(ascii: "[")]
    list.reserveCapacity(elements * 12)
    for (index, value) in values.enumerated() {
        if index > 0 { list.append(UInt8(ascii: ",")) }
        list.append(contentsOf: value.description.utf8)
    }
    list.append(UInt8(ascii: "]"))
    return list
}
let formatted = answer { try! $0.array(values) }
let described = answer { writer in
    writer.rawValue(describedList())
}
precondition(formatted == described, "the formatter and Float.description disagree")
print("V2 answer: \(elements) FP32 values, \(formatted.count) bytes of JSON (byte-identical both ways)")
func measureWrite(_ name: String, _ body: () -> [UInt8]) {
    var times: [Double] = []
    for _ in 0...repeats {
        let start = now()
        let bytes = body()
        times.append(now() - start)
        precondition(bytes.count == formatted.count)
    }
    let median = times.dropFirst().sorted()[repeats / 2]
    print(name.padding(toLength: 46, withPad: " ", startingAt: 0) + String(format: "%8.2f ms  %7.1f MB/s", median * 1e3, Double(formatted.count) / median / 1e6))
}
measureWrite("JSONWriter.array (Ryu formatter)") { answer { try! $0.array(values) } }
measureWrite("Float.description per element") {
    answer { writer in writer.rawValue(describedList()) }
}
