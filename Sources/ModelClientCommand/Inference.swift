import Glibc
import WireFormat

/// What one request sends: encoded images, or named tensors (name nil: the model's first input).
enum Payload {
    case images([(path: String, bytes: [UInt8])])
    case tensors([(name: String?, array: NPYArray)])
}

/// One instance's result.
enum RowResult {
    /// Class scores, index = class; ranked by the client.
    case scores([Double])
    /// Classified by the server, best first; label and/or class index as the server gave them.
    case ranked([(label: String?, index: Int?, score: Double)])
}

/// The server answered with an error status; `message` is its `"error"` text (or body).
struct ServerError: Error, CustomStringConvertible {
    let status: Int
    let message: String
    var description: String { "\(status) \(message)" }
}

/// A response the client cannot interpret.
struct ResponseError: Error, CustomStringConvertible {
    let description: String
}

/// REST calls to one model on one server over a keep-alive `HTTPClient`; errors are
/// `HTTPClientError`, `ServerError` or `ResponseError`.
final class ModelEndpoint {
    let http: HTTPClient
    let model: String
    let version: String?
    let verbose: Bool

    init(http: HTTPClient, model: String, version: String?, verbose: Bool) {
        self.http = http
        self.model = model
        self.version = version
        self.verbose = verbose
    }

    /// /v1/models/<m>[/versions/<v>] or /v2/models/<m>[/versions/<v>]
    func modelPath(_ api: String) -> String {
        "/\(api)/models/\(PercentEncoding.encodePathSegment(model))" + (version.map { "/versions/\(PercentEncoding.encodePathSegment($0))" } ?? "")
    }

    /// The V2 model metadata (GET /v2/models/<m>): input and output names in model order.
    func v2Metadata() throws -> (inputs: [String], outputs: [String]) {
        let response = try send("GET", modelPath("v2"), summary: "model metadata")
        let json = try Self.parseJSON(response.body[...], what: "metadata")
        let names = { (key: String) in (json[key]?.array ?? []).compactMap { $0["name"]?.string } }
        return (names("inputs"), names("outputs"))
    }

    // MARK: KServe V1 / TF Serving REST

    /// POST :predict. Images go as `{"instances": [{"b64": ...}]}` (`{"NAME": {"b64": ...}}`
    /// with `imageInputName`); one tensor as row-format `instances`, several as columnar
    /// `{"inputs": {NAME: ...}}`.
    func predictV1(_ payload: Payload, imageInputName: String?, outputName: String?) throws -> [RowResult] {
        var body: String
        switch payload {
        case .images(let images):
            let instances = images.map { image in
                let value = "{\"b64\":\(jsonString(Base64.encode(image.bytes)))}"
                return imageInputName.map { "{\(jsonString($0)):\(value)}" } ?? value
            }
            body = "{\"instances\":[" + instances.joined(separator: ",") + "]}"
        case .tensors(let tensors) where tensors.count == 1:
            let array = tensors[0].array
            body = array.shape.isEmpty ? "{\"inputs\":\(array.jsonNested())}" : "{\"instances\":\(array.jsonNested())}"
        case .tensors(let tensors):
            body = "{\"inputs\":{" + tensors.map { "\(jsonString($0.name ?? "")):\($0.array.jsonNested())" }.joined(separator: ",") + "}}"
        }
        let response = try send("POST", modelPath("v1") + ":predict", headers: [("Content-Type", "application/json")],
                                body: Array(body.utf8), summary: Self.describe(payload))
        return try Self.v1Rows(Self.parseJSON(response.body[...], what: "response"), outputName: outputName)
    }

