import CLinuxShims
import CNGHTTP2
import Glibc

/// One HTTP/2 stream's request as it arrives and its response as it leaves. Loop thread only.
final class HTTP2Stream {
    let id: Int32
    let started: Double
    var method = ""
    var path = ""
    var headers = HTTPHeaders()
    var headerBytes = 0
    var isGRPC = false
    /// The request body (not gRPC).
    var body: [UInt8] = []
    /// gRPC: the request's message.
    var grpcMessage = GRPCMessageAssembler()
    /// The client sent END_STREAM.
    var requestComplete = false
    /// Handed to a handler, which owes one answer.
    var dispatched = false
    /// Answered already (possibly early, before the request was complete): later DATA is dropped.
    var answered = false
    var deadline: Double?
    let cancellation = GRPCCancellation()
    /// gRPC: the answer's 5-byte message prefix, sent before `responseBody`.
    var responsePrefix: [UInt8] = []
    var responseBody: [UInt8] = []
    /// Bytes of prefix + body handed to nghttp2 so far.
    var responseOffset = 0
    var responseLength: Int { responsePrefix.count + responseBody.count }
    /// gRPC trailers, sent after the body.
    var trailers: [(String, String)]?
    /// Bytes taken from the server's memory budget: request bytes until the stream is
    /// answered, answer bytes until nghttp2 has copied them.
    var budgetedRequestBytes = 0
    var budgetedResponseBytes = 0

    init(id: Int32, started: Double) {
        self.id = id
        self.started = started
    }
}

/// A server-side HTTP/2 connection: libnghttp2's session driven through its memory API on the
/// listener's event loop (bytes read from the socket go to `mem_recv`, `mem_send` output goes to
/// the socket; want-read/want-write decide when the connection is finished). gRPC streams go to
/// the server's `GRPCHandler`, all others to its `HTTPHandler` as ordinary requests.
///
/// Thread safety: loop thread only; responders reach it through `execute`.
final class HTTP2Connection: EventHandler, ServerConnection, @unchecked Sendable {
    /// The client connection preface (RFC 9113 §3.4).
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum PrefaceMatch { case complete, partial, mismatch }

    /// Whether `bytes` start with the preface, could still become it, or cannot.
    static func matchPreface(_ bytes: [UInt8]) -> PrefaceMatch {
        let count = min(bytes.count, preface.count)
        for i in 0..<count where bytes[i] != preface[i] { return .mismatch }
        return count == preface.count ? .complete : .partial
    }

    let fd: Int32
    unowned let listener: Listener
    var loop: EventLoop { listener.loop }
    var server: HTTPServer { listener.server }
    private var session: OpaquePointer?
    private var registration: EventLoop.Registration?
    private lazy var reference = ConnectionReference(loop: loop, value: self)
    private var streams: [Int32: HTTP2Stream] = [:]
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var wantsWrite = false
    private var closed = false
    private var draining = false
    /// The peer shut down its sending side (read returned 0): nothing more is read.
    private var inputClosed = false
    /// Our side is shut down (FIN sent); reading and discarding until the client closes or
    /// `lingerUntil`, so unread client bytes cannot turn the close into a reset that destroys
    /// the last responses.
    private var lingerUntil: Double?
    /// Last successful read or write.
    private var lastActivity = monotonicSeconds()
    /// Request bytes held for streams not yet handed to a handler.
    private var bufferedBytes = 0
    /// Requests handed to a handler whose responder has not fired yet (reset streams included).
    private var outstanding = 0
    /// Answer bytes queued on streams and not yet handed to nghttp2. Above
    /// `maxBufferedResponseBytes` new streams are refused (REFUSED_STREAM, safe to retry), so a
    /// client that opens streams but never reads cannot grow this without bound.
    private var bufferedResponseBytes = 0
    static let maxBufferedResponseBytes = 64 << 20
    /// mem_send output is not taken while this much is waiting for the socket.
    private static let outputHighWater = 1 << 20

    init(fd: Int32, listener: Listener) {
        self.fd = fd
        self.listener = listener
    }

    deinit {
        if let session { nghttp2_session_del(session) }
    }

