#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Limits enforced by `HTTP1Parser`; a violation throws before the offending bytes are passed on.
public struct HTTPParserLimits: Sendable {
    /// Request line + header fields + the terminating blank line, in bytes (431 above it).
    /// Also bounds a trailer section (431) and one chunk-size line with its extensions (400).
    public var maxHeaderBytes = 16 * 1024
    /// Content-Length, or the sum of the chunk sizes of a chunked body (413 above it).
    public var maxBodyBytes = 64 * 1024 * 1024
    /// Header fields per request; also trailer fields per request (431 above it).
    public var maxHeaderCount = 100

    public init(maxHeaderBytes: Int = 16 * 1024, maxBodyBytes: Int = 64 * 1024 * 1024, maxHeaderCount: Int = 100) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderCount = maxHeaderCount
    }
}

/// What `HTTP1Parser.parse` reports, per request, in order: one `.head`, zero or more non-empty
/// `.body` slices, one `.end`.
public enum HTTPParseEvent {
    case head(HTTPRequestHead)
    /// Bytes of the (de-chunked) body; points into the buffer passed to `parse`, valid only during the callback.
    case body(UnsafeRawBufferPointer)
    case end
}

/// Why a request was rejected: `status` is the response to send before closing the connection
/// (400 malformed, 413 body too large, 431 head too large, 501 unsupported transfer coding,
/// 505 HTTP version other than 1.0/1.1).
public struct HTTPParseError: Error, Equatable, CustomStringConvertible {
    public var status: Int
    public var reason: String

    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }

    public var description: String { "\(status) \(reason)" }

    static func badRequest(_ reason: String) -> HTTPParseError { HTTPParseError(status: 400, reason: reason) }
    static func contentTooLarge(_ reason: String) -> HTTPParseError { HTTPParseError(status: 413, reason: reason) }
    static func headerFieldsTooLarge(_ reason: String) -> HTTPParseError { HTTPParseError(status: 431, reason: reason) }
}

/// Incremental HTTP/1.1 request parser (server side, RFC 9112).
///
/// Accepted syntax:
/// - request line `METHOD SP request-target SP HTTP/1.0|HTTP/1.1 CRLF`: method is a token,
///   the target is 1+ visible ASCII bytes; any other whitespace or byte is a 400. A well-formed
///   `HTTP/d.d` other than 1.0/1.1 is a 505. Empty lines before the request line are skipped.
/// - header lines `name ":" OWS value OWS CRLF`: name is a token with no space before ':';
///   value bytes are VCHAR/obs-text/SP/HTAB. obs-fold, bare CR and control bytes are 400.
/// - request line and header lines may end in a bare LF. Chunked framing (size lines, the CRLF
///   after chunk data, trailers) requires CRLF: lenient chunk framing is a smuggling vector.
/// - body length: Transfer-Encoding: chunked (any other coding is a 501; together with
///   Content-Length a 400), else Content-Length (a comma list or repeated fields are accepted only
///   when all values are equal), else empty. Chunk extensions and trailer fields are validated
///   and dropped.
/// - keep-alive: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`
///   and no Transfer-Encoding. After the `.end` of a request that is not keep-alive, the parser
///   discards all further input (RFC 9112 §9.6: no further requests are processed).
///
/// Buffering: only an incomplete head is copied (at most `maxHeaderBytes`); body bytes are
/// passed through as slices of the caller's buffer.
public struct HTTP1Parser: Sendable {
    private enum State: UInt8 {
        case head
        case body  // Content-Length body; `remaining` bytes left
        case chunkSize, chunkSizeWhitespace, chunkExtension, chunkSizeLF
        case chunkData  // `remaining` bytes left in the chunk
        case chunkDataCR, chunkDataLF
        case trailerLineStart, trailerName, trailerValue, trailerLF, trailerEndLF
        case closed  // after a request without keep-alive: input is discarded
        case failed
    }

    public let limits: HTTPParserLimits
    private var state = State.head
    private var failure: HTTPParseError?
    private var midRequest = false
    private var keepAlive = true

    // Head in progress. `headBuffer` holds its bytes only when it spans calls.
    private var headBuffer: [UInt8] = []
    private var headLineStart = 0  // offset in the head of the first byte of the unterminated line
    private var headLines = 0  // terminated lines of the head so far
    private var blankLineBytes = 0  // empty lines skipped before this request's request line

