import Testing
import Glibc
@testable import Transport

// MARK: Harness

/// One request as reported by the parser: its head and the concatenation of its body slices.
struct ParsedHTTPRequest: Equatable, Sendable {
    var head: HTTPRequestHead
    var body: [UInt8]
}

/// Everything observable from feeding an input: completed requests, the request in progress
/// (head + body so far), the error status if parsing failed, and whether events came out of order.
struct HTTPParseOutcome: Equatable {
    var requests: [ParsedHTTPRequest] = []
    var partial: ParsedHTTPRequest?
    var errorStatus: Int?
    var orderViolation = false
}

/// Feeds `input` to a fresh parser in pieces ending at `cuts` (ascending offsets; duplicates make
/// empty pieces). Every piece is a fresh array, so body slices must be consumed during the callback.
fileprivate func feed(_ input: [UInt8], cuts: [Int] = [], limits: HTTPParserLimits = .init()) -> HTTPParseOutcome {
    var parser = HTTP1Parser(limits: limits)
    var outcome = HTTPParseOutcome()
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
                        outcome.partial = ParsedHTTPRequest(head: head, body: [])
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
        outcome.errorStatus = error.status
    } catch {
        outcome.errorStatus = -1
    }
    return outcome
}

fileprivate func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

fileprivate func head(_ method: String, _ target: String, minor: Int = 1, _ headers: [(String, String)],
          contentLength: Int? = nil, chunked: Bool = false, keepAlive: Bool = true, expectsContinue: Bool = false) -> HTTPRequestHead {
    HTTPRequestHead(method: method, target: target, versionMinor: minor, headers: HTTPHeaders(headers),
                    contentLength: contentLength, isChunked: chunked, keepAlive: keepAlive, expectsContinue: expectsContinue)
}

struct HTTP1ValidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var expected: [ParsedHTTPRequest]
    var testDescription: String { name }
}

struct HTTP1InvalidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var status: Int
    var limits = HTTPParserLimits()
    var testDescription: String { name }
}

/// Deterministic generator for the fuzz tests.
struct HTTP1FuzzRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func cuts(for count: Int) -> [Int] {
        (0..<below(6)).map { _ in below(count + 1) }.sorted()
    }
}

// MARK: Corpus

fileprivate let binaryBody: [UInt8] = bytes("{\"inputs\": [[1.0, 2.5]],\r\n\r\n \"id\": \"a\"}") + [0, 0xFF, 0x0D, 0x0A, 0x80]
fileprivate let chunkB: [UInt8] = bytes("abcdefghijklmnopqrstuvwxyz")  // 0x1A bytes

fileprivate let postHead = "POST /v2/models/resnet/infer HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: application/json\r\nContent-Length: \(binaryBody.count)\r\n\r\n"
fileprivate let chunkedInput = bytes("POST /upload?x=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    + "5;name=value\r\nhello\r\n1A ; ext=\"quoted value\";flag\r\n") + chunkB
    + bytes("\r\n000A\r\n0123456789\r\n0;last\r\nX-Checksum: abc\r\nX-Other:  1 \r\n\r\n")
fileprivate let chunkedHead = head("POST", "/upload?x=1", [("Host", "a"), ("Transfer-Encoding", "chunked")], chunked: true)
fileprivate let chunkedBody = bytes("hello") + chunkB + bytes("0123456789")

