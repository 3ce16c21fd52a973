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