    /// Rows of a V1 response: `predictions` (row format) or `outputs` (columnar). A row with
    /// `scores` (and `classes`) is a server-side classification (TF Serving Inception style).
    static func v1Rows(_ json: JSONValue, outputName: String?) throws -> [RowResult] {
        if let predictions = json["predictions"]?.array {
            return try predictions.map { row in
                guard let members = row.members else { return try .scores(numbers(row, output: "predictions")) }
                if let scores = row["scores"], let classes = row["classes"], outputName == nil || outputName == "scores" {
                    return try ranked(classes: classes.leaves, scores: numbers(scores, output: "scores"))
                }
                let (name, value) = try pick(members, outputName)
                return try .scores(numbers(value, output: name))
            }
        }
        guard let outputs = json["outputs"] else { throw ResponseError(description: "the response has neither 'predictions' nor 'outputs'") }
        var value = outputs, name = "outputs"
        if let members = outputs.members {
            if let scores = outputs["scores"], let classes = outputs["classes"], outputName == nil || outputName == "scores" {
                let classRows = splitRows(classes)
                return try splitRows(scores).enumerated().map { index, row in
                    try ranked(classes: index < classRows.count ? classRows[index].leaves : [], scores: numbers(row, output: "scores"))
                }
            }
            (name, value) = try pick(members, outputName)
        }
        return try splitRows(value).map { try .scores(numbers($0, output: name)) }
    }

    /// The first dimension of a nested list as rows (a flat list or scalar is one row).
    private static func splitRows(_ value: JSONValue) -> [JSONValue] {
        value.listDepth >= 2 ? value.array ?? [] : [value]
    }

    private static func pick(_ members: [(key: String, value: JSONValue)], _ name: String?) throws -> (String, JSONValue) {
        if let name {
            guard let member = members.first(where: { $0.key == name }) else {
                throw ResponseError(description: "the response has no output '\(name)' (outputs: \(members.map(\.key).joined(separator: ", ")))")
            }
            return member
        }
        guard let first = members.first else { throw ResponseError(description: "the response has no outputs") }
        return first
    }

    fileprivate static func numbers(_ value: JSONValue, output: String) throws -> [Double] {
        try value.leaves.map { leaf in
            switch leaf {
            case .number(let number): return number.doubleValue
            case .bool(let flag): return flag ? 1 : 0
            default: throw ResponseError(description: "output '\(output)' is not numeric; choose another with --output-name")
            }
        }
    }

    /// TF Serving style classification, best first: `classes[i]` scored `scores[i]`. A class
    /// that is an integer (or an integer string) is a class index, named from --labels.
    private static func ranked(classes: [JSONValue], scores: [Double]) -> RowResult {
        var entries: [(label: String?, index: Int?, score: Double)] = []
        for (position, score) in scores.enumerated() {
            switch position < classes.count ? classes[position] : JSONValue.null {
            case .string(let label): entries.append(Int(label).map { (nil, $0, score) } ?? (label, nil, score))
            case .number(let literal) where literal.doubleValue == literal.doubleValue.rounded() && abs(literal.doubleValue) < 1e15:
                entries.append((nil, Int(literal.doubleValue), score))
            default: entries.append((nil, nil, score))
            }
        }
        return .ranked(stableSortedDescending(entries))
    }

    // MARK: Open Inference Protocol V2

    /// POST /infer with the binary tensor extension: images as one BYTES tensor [N] (each
    /// element a 4-byte little-endian length and the bytes), .npy arrays with their dtype and
    /// shape; `defaultInputName` names the images and unnamed tensors. `classify` (output
    /// name, k) asks the server for `classification: k`; otherwise outputs come back binary.
    func inferV2(_ payload: Payload, defaultInputName: String, classify: (output: String, k: Int)?, outputName: String?) throws -> [RowResult] {
        let tensors = Self.v2Inputs(payload, defaultInputName: defaultInputName)
        var header = "{\"inputs\":["
        header += tensors.map { tensor in
            "{\"name\":\(jsonString(tensor.name)),\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],"
                + "\"datatype\":\"\(tensor.datatype)\",\"parameters\":{\"binary_data_size\":\(tensor.data.count)}}"
        }.joined(separator: ",") + "]"
        if let classify {
            header += ",\"outputs\":[{\"name\":\(jsonString(classify.output)),\"parameters\":{\"classification\":\(classify.k)}}]"
        } else {
            header += ",\"parameters\":{\"binary_data_output\":true}"
        }
        header += "}"
        var body = Array(header.utf8)
        for tensor in tensors { body += tensor.data }
        let response = try send("POST", modelPath("v2") + "/infer",
                                headers: [("Content-Type", "application/octet-stream"), ("Inference-Header-Content-Length", String(header.utf8.count))],
                                body: body, summary: Self.describe(payload, inputName: defaultInputName))
        return try Self.v2Rows(response, outputName: classify?.output ?? outputName)
    }

