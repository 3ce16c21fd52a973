import CLinuxShims
import Glibc
import Synchronization

/// A complete HTTP/1.1 request: head and body (the body bytes were copied once, from the
/// socket read buffer).
public struct HTTPRequest: Sendable {
    public var head: HTTPRequestHead
    public var body: [UInt8]
}

/// Answers requests. Transport knows nothing about what requests mean.
public protocol HTTPHandler: Sendable {
    /// Called for each complete request, in order per connection, on an event-loop thread
    /// (or, for a compressed body, the thread `offload` ran it on). Must not block; call
    /// `responder.send` exactly once, from any thread.
    func handle(_ request: HTTPRequest, responder: HTTPResponder)
    /// The response for a request Transport rejects itself (malformed, too large, timeout).
    func errorResponse(status: Int, message: String) -> HTTPResponse
    /// Runs `work` (decompressing a request body: up to the body limit of CPU time) off the
    /// event loop. The default runs it on the calling thread.
    func offload(_ work: @escaping @Sendable () -> Void)
}

extension HTTPHandler {
    public func offload(_ work: @escaping @Sendable () -> Void) { work() }

    /// Calls `handle` with the body decoded per its Content-Encoding (gzip, deflate; in
    /// `offload` unless at most `ContentCoding.inlineInflateBytes`) and that header removed;
    /// answers itself when it cannot: 415 (with Accept-Encoding) for another coding, 400 for
    /// corrupt data, 413 when the decoded body exceeds `maxBodyBytes`. Event-loop thread.
    func handleDecodingContent(_ request: HTTPRequest, maxBodyBytes: Int, responder: HTTPResponder) {
        guard let coding = request.head.headers.first(name: "content-encoding"), !ContentCoding.isIdentity(coding), !request.body.isEmpty else {
            handle(request, responder: responder)
            return
        }
        if request.body.count <= ContentCoding.inlineInflateBytes {
            decodeAndHandle(request, coding: coding, maxBodyBytes: maxBodyBytes, responder: responder)
        } else {
            offload { decodeAndHandle(request, coding: coding, maxBodyBytes: maxBodyBytes, responder: responder) }
        }
    }

    private func decodeAndHandle(_ request: HTTPRequest, coding: String, maxBodyBytes: Int, responder: HTTPResponder) {
        do {
            var decoded = request
            decoded.body = try ContentCoding.decode(request.body, coding: coding, limit: maxBodyBytes)
            decoded.head.headers.remove(name: "content-encoding")
            decoded.head.contentLength = decoded.body.count
            handle(decoded, responder: responder)
        } catch {
            var response: HTTPResponse
            switch error {
            case .unsupported:
                response = errorResponse(status: 415, message: error.message)
                response.headers.add(name: "Accept-Encoding", value: "gzip, deflate")
            case .corrupt: response = errorResponse(status: 400, message: error.message)
            case .tooLarge: response = errorResponse(status: 413, message: error.message)
            }
            responder.send(response)
        }
    }
}

/// Sends the response to one request (HTTP/1.1 or an HTTP/2 stream). Thread-safe; the
/// response is written on the connection's loop thread. Call `send` once.
public struct HTTPResponder: Sendable {
    let deliver: @Sendable (HTTPResponse) -> Void

    public func send(_ response: HTTPResponse) { deliver(response) }
}

/// Lets a responder reach its connection from other threads without keeping it alive.
final class ConnectionReference<Connection: AnyObject>: @unchecked Sendable {
    let loop: EventLoop
    /// Read and written only on `loop`'s thread.
    weak var value: Connection?
    init(loop: EventLoop, value: Connection) {
        self.loop = loop
        self.value = value
    }
}

/// What a listener tracks of each accepted connection, whatever its protocol. Loop thread only.
protocol ServerConnection: AnyObject {
    func beginDrain()
    func checkTimeouts(now: Double)
    func close()
}

