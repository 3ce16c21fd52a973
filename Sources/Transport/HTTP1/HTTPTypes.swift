import WireFormat

/// HTTP/1.1 value types shared by the request parser and the response writer.
/// No Foundation: only the standard library.

/// One header field, name and value as sent (value without surrounding whitespace).
public struct HTTPHeaderField: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// Ordered header fields. Duplicates are kept in order; every name lookup is ASCII
/// case-insensitive. Indices are positions in the list (0..<count).
public struct HTTPHeaders: Sendable, Equatable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [HTTPHeaderField]

    public init() { fields = [] }

    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { HTTPHeaderField(name: $0.0, value: $0.1) }
    }

    /// Duplicate names are allowed and kept in order.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var startIndex: Int { fields.startIndex }
    public var endIndex: Int { fields.endIndex }
    public subscript(position: Int) -> HTTPHeaderField { fields[position] }

    public mutating func reserveCapacity(_ n: Int) { fields.reserveCapacity(n) }

    /// Appends a field (keeps any existing fields with the same name).
    public mutating func add(name: String, value: String) {
        fields.append(HTTPHeaderField(name: name, value: value))
    }

    /// Removes every field named `name`, then appends `name: value`.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    /// Removes every field named `name`.
    public mutating func remove(name: String) {
        fields.removeAll { asciiCaseInsensitiveEquals($0.name, name) }
    }

    /// The first value of `name`, or nil.
    public func first(name: String) -> String? {
        fields.first { asciiCaseInsensitiveEquals($0.name, name) }?.value
    }

    /// All values of `name`, in order (empty when absent).
    public subscript(name: String) -> [String] {
        fields.compactMap { asciiCaseInsensitiveEquals($0.name, name) ? $0.value : nil }
    }

    public func contains(name: String) -> Bool {
        fields.contains { asciiCaseInsensitiveEquals($0.name, name) }
    }
}

/// ASCII case-insensitive equality of two strings (bytes outside A-Z/a-z compare exactly).
func asciiCaseInsensitiveEquals(_ a: String, _ b: String) -> Bool {
    HeaderList.equalsIgnoringCase(a, b)
}

/// A parsed request line and header section. See `HTTP1Parser` for how fields are derived.
public struct HTTPRequestHead: Sendable, Equatable {
    /// As sent, e.g. "GET" (a token; case-sensitive per RFC 9110).
    public var method: String
    /// The request-target as sent (origin-form path + optional "?query", or absolute/asterisk/authority form).
    public var target: String
    /// `target` up to (excluding) the first '?'; no percent-decoding.
    public var path: String
    /// Everything after the first '?', raw; nil when the target has no '?'.
    public var query: String?
    /// 0 or 1 (HTTP/1.0 or HTTP/1.1).
    public var versionMinor: Int
    public var headers: HTTPHeaders
    /// The Content-Length value, when the request has one.
    public var contentLength: Int?
    /// Transfer-Encoding: chunked (the only transfer coding accepted).
    public var isChunked: Bool
    /// Whether the connection may carry another request after this one.
    public var keepAlive: Bool
    /// Expect: 100-continue on an HTTP/1.1 request: the client waits for "100 Continue" (or a
    /// final response) before sending the body.
    public var expectsContinue: Bool

    /// `path` and `query` are derived from `target` as the parser does.
    public init(method: String, target: String, versionMinor: Int = 1, headers: HTTPHeaders = HTTPHeaders(),
                contentLength: Int? = nil, isChunked: Bool = false, keepAlive: Bool = true, expectsContinue: Bool = false) {
        self.method = method
        self.target = target
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(target[..<q])
            query = String(target[target.utf8.index(after: q)...])
        } else {
            path = target
            query = nil
        }
        self.versionMinor = versionMinor
        self.headers = headers
        self.contentLength = contentLength
        self.isChunked = isChunked
        self.keepAlive = keepAlive
        self.expectsContinue = expectsContinue
    }

    /// Memberwise; `path` and `query` must be the split of `target` at its first '?'.
    init(method: String, target: String, path: String, query: String?, versionMinor: Int, headers: HTTPHeaders,
         contentLength: Int?, isChunked: Bool, keepAlive: Bool, expectsContinue: Bool) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.versionMinor = versionMinor
        self.headers = headers
        self.contentLength = contentLength
        self.isChunked = isChunked
        self.keepAlive = keepAlive
        self.expectsContinue = expectsContinue
    }
}