    /// The V2 input tensors of `payload` (shared by REST and gRPC): images as one BYTES tensor
    /// [N] whose data is each image as a 4-byte little-endian length and the bytes; .npy arrays
    /// with their dtype, shape and raw little-endian data. `defaultInputName` names the images
    /// and unnamed tensors.
    static func v2Inputs(_ payload: Payload, defaultInputName: String) -> [(name: String, datatype: String, shape: [Int], data: [UInt8])] {
        switch payload {
        case .images(let images):
            var data: [UInt8] = []
            data.reserveCapacity(images.reduce(0) { $0 + 4 + $1.bytes.count })
            for image in images {
                withUnsafeBytes(of: UInt32(image.bytes.count).littleEndian) { data.append(contentsOf: $0) }
                data += image.bytes
            }
            return [(defaultInputName, "BYTES", [images.count], data)]
        case .tensors(let arrays):
            return arrays.map { ($0.name ?? defaultInputName, $0.array.dtype.v2Name, $0.array.shape, $0.array.data) }
        }
    }

    /// One output of a V2 response (REST or gRPC): its raw bytes (binary extension,
    /// `raw_output_contents`) or its values as JSON (`data`, typed gRPC `contents`).
    struct V2Output {
        var name: String
        var datatype: String
        var shape: [Int]
        var binary: ArraySlice<UInt8>?
        var data: JSONValue?

        /// Rows = first dimension when rank >= 2, else 1.
        var rows: Int { shape.count >= 2 ? shape[0] : 1 }

        func strings() throws -> [String] {
            guard var bytes = binary else { return (data?.leaves ?? []).compactMap(\.string) }
            var strings: [String] = []
            while bytes.count >= 4 {
                let length = bytes.prefix(4).reversed().reduce(0) { $0 << 8 | Int($1) }
                bytes = bytes.dropFirst(4)
                guard length <= bytes.count else { throw ResponseError(description: "output '\(name)': truncated BYTES element") }
                strings.append(String(decoding: bytes.prefix(length), as: UTF8.self))
                bytes = bytes.dropFirst(length)
            }
            return strings
        }

        func numbers() throws -> [Double] {
            if let binary { return try decodeBinary(binary, datatype: datatype, name: name) }
            return try ModelEndpoint.numbers(data ?? .array([]), output: name)
        }
    }

    /// Rows of a V2 REST response (JSON or binary extension); see `v2Rows(_:outputName:)`.
    static func v2Rows(_ response: HTTPResponse, outputName: String?) throws -> [RowResult] {
        var jsonLength = response.body.count
        if let text = response.header("inference-header-content-length") {
            guard let value = Int(text.trimmed), value >= 0, value <= response.body.count else {
                throw ResponseError(description: "bad Inference-Header-Content-Length '\(text)' for a \(response.body.count)-byte body")
            }
            jsonLength = value
        }
        let json = try parseJSON(response.body[0..<jsonLength], what: "response")
        guard let list = json["outputs"]?.array else { throw ResponseError(description: "the response has no 'outputs' list") }
        var offset = jsonLength
        var outputs: [V2Output] = []
        for output in list {
            guard let name = output["name"]?.string, let datatype = output["datatype"]?.string,
                  let shape = output["shape"]?.array?.compactMap({ $0.number.flatMap { Int(exactly: $0) } }) else {
                throw ResponseError(description: "an output lacks 'name', 'datatype' or 'shape'")
            }
            var binary: ArraySlice<UInt8>?
            if let value = output["parameters"]?["binary_data_size"]?.number {
                guard let size = Int(exactly: value), size >= 0, size <= response.body.count - offset else {
                    throw ResponseError(description: "output '\(name)': binary_data_size \(value) exceeds the \(response.body.count - offset) bytes left")
                }
                binary = response.body[offset..<offset + size]
                offset += size
            }
            outputs.append(V2Output(name: name, datatype: datatype, shape: shape, binary: binary, data: output["data"]))
        }
        return try v2Rows(outputs, outputName: outputName)
    }