public struct HTTPServerConfiguration: Sendable {
    public var host: String = "0.0.0.0"
    public var port: Int = 8501
    public var limits = HTTPParserLimits()
    /// Largest gRPC message accepted (RESOURCE_EXHAUSTED beyond).
    public var maxGRPCMessageBytes: Int = 64 * 1024 * 1024
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS announced to clients.
    public var maxConcurrentStreams: Int = 1024
    /// Seconds a keep-alive connection may sit idle.
    public var idleTimeout: Int = 60
    /// Seconds a client has to send a whole request once it started one.
    public var requestTimeout: Int = 30
    public var maxConnections: Int = 10_000
    /// Requests a connection may queue (pipelined) before the server stops reading from it.
    public var maxPipelined: Int = 32
    /// Request bodies and HTTP/2 answers held in memory, shared by every server given the
    /// same budget (unbounded by default).
    public var memoryBudget = MemoryBudget(limit: .max)
    public init() {}
}

/// A TCP listener per event loop (SO_REUSEPORT: the kernel spreads connections) and the
/// connections it accepts. A connection opening with the HTTP/2 preface (prior knowledge,
/// h2c) is served over HTTP/2: gRPC streams go to `grpcHandler`, others to `handler`.
public final class HTTPServer: @unchecked Sendable {
    public let configuration: HTTPServerConfiguration
    let handler: any HTTPHandler
    let grpcHandler: (any GRPCHandler)?
    let loops: [EventLoop]
    private var listeners: [Listener] = []
    /// The bound port (resolved when configuration.port is 0).
    public private(set) var port: Int = 0
    let connectionCount = Atomic<Int>(0)
    let draining = Atomic<Bool>(false)

    public init(configuration: HTTPServerConfiguration, loops: [EventLoop], handler: any HTTPHandler,
                grpcHandler: (any GRPCHandler)? = nil) throws {
        self.configuration = configuration
        self.loops = loops
        self.handler = handler
        self.grpcHandler = grpcHandler
        var port = configuration.port
        for loop in loops {
            let fd = try Self.listen(host: configuration.host, port: port)
            if port == 0 { port = Self.boundPort(fd) }
            listeners.append(Listener(fd: fd, loop: loop, server: self))
        }
        self.port = port
    }

    /// Starts accepting on every loop. Any thread.
    public func start() {
        for listener in listeners {
            listener.loop.execute { listener.register() }
        }
        for loop in loops {
            loop.execute { [self] in loop.onTick { loop in self.tick(loop) } }
        }
    }

    /// Stops accepting; connections finish what they have in flight and close. Idle ones close
    /// at once. `completion` runs (on some loop) when no connection is left or the deadline passed.
    public func shutdown(gracePeriod seconds: Int, completion: @escaping @Sendable () -> Void) {
        draining.store(true, ordering: .releasing)
        let deadline = monotonicSeconds() + Double(seconds)
        let finished = Atomic<Bool>(false)
        let check: @Sendable () -> Void = { [self] in
            if connectionCount.load(ordering: .acquiring) == 0 || monotonicSeconds() >= deadline {
                if !finished.exchange(true, ordering: .acquiringAndReleasing) { completion() }
            }
        }
        for listener in listeners {
            listener.loop.execute {
                listener.close()
                for connection in listener.connections.values { connection.beginDrain() }
                check()
            }
        }
        for loop in loops {
            loop.execute { [self] in
                loop.onTick { _ in
                    if monotonicSeconds() >= deadline {
                        for listener in self.listeners where listener.loop === loop {
                            for connection in Array(listener.connections.values) { connection.close() }
                        }
                    }
                    check()
                }
            }
        }
    }

    private func tick(_ loop: EventLoop) {
        let now = monotonicSeconds()
        for listener in listeners where listener.loop === loop {
            for connection in Array(listener.connections.values) { connection.checkTimeouts(now: now) }
        }
    }

    static func listen(host: String, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(function: "socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw SystemError(function: "inet_pton(\(host))", errno: EINVAL)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw SystemError(function: "bind(\(host):\(port))", errno: code)
        }
        guard Glibc.listen(fd, 4096) == 0 else {
            let code = errno
            close(fd)
            throw SystemError(function: "listen", errno: code)
        }
        return fd
    }