    // Body in progress.
    private var remaining = 0
    private var chunkSize = 0
    private var chunkDigits = 0
    private var chunkLineBytes = 0
    private var bodyTotal = 0  // chunked: sum of the chunk sizes so far
    private var trailerBytes = 0
    private var trailerCount = 0

    public init(limits: HTTPParserLimits = .init()) {
        self.limits = limits
    }

    /// True from a `.head` until its `.end` has been delivered (a request is in progress).
    public var isMidRequest: Bool { midRequest }

    /// True when bytes of a request head have arrived but the head is not complete.
    public var hasPartialHead: Bool { state == .head && !headBuffer.isEmpty }

    /// Consumes `bytes` (split anywhere, down to one byte per call), calling `onEvent` synchronously
    /// for every event they complete; pipelined requests yield several head/body/end sequences in
    /// one call. `.body` slices point into `bytes` and are valid only during the callback.
    /// Throws `HTTPParseError` on malformed input or a limit violation, and rethrows errors from
    /// `onEvent`; after any error the parser must not be used again (it throws the error again).
    /// `onEvent` must not access this parser (it is being mutated: an exclusivity violation).
    public mutating func parse(_ bytes: UnsafeRawBufferPointer, _ onEvent: (HTTPParseEvent) throws -> Void) throws {
        if state == .failed { throw failure ?? .badRequest("parser used after an error") }
        do {
            try run(bytes, onEvent)
        } catch {
            state = .failed
            midRequest = false
            headBuffer = []
            failure = error as? HTTPParseError ?? HTTPParseError(status: 500, reason: "event handler failed")
            throw error
        }
    }

    private mutating func run(_ bytes: UnsafeRawBufferPointer, _ onEvent: (HTTPParseEvent) throws -> Void) throws {
        guard let base = bytes.baseAddress else { return }
        let n = bytes.count
        var i = 0
        while i < n {
            switch state {
            case .head:
                i = try consumeHead(bytes, from: i, onEvent)
            case .body:
                let take = min(remaining, n - i)
                remaining -= take
                let slice = UnsafeRawBufferPointer(start: base + i, count: take)
                i += take
                try onEvent(.body(slice))
                if remaining == 0 { try endMessage(onEvent) }
            case .chunkData:
                let take = min(remaining, n - i)
                remaining -= take
                if remaining == 0 { state = .chunkDataCR }
                let slice = UnsafeRawBufferPointer(start: base + i, count: take)
                i += take
                try onEvent(.body(slice))
            case .closed:
                return
            case .failed:
                preconditionFailure("unreachable: parse() throws in the failed state")
            default:
                i = try consumeChunkFraming(bytes, from: i, onEvent)
            }
        }
    }

    // MARK: Head

    /// Finds the end of the head (an empty line) in `bytes[start...]`, buffering a partial head;
    /// on a complete head parses it and starts the message. Returns the index after what it consumed.
    private mutating func consumeHead(_ bytes: UnsafeRawBufferPointer, from start: Int,
                                      _ onEvent: (HTTPParseEvent) throws -> Void) throws -> Int {
        let base = bytes.baseAddress!
        let n = bytes.count
        let buffered = headBuffer.count
        if buffered == 0 {
            // Fail fast on what cannot start a request (TLS handshakes, binary garbage).
            let c = bytes[start]
            if !HTTPBytes.isTokenByte(c) && c != ascii.cr && c != ascii.lf { throw HTTPParseError.badRequest("invalid request line") }
        }
        let budget = limits.maxHeaderBytes - buffered
        let windowEnd = start + min(n - start, max(budget, 0))
        var p = start
        while p < windowEnd {
            guard let found = memchr(base + p, Int32(ascii.lf), windowEnd - p) else { break }
            let lf = base.distance(to: UnsafeRawPointer(found))
            let lfOffset = buffered + (lf - start)  // offset of this LF in the head
            let lineLength = lfOffset - headLineStart
            let lineIsEmpty = lineLength == 0 || (lineLength == 1 && (headLineStart < buffered
                ? headBuffer[headLineStart] : bytes[start + headLineStart - buffered]) == ascii.cr)
            if lineIsEmpty {
                if headLineStart == 0 {
                    // Empty line before the request line (RFC 9112 §2.2): skip it.
                    blankLineBytes += lfOffset + 1
                    if blankLineBytes > limits.maxHeaderBytes { throw HTTPParseError.badRequest("too many empty lines before the request line") }
                    headBuffer.removeAll()
                    return lf + 1
                }
                let end = lf + 1
                let lines = headLines
                let head: HTTPRequestHead
                if buffered == 0 {
                    head = try Self.parseHead(UnsafeRawBufferPointer(start: base + start, count: end - start), lines: lines, limits: limits)
                } else {
                    headBuffer.append(contentsOf: UnsafeRawBufferPointer(start: base + start, count: end - start))
                    head = try headBuffer.withUnsafeBytes { try Self.parseHead($0, lines: lines, limits: limits) }
                    headBuffer = []
                }
                headLineStart = 0
                headLines = 0
                blankLineBytes = 0
                try beginMessage(head, onEvent)
                return end
            }
            headLines += 1
            if headLines - 1 > limits.maxHeaderCount { throw HTTPParseError.headerFieldsTooLarge("too many header fields") }
            headLineStart = lfOffset + 1
            p = lf + 1
        }
        if n - start > budget { throw HTTPParseError.headerFieldsTooLarge("request head larger than \(limits.maxHeaderBytes) bytes") }
        headBuffer.append(contentsOf: UnsafeRawBufferPointer(start: base + start, count: n - start))
        return n
    }

