import CTurboJPEG
import Foundation
import Testing
@testable import ImageCodec

/// Deterministic generator for test images and fuzzing (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// An interleaved 8-bit image.
struct Picture: Equatable {
    var width: Int
    var height: Int
    var channels: Int
    var data: [UInt8]

    subscript(x: Int, y: Int, c: Int) -> UInt8 { data[(y * width + x) * channels + c] }

    /// Smooth colour fields plus noise and a few hard edges: every filter tap matters.
    static func synthetic(width: Int, height: Int, channels: Int = 3, noise: Int = 24, seed: UInt64 = 1) -> Picture {
        var rng = SeededGenerator(seed: seed)
        var data = [UInt8](repeating: 0, count: width * height * channels)
        for y in 0..<height {
            for x in 0..<width {
                let u = Double(x) / Double(max(1, width)), v = Double(y) / Double(max(1, height))
                let base: [Double] = [
                    128 + 100 * sin(6.283 * (2 * u + v)),
                    128 + 90 * cos(6.283 * (3 * v - u)),
                    ((x / 7 + y / 5) % 2 == 0) ? 40 : 215,
                ]
                for c in 0..<channels {
                    let n = Double(Int.random(in: -noise...noise, using: &rng))
                    data[(y * width + x) * channels + c] = UInt8(max(0, min(255, base[c % 3] + n)))
                }
            }
        }
        return Picture(width: width, height: height, channels: channels, data: data)
    }

    static func random(width: Int, height: Int, channels: Int, seed: UInt64) -> Picture {
        var rng = SeededGenerator(seed: seed)
        let data = (0..<(width * height * channels)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return Picture(width: width, height: height, channels: channels, data: data)
    }
}

/// JPEG encoding with TurboJPEG (tests only).
func encodeJPEG(
    _ picture: Picture, format: TJPF? = nil, subsampling: TJSAMP = TJSAMP_420, quality: Int32 = 90,
    progressive: Bool = false
) -> [UInt8] {
    let handle = tjInitCompress()!
    defer { tjDestroy(handle) }
    let pixelFormat = format ?? (picture.channels == 1 ? TJPF_GRAY : TJPF_RGB)
    let samp = picture.channels == 1 ? TJSAMP_GRAY : subsampling
    var buffer: UnsafeMutablePointer<UInt8>?
    var size: UInt = 0
    let flags = progressive ? Int32(TJFLAG_PROGRESSIVE) : 0
    let result = picture.data.withUnsafeBufferPointer {
        tjCompress2(handle, $0.baseAddress, Int32(picture.width), 0, Int32(picture.height), Int32(pixelFormat.rawValue),
                    &buffer, &size, Int32(samp.rawValue), quality, flags)
    }
    precondition(result == 0, String(cString: tjGetErrorStr2(handle)))
    defer { tjFree(buffer) }
    return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
}

/// TurboJPEG's own decode at `width` x `height` (a DCT scaling), for comparisons.
func turboDecode(_ jpeg: [UInt8], width: Int, height: Int, format: TJPF) -> [UInt8] {
    let handle = tjInitDecompress()!
    defer { tjDestroy(handle) }
    let size = width * height * (format == TJPF_GRAY ? 1 : format == TJPF_CMYK ? 4 : 3)
    var out = [UInt8](repeating: 0, count: size)
    let result = jpeg.withUnsafeBufferPointer { jpegBuffer in
        out.withUnsafeMutableBufferPointer {
            tjDecompress2(handle, jpegBuffer.baseAddress, UInt(jpeg.count), $0.baseAddress, Int32(width), 0,
                          Int32(height), Int32(format.rawValue), 0)
        }
    }
    precondition(result == 0, String(cString: tjGetErrorStr2(handle)))
    return out
}

extension ImageDecoder {
    private func run<T>(_ jpeg: [UInt8], _ p: ImagePreprocessing, _ fill: T) throws(ImageError) -> ([T], ImageInfo) {
        var out = [T](repeating: fill, count: p.elementCount)
        let result: Result<ImageInfo, ImageError> = jpeg.withUnsafeBytes { bytes in
            out.withUnsafeMutableBufferPointer { buffer in
                Result { () throws(ImageError) -> ImageInfo in
                    if let floats = buffer as? UnsafeMutableBufferPointer<Float> {
                        return try decode(bytes, p, into: floats)
                    }
                    return try decode(bytes, p, into: buffer as! UnsafeMutableBufferPointer<UInt8>)
                }
            }
        }
        return (out, try result.get())
    }

