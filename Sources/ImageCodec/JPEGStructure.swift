/// Walks a JPEG's marker structure (segments by their lengths, entropy-coded data up to
/// the next real marker) to tell a truncated stream from a corrupt one. Linear in the
/// data, no allocation; run only after libjpeg reported a problem.
enum JPEGStructure: Equatable {
    /// Whether the data ends before its end-of-image marker. Damaged entropy-coded data can
    /// hold a stray FF xx that the walk takes for a marker and whose "length" runs past the
    /// end, so a stream counts as truncated only if no EOI (FF D9, which cannot occur inside
    /// entropy-coded data) follows its first scan header either.
    static func isTruncated(_ data: UnsafeRawBufferPointer) -> Bool {
        var firstScan: Int?
        guard walk(data, firstScan: &firstScan) == .truncated else { return false }
        guard let start = firstScan else { return true }
        var i = start
        while i + 1 < data.count {
            if data[i] == 0xFF && data[i + 1] == 0xD9 { return false }
            i += 1
        }
        return true
    }

    /// An end-of-image marker was reached at this offset (anything after it is ignored).
    case complete(endOfImage: Int)
    /// The data ends inside a segment or the entropy-coded data, before EOI.
    case truncated
    /// A segment length is invalid (under 2).
    case malformed(offset: Int)

    /// The walk; `firstScan` gets the offset after the first SOS header, if reached.
    static func walk(_ data: UnsafeRawBufferPointer, firstScan: inout Int?) -> JPEGStructure {
        let n = data.count
        guard n >= 2, data[0] == 0xFF, data[1] == 0xD8 else { return .malformed(offset: 0) }
        var i = 2
        while true {
            // Next marker: skip stray bytes (libjpeg warns about them) and fill bytes.
            while i < n && data[i] != 0xFF { i += 1 }
            while i < n && data[i] == 0xFF { i += 1 }
            guard i < n else { return .truncated }
            let marker = data[i]
            let markerOffset = i - 1
            i += 1
            switch marker {
            case 0xD9:
                return .complete(endOfImage: markerOffset)
            case 0x00, 0x01, 0xD0...0xD8:
                continue  // stuffed zero out of place, TEM, RSTn, SOI: no length
            default:
                guard i + 2 <= n else { return .truncated }
                let length = Int(data[i]) << 8 | Int(data[i + 1])
                guard length >= 2 else { return .malformed(offset: markerOffset) }
                i += length
                guard i <= n else { return .truncated }
                if marker == 0xDA {
                    if firstScan == nil { firstScan = i }
                    // Entropy-coded data: FF 00 is a stuffed byte, FF D0...D7 a restart
                    // marker, FF FF fill; any other FF xx is the next marker.
                    while true {
                        while i < n && data[i] != 0xFF { i += 1 }
                        guard i + 1 < n else { return .truncated }
                        let next = data[i + 1]
                        if next == 0x00 || (0xD0...0xD7).contains(next) {
                            i += 2
                        } else if next == 0xFF {
                            i += 1
                        } else {
                            break  // the outer loop reads this marker
                        }
                    }
                }
            }
        }
    }
}
