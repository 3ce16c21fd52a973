import CNGHTTP2
import Glibc
import WireFormat

/// A gRPC call ended with a status other than OK: the server's `grpc-status` and (percent-
/// decoded) `grpc-message`, or a status derived from a non-gRPC answer (an HTTP error status,
/// a reset stream).
struct GRPCStatusError: Error, CustomStringConvertible {
    let code: Int
    let message: String

    var description: String { "gRPC \(GRPCStatusCode.name(code))" + (message.isEmpty ? "" : ": \(message)") }

    static let cancelled = GRPCStatusCode.cancelled.rawValue, unknown = GRPCStatusCode.unknown.rawValue,
               resourceExhausted = GRPCStatusCode.resourceExhausted.rawValue, internalError = GRPCStatusCode.internalError.rawValue
}

/// Unary gRPC calls over one HTTP/2 connection (h2c with prior knowledge: plain TCP, the
/// connection preface first) to `host:port`, opened on the first call and reopened when the
/// server has closed or is closing it (GOAWAY). libnghttp2's client session does the framing
/// through its memory API: bytes read from the socket go to `mem_recv`, `mem_send` output goes
/// to the socket, from one poll loop that reads and writes as either side allows.
///
/// Each call must finish (connect, send, whole response) within `timeout` seconds, which the
/// server also learns as `grpc-timeout`. Failures: `HTTPClientError` for the connection
/// (refused, timed out, dropped, not HTTP/2), `GRPCStatusError` for a non-OK status,
/// `ResponseError` for a response that is not one gRPC message. A call whose reused connection
/// turns out closed (or its stream refused) before any response arrives is made once more on a
/// new connection. Not thread-safe: one caller, one call at a time.
final class GRPCClient {
    let host: String
    let port: Int
    let timeout: Double

    private var socket: Int32 = -1
    private var session: OpaquePointer?
    private var output: [UInt8] = []  // mem_send output not yet written; those before outputOffset are
    private var outputOffset = 0
    private lazy var readBuffer = [UInt8](repeating: 0, count: 1 << 18)
    private var deadline = 0.0
    /// The first bytes the server sent on this connection: a non-HTTP/2 server is told apart by them.
    private var firstBytes: [UInt8] = []
    private var peerClosed = false
    private var sendClosed = false
    private var goawayReceived = false
    /// nghttp2's description of the last protocol error it saw.
    private var protocolError: String?
    /// The server's first bytes were not an HTTP/2 SETTINGS frame.
    private var settingsExpected = false
    private var call: Call?

    /// Our flow-control windows: large tensors come back without a WINDOW_UPDATE round trip
    /// every 64 KiB (nghttp2 sends WINDOW_UPDATEs as the data is consumed).
    private static let streamWindow: UInt32 = 16 << 20
    private static let connectionWindow: Int32 = 64 << 20
    /// mem_send output is not taken while this much is waiting for the socket.
    private static let outputHighWater = 1 << 20

    /// One call's request and, as it arrives, its response.
    fileprivate final class Call {
        /// The 5-byte message prefix, then the message: the request body, sent without copying
        /// the message into one buffer with its prefix.
        let prefix: [UInt8]
        let message: [UInt8]
        var requestOffset = 0
        var requestLength: Int { prefix.count + message.count }
        var streamID: Int32 = -1
        var httpStatus: Int?
        var contentType: String?
        var grpcStatus: String?
        var grpcMessage: String?
        var grpcEncoding: String?
        var body: [UInt8] = []
        var responseStarted = false
        var closed = false
        var errorCode: UInt32 = 0

        init(message: [UInt8]) {
            self.prefix = GRPCFraming.prefix(length: message.count)
            self.message = message
        }
    }

    /// `host` is a name or an address literal (IPv6 without brackets).
    init(host: String, port: Int, timeout: Double) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    deinit { close() }

    var authority: String { TCP.authority(host: host, port: port) }

    func close() {
        if let session { nghttp2_session_del(session) }
        session = nil
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
        output = []
        outputOffset = 0
        firstBytes = []
        peerClosed = false
        sendClosed = false
        goawayReceived = false
        protocolError = nil
        settingsExpected = false
    }

    /// Calls `path` ("/package.Service/Method") with one request message and returns the one
    /// response message (protobuf bytes, without the 5-byte prefix).
    func unary(_ path: String, _ message: [UInt8]) throws -> [UInt8] {
        deadline = TCP.now() + timeout
        if session != nil { checkIdleConnection() }
        let reused = session != nil
        do {
            return try exchange(path, message)
        } catch let error as HTTPClientError where reused && error.beforeResponse {
            close()
            return try exchange(path, message)
        }
    }

