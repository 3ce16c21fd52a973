import CTurboJPEG

/// JPEG bytes to one preprocessed model input image.
///
/// Pipeline: header (size check against `maxPixels`) -> TurboJPEG decode, reduced 1/2, 1/4
/// or 1/8 in the DCT domain when the resize shrinks by at least that much, straight to
/// RGB/BGR/gray (CMYK JPEGs are converted here) -> Pillow-exact BILINEAR resize of just the
/// needed window (horizontal pass, then vertical, 8-bit fixed point) -> padding, channel
/// normalisation through a per-channel 256-entry table, layout.
///
/// Not thread-safe: use one decoder per thread (or `ImageDecoderPool`). A decoder has no
/// thread affinity; it keeps its TurboJPEG handle and scratch buffers between calls, so a
/// steady stream of images allocates nothing. Buffers above `retainedBytesLimit` are freed
/// after the call that needed them.
public final class ImageDecoder {
    private let handle: tjhandle
    /// Scratch bytes kept per buffer between calls.
    public var retainedBytesLimit = 16 << 20

    private var pixels = ScratchBuffer<UInt8>()       // decoded image
    private var horizontal = ScratchBuffer<UInt8>()   // after the horizontal pass
    private var rowBuffer = ScratchBuffer<UInt8>()    // one vertically resampled row
    private var accumulator = ScratchBuffer<Int32>()
    private var lookup = ScratchBuffer<Float>()        // channels * 256 normalised values
    private var columns = CoefficientTable()
    private var rows = CoefficientTable()

    public init() throws(ImageError) {
        guard let handle = tjInitDecompress() else {
            throw .decoderUnavailable("TurboJPEG decoder could not be created: \(String(cString: tjGetErrorStr2(nil)))")
        }
        self.handle = handle
    }

    deinit {
        tjDestroy(handle)
        pixels.release()
        horizontal.release()
        rowBuffer.release()
        accumulator.release()
        lookup.release()
        columns.release()
        rows.release()
    }

    /// Decodes `jpeg` and writes one image of `preprocessing.elementCount` Float32 values,
    /// normalised, in `preprocessing.layout`, to `output` (whose count must be exactly that).
    @discardableResult
    public func decode(
        _ jpeg: UnsafeRawBufferPointer, _ preprocessing: ImagePreprocessing,
        into output: UnsafeMutableBufferPointer<Float>
    ) throws(ImageError) -> ImageInfo {
        try preprocessing.validate()
        precondition(output.count == preprocessing.elementCount,
                     "output holds \(output.count) values; the image needs \(preprocessing.elementCount)")
        let prepared = try prepare(jpeg, preprocessing)
        let lut = lookup.reserve(preprocessing.channels * 256)
        for c in 0..<preprocessing.channels {
            let scale = preprocessing.scale
            let mean = preprocessing.mean.count == 1 ? preprocessing.mean[0] : preprocessing.mean[c]
            let std = preprocessing.std.count == 1 ? preprocessing.std[0] : preprocessing.std[c]
            for v in 0..<256 { lut[c * 256 + v] = (Float(v) * scale - mean) / std }
        }
        var sink = FloatSink(output: output.baseAddress!, width: preprocessing.width, height: preprocessing.height,
                             channels: preprocessing.channels, planar: preprocessing.layout == .nchw,
                             lookup: lut, fill: prepared.plan.fill)
        emit(prepared, into: &sink)
        trim()
        return prepared.info
    }

    /// Like the Float32 variant, but writes the resized 8-bit samples (no scale/mean/std).
    @discardableResult
    public func decode(
        _ jpeg: UnsafeRawBufferPointer, _ preprocessing: ImagePreprocessing,
        into output: UnsafeMutableBufferPointer<UInt8>
    ) throws(ImageError) -> ImageInfo {
        try preprocessing.validate()
        precondition(output.count == preprocessing.elementCount,
                     "output holds \(output.count) values; the image needs \(preprocessing.elementCount)")
        let prepared = try prepare(jpeg, preprocessing)
        var sink = ByteSink(output: output.baseAddress!, width: preprocessing.width, height: preprocessing.height,
                            channels: preprocessing.channels, planar: preprocessing.layout == .nchw,
                            fill: prepared.plan.fill)
        emit(prepared, into: &sink)
        trim()
        return prepared.info
    }

