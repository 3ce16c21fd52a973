import CTurboJPEG
import Dispatch
import Synchronization
import Testing
@testable import ImageCodec

@Suite struct DecoderTests {
    @Test func roundTripAtFullSize() throws {
        let picture = Picture.synthetic(width: 80, height: 60, noise: 0)
        let jpeg = encodeJPEG(picture, subsampling: TJSAMP_444, quality: 100)
        let decoder = try ImageDecoder()
        let out = try decoder.decodeBytes(jpeg, ImagePreprocessing(width: 80, height: 60))
        #expect(maxDifference(out, picture.data) <= 4)
        #expect(try decoder.info(jpeg, ImagePreprocessing(width: 80, height: 60))
                == ImageInfo(width: 80, height: 60, scaleDenominator: 1))
    }

    /// The JPEG path (DCT-reduced decode, then resize) equals the resampler run on TurboJPEG's
    /// own reduced decode: the reduction is applied, and the region maps onto it exactly.
    @Test(arguments: [
        (640, 480, 299, 299, ResizeMode.stretch, 1),            // 2.1x, 1.6x
        (640, 480, 150, 110, ResizeMode.stretch, 4),
        (1024, 768, 224, 224, ResizeMode.shorterSide(256), 2),
        (1024, 768, 64, 64, ResizeMode.shorterSide(64), 8),
        (800, 600, 200, 200, ResizeMode.letterbox(fill: 0), 4),
    ])
    func reducedDecodeThenResize(_ w: Int, _ h: Int, _ width: Int, _ height: Int, _ resize: ResizeMode, _ d: Int) throws {
        let jpeg = encodeJPEG(Picture.synthetic(width: w, height: h))
        let decoder = try ImageDecoder()
        let p = ImagePreprocessing(width: width, height: height, resize: resize)
        #expect(try decoder.info(jpeg, p).scaleDenominator == d)
        let reduced = Picture(width: w / d, height: h / d, channels: 3,
                              data: turboDecode(jpeg, width: w / d, height: h / d, format: TJPF_RGB))
        #expect(try decoder.decodeBytes(jpeg, p) == decoder.preprocessBytes(reduced, p))
    }

    @Test func oneChannelIsTheLuma() throws {
        let jpeg = encodeJPEG(Picture.synthetic(width: 96, height: 64))
        let decoder = try ImageDecoder()
        let out = try decoder.decodeBytes(jpeg, ImagePreprocessing(width: 48, height: 32, channels: 1))
        let luma = Picture(width: 48, height: 32, channels: 1, data: turboDecode(jpeg, width: 48, height: 32, format: TJPF_GRAY))
        #expect(out == luma.data)
    }

    @Test func grayJPEGToThreeChannels() throws {
        let gray = Picture.synthetic(width: 40, height: 30, channels: 1)
        let jpeg = encodeJPEG(gray)
        let decoder = try ImageDecoder()
        let rgb = try decoder.decodeBytes(jpeg, ImagePreprocessing(width: 40, height: 30))
        let one = try decoder.decodeBytes(jpeg, ImagePreprocessing(width: 40, height: 30, channels: 1))
        for i in one.indices {
            #expect(rgb[3 * i] == one[i] && rgb[3 * i + 1] == one[i] && rgb[3 * i + 2] == one[i])
        }
    }

    @Test func cmykJPEG() throws {
        let cmyk = Picture.synthetic(width: 48, height: 40, channels: 4, noise: 8)
        let jpeg = encodeJPEG(cmyk, format: TJPF_CMYK, quality: 95)
        let raw = turboDecode(jpeg, width: 48, height: 40, format: TJPF_CMYK)
        func product(_ a: UInt8, _ b: UInt8) -> Int {
            let t = Int(a) * Int(b) + 128
            return (t + (t >> 8)) >> 8
        }
        let decoder = try ImageDecoder()
        let rgb = try decoder.decodeBytes(jpeg, ImagePreprocessing(width: 48, height: 40))
        let bgr = try decoder.decodeBytes(jpeg, ImagePreprocessing(width: 48, height: 40, channelOrder: .bgr))
        let gray = try decoder.decodeBytes(jpeg, ImagePreprocessing(width: 48, height: 40, channels: 1))
        for i in 0..<(48 * 40) {
            let k = raw[4 * i + 3]
            let r = product(raw[4 * i], k), g = product(raw[4 * i + 1], k), b = product(raw[4 * i + 2], k)
            #expect([Int(rgb[3 * i]), Int(rgb[3 * i + 1]), Int(rgb[3 * i + 2])] == [r, g, b])
            #expect([Int(bgr[3 * i]), Int(bgr[3 * i + 1]), Int(bgr[3 * i + 2])] == [b, g, r])
            #expect(Int(gray[i]) == (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
        }
        // Reduced and resized like any other JPEG.
        let small = try decoder.info(jpeg, ImagePreprocessing(width: 12, height: 10))
        #expect(small.scaleDenominator == 4)
    }

    @Test func progressiveDecodesLikeBaseline() throws {
        let picture = Picture.synthetic(width: 120, height: 90)
        let decoder = try ImageDecoder()
        let p = ImagePreprocessing(width: 50, height: 40, resize: .shorterSide(45))
        #expect(try decoder.decodeBytes(encodeJPEG(picture, progressive: true), p)
                == decoder.decodeBytes(encodeJPEG(picture), p))
    }

    @Test func scratchBuffersShrinkAndRegrow() throws {
        let decoder = try ImageDecoder()
        decoder.retainedBytesLimit = 1024
        let big = encodeJPEG(Picture.synthetic(width: 400, height: 300))
        let small = encodeJPEG(Picture.synthetic(width: 30, height: 20))
        let p = ImagePreprocessing(width: 37, height: 29)
        let first = try decoder.decodeBytes(big, p)
        _ = try decoder.decodeBytes(small, p)
        #expect(try decoder.decodeBytes(big, p) == first)
        #expect(try ImageDecoder().decodeBytes(big, p) == first)
    }

    @Test func poolDecodesConcurrently() throws {
        let pool = ImageDecoderPool()
        let jpegs = (0..<8).map { encodeJPEG(Picture.synthetic(width: 160 + 8 * $0, height: 120, seed: UInt64($0))) }
        let p = ImagePreprocessing(width: 64, height: 64, scale: 1 / 255)
        let expected = try jpegs.map { try ImageDecoder().decodeFloats($0, p) }
        let results = Mutex([Bool](repeating: false, count: 64))
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            var out = [Float](repeating: 0, count: p.elementCount)
            let ok = jpegs[i % 8].withUnsafeBytes { bytes in
                out.withUnsafeMutableBufferPointer { buffer in
                    (try? pool.decode(bytes, p, into: buffer)) != nil
                }
            }
            let same = ok && out == expected[i % 8]
            results.withLock { $0[i] = same }
        }
        #expect(results.withLock { $0.allSatisfy { $0 } })
    }
}
