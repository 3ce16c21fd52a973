/// Percent-encoding (RFC 3986 section 2.1) as URLs and gRPC's `grpc-message` use it.
public enum PercentEncoding {
    public enum DecodingError: Error, Equatable, Sendable {
        /// A '%' not followed by two hex digits.
        case malformed
        /// The decoded bytes are not UTF-8.
        case notUTF8
    }

    private static let hex = Array("0123456789ABCDEF".utf8)

    /// A URL path segment: every byte but RFC 3986's unreserved characters (ASCII letters,
    /// digits, "-._~") as %XX.
    public static func encodePathSegment(_ text: String) -> String {
        encode(text) { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"): true
            default: false
            }
        }
    }

    /// A decoded URL path segment; strict: a stray '%' or non-UTF-8 result is an error.
    public static func decodePathSegment(_ text: String) throws(DecodingError) -> String {
        guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "%") else {
                out.append(bytes[index])
                index += 1
                continue
            }
            guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else {
                throw .malformed
            }
            out.append(high << 4 | low)
            index += 3
        }
        guard let decoded = String(validating: out, as: UTF8.self) else { throw .notUTF8 }
        return decoded
    }

    /// `grpc-message` encoding (gRPC PROTOCOL-HTTP2.md): printable ASCII except '%' as is,
    /// every other byte %XX.
    public static func encodeGRPCMessage(_ message: String) -> String {
        encode(message) { $0 >= 0x20 && $0 <= 0x7E && $0 != UInt8(ascii: "%") }
    }

    /// `grpc-message` decoding, lenient as gRPC asks of receivers: %XX is the byte XX, a '%'
    /// without two hex digits stays as it is; invalid UTF-8 is replaced.
    public static func decodeGRPCMessage(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count, let high = hexValue(bytes[index + 1]),
               let low = hexValue(bytes[index + 2]) {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func encode(_ text: String, keeping keep: (UInt8) -> Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if keep(byte) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