    /// Rows of a V2 response's outputs. Without `outputName` (or with "scores"), BYTES
    /// `classes` and numeric `scores` outputs are a server-side classification (TF Serving
    /// Inception style). Otherwise `outputName` or the first output: BYTES
    /// "score:index[:label]" strings are a server-side classification (the classification
    /// extension), numbers are scores [N, C] (any shape: rows = first dimension when rank >= 2).
    static func v2Rows(_ outputs: [V2Output], outputName: String?) throws -> [RowResult] {
        if outputName == nil || outputName == "scores",
           let classes = outputs.first(where: { $0.name == "classes" && $0.datatype == "BYTES" }),
           let scores = outputs.first(where: { $0.name == "scores" && $0.datatype != "BYTES" }) {
            let names = try classes.strings(), values = try scores.numbers()
            guard names.count == values.count else {
                throw ResponseError(description: "\(names.count) classes but \(values.count) scores in the response")
            }
            let rows = chunks(Array(zip(names, values)), scores.rows)
            return rows.map { row in ranked(classes: row.map { .string($0.0) }, scores: row.map(\.1)) }
        }

        guard let output = outputName.map({ name in outputs.first { $0.name == name } }) ?? outputs.first else {
            throw ResponseError(description: outputName.map { "the response has no output '\($0)' (outputs: \(outputs.map(\.name).joined(separator: ", ")))" } ?? "the response has no outputs")
        }
        if output.datatype == "BYTES" {
            let entries = try output.strings().map { text in
                let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count >= 2, let score = Double(parts[0]), let index = Int(parts[1]) else {
                    throw ResponseError(description: "output '\(output.name)' is BYTES but '\(text.prefix(60))' is not a 'score:index[:label]' classification")
                }
                return (label: parts.count > 2 ? String(parts[2]) : nil, index: Optional(index), score: score)
            }
            return chunks(entries, output.rows).map { .ranked(Array($0)) }
        }
        return try chunks(output.numbers(), output.rows).map { .scores(Array($0)) }
    }

    /// `items` cut into `rows` equal parts (one part if they do not divide evenly).
    private static func chunks<T>(_ items: [T], _ rows: Int) -> [ArraySlice<T>] {
        guard rows > 1, items.count % rows == 0 else { return rows == 0 ? [] : [items[...]] }
        let size = items.count / rows
        return (0..<rows).map { items[$0 * size..<($0 + 1) * size] }
    }

