import FoundationEssentials
import Glibc

/// The reason a file operation failed, as `localizedDescription` would say it ("No such file
/// or directory"): the POSIX error under FoundationEssentials' CocoaError. The executables use
/// FoundationEssentials, not Foundation: Foundation links ICU, whose 34 MB of data would land
/// in every statically linked binary (and twice in the container image).
public func describeFileError(_ error: any Error) -> String {
    if let cocoa = error as? CocoaError, let posix = cocoa.underlying as? POSIXError {
        return String(cString: strerror(posix.code.rawValue))
    }
    return "\(error)"
}