    // MARK: - Decoding

    /// Pointers into this decoder's scratch, valid until its next call.
    private struct Prepared {
        var info: ImageInfo
        var plan: ImagePlan
        var channels: Int
        /// Rows feeding the vertical pass (window columns only when `horizontalDone`).
        var source: RowSource
        /// Byte offset of the window's first column in a source row (0 after the horizontal pass).
        var columnOffset: Int
        var resizeRows: Bool
    }

    private static let flags = Int32(TJFLAG_LIMITSCANS)

    /// libjpeg warnings about metadata that leave the pixels intact.
    private static let harmlessWarnings = [
        "extraneous bytes before marker", "unknown JFIF revision number",
        "Unknown Adobe color transform code", "bad ICC marker",
    ]

    /// The DCT scaling denominators TurboJPEG offers among 2, 4, 8.
    private static let denominators: [Int] = {
        var count: Int32 = 0
        guard let factors = tjGetScalingFactors(&count) else { return [] }
        return (0..<Int(count)).compactMap { i in
            let f = factors[i]
            return f.num == 1 && [2, 4, 8].contains(f.denom) ? Int(f.denom) : nil
        }
    }()

    private func lastError() -> String {
        guard let text = tjGetErrorStr2(handle) else { return "unknown error" }
        return String(cString: text)
    }

    /// The error for a stream libjpeg failed on: truncated if the data ends before EOI.
    private func failure(_ jpeg: UnsafeRawBufferPointer, _ message: String) -> ImageError {
        if JPEGStructure.walk(jpeg) == .truncated {
            return .truncated("the JPEG data is truncated: it ends after \(jpeg.count) bytes, before the end-of-image marker")
        }
        return .corrupt("the JPEG data is corrupt: \(message)")
    }

