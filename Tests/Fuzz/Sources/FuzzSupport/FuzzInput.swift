import Glibc

/// Reads a fuzz input front to back: a few leading bytes steer the harness (which route,
/// where to cut), the rest is the data under test. Reading past the end gives zeros / empty,
/// so every input, however short, is a valid harness input.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = Array(UnsafeBufferPointer(start: data, count: size))
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// Little-endian 16-bit value.
    public mutating func u16() -> Int { Int(byte()) | Int(byte()) << 8 }

    /// Little-endian 32-bit value.
    public mutating func u32() -> Int { u16() | u16() << 16 }

    /// One of `choices`, picked by the next byte.
    public mutating func pick<T>(_ choices: [T]) -> T { choices[Int(byte()) % choices.count] }

    /// The next `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = max(0, min(count, remaining))
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Stops the fuzzer with a message: a broken harness invariant is a finding like a crash.
public func fuzzFailure(_ message: String) -> Never {
    let text = Array("FUZZ INVARIANT VIOLATED: \(message)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    abort()
}

/// A fresh private directory under $TMPDIR (or /tmp), removed at exit.
public func makeTemporaryDirectory(_ label: String) -> String {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array("\(base)/model-server-fuzz-\(label)-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        fuzzFailure("mkdtemp in \(base) failed: errno \(errno)")
    }
    let path = String(cString: template)
    temporaryDirectories.append(path)
    if temporaryDirectories.count == 1 { atexit { removeTemporaryDirectories() } }
    return path
}

nonisolated(unsafe) private var temporaryDirectories: [String] = []

private func removeTemporaryDirectories() {
    for path in temporaryDirectories { removeTree(path) }
}

/// `rm -rf path` without spawning a process.
public func removeTree(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name == "." || name == ".." { continue }
            removeTree(path + "/" + name)
        }
        closedir(dir)
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// Writes `bytes` to `path` (created or truncated), creating no directories.
public func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { fuzzFailure("cannot create \(path): errno \(errno)") }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        guard n > 0 else { fuzzFailure("cannot write \(path): errno \(errno)") }
        done += n
    }
    close(fd)
}
