/// Base64 (RFC 4648 section 4, and the URL-safe alphabet of section 5 on decoding).
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// `bytes` in the standard alphabet, padded with '='.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        let bytes = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out += [alphabet[Int(group >> 18)], alphabet[Int(group >> 12 & 63)], alphabet[Int(group >> 6 & 63)], alphabet[Int(group & 63)]]
            index += 3
        }
        let left = bytes.count - index
        if left > 0 {
            let group = UInt32(bytes[index]) << 16 | (left == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            out += [alphabet[Int(group >> 18)], alphabet[Int(group >> 12 & 63)]]
            out += left == 2 ? [alphabet[Int(group >> 6 & 63)], UInt8(ascii: "=")] : [UInt8(ascii: "="), UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes `text` encodes, in the standard or the URL-safe alphabet ('-' and '_' for '+'
    /// and '/'), with or without '=' padding (as TF Serving accepts): nil when a character is
    /// outside the alphabet, '=' appears before the end or more than two are needed, or the
    /// length cannot be a whole encoding (4k + 1 characters). Bits below the last whole
    /// byte are ignored.
    public static func decode(_ text: String) -> [UInt8]? {
        let characters = Array(text.utf8)
        var end = characters.count
        while end > 0 && characters[end - 1] == UInt8(ascii: "=") { end -= 1 }
        let padding = characters.count - end
        let missing = (4 - characters.count % 4) % 4
        guard padding + missing <= 2, end % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(end / 4 * 3 + 2)
        var group: UInt32 = 0, bits = 0
        for index in 0..<end {
            guard let value = sextet(characters[index]) else { return nil }
            group = group << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: group >> UInt32(bits)))
            }
        }
        return out
    }

    @inline(__always)
    private static func sextet(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"), UInt8(ascii: "-"): 62
        case UInt8(ascii: "/"), UInt8(ascii: "_"): 63
        default: nil
        }
    }
}