    static func boundPort(_ fd: Int32) -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// A listening socket on one loop and the connections accepted there. Loop thread only
/// (unchecked Sendable: it crosses threads only inside closures that run on its loop).
final class Listener: EventHandler, @unchecked Sendable {
    let fd: Int32
    let loop: EventLoop
    unowned let server: HTTPServer
    var registration: EventLoop.Registration?
    var connections: [ObjectIdentifier: any ServerConnection] = [:]
    /// One read buffer per loop: a read is parsed completely before the next.
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    /// The Date field of this loop's answers, formatted once per second.
    let date = HTTPDateCache()
    /// A descriptor held in reserve: when the process runs out (EMFILE), it is released to
    /// accept and close the waiting connection, so the level-triggered listener cannot spin.
    private var spareFD: Int32 = open("/dev/null", O_RDONLY | O_CLOEXEC)

    init(fd: Int32, loop: EventLoop, server: HTTPServer) {
        self.fd = fd
        self.loop = loop
        self.server = server
    }

    /// Accepting stopped because the process is out of descriptors and has no spare left;
    /// the next timer tick re-arms the spare and resumes.
    private var acceptPaused = false

    func register() {
        registration = try? loop.register(fd, events: EPOLLIN.rawValue, handler: self)
        loop.onTick { [weak self] _ in self?.resumeAccepting() }
    }

    private func pauseAccepting() {
        guard !acceptPaused, let registration else { return }
        acceptPaused = true
        try? loop.modify(registration, events: 0)
    }

    private func resumeAccepting() {
        guard acceptPaused, let registration else { return }
        if spareFD < 0 { spareFD = open("/dev/null", O_RDONLY | O_CLOEXEC) }
        guard spareFD >= 0 else { return }  // still out of descriptors: try again next tick
        acceptPaused = false
        try? loop.modify(registration, events: EPOLLIN.rawValue)
    }

    func close() {
        if let registration { loop.deregister(registration) }
        registration = nil
        Glibc.close(fd)
    }

    func handleEvents(_ events: UInt32) {
        while true {
            let client = cls_accept4(fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if errno == EMFILE || errno == ENFILE {
                    // Release the spare to accept and close the waiting connection. Without a
                    // spare (another loop took the freed slot), stop polling the level-triggered
                    // listener until a tick finds a descriptor again: it would spin otherwise.
                    guard spareFD >= 0 else { pauseAccepting(); return }
                    Glibc.close(spareFD)
                    let refused = cls_accept4(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
                    if refused >= 0 { Glibc.close(refused) }
                    spareFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
                    if spareFD < 0 { pauseAccepting(); return }
                    // accept4 reports EMFILE before looking at the queue: stop once it is empty.
                    if refused < 0 { return }
                    continue
                }
                return  // EAGAIN: wait for the next event
            }
            if server.draining.load(ordering: .acquiring) {
                Glibc.close(client)
                continue
            }
            if server.connectionCount.add(1, ordering: .relaxed).newValue > server.configuration.maxConnections {
                server.connectionCount.subtract(1, ordering: .relaxed)
                Glibc.close(client)
                continue
            }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let connection = HTTPConnection(fd: client, listener: self)
            do {
                try connection.register()
                connections[ObjectIdentifier(connection)] = connection
            } catch {
                server.connectionCount.subtract(1, ordering: .relaxed)
                Glibc.close(client)
            }
        }
    }

    func removed(_ connection: any ServerConnection) {
        if connections.removeValue(forKey: ObjectIdentifier(connection)) != nil {
            server.connectionCount.subtract(1, ordering: .relaxed)
        }
    }

    /// `old` handed its socket to `new` (same connection, new protocol).
    func replace(_ old: any ServerConnection, with new: any ServerConnection) {
        connections.removeValue(forKey: ObjectIdentifier(old))
        connections[ObjectIdentifier(new)] = new
    }
}

/// One client connection: parses requests, hands them to the handler one at a time (so
/// pipelined responses leave in order), writes responses. Loop thread only.
final class HTTPConnection: EventHandler, ServerConnection, @unchecked Sendable {
    let fd: Int32
    unowned let listener: Listener
    var loop: EventLoop { listener.loop }
    var server: HTTPServer { listener.server }
    var registration: EventLoop.Registration?
    var parser: HTTP1Parser
    lazy var reference = ConnectionReference(loop: loop, value: self)
    /// Until the first bytes show whether the client speaks HTTP/1.1 or opens with the
    /// HTTP/2 preface; holds a read that is a strict prefix of the preface.
    private var sniffing = true
    private var sniffed: [UInt8] = []

