import CLinuxShims
import Glibc

/// A failed system call: the function's name and errno.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let function: String
    public let errno: Int32
    public var description: String { "\(function): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// What a non-blocking call returned.
enum IOResult<T> {
    case done(T)
    case wouldBlock
}

/// Runs a system call: retries on EINTR, reports EAGAIN as `.wouldBlock`, throws otherwise.
@inline(__always)
func syscall<T: FixedWidthInteger>(_ function: String, _ body: () -> T) throws(SystemError) -> IOResult<T> {
    while true {
        let result = body()
        if result >= 0 { return .done(result) }
        let code = Glibc.errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
        throw SystemError(function: function, errno: code)
    }
}

/// Runs a system call that must not block; throws on failure.
@inline(__always)
@discardableResult
func syscallChecked<T: FixedWidthInteger>(_ function: String, _ body: () -> T) throws(SystemError) -> T {
    switch try syscall(function, body) {
    case .done(let value): return value
    case .wouldBlock: throw SystemError(function: function, errno: EAGAIN)
    }
}

/// The socket calls of the listener, the connections and the event loop, each with the
/// errno handling of `syscall`: EINTR retried, EAGAIN as `.wouldBlock`, other errors thrown.
enum Syscall {
    /// Reads into `buffer`; `.done(0)` is the peer's end of input.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try syscall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Writes some of `bytes`; `.done(n)`: the first n were written.
    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return .done(0) }
        return try syscall("write") { Glibc.write(fd, base, bytes.count) }
    }

    /// Accepts a connection (non-blocking, close-on-exec unless `flags` say otherwise).
    static func accept(_ fd: Int32, flags: Int32 = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)) throws(SystemError) -> IOResult<Int32> {
        try syscall("accept4") { cls_accept4(fd, nil, nil, flags) }
    }

    /// Closes a descriptor. Linux releases it even when close reports EINTR, so it is never retried.
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }
}