    private mutating func beginMessage(_ head: HTTPRequestHead, _ onEvent: (HTTPParseEvent) throws -> Void) throws {
        keepAlive = head.keepAlive
        midRequest = true
        if head.isChunked {
            state = .chunkSize
            chunkSize = 0
            chunkDigits = 0
            chunkLineBytes = 0
            bodyTotal = 0
        } else if let length = head.contentLength, length > 0 {
            state = .body
            remaining = length
        } else {
            try onEvent(.head(head))
            try endMessage(onEvent)
            return
        }
        try onEvent(.head(head))
    }

    private mutating func endMessage(_ onEvent: (HTTPParseEvent) throws -> Void) throws {
        midRequest = false
        state = keepAlive ? .head : .closed
        try onEvent(.end)
    }

    /// Parses a complete head: `p` ends with the LF of the empty line, so every scan below stops
    /// at an LF inside `p`. `lines` is the number of lines before the empty one.
    private static func parseHead(_ p: UnsafeRawBufferPointer, lines: Int, limits: HTTPParserLimits) throws -> HTTPRequestHead {
        // Request line.
        var i = 0
        while HTTPBytes.isTokenByte(p[i]) { i += 1 }
        guard i > 0, p[i] == ascii.space else { throw HTTPParseError.badRequest("invalid method") }
        let method = string(p, 0, i)
        i += 1
        let targetStart = i
        var queryMark = -1
        while p[i] > 0x20 && p[i] < 0x7F {
            if p[i] == ascii.question && queryMark < 0 { queryMark = i }
            i += 1
        }
        guard i > targetStart, p[i] == ascii.space else { throw HTTPParseError.badRequest("invalid request target") }
        let targetEnd = i
        i += 1
        guard i + 8 < p.count,
              p[i] == UInt8(ascii: "H"), p[i + 1] == UInt8(ascii: "T"), p[i + 2] == UInt8(ascii: "T"),
              p[i + 3] == UInt8(ascii: "P"), p[i + 4] == UInt8(ascii: "/"),
              isDigit(p[i + 5]), p[i + 6] == UInt8(ascii: "."), isDigit(p[i + 7])
        else { throw HTTPParseError.badRequest("invalid HTTP version") }
        let major = p[i + 5] &- UInt8(ascii: "0"), minor = Int(p[i + 7] &- UInt8(ascii: "0"))
        i += 8
        guard skipLineEnd(p, &i) else { throw HTTPParseError.badRequest("invalid request line") }
        guard major == 1, minor <= 1 else { throw HTTPParseError(status: 505, reason: "HTTP version not supported") }

        // Header fields.
        var headers = HTTPHeaders()
        headers.reserveCapacity(lines - 1)
        var contentLength: Int?
        var hasTransferEncoding = false, chunked = false, unsupportedCoding = false
        var connectionClose = false, connectionKeepAlive = false, expectContinue = false, unknownExpectation = false
        var hostCount = 0
        var count = 0
        while true {
            let first = p[i]
            if first == ascii.lf { break }
            if first == ascii.cr {
                guard p[i + 1] == ascii.lf else { throw HTTPParseError.badRequest("bare CR in header section") }
                break
            }
            let nameStart = i
            while HTTPBytes.isTokenByte(p[i]) { i += 1 }
            guard i > nameStart, p[i] == ascii.colon else {
                throw HTTPParseError.badRequest(first == ascii.space || first == ascii.tab ? "obsolete line folding" : "invalid header field name")
            }
            let nameEnd = i
            i += 1
            while p[i] == ascii.space || p[i] == ascii.tab { i += 1 }
            let valueStart = i
            var valueEnd = i
            while true {
                let c = p[i]
                if c == ascii.lf || c == ascii.cr { break }
                guard HTTPBytes.isFieldValueByte(c) else { throw HTTPParseError.badRequest("invalid byte in header field value") }
                i += 1
                if c != ascii.space && c != ascii.tab { valueEnd = i }
            }
            guard skipLineEnd(p, &i) else { throw HTTPParseError.badRequest("bare CR in header field value") }
            count += 1
            if count > limits.maxHeaderCount { throw HTTPParseError.headerFieldsTooLarge("too many header fields") }

            let nameCount = nameEnd - nameStart
            switch nameCount {
            case 14 where nameIs(p, nameStart, "content-length"):
                try parseContentLength(p, valueStart, valueEnd, into: &contentLength)
            case 17 where nameIs(p, nameStart, "transfer-encoding"):
                hasTransferEncoding = true
                try forEachListElement(p, valueStart, valueEnd) { s, e in
                    if e - s == 7 && nameIs(p, s, "chunked") {
                        if chunked { throw HTTPParseError.badRequest("chunked transfer coding applied twice") }
                        chunked = true
                    } else {
                        unsupportedCoding = true
                    }
                }
            case 10 where nameIs(p, nameStart, "connection"):
                forEachListElement(p, valueStart, valueEnd) { s, e in
                    if e - s == 5 && nameIs(p, s, "close") { connectionClose = true }
                    if e - s == 10 && nameIs(p, s, "keep-alive") { connectionKeepAlive = true }
                }
            case 6 where nameIs(p, nameStart, "expect"):
                if valueEnd - valueStart == 12 && nameIs(p, valueStart, "100-continue") { expectContinue = true } else { unknownExpectation = true }
            case 4 where nameIs(p, nameStart, "host"):
                hostCount += 1
            default:
                break
            }
            headers.add(name: string(p, nameStart, nameEnd), value: string(p, valueStart, valueEnd))
        }

        // RFC 9112 3.2: at most one Host. (A missing Host on HTTP/1.1 is tolerated: the server
        // has one authority, and some load-balancer health checks omit it.)
        if hostCount > 1 { throw HTTPParseError.badRequest("more than one Host header field") }
        if unknownExpectation { throw HTTPParseError(status: 417, reason: "only 'Expect: 100-continue' is supported") }
        if hasTransferEncoding {
            if contentLength != nil { throw HTTPParseError.badRequest("both Content-Length and Transfer-Encoding") }
            if unsupportedCoding { throw HTTPParseError(status: 501, reason: "unsupported transfer coding") }
            if !chunked { throw HTTPParseError.badRequest("empty Transfer-Encoding") }
        }
        if let contentLength, contentLength > limits.maxBodyBytes {
            throw HTTPParseError.contentTooLarge("Content-Length \(contentLength) exceeds \(limits.maxBodyBytes)")
        }

        let target = string(p, targetStart, targetEnd)
        let path = queryMark < 0 ? target : string(p, targetStart, queryMark)
        let query = queryMark < 0 ? nil : string(p, queryMark + 1, targetEnd)
        let keepAlive = minor == 1 ? !connectionClose : (connectionKeepAlive && !connectionClose && !hasTransferEncoding)
        let head = HTTPRequestHead(method: method, target: target, path: path, query: query, versionMinor: minor,
                                   headers: headers, contentLength: contentLength, isChunked: chunked,
                                   keepAlive: keepAlive, expectsContinue: minor == 1 && expectContinue)
        return head
    }

