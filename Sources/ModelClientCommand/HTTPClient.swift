import Glibc
import WireFormat

/// A failure to exchange HTTP with the server: resolving, connecting, a timeout, a dropped
/// connection or a malformed response. HTTP error statuses are responses, not this.
struct HTTPClientError: Error, CustomStringConvertible {
    let description: String
    /// The connection failed before any byte of a response arrived, so a request sent on a
    /// reused keep-alive connection may be sent again on a fresh one.
    var beforeResponse = false
}

struct HTTPResponse {
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    /// The first header called `name` (case-insensitive).
    func header(_ name: String) -> String? {
        HeaderList.first(name, in: headers.lazy.map { ($0.name, $0.value) })
    }
}

/// Blocking HTTP/1.1 over one keep-alive TCP connection to `host:port`, opened on the first
/// request and reopened whenever the server closes it.
///
/// Each `request` must finish (connect, send, whole response) within `timeout` seconds.
/// Requests carry a Content-Length body; responses may be Content-Length, chunked or
/// close-delimited. A request whose reused connection turns out closed before any response
/// byte arrives is sent once more on a new connection. Not thread-safe: one caller at a time.
final class HTTPClient {
    let host: String
    let port: Int
    let timeout: Double

    private var socket: Int32 = -1
    private var buffer: [UInt8] = []  // received bytes; those before `start` are consumed
    private var start = 0
    private var deadline = 0.0

    /// `host` is a name or an address literal (IPv6 without brackets).
    init(host: String, port: Int, timeout: Double) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    deinit { close() }

    /// "host:port", bracketing IPv6 literals.
    var authority: String { TCP.authority(host: host, port: port) }

    func close() {
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
        buffer = []
        start = 0
    }

    /// Sends `method path` with `headers` (Host, User-Agent and Content-Length are added)
    /// and returns the final (non-1xx) response.
    func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws(HTTPClientError) -> HTTPResponse {
        deadline = Self.now() + timeout
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(authority)\r\nUser-Agent: model-client\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let headBytes = Array(head.utf8)

        if start < buffer.count { close() }  // unread bytes after the last response: out of step
        buffer = []
        start = 0
        let reused = socket >= 0
        do {
            return try exchange(method, headBytes, body)
        } catch where reused && error.beforeResponse {
            close()
            return try exchange(method, headBytes, body)
        }
    }

    private func exchange(_ method: String, _ head: [UInt8], _ body: [UInt8]) throws(HTTPClientError) -> HTTPResponse {
        if socket < 0 { try connect() }
        do throws(HTTPClientError) {
            try send(head)
            try send(body)
            var (response, keepAlive) = try readHead()
            while response.status >= 100 && response.status < 200 && response.status != 101 {
                (response, keepAlive) = try readHead()
            }
            if method == "HEAD" || response.status == 204 || response.status == 304 {
                // No body.
            } else if let coding = response.header("transfer-encoding"), coding.lowercased().contains("chunked") {
                response.body = try readChunked()
            } else if let text = response.header("content-length") {
                guard let length = Int(text.trimmed), length >= 0 else { throw fail("bad Content-Length '\(text)' in the response") }
                response.body = try readExactly(length)
            } else {
                response.body = try readToEnd()
                keepAlive = false
            }
            if !keepAlive { close() }
            return response
        } catch {
            close()
            throw error
        }
    }

    // MARK: connecting

    private func connect() throws(HTTPClientError) {
        socket = try TCP.connect(host: host, port: port, deadline: deadline, timeout: timeout)
        buffer = []
        start = 0
    }

    // MARK: sending and receiving

