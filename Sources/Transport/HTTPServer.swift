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
        let fd = try syscallChecked("socket") {
            socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            Syscall.close(fd)
            throw SystemError(function: "inet_pton(\(host))", errno: EINVAL)
        }
        do {
            try syscallChecked("bind(\(host):\(port))") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
            try syscallChecked("listen") { Glibc.listen(fd, 4096) }
        } catch {
            Syscall.close(fd)
            throw error
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
        Syscall.close(fd)
    }

    func handleEvents(_ events: UInt32) {
        while true {
            let client: Int32
            do {
                guard case .done(let accepted) = try Syscall.accept(fd) else { return }  // wait for the next event
                client = accepted
            } catch where error.errno == ECONNABORTED {
                continue
            } catch where error.errno == EMFILE || error.errno == ENFILE {
                // Release the spare to accept and close the waiting connection. Without a
                // spare (another loop took the freed slot), stop polling the level-triggered
                // listener until a tick finds a descriptor again: it would spin otherwise.
                guard spareFD >= 0 else { pauseAccepting(); return }
                Syscall.close(spareFD)
                let refused = try? Syscall.accept(fd, flags: Int32(SOCK_CLOEXEC.rawValue))
                if case .done(let refusedFD) = refused { Syscall.close(refusedFD) }
                spareFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
                if spareFD < 0 { pauseAccepting(); return }
                // accept4 reports EMFILE before looking at the queue: stop once it is empty.
                guard case .done = refused else { return }
                continue
            } catch {
                return
            }
            if server.draining.load(ordering: .acquiring) {
                Syscall.close(client)
                continue
            }
            if server.connectionCount.add(1, ordering: .relaxed).newValue > server.configuration.maxConnections {
                server.connectionCount.subtract(1, ordering: .relaxed)
                Syscall.close(client)
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
                Syscall.close(client)
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

/// One client connection over HTTP/1.1: the socket, the poll registration and the handler
/// calls for `HTTP1ConnectionState`, which makes every decision. Loop thread only.
final class HTTPConnection: EventHandler, ServerConnection, @unchecked Sendable {
    let fd: Int32
    unowned let listener: Listener
    var loop: EventLoop { listener.loop }
    var server: HTTPServer { listener.server }
    var registration: EventLoop.Registration?
    lazy var reference = ConnectionReference(loop: loop, value: self)
    private(set) var state: HTTP1ConnectionState

    init(fd: Int32, listener: Listener) {
        self.fd = fd
        self.listener = listener
        let server = listener.server
        let date = listener.date
        let handler = server.handler
        state = HTTP1ConnectionState(
            configuration: .init(limits: server.configuration.limits, maxPipelined: server.configuration.maxPipelined,
                                 requestTimeout: server.configuration.requestTimeout, idleTimeout: server.configuration.idleTimeout,
                                 memoryBudget: server.configuration.memoryBudget,
                                 errorResponse: { handler.errorResponse(status: $0, message: $1) },
                                 date: { date.currentBytes }),
            now: monotonicSeconds())
    }

    func register() throws {
        registration = try loop.register(fd, events: interest, handler: self)
    }

    private var interest: UInt32 {
        let wanted = state.interest
        var events: UInt32 = wanted.peerHalfClose ? EPOLLRDHUP.rawValue : 0
        if wanted.read { events |= EPOLLIN.rawValue }
        if wanted.write { events |= EPOLLOUT.rawValue }
        return events
    }

    private func updateInterest() {
        guard let registration, !state.closed else { return }
        try? loop.modify(registration, events: interest)
    }

    func handleEvents(_ events: UInt32) {
        if state.closed { return }
        if events & EPOLLOUT.rawValue != 0 { flush() }
        if state.closed { return }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 && !state.readPaused && !state.inputDone {
            readAvailable()
        } else if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            close()
        }
    }

    private func readAvailable() {
        let buffer = listener.readBuffer
        // Bounded reads per event keep one busy client from starving the others.
        for _ in 0..<8 {
            let count: Int
            do {
                guard case .done(let n) = try Syscall.read(fd, into: buffer) else { return }
                count = n
            } catch {
                close()
                return
            }
            if count == 0 {
                execute(state.peerClosed())
                return
            }
            let wasSniffing = state.sniffing
            execute(state.bytesRead(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), now: monotonicSeconds()))
            // A read that is a strict prefix of the HTTP/2 preface: read on.
            if wasSniffing && state.sniffing && !state.closed { continue }
            if !state.wantsInput { return }
            if count < buffer.count { return }
        }
    }

    /// Carries out the state's actions in order; stops once the connection is closed.
    private func execute(_ actions: [HTTP1ConnectionState.Action]) {
        for action in actions {
            switch action {
            case .dispatch(let request, let sequence):
                if closedByDriver { return }
                let reference = reference
                server.handler.handleDecodingContent(request, maxBodyBytes: server.configuration.limits.maxBodyBytes, responder: HTTPResponder { response in
                    reference.loop.execute { reference.value?.complete(sequence: sequence, response: response) }
                })
            case .flush:
                if closedByDriver { return }
                flush()
            case .continueAfterAnswer:
                if state.closed { return }
                execute(state.afterAnswerFlushed())
            case .updateInterest:
                updateInterest()
            case .close:
                closeSocket()
                return
            case .upgradeToHTTP2(let initialBytes):
                upgradeToHTTP2(initialBytes)
                return
            }
        }
    }

    /// The socket is closed (or handed over): nothing more is written or dispatched.
    private var closedByDriver = false

    /// Hands the socket (and the bytes read so far) to an HTTP/2 connection.
    private func upgradeToHTTP2(_ initialBytes: [UInt8]) {
        guard let registration else { return }
        loop.deregister(registration)
        self.registration = nil
        closedByDriver = true  // this object is done; the fd now belongs to the HTTP/2 connection
        let connection = HTTP2Connection(fd: fd, listener: listener)
        listener.replace(self, with: connection)
        connection.start(initialBytes: initialBytes)
    }

    /// A response arrived (on the loop thread).
    func complete(sequence: Int, response: HTTPResponse) {
        execute(state.answerReady(sequence: sequence, response: response, now: monotonicSeconds()))
    }

    private func flush() {
        while state.unsentCount > 0 {
            let result: IOResult<Int>
            do {
                result = try state.withUnsentOutput { try Syscall.write(fd, $0) }
            } catch {
                close()
                return
            }
            guard case .done(let written) = result else {
                execute(state.writeWouldBlock())
                return
            }
            state.wrote(written, now: monotonicSeconds())
        }
        execute(state.outputDrained())
    }

    func beginDrain() {
        execute(state.beginDrain())
    }

    func checkTimeouts(now: Double) {
        execute(state.tick(now: now))
    }

    func close() {
        execute(state.close())
    }

    private func closeSocket() {
        guard !closedByDriver else { return }
        closedByDriver = true
        if let registration { loop.deregister(registration) }
        registration = nil
        Syscall.close(fd)
        listener.removed(self)
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