    private var currentHead: HTTPRequestHead?
    private var currentBody: [UInt8] = []
    private var pending: [HTTPRequest] = []
    /// Body bytes held in `pending`.
    private var pendingBytes = 0
    /// Bytes taken from the memory budget for the body being read, and for each request read
    /// and not yet answered (those in `pending` and the one in flight), oldest first.
    private var currentBudgeted = 0
    private var budgeted: [Int] = []
    /// No more requests will be read: the peer shut down its side, or a request was rejected.
    private var inputDone = false
    /// The answer to a rejected request, written once the requests before it are answered.
    private var rejection: HTTPResponse?
    /// Sequence number of the request the handler holds, if any.
    private var inFlight: Int?
    private var nextSequence = 0
    private var inFlightKeepAlive = true
    private var inFlightHTTP10 = false
    private var inFlightHEAD = false
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var closeAfterFlush = false
    private var readPaused = false
    private var wantsWrite = false
    private var closed = false
    private var draining = false
    private var lastActivity = monotonicSeconds()
    private var requestStarted: Double?

    init(fd: Int32, listener: Listener) {
        self.fd = fd
        self.listener = listener
        parser = HTTP1Parser(limits: listener.server.configuration.limits)
    }

    func register() throws {
        registration = try loop.register(fd, events: interest, handler: self)
    }

    private var interest: UInt32 {
        // Level-triggered: while reading is paused, a peer's half-close (RDHUP) must not be
        // reported over and over; it is seen when reading resumes.
        var events: UInt32 = readPaused || inputDone ? 0 : EPOLLRDHUP.rawValue
        if !readPaused && !inputDone && !closeAfterFlush { events |= EPOLLIN.rawValue }
        if wantsWrite { events |= EPOLLOUT.rawValue }
        return events
    }

    /// Unsent response bytes beyond which no further pipelined request is started (a client
    /// that does not read must not make the server buffer its answers without bound).
    static let maxUnsentBytes = 1 << 20

    private func updateInterest() {
        guard let registration, !closed else { return }
        try? loop.modify(registration, events: interest)
    }

    func handleEvents(_ events: UInt32) {
        if closed { return }
        if events & EPOLLOUT.rawValue != 0 { flush() }
        if closed { return }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 && !readPaused && !inputDone {
            readAvailable()
        } else if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            close()
        }
    }

    private func readAvailable() {
        let buffer = listener.readBuffer
        // Bounded reads per event keep one busy client from starving the others.
        for _ in 0..<8 {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                close()
                return
            }
            if count == 0 {
                // The peer shut down its sending side: answer the whole requests it sent (it may
                // still read), then close; a request cut short cannot be answered.
                inputDone = true
                readPaused = false
                currentHead = nil
                currentBody = []
                releaseCurrentBody()
                requestStarted = nil
                updateInterest()
                closeWhenAnswered()
                return
            }
            lastActivity = monotonicSeconds()
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            if sniffing {
                sniffed.append(contentsOf: bytes.prefix(HTTP2Connection.preface.count))
                switch HTTP2Connection.matchPreface(sniffed) {
                case .complete:
                    sniffed = Array(sniffed.prefix(sniffed.count - min(count, HTTP2Connection.preface.count))) + Array(bytes)
                    upgradeToHTTP2()
                    return
                case .partial:
                    continue
                case .mismatch:
                    sniffing = false
                    // Bytes held back from earlier reads go to the parser first.
                    let held = sniffed.dropLast(min(count, HTTP2Connection.preface.count))
                    sniffed = []
                    if !held.isEmpty { Array(held).withUnsafeBytes { parseBytes($0) } }
                    if closed || inputDone || closeAfterFlush { return }
                }
            }
            parseBytes(bytes)
            if closed || inputDone { return }
            // A request's clock starts at its first byte, so a client trickling a header
            // (slowloris) meets the request timeout too.
            if requestStarted == nil && (parser.hasPartialHead || parser.isMidRequest) { requestStarted = lastActivity }
            if readPaused || inputDone || closed || closeAfterFlush { return }
            if count < buffer.count { return }
        }
    }