/// A complete response: the writer adds the framing headers.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

public enum HTTPStatus {
    /// The standard reason phrase for `status`, "Unknown" for codes not listed.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 308: "Permanent Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 411: "Length Required"
        case 412: "Precondition Failed"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 426: "Upgrade Required"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 499: "Client Closed Request"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Unknown"
        }
    }
}

public enum HTTPResponseWriter {
    /// The interim response to send for `HTTPRequestHead.expectsContinue` before reading the body.
    public static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// Appends "HTTP/1.1 <status> <reason>\r\n", "Date: <date>\r\n" when `date` is given,
    /// `response.headers`, "Content-Length: n\r\n", "Connection: close\r\n" when !keepAlive,
    /// then "\r\n" and the body. See `serializeHead` for the header rules.
    public static func serialize(_ response: HTTPResponse, keepAlive: Bool, date: [UInt8]?, into output: inout [UInt8]) {
        let bodyless = responseHasNoBody(response.status)
        output.reserveCapacity(output.count + 128 + response.headers.count * 32 + (bodyless ? 0 : response.body.count))
        serializeHead(status: response.status, headers: response.headers, contentLength: response.body.count,
                      keepAlive: keepAlive, date: date, into: &output)
        if !bodyless { output.append(contentsOf: response.body) }
    }

    /// Appends only the status line and header section for a body of `contentLength` bytes that the
    /// caller sends itself (e.g. with writev, or nothing for a HEAD request).
    /// - The writer owns framing: user headers named Content-Length or Transfer-Encoding are
    ///   dropped, and Connection headers are dropped when !keepAlive ("Connection: close" is written).
    /// - 1xx and 204 responses get no Content-Length (RFC 9110 §8.6); `serialize` sends no body for them.
    /// - A status outside 100...999 is written as 500.
    /// - Header bytes that could break framing are neutralised: CR, LF and other controls (except
    ///   HTAB) in values become SP; bytes of a name that are not token characters become '_'.
    /// - `date` is the field value, e.g. from `HTTPDate.imfFixdate`; when given, user Date fields are dropped.
    public static func serializeHead(status: Int, headers: HTTPHeaders, contentLength: Int, keepAlive: Bool,
                                     date: [UInt8]?, into output: inout [UInt8]) {
        let status = (100...999).contains(status) ? status : 500
        output.append(contentsOf: "HTTP/1.1 ".utf8)
        appendDecimal(status, to: &output)
        output.append(ascii.space)
        output.append(contentsOf: HTTPStatus.reasonPhrase(status).utf8)
        output.append(contentsOf: crlf)
        if let date {
            output.append(contentsOf: "Date: ".utf8)
            date.withUnsafeBufferPointer { appendValue($0, to: &output) }
            output.append(contentsOf: crlf)
        }
        for field in headers.fields {
            if isFramingHeader(field.name, keepAlive: keepAlive) { continue }
            // One Date field: the writer's, when it is given.
            if date != nil && field.name.utf8.count == 4 && asciiCaseInsensitiveEquals(field.name, "date") { continue }
            appendName(field.name, to: &output)
            output.append(ascii.colon)
            output.append(ascii.space)
            var value = field.value
            value.withUTF8 { appendValue($0, to: &output) }
            output.append(contentsOf: crlf)
        }
        if !responseHasNoBody(status) {
            output.append(contentsOf: "Content-Length: ".utf8)
            appendDecimal(max(contentLength, 0), to: &output)
            output.append(contentsOf: crlf)
        }
        if !keepAlive { output.append(contentsOf: "Connection: close\r\n".utf8) }
        output.append(contentsOf: crlf)
    }

    private static let crlf: [UInt8] = [13, 10]
    private enum ascii {
        static let space = UInt8(ascii: " ")
        static let colon = UInt8(ascii: ":")
    }

