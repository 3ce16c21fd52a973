import CTurboJPEG
import Testing
@testable import ImageCodec

/// Bad input never traps: every outcome is an image or a client error naming the problem.
@Suite struct RobustnessTests {
    static let small = ImagePreprocessing(width: 32, height: 24, maxPixels: 1 << 20)

    @Test(arguments: [
        ([UInt8](), "empty"),
        ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13], "PNG"),
        (Array("GIF89a....".utf8), "GIF"),
        (Array("RIFF\u{0}\u{0}\u{0}\u{0}WEBPVP8 ".utf8), "WebP"),
        ([0, 0, 0, 0x1C] + Array("ftypheic".utf8), "HEIF"),
        (Array("{\"instances\": []}".utf8), "JSON"),
        (Array("hello".utf8), "no start-of-image marker FF D8 (starts with 68 65 6C 6C)"),
        ([0xFF], "no start-of-image"),
    ])
    func notJPEG(_ data: [UInt8], _ needle: String) throws {
        let error = decodeError(try ImageDecoder(), data, Self.small)
        guard case .notJPEG(let message) = error else {
            Issue.record("expected notJPEG, got \(String(describing: error))")
            return
        }
        #expect(message.contains(needle), "\(message)")
        #expect(error!.isClientError)
    }

    @Test func truncatedAnywhere() throws {
        let jpeg = encodeJPEG(Picture.synthetic(width: 64, height: 48))
        let progressive = encodeJPEG(Picture.synthetic(width: 64, height: 48), progressive: true)
        let decoder = try ImageDecoder()
        for data in [jpeg, progressive] {
            for cut in Array(stride(from: 2, to: data.count, by: max(1, data.count / 60))) + [data.count - 2, data.count - 1] {
                let error = decodeError(decoder, Array(data[..<cut]), Self.small)
                guard case .truncated(let message) = error else {
                    Issue.record("cut at \(cut) of \(data.count): \(String(describing: error))")
                    continue
                }
                #expect(message.contains("truncated") && message.contains("\(cut) bytes"))
            }
            #expect(decodeError(decoder, data, Self.small) == nil)
        }
    }

    /// Offset of the SOF0 marker's height field.
    func frameHeader(_ jpeg: [UInt8]) -> Int {
        var i = 2
        while jpeg[i + 1] != 0xC0 && jpeg[i + 1] != 0xC2 { i += 2 + (Int(jpeg[i + 2]) << 8 | Int(jpeg[i + 3])) }
        return i + 5
    }

    @Test func tooManyPixelsBeforeDecoding() throws {
        var jpeg = encodeJPEG(Picture.synthetic(width: 64, height: 48))
        let decoder = try ImageDecoder()
        // Claim 60000 x 50000 in the frame header: rejected from the header alone.
        let sof = frameHeader(jpeg)
        jpeg[sof] = 0xC3; jpeg[sof + 1] = 0x50      // height 50000
        jpeg[sof + 2] = 0xEA; jpeg[sof + 3] = 0x60  // width 60000
        let error = decodeError(decoder, jpeg, ImagePreprocessing(width: 224, height: 224))
        guard case .tooLarge(let message) = error else {
            Issue.record("\(String(describing: error))")
            return
        }
        #expect(message.contains("60000x50000") && message.contains("50000000"))

        let real = encodeJPEG(Picture.synthetic(width: 64, height: 48))
        #expect(decodeError(decoder, real, ImagePreprocessing(width: 8, height: 8, maxPixels: 3072)) == nil)
        #expect(decodeError(decoder, real, ImagePreprocessing(width: 8, height: 8, maxPixels: 3071))?.isClientError == true)
    }

    @Test func strayBytesBeforeAMarkerAreTolerated() throws {
        // libjpeg warns "extraneous bytes before marker 0xd9" and decodes normally.
        let jpeg = encodeJPEG(Picture.synthetic(width: 64, height: 48))
        let padded = Array(jpeg[..<(jpeg.count - 2)]) + [0x12, 0x34, 0x56] + [0xFF, 0xD9]
        let decoder = try ImageDecoder()
        #expect(try decoder.decodeBytes(padded, Self.small) == decoder.decodeBytes(jpeg, Self.small))
        // Data after the end-of-image marker is ignored.
        #expect(try decoder.decodeBytes(jpeg + [1, 2, 3, 0xFF], Self.small) == decoder.decodeBytes(jpeg, Self.small))
    }

    @Test func corruptData() throws {
        let decoder = try ImageDecoder()
        // No image, only tables.
        #expect(decodeError(decoder, [0xFF, 0xD8, 0xFF, 0xD9], Self.small)
                == .corrupt("the JPEG data is corrupt: the data holds tables only, no image"))
        // A frame with zero components.
        var jpeg = encodeJPEG(Picture.synthetic(width: 64, height: 48))
        jpeg[frameHeader(jpeg) + 4] = 0
        guard case .corrupt(let message) = decodeError(decoder, jpeg, Self.small) else {
            Issue.record("expected corrupt")
            return
        }
        #expect(message.hasPrefix("the JPEG data is corrupt: "))
        // Damaged entropy-coded data: libjpeg repairs it with a warning; we reject it.
        let clean = encodeJPEG(Picture.synthetic(width: 64, height: 48))
        var rejected = 0
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<40 {
            var damaged = clean
            let at = Int.random(in: (clean.count / 2)..<(clean.count - 4), using: &rng)
            damaged[at] = 0xFF
            damaged[at + 1] = UInt8.random(in: 0xC0...0xCF, using: &rng)
            if case .corrupt = decodeError(decoder, damaged, Self.small) { rejected += 1 }
        }
        #expect(rejected > 20)
    }

    @Test func wrongOutputSizeIsAServerError() throws {
        let jpeg = encodeJPEG(Picture.synthetic(width: 16, height: 16))
        let decoder = try ImageDecoder()
        var out = [Float](repeating: 0, count: 10)
        let error: ImageError? = jpeg.withUnsafeBytes { bytes -> ImageError? in
            out.withUnsafeMutableBufferPointer { buffer -> ImageError? in
                do throws(ImageError) {
                    try decoder.decode(bytes, Self.small, into: buffer)
                    return nil
                } catch {
                    return error
                }
            }
        }
        guard case .invalidConfiguration(let message) = error else {
            Issue.record("\(String(describing: error))")
            return
        }
        #expect(message.contains("10 values") && message.contains("2304"))
        #expect(error?.isClientError == false)
    }

    @Test func structureWalk() {
        func truncated(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { JPEGStructure.isTruncated($0) } }
        let jpeg = encodeJPEG(Picture.synthetic(width: 16, height: 16))
        #expect(!truncated(jpeg))
        #expect(truncated(Array(jpeg.dropLast(2))))
        #expect(truncated([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A]))   // inside APP0
        #expect(!truncated([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]))        // bad length: corrupt
        // A stray FF C4 in the scan with a "length" past the end, but the EOI is there.
        var damaged = jpeg
        damaged[jpeg.count - 12] = 0xFF
        damaged[jpeg.count - 11] = 0xC4
        #expect(!truncated(damaged))
    }

    /// Random mutations of small baseline, progressive, gray and 4:4:4 JPEGs (bounded).
    @Test func fuzz() throws {
        let picture = Picture.synthetic(width: 48, height: 40)
        let seeds = [
            encodeJPEG(picture),
            encodeJPEG(picture, progressive: true),
            encodeJPEG(Picture.synthetic(width: 48, height: 40, channels: 1)),
            encodeJPEG(picture, subsampling: TJSAMP_444, quality: 50),
            encodeJPEG(Picture.synthetic(width: 24, height: 16, channels: 4), format: TJPF_CMYK),
        ]
        let configs = [
            Self.small,
            ImagePreprocessing(width: 7, height: 5, channels: 1, layout: .nchw, resize: .shorterSide(6), maxPixels: 1 << 20),
            ImagePreprocessing(width: 16, height: 16, channelOrder: .bgr, resize: .letterbox(fill: 3), maxPixels: 1 << 20),
        ]
        let decoder = try ImageDecoder()
        var rng = SeededGenerator(seed: 2024)
        var outcomes = [String: Int]()
        for iteration in 0..<2000 {
            var data = seeds[iteration % seeds.count]
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let at = Int.random(in: 0..<data.count, using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: data[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                case 1: data[at] = UInt8.random(in: 0...255, using: &rng)
                case 2: data[at] = [0x00, 0xFF, 0xD9, 0xDA, 0xC4, 0xDB][Int.random(in: 0..<6, using: &rng)]
                case 3: data.removeSubrange(at..<min(data.count, at + Int.random(in: 1...64, using: &rng)))
                default: data.insert(contentsOf: data[at..<min(data.count, at + 16)], at: at)
                }
                if data.isEmpty { data = [0xFF] }
            }
            let p = configs[iteration % configs.count]
            do {
                let out = try decoder.decodeFloats(data, p)
                #expect(out.allSatisfy { $0.isFinite })
                outcomes["decoded", default: 0] += 1
            } catch {
                #expect(error.isClientError, "\(error)")
                #expect(!error.message.isEmpty)
                outcomes["\(error)".prefix(while: { $0 != ":" }).description, default: 0] += 1
            }
        }
        // Both kinds of outcome must occur (the mutations are neither all fatal nor all harmless).
        #expect(outcomes["decoded", default: 0] > 50, "\(outcomes)")
        #expect(outcomes.count > 2, "\(outcomes)")
    }
}