    fileprivate static func decodeBinary(_ bytes: ArraySlice<UInt8>, datatype: String, name: String) throws -> [Double] {
        let raw = Array(bytes)
        func values<T>(_ size: Int, _ load: (UnsafeRawBufferPointer, Int) -> T, _ convert: (T) -> Double) throws -> [Double] {
            guard raw.count % size == 0 else { throw ResponseError(description: "output '\(name)': \(raw.count) bytes is not a whole number of \(datatype) values") }
            return raw.withUnsafeBytes { buffer in (0..<raw.count / size).map { convert(load(buffer, $0 * size)) } }
        }
        func little<T: FixedWidthInteger>(_: T.Type) -> (UnsafeRawBufferPointer, Int) -> T {
            { T(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: T.self)) }
        }
        switch datatype {
        case "FP32": return try values(4, little(UInt32.self)) { Double(Float(bitPattern: $0)) }
        case "FP64": return try values(8, little(UInt64.self)) { Double(bitPattern: $0) }
        case "FP16": return try values(2, little(UInt16.self)) { Double(Float16(bitPattern: $0)) }
        case "BF16": return try values(2, little(UInt16.self)) { Double(Float(bitPattern: UInt32($0) << 16)) }
        case "INT8": return try values(1, little(Int8.self)) { Double($0) }
        case "INT16": return try values(2, little(Int16.self)) { Double($0) }
        case "INT32": return try values(4, little(Int32.self)) { Double($0) }
        case "INT64": return try values(8, little(Int64.self)) { Double($0) }
        case "UINT8", "BOOL": return try values(1, little(UInt8.self)) { Double($0) }
        case "UINT16": return try values(2, little(UInt16.self)) { Double($0) }
        case "UINT32": return try values(4, little(UInt32.self)) { Double($0) }
        case "UINT64": return try values(8, little(UInt64.self)) { Double($0) }
        default: throw ResponseError(description: "output '\(name)' has datatype \(datatype), which the client cannot rank")
        }
    }

    // MARK: transport

    /// One request; a status >= 300 becomes a `ServerError` with the server's message.
    private func send(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [], summary: String) throws -> HTTPResponse {
        if verbose { writeStderr("> \(method) \(path) (\(summary); \(body.count) bytes)") }
        let started = Self.milliseconds()
        let response = try http.request(method, path, headers: headers, body: body)
        if verbose {
            let elapsed = Self.milliseconds() - started
            writeStderr("< \(response.status) \(response.reason) (\(response.body.count) bytes, \(formatted(elapsed, digits: 4)) ms)")
        }
        guard response.status < 300 else {
            throw ServerError(status: response.status, message: Self.errorMessage(response))
        }
        return response
    }

    /// The `"error"` string of a JSON error body, else the body text (shortened).
    static func errorMessage(_ response: HTTPResponse) -> String {
        if let json = try? JSONValue.parseResponse(response.body[...]), let message = json["error"]?.string { return message }
        let text = String(decoding: response.body.prefix(1000), as: UTF8.self).trimmingNewlines
        return text.isEmpty ? response.reason : text
    }

    private static func parseJSON(_ bytes: ArraySlice<UInt8>, what: String) throws -> JSONValue {
        do {
            return try JSONValue.parseResponse(bytes)
        } catch {
            throw ResponseError(description: "the server's \(what) is not valid JSON (\(error))")
        }
    }

    /// "3 images as NAME" or "NAME FP32 [1, 1, 8, 8], ..." for --verbose.
    static func describe(_ payload: Payload, inputName: String? = nil) -> String {
        switch payload {
        case .images(let images):
            return "\(images.count) image\(images.count == 1 ? "" : "s")" + (inputName.map { " as \($0)" } ?? "")
        case .tensors(let tensors):
            return tensors.map { "\($0.name ?? inputName ?? "input") \($0.array.dtype.v2Name) \($0.array.shape)" }.joined(separator: ", ")
        }
    }

    static func milliseconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) * 1000 + Double(time.tv_nsec) / 1e6
    }
}

/// `entries` by score, highest first; equal scores keep their order, NaN goes last.
func stableSortedDescending(_ entries: [(label: String?, index: Int?, score: Double)]) -> [(label: String?, index: Int?, score: Double)] {
    entries.enumerated().sorted { a, b in
        let x = a.element.score.isNaN ? -Double.infinity : a.element.score
        let y = b.element.score.isNaN ? -Double.infinity : b.element.score
        return x != y ? x > y : a.offset < b.offset
    }.map(\.element)
}

/// Writes `line` and a newline to stderr.
func writeStderr(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
        if written > 0 { offset += written } else if written < 0 && errno == EINTR { continue } else { return }
    }
}

/// `value` printed like C's `%.<digits>g`.
func formatted(_ value: Double, digits: Int = 6) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%.\(digits)g", $0) }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension String {
    var trimmingNewlines: String {
        var text = Substring(self)
        while let last = text.last, last.isNewline || last == " " { text = text.dropLast() }
        while let first = text.first, first.isNewline || first == " " { text = text.dropFirst() }
        return String(text)
    }
}