    func decodeBytes(_ jpeg: [UInt8], _ p: ImagePreprocessing) throws(ImageError) -> [UInt8] {
        try run(jpeg, p, UInt8(0)).0
    }

    func decodeFloats(_ jpeg: [UInt8], _ p: ImagePreprocessing) throws(ImageError) -> [Float] {
        try run(jpeg, p, Float.nan).0
    }

    func info(_ jpeg: [UInt8], _ p: ImagePreprocessing) throws(ImageError) -> ImageInfo {
        try run(jpeg, p, UInt8(0)).1
    }

    /// The resampler on raw pixels (no JPEG).
    func preprocessBytes(_ picture: Picture, _ p: ImagePreprocessing) throws(ImageError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: p.elementCount)
        let result: Result<Void, ImageError> = picture.data.withUnsafeBufferPointer { pixels in
            out.withUnsafeMutableBufferPointer { buffer in
                Result { () throws(ImageError) in
                    try preprocess(pixels: pixels.baseAddress!, width: picture.width, height: picture.height, p, into: buffer)
                }
            }
        }
        try result.get()
        return out
    }
}

/// Decoding that is expected to fail: the error, or nil when it decoded.
func decodeError(_ decoder: ImageDecoder, _ jpeg: [UInt8], _ p: ImagePreprocessing) -> ImageError? {
    do {
        _ = try decoder.decodeBytes(jpeg, p)
        return nil
    } catch {
        return error
    }
}

// MARK: - Reference resamplers