    @inline(__always)
    private static func responseHasNoBody(_ status: Int) -> Bool {
        (100..<200).contains(status) || status == 204
    }

    private static func isFramingHeader(_ name: String, keepAlive: Bool) -> Bool {
        switch name.utf8.count {
        case 14: asciiCaseInsensitiveEquals(name, "content-length")
        case 17: asciiCaseInsensitiveEquals(name, "transfer-encoding")
        case 10: !keepAlive && asciiCaseInsensitiveEquals(name, "connection")
        default: false
        }
    }

    private static func appendName(_ name: String, to output: inout [UInt8]) {
        var name = name
        name.withUTF8 { bytes in
            if bytes.allSatisfy(HTTPBytes.isTokenByte) { output.append(contentsOf: bytes); return }
            for c in bytes { output.append(HTTPBytes.isTokenByte(c) ? c : UInt8(ascii: "_")) }
        }
    }

    private static func appendValue(_ bytes: UnsafeBufferPointer<UInt8>, to output: inout [UInt8]) {
        if bytes.allSatisfy(HTTPBytes.isFieldValueByte) { output.append(contentsOf: bytes); return }
        for c in bytes { output.append(HTTPBytes.isFieldValueByte(c) ? c : ascii.space) }
    }

    /// Appends the decimal digits of `value` (>= 0).
    static func appendDecimal(_ value: Int, to output: inout [UInt8]) {
        if value < 10 { output.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value)); return }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch: Int.max has 19 digits
        let count = withUnsafeMutableBytes(of: &digits) { buf -> Int in
            var v = value, n = 0
            while v > 0 { buf[23 - n] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10); v /= 10; n += 1 }
            return n
        }
        withUnsafeBytes(of: &digits) { output.append(contentsOf: $0[(24 - count)...]) }
    }
}

/// Byte classes of RFC 9110 / 9112.
enum HTTPBytes {
    /// tchar: "!#$%&'*+-.^_`|~", DIGIT, ALPHA.
    @inline(__always)
    static func isTokenByte(_ c: UInt8) -> Bool {
        if c < 64 { return (0x03ff_6cfa_0000_0000 as UInt64) >> UInt64(c) & 1 != 0 }
        if c < 128 { return (0x57ff_ffff_c7ff_fffe as UInt64) >> UInt64(c - 64) & 1 != 0 }
        return false
    }

    /// field-vchar / SP / HTAB / obs-text: anything but CTLs (other than HTAB) and DEL.
    @inline(__always)
    static func isFieldValueByte(_ c: UInt8) -> Bool {
        (c >= 0x20 && c != 0x7F) || c == 0x09
    }
}

/// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") for the Date header, without Foundation.
public enum HTTPDate {
    /// The IMF-fixdate for `secondsSince1970` (UTC).
    public static func imfFixdate(secondsSince1970: Int) -> [UInt8] {
        let days = secondsSince1970 >= 0 ? secondsSince1970 / 86_400 : (secondsSince1970 - 86_399) / 86_400
        let secondOfDay = secondsSince1970 - days * 86_400
        // Civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday (index 4, Sunday = 0)

        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        var out: [UInt8] = []
        out.reserveCapacity(29)
        func two(_ v: Int) {
            out.append(UInt8(ascii: "0") + UInt8(v / 10))
            out.append(UInt8(ascii: "0") + UInt8(v % 10))
        }
        out.append(contentsOf: weekdays[weekday].utf8)
        out.append(contentsOf: ", ".utf8)
        two(day)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: months[month - 1].utf8)
        out.append(UInt8(ascii: " "))
        let y = min(max(year, 0), 9999)
        two(y / 100)
        two(y % 100)
        out.append(UInt8(ascii: " "))
        two(secondOfDay / 3600)
        out.append(UInt8(ascii: ":"))
        two(secondOfDay / 60 % 60)
        out.append(UInt8(ascii: ":"))
        two(secondOfDay % 60)
        out.append(contentsOf: " GMT".utf8)
        return out
    }
}