fileprivate let validCorpus: [HTTP1ValidCase] = [
    HTTP1ValidCase(
        name: "GET without body",
        input: bytes("GET /v1/models/resnet?verbose=1&x=%20y HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"),
        expected: [ParsedHTTPRequest(head: head("GET", "/v1/models/resnet?verbose=1&x=%20y",
                                            [("Host", "localhost:8080"), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")]), body: [])]),
    HTTP1ValidCase(
        name: "POST with Content-Length and a binary body",
        input: bytes(postHead) + binaryBody,
        expected: [ParsedHTTPRequest(head: head("POST", "/v2/models/resnet/infer",
                                            [("Host", "localhost:8080"), ("Content-Type", "application/json"),
                                             ("Content-Length", "\(binaryBody.count)")], contentLength: binaryBody.count),
                                 body: binaryBody)]),
    HTTP1ValidCase(
        name: "chunked with extensions and trailers",
        input: chunkedInput,
        expected: [ParsedHTTPRequest(head: chunkedHead, body: chunkedBody)]),
    HTTP1ValidCase(
        name: "three pipelined requests",
        input: bytes("GET /a HTTP/1.1\r\nHost: h\r\n\r\n") + bytes(postHead) + binaryBody + chunkedInput,
        expected: [
            ParsedHTTPRequest(head: head("GET", "/a", [("Host", "h")]), body: []),
            ParsedHTTPRequest(head: head("POST", "/v2/models/resnet/infer",
                                     [("Host", "localhost:8080"), ("Content-Type", "application/json"),
                                      ("Content-Length", "\(binaryBody.count)")], contentLength: binaryBody.count),
                          body: binaryBody),
            ParsedHTTPRequest(head: chunkedHead, body: chunkedBody),
        ]),
    HTTP1ValidCase(
        name: "HTTP/1.0 keep-alive rules",
        input: bytes("GET /k HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
            + "POST /p HTTP/1.0\r\nconnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"
            + "GET /c HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n"),
        expected: [
            ParsedHTTPRequest(head: head("GET", "/k", minor: 0, [("Connection", "Keep-Alive")], keepAlive: true), body: []),
            ParsedHTTPRequest(head: head("POST", "/p", minor: 0, [("connection", "keep-alive"), ("Content-Length", "2")],
                                     contentLength: 2, keepAlive: true), body: bytes("hi")),
            ParsedHTTPRequest(head: head("GET", "/c", [("Connection", "keep-alive, CLOSE")], keepAlive: false), body: []),
        ]),
    HTTP1ValidCase(
        name: "HTTP/1.0 without keep-alive",
        input: bytes("GET /old HTTP/1.0\r\nUser-Agent: ab\r\n\r\n"),
        expected: [ParsedHTTPRequest(head: head("GET", "/old", minor: 0, [("User-Agent", "ab")], keepAlive: false), body: [])]),
    HTTP1ValidCase(
        name: "Expect: 100-continue",
        input: bytes("PUT /x HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\nabcd"
            + "PUT /y HTTP/1.0\r\nExpect: 100-continue\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nz"),
        expected: [
            ParsedHTTPRequest(head: head("PUT", "/x", [("Expect", "100-Continue"), ("Content-Length", "4")],
                                     contentLength: 4, expectsContinue: true), body: bytes("abcd")),
            // HTTP/1.0 expectations are ignored (RFC 9110 §10.1.1).
            ParsedHTTPRequest(head: head("PUT", "/y", minor: 0, [("Expect", "100-continue"), ("Connection", "keep-alive"),
                                                              ("Content-Length", "1")], contentLength: 1), body: bytes("z")),
        ]),
    HTTP1ValidCase(
        name: "header names are case-insensitive",
        input: bytes("POST /ci HTTP/1.1\r\ncOnTeNt-LeNgTh: 3\r\n\r\nabc"
            + "POST /ci2 HTTP/1.1\r\nTRANSFER-ENCODING: CHUNKED\r\nCONNECTION: Close\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"),
        expected: [
            ParsedHTTPRequest(head: head("POST", "/ci", [("cOnTeNt-LeNgTh", "3")], contentLength: 3), body: bytes("abc")),
            ParsedHTTPRequest(head: head("POST", "/ci2", [("TRANSFER-ENCODING", "CHUNKED"), ("CONNECTION", "Close")],
                                     chunked: true, keepAlive: false), body: bytes("xyz")),
        ]),
    HTTP1ValidCase(
        name: "LF-only line endings",
        input: bytes("POST /lf HTTP/1.1\nHost: a\nContent-Length: 3\n\nabcGET /lf2 HTTP/1.1\r\nX: y\n\r\n"),
        expected: [
            ParsedHTTPRequest(head: head("POST", "/lf", [("Host", "a"), ("Content-Length", "3")], contentLength: 3), body: bytes("abc")),
            ParsedHTTPRequest(head: head("GET", "/lf2", [("X", "y")]), body: []),
        ]),
    HTTP1ValidCase(
        name: "empty lines before a request, OWS, empty and obs-text values",
        input: bytes("\r\n\n\r\nGET /ws HTTP/1.1\r\nX-A: \t spaced  value \t\r\nX-Empty:\r\nX-Blank:   \r\nX-Utf8: caf")
            + [0xC3, 0xA9] + bytes("\r\nx-a: second\r\n\r\n"),
        expected: [ParsedHTTPRequest(head: head("GET", "/ws", [("X-A", "spaced  value"), ("X-Empty", ""), ("X-Blank", ""),
                                                            ("X-Utf8", "café"), ("x-a", "second")]), body: [])]),
    HTTP1ValidCase(
        name: "Content-Length zero, repeated equal Content-Length, other target forms",
        input: bytes("POST /zero HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
            + "POST /same HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok"
            + "OPTIONS * HTTP/1.1\r\n\r\n"
            + "GET http://example.com/p?q HTTP/1.1\r\n\r\n"
            + "GET /empty-query? HTTP/1.1\r\n\r\n"),
        expected: [
            ParsedHTTPRequest(head: head("POST", "/zero", [("Content-Length", "0")], contentLength: 0), body: []),
            ParsedHTTPRequest(head: head("POST", "/same", [("Content-Length", "2, 2"), ("Content-Length", "2")], contentLength: 2),
                          body: bytes("ok")),
            ParsedHTTPRequest(head: head("OPTIONS", "*", []), body: []),
            ParsedHTTPRequest(head: head("GET", "http://example.com/p?q", []), body: []),
            ParsedHTTPRequest(head: head("GET", "/empty-query?", []), body: []),
        ]),
]

fileprivate func chunkedRequest(_ body: String) -> [UInt8] {
    bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
}

fileprivate let smallLimits = HTTPParserLimits(maxHeaderBytes: 256, maxBodyBytes: 1000, maxHeaderCount: 4)

fileprivate let invalidCorpus: [HTTP1InvalidCase] = [
    // Request line.
    HTTP1InvalidCase(name: "double space", input: bytes("GET  / HTTP/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "tab separator", input: bytes("GET\t/ HTTP/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "control byte in target", input: bytes("GET /a\u{1}b HTTP/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "non-ASCII target", input: bytes("GET /caf") + [0xC3, 0xA9] + bytes(" HTTP/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "space after version", input: bytes("GET / HTTP/1.1 \r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "missing target", input: bytes("GET HTTP/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "lowercase protocol", input: bytes("GET / http/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "short version", input: bytes("GET / HTTP/1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "long minor version", input: bytes("GET / HTTP/1.10\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "bare CR in request line", input: bytes("GET / HTTP/1.1\r\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "leading space", input: bytes(" GET / HTTP/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "non-token method", input: bytes("G(T / HTTP/1.1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "TLS ClientHello (rejected on its first byte)", input: [0x16, 0x03, 0x01, 0x02, 0x00, 0x01], status: 400),
    // Header fields.
    HTTP1InvalidCase(name: "space before colon", input: bytes("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "obs-fold", input: bytes("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "whitespace before the first field", input: bytes("GET / HTTP/1.1\r\n\tX: a\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "no colon", input: bytes("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "empty name", input: bytes("GET / HTTP/1.1\r\n: v\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "non-token name", input: bytes("GET / HTTP/1.1\r\nX(y): v\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "bare CR in value", input: bytes("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "NUL in value", input: bytes("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "DEL in value", input: bytes("GET / HTTP/1.1\r\nX: a\u{7F}\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "bare CR ending the head", input: bytes("GET / HTTP/1.1\r\nX: a\r\n\rZ\n\r\n"), status: 400),
    // Content-Length.
    HTTP1InvalidCase(name: "CL non-numeric", input: bytes("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL negative", input: bytes("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL plus sign", input: bytes("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL hex", input: bytes("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL inner space", input: bytes("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL empty", input: bytes("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL overflow", input: bytes("POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL huge", input: bytes("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL list differs", input: bytes("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL fields differ", input: bytes("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "CL and TE", input: bytes("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "TE and CL", input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), status: 400),
    // Transfer-Encoding.
    HTTP1InvalidCase(name: "TE empty", input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "TE chunked twice", input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "TE gzip", input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), status: 501),
    HTTP1InvalidCase(name: "TE gzip, chunked", input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), status: 501),
    HTTP1InvalidCase(name: "TE identity", input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"), status: 501),
    HTTP1InvalidCase(name: "Expect other than 100-continue", input: bytes("POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n"), status: 417),
    HTTP1InvalidCase(name: "two Host fields", input: bytes("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), status: 400),
    // Chunked framing.
    HTTP1InvalidCase(name: "chunk size not hex", input: chunkedRequest("zz\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk size empty", input: chunkedRequest("\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk size only extension", input: chunkedRequest(";a=b\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk size junk", input: chunkedRequest("5 x\r\nhello\r\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk size negative", input: chunkedRequest("-5\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk data too long", input: chunkedRequest("5\r\nhelloX\r\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk size LF only", input: chunkedRequest("5\nhello\r\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk data LF only", input: chunkedRequest("5\r\nhello\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk data LF LF", input: chunkedRequest("5\r\nhello\n\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk data CR CR LF", input: chunkedRequest("5\r\nhello\r\r\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk data bare CR", input: chunkedRequest("5\r\nhello\r0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "control byte in chunk extension", input: chunkedRequest("5;a\u{1}\r\nhello\r\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "bare CR in chunk extension", input: chunkedRequest("5;a\rb\r\nhello\r\n0\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "trailer without colon", input: chunkedRequest("0\r\nbad trailer\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "trailer obs-fold", input: chunkedRequest("0\r\nX: a\r\n b\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "trailer end LF only", input: chunkedRequest("0\r\n\n"), status: 400),
    HTTP1InvalidCase(name: "trailer NUL", input: chunkedRequest("0\r\nX: \u{0}\r\n\r\n"), status: 400),
    HTTP1InvalidCase(name: "chunk-size line too long", input: chunkedRequest("5;" + String(repeating: "e", count: 300) + "\r\n"),
                status: 400, limits: smallLimits),
    // 413.
    HTTP1InvalidCase(name: "CL above limit (head only)", input: bytes("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"),
                status: 413, limits: smallLimits),
    HTTP1InvalidCase(name: "chunk size above limit (size line only)", input: chunkedRequest("3e9"), status: 413, limits: smallLimits),
    HTTP1InvalidCase(name: "chunk sizes sum above limit",
                input: chunkedRequest("1f4\r\n" + String(repeating: "a", count: 500) + "\r\n1f5\r\n"), status: 413, limits: smallLimits),
    HTTP1InvalidCase(name: "huge chunk size", input: chunkedRequest("fffffffffffffffffffffffffff\r\n"), status: 413),
    // 431.
    HTTP1InvalidCase(name: "request line too long", input: bytes("GET /" + String(repeating: "a", count: 300)), status: 431, limits: smallLimits),
    HTTP1InvalidCase(name: "head too long", input: bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "v", count: 240) + "\r\n\r\n"),
                status: 431, limits: smallLimits),
    HTTP1InvalidCase(name: "too many fields", input: bytes("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"),
                status: 431, limits: smallLimits),
    HTTP1InvalidCase(name: "too many fields (LF-only, unterminated)", input: bytes("GET / HTTP/1.1\nA: 1\nB: 2\nC: 3\nD: 4\nE: 5\n"),
                status: 431, limits: smallLimits),
    HTTP1InvalidCase(name: "too many trailer fields", input: chunkedRequest("0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"),
                status: 431, limits: smallLimits),
    HTTP1InvalidCase(name: "trailer section too long", input: chunkedRequest("0\r\nX: " + String(repeating: "t", count: 300) + "\r\n\r\n"),
                status: 431, limits: smallLimits),
    // 505.
    HTTP1InvalidCase(name: "HTTP/2.0", input: bytes("GET / HTTP/2.0\r\n\r\n"), status: 505),
    HTTP1InvalidCase(name: "HTTP/1.2", input: bytes("GET / HTTP/1.2\r\n\r\n"), status: 505),
    HTTP1InvalidCase(name: "HTTP/0.9", input: bytes("GET / HTTP/0.9\r\n\r\n"), status: 505),
    HTTP1InvalidCase(name: "HTTP/2 connection preface", input: bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), status: 505),
    // An error in a later pipelined request.
    HTTP1InvalidCase(name: "second pipelined request malformed",
                input: bytes("GET /ok HTTP/1.1\r\n\r\nPOST /bad HTTP/1.1\r\nContent-Length: x\r\n\r\n"), status: 400),
]

// MARK: Tests

struct HTTP1ParserTests {
    @Test(arguments: validCorpus)
    func validRequestParsesIdenticallyAtEverySplit(_ c: HTTP1ValidCase) {
        let expected = HTTPParseOutcome(requests: c.expected)
        #expect(feed(c.input) == expected)
        for k in 0...c.input.count {
            let outcome = feed(c.input, cuts: [k])
            #expect(outcome == expected, "split at \(k)")
            if outcome != expected { break }
        }
        #expect(feed(c.input, cuts: Array(1..<c.input.count)) == expected, "one byte at a time")
    }

    @Test(arguments: validCorpus.filter { $0.input.count <= 200 })
    func validRequestParsesIdenticallyAtEveryPairOfSplits(_ c: HTTP1ValidCase) {
        let expected = HTTPParseOutcome(requests: c.expected)
        var failures = 0
        for i in 0...c.input.count {
            for j in i...c.input.count where failures < 3 {
                if feed(c.input, cuts: [i, j]) != expected {
                    failures += 1
                    Issue.record("splits at \(i), \(j)")
                }
            }
        }
    }

    @Test func expectedHeadFieldsAreExact() {
        let outcome = feed(validCorpus[0].input)
        let h = try! #require(outcome.requests.first).head
        #expect(h.method == "GET")
        #expect(h.target == "/v1/models/resnet?verbose=1&x=%20y")
        #expect(h.path == "/v1/models/resnet")
        #expect(h.query == "verbose=1&x=%20y")
        #expect(h.versionMinor == 1)
        #expect(h.headers.first(name: "HOST") == "localhost:8080")
        #expect(h.headers.first(name: "user-agent") == "curl/8.5.0")
        #expect(h.contentLength == nil && !h.isChunked && h.keepAlive && !h.expectsContinue)
        let noQuery = try! #require(feed(bytes("GET /p HTTP/1.1\r\n\r\n")).requests.first).head
        #expect(noQuery.path == "/p" && noQuery.query == nil)
        let emptyQuery = try! #require(feed(bytes("GET /p? HTTP/1.1\r\n\r\n")).requests.first).head
        #expect(emptyQuery.path == "/p" && emptyQuery.query == "")
        let twoMarks = try! #require(feed(bytes("GET /p?a?b HTTP/1.1\r\n\r\n")).requests.first).head
        #expect(twoMarks.path == "/p" && twoMarks.query == "a?b")
    }

    @Test(arguments: invalidCorpus)
    func invalidRequestFailsWithStatusAtEverySplit(_ c: HTTP1InvalidCase) {
        let whole = feed(c.input, limits: c.limits)
        #expect(whole.errorStatus == c.status)
        #expect(!whole.orderViolation)
        for k in 0...c.input.count {
            let outcome = feed(c.input, cuts: [k], limits: c.limits)
            #expect(outcome == whole, "split at \(k)")
            if outcome != whole { break }
        }
        #expect(feed(c.input, cuts: Array(1..<max(c.input.count, 1)), limits: c.limits) == whole, "one byte at a time")
    }

    @Test func errorsBeforeLaterBytesArrive() {
        // 413 at head time, before any body byte.
        #expect(feed(bytes("POST / HTTP/1.1\r\nContent-Length: 67108865\r\n\r\n")).errorStatus == 413)
        #expect(feed(bytes("POST / HTTP/1.1\r\nContent-Length: 67108864\r\n\r\n")).errorStatus == nil)
        // 431 as soon as more than maxHeaderBytes arrive without an end of head.
        let limits = HTTPParserLimits(maxHeaderBytes: 64)
        var parser = HTTP1Parser(limits: limits)
        let line = bytes("GET /" + String(repeating: "a", count: 59))  // exactly 64 bytes
        #expect(throws: Never.self) { try line.withUnsafeBytes { try parser.parse($0) { _ in } } }
        #expect(parser.hasPartialHead)
        #expect(!parser.isMidRequest)
        let error = #expect(throws: HTTPParseError.self) { try bytes("a").withUnsafeBytes { try parser.parse($0) { _ in } } }
        #expect(error?.status == 431)
    }

    @Test func headSizeLimitIsInclusive() {
        let limits = HTTPParserLimits(maxHeaderBytes: 64)
        for lineEnd in ["\r\n", "\n"] {
            let prefix = "GET / HTTP/1.1" + lineEnd + "X: "
            let suffix = lineEnd + lineEnd
            let fill = 64 - prefix.utf8.count - suffix.utf8.count
            let exact = bytes(prefix + String(repeating: "v", count: fill) + suffix)
            #expect(exact.count == 64)
            let ok = feed(exact, limits: limits)
            #expect(ok.errorStatus == nil && ok.requests.count == 1)
            #expect(ok.requests.first?.head.headers.first(name: "x")?.utf8.count == fill)
            let over = bytes(prefix + String(repeating: "v", count: fill + 1) + suffix)
            #expect(feed(over, limits: limits).errorStatus == 431)
            for k in 0...over.count { #expect(feed(over, cuts: [k], limits: limits).errorStatus == 431) }
            for k in 0...exact.count { #expect(feed(exact, cuts: [k], limits: limits) == ok) }
        }
    }

    @Test func headerCountLimitIsInclusive() {
        let limits = HTTPParserLimits(maxHeaderCount: 100)
        let fields = (0..<100).map { "H\($0): \($0)\r\n" }.joined()
        let ok = feed(bytes("GET / HTTP/1.1\r\n" + fields + "\r\n"), limits: limits)
        #expect(ok.errorStatus == nil)
        #expect(ok.requests.first?.head.headers.count == 100)
        #expect(ok.requests.first?.head.headers.first(name: "h99") == "99")
        #expect(feed(bytes("GET / HTTP/1.1\r\n" + fields + "H100: x\r\n\r\n"), limits: limits).errorStatus == 431)
    }

    @Test func bodyLimitIsInclusive() {
        let limits = HTTPParserLimits(maxBodyBytes: 1000)
        let body = [UInt8](repeating: 0x61, count: 1000)
        let ok = feed(bytes("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n") + body, limits: limits)
        #expect(ok.requests.first?.body == body)
        // Chunked: 0x3e8 = 1000 in two chunks is fine; one more byte in a third chunk is not.
        let chunked = chunkedRequest("1f4\r\n" + String(repeating: "a", count: 500) + "\r\n1F4;x\r\n" + String(repeating: "a", count: 500) + "\r\n")
        let fine = feed(chunked + bytes("0\r\n\r\n"), limits: limits)
        #expect(fine.errorStatus == nil && fine.requests.first?.body == body)
        let over = feed(chunked + bytes("1\r\n"), limits: limits)
        #expect(over.errorStatus == 413)
        #expect(over.partial?.body == body)
        // Leading zeros do not count against anything but the line length.
        let zeros = feed(chunkedRequest(String(repeating: "0", count: 200) + "3\r\nabc\r\n0\r\n\r\n"), limits: limits)
        #expect(zeros.requests.first?.body == bytes("abc"))
    }

    @Test func emptyLinesBeforeRequestAreBounded() {
        let limits = HTTPParserLimits(maxHeaderBytes: 64)
        #expect(feed(bytes(String(repeating: "\r\n", count: 32) + "GET / HTTP/1.1\r\n\r\n"), limits: limits).requests.count == 1)
        #expect(feed(bytes(String(repeating: "\r\n", count: 33)), limits: limits).errorStatus == 400)
    }

    @Test func eventsAreOrderedAndBodySlicesPointIntoTheInput() throws {
        var parser = HTTP1Parser()
        let input = bytes("POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123")
        var events: [String] = []
        try input.withUnsafeBytes { buffer in
            let range = UInt(bitPattern: buffer.baseAddress!)..<UInt(bitPattern: buffer.baseAddress! + buffer.count)
            try parser.parse(buffer) { event in
                switch event {
                case .head(let h): events.append("head \(h.method) \(h.target)")
                case .body(let slice):
                    #expect(range.contains(UInt(bitPattern: slice.baseAddress!)))
                    events.append("body \(String(decoding: slice, as: UTF8.self))")
                case .end: events.append("end")
                }
            }
        }
        #expect(events == ["head POST /a", "body 0123"])
        #expect(parser.isMidRequest)
        try bytes("456789GET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n").withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                switch event {
                case .head(let h): events.append("head \(h.method) \(h.target)")
                case .body(let slice): events.append("body \(String(decoding: slice, as: UTF8.self))")
                case .end: events.append("end")
                }
            }
        }
        #expect(events == ["head POST /a", "body 0123", "body 456789", "end", "head GET /b", "end"])
        #expect(!parser.isMidRequest)
        #expect(parser.hasPartialHead)
    }

    @Test func largeBodyPassesThroughInOneSlice() throws {
        var parser = HTTP1Parser()
        let body = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let input = bytes("POST / HTTP/1.1\r\nContent-Length: \(body.count)\r\n\r\n") + body
        var slices = 0
        var received: [UInt8] = []
        try input.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                if case .body(let slice) = event { slices += 1; received.append(contentsOf: slice) }
            }
        }
        #expect(slices == 1)
        #expect(received == body)
    }

    @Test func inputAfterAConnectionCloseRequestIsDiscarded() {
        let input = bytes("GET /1 HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n\u{1}garbage")
        let expected = HTTPParseOutcome(requests: [ParsedHTTPRequest(head: head("GET", "/1", [("Connection", "close")], keepAlive: false), body: [])])
        for k in 0...input.count { #expect(feed(input, cuts: [k]) == expected) }
        let old = bytes("GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n")
        #expect(feed(old).requests.map(\.head.target) == ["/1"])
        // HTTP/1.0 with Transfer-Encoding: processed, then the connection closes (RFC 9112 §6.1).
        let te10 = feed(bytes("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"))
        #expect(te10.requests.count == 1 && te10.requests.first?.head.keepAlive == false && te10.requests.first?.body == bytes("x"))
    }

    @Test func parserStaysFailedAfterAnError() {
        var parser = HTTP1Parser()
        let first = #expect(throws: HTTPParseError.self) { try bytes("GET / HTTP/3.0\r\n\r\n").withUnsafeBytes { try parser.parse($0) { _ in } } }
        #expect(first?.status == 505)
        let again = #expect(throws: HTTPParseError.self) { try bytes("GET / HTTP/1.1\r\n\r\n").withUnsafeBytes { try parser.parse($0) { _ in } } }
        #expect(again == first)
    }

    @Test func eventHandlerErrorsPropagate() {
        struct Stop: Error {}
        var parser = HTTP1Parser()
        var heads = 0
        #expect(throws: Stop.self) {
            try bytes("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n").withUnsafeBytes { buffer in
                try parser.parse(buffer) { event in
                    if case .head = event { heads += 1; throw Stop() }
                }
            }
        }
        #expect(heads == 1)
        #expect(throws: HTTPParseError.self) { try bytes("GET / HTTP/1.1\r\n\r\n").withUnsafeBytes { try parser.parse($0) { _ in } } }
    }

    @Test func randomBytesNeverCrashAndAreSplitInvariant() {
        var random = HTTP1FuzzRandom(state: 0x5EED)
        let alphabet = bytes("GET POST / HTTP/1.1\r\n:;, \t0123456789abcdefABCDEF-chunked content-length transfer-encoding")
        for iteration in 0..<1500 {
            let count = random.below(200)
            let input: [UInt8] = (0..<count).map { _ in
                random.below(3) == 0 ? UInt8(truncatingIfNeeded: random.next()) : alphabet[random.below(alphabet.count)]
            }
            let limits = iteration % 2 == 0 ? HTTPParserLimits() : smallLimits
            let whole = feed(input, limits: limits)
            #expect(!whole.orderViolation)
            let split = feed(input, cuts: random.cuts(for: count), limits: limits)
            #expect(split == whole, "iteration \(iteration)")
        }
    }

    @Test func mutatedCorpusNeverCrashesAndIsSplitInvariant() {
        var random = HTTP1FuzzRandom(state: 42)
        let seeds = validCorpus.map(\.input) + invalidCorpus.map(\.input)
        let interesting = bytes("\r\n \t:;,0aF-") + [0, 0x7F, 0x80, 0xFF]
        for iteration in 0..<2000 {
            var input = seeds[random.below(seeds.count)]
            for _ in 0...random.below(4) where !input.isEmpty {
                let at = random.below(input.count)
                switch random.below(4) {
                case 0: input[at] = interesting[random.below(interesting.count)]
                case 1: input.insert(interesting[random.below(interesting.count)], at: at)
                case 2: input.remove(at: at)
                default: input[at] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            let limits = iteration % 3 == 0 ? smallLimits : HTTPParserLimits()
            let whole = feed(input, limits: limits)
            #expect(!whole.orderViolation)
            #expect(feed(input, cuts: random.cuts(for: input.count), limits: limits) == whole, "iteration \(iteration)")
            if iteration % 50 == 0 {
                #expect(feed(input, cuts: Array(0...input.count), limits: limits) == whole, "iteration \(iteration) byte at a time")
            }
        }
    }
}

// MARK: Types and response writer

struct HTTPTypesTests {
    @Test func headersKeepOrderAndMatchNamesCaseInsensitively() {
        var headers: HTTPHeaders = ["Content-Type": "a", "X-Dup": "1", "x-dup": "2"]
        #expect(headers.map(\.name) == ["Content-Type", "X-Dup", "x-dup"])
        #expect(headers.first(name: "CONTENT-TYPE") == "a")
        #expect(headers["X-DUP"] == ["1", "2"])
        #expect(headers.contains(name: "x-Dup") && !headers.contains(name: "x-dup2"))
        #expect(headers.first(name: "X_Dup") == nil)
        #expect(!asciiCaseInsensitiveEquals("@", "`") && !asciiCaseInsensitiveEquals("[", "{") && asciiCaseInsensitiveEquals("aZ-9", "Az-9"))
        headers.replaceOrAdd(name: "X-DUP", value: "3")
        #expect(headers.fields == [HTTPHeaderField(name: "Content-Type", value: "a"), HTTPHeaderField(name: "X-DUP", value: "3")])
        headers.remove(name: "content-type")
        #expect(headers.count == 1 && headers[0].value == "3")
    }

    @Test func requestHeadInitSplitsTarget() {
        let h = HTTPRequestHead(method: "GET", target: "/a/b?c=d?e")
        #expect(h.path == "/a/b" && h.query == "c=d?e")
        #expect(HTTPRequestHead(method: "GET", target: "/x").query == nil)
    }

    @Test func reasonPhrases() {
        let expected: [Int: String] = [
            100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
            413: "Content Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            499: "Client Closed Request", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
        ]
        for (status, phrase) in expected { #expect(HTTPStatus.reasonPhrase(status) == phrase) }
        #expect(HTTPStatus.reasonPhrase(299) == "Unknown")
    }

    @Test func serializeKeepAlive() {
        var out = bytes("prefix|")
        let response = HTTPResponse(status: 200, headers: ["Content-Type": "application/json", "X-Request-Id": "7"], body: bytes("{\"a\":1}"))
        HTTPResponseWriter.serialize(response, keepAlive: true, date: bytes("Sun, 06 Nov 1994 08:49:37 GMT"), into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
            "prefix|HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nX-Request-Id: 7\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
    }

    @Test func serializeCloseOwnsFramingHeaders() {
        var out: [UInt8] = []
        let response = HTTPResponse(status: 503, headers: ["Connection": "keep-alive", "content-length": "99",
                                                           "Transfer-Encoding": "chunked", "Retry-After": "1"],
                                    body: bytes("busy"))
        HTTPResponseWriter.serialize(response, keepAlive: false, date: nil, into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
        // With keep-alive a Connection header of the caller's (e.g. for HTTP/1.0 clients) is kept.
        out = []
        HTTPResponseWriter.serialize(HTTPResponse(status: 200, headers: ["Connection": "keep-alive"]), keepAlive: true, date: nil, into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func serializeNoContentAndInformational() {
        var out: [UInt8] = []
        HTTPResponseWriter.serialize(HTTPResponse(status: 204, body: bytes("ignored")), keepAlive: true, date: nil, into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "HTTP/1.1 204 No Content\r\n\r\n")
        #expect(String(decoding: HTTPResponseWriter.continueResponse, as: UTF8.self) == "HTTP/1.1 100 Continue\r\n\r\n")
        out = []
        HTTPResponseWriter.serialize(HTTPResponse(status: 100), keepAlive: true, date: nil, into: &out)
        #expect(out == HTTPResponseWriter.continueResponse)
    }

    @Test func serializeNeutralisesInjectionAndBadStatus() {
        var out: [UInt8] = []
        HTTPResponseWriter.serialize(HTTPResponse(status: 1000, headers: ["X-Bad Name\r\n": "a\r\nSet-Cookie: x\u{0}\tz"]),
                                     keepAlive: true, date: bytes("d\r\n"), into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
            "HTTP/1.1 500 Internal Server Error\r\nDate: d  \r\nX-Bad_Name__: a  Set-Cookie: x \tz\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func serializeHeadOnly() {
        var out: [UInt8] = []
        HTTPResponseWriter.serializeHead(status: 404, headers: [:], contentLength: 123_456_789, keepAlive: true, date: nil, into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "HTTP/1.1 404 Not Found\r\nContent-Length: 123456789\r\n\r\n")
    }

    @Test func decimal() {
        for value in [0, 7, 10, 99, 100, 65535, Int.max] {
            var out: [UInt8] = []
            HTTPResponseWriter.appendDecimal(value, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == String(value))
        }
    }

    @Test func imfFixdate() {
        let cases: [(Int, String)] = [
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"), (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"), (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 GMT"), (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
        ]
        for (seconds, text) in cases { #expect(String(decoding: HTTPDate.imfFixdate(secondsSince1970: seconds), as: UTF8.self) == text) }
    }

    @Test func dateCacheIsTheCurrentSecond() {
        let cache = HTTPDateCache()
        var before = timespec(), after = timespec()
        clock_gettime(CLOCK_REALTIME, &before)
        let bytes = cache.currentBytes, text = cache.currentText
        clock_gettime(CLOCK_REALTIME, &after)
        // The coarse clock may lag the precise one by a tick: accept the second before too.
        let candidates = (before.tv_sec - 1...after.tv_sec).map { HTTPDate.imfFixdate(secondsSince1970: $0) }
        #expect(candidates.contains(bytes))
        #expect(String(decoding: bytes, as: UTF8.self) == text || candidates.contains(Array(text.utf8)))
    }

    @Test func writerDateReplacesAUserDateField() {
        var headers = HTTPHeaders()
        headers.add(name: "date", value: "yesterday")
        var output: [UInt8] = []
        HTTPResponseWriter.serializeHead(status: 200, headers: headers, contentLength: 0, keepAlive: true,
                                         date: Array("Sun, 06 Nov 1994 08:49:37 GMT".utf8), into: &output)
        #expect(String(decoding: output, as: UTF8.self)
            == "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n")
    }
}