    private func prepare(_ jpeg: UnsafeRawBufferPointer, _ p: ImagePreprocessing) throws(ImageError) -> Prepared {
        guard jpeg.count >= 2, jpeg[0] == 0xFF, jpeg[1] == 0xD8, let base = jpeg.baseAddress else {
            throw notJPEGError(jpeg)
        }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let size = UInt(jpeg.count)

        // Header. A -1 with the size filled in (an unusual subsampling, a warning) is left
        // for the full decode to judge; no size means the header itself is unreadable.
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = -1, colorspace: Int32 = -1
        let headerResult = tjDecompressHeader3(handle, bytes, size, &w, &h, &subsampling, &colorspace)
        guard w > 0, h > 0 else {
            if headerResult == 0 { throw .corrupt("the JPEG data holds tables only, no image") }
            throw failure(jpeg, lastError())
        }
        let width = Int(w), height = Int(h)
        if width * height > p.maxPixels {
            throw .tooLarge("the image is \(width)x\(height) = \(width * height) pixels; the limit is \(p.maxPixels)")
        }

        let plan = ImagePlan(sourceWidth: width, sourceHeight: height, p)
        let d = plan.scaleDenominator(available: Self.denominators)
        let dw = (width + d - 1) / d, dh = (height + d - 1) / d
        let channels = p.channels
        let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let format: TJPF
        if cmyk { format = TJPF_CMYK } else if channels == 1 { format = TJPF_GRAY } else { format = p.channelOrder == .bgr ? TJPF_BGR : TJPF_RGB }
        let decodedChannels = cmyk ? 4 : channels
        let image = pixels.reserve(dw * dh * decodedChannels)

        if tjDecompress2(handle, bytes, size, image, Int32(dw), 0, Int32(dh), Int32(format.rawValue), Self.flags) != 0 {
            let fatal = tjGetErrorCode(handle) == Int32(TJERR_FATAL.rawValue)
            let message = lastError()
            let harmless = !fatal && Self.harmlessWarnings.contains { message.contains($0) }
            if !harmless || JPEGStructure.walk(jpeg) == .truncated { throw failure(jpeg, message) }
        }
        if cmyk { convertCMYK(image, count: dw * dh, channels: channels, order: p.channelOrder) }

        // Decoded-image coordinates of the source regions.
        let scale = Double(d)
        let x0 = plan.x.regionStart / scale, x1 = plan.x.regionEnd / scale
        let y0 = plan.y.regionStart / scale, y1 = plan.y.regionEnd / scale
        // Pillow skips a pass that would be the identity.
        let resizeColumns = !(plan.x.virtualSize == dw && x0 == 0 && x1 == Double(dw))
        let resizeRows = !(plan.y.virtualSize == dh && y0 == 0 && y1 == Double(dh))
        if resizeRows {
            rows.compute(inSize: dh, in0: y0, in1: y1, outSize: plan.y.virtualSize, first: plan.y.first, count: plan.y.count)
        }
        let decoded = RowSource(base: UnsafePointer(image), stride: dw * channels, origin: 0)
        let info = ImageInfo(width: width, height: height, scaleDenominator: d)
        guard resizeColumns else {
            return Prepared(info: info, plan: plan, channels: channels, source: decoded,
                            columnOffset: plan.x.first * channels, resizeRows: resizeRows)
        }
        columns.compute(inSize: dw, in0: x0, in1: x1, outSize: plan.x.virtualSize, first: plan.x.first, count: plan.x.count)
        let needed = resizeRows ? rows.sourceRange : plan.y.first ..< plan.y.first + plan.y.count
        let rowBytes = plan.x.count * channels
        let resized = horizontal.reserve(max(1, needed.count * rowBytes))
        Resample.horizontal(decoded, rows: needed, channels: channels, table: columns, into: resized)
        return Prepared(info: info, plan: plan, channels: channels,
                        source: RowSource(base: UnsafePointer(resized), stride: rowBytes, origin: needed.lowerBound),
                        columnOffset: 0, resizeRows: resizeRows)
    }

    /// In place: Adobe-style (inverted) CMYK to RGB/BGR as `value(c) * value(k) / 255`
    /// rounded, which is Pillow's CMYK -> RGB; gray then uses Pillow's RGB -> L weights.
    private func convertCMYK(_ image: UnsafeMutablePointer<UInt8>, count: Int, channels: Int, order: ChannelOrder) {
        @inline(__always) func product(_ a: UInt8, _ b: UInt8) -> Int {
            let t = Int(a) * Int(b) + 128
            return (t + (t >> 8)) >> 8
        }
        var input = UnsafePointer(image)
        var output = image
        for _ in 0..<count {
            let k = input[3]
            let r = product(input[0], k), g = product(input[1], k), b = product(input[2], k)
            if channels == 1 {
                output[0] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
            } else if order == .bgr {
                output[0] = UInt8(b); output[1] = UInt8(g); output[2] = UInt8(r)
            } else {
                output[0] = UInt8(r); output[1] = UInt8(g); output[2] = UInt8(b)
            }
            input += 4
            output += channels
        }
    }

    /// Writes every output row: padding, or the window's resized samples.
    private func emit<Sink: RowSink>(_ prepared: Prepared, into sink: inout Sink) {
        let plan = prepared.plan
        let channels = prepared.channels
        let length = plan.x.count * channels
        let row = rowBuffer.reserve(length)
        let acc = accumulator.reserve(length)
        for y in 0..<sink.height {
            let j = y - plan.y.offset
            guard j >= 0 && j < plan.y.count else {
                sink.fill(row: y, from: 0, to: sink.width)
                continue
            }
            let samples: UnsafePointer<UInt8>
            if prepared.resizeRows {
                let source = RowSource(base: prepared.source.base + prepared.columnOffset,
                                       stride: prepared.source.stride, origin: prepared.source.origin)
                Resample.verticalRow(source, table: rows, sample: j, length: length, accumulator: acc, into: row)
                samples = UnsafePointer(row)
            } else {
                samples = prepared.source.row(plan.y.first + j) + prepared.columnOffset
            }
            if plan.x.offset > 0 { sink.fill(row: y, from: 0, to: plan.x.offset) }
            sink.pixels(row: y, at: plan.x.offset, samples, count: plan.x.count)
            let end = plan.x.offset + plan.x.count
            if end < sink.width { sink.fill(row: y, from: end, to: sink.width) }
        }
    }

