import CZlib

/// The compressions a client may apply to what it sends: HTTP content codings (RFC 9110
/// 8.4.1: `Content-Encoding: gzip | deflate`, as tritonclient's request_compression_algorithm
/// sends them) and gRPC message compression (`grpc-encoding`, the same two names).
public enum ContentCoding {
    /// Compressed inputs up to this size are inflated where they arrive (an event loop): deflate
    /// expands at most ~1,032:1, so this bounds the work to a few MiB of output.
    public static let inlineInflateBytes = 4096

    public enum Failure: Error, Equatable {
        /// A coding other than gzip, deflate or identity.
        case unsupported(String)
        /// Not a valid stream of the named coding (the text says why).
        case corrupt(String)
        /// Decoded, the data would exceed the limit (bytes).
        case tooLarge(limit: Int)

        public var message: String {
            switch self {
            case .unsupported(let coding): return "content coding '\(coding)' is not supported; send gzip, deflate or identity"
            case .corrupt(let text): return text
            case .tooLarge(let limit): return "decompressed request body exceeds \(limit) bytes"
            }
        }
    }

    /// Whether `coding` (a header value; the parsers strip surrounding whitespace) means no
    /// compression.
    public static func isIdentity(_ coding: String) -> Bool {
        coding.isEmpty || asciiCaseInsensitiveEquals(coding, "identity")
    }

    /// `data` decoded per `coding` ("gzip" / "x-gzip", "deflate": the zlib format, or raw
    /// deflate as some clients send it, "identity"), at most `limit` bytes of output.
    public static func decode(_ data: [UInt8], coding: String, limit: Int) throws(Failure) -> [UInt8] {
        switch coding.lowercased() {
        case "", "identity":
            guard data.count <= limit else { throw .tooLarge(limit: limit) }
            return data
        case "gzip", "x-gzip":
            return try inflate(data, windowBits: 15 + 16, name: "gzip", limit: limit)
        case "deflate":
            do {
                return try inflate(data, windowBits: 15, name: "deflate", limit: limit)
            } catch {
                // Not the zlib format: perhaps raw deflate, as some clients send it.
                guard case .corrupt = error else { throw error }
                do { return try inflate(data, windowBits: -15, name: "deflate", limit: limit) } catch {
                    if case .tooLarge = error { throw error }
                }
                throw error
            }
        default:
            throw .unsupported(coding)
        }
    }

    /// zlib's inflate over all of `data` (`windowBits` as zlib takes it: 15 + 16 gzip, 15
    /// zlib, -15 raw). Concatenated gzip members decode one after the other.
    private static func inflate(_ data: [UInt8], windowBits: Int32, name: String, limit: Int) throws(Failure) -> [UInt8] {
        guard !data.isEmpty else { throw .corrupt("the \(name) body is empty") }
        guard data.count <= Int(UInt32.max) else { throw .tooLarge(limit: limit) }
        var stream = z_stream()
        guard czlib_inflate_init(&stream, windowBits) == Z_OK else { throw .corrupt("cannot start \(name) decoding") }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        output.reserveCapacity(min(limit, max(4096, data.count * 4)))
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var failure: Failure?
        data.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = UInt32(input.count)
            while failure == nil {
                let status = chunk.withUnsafeMutableBufferPointer { buffer -> Int32 in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = UInt32(buffer.count)
                    return CZlib.inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                guard output.count + produced <= limit else { failure = .tooLarge(limit: limit); break }
                output.append(contentsOf: chunk[..<produced])
                switch status {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    if stream.avail_in == 0 { return }
                    guard windowBits > 15, inflateReset(&stream) == Z_OK else {
                        failure = .corrupt("\(stream.avail_in) bytes follow the end of the \(name) data")
                        return
                    }
                case Z_BUF_ERROR where stream.avail_in == 0:
                    failure = .corrupt("the \(name) data ends early (truncated)")
                default:
                    let reason = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                    failure = .corrupt("invalid \(name) data: \(reason)")
                }
            }
        }
        if let failure { throw failure }
        return output
    }
}
