import FuzzSupport
import Glibc
@testable import Transport

// HTTP/2 + gRPC framing: client bytes (after the connection preface, which the harness
// adds) into the server's real HTTP2Connection (libnghttp2 session with our callbacks:
// headers, DATA buffering and limits, gRPC message prefix/compression checks, dispatch,
// responses with trailers, stream close). The connection sits on one end of a socketpair;
// part of the input arrives with the preface, the rest through the socket (readAvailable).
// The handlers echo, so responses (HEADERS, DATA, trailers) are produced for every request.
//
// Input: [cut: 1 byte] [frames...]

struct EchoHTTP: HTTPHandler {
    func handle(_ request: HTTPRequest, responder: HTTPResponder) {
        responder.send(HTTPResponse(status: 200, headers: HTTPHeaders([("content-type", "application/octet-stream")]), body: request.body))
    }
    func errorResponse(status: Int, message: String) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(message.utf8))
    }
}

struct EchoGRPC: GRPCHandler {
    func handle(_ request: GRPCRequest, responder: GRPCResponder) {
        if request.path.hasSuffix("/Fail") {
            responder.send(GRPCResponse(status: 3, message: "invalid argument: \(request.message.count) bytes"))
        } else {
            responder.send(GRPCResponse(status: 0, payload: request.message))
        }
    }
    func isUnary(path: String) -> Bool { !path.hasSuffix("Stream") }
}

/// One event loop, server and listener for the process. The loop never blocks in epoll:
/// after the first `stop` + `run`, `run` only executes the queued work (responder calls).
final class Harness {
    let loop: EventLoop
    let server: HTTPServer
    let listener: Listener

    init() {
        do {
            loop = try EventLoop(index: 0)
            var configuration = HTTPServerConfiguration()
            configuration.host = "127.0.0.1"
            configuration.port = 0
            // Small limits so that inputs of a few KB reach them.
            configuration.limits = HTTPParserLimits(maxHeaderBytes: 2048, maxBodyBytes: 4096, maxHeaderCount: 32)
            configuration.maxGRPCMessageBytes = 4096
            configuration.maxConcurrentStreams = 8
            server = try HTTPServer(configuration: configuration, loops: [loop], handler: EchoHTTP(), grpcHandler: EchoGRPC())
        } catch {
            fuzzFailure("harness setup: \(error)")
        }
        listener = Listener(fd: -1, loop: loop, server: server)
        loop.stop()
        loop.run()
    }
}

nonisolated(unsafe) let harness = Harness()

// <sys/epoll.h> event bits (Glibc's module map leaves that header out).
let epollIn: UInt32 = 0x001, epollOut: UInt32 = 0x004, epollRDHUP: UInt32 = 0x2000
nonisolated(unsafe) var scratch = [UInt8](repeating: 0, count: 1 << 16)

/// Reads and discards what the server wrote to the peer end.
func drainPeer(_ fd: Int32) {
    while scratch.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let cutByte = Int(input.byte())
    let frames = input.rest()
    let cut = frames.count * cutByte / 255

    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        fuzzFailure("socketpair: errno \(errno)")
    }
    let connection = HTTP2Connection(fd: fds[0], listener: harness.listener)
    connection.start(initialBytes: HTTP2Connection.preface + frames[0..<cut])
    harness.loop.run()
    drainPeer(fds[1])
    if cut < frames.count {
        let rest = Array(frames[cut...])
        var written = 0
        while written < rest.count {
            let n = rest.withUnsafeBytes { write(fds[1], $0.baseAddress! + written, $0.count - written) }
            if n <= 0 { break }
            written += n
        }
        connection.handleEvents(epollIn)
        harness.loop.run()
        drainPeer(fds[1])
    }
    // The client closes: the server finishes what it can and ends the connection.
    shutdown(fds[1], Int32(SHUT_WR))
    connection.handleEvents(epollIn | epollOut | epollRDHUP)
    harness.loop.run()
    drainPeer(fds[1])
    connection.close()
    harness.loop.run()
    close(fds[1])
    return 0
}
