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

/// The bytes of the file at `path` (memory-mapped when `mapped`). An empty regular file gives
/// empty Data without going through Foundation, whose reader leaks a 4 KiB buffer for files
/// of size 0 (swift-foundation's readBytesFromFile; found by fuzz-savedmodel under LSan).
func readFile(_ path: String, mapped: Bool = false) throws -> Data {
    var status = stat()
    if stat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size == 0 { return Data() }
    return try Data(contentsOf: URL(fileURLWithPath: path), options: mapped ? .alwaysMapped : [])
}
