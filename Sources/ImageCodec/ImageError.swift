/// Why an image was not decoded. `message` is a complete sentence naming the problem,
/// suitable for a 400 response body; `isClientError` is false only for server-side faults.
public enum ImageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Empty, or no JPEG start-of-image marker (the message names a recognised other format).
    case notJPEG(String)
    /// The data ends before the JPEG end-of-image marker.
    case truncated(String)
    /// libjpeg rejected the data, or repaired damaged image data (its message is included).
    case corrupt(String)
    /// Source width * height above `ImagePreprocessing.maxPixels` (known from the header).
    case tooLarge(String)
    /// The preprocessing configuration is invalid, or the output buffer has the wrong size
    /// (server-side; see `ImagePreprocessing.validate()`).
    case invalidConfiguration(String)
    /// TurboJPEG could not allocate a decoder (server-side).
    case decoderUnavailable(String)

    public var message: String {
        switch self {
        case .notJPEG(let m), .truncated(let m), .corrupt(let m), .tooLarge(let m),
             .invalidConfiguration(let m), .decoderUnavailable(let m):
            return m
        }
    }

    public var isClientError: Bool {
        switch self {
        case .notJPEG, .truncated, .corrupt, .tooLarge: return true
        case .invalidConfiguration, .decoderUnavailable: return false
        }
    }

    public var description: String { message }
}

/// Names common non-JPEG formats from their leading bytes (for the `.notJPEG` message).
func sniffFormat(_ data: UnsafeRawBufferPointer) -> String? {
    func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
        guard data.count >= offset + prefix.count else { return false }
        for (i, byte) in prefix.enumerated() where data[offset + i] != byte { return false }
        return true
    }
    if starts([0x89, 0x50, 0x4E, 0x47]) { return "PNG" }
    if starts(Array("GIF8".utf8)) { return "GIF" }
    if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return "WebP" }
    if starts(Array("BM".utf8)) { return "BMP" }
    if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
    if starts(Array("ftyp".utf8), at: 4) {
        if starts(Array("avif".utf8), at: 8) { return "AVIF" }
        if starts(Array("heic".utf8), at: 8) || starts(Array("heix".utf8), at: 8) || starts(Array("mif1".utf8), at: 8) {
            return "HEIF"
        }
    }
    if starts([0xFF, 0x0A]) || starts([0x00, 0x00, 0x00, 0x0C, 0x4A, 0x58, 0x4C, 0x20]) { return "JPEG XL" }
    if starts(Array("{".utf8)) || starts(Array("[".utf8)) { return "JSON" }
    return nil
}

func notJPEGError(_ data: UnsafeRawBufferPointer) -> ImageError {
    if data.isEmpty { return .notJPEG("the image data is empty") }
    let head = data.prefix(4).map { byte in
        let hex = String(byte, radix: 16, uppercase: true)
        return hex.count == 1 ? "0" + hex : hex
    }.joined(separator: " ")
    if let format = sniffFormat(data) {
        return .notJPEG("the image is not a JPEG: the data looks like \(format) (starts with \(head))")
    }
    return .notJPEG("the image is not a JPEG: no start-of-image marker FF D8 (starts with \(head))")
}
