import Testing
@testable import Transport

/// A request body as Transport receives it: the first 5 bytes apart from the rest.
/// Compressed messages are inflated as the connection does (`decompress` after `unframeUnary`).
private func unframe(_ body: [UInt8], limit: Int, encoding: String? = nil) -> GRPCWire.Unframed {
    let unframed = GRPCWire.unframeUnary(prefix: Array(body.prefix(5)), message: Array(body.dropFirst(5)), encoding: encoding, maxMessageBytes: limit)
    if case .message(let message, let compression?) = unframed {
        return GRPCWire.decompress(message, encoding: compression, maxMessageBytes: limit)
    }
    return unframed
}

@Suite struct GRPCWireTests {
    @Test func timeouts() {
        #expect(GRPCWire.timeoutSeconds("10S") == 10)
        #expect(GRPCWire.timeoutSeconds("2H") == 7200)
        #expect(GRPCWire.timeoutSeconds("3M") == 180)
        #expect(GRPCWire.timeoutSeconds("1500m") == 1.5)
        #expect(GRPCWire.timeoutSeconds("99999999u")! - 99.999999 < 1e-9)
        #expect(GRPCWire.timeoutSeconds("250n")! - 2.5e-7 < 1e-15)
        // At most 8 digits, a unit, nothing else.
        #expect(GRPCWire.timeoutSeconds("123456789S") == nil)
        #expect(GRPCWire.timeoutSeconds("S") == nil)
        #expect(GRPCWire.timeoutSeconds("10") == nil)
        #expect(GRPCWire.timeoutSeconds("1.5S") == nil)
        #expect(GRPCWire.timeoutSeconds("10s") == nil)
    }

    @Test func messagesArePercentEncoded() {
        #expect(GRPCWire.percentEncode("plain text: ok") == "plain text: ok")
        #expect(GRPCWire.percentEncode("100% sure") == "100%25 sure")
        #expect(GRPCWire.percentEncode("line\nbreak") == "line%0Abreak")
        #expect(GRPCWire.percentEncode("größe") == "gr%C3%B6%C3%9Fe")
    }

    @Test func framing() {
        let message: [UInt8] = Array(0..<200).map { UInt8($0) }
        let framed = GRPCWire.frame(message)
        #expect(framed.prefix(5) == [0, 0, 0, 0, 200])
        guard case .message(let back, nil) = unframe(framed, limit: 1000) else {
            Issue.record("a framed message must unframe")
            return
        }
        #expect(back == message)
        guard case .message(let empty, nil) = unframe([0, 0, 0, 0, 0], limit: 10) else {
            Issue.record("an empty message is a message")
            return
        }
        #expect(empty.isEmpty)
    }

    @Test func onlyProtobufPostsAreServed() {
        #expect(GRPCWire.checkRequest(method: "POST", contentType: "application/grpc") == nil)
        #expect(GRPCWire.checkRequest(method: "POST", contentType: "application/grpc+proto") == nil)
        #expect(GRPCWire.checkRequest(method: "POST", contentType: "Application/GRPC; charset=utf-8") == nil)
        #expect(GRPCWire.checkRequest(method: "POST", contentType: "application/grpc+json")?.status == 12)
        #expect(GRPCWire.checkRequest(method: "POST", contentType: "application/grpc-web")?.status == 12)
        #expect(GRPCWire.checkRequest(method: "GET", contentType: "application/grpc")?.status == 12)
    }

    @Test func compressedMessagesAreDecoded() {
        let compressed = ContentCodingTests.gzip
        let body = [1] + Array(GRPCWire.prefix(length: compressed.count).dropFirst()) + compressed
        guard case .message(let message, nil) = unframe(body, limit: 1000, encoding: "gzip") else {
            Issue.record("a gzip message must decode")
            return
        }
        #expect(message == ContentCodingTests.text)
        func status(_ encoding: String?, limit: Int = 1000) -> Int? {
            if case .rejected(let response) = unframe(body, limit: limit, encoding: encoding) { return response.status }
            return nil
        }
        #expect(status("snappy") == 12)  // unsupported encoding
        #expect(status("identity") == 13)  // flagged compressed, but identity
        #expect(status("deflate") == 13)  // not zlib or raw deflate data
        #expect(status("gzip", limit: 100) == 8)  // decompressed above the limit
    }

    @Test func badFramesAreRejectedWithStatus() {
        func status(_ body: [UInt8], limit: Int = 100) -> Int? {
            if case .rejected(let response) = unframe(body, limit: limit) { return response.status }
            return nil
        }
        #expect(status([]) == 12)  // no message on a unary call
        #expect(status([0, 0, 0]) == 12)  // truncated prefix
        #expect(status([1, 0, 0, 0, 1, 7]) == 13)  // flagged compressed without a grpc-encoding
        #expect(status([0, 0, 0, 0, 3, 1]) == 13)  // fewer bytes than the prefix says
        #expect(status(GRPCWire.frame([1]) + GRPCWire.frame([2])) == 12)  // two messages
        #expect(status(GRPCWire.frame(Array(repeating: 0, count: 101))) == 8)  // above the limit
    }

    @Test func prefaceSniffing() {
        #expect(HTTP2Connection.matchPreface(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest".utf8)) == .complete)
        #expect(HTTP2Connection.matchPreface(Array("PRI * HT".utf8)) == .partial)
        #expect(HTTP2Connection.matchPreface(Array("POST /v2 HTTP/1.1".utf8)) == .mismatch)
        #expect(HTTP2Connection.matchPreface(Array("PRI * HTTP/1.1\r\n".utf8)) == .mismatch)
    }
}