    private func exchange(_ path: String, _ message: [UInt8]) throws -> [UInt8] {
        if session == nil { try open() }
        guard let session else { throw HTTPClientError(description: "no HTTP/2 session") }
        let call = Call(message: message)
        self.call = call
        defer { self.call = nil }

        let fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
                      ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "model-client"),
                      ("grpc-timeout", GRPCFraming.timeoutValue(deadline - TCP.now()))]
        var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: grpcReadRequest)
        let streamID = withHeaderFields(fields) { nghttp2_submit_request(session, nil, $0, $1, &provider, nil) }
        guard streamID > 0 else {
            close()
            var error = HTTPClientError(description: "cannot open an HTTP/2 stream to \(authority): \(String(cString: nghttp2_strerror(streamID)))")
            error.beforeResponse = true
            throw error
        }
        call.streamID = streamID
        do {
            try run(call)
        } catch {
            close()
            throw error
        }
        return try result(of: call)
    }

    // MARK: the connection

    private func open() throws(HTTPClientError) {
        socket = try TCP.connect(host: host, port: port, deadline: deadline, timeout: timeout)
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else {
            close()
            throw HTTPClientError(description: "cannot create an HTTP/2 session (out of memory)")
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, grpcOnHeader)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, grpcOnDataChunk)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, grpcOnFrameReceived)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, grpcOnStreamClose)
        nghttp2_session_callbacks_set_error_callback2(callbacks, grpcOnError)
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_client_new(&session, callbacks, context) == 0, let session else {
            close()
            throw HTTPClientError(description: "cannot create an HTTP/2 session (out of memory)")
        }
        // mem_send starts with the client preface; our SETTINGS follow it.
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: Self.streamWindow),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: 1 << 20),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Self.connectionWindow)
    }

    /// Before a call on a connection kept from an earlier one: takes in what the server sent
    /// meanwhile (a GOAWAY, a PING, the end of the connection) without waiting, and drops the
    /// connection if it cannot take a new stream.
    private func checkIdleConnection() {
        do {
            while !peerClosed {
                var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 0) > 0 else { break }
                try receive()
            }
            try produce()
            try sendOutput()
        } catch {
            close()
            return
        }
        guard let session, !peerClosed, !sendClosed, !goawayReceived, protocolError == nil,
              nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0 else {
            close()
            return
        }
    }

    /// Sends and receives until `call`'s stream is closed.
    private func run(_ call: Call) throws(HTTPClientError) {
        while !call.closed {
            try produce()
            if call.closed { break }
            let pending = outputOffset < output.count
            if peerClosed || (!pending && nghttp2_session_want_read(session) == 0) {
                throw connectionEnded(call)
            }
            let events = Int32(POLLIN) | (pending ? Int32(POLLOUT) : 0)
            let what = call.responseStarted ? "receiving the response from \(authority)"
                : call.requestOffset < call.requestLength ? "sending the request to \(authority)"
                : "waiting for the response from \(authority)"
            let happened = try TCP.wait(socket, for: events, deadline: deadline, timeout: timeout, doing: what)
            if pending && happened & Int32(POLLOUT | POLLERR | POLLHUP) != 0 { try sendOutput() }
            if happened & Int32(POLLIN | POLLERR | POLLHUP) != 0 { try receive() }
        }
    }

    /// Moves the session's output into `output`, up to the high-water mark.
    private func produce() throws(HTTPClientError) {
        guard let session else { return }
        while output.count - outputOffset < Self.outputHighWater {
            var chunk: UnsafePointer<UInt8>?
            let length = nghttp2_session_mem_send(session, &chunk)
            if length < 0 {
                throw HTTPClientError(description: "HTTP/2 session with \(authority) failed: \(String(cString: nghttp2_strerror(Int32(length))))")
            }
            guard length > 0, let chunk else { return }
            if sendClosed { continue }  // the server stopped reading: nothing can reach it
            output.append(contentsOf: UnsafeBufferPointer(start: chunk, count: length))
        }
    }

    /// Writes `output` until it is empty or the socket is full.
    private func sendOutput() throws(HTTPClientError) {
        while outputOffset < output.count {
            let sent = output.withUnsafeBytes { bytes in
                Glibc.send(socket, bytes.baseAddress! + outputOffset, bytes.count - outputOffset, Int32(MSG_NOSIGNAL))
            }
            if sent >= 0 {
                outputOffset += sent
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: break
            case EPIPE, ECONNRESET:
                // The server may have answered (and closed) before taking the whole request: what
                // it sent is still to be read.
                sendClosed = true
                output = []
                outputOffset = 0
                return
            default: throw HTTPClientError(description: "sending to \(authority) failed: \(TCP.errnoText())")
            }
            break
        }
        if outputOffset == output.count {
            output.removeAll(keepingCapacity: output.capacity <= 4 << 20)
            outputOffset = 0
        } else if outputOffset >= Self.outputHighWater {
            output.removeFirst(outputOffset)
            outputOffset = 0
        }
    }

    /// Reads what has arrived and feeds it to the session (its callbacks run inside).
    private func receive() throws(HTTPClientError) {
        guard let session else { return }
        while true {
            let count = readBuffer.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress!, $0.count, 0) }
            if count == 0 {
                peerClosed = true
                return
            }
            if count < 0 {
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return
                case ECONNRESET:
                    peerClosed = true
                    return
                default: throw HTTPClientError(description: "receiving from \(authority) failed: \(TCP.errnoText())")
                }
            }
            if firstBytes.count < 64 { firstBytes += readBuffer[0..<min(count, 64 - firstBytes.count)] }
            let consumed = readBuffer.withUnsafeBytes { bytes in
                nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count)
            }
            if consumed < 0 {
                let reason = protocolError ?? String(cString: nghttp2_strerror(Int32(consumed)))
                throw notHTTP2() ?? HTTPClientError(description: "HTTP/2 error from \(authority): \(reason)")
            }
            return
        }
    }

    /// The connection ended (or can carry nothing more) before `call` was answered.
    private func connectionEnded(_ call: Call) -> HTTPClientError {
        if let error = notHTTP2() { return error }
        var error: HTTPClientError
        if let protocolError {
            error = HTTPClientError(description: "HTTP/2 error from \(authority): \(protocolError)")
        } else if call.responseStarted {
            error = HTTPClientError(description: "\(authority) closed the connection during the response")
        } else {
            error = HTTPClientError(description: "\(authority) closed the connection without a response"
                                    + (goawayReceived ? " (GOAWAY)" : ""))
            error.beforeResponse = true
        }
        return error
    }

    /// The error for a server that does not speak HTTP/2 (say an HTTP/1.1 server answering the
    /// preface), else nil.
    private func notHTTP2() -> HTTPClientError? {
        guard settingsExpected || firstBytes.starts(with: Array("HTTP/".utf8)) else { return nil }
        let line = firstBytes.prefix { $0 != 13 && $0 != 10 }
        let printable = !line.isEmpty && line.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        return HTTPClientError(description: "\(authority) does not speak HTTP/2"
                               + (printable ? " (it answered '\(String(decoding: line, as: UTF8.self))')" : "")
                               + ": --protocol grpc needs the server's gRPC port, not a REST port")
    }

    // MARK: the response

    private func result(of call: Call) throws -> [UInt8] {
        if let status = call.httpStatus, status != 200 {
            var message = "HTTP status \(status) instead of a gRPC response from \(authority)"
            let text = String(decoding: call.body.prefix(300), as: UTF8.self).trimmingNewlines
            if call.grpcStatus == nil && !text.isEmpty && !(call.contentType ?? "").hasPrefix("application/grpc") { message += ": \(text)" }
            throw GRPCStatusError(code: GRPCStatusCode(httpStatus: status).rawValue, message: message)
        }
        if call.grpcStatus == nil && (call.httpStatus == nil || call.errorCode != 0) {
            // Reset without an answer.
            if call.errorCode == NGHTTP2_REFUSED_STREAM.rawValue {
                var error = HTTPClientError(description: "\(authority) refused the stream (REFUSED_STREAM)")
                error.beforeResponse = true
                throw error
            }
            let reason = String(cString: nghttp2_http2_strerror(call.errorCode))
            let code = call.errorCode == NGHTTP2_CANCEL.rawValue ? GRPCStatusError.cancelled
                : call.errorCode == NGHTTP2_ENHANCE_YOUR_CALM.rawValue ? GRPCStatusError.resourceExhausted
                : GRPCStatusError.internalError
            throw GRPCStatusError(code: code, message: "\(authority) reset the stream (\(reason))"
                                  + (protocolError.map { ": \($0)" } ?? ""))
        }
        guard let statusText = call.grpcStatus else {
            throw GRPCStatusError(code: GRPCStatusError.internalError, message: "the response from \(authority) has no grpc-status")
        }
        guard let status = Int(statusText.trimmed), status >= 0 else {
            throw GRPCStatusError(code: GRPCStatusError.unknown, message: "bad grpc-status '\(statusText.prefix(40))' from \(authority)")
        }
        if status != 0 {
            throw GRPCStatusError(code: status, message: PercentEncoding.decodeGRPCMessage(call.grpcMessage ?? ""))
        }
        guard let contentType = call.contentType, contentType.hasPrefix("application/grpc") else {
            throw GRPCStatusError(code: GRPCStatusError.unknown,
                                  message: "the response from \(authority) is '\(call.contentType ?? "(no content-type)")', not application/grpc")
        }
        let body = call.body
        guard body.count >= 5 else {
            throw ResponseError(description: body.isEmpty ? "the gRPC response has no message" : "the gRPC response message is truncated (\(body.count) bytes)")
        }
        let length = GRPCFraming.messageLength(body)
        if GRPCFraming.isCompressed(body) {
            throw ResponseError(description: "the gRPC response is compressed (\(call.grpcEncoding ?? "no grpc-encoding")), which the client does not support")
        }
        guard body.count >= 5 + length else {
            throw ResponseError(description: "the gRPC response message is truncated: its prefix says \(length) bytes, \(body.count - 5) arrived")
        }
        guard body.count == 5 + length else {
            throw ResponseError(description: "the unary gRPC response holds more than one message")
        }
        return Array(body[5...])
    }

    // MARK: session callbacks (inside mem_recv / mem_send)

    fileprivate func header(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        guard let call, streamID == call.streamID else { return }
        call.responseStarted = true
        let text = String(decoding: value, as: UTF8.self)
        switch String(decoding: name, as: UTF8.self) {
        case ":status": call.httpStatus = Int(text)
        case "content-type": call.contentType = text
        case "grpc-status": call.grpcStatus = text
        case "grpc-message": call.grpcMessage = text
        case "grpc-encoding": call.grpcEncoding = text
        default: break
        }
    }

    fileprivate func dataChunk(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>) {
        guard let call, streamID == call.streamID else { return }
        call.responseStarted = true
        call.body.append(contentsOf: bytes)
    }

    fileprivate func frameReceived(type: UInt8) {
        if type == UInt8(NGHTTP2_GOAWAY.rawValue) { goawayReceived = true }
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let call, streamID == call.streamID else { return }
        call.closed = true
        call.errorCode = errorCode
    }

    fileprivate func recordProtocolError(_ code: Int32, _ message: String) {
        protocolError = message
        if code == NGHTTP2_ERR_SETTINGS_EXPECTED.rawValue { settingsExpected = true }
    }

    /// Copies the next part of the request body into nghttp2's frame buffer.
    fileprivate func readRequest(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                                 flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let call, streamID == call.streamID else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        var copied = 0
        if call.requestOffset < call.prefix.count {
            copied = min(length, call.prefix.count - call.requestOffset)
            call.prefix.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress! + call.requestOffset, count: copied) }
            call.requestOffset += copied
        }
        let offset = call.requestOffset - call.prefix.count
        let count = min(length - copied, call.message.count - offset)
        if count > 0 {
            call.message.withUnsafeBufferPointer { (buffer + copied).update(from: $0.baseAddress! + offset, count: count) }
            call.requestOffset += count
            copied += count
        }
        if call.requestOffset == call.requestLength { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return copied
    }
}

