/// The decisions of one HTTP/1.1 connection, without sockets: events in (bytes read, the peer's
/// half-close, bytes written, a timer tick, an answer, a drain), actions out (dispatch, flush,
/// update the poll interest, close, hand over to HTTP/2). No system calls; time comes in as
/// `now` (monotonic seconds). The driver (`HTTPConnection`) owns the socket, executes the
/// actions in order and reports what `write` did; unsent output lives here.
///
/// Requests go to the handler one at a time (`inFlight`) so pipelined answers leave in order;
/// at most `maxPipelined` requests wait, and none starts while more than `maxUnsentBytes` of
/// answers are unsent. A rejected request (malformed, too large, too slow, over the memory
/// budget) is answered after the requests before it, then the connection closes. Body bytes
/// are reserved from `memoryBudget` as read and released when answered, dropped or closed.
struct HTTP1ConnectionState {
    struct Configuration {
        var limits = HTTPParserLimits()
        var maxPipelined = 32
        /// Unsent answer bytes beyond which no further pipelined request is started.
        var maxUnsentBytes = 1 << 20
        /// Seconds to send a whole request once its first byte arrived.
        var requestTimeout = 30
        /// Seconds a connection may sit idle (or leave its answers unread).
        var idleTimeout = 60
        var memoryBudget = MemoryBudget(limit: .max)
        /// The answer to a request Transport rejects itself.
        var errorResponse: (_ status: Int, _ message: String) -> HTTPResponse
        /// The Date field value for answers written now (nil: none).
        var date: () -> [UInt8]?
    }

    enum Action {
        /// Give the request to the handler; its answer comes back as `answerReady(sequence:)`.
        case dispatch(HTTPRequest, sequence: Int)
        /// Write `unsentOutput`, reporting with `wrote`, `writeWouldBlock` and `outputDrained`.
        case flush
        /// Call `afterAnswerFlushed` (the rest of `answerReady`, once its flush was attempted).
        case continueAfterAnswer
        /// Set the poll interest to `interest`.
        case updateInterest
        /// Close the socket (the state is closed and its budget released).
        case close
        /// The client opened with the HTTP/2 preface: hand the socket and these bytes over.
        case upgradeToHTTP2(initialBytes: [UInt8])
    }

    /// What to poll for.
    struct Interest: Equatable {
        var read: Bool
        var peerHalfClose: Bool
        var write: Bool
    }

    let configuration: Configuration
    private var parser: HTTP1Parser
    /// Until the first bytes show whether the client speaks HTTP/1.1 or opens with the
    /// HTTP/2 preface; holds a read that is a strict prefix of the preface.
    private(set) var sniffing = true
    private var sniffed: [UInt8] = []

    private var currentHead: HTTPRequestHead?
    private var currentBody: [UInt8] = []
    private var pending: [HTTPRequest] = []
    /// Body bytes held in `pending`.
    private var pendingBytes = 0
    /// Bytes taken from the memory budget for the body being read, and for each request read
    /// and not yet answered (those in `pending` and the one in flight), oldest first.
    private(set) var currentBudgeted = 0
    private var budgeted: [Int] = []
    /// No more requests will be read: the peer shut down its side, or a request was rejected.
    private(set) var inputDone = false
    /// The answer to a rejected request, written once the requests before it are answered.
    private var rejection: HTTPResponse?
    /// Sequence number of the request the handler holds, if any.
    private(set) var inFlight: Int?
    private var nextSequence = 0
    private var inFlightKeepAlive = true
    private var inFlightHTTP10 = false
    private var inFlightHEAD = false
    private var output: [UInt8] = []
    private var outputOffset = 0
    private(set) var closeAfterFlush = false
    private(set) var readPaused = false
    private(set) var wantsWrite = false
    private(set) var closed = false
    private var draining = false
    private var lastActivity: Double
    private var requestStarted: Double?