    /// Content-Length = 1*DIGIT, or a comma list of equal values (also across repeated fields).
    private static func parseContentLength(_ p: UnsafeRawBufferPointer, _ start: Int, _ end: Int, into result: inout Int?) throws {
        var sawValue = false
        try forEachListElement(p, start, end) { s, e in
            var value = 0
            for k in s..<e {
                let c = p[k]
                guard isDigit(c) else { throw HTTPParseError.badRequest("invalid Content-Length") }
                let digit = Int(c &- UInt8(ascii: "0"))
                guard value <= (Int.max - digit) / 10 else { throw HTTPParseError.badRequest("Content-Length overflows") }
                value = value * 10 + digit
            }
            if let result, result != value { throw HTTPParseError.badRequest("conflicting Content-Length values") }
            result = value
            sawValue = true
        }
        if !sawValue { throw HTTPParseError.badRequest("empty Content-Length") }
    }

    /// Calls `body(start, end)` for every non-empty, OWS-trimmed element of the comma list in `p[start..<end]`.
    @inline(__always)
    private static func forEachListElement(_ p: UnsafeRawBufferPointer, _ start: Int, _ end: Int,
                                           _ body: (Int, Int) throws -> Void) rethrows {
        var k = start
        while k < end {
            while k < end && (p[k] == ascii.space || p[k] == ascii.tab) { k += 1 }
            let s = k
            while k < end && p[k] != ascii.comma { k += 1 }
            var e = k
            while e > s && (p[e - 1] == ascii.space || p[e - 1] == ascii.tab) { e -= 1 }
            k += 1  // past the comma
            if e > s { try body(s, e) }
        }
    }

