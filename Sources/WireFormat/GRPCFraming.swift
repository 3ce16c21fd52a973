/// gRPC status codes (grpc/doc/statuscodes.md).
public enum GRPCStatusCode: Int, Sendable, CaseIterable {
    case ok = 0, cancelled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4, notFound = 5, alreadyExists = 6
    case permissionDenied = 7, resourceExhausted = 8, failedPrecondition = 9, aborted = 10, outOfRange = 11
    case unimplemented = 12, internalError = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16

    /// The code's canonical name ("NOT_FOUND").
    public var name: String { Self.names[rawValue] }

    /// The canonical name of `code`, or "status N" for a code outside 0...16.
    public static func name(_ code: Int) -> String { names.indices.contains(code) ? names[code] : "status \(code)" }

    private static let names = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                "UNAUTHENTICATED"]

    /// The status a client assumes for an HTTP answer without `grpc-status`
    /// (grpc/doc/http-grpc-status-mapping.md).
    public init(httpStatus status: Int) {
        switch status {
        case 400: self = .internalError
        case 401: self = .unauthenticated
        case 403: self = .permissionDenied
        case 404: self = .unimplemented
        case 429, 502, 503, 504: self = .unavailable
        default: self = .unknown
        }
    }
}

/// gRPC's length-prefixed messages and header values (grpc/doc/PROTOCOL-HTTP2.md), apart
/// from HTTP/2 itself.
public enum GRPCFraming {
    /// Bytes before each message: a compressed flag and a big-endian UInt32 length.
    public static let prefixLength = 5

    /// The prefix of an uncompressed message of `length` bytes (flag 0, big-endian length).
    public static func prefix(length: Int) -> [UInt8] {
        let length = UInt32(truncatingIfNeeded: length)
        return [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
    }

    /// A message with its prefix.
    public static func frame(_ message: [UInt8]) -> [UInt8] { prefix(length: message.count) + message }

    /// The message length a prefix states; `bytes` holds at least 5 bytes from its start.
    public static func messageLength(_ bytes: some RandomAccessCollection<UInt8>) -> Int {
        let start = bytes.startIndex
        func at(_ offset: Int) -> Int { Int(bytes[bytes.index(start, offsetBy: offset)]) }
        return at(1) << 24 | at(2) << 16 | at(3) << 8 | at(4)
    }

    /// Whether a prefix flags its message compressed.
    public static func isCompressed(_ bytes: some Collection<UInt8>) -> Bool { bytes.first != 0 }

    /// Seconds from a `grpc-timeout` value (1-8 digits and a unit H M S m u n); nil when malformed.
    public static func timeoutSeconds(_ value: String) -> Double? {
        let bytes = Array(value.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        var amount = 0.0
        for byte in bytes.dropLast() {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Double(byte - UInt8(ascii: "0"))
        }
        switch unit {
        case UInt8(ascii: "H"): return amount * 3600
        case UInt8(ascii: "M"): return amount * 60
        case UInt8(ascii: "S"): return amount
        case UInt8(ascii: "m"): return amount / 1e3
        case UInt8(ascii: "u"): return amount / 1e6
        case UInt8(ascii: "n"): return amount / 1e9
        default: return nil
        }
    }

    /// A `grpc-timeout` value for `seconds`: at most 8 digits in the finest unit that fits
    /// (microseconds up to hours), rounded up, at least 1.
    public static func timeoutValue(_ seconds: Double) -> String {
        for (unit, perSecond) in [("u", 1e6), ("m", 1e3), ("S", 1.0), ("M", 1 / 60.0), ("H", 1 / 3600.0)] {
            let amount = (max(seconds, 0) * perSecond).rounded(.up)
            if amount <= 99_999_999 { return "\(max(Int(amount), 1))\(unit)" }
        }
        return "99999999H"
    }
}

/// Lookups in header lists kept as (name, value) pairs in arrival order.
public enum HeaderList {
    /// The first value of header `name`, compared ASCII case-insensitively.
    public static func first(_ name: String, in headers: some Sequence<(String, String)>) -> String? {
        for (key, value) in headers where equalsIgnoringCase(key, name) { return value }
        return nil
    }

    /// Whether two header names are equal ignoring ASCII case (only A-Z and a-z fold).
    @inlinable
    public static func equalsIgnoringCase(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        // withUTF8 makes both strings native/contiguous, so the comparison is a plain byte loop.
        return a.withUTF8 { x in
            b.withUTF8 { y in
                guard x.count == y.count else { return false }
                for i in 0..<x.count where x[i] != y[i] {
                    if x[i] | 0x20 != y[i] | 0x20 { return false }
                    let lower = x[i] | 0x20
                    if lower < UInt8(ascii: "a") || lower > UInt8(ascii: "z") { return false }
                }
                return true
            }
        }
    }
}