    /// Hands the socket (and the bytes read so far) to an HTTP/2 connection.
    private func upgradeToHTTP2() {
        guard let registration else { return }
        loop.deregister(registration)
        self.registration = nil
        closed = true  // this object is done; the fd now belongs to the HTTP/2 connection
        let connection = HTTP2Connection(fd: fd, listener: listener)
        listener.replace(self, with: connection)
        connection.start(initialBytes: sniffed)
        sniffed = []
    }

    private func parseBytes(_ bytes: UnsafeRawBufferPointer) {
        do {
            try parser.parse(bytes) { event in try self.received(event) }
        } catch let error as HTTPParseError {
            reject(status: error.status, message: error.reason)
        } catch {
            reject(status: 400, message: "\(error)")
        }
    }

    private func received(_ event: HTTPParseEvent) throws {
        switch event {
        case .head(let head):
            // A declared body that cannot fit in the memory budget now is refused before it is
            // read (and before 100 Continue invites it).
            if let length = head.contentLength, !server.configuration.memoryBudget.fits(length) {
                throw HTTPParseError(status: 503, reason: server.configuration.memoryBudget.refusal)
            }
            currentHead = head
            currentBody = []
            if let length = head.contentLength { currentBody.reserveCapacity(length) }
            if requestStarted == nil { requestStarted = monotonicSeconds() }
            // 100 Continue only when no earlier response is still owed (it must not overtake one);
            // otherwise the client sends the body after its own short wait.
            if head.expectsContinue && inFlight == nil && pending.isEmpty {
                output.append(contentsOf: HTTPResponseWriter.continueResponse)
                flush()
            }
        case .body(let bytes):
            guard server.configuration.memoryBudget.reserve(bytes.count) else {
                throw HTTPParseError(status: 503, reason: server.configuration.memoryBudget.refusal)
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
            let limits = server.configuration
            if (pending.count >= limits.maxPipelined || pendingBytes > limits.limits.maxBodyBytes) && !readPaused {
                readPaused = true
                updateInterest()
            }
            dispatch()
        }
    }

    private func dispatch() {
        guard inFlight == nil, !closed, !closeAfterFlush, !pending.isEmpty, output.count - outputOffset <= Self.maxUnsentBytes else { return }
        let request = pending.removeFirst()
        pendingBytes -= request.body.count
        if readPaused && pending.count < server.configuration.maxPipelined / 2 && pendingBytes <= server.configuration.limits.maxBodyBytes / 2 {
            readPaused = false
            updateInterest()
        }
        let sequence = nextSequence
        nextSequence += 1
        inFlight = sequence
        inFlightKeepAlive = request.head.keepAlive && !draining
        inFlightHTTP10 = request.head.versionMinor == 0
        inFlightHEAD = request.head.method == "HEAD"
        let reference = reference
        server.handler.handleDecodingContent(request, maxBodyBytes: server.configuration.limits.maxBodyBytes, responder: HTTPResponder { response in
            reference.loop.execute { reference.value?.complete(sequence: sequence, response: response) }
        })
    }

    /// A response arrived (on the loop thread).
    func complete(sequence: Int, response: HTTPResponse) {
        guard !closed, inFlight == sequence else { return }
        inFlight = nil
        server.configuration.memoryBudget.release(budgeted.removeFirst())
        let keepAlive = inFlightKeepAlive && !draining
        var response = response
        // HTTP/1.0 clients keep the connection only when told so.
        if keepAlive && inFlightHTTP10 { response.headers.replaceOrAdd(name: "Connection", value: "keep-alive") }
        if inFlightHEAD {
            // The fields GET would have, no body (RFC 9110 §9.3.2).
            HTTPResponseWriter.serializeHead(status: response.status, headers: response.headers, contentLength: response.body.count,
                                             keepAlive: keepAlive, date: listener.date.currentBytes, into: &output)
        } else {
            HTTPResponseWriter.serialize(response, keepAlive: keepAlive, date: listener.date.currentBytes, into: &output)
        }
        if !keepAlive { closeAfterFlush = true }
        lastActivity = monotonicSeconds()
        flush()
        if !closed && !closeAfterFlush { dispatch() }
        if !closed { writeRejectionIfDue() }
        if !closed { closeWhenAnswered() }
        if draining && inFlight == nil && pending.isEmpty && !closed && output.count == outputOffset { close() }
    }

    /// Rejects the request being read (malformed, too large, too slow): no more requests are
    /// read; the requests before it are still answered, then the rejection, then the
    /// connection closes.
    private func reject(status: Int, message: String) {
        guard rejection == nil, !closeAfterFlush, !closed else { return }
        rejection = server.handler.errorResponse(status: status, message: message)
        inputDone = true
        currentHead = nil
        currentBody = []
        releaseCurrentBody()
        requestStarted = nil
        updateInterest()
        writeRejectionIfDue()
    }

    private func writeRejectionIfDue() {
        guard let response = rejection, inFlight == nil, pending.isEmpty, !closeAfterFlush else { return }
        rejection = nil
        HTTPResponseWriter.serialize(response, keepAlive: false, date: listener.date.currentBytes, into: &output)
        closeAfterFlush = true
        updateInterest()
        flush()
    }

    /// After the peer's half-close: close once every whole request it sent is answered.
    private func closeWhenAnswered() {
        guard inputDone, rejection == nil, inFlight == nil, pending.isEmpty, !closeAfterFlush else { return }
        closeAfterFlush = true
        updateInterest()
        flush()
    }

    private func flush() {
        while outputOffset < output.count {
            let written = output.withUnsafeBytes { bytes in
                write(fd, bytes.baseAddress! + outputOffset, bytes.count - outputOffset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if !wantsWrite { wantsWrite = true; updateInterest() }
                    return
                }
                close()
                return
            }
            outputOffset += written
            lastActivity = monotonicSeconds()
        }
        output.removeAll(keepingCapacity: output.capacity <= 1 << 20)
        outputOffset = 0
        if wantsWrite { wantsWrite = false; updateInterest() }
        if closeAfterFlush && inFlight == nil { close(); return }
        // Drained: a pipelined request held back by unsent output may start now.
        if !closeAfterFlush && inFlight == nil && !pending.isEmpty { dispatch() }
    }

    func beginDrain() {
        draining = true
        if inFlight == nil && pending.isEmpty && currentHead == nil && output.count == outputOffset { close() }
    }

    func checkTimeouts(now: Double) {
        guard !closed else { return }
        if let started = requestStarted, now - started > Double(server.configuration.requestTimeout) {
            reject(status: 408, message: "request not completed within \(server.configuration.requestTimeout) s")
            return
        }
        if inFlight == nil && pending.isEmpty && currentHead == nil && now - lastActivity > Double(server.configuration.idleTimeout) {
            close()
        } else if output.count > outputOffset && now - lastActivity > Double(server.configuration.idleTimeout) {
            close()  // the client has read nothing of its answers for the idle timeout
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        releaseCurrentBody()
        server.configuration.memoryBudget.release(budgeted.reduce(0, +))
        budgeted = []
        if let registration { loop.deregister(registration) }
        registration = nil
        Glibc.close(fd)
        listener.removed(self)
    }

    /// Gives back the budget of the body being read (dropped, or the connection ends).
    private func releaseCurrentBody() {
        server.configuration.memoryBudget.release(currentBudgeted)
        currentBudgeted = 0
    }
}

/// The Date field value of the current second, formatted once per second (RFC 9110 §6.6.1: an
/// origin server with a clock sends Date in its answers). One per event loop; loop thread only.
final class HTTPDateCache {
    private var second = Int.min
    private var bytes: [UInt8] = []
    private var text = ""

    /// Seconds since 1970 (UTC) now: CLOCK_REALTIME_COARSE, a vDSO read without a system call
    /// (its few milliseconds of granularity do not matter at one-second resolution).
    private static func now() -> Int {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &time)
        return time.tv_sec
    }

    private func refresh() {
        let now = Self.now()
        guard now != second else { return }
        second = now
        bytes = HTTPDate.imfFixdate(secondsSince1970: now)
        text = String(decoding: bytes, as: UTF8.self)
    }

    /// The IMF-fixdate of the current second, as bytes (HTTP/1.1 serialisation).
    var currentBytes: [UInt8] {
        refresh()
        return bytes
    }

    /// The IMF-fixdate of the current second, as text (HTTP/2 header fields).
    var currentText: String {
        refresh()
        return text
    }
}
