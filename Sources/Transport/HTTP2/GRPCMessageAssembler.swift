/// A gRPC request body as its DATA frames arrive, apart from HTTP/2: the 5-byte message prefix
/// (compressed flag, big-endian length), then the message bytes. An oversized message is
/// refused as soon as its prefix says so, before its bytes are buffered.
struct GRPCMessageAssembler {
    /// The prefix so far (up to 5 bytes).
    private(set) var prefix: [UInt8] = []
    /// The bytes after the prefix.
    private(set) var message: [UInt8] = []

    /// Adds `bytes` of the body. Nil when taken; otherwise the RESOURCE_EXHAUSTED answer for a
    /// message longer than `maxMessageBytes` (declared in the prefix or sent), and nothing of
    /// `bytes` past the prefix is kept.
    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>, maxMessageBytes: Int) -> GRPCResponse? {
        var bytes = bytes
        if prefix.count < 5 {
            let taken = min(5 - prefix.count, bytes.count)
            prefix.append(contentsOf: bytes.prefix(taken))
            bytes = UnsafeBufferPointer(rebasing: bytes.dropFirst(taken))
            if prefix.count == 5 {
                let length = GRPCWire.messageLength(prefix)
                if length > maxMessageBytes { return GRPCWire.tooLarge(length, limit: maxMessageBytes) }
                message.reserveCapacity(min(length, 4 << 20))
            }
        }
        if message.count + bytes.count > maxMessageBytes {
            return GRPCWire.tooLarge(message.count + bytes.count, limit: maxMessageBytes)
        }
        message.append(contentsOf: bytes)
        return nil
    }

    /// A unary call's one message once the request ended (its `grpc-encoding` given), or the
    /// answer saying what is wrong (no message, truncated, more than one, bad compression flag).
    func unary(encoding: String?, maxMessageBytes: Int) -> GRPCWire.Unframed {
        GRPCWire.unframeUnary(prefix: prefix, message: message, encoding: encoding, maxMessageBytes: maxMessageBytes)
    }
}