    private func trim() {
        let limit = retainedBytesLimit
        pixels.release(above: limit)
        horizontal.release(above: limit)
        rowBuffer.release(above: limit)
        accumulator.release(above: limit)
        columns.release(above: limit)
        rows.release(above: limit)
    }
}

/// Destination of the output rows (specialised per element type).
protocol RowSink {
    var width: Int { get }
    var height: Int { get }
    /// `count` interleaved pixels of `samples` at output (row, column).
    func pixels(row: Int, at column: Int, _ samples: UnsafePointer<UInt8>, count: Int)
    /// Padding for columns `from ..< to` of a row.
    func fill(row: Int, from: Int, to: Int)
}

struct FloatSink: RowSink {
    let output: UnsafeMutablePointer<Float>
    let width: Int
    let height: Int
    let channels: Int
    let planar: Bool
    /// channels * 256 values: the normalised value of each 8-bit sample, per channel.
    let lookup: UnsafeMutablePointer<Float>
    let fill: UInt8

    func pixels(row y: Int, at x: Int, _ samples: UnsafePointer<UInt8>, count: Int) {
        if planar {
            let plane = width * height
            for c in 0..<channels {
                let out = output + c * plane + y * width + x
                let table = lookup + c * 256
                var s = samples + c
                for i in 0..<count {
                    out[i] = table[Int(s.pointee)]
                    s += channels
                }
            }
        } else if channels == 3 {
            let out = output + (y * width + x) * 3
            let t0 = lookup, t1 = lookup + 256, t2 = lookup + 512
            for i in 0..<count {
                out[3 * i] = t0[Int(samples[3 * i])]
                out[3 * i + 1] = t1[Int(samples[3 * i + 1])]
                out[3 * i + 2] = t2[Int(samples[3 * i + 2])]
            }
        } else {
            let out = output + y * width + x
            for i in 0..<count { out[i] = lookup[Int(samples[i])] }
        }
    }

    func fill(row y: Int, from: Int, to: Int) {
        guard from < to else { return }
        for c in 0..<channels {
            let value = lookup[c * 256 + Int(fill)]
            if planar {
                (output + c * width * height + y * width + from).update(repeating: value, count: to - from)
            } else {
                let out = output + (y * width + from) * channels + c
                for i in 0..<(to - from) { out[i * channels] = value }
            }
        }
    }
}

struct ByteSink: RowSink {
    let output: UnsafeMutablePointer<UInt8>
    let width: Int
    let height: Int
    let channels: Int
    let planar: Bool
    let fill: UInt8

    func pixels(row y: Int, at x: Int, _ samples: UnsafePointer<UInt8>, count: Int) {
        if planar && channels > 1 {
            let plane = width * height
            for c in 0..<channels {
                let out = output + c * plane + y * width + x
                var s = samples + c
                for i in 0..<count {
                    out[i] = s.pointee
                    s += channels
                }
            }
        } else {
            (output + (y * width + x) * channels).update(from: samples, count: count * channels)
        }
    }

    func fill(row y: Int, from: Int, to: Int) {
        guard from < to else { return }
        if planar {
            for c in 0..<channels {
                (output + c * width * height + y * width + from).update(repeating: fill, count: to - from)
            }
        } else {
            (output + (y * width + from) * channels).update(repeating: fill, count: (to - from) * channels)
        }
    }
}