    /// Creates the session, sends our SETTINGS, feeds the bytes read so far (the preface and
    /// whatever followed it) and registers with the loop.
    func start(initialBytes: [UInt8]) {
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { return failStart() }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, h2OnBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, h2OnHeader)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, h2OnDataChunk)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, h2OnFrameReceived)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, h2OnFrameSent)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, h2OnStreamClose)
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_server_new(&session, callbacks, context) == 0, let session else { return failStart() }

        let configuration = server.configuration
        // Large tensors stream in without waiting for a WINDOW_UPDATE every 64 KiB.
        let streamWindow: UInt32 = 4 << 20
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: UInt32(clamping: configuration.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: streamWindow),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: 1 << 20),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(clamping: configuration.limits.maxHeaderBytes)),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 16 << 20)

        do {
            registration = try loop.register(fd, events: interest, handler: self)
        } catch {
            return failStart()
        }
        if !initialBytes.isEmpty {
            initialBytes.withUnsafeBytes { receive($0) }
        }
        if !closed { flush() }
    }

    private func failStart() {
        closed = true
        Syscall.close(fd)
        listener.removed(self)
    }

    private var interest: UInt32 {
        var events = inputClosed ? 0 : EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        if wantsWrite { events |= EPOLLOUT.rawValue }
        return events
    }

    private func updateInterest() {
        guard let registration, !closed else { return }
        try? loop.modify(registration, events: interest)
    }

    func handleEvents(_ events: UInt32) {
        if closed { return }
        if lingerUntil != nil { return discardUntilClosed() }
        if events & EPOLLOUT.rawValue != 0 { flush() }
        if closed { return }
        if inputClosed {
            if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { close() }
        } else if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            readAvailable()
        }
    }

    private func readAvailable() {
        let buffer = listener.readBuffer
        for _ in 0..<8 {
            let count: Int
            do {
                guard case .done(let n) = try Syscall.read(fd, into: buffer) else { break }
                count = n
            } catch {
                close()
                return
            }
            if count == 0 {
                // The peer shut down its sending side: finish the streams it completed (their
                // answers can still be read), then end the connection.
                inputClosed = true
                draining = true
                updateInterest()
                break
            }
            lastActivity = monotonicSeconds()
            receive(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            if closed { return }
            if count < buffer.count { break }
        }
        flush()
    }

    /// Feeds bytes to the session; its callbacks run inside.
    private func receive(_ bytes: UnsafeRawBufferPointer) {
        guard let session, let base = bytes.baseAddress else { return }
        let consumed = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if consumed < 0 {
            // A protocol error: nghttp2 queued a GOAWAY; send what can be sent, then close.
            flush()
            finish()
        }
    }

    /// Moves the session's output to the socket until it has none or the socket is full.
    private func flush() {
        guard let session, !closed else { return }
        while true {
            if output.count - outputOffset < Self.outputHighWater {
                var chunk: UnsafePointer<UInt8>?
                let length = nghttp2_session_mem_send(session, &chunk)
                if length < 0 {
                    close()
                    return
                }
                if length > 0, let chunk {
                    output.append(contentsOf: UnsafeBufferPointer(start: chunk, count: length))
                    continue
                }
            }
            if outputOffset == output.count { break }
            let result: IOResult<Int>
            do {
                result = try output.withUnsafeBytes { try Syscall.write(fd, UnsafeRawBufferPointer(rebasing: $0[outputOffset...])) }
            } catch {
                close()
                return
            }
            guard case .done(let written) = result else {
                if !wantsWrite { wantsWrite = true; updateInterest() }
                return
            }
            outputOffset += written
            if written > 0 { lastActivity = monotonicSeconds() }
            if outputOffset == output.count {
                output.removeAll(keepingCapacity: output.capacity <= 1 << 20)
                outputOffset = 0
            } else if outputOffset >= 256 * 1024 {
                // A slow reader: drop what was sent so the buffer stays near the high-water mark.
                output.removeFirst(outputOffset)
                outputOffset = 0
            }
        }
        if wantsWrite { wantsWrite = false; updateInterest() }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 { return finish() }
        if draining && streams.isEmpty { finish() }
    }

    /// Ends the connection gracefully once everything queued was written: FIN, then lingers.
    private func finish() {
        guard !closed, lingerUntil == nil else { return }
        if outputOffset < output.count {
            // Still writing: the next flush comes back here.
            draining = true
            return
        }
        Glibc.shutdown(fd, Int32(SHUT_WR))
        lingerUntil = monotonicSeconds() + 2
        if wantsWrite { wantsWrite = false; updateInterest() }
        discardUntilClosed()
    }

    private func discardUntilClosed() {
        let buffer = listener.readBuffer
        while true {
            do {
                guard case .done(let count) = try Syscall.read(fd, into: buffer) else { return }
                if count == 0 { return close() }
            } catch {
                return close()
            }
        }
    }

    // MARK: Session callbacks (inside mem_recv / mem_send)

    fileprivate func beginHeaders(streamID: Int32) -> Bool {
        // Streams the client reset still hold their handler's work: bound that too.
        if outstanding >= server.configuration.maxConcurrentStreams || draining { return false }
        if bufferedResponseBytes > Self.maxBufferedResponseBytes { return false }
        if budget.isExhausted { return false }
        streams[streamID] = HTTP2Stream(id: streamID, started: monotonicSeconds())
        return true
    }

    fileprivate func refuse(streamID: Int32) {
        guard let session else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_REFUSED_STREAM.rawValue)
    }

    fileprivate func header(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let stream = streams[streamID], !stream.requestComplete, !stream.dispatched else { return true }
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > server.configuration.limits.maxHeaderBytes { return false }
        let nameString = String(decoding: name, as: UTF8.self)
        let valueString = String(decoding: value, as: UTF8.self)
        switch nameString {
        case ":method": stream.method = valueString
        case ":path": stream.path = valueString
        case ":scheme", ":authority": break
        default:
            if nameString == "content-type" {
                stream.isGRPC = valueString.hasPrefix("application/grpc")
            } else if nameString == "grpc-timeout" {
                if let seconds = GRPCWire.timeoutSeconds(valueString) { stream.deadline = stream.started + seconds }
            }
            stream.headers.add(name: nameString, value: valueString)
        }
        return true
    }

    fileprivate func dataChunk(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID], !stream.answered, !stream.dispatched else { return }
        let configuration = server.configuration
        // All streams of a connection together hold at most two of the largest requests.
        let connectionLimit = 2 * max(configuration.maxGRPCMessageBytes, configuration.limits.maxBodyBytes) + (1 << 20)
        let overBudget = !budget.reserve(bytes.count)
        if overBudget || bufferedBytes + bytes.count > connectionLimit {
            if !overBudget { budget.release(bytes.count) }
            let message = overBudget ? budget.refusal : "too many large requests in flight on this connection; retry"
            if stream.isGRPC {
                answerGRPC(stream, GRPCResponse(status: GRPCResponse.resourceExhausted, message: message))
            } else {
                answerHTTP(stream, server.handler.errorResponse(status: 503, message: message))
            }
            return
        }
        // Held until the stream is answered (early answers below included) or closes.
        stream.budgetedRequestBytes += bytes.count
        if stream.isGRPC {
            let before = stream.grpcMessage.message.count
            if let refusal = stream.grpcMessage.append(bytes, maxMessageBytes: configuration.maxGRPCMessageBytes) {
                answerGRPC(stream, refusal)
                return
            }
            bufferedBytes += stream.grpcMessage.message.count - before
            return
        }
        if stream.body.count + bytes.count > configuration.limits.maxBodyBytes {
            answerHTTP(stream, server.handler.errorResponse(
                status: 413, message: "request body exceeds \(configuration.limits.maxBodyBytes) bytes"))
            return
        }
        stream.body.append(contentsOf: bytes)
        bufferedBytes += bytes.count
    }

    private var budget: MemoryBudget { server.configuration.memoryBudget }

    /// Gives back the budget a stream's request holds (it is answered or gone).
    private func releaseRequestBudget(_ stream: HTTP2Stream) {
        budget.release(stream.budgetedRequestBytes)
        stream.budgetedRequestBytes = 0
    }

    /// Forgets a stream's buffered request bytes.
    private func releaseBody(_ stream: HTTP2Stream) {
        bufferedBytes -= stream.body.count + stream.grpcMessage.message.count
        stream.body = []
        stream.grpcMessage = GRPCMessageAssembler()
    }

    fileprivate func frameReceived(type: UInt8, flags: UInt8, streamID: Int32) {
        if type == UInt8(NGHTTP2_HEADERS.rawValue), let stream = streams[streamID], stream.isGRPC, !stream.dispatched, !stream.answered,
           let refusal = GRPCWire.checkRequest(method: stream.method, contentType: stream.headers.first(name: "content-type") ?? "") {
            // Not a call this server speaks (codec, method): refused before any body is buffered.
            if flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 { stream.requestComplete = true }
            answerGRPC(stream, refusal)
            return
        }
        if type == UInt8(NGHTTP2_HEADERS.rawValue), flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) == 0,
           let stream = streams[streamID], stream.isGRPC, !stream.dispatched, !stream.answered,
           let handler = server.grpcHandler, !handler.isUnary(path: stream.path) {
            // A streaming method: the handler answers it now (this server refuses them).
            dispatch(stream)
            return
        }
        guard flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
              type == UInt8(NGHTTP2_DATA.rawValue) || type == UInt8(NGHTTP2_HEADERS.rawValue),
              let stream = streams[streamID], !stream.requestComplete else { return }
        stream.requestComplete = true
        if !stream.answered && !stream.dispatched { dispatch(stream) }
    }

    fileprivate func frameSent(type: UInt8, flags: UInt8, streamID: Int32) {
        // Answered before the client finished sending: tell it to stop (RST_STREAM NO_ERROR).
        guard let session, flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
              type == UInt8(NGHTTP2_DATA.rawValue) || type == UInt8(NGHTTP2_HEADERS.rawValue),
              let stream = streams[streamID], !stream.requestComplete else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_NO_ERROR.rawValue)
    }

    fileprivate func streamClosed(streamID: Int32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        releaseBody(stream)
        releaseRequestBudget(stream)
        budget.release(stream.budgetedResponseBytes)
        stream.budgetedResponseBytes = 0
        bufferedResponseBytes -= stream.responseLength - stream.responseOffset
        // The client reset it (or the connection ends) before the answer left: drop the work.
        if !stream.answered || stream.responseOffset < stream.responseLength { stream.cancellation.cancel() }
    }

    /// Copies the next part of a response body into nghttp2's frame buffer.
    fileprivate func readResponse(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let count = min(length, stream.responseLength - stream.responseOffset)
        // The prefix's part first, then the body's.
        let prefixCount = stream.responsePrefix.count
        var copied = 0
        if stream.responseOffset < prefixCount {
            copied = min(count, prefixCount - stream.responseOffset)
            stream.responsePrefix.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress! + stream.responseOffset, count: copied) }
        }
        if copied < count {
            let bodyOffset = stream.responseOffset + copied - prefixCount
            stream.responseBody.withUnsafeBufferPointer { (buffer + copied).update(from: $0.baseAddress! + bodyOffset, count: count - copied) }
        }
        stream.responseOffset += count
        bufferedResponseBytes -= count
        let handed = min(count, stream.budgetedResponseBytes)
        budget.release(handed)
        stream.budgetedResponseBytes -= handed
        if stream.responseOffset == stream.responseLength {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if let trailers = stream.trailers, let session {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                withHeaderFields(trailers) { fields, count in _ = nghttp2_submit_trailer(session, streamID, fields, count) }
            }
            stream.responsePrefix = []
            stream.responseBody = []
            stream.responseOffset = 0
        }
        return count
    }

    // MARK: Requests and responses

    private func dispatch(_ stream: HTTP2Stream) {
        let body = stream.body, grpcMessage = stream.grpcMessage
        releaseBody(stream)
        if stream.isGRPC {
            guard let handler = server.grpcHandler else {
                answerGRPC(stream, GRPCResponse(status: GRPCResponse.unimplemented, message: "this port does not serve gRPC"))
                return
            }
            let unary = stream.requestComplete
            switch unary ? grpcMessage.unary(encoding: stream.headers.first(name: "grpc-encoding"),
                                                      maxMessageBytes: server.configuration.maxGRPCMessageBytes) : .message([], compressedWith: nil) {
            case .rejected(let response):
                answerGRPC(stream, response)
            case .message(let message, let encoding):
                stream.dispatched = true
                outstanding += 1
                let reference = reference, id = stream.id, limit = server.configuration.maxGRPCMessageBytes
                let path = stream.path, headers = stream.headers, deadline = stream.deadline, cancellation = stream.cancellation
                let responder = GRPCResponder { response in
                    reference.loop.execute { reference.value?.completeGRPC(streamID: id, response) }
                }
                guard let encoding else {
                    handler.handle(GRPCRequest(path: path, headers: headers, message: message, deadline: deadline,
                                               cancellation: cancellation), responder: responder)
                    return
                }
                // Inflating takes up to the message limit of CPU time: off the event loop, unless
                // the message is small (4 KiB inflate to at most ~4 MiB).
                let inflate: @Sendable () -> Void = {
                    if cancellation.isCancelled {
                        responder.send(GRPCResponse(status: GRPCResponse.cancelled, message: "the call was cancelled"))
                        return
                    }
                    switch GRPCWire.decompress(message, encoding: encoding, maxMessageBytes: limit) {
                    case .message(let decoded, _):
                        handler.handle(GRPCRequest(path: path, headers: headers, message: decoded, deadline: deadline,
                                                   cancellation: cancellation), responder: responder)
                    case .rejected(let response):
                        responder.send(response)
                    }
                }
                if message.count <= ContentCoding.inlineInflateBytes { inflate() } else { server.handler.offload(inflate) }
            }
        } else {
            let head = HTTPRequestHead(method: stream.method, target: stream.path, headers: stream.headers,
                                       contentLength: body.count)
            let request = HTTPRequest(head: head, body: body)
            stream.dispatched = true
            outstanding += 1
            let reference = reference, id = stream.id
            server.handler.handleDecodingContent(request, maxBodyBytes: server.configuration.limits.maxBodyBytes, responder: HTTPResponder { response in
                reference.loop.execute { reference.value?.completeHTTP(streamID: id, response) }
            })
        }
    }

    func completeGRPC(streamID: Int32, _ response: GRPCResponse) {
        outstanding -= 1
        guard !closed, let stream = streams[streamID], !stream.answered else { return }
        answerGRPC(stream, response)
        flush()
    }

    func completeHTTP(streamID: Int32, _ response: HTTPResponse) {
        outstanding -= 1
        guard !closed, let stream = streams[streamID], !stream.answered else { return }
        answerHTTP(stream, response)
        flush()
    }

    /// Queues a gRPC answer: HEADERS, DATA, trailers; or a trailers-only HEADERS for errors.
    private func answerGRPC(_ stream: HTTP2Stream, _ response: GRPCResponse) {
        stream.answered = true
        releaseBody(stream)
        releaseRequestBudget(stream)
        var status = response.status, message = response.message
        if let deadline = stream.deadline, monotonicSeconds() > deadline, status == 0 {
            status = GRPCResponse.deadlineExceeded
            message = "deadline exceeded before the answer was ready"
        }
        var trailers = [("grpc-status", String(status))]
        if !message.isEmpty { trailers.append(("grpc-message", GRPCWire.percentEncode(message))) }
        let head = [(":status", "200"), ("content-type", "application/grpc")]
        if status == 0, let payload = response.payload {
            stream.responsePrefix = GRPCWire.prefix(length: payload.count)
            stream.responseBody = payload
            stream.trailers = trailers
            submitResponse(stream, head, hasBody: true)
        } else {
            submitResponse(stream, head + trailers, hasBody: false)
        }
        if status != 0 { stream.cancellation.cancel() }
    }

    private func answerHTTP(_ stream: HTTP2Stream, _ response: HTTPResponse) {
        stream.answered = true
        releaseBody(stream)
        releaseRequestBudget(stream)
        var fields = [(":status", String(response.status)), ("date", listener.date.currentText)]
        for field in response.headers {
            let name = field.name.lowercased()
            // Connection-specific fields do not exist in HTTP/2 (RFC 9113 §8.2.2).
            if ["connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "proxy-connection", "date"].contains(name) { continue }
            fields.append((name, field.value))
        }
        fields.append(("content-length", String(response.body.count)))
        // HEAD: the fields GET would have, no body (RFC 9110 §9.3.2).
        let hasBody = !response.body.isEmpty && stream.method != "HEAD"
        stream.responseBody = hasBody ? response.body : []
        submitResponse(stream, fields, hasBody: hasBody)
    }

    private func submitResponse(_ stream: HTTP2Stream, _ fields: [(String, String)], hasBody: Bool) {
        guard let session else { return }
        bufferedResponseBytes += stream.responseLength
        budget.force(stream.responseLength)
        stream.budgetedResponseBytes += stream.responseLength
        let result = withHeaderFields(fields) { nva, count in
            if hasBody {
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: h2ReadResponse)
                return nghttp2_submit_response(session, stream.id, nva, count, &provider)
            } else {
                return nghttp2_submit_response(session, stream.id, nva, count, nil)
            }
        }
        if result != 0 {
            // The stream cannot take a response (e.g. already reset): make sure it ends.
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_INTERNAL_ERROR.rawValue)
        }
    }

    // MARK: Lifecycle

    func beginDrain() {
        guard !closed, let session else { return }
        draining = true
        // Streams the client opened so far are still answered; newer ones are refused.
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                              NGHTTP2_NO_ERROR.rawValue, nil, 0)
        flush()
    }

    func checkTimeouts(now: Double) {
        guard !closed, let session else { return }
        if let lingerUntil {
            if now > lingerUntil { close() }
            return
        }
        let configuration = server.configuration
        for stream in Array(streams.values) where !stream.answered {
            if let deadline = stream.deadline, now > deadline, stream.isGRPC {
                answerGRPC(stream, GRPCResponse(status: GRPCResponse.deadlineExceeded, message: "deadline exceeded"))
            } else if !stream.requestComplete && now - stream.started > Double(configuration.requestTimeout) {
                stream.answered = true
                stream.cancellation.cancel()
                nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_CANCEL.rawValue)
            }
        }
        // Idle: nothing open, or only answers a client stopped reading, for the idle timeout.
        if streams.values.allSatisfy({ $0.answered }) && now - lastActivity > Double(configuration.idleTimeout) {
            nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                                  NGHTTP2_NO_ERROR.rawValue, nil, 0)
            flush()
            if streams.isEmpty { finish() } else { close() }
            return
        }
        flush()
    }

    func close() {
        guard !closed else { return }
        closed = true
        for stream in streams.values {
            stream.cancellation.cancel()
            releaseRequestBudget(stream)
            budget.release(stream.budgetedResponseBytes)
            stream.budgetedResponseBytes = 0
        }
        streams.removeAll()
        if let registration { loop.deregister(registration) }
        registration = nil
        Syscall.close(fd)
        listener.removed(self)
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

private func connection(_ userData: UnsafeMutableRawPointer?) -> HTTP2Connection {
    Unmanaged<HTTP2Connection>.fromOpaque(userData!).takeUnretainedValue()
}

private let h2OnBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    guard let frame, cng_frame_type(frame) == UInt8(NGHTTP2_HEADERS.rawValue),
          cng_headers_category(frame) == Int32(NGHTTP2_HCAT_REQUEST.rawValue) else { return 0 }
    let owner = connection(userData), streamID = cng_frame_stream_id(frame)
    // Refused streams are not tracked: their headers and data are ignored.
    if !owner.beginHeaders(streamID: streamID) { owner.refuse(streamID: streamID) }
    return 0
}

