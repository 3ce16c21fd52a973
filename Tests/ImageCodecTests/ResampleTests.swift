import CTurboJPEG
import Testing
@testable import ImageCodec

/// The resampler (no JPEG) against a plain transcription of Pillow's 8-bit BILINEAR code
/// (must be bit-identical, with the AVX2 loops where the CPU has them and with the portable
/// ones) and against the continuous filter in Double (within 1).
@Suite struct ResampleTests {
    struct Case: CustomStringConvertible, Sendable {
        var source: (Int, Int)
        var channels: Int
        var width: Int
        var height: Int
        var resize: ResizeMode
        var description: String { "\(source.0)x\(source.1)x\(channels) -> \(width)x\(height) \(resize)" }
    }

    static let cases: [Case] = [
        Case(source: (97, 61), channels: 3, width: 29, height: 17, resize: .stretch),     // shrink 3.3x, 3.6x
        Case(source: (64, 48), channels: 3, width: 96, height: 80, resize: .stretch),     // enlarge
        Case(source: (64, 48), channels: 1, width: 21, height: 48, resize: .stretch),     // horizontal only
        Case(source: (64, 48), channels: 3, width: 64, height: 13, resize: .stretch),     // vertical only
        Case(source: (40, 40), channels: 3, width: 40, height: 40, resize: .stretch),     // identity
        Case(source: (80, 50), channels: 3, width: 30, height: 30, resize: .shorterSide(34)),
        Case(source: (50, 80), channels: 1, width: 30, height: 30, resize: .shorterSide(34)),
        Case(source: (80, 50), channels: 3, width: 40, height: 40, resize: .shorterSide(30)),  // pads
        Case(source: (90, 70), channels: 3, width: 32, height: 24, resize: .centerCropFraction(0.875)),
        Case(source: (91, 37), channels: 3, width: 48, height: 48, resize: .letterbox(fill: 114)),
        Case(source: (37, 91), channels: 1, width: 48, height: 40, resize: .letterbox(fill: 7)),
        Case(source: (1, 1), channels: 3, width: 5, height: 3, resize: .stretch),
        Case(source: (600, 3), channels: 3, width: 2, height: 3, resize: .stretch),        // 300x: Int32 fallback
        Case(source: (3, 600), channels: 1, width: 3, height: 2, resize: .stretch),
    ]

    @Test(arguments: cases, [false, true])
    func bitIdenticalToPillow(_ c: Case, portableLoops: Bool) throws {
        let decoder = try ImageDecoder(portableLoops: portableLoops)
        let picture = Picture.random(width: c.source.0, height: c.source.1, channels: c.channels, seed: UInt64(c.width * 31 + c.height))
        let p = ImagePreprocessing(width: c.width, height: c.height, channels: c.channels, resize: c.resize)
        let ours = try decoder.preprocessBytes(picture, p)
        let reference = PillowReference.preprocess(picture, p)
        #expect(ours == reference.data)
    }

    @Test(arguments: [(97, 61, 29, 17), (64, 48, 96, 80), (300, 200, 37, 41), (33, 33, 32, 34)])
    func withinOneOfTheContinuousFilter(_ sizes: (Int, Int, Int, Int)) throws {
        let (sw, sh, w, h) = sizes
        let decoder = try ImageDecoder()
        let picture = Picture.synthetic(width: sw, height: sh)
        let ours = try decoder.preprocessBytes(picture, ImagePreprocessing(width: w, height: h))
        let exact = doubleResize(picture, width: w, height: h)
        let worst = zip(ours, exact).map { abs(Double($0.0) - $0.1) }.max()!
        // Pillow rounds after each pass: at most 0.5 + 0.5.
        #expect(worst <= 1.0)
    }

    @Test func shrinkingAntialiases() throws {
        // A 1-pixel checkerboard shrunk 4x is flat grey; point sampling would keep 0s and 255s.
        let size = 64
        var data = [UInt8](repeating: 0, count: size * size)
        for y in 0..<size { for x in 0..<size where (x + y) % 2 == 0 { data[y * size + x] = 255 } }
        let picture = Picture(width: size, height: size, channels: 1, data: data)
        let decoder = try ImageDecoder()
        let out = try decoder.preprocessBytes(picture, ImagePreprocessing(width: 16, height: 16, channels: 1))
        #expect(out.allSatisfy { (120...135).contains($0) }, "\(out.min()!)...\(out.max()!)")
    }

    @Test func layoutsAndChannelOrdersAgree() throws {
        let decoder = try ImageDecoder()
        let picture = Picture.synthetic(width: 50, height: 40)
        let jpeg = encodeJPEG(picture, subsampling: TJSAMP_444, quality: 95)
        let base = ImagePreprocessing(width: 23, height: 17, resize: .letterbox(fill: 9))
        let nhwc = try decoder.decodeBytes(jpeg, base)
        var p = base
        p.layout = .nchw
        let nchw = try decoder.decodeBytes(jpeg, p)
        p = base
        p.channelOrder = .bgr
        let bgr = try decoder.decodeBytes(jpeg, p)
        let plane = 23 * 17
        for i in 0..<plane {
            for c in 0..<3 {
                #expect(nchw[c * plane + i] == nhwc[i * 3 + c])
                #expect(bgr[i * 3 + c] == nhwc[i * 3 + 2 - c])
            }
        }
    }

    @Test func floatOutputIsTheNormalisedByteOutput() throws {
        let decoder = try ImageDecoder()
        let jpeg = encodeJPEG(Picture.synthetic(width: 120, height: 90))
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        for layout in [Layout.nhwc, .nchw] {
            var p = ImagePreprocessing(width: 64, height: 48, layout: layout, resize: .shorterSide(56), scale: 1 / 255, mean: mean, std: std)
            let floats = try decoder.decodeFloats(jpeg, p)
            p.scale = 1
            let bytes = try decoder.decodeBytes(jpeg, p)
            var mismatches = 0
            for i in bytes.indices {
                let c = layout == .nhwc ? i % 3 : i / (64 * 48)
                let scaled: Float = Float(bytes[i]) * (1 / 255)
                let expected: Float = (scaled - mean[c]) / std[c]
                if floats[i] != expected { mismatches += 1 }
            }
            #expect(mismatches == 0)
        }
    }

    @Test func letterboxPadsWithTheFillValue() throws {
        let decoder = try ImageDecoder()
        let picture = Picture.synthetic(width: 100, height: 50)
        let p = ImagePreprocessing(width: 40, height: 40, resize: .letterbox(fill: 114), scale: 2, mean: [1], std: [4])
        let bytes = try decoder.preprocessBytes(picture, p)
        // 100x50 -> 40x20, rows 10..<30.
        for y in 0..<40 {
            let row = bytes[(y * 40 * 3)..<((y + 1) * 40 * 3)]
            if y < 10 || y >= 30 { #expect(row.allSatisfy { $0 == 114 }) }
        }
        let jpeg = encodeJPEG(picture)
        let floats = try decoder.decodeFloats(jpeg, p)
        let padding: Float = (114 * 2 - 1) / 4
        #expect(floats[0] == padding)
        #expect(floats[39 * 40 * 3 + 5] == padding)
    }
}