/// A straightforward transcription of Pillow's 8-bit BILINEAR resampling
/// (`ImagingResampleInner` with `precompute_coeffs`, `normalize_coeffs_8bpc`,
/// `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`): Int32 fixed point,
/// horizontal then vertical, an 8-bit image in between, identity passes skipped.
enum PillowReference {
    static func coefficients(inSize: Int, in0: Double, in1: Double, outSize: Int) -> [(start: Int, weights: [Int32])] {
        let scale = (in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale
        return (0..<outSize).map { xx in
            let center = in0 + (Double(xx) + 0.5) * scale
            let ss = 1.0 / filterScale
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var k = [Double](repeating: 0, count: max(0, xmax))
            var ww = 0.0
            for x in 0..<max(0, xmax) {
                let arg = (Double(x + xmin) - center + 0.5) * ss
                let w = abs(arg) < 1 ? 1 - abs(arg) : 0
                k[x] = w
                ww += w
            }
            let fixed = k.map { w -> Int32 in
                let v = ww != 0 ? w / ww : w
                return Int32(v < 0 ? -0.5 + v * 4_194_304 : 0.5 + v * 4_194_304)
            }
            return (xmin, fixed)
        }
    }

    static func clip8(_ v: Int32) -> UInt8 {
        if v >= 1 << 30 { return 255 }
        if v <= 0 { return 0 }
        return UInt8(v >> 22)
    }

    /// `Image.resize((width, height), BILINEAR, box)`.
    static func resize(_ image: Picture, box: (Double, Double, Double, Double), width: Int, height: Int) -> Picture {
        var current = image
        let needHorizontal = width != image.width || box.0 != 0 || box.2 != Double(width)
        let needVertical = height != image.height || box.1 != 0 || box.3 != Double(height)
        let vertical = coefficients(inSize: image.height, in0: box.1, in1: box.3, outSize: height)
        let firstRow = vertical.first!.start
        let lastRow = vertical.last!.start + vertical.last!.weights.count
        var rowOffset = 0
        let c = image.channels
        if needHorizontal {
            let horizontal = coefficients(inSize: image.width, in0: box.0, in1: box.2, outSize: width)
            var out = Picture(width: width, height: lastRow - firstRow, channels: c,
                              data: [UInt8](repeating: 0, count: width * (lastRow - firstRow) * c))
            for y in 0..<(lastRow - firstRow) {
                for (xx, tap) in horizontal.enumerated() {
                    for ch in 0..<c {
                        var sum: Int32 = 1 << 21
                        for (t, w) in tap.weights.enumerated() { sum += Int32(image[tap.start + t, y + firstRow, ch]) * w }
                        out.data[(y * width + xx) * c + ch] = clip8(sum)
                    }
                }
            }
            current = out
            rowOffset = firstRow
        }
        if needVertical {
            var out = Picture(width: width, height: height, channels: c, data: [UInt8](repeating: 0, count: width * height * c))
            for (yy, tap) in vertical.enumerated() {
                for x in 0..<width {
                    for ch in 0..<c {
                        var sum: Int32 = 1 << 21
                        for (t, w) in tap.weights.enumerated() { sum += Int32(current[x, tap.start - rowOffset + t, ch]) * w }
                        out.data[(yy * width + x) * c + ch] = clip8(sum)
                    }
                }
            }
            current = out
        }
        return current
    }

    /// The whole preprocessing (8-bit, NHWC, RGB) of an already decoded image by the
    /// reference resize: resize the plan's region to its virtual size, crop the window,
    /// place it on the padded canvas.
    static func preprocess(_ image: Picture, _ p: ImagePreprocessing) -> Picture {
        let plan = ImagePlan(sourceWidth: image.width, sourceHeight: image.height, p)
        let resized = resize(image, box: (plan.x.regionStart, plan.y.regionStart, plan.x.regionEnd, plan.y.regionEnd),
                             width: plan.x.virtualSize, height: plan.y.virtualSize)
        var out = Picture(width: p.width, height: p.height, channels: p.channels,
                          data: [UInt8](repeating: plan.fill, count: p.elementCount))
        for j in 0..<plan.y.count {
            for i in 0..<plan.x.count {
                for c in 0..<p.channels {
                    out.data[((plan.y.offset + j) * p.width + plan.x.offset + i) * p.channels + c] =
                        resized[plan.x.first + i, plan.y.first + j, c]
                }
            }
        }
        return out
    }
}

/// The same filter in Double without any intermediate rounding: the continuous answer.
func doubleResize(_ image: Picture, width: Int, height: Int) -> [Double] {
    func weights(_ inSize: Int, _ outSize: Int) -> [[(Int, Double)]] {
        let scale = Double(inSize) / Double(outSize)
        let support = max(scale, 1)
        return (0..<outSize).map { o in
            let center = (Double(o) + 0.5) * scale
            var taps: [(Int, Double)] = []
            for i in 0..<inSize {
                let w = max(0, 1 - abs((Double(i) + 0.5 - center) / support))
                if w > 0 { taps.append((i, w)) }
            }
            let total = taps.reduce(0) { $0 + $1.1 }
            return taps.map { ($0.0, $0.1 / total) }
        }
    }
    let wx = weights(image.width, width), wy = weights(image.height, height)
    let c = image.channels
    var horizontal = [Double](repeating: 0, count: width * image.height * c)
    for y in 0..<image.height {
        for x in 0..<width {
            for ch in 0..<c {
                horizontal[(y * width + x) * c + ch] = wx[x].reduce(0) { $0 + $1.1 * Double(image[$1.0, y, ch]) }
            }
        }
    }
    var out = [Double](repeating: 0, count: width * height * c)
    for y in 0..<height {
        for x in 0..<width {
            for ch in 0..<c {
                out[(y * width + x) * c + ch] = wy[y].reduce(0) { $0 + $1.1 * horizontal[($1.0 * width + x) * c + ch] }
            }
        }
    }
    return out
}

func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs(Int($1.0) - Int($1.1))) }
}