private let h2OnHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    // Request headers only: trailers must not change what the request is.
    guard let frame, let name, let value, cng_headers_category(frame) == Int32(NGHTTP2_HCAT_REQUEST.rawValue) else { return 0 }
    let accepted = connection(userData).header(streamID: cng_frame_stream_id(frame),
                                               name: UnsafeBufferPointer(start: name, count: nameLength),
                                               value: UnsafeBufferPointer(start: value, count: valueLength))
    return accepted ? 0 : Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
}

private let h2OnDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    guard let data else { return 0 }
    connection(userData).dataChunk(streamID: streamID, bytes: UnsafeBufferPointer(start: data, count: length))
    return 0
}

private let h2OnFrameReceived: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    connection(userData).frameReceived(type: cng_frame_type(frame), flags: cng_frame_flags(frame), streamID: cng_frame_stream_id(frame))
    return 0
}

private let h2OnFrameSent: nghttp2_on_frame_send_callback = { _, frame, userData in
    guard let frame else { return 0 }
    connection(userData).frameSent(type: cng_frame_type(frame), flags: cng_frame_flags(frame), streamID: cng_frame_stream_id(frame))
    return 0
}

private let h2OnStreamClose: nghttp2_on_stream_close_callback = { _, streamID, _, userData in
    connection(userData).streamClosed(streamID: streamID)
    return 0
}

private let h2ReadResponse: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
    guard let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return connection(userData).readResponse(streamID: streamID, into: buffer, length: length, flags: flags)
}