/// Calls `body` with nghttp2 header fields for `fields` (valid during the call; nghttp2's submit
/// functions copy them).
private func withHeaderFields<R>(_ fields: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
    var bytes: [UInt8] = []
    var ranges: [(Int, Int, Int, Int)] = []
    for (name, value) in fields {
        let nameStart = bytes.count
        bytes.append(contentsOf: name.utf8)
        let valueStart = bytes.count
        bytes.append(contentsOf: value.utf8)
        ranges.append((nameStart, valueStart - nameStart, valueStart, bytes.count - valueStart))
    }
    bytes.append(0)
    return bytes.withUnsafeBufferPointer { storage in
        let base = storage.baseAddress!
        let nva = ranges.map { cng_nv(base + $0.0, $0.1, base + $0.2, $0.3) }
        return nva.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
    }
}

private func client(_ userData: UnsafeMutableRawPointer?) -> GRPCClient {
    Unmanaged<GRPCClient>.fromOpaque(userData!).takeUnretainedValue()
}

private let grpcOnHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame, let name, let value else { return 0 }
    client(userData).header(streamID: cng_frame_stream_id(frame), name: UnsafeBufferPointer(start: name, count: nameLength),
                            value: UnsafeBufferPointer(start: value, count: valueLength))
    return 0
}

private let grpcOnDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    guard let data else { return 0 }
    client(userData).dataChunk(streamID: streamID, bytes: UnsafeBufferPointer(start: data, count: length))
    return 0
}

private let grpcOnFrameReceived: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    client(userData).frameReceived(type: cng_frame_type(frame))
    return 0
}

private let grpcOnStreamClose: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    client(userData).streamClosed(streamID: streamID, errorCode: errorCode)
    return 0
}

private let grpcOnError: nghttp2_error_callback2 = { _, code, message, length, userData in
    guard let message else { return 0 }
    let text = UnsafeRawBufferPointer(start: message, count: length)
    client(userData).recordProtocolError(code, String(decoding: text, as: UTF8.self))
    return 0
}

private let grpcReadRequest: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
    guard let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return client(userData).readRequest(streamID: streamID, into: buffer, length: length, flags: flags)
}
