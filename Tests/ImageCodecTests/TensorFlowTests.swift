import CTurboJPEG
import Foundation
import Testing
@testable import ImageCodec

/// The TensorFlow-exact mode (`ImagePreprocessing.tensorflow`). Bit equality with TensorFlow
/// itself is Tests/PythonTests/test_image_tensorflow.py; here: the same arithmetic written
/// per output pixel as TF's kernel does it, the decode against TurboJPEG, the rewrites,
/// offsets, validation and errors.
@Suite struct TensorFlowTests {
    /// TF's ResizeBilinear (after the before-steps and crop) per output pixel, as
    /// resize_bilinear_op.cc computes it, then the after-steps: the reference for the
    /// decoder's row-cached version.
    static func reference(_ picture: Picture, _ steps: TensorFlowImageSteps) -> [Float] {
        let c = picture.channels
        let before = steps.grapplerRewrites ? TensorFlowImageSteps.graphExecution(of: steps.beforeResize) : steps.beforeResize
        let after = steps.grapplerRewrites ? TensorFlowImageSteps.graphExecution(of: steps.afterResize) : steps.afterResize
        let (y0, ch) = TensorFlowImageSteps.centralCrop(side: picture.height, fraction: steps.centralCropFraction)
        let (x0, cw) = TensorFlowImageSteps.centralCrop(side: picture.width, fraction: steps.centralCropFraction)
        func sample(_ x: Int, _ y: Int, _ k: Int) -> Float {
            var v = Float(picture[x0 + x, y0 + y, k])
            for step in before { v = step.apply(v) }
            return v
        }
        func source(_ i: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int, Float) {
            let scale = Float(inSize) / Float(outSize)
            let s = steps.halfPixelCenters ? (Float(i) + 0.5) * scale - 0.5 : Float(i) * scale
            return (max(Int(floorf(s)), 0), min(Int(ceilf(s)), inSize - 1), s - floorf(s))
        }
        var out: [Float] = []
        out.reserveCapacity(steps.height * steps.width * c)
        for y in 0..<steps.height {
            let (top, bottom, dy) = source(y, ch, steps.height)
            for x in 0..<steps.width {
                let (left, right, dx) = source(x, cw, steps.width)
                for k in 0..<c {
                    let tl = sample(left, top, k), tr = sample(right, top, k)
                    let bl = sample(left, bottom, k), br = sample(right, bottom, k)
                    let upper = tl + (tr - tl) * dx
                    let lower = bl + (br - bl) * dx
                    var v = upper + (lower - upper) * dy
                    for step in after { v = step.apply(v) }
                    out.append(v)
                }
            }
        }
        return out
    }

    static func run(_ picture: Picture, _ steps: TensorFlowImageSteps) -> [Float] {
        var scratch = TensorFlowScratch()
        defer { scratch.release(above: 0) }
        var out = [Float](repeating: .nan, count: steps.height * steps.width * picture.channels)
        picture.data.withUnsafeBufferPointer { pixels in
            out.withUnsafeMutableBufferPointer { buffer in
                TensorFlowPixels.preprocess(pixels.baseAddress!, width: picture.width, height: picture.height,
                                            channels: picture.channels, steps, scratch: &scratch, into: buffer.baseAddress!)
            }
        }
        return out
    }

    static func same(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
    }

    struct Case: CustomStringConvertible, Sendable {
        var source: (Int, Int)
        var size: (Int, Int)
        var channels: Int
        var halfPixel: Bool
        var crop: Double?
        var classic: Bool
        var description: String {
            "\(source.0)x\(source.1)x\(channels) -> \(size.0)x\(size.1) \(halfPixel ? "half-pixel" : "legacy") crop \(crop.map { "\($0)" } ?? "none")\(classic ? " classic" : "")"
        }
    }

    static let cases: [Case] = [
        Case(source: (640, 480), size: (299, 299), channels: 3, halfPixel: false, crop: 0.875, classic: true),
        Case(source: (640, 480), size: (299, 299), channels: 3, halfPixel: true, crop: 0.875, classic: true),
        Case(source: (333, 211), size: (224, 224), channels: 3, halfPixel: true, crop: nil, classic: false),
        Case(source: (37, 29), size: (299, 299), channels: 3, halfPixel: false, crop: nil, classic: true),
        Case(source: (37, 29), size: (100, 61), channels: 3, halfPixel: true, crop: 0.5, classic: false),
        Case(source: (1, 1), size: (5, 3), channels: 3, halfPixel: true, crop: 0.875, classic: true),
        Case(source: (2, 3), size: (7, 9), channels: 1, halfPixel: false, crop: nil, classic: false),
        Case(source: (300, 17), size: (17, 300), channels: 1, halfPixel: true, crop: 0.875, classic: true),
        Case(source: (64, 64), size: (64, 64), channels: 3, halfPixel: false, crop: nil, classic: false),
    ]

