import Testing
@testable import Transport

/// Feeds `body` to an assembler in pieces ending at `cuts`; the first refusal, or the unary result.
private func assemble(_ body: [UInt8], cuts: [Int], limit: Int, encoding: String? = nil) -> GRPCWire.Unframed {
    var assembler = GRPCMessageAssembler()
    var start = 0
    for end in cuts + [body.count] {
        let piece = Array(body[start..<max(start, end)])
        start = max(start, end)
        if let refusal = piece.withUnsafeBufferPointer({ assembler.append($0, maxMessageBytes: limit) }) { return .rejected(refusal) }
    }
    return assembler.unary(encoding: encoding, maxMessageBytes: limit)
}

private func framed(_ message: [UInt8], compressed: Bool = false) -> [UInt8] {
    var frame = GRPCWire.frame(message)
    if compressed { frame[0] = 1 }
    return frame
}

@Suite struct GRPCMessageAssemblerTests {
    @Test func aMessageSplitAnywhereIsAssembledWhole() {
        let message = Array("a protobuf message".utf8)
        let body = framed(message)
        for cut in 0...body.count {
            guard case .message(let got, nil) = assemble(body, cuts: [cut], limit: 1000) else {
                Issue.record("cut at \(cut)")
                continue
            }
            #expect(got == message, "cut at \(cut)")
        }
        // One byte at a time.
        guard case .message(let got, nil) = assemble(body, cuts: Array(0..<body.count), limit: 1000) else {
            Issue.record("byte by byte")
            return
        }
        #expect(got == message)
    }

    @Test func anOversizedMessageIsRefusedAtItsPrefixBeforeItsBytes() {
        var assembler = GRPCMessageAssembler()
        let prefix = GRPCWire.prefix(length: 101)
        let refusal = prefix.withUnsafeBufferPointer { assembler.append($0, maxMessageBytes: 100) }
        #expect(refusal?.status == GRPCResponse.resourceExhausted)
        #expect(assembler.message.isEmpty)
        // Exactly the limit is accepted.
        guard case .message(let got, nil) = assemble(framed([UInt8](repeating: 7, count: 100)), cuts: [3, 50], limit: 100) else {
            Issue.record("limit is inclusive")
            return
        }
        #expect(got.count == 100)
    }

    @Test func bytesBeyondTheLimitAreRefusedEvenWhenThePrefixLied() {
        // The prefix says 10 bytes; 120 follow (a second message, or garbage).
        let body = GRPCWire.prefix(length: 10) + [UInt8](repeating: 1, count: 120)
        guard case .rejected(let response) = assemble(body, cuts: [5, 60], limit: 100) else {
            Issue.record("not refused")
            return
        }
        #expect(response.status == GRPCResponse.resourceExhausted)
    }

    @Test func malformedUnaryBodiesGetTheirStatus() {
        func status(_ body: [UInt8], encoding: String? = nil) -> Int? {
            if case .rejected(let response) = assemble(body, cuts: [], limit: 1000, encoding: encoding) { return response.status }
            return nil
        }
        #expect(status([]) == GRPCResponse.unimplemented)  // no message
        #expect(status([0, 0, 0]) == GRPCResponse.unimplemented)  // truncated prefix
        #expect(status(GRPCWire.prefix(length: 5) + [1, 2]) == GRPCResponse.internalError)  // truncated message
        #expect(status(framed([1]) + framed([2])) == GRPCResponse.unimplemented)  // two messages
        #expect(status(framed([1], compressed: true)) == GRPCResponse.internalError)  // compressed, no encoding
        guard case .message(_, "gzip") = assemble(framed([1], compressed: true), cuts: [], limit: 1000, encoding: "gzip") else {
            Issue.record("compressed message")
            return
        }
    }
}
