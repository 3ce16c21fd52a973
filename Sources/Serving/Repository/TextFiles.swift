import FoundationEssentials
import Glibc

/// The UTF-8 text of the file at `path`; throws Foundation's error when it cannot be read.
/// An empty regular file is answered here: Foundation's read of a file whose size is 0
/// (swift-foundation Data+Reading, Linux path for /proc-like files) leaks its 4 KiB buffer
/// on every call, which fuzzing found through an empty config.pbtxt.
func readTextFile(_ path: String) throws -> String {
    var info = stat()
    if stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && info.st_size == 0 { return "" }
    return try String(contentsOfFile: path, encoding: .utf8)
}