    private func send(_ bytes: [UInt8]) throws(HTTPClientError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent >= 0 { offset += sent; continue }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try wait(socket, for: POLLOUT, doing: "sending the request to \(authority)")
            case EPIPE, ECONNRESET:
                var error = fail("\(authority) closed the connection while the request was sent: \(Self.errnoText())")
                error.beforeResponse = buffer.count == start
                throw error
            default: throw fail("sending to \(authority) failed: \(Self.errnoText())")
            }
        }
    }

    /// Appends what arrives next to `buffer`; false at end of stream.
    private func receive() throws(HTTPClientError) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress!, $0.count, 0) }
            if count > 0 { buffer.append(contentsOf: chunk[0..<count]); return true }
            if count == 0 { return false }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try wait(socket, for: POLLIN, doing: "waiting for the response from \(authority)")
            case ECONNRESET:
                var error = fail("\(authority) reset the connection")
                error.beforeResponse = buffer.count == start
                throw error
            default: throw fail("receiving from \(authority) failed: \(Self.errnoText())")
            }
        }
    }

    /// Polls `fd` for `event` until the request deadline.
    private func wait(_ fd: Int32, for event: Int32, doing what: String) throws(HTTPClientError) {
        _ = try TCP.wait(fd, for: event, deadline: deadline, timeout: timeout, doing: what)
    }

    // MARK: parsing the response

    /// The next response's status line and headers, and whether the connection stays open
    /// after it (HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "keep-alive").
    private func readHead() throws(HTTPClientError) -> (HTTPResponse, keepAlive: Bool) {
        let limit = 65536
        var scanned = start
        var end: Int?
        while true {
            end = Self.find([13, 10, 13, 10], in: buffer, from: max(start, scanned - 3))
            if end != nil { break }
            scanned = buffer.count
            if buffer.count - start > limit { throw fail("the response head from \(authority) exceeds \(limit) bytes") }
            guard try receive() else {
                var error = fail("\(authority) closed the connection without a response")
                error.beforeResponse = buffer.count == start
                throw error
            }
        }
        let text = String(decoding: buffer[start..<end!], as: UTF8.self)
        start = end! + 4
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...999).contains(status) else {
            throw fail("malformed status line from \(authority): '\(statusLine.prefix(100))'")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw fail("malformed header line from \(authority): '\(line.prefix(100))'") }
            headers.append((String(line[..<colon]).trimmed, String(line[line.index(after: colon)...]).trimmed))
        }
        let connection = headers.filter { $0.name.lowercased() == "connection" }
            .flatMap { $0.value.lowercased().split(separator: ",").map { $0.trimmed } }
        let keepAlive = parts[0] == "HTTP/1.0" ? connection.contains("keep-alive") : !connection.contains("close")
        return (HTTPResponse(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers, body: []), keepAlive)
    }

    private func readExactly(_ count: Int) throws(HTTPClientError) -> [UInt8] {
        while buffer.count - start < count {
            guard try receive() else { throw fail("\(authority) closed the connection \(buffer.count - start) bytes into a \(count)-byte body") }
        }
        let bytes = Array(buffer[start..<start + count])
        start += count
        return bytes
    }

    private func readLine() throws(HTTPClientError) -> String {
        var scanned = start
        while true {
            if let end = Self.find([13, 10], in: buffer, from: max(start, scanned - 1)) {
                let line = String(decoding: buffer[start..<end], as: UTF8.self)
                start = end + 2
                return line
            }
            scanned = buffer.count
            if buffer.count - start > 8192 { throw fail("overlong chunk line from \(authority)") }
            guard try receive() else { throw fail("\(authority) closed the connection inside a chunked body") }
        }
    }

    private func readChunked() throws(HTTPClientError) -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let line = try readLine()
            let sizeText = line.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0].trimmed
            guard let size = Int(sizeText, radix: 16), size >= 0 else { throw fail("bad chunk size '\(line.prefix(40))' from \(authority)") }
            if size == 0 {
                while try !readLine().isEmpty {}  // trailer fields
                return body
            }
            body += try readExactly(size)
            guard try readLine().isEmpty else { throw fail("a chunk from \(authority) does not end with CRLF") }
        }
    }

    private func readToEnd() throws(HTTPClientError) -> [UInt8] {
        while try receive() {}
        let bytes = Array(buffer[start...])
        start = buffer.count
        return bytes
    }

    // MARK: helpers

    private func fail(_ message: String) -> HTTPClientError { HTTPClientError(description: message) }

    private static func find(_ pattern: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard bytes.count >= pattern.count else { return nil }
        var index = from
        while index <= bytes.count - pattern.count {
            if bytes[index] == pattern[0] && bytes[index..<index + pattern.count].elementsEqual(pattern) { return index }
            index += 1
        }
        return nil
    }

    private static func now() -> Double { TCP.now() }

    static func seconds(_ value: Double) -> String { TCP.seconds(value) }

    private static func errnoText() -> String { TCP.errnoText() }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    var trimmed: String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return String(text)
    }
}

