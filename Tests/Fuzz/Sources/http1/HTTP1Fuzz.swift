import FuzzSupport
import Transport

// HTTP/1.1 request parser: any bytes, fed whole and cut into up to four pieces at offsets the
// input chooses, must give the same requests, bodies and error (the parser keeps no state
// that depends on how reads split the stream). Small limits from the input reach the
// header-size, header-count and body-size refusals.
//
// Input: [cuts: 1 byte] [offset: 2 bytes] x (cuts % 4) [limits: 1 byte] [request bytes...]

struct Request: Equatable {
    var head: HTTPRequestHead
    var body: [UInt8]
}

struct Outcome: Equatable {
    var requests: [Request] = []
    var partial: Request?
    var errorStatus: Int?
    var orderViolation = false
}

func feed(_ input: [UInt8], cuts: [Int], limits: HTTPParserLimits) -> Outcome {
    var parser = HTTP1Parser(limits: limits)
    var outcome = Outcome()
    var start = 0
    do {
        for end in cuts + [input.count] {
            let piece = Array(input[start..<max(start, end)])
            start = max(start, end)
            try piece.withUnsafeBytes { buffer in
                try parser.parse(buffer) { event in
                    switch event {
                    case .head(let head):
                        if outcome.partial != nil { outcome.orderViolation = true }
                        outcome.partial = Request(head: head, body: [])
                    case .body(let slice):
                        if outcome.partial == nil || slice.isEmpty { outcome.orderViolation = true }
                        outcome.partial?.body.append(contentsOf: slice)
                    case .end:
                        if let done = outcome.partial { outcome.requests.append(done) } else { outcome.orderViolation = true }
                        outcome.partial = nil
                    }
                }
            }
        }
    } catch let error as HTTPParseError {
        if !(400...505).contains(error.status) { fuzzFailure("parse error with status \(error.status): \(error)") }
        outcome.errorStatus = error.status
    } catch {
        fuzzFailure("the parser threw a non-HTTPParseError: \(error)")
    }
    return outcome
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let cutCount = Int(input.byte() % 4)
    var offsets = (0..<cutCount).map { _ in input.u16() }
    let limitChoice = input.byte()
    let limits = limitChoice & 1 == 0
        ? HTTPParserLimits()
        : HTTPParserLimits(maxHeaderBytes: 64 + Int(limitChoice) * 4, maxBodyBytes: Int(limitChoice >> 1), maxHeaderCount: Int(limitChoice >> 4) + 1)
    let bytes = input.rest()
    offsets = offsets.map { bytes.isEmpty ? 0 : $0 % (bytes.count + 1) }.sorted()
    let whole = feed(bytes, cuts: [], limits: limits)
    if whole.orderViolation { fuzzFailure("events out of order (whole input)") }
    let split = feed(bytes, cuts: offsets, limits: limits)
    if whole != split {
        fuzzFailure("whole and split (at \(offsets)) input disagree:\n  whole: \(whole)\n  split: \(split)")
    }
    return 0
}