    @Test(arguments: cases)
    func rowCachedResizeIsTheKernelsArithmetic(_ c: Case) {
        let picture = Picture.random(width: c.source.0, height: c.source.1, channels: c.channels, seed: 7)
        let steps = c.classic
            ? TensorFlowImageSteps(channels: c.channels, beforeResize: [.mul(Float(1.0 / 255.0))], centralCropFraction: c.crop,
                                   height: c.size.1, width: c.size.0, halfPixelCenters: c.halfPixel,
                                   afterResize: [.sub(0.5), .mul(2.0)])
            : TensorFlowImageSteps(channels: c.channels, centralCropFraction: c.crop, height: c.size.1, width: c.size.0,
                                   halfPixelCenters: c.halfPixel)
        #expect(Self.same(Self.run(picture, steps), Self.reference(picture, steps)))
    }

    @Test func sameSizeWithoutStepsIsTheImage() {
        let picture = Picture.random(width: 31, height: 17, channels: 3, seed: 3)
        for halfPixel in [false, true] {
            let steps = TensorFlowImageSteps(channels: 3, height: 17, width: 31, halfPixelCenters: halfPixel)
            #expect(Self.run(picture, steps) == picture.data.map(Float.init))
        }
    }

    @Test func graphExecutionFoldsLikeGrappler() {
        typealias A = TensorFlowImageSteps.Arithmetic
        func run(_ steps: [A]) -> [A] { TensorFlowImageSteps.graphExecution(of: steps) }
        #expect(run([]) == [])
        #expect(run([.div(255)]) == [.mul(Float(1) / 255)])
        #expect(run([.sub(0.5), .mul(2)]) == [.sub(0.5), .mul(2)])
        #expect(run([.add(0.3), .add(1.7)]) == [.add(Float(1.7) + Float(0.3))])
        #expect(run([.sub(0.3), .add(1.7)]) == [.add(Float(1.7) - Float(0.3))])
        #expect(run([.add(0.3), .sub(1.7)]) == [.add(Float(0.3) - Float(1.7))])
        #expect(run([.sub(0.3), .sub(1.7)]) == [.sub(Float(0.3) + Float(1.7))])
        #expect(run([.mul(3), .div(0.7)]) == [.mul((Float(1) / Float(0.7)) * 3)])
        #expect(run([.div(58.4), .mul(1.3), .sub(1), .sub(2), .div(3)])
                == [.mul(Float(1.3) * (Float(1) / Float(58.4))), .sub(3), .mul(Float(1) / 3)])
    }

    @Test func literalStepsAreNotRewritten() {
        let picture = Picture.random(width: 90, height: 70, channels: 3, seed: 11)
        var steps = TensorFlowImageSteps(channels: 3, beforeResize: [.sub(123.68), .div(58.4), .mul(1.3)], height: 33,
                                         width: 41, halfPixelCenters: true, afterResize: [.add(0.25), .sub(1.7), .div(3)])
        let folded = Self.run(picture, steps)
        #expect(Self.same(folded, Self.reference(picture, steps)))
        steps.grapplerRewrites = false
        let literal = Self.run(picture, steps)
        #expect(Self.same(literal, Self.reference(picture, steps)))
        #expect(!Self.same(literal, folded))
    }

    @Test func centralCropOffsets() {
        #expect(TensorFlowImageSteps.centralCrop(side: 299, fraction: 0.875) == (18, 263))
        #expect(TensorFlowImageSteps.centralCrop(side: 4032, fraction: 0.875) == (252, 3528))
        #expect(TensorFlowImageSteps.centralCrop(side: 16, fraction: 0.875) == (1, 14))
        #expect(TensorFlowImageSteps.centralCrop(side: 15, fraction: 0.875) == (0, 15))
        #expect(TensorFlowImageSteps.centralCrop(side: 1, fraction: 0.1) == (0, 1))
        #expect(TensorFlowImageSteps.centralCrop(side: 640, fraction: nil) == (0, 640))
        #expect(TensorFlowImageSteps.centralCrop(side: 640, fraction: 1) == (0, 640))
        // float64 arithmetic: (5 - 5 * 0.6) / 2 = 1.0 with 0.6 as a double, 0.99999994 with the
        // float32 0.6 widened (what a graph with dynamic image shapes multiplies by).
        #expect(TensorFlowImageSteps.centralCrop(side: 5, fraction: 0.6) == (1, 3))
        #expect(TensorFlowImageSteps.centralCrop(side: 5, fraction: Double(Float(0.6))) == (0, 5))
        // TF 1.x's side // 16 for 0.875.
        for side in 1...2000 {
            #expect(TensorFlowImageSteps.centralCrop(side: side, fraction: 0.875).start == side / 16)
        }
    }

    // MARK: - Through the decoder

    /// TurboJPEG's full-size decode with explicit flags.
    static func turbo(_ jpeg: [UInt8], _ width: Int, _ height: Int, _ format: TJPF, fastDCT: Bool) -> [UInt8] {
        let handle = tjInitDecompress()!
        defer { tjDestroy(handle) }
        let channels = format == TJPF_GRAY ? 1 : format == TJPF_CMYK ? 4 : 3
        var out = [UInt8](repeating: 0, count: width * height * channels)
        let flags = fastDCT ? Int32(TJFLAG_FASTDCT) : Int32(TJFLAG_ACCURATEDCT)
        let result = jpeg.withUnsafeBufferPointer { jpegBuffer in
            out.withUnsafeMutableBufferPointer {
                tjDecompress2(handle, jpegBuffer.baseAddress, UInt(jpeg.count), $0.baseAddress, Int32(width), 0,
                              Int32(height), Int32(format.rawValue), flags)
            }
        }
        precondition(result == 0, String(cString: tjGetErrorStr2(handle)))
        return out
    }

    @Test func decodesAtFullSizeWithTheChosenDCT() throws {
        let picture = Picture.synthetic(width: 203, height: 157, seed: 4)
        let decoder = try ImageDecoder()
        for (subsampling, progressive) in [(TJSAMP_420, false), (TJSAMP_444, false), (TJSAMP_422, true), (TJSAMP_440, false)] {
            let jpeg = encodeJPEG(picture, subsampling: subsampling, progressive: progressive)
            for fast in [true, false] {
                var steps = TensorFlowImageSteps.inceptionExport
                steps.fastDCT = fast
                let pixels = Picture(width: 203, height: 157, channels: 3, data: Self.turbo(jpeg, 203, 157, TJPF_RGB, fastDCT: fast))
                let ours = try decoder.decodeFloats(jpeg, ImagePreprocessing(tensorflow: steps))
                #expect(Self.same(ours, Self.reference(pixels, steps)), "\(subsampling) progressive \(progressive) fast \(fast)")
            }
        }
    }

    @Test func grayAndColourChannels() throws {
        let decoder = try ImageDecoder()
        let gray = encodeJPEG(Picture.synthetic(width: 50, height: 40, channels: 1))
        let colour = encodeJPEG(Picture.synthetic(width: 50, height: 40))
        let luma = Self.turbo(gray, 50, 40, TJPF_GRAY, fastDCT: true)
        for (jpeg, channels) in [(gray, 3), (gray, 0), (gray, 1), (colour, 1)] {
            let steps = TensorFlowImageSteps(channels: channels, height: 40, width: 50, halfPixelCenters: true)
            let out = try decoder.decodeFloats(jpeg, ImagePreprocessing(tensorflow: steps))
            #expect(out.count == 50 * 40 * (channels == 1 ? 1 : 3))
            if jpeg == gray {
                // A gray JPEG replicated to RGB (libjpeg), or its one channel.
                let expected = channels == 1 ? luma.map(Float.init) : luma.flatMap { [Float($0), Float($0), Float($0)] }
                #expect(out == expected)
            } else {
                #expect(out == Self.turbo(colour, 50, 40, TJPF_GRAY, fastDCT: true).map(Float.init))
            }
        }
    }

    /// `jpeg` without its APP14 "Adobe" segments.
    static func withoutAdobe(_ jpeg: [UInt8]) -> [UInt8] {
        var out = Array(jpeg[0..<2]), i = 2
        while i < jpeg.count {
            let marker = jpeg[i + 1]
            if marker == 0xDA { out += jpeg[i...]; break }
            let length = Int(jpeg[i + 2]) << 8 | Int(jpeg[i + 3])
            if !(marker == 0xEE && Array(jpeg[(i + 4)..<(i + 9)]) == Array("Adobe".utf8)) {
                out += jpeg[i..<(i + 2 + length)]
            }
            i += 2 + length
        }
        return out
    }

    @Test func cmykConvertedAsTensorFlowDoes() throws {
        let cmyk = Picture.synthetic(width: 48, height: 40, channels: 4, noise: 8)
        let adobe = encodeJPEG(cmyk, format: TJPF_CMYK, quality: 95)
        let plain = Self.withoutAdobe(adobe)
        #expect(adobe.withUnsafeBytes { JPEGStructure.hasAdobeMarker($0) })
        #expect(!plain.withUnsafeBytes { JPEGStructure.hasAdobeMarker($0) })
        let decoder = try ImageDecoder()
        let steps = TensorFlowImageSteps(channels: 3, height: 40, width: 48, halfPixelCenters: false)
        for (jpeg, isAdobe) in [(adobe, true), (plain, false)] {
            let raw = Self.turbo(jpeg, 48, 40, TJPF_CMYK, fastDCT: true)
            var expected: [Float] = []
            for i in 0..<(48 * 40) {
                let k = Int(raw[4 * i + 3])
                for j in 0..<3 {
                    let c = Int(raw[4 * i + j])
                    expected.append(Float(isAdobe ? k * c / 255 : (255 - k) * (255 - c) / 255))
                }
            }
            #expect(try decoder.decodeFloats(jpeg, ImagePreprocessing(tensorflow: steps)) == expected)
        }
        // TF cannot decode CMYK to one channel either.
        let gray = TensorFlowImageSteps(channels: 1, height: 40, width: 48, halfPixelCenters: false)
        let error = decodeFloatsError(decoder, adobe, ImagePreprocessing(tensorflow: gray))
        guard case .corrupt(let message) = error else { Issue.record("\(String(describing: error))"); return }
        #expect(message.contains("CMYK"))
    }

    func decodeFloatsError(_ decoder: ImageDecoder, _ jpeg: [UInt8], _ p: ImagePreprocessing) -> ImageError? {
        do {
            _ = try decoder.decodeFloats(jpeg, p)
            return nil
        } catch {
            return error
        }
    }

    @Test func mixedSizesThroughOneDecoderAndThePool() throws {
        let jpegs = [(640, 480), (37, 29), (1, 1), (333, 211), (1000, 40)].enumerated().map { i, size in
            encodeJPEG(Picture.synthetic(width: size.0, height: size.1, seed: UInt64(i)), subsampling: i % 2 == 0 ? TJSAMP_420 : TJSAMP_444)
        }
        let p = ImagePreprocessing(tensorflow: .inceptionExport)
        let fresh = try jpegs.map { jpeg in try ImageDecoder().decodeFloats(jpeg, p) }
        let decoder = try ImageDecoder()
        decoder.retainedBytesLimit = 1 << 30
        for _ in 0..<2 {
            for (jpeg, expected) in zip(jpegs, fresh) {
                #expect(Self.same(try decoder.decodeFloats(jpeg, p), expected))
            }
        }
        let pool = ImageDecoderPool()
        for (jpeg, expected) in zip(jpegs, fresh).reversed() {
            var out = [Float](repeating: .nan, count: p.elementCount)
            let result: Result<ImageInfo, ImageError> = jpeg.withUnsafeBytes { bytes in
                out.withUnsafeMutableBufferPointer { buffer in
                    Result { () throws(ImageError) -> ImageInfo in try pool.decode(bytes, p, into: buffer) }
                }
            }
            _ = try result.get()
            #expect(Self.same(out, expected))
        }
    }

    @Test func limitsAndErrors() throws {
        let decoder = try ImageDecoder()
        let jpeg = encodeJPEG(Picture.synthetic(width: 400, height: 300))
        var p = ImagePreprocessing(tensorflow: .inceptionExport, maxPixels: 119_999)
        guard case .tooLarge(let message) = decodeFloatsError(decoder, jpeg, p) else { Issue.record("not tooLarge"); return }
        #expect(message.contains("400x300"))
        p.maxPixels = 120_000
        #expect(decodeFloatsError(decoder, jpeg, p) == nil)
        guard case .truncated = decodeFloatsError(decoder, Array(jpeg.prefix(jpeg.count / 2)), p) else {
            Issue.record("not truncated"); return
        }
        guard case .notJPEG = decodeFloatsError(decoder, [0x89, 0x50, 0x4E, 0x47, 0, 0], p) else {
            Issue.record("not notJPEG"); return
        }
        // 8-bit output: TF's steps make floats.
        guard case .invalidConfiguration = decodeError(decoder, jpeg, p) else { Issue.record("uint8 accepted"); return }
    }

    @Test func validation() {
        func invalid(_ p: ImagePreprocessing) -> Bool {
            do { try p.validate(); return false } catch { return error.isClientError == false }
        }
        let steps = TensorFlowImageSteps.inceptionExport
        #expect(!invalid(ImagePreprocessing(tensorflow: steps)))
        #expect(ImagePreprocessing(tensorflow: steps).elementCount == 299 * 299 * 3)
        #expect(invalid(ImagePreprocessing(width: 224, height: 299, tensorflow: steps)))
        #expect(invalid(ImagePreprocessing(width: 299, height: 299, channels: 1, tensorflow: steps)))
        #expect(invalid(ImagePreprocessing(width: 299, height: 299, layout: .nchw, tensorflow: steps)))
        #expect(!invalid(ImagePreprocessing(width: 299, height: 299, tensorflow: steps)))
        var bad = steps
        bad.channels = 4
        #expect(invalid(ImagePreprocessing(tensorflow: bad)))
        bad = steps
        bad.centralCropFraction = 0
        #expect(invalid(ImagePreprocessing(tensorflow: bad)))
        bad = steps
        bad.afterResize = [.mul(.infinity)]
        #expect(invalid(ImagePreprocessing(tensorflow: bad)))
        bad = steps
        bad.width = 0
        #expect(invalid(ImagePreprocessing(tensorflow: bad)))
        var zero = steps
        zero.channels = 0
        #expect(ImagePreprocessing(tensorflow: zero).channels == 3)
    }

    /// Random mutations of small JPEGs of each kind through the TensorFlow path: decoded
    /// (finite values) or a client error, never a crash (bounded).
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
            ImagePreprocessing(tensorflow: TensorFlowImageSteps(
                channels: 3, beforeResize: [.mul(Float(1.0 / 255.0))], centralCropFraction: 0.875, height: 11, width: 13,
                halfPixelCenters: false, afterResize: [.sub(0.5), .mul(2)]), maxPixels: 1 << 20),
            ImagePreprocessing(tensorflow: TensorFlowImageSteps(channels: 1, height: 60, width: 50, halfPixelCenters: true),
                               maxPixels: 1 << 20),
            ImagePreprocessing(tensorflow: TensorFlowImageSteps(channels: 0, fastDCT: false, centralCropFraction: 0.3,
                                                                height: 8, width: 8, halfPixelCenters: true), maxPixels: 1 << 20),
        ]
        let decoder = try ImageDecoder()
        var rng = SeededGenerator(seed: 2025)
        var outcomes = [String: Int]()
        for iteration in 0..<1500 {
            var data = seeds[iteration % seeds.count]
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let at = Int.random(in: 0..<data.count, using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: data[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                case 1: data[at] = UInt8.random(in: 0...255, using: &rng)
                case 2: data[at] = [0x00, 0xFF, 0xD9, 0xDA, 0xC4, 0xDB, 0xEE][Int.random(in: 0..<7, using: &rng)]
                case 3: data.removeSubrange(at..<min(data.count, at + Int.random(in: 1...64, using: &rng)))
                default: data.insert(contentsOf: data[at..<min(data.count, at + 16)], at: at)
                }
                if data.isEmpty { data = [0xFF] }
            }
            do {
                let out = try decoder.decodeFloats(data, configs[iteration % configs.count])
                #expect(out.allSatisfy { $0.isFinite })
                outcomes["decoded", default: 0] += 1
            } catch {
                #expect(error.isClientError, "\(error)")
                outcomes["\(error)".prefix(while: { $0 != ":" }).description, default: 0] += 1
            }
        }
        #expect(outcomes["decoded", default: 0] > 50, "\(outcomes)")
        #expect(outcomes.count > 2, "\(outcomes)")
    }
}
