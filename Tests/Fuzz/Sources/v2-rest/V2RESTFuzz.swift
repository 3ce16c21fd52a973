import FuzzSupport
import InferenceProtocol

// Open Inference Protocol V2 over REST: JSON requests (nested and flat `data`, every
// datatype, parameters, requested outputs), the binary tensor extension
// (Inference-Header-Content-Length, binary_data_size, binary outputs), raw binary and raw
// image bodies, run end to end on three tiny real models (see FuzzServices). Every request
// gets exactly one answer, never a server error.
//
// Input: [route: 1 byte] [flags: 1 byte] [header length: 2 bytes] [body...]

nonisolated(unsafe) let services = FuzzServices()

let routes: [(String, String)] = [
    ("POST", "/v2/models/relu/infer"), ("POST", "/v2/models/mixed/infer"), ("POST", "/v2/models/image/infer"),
    ("POST", "/v2/models/relu/versions/1/infer"), ("POST", "/v2/models/mixed/versions/2/infer"),
    ("POST", "/v2/models/missing/infer"), ("GET", "/v2/models/relu"), ("GET", "/v2/models/mixed/versions/1/ready"),
    ("GET", "/v2/models/image/config"), ("GET", "/v2"), ("POST", "/v2/repository/index"), ("GET", "/v2/health/ready"),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let (method, path) = input.pick(routes)
    let flags = input.byte()
    let headerLength = input.u16()
    let body = input.rest()
    var headers: [(String, String)] = []
    switch flags % 4 {
    case 1: headers.append(("inference-header-content-length", String(headerLength)))
    case 2: headers.append(("inference-header-content-length", String(min(headerLength, body.count))))
    case 3: headers.append(("inference-header-content-length", "0"))
    default: break
    }
    if flags & 4 != 0 { headers.append(("content-type", flags & 8 != 0 ? "image/jpeg" : "application/json")) }
    let response = services.answer(RESTRequest(method: method, path: path, headers: headers, body: body))
    if response.status >= 500 && response.status != 503 {
        fuzzFailure("\(method) \(path): status \(response.status): \(String(decoding: response.body, as: UTF8.self))")
    }
    return 0
}