    /// Skips CRLF or LF at `i`; false if neither is there.
    @inline(__always)
    private static func skipLineEnd(_ p: UnsafeRawBufferPointer, _ i: inout Int) -> Bool {
        if p[i] == ascii.lf { i += 1; return true }
        if p[i] == ascii.cr && p[i + 1] == ascii.lf { i += 2; return true }
        return false
    }

    /// ASCII case-insensitive match of `p[start..<start+lower.count]` against a lowercase
    /// literal made of letters, digits and '-' (callers check the length first).
    @inline(__always)
    private static func nameIs(_ p: UnsafeRawBufferPointer, _ start: Int, _ lower: StaticString) -> Bool {
        let s = lower.utf8Start
        for k in 0..<lower.utf8CodeUnitCount where p[start + k] | 0x20 != s[k] { return false }
        return true
    }

    @inline(__always)
    private static func string(_ p: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> String {
        String(decoding: UnsafeBufferPointer(start: p.baseAddress!.assumingMemoryBound(to: UInt8.self) + start, count: end - start),
               as: UTF8.self)
    }

    // MARK: Chunked framing

    /// Consumes chunk-size lines, the CRLF after chunk data and the trailer section byte by byte,
    /// until chunk data starts, the message ends, or the input runs out.
    private mutating func consumeChunkFraming(_ bytes: UnsafeRawBufferPointer, from start: Int,
                                              _ onEvent: (HTTPParseEvent) throws -> Void) throws -> Int {
        var i = start
        while i < bytes.count {
            let c = bytes[i]
            i += 1
            switch state {
            case .chunkSize:
                chunkLineBytes += 1
                if let digit = hexValue(c) {
                    // Reject as soon as the declared size would take the body over the limit (no overflow:
                    // chunkSize * 16 + digit <= available  <=>  chunkSize <= (available - digit) / 16).
                    let available = limits.maxBodyBytes - bodyTotal
                    guard digit <= available, chunkSize <= (available - digit) / 16 else {
                        throw HTTPParseError.contentTooLarge("chunked body exceeds \(limits.maxBodyBytes) bytes")
                    }
                    chunkSize = chunkSize * 16 + digit
                    chunkDigits += 1
                } else {
                    guard chunkDigits > 0 else { throw HTTPParseError.badRequest("invalid chunk size") }
                    switch c {
                    case ascii.semicolon: state = .chunkExtension
                    case ascii.space, ascii.tab: state = .chunkSizeWhitespace
                    case ascii.cr: state = .chunkSizeLF
                    default: throw HTTPParseError.badRequest("invalid chunk size")
                    }
                }
                if chunkLineBytes > limits.maxHeaderBytes { throw HTTPParseError.badRequest("chunk-size line too long") }
            case .chunkSizeWhitespace:
                chunkLineBytes += 1
                switch c {
                case ascii.space, ascii.tab: break
                case ascii.semicolon: state = .chunkExtension
                case ascii.cr: state = .chunkSizeLF
                default: throw HTTPParseError.badRequest("invalid chunk size line")
                }
                if chunkLineBytes > limits.maxHeaderBytes { throw HTTPParseError.badRequest("chunk-size line too long") }
            case .chunkExtension:
                chunkLineBytes += 1
                if c == ascii.cr {
                    state = .chunkSizeLF
                } else if !HTTPBytes.isFieldValueByte(c) {
                    throw HTTPParseError.badRequest("invalid chunk extension")
                }
                if chunkLineBytes > limits.maxHeaderBytes { throw HTTPParseError.badRequest("chunk-size line too long") }
            case .chunkSizeLF:
                guard c == ascii.lf else { throw HTTPParseError.badRequest("chunk-size line not ended by CRLF") }
                let size = chunkSize
                chunkSize = 0
                chunkDigits = 0
                chunkLineBytes = 0
                if size == 0 {
                    state = .trailerLineStart
                    trailerBytes = 0
                    trailerCount = 0
                } else {
                    bodyTotal += size
                    remaining = size
                    state = .chunkData
                    return i
                }
            case .chunkDataCR:
                guard c == ascii.cr else { throw HTTPParseError.badRequest("chunk data not followed by CRLF") }
                state = .chunkDataLF
            case .chunkDataLF:
                guard c == ascii.lf else { throw HTTPParseError.badRequest("chunk data not followed by CRLF") }
                state = .chunkSize
            default:
                // Trailer section: field lines, validated and dropped, then CRLF.
                trailerBytes += 1
                if trailerBytes > limits.maxHeaderBytes { throw HTTPParseError.headerFieldsTooLarge("trailer section too large") }
                switch state {
                case .trailerLineStart:
                    if c == ascii.cr {
                        state = .trailerEndLF
                    } else if HTTPBytes.isTokenByte(c) {
                        trailerCount += 1
                        if trailerCount > limits.maxHeaderCount { throw HTTPParseError.headerFieldsTooLarge("too many trailer fields") }
                        state = .trailerName
                    } else {
                        throw HTTPParseError.badRequest("invalid trailer field")
                    }
                case .trailerName:
                    if c == ascii.colon {
                        state = .trailerValue
                    } else if !HTTPBytes.isTokenByte(c) {
                        throw HTTPParseError.badRequest("invalid trailer field name")
                    }
                case .trailerValue:
                    if c == ascii.cr {
                        state = .trailerLF
                    } else if !HTTPBytes.isFieldValueByte(c) {
                        throw HTTPParseError.badRequest("invalid byte in trailer field value")
                    }
                case .trailerLF:
                    guard c == ascii.lf else { throw HTTPParseError.badRequest("trailer field not ended by CRLF") }
                    state = .trailerLineStart
                case .trailerEndLF:
                    guard c == ascii.lf else { throw HTTPParseError.badRequest("trailer section not ended by CRLF") }
                    try endMessage(onEvent)
                    return i
                default:
                    preconditionFailure("unreachable: not a chunk framing state")
                }
            }
        }
        return i
    }
}

private enum ascii {
    static var lf: UInt8 { 0x0A }
    static var cr: UInt8 { 0x0D }
    static var space: UInt8 { 0x20 }
    static var tab: UInt8 { 0x09 }
    static var colon: UInt8 { 0x3A }
    static var semicolon: UInt8 { 0x3B }
    static var comma: UInt8 { 0x2C }
    static var question: UInt8 { 0x3F }
}

@inline(__always)
private func isDigit(_ c: UInt8) -> Bool { c &- UInt8(ascii: "0") < 10 }

@inline(__always)
private func hexValue(_ c: UInt8) -> Int? {
    if c &- UInt8(ascii: "0") < 10 { return Int(c &- UInt8(ascii: "0")) }
    let lower = c | 0x20
    if lower &- UInt8(ascii: "a") < 6 { return Int(lower &- UInt8(ascii: "a")) + 10 }
    return nil
}