    init(configuration: Configuration, now: Double) {
        self.configuration = configuration
        parser = HTTP1Parser(limits: configuration.limits)
        lastActivity = now
    }

    var interest: Interest {
        // Level-triggered: while reading is paused, a peer's half-close (RDHUP) must not be
        // reported over and over; it is seen when reading resumes.
        Interest(read: !readPaused && !inputDone && !closeAfterFlush, peerHalfClose: !readPaused && !inputDone, write: wantsWrite)
    }

    /// The driver should read (more) from the socket after this event.
    var wantsInput: Bool { !closed && !readPaused && !inputDone && !closeAfterFlush }

    /// Requests read and not yet given to the handler.
    var pendingCount: Int { pending.count }

    /// Bytes of answers not yet written, and their count.
    var unsentCount: Int { output.count - outputOffset }
    func withUnsentOutput<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try output.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[outputOffset...])) }
    }

    // MARK: Input

    /// Bytes arrived from the peer.
    mutating func bytesRead(_ bytes: UnsafeRawBufferPointer, now: Double) -> [Action] {
        var actions: [Action] = []
        guard !closed else { return actions }
        lastActivity = now
        let count = bytes.count
        if sniffing {
            sniffed.append(contentsOf: bytes.prefix(HTTP2Connection.preface.count))
            switch HTTP2Connection.matchPreface(sniffed) {
            case .complete:
                let initial = Array(sniffed.prefix(sniffed.count - min(count, HTTP2Connection.preface.count))) + Array(bytes)
                sniffed = []
                closed = true  // this state is done; the socket now belongs to HTTP/2
                return [.upgradeToHTTP2(initialBytes: initial)]
            case .partial:
                return actions
            case .mismatch:
                sniffing = false
                // Bytes held back from earlier reads go to the parser first.
                let held = Array(sniffed.dropLast(min(count, HTTP2Connection.preface.count)))
                sniffed = []
                if !held.isEmpty { held.withUnsafeBytes { parseBytes($0, &actions) } }
                if closed || inputDone || closeAfterFlush { return actions }
            }
        }
        parseBytes(bytes, &actions)
        if closed || inputDone { return actions }
        // A request's clock starts at its first byte, so a client trickling a header
        // (slowloris) meets the request timeout too.
        if requestStarted == nil && (parser.hasPartialHead || parser.isMidRequest) { requestStarted = lastActivity }
        return actions
    }

    /// The peer shut down its sending side: answer the whole requests it sent (it may still
    /// read), then close; a request cut short cannot be answered.
    mutating func peerClosed() -> [Action] {
        var actions: [Action] = []
        guard !closed else { return actions }
        inputDone = true
        readPaused = false
        currentHead = nil
        currentBody = []
        releaseCurrentBody()
        requestStarted = nil
        actions.append(.updateInterest)
        closeWhenAnswered(&actions)
        return actions
    }

    private mutating func parseBytes(_ bytes: UnsafeRawBufferPointer, _ actions: inout [Action]) {
        // The parser is moved out while it calls back into `received` (which mutates self).
        var parser = HTTP1Parser(limits: configuration.limits)
        swap(&parser, &self.parser)
        defer { swap(&parser, &self.parser) }
        do {
            try parser.parse(bytes) { event in try self.received(event, &actions) }
        } catch let error as HTTPParseError {
            reject(status: error.status, message: error.reason, &actions)
        } catch {
            reject(status: 400, message: "\(error)", &actions)
        }
    }

    private mutating func received(_ event: HTTPParseEvent, _ actions: inout [Action]) throws {
        let budget = configuration.memoryBudget
        switch event {
        case .head(let head):
            // A declared body that cannot fit in the memory budget now is refused before it is
            // read (and before 100 Continue invites it).
            if let length = head.contentLength, !budget.fits(length) {
                throw HTTPParseError(status: 503, reason: budget.refusal)
            }
            currentHead = head
            currentBody = []
            if let length = head.contentLength { currentBody.reserveCapacity(length) }
            if requestStarted == nil { requestStarted = lastActivity }
            // 100 Continue only when no earlier response is still owed (it must not overtake one);
            // otherwise the client sends the body after its own short wait.
            if head.expectsContinue && inFlight == nil && pending.isEmpty {
                output.append(contentsOf: HTTPResponseWriter.continueResponse)
                actions.append(.flush)
            }
        case .body(let bytes):
            guard budget.reserve(bytes.count) else {
                throw HTTPParseError(status: 503, reason: budget.refusal)
            }
            currentBudgeted += bytes.count
            currentBody.append(contentsOf: bytes)
        case .end:
            guard let head = currentHead else { return }
            pending.append(HTTPRequest(head: head, body: currentBody))
            pendingBytes += currentBody.count
            budgeted.append(currentBudgeted)
            currentBudgeted = 0
            currentHead = nil
            currentBody = []
            requestStarted = nil
            if (pending.count >= configuration.maxPipelined || pendingBytes > configuration.limits.maxBodyBytes) && !readPaused {
                readPaused = true
                actions.append(.updateInterest)
            }
            dispatch(&actions)
        }
    }

    private mutating func dispatch(_ actions: inout [Action]) {
        guard inFlight == nil, !closed, !closeAfterFlush, !pending.isEmpty, unsentCount <= configuration.maxUnsentBytes else { return }
        let request = pending.removeFirst()
        pendingBytes -= request.body.count
        if readPaused && pending.count < configuration.maxPipelined / 2 && pendingBytes <= configuration.limits.maxBodyBytes / 2 {
            readPaused = false
            actions.append(.updateInterest)
        }
        let sequence = nextSequence
        nextSequence += 1
        inFlight = sequence
        inFlightKeepAlive = request.head.keepAlive && !draining
        inFlightHTTP10 = request.head.versionMinor == 0
        inFlightHEAD = request.head.method == "HEAD"
        actions.append(.dispatch(request, sequence: sequence))
    }

    // MARK: Answers

    /// The handler answered request `sequence`. Its budget is released here. The returned
    /// actions end with `.flush, .continueAfterAnswer`.
    mutating func answerReady(sequence: Int, response: HTTPResponse, now: Double) -> [Action] {
        guard !closed, inFlight == sequence else { return [] }
        inFlight = nil
        configuration.memoryBudget.release(budgeted.removeFirst())
        let keepAlive = inFlightKeepAlive && !draining
        var response = response
        // HTTP/1.0 clients keep the connection only when told so.
        if keepAlive && inFlightHTTP10 { response.headers.replaceOrAdd(name: "Connection", value: "keep-alive") }
        if inFlightHEAD {
            // The fields GET would have, no body (RFC 9110 §9.3.2).
            HTTPResponseWriter.serializeHead(status: response.status, headers: response.headers, contentLength: response.body.count,
                                             keepAlive: keepAlive, date: configuration.date(), into: &output)
        } else {
            HTTPResponseWriter.serialize(response, keepAlive: keepAlive, date: configuration.date(), into: &output)
        }
        if !keepAlive { closeAfterFlush = true }
        lastActivity = now
        return [.flush, .continueAfterAnswer]
    }

    /// The rest of `answerReady`, after its flush: the next request, a rejection now due,
    /// the close after a half-close or during a drain.
    mutating func afterAnswerFlushed() -> [Action] {
        var actions: [Action] = []
        if !closed && !closeAfterFlush { dispatch(&actions) }
        if !closed { writeRejectionIfDue(&actions) }
        if !closed { closeWhenAnswered(&actions) }
        if draining && inFlight == nil && pending.isEmpty && !closed && unsentCount == 0 { close(&actions) }
        return actions
    }

    /// Rejects the request being read (malformed, too large, too slow): no more requests are
    /// read; the requests before it are still answered, then the rejection, then the
    /// connection closes.
    private mutating func reject(status: Int, message: String, _ actions: inout [Action]) {
        guard rejection == nil, !closeAfterFlush, !closed else { return }
        rejection = configuration.errorResponse(status, message)
        inputDone = true
        currentHead = nil
        currentBody = []
        releaseCurrentBody()
        requestStarted = nil
        actions.append(.updateInterest)
        writeRejectionIfDue(&actions)
    }

    private mutating func writeRejectionIfDue(_ actions: inout [Action]) {
        guard let response = rejection, inFlight == nil, pending.isEmpty, !closeAfterFlush else { return }
        rejection = nil
        HTTPResponseWriter.serialize(response, keepAlive: false, date: configuration.date(), into: &output)
        closeAfterFlush = true
        actions.append(.updateInterest)
        actions.append(.flush)
    }

    /// After the peer's half-close: close once every whole request it sent is answered.
    private mutating func closeWhenAnswered(_ actions: inout [Action]) {
        guard inputDone, rejection == nil, inFlight == nil, pending.isEmpty, !closeAfterFlush else { return }
        closeAfterFlush = true
        actions.append(.updateInterest)
        actions.append(.flush)
    }

    // MARK: Output

    /// `count` bytes of `unsentOutput` were written.
    mutating func wrote(_ count: Int, now: Double) {
        outputOffset += count
        lastActivity = now
    }

    /// The socket's send buffer is full: poll for writability.
    mutating func writeWouldBlock() -> [Action] {
        guard !wantsWrite else { return [] }
        wantsWrite = true
        return [.updateInterest]
    }

    /// Everything was written.
    mutating func outputDrained() -> [Action] {
        var actions: [Action] = []
        output.removeAll(keepingCapacity: output.capacity <= 1 << 20)
        outputOffset = 0
        if wantsWrite { wantsWrite = false; actions.append(.updateInterest) }
        if closeAfterFlush && inFlight == nil { close(&actions); return actions }
        // Drained: a pipelined request held back by unsent output may start now.
        if !closeAfterFlush && inFlight == nil && !pending.isEmpty { dispatch(&actions) }
        return actions
    }

    // MARK: Lifecycle

    /// The server stops: finish what is in flight, then close; an idle connection closes now.
    mutating func beginDrain() -> [Action] {
        var actions: [Action] = []
        draining = true
        if inFlight == nil && pending.isEmpty && currentHead == nil && unsentCount == 0 { close(&actions) }
        return actions
    }

    /// The periodic timer: the request timeout (408) and the idle timeout.
    mutating func tick(now: Double) -> [Action] {
        var actions: [Action] = []
        guard !closed else { return actions }
        if let started = requestStarted, now - started > Double(configuration.requestTimeout) {
            reject(status: 408, message: "request not completed within \(configuration.requestTimeout) s", &actions)
            return actions
        }
        if inFlight == nil && pending.isEmpty && currentHead == nil && now - lastActivity > Double(configuration.idleTimeout) {
            close(&actions)
        } else if unsentCount > 0 && now - lastActivity > Double(configuration.idleTimeout) {
            close(&actions)  // the client has read nothing of its answers for the idle timeout
        }
        return actions
    }

    /// Closes (a socket error, a timeout, the end): gives back every reserved budget byte.
    mutating func close() -> [Action] {
        var actions: [Action] = []
        close(&actions)
        return actions
    }

    private mutating func close(_ actions: inout [Action]) {
        guard !closed else { return }
        closed = true
        releaseCurrentBody()
        configuration.memoryBudget.release(budgeted.reduce(0, +))
        budgeted = []
        actions.append(.close)
    }

    /// Gives back the budget of the body being read (dropped, or the connection ends).
    private mutating func releaseCurrentBody() {
        configuration.memoryBudget.release(currentBudgeted)
        currentBudgeted = 0
    }
}
