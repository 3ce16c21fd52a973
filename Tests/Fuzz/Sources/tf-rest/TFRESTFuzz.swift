import FuzzSupport
import InferenceProtocol

// TensorFlow Serving REST (KServe V1): predict (row "instances" and columnar "inputs"
// formats, base64 {"b64": ...} values, signature_name), classify and regress (examples,
// context), status and metadata, with versions and labels in the path, run end to end on
// three tiny real models (see FuzzServices). Every request gets exactly one answer, never
// a server error.
//
// Input: [route: 1 byte] [body...]

nonisolated(unsafe) let services = FuzzServices()

let routes: [(String, String)] = [
    ("POST", "/v1/models/relu:predict"), ("POST", "/v1/models/mixed:predict"), ("POST", "/v1/models/image:predict"),
    ("POST", "/v1/models/relu/versions/1:predict"), ("POST", "/v1/models/mixed/labels/stable:predict"),
    ("POST", "/v1/models/relu:classify"), ("POST", "/v1/models/relu:regress"), ("POST", "/v1/models/mixed:classify"),
    ("POST", "/v1/models/missing:predict"), ("GET", "/v1/models/relu"), ("GET", "/v1/models/mixed/metadata"),
    ("GET", "/v1/models/image/versions/1/metadata"), ("POST", "/v1/models/relu:explain"), ("GET", "/v1/models"),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let (method, path) = input.pick(routes)
    let body = input.rest()
    let response = services.answer(RESTRequest(method: method, path: path, headers: [("content-type", "application/json")], body: body))
    if response.status >= 500 && response.status != 503 && response.status != 501 {
        fuzzFailure("\(method) \(path): status \(response.status): \(String(decoding: response.body, as: UTF8.self))")
    }
    return 0
}