/// Connecting and waiting on non-blocking TCP sockets against a deadline (CLOCK_MONOTONIC
/// seconds); shared by `HTTPClient` and `GRPCClient`. Failures are `HTTPClientError`s.
enum TCP {
    /// "host:port", bracketing IPv6 literals.
    static func authority(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// A connected non-blocking, close-on-exec socket with TCP_NODELAY, trying each address
    /// `host` resolves to in turn.
    static func connect(host: String, port: Int, deadline: Double, timeout: Double) throws(HTTPClientError) -> Int32 {
        let authority = authority(host: host, port: port)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            let reason = status == EAI_SYSTEM ? errnoText() : String(cString: gai_strerror(status))
            throw HTTPClientError(description: "cannot resolve \(host): \(reason)")
        }
        defer { freeaddrinfo(first) }
        var failures: [String] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry?.pointee {
            entry = info.ai_next
            let numeric = numericAddress(info.ai_addr, info.ai_addrlen)
            let address = numeric == host ? "" : "\(numeric): "  // prefix for failures
            let type = info.ai_socktype | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            let fd = Glibc.socket(info.ai_family, type, info.ai_protocol)
            if fd < 0 { failures.append("\(address)\(errnoText())"); continue }
            if Glibc.connect(fd, info.ai_addr, info.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else {
                    failures.append("\(address)\(errnoText())")
                    Glibc.close(fd)
                    continue
                }
                do {
                    _ = try wait(fd, for: Int32(POLLOUT), deadline: deadline, timeout: timeout, doing: "connecting to \(authority)")
                } catch {
                    Glibc.close(fd)
                    throw error
                }
                var code: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &size) != 0 { code = errno }
                if code != 0 {
                    failures.append("\(address)\(String(cString: strerror(code)))")
                    Glibc.close(fd)
                    continue
                }
            }
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw HTTPClientError(description: "cannot connect to \(authority): \(failures.isEmpty ? "no addresses" : failures.joined(separator: "; "))")
    }

    private static func numericAddress(_ address: UnsafeMutablePointer<sockaddr>?, _ length: socklen_t) -> String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(address, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { return "?" }
        return String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Polls `fd` for `events` until `deadline`; returns the events that happened (readiness or
    /// an error condition: the next call on the socket reports the error). Past the deadline:
    /// "timed out after <timeout> s <what>".
    static func wait(_ fd: Int32, for events: Int32, deadline: Double, timeout: Double, doing what: String) throws(HTTPClientError) -> Int32 {
        while true {
            let left = deadline - now()
            if left <= 0 { throw HTTPClientError(description: "timed out after \(seconds(timeout)) s \(what)") }
            var entry = pollfd(fd: fd, events: Int16(events), revents: 0)
            let ready = poll(&entry, 1, Int32(min((left * 1000).rounded(.up), 1_000_000)))
            if ready > 0 { return Int32(entry.revents) }
            if ready < 0 && errno != EINTR { throw HTTPClientError(description: "poll failed: \(errnoText())") }
        }
    }

    /// CLOCK_MONOTONIC seconds.
    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// 30 -> "30", 0.5 -> "0.5".
    static func seconds(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
