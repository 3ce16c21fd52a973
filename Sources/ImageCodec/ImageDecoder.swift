import CTurboJPEG

/// JPEG bytes to one preprocessed model input image.
///
/// Pipeline: header (size check against `maxPixels`) -> TurboJPEG decode, reduced 1/2, 1/4
/// or 1/8 in the DCT domain when the resize shrinks by at least that much, straight to
/// RGB/BGR/gray (CMYK JPEGs are converted here) -> Pillow's BILINEAR resize (antialiased
/// when shrinking; horizontal pass, then vertical, 8-bit results, computed exactly in Float
/// SIMD: see Resampler.swift) of just the needed window -> padding, per-channel
/// normalisation through a 256-entry table, layout. The 8-bit samples are bit-identical to
/// Pillow `draft` + `resize(size, BILINEAR, box)` (same libjpeg-turbo decode).
///
/// With `ImagePreprocessing.tensorflow` set, the TensorFlow path instead: full-size decode,
/// TF's float steps, central crop and ResizeBilinear, bit-identical to TensorFlow's graph
/// (TensorFlowDecode.swift).
///
/// Not thread-safe: use one decoder per thread (or `ImageDecoderPool`). A decoder has no
/// thread affinity; it keeps its TurboJPEG handle and scratch buffers between calls, so a
/// steady stream of images allocates nothing. Buffers above `retainedBytesLimit` are freed
/// after the call that needed them.
public final class ImageDecoder {
    /// Created lazily; dropped after any failed decode (see `discardHandle`).
    private var handle: tjhandle?
    /// Scratch bytes kept per buffer between calls. 64 MiB keeps the full-size decode of the
    /// TensorFlow mode (`ImagePreprocessing.tensorflow`) for photos up to 21 MP RGB: freeing
    /// a 12 MP photo's 36 MB and faulting it in again on the next call costs about as much
    /// CPU as the decode itself (the Pillow path decodes DCT-reduced and needs far less).
    public var retainedBytesLimit = 64 << 20

    var pixels = ScratchBuffer<UInt8>()               // decoded image
    private var widened = ScratchBuffer<Float>()      // one source row as Float
    private var ring = ScratchBuffer<Float>()         // horizontally resampled rows, by row % slots
    private var accumulator = ScratchBuffer<Float>()  // vertical partial sums (two rows)
    private var rowBuffer = ScratchBuffer<UInt8>()    // one output row, 8-bit
    private var lookup = ScratchBuffer<Float>()       // channels * 256 normalised values
    private var columns = CoefficientTable()
    private var rows = CoefficientTable()
    var tensorflowScratch = TensorFlowScratch()      // TensorFlow-exact path (TensorFlowDecode.swift)

    /// Whether the resize runs its AVX2 + FMA loops (`AVX2Kernels.Resample`); both paths
    /// give the same bytes.
    let vectorLoops: Bool

    /// `portableLoops` keeps the resize on its baseline loops even on an AVX2 CPU (tests run
    /// both paths on one machine).
    public init(portableLoops: Bool = false) throws(ImageError) {
        vectorLoops = Resample.cpuHasAVX2 && !portableLoops
        _ = try decompressor()
    }

    deinit {
        discardHandle()
        pixels.release()
        widened.release()
        ring.release()
        accumulator.release()
        rowBuffer.release()
        lookup.release()
        columns.release()
        rows.release()
        tensorflowScratch.release(above: 0)
    }

    /// Decodes `jpeg` and writes one image of `preprocessing.elementCount` Float32 values,
    /// normalised, in `preprocessing.layout`, to `output` (whose count must be exactly that;
    /// otherwise, or with an invalid configuration, `.invalidConfiguration`). Client errors:
    /// `.notJPEG`, `.truncated`, `.corrupt`, `.tooLarge`; on any error `output` is unspecified.
    /// With `preprocessing.tensorflow` set: NHWC [height, width, channels], TensorFlow's values.
    @discardableResult
    public func decode(
        _ jpeg: UnsafeRawBufferPointer, _ preprocessing: ImagePreprocessing,
        into output: UnsafeMutableBufferPointer<Float>
    ) throws(ImageError) -> ImageInfo {
        try check(preprocessing, outputCount: output.count)
        if let steps = preprocessing.tensorflow {
            defer { trim() }
            return try decodeTensorFlow(jpeg, steps, maxPixels: preprocessing.maxPixels, into: output.baseAddress!)
        }
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
    /// Not for `preprocessing.tensorflow` (`.invalidConfiguration`): TF's steps make floats.
    @discardableResult
    public func decode(
        _ jpeg: UnsafeRawBufferPointer, _ preprocessing: ImagePreprocessing,
        into output: UnsafeMutableBufferPointer<UInt8>
    ) throws(ImageError) -> ImageInfo {
        try check(preprocessing, outputCount: output.count)
        if preprocessing.tensorflow != nil {
            throw .invalidConfiguration("TensorFlow image steps produce Float32 values, not 8-bit samples")
        }
        let prepared = try prepare(jpeg, preprocessing)
        var sink = ByteSink(output: output.baseAddress!, width: preprocessing.width, height: preprocessing.height,
                            channels: preprocessing.channels, planar: preprocessing.layout == .nchw,
                            fill: prepared.plan.fill)
        emit(prepared, into: &sink)
        trim()
        return prepared.info
    }

    func check(_ p: ImagePreprocessing, outputCount: Int) throws(ImageError) {
        try p.validate()
        if outputCount != p.elementCount {
            throw .invalidConfiguration("the output buffer holds \(outputCount) values; the image needs \(p.elementCount)")
        }
    }

    // MARK: - Decoding

    /// The decoded image and the resize plan; pointers valid until the decoder's next call.
    private struct Prepared {
        var info: ImageInfo
        var plan: ImagePlan
        var channels: Int
        /// Decoded pixels, `stride` bytes per row.
        var image: UnsafePointer<UInt8>
        var stride: Int
        /// False when a pass would be the identity (Pillow skips it too); its table is unset.
        var resizeColumns: Bool
        var resizeRows: Bool
    }

    static let flags = Int32(TJFLAG_LIMITSCANS)

    /// libjpeg warnings about metadata that leave the pixels intact.
    static let harmlessWarnings = [
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

    func decompressor() throws(ImageError) -> tjhandle {
        if let handle { return handle }
        guard let fresh = tjInitDecompress() else {
            throw .decoderUnavailable("TurboJPEG decoder could not be created: \(String(cString: tjGetErrorStr2(nil)))")
        }
        handle = fresh
        return fresh
    }

    /// TurboJPEG 2.1 leaves libjpeg mid-header when reading a header fails, and the next
    /// image then fails too; after any failure the handle is replaced (errors are rare).
    private func discardHandle() {
        if let handle { tjDestroy(handle) }
        handle = nil
    }

    /// libjpeg's message for the last failure on this thread (read before `discardHandle`).
    func lastError(_ handle: tjhandle) -> String {
        guard let text = tjGetErrorStr2(handle) else { return "unknown error" }
        return String(cString: text)
    }

    /// The error for a stream libjpeg failed on (truncated if the data ends before EOI);
    /// replaces the handle.
    func failure(_ jpeg: UnsafeRawBufferPointer, _ message: String) -> ImageError {
        discardHandle()
        if JPEGStructure.isTruncated(jpeg) {
            return .truncated("the JPEG data is truncated: it ends after \(jpeg.count) bytes, before the end-of-image marker")
        }
        return .corrupt("the JPEG data is corrupt: \(message)")
    }

    /// A JPEG's frame header, read before decoding (the size already checked against `maxPixels`).
    struct Header {
        var bytes: UnsafePointer<UInt8>
        var size: UInt
        var width: Int
        var height: Int
        /// TurboJPEG's colour space (TJCS), -1 if unknown.
        var colorspace: Int32
        var isCMYK: Bool {
            colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        }
    }

    /// Reads the header of `jpeg` and checks its size against `maxPixels`.
    func header(_ jpeg: UnsafeRawBufferPointer, maxPixels: Int) throws(ImageError) -> Header {
        guard jpeg.count >= 2, jpeg[0] == 0xFF, jpeg[1] == 0xD8, let base = jpeg.baseAddress else {
            throw notJPEGError(jpeg)
        }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let size = UInt(jpeg.count)
        let handle = try decompressor()

        // Header. A -1 with the size filled in (an unusual subsampling, a warning) is left
        // for the full decode to judge; no size means the header itself is unreadable.
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = -1, colorspace: Int32 = -1
        let headerResult = tjDecompressHeader3(handle, bytes, size, &w, &h, &subsampling, &colorspace)
        guard w > 0, h > 0 else {
            // Result 0 without a size: libjpeg met an end-of-image (or the end of the data,
            // where it inserts one) before any frame.
            throw failure(jpeg, headerResult == 0 ? "the data holds tables only, no image" : lastError(handle))
        }
        let width = Int(w), height = Int(h)
        if width * height > maxPixels {
            throw .tooLarge("the image is \(width)x\(height) = \(width * height) pixels; the limit is \(maxPixels)")
        }
        return Header(bytes: bytes, size: size, width: width, height: height, colorspace: colorspace)
    }

    /// Decodes the whole image into `image` (`width` x `height` pixels of `format`, as
    /// TurboJPEG scales the header's size): harmless libjpeg warnings are ignored, any other
    /// problem throws.
    func decompress(
        _ jpeg: UnsafeRawBufferPointer, _ header: Header, into image: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
        format: TJPF, flags: Int32 = ImageDecoder.flags
    ) throws(ImageError) {
        let handle = try decompressor()
        if tjDecompress2(handle, header.bytes, header.size, image, Int32(width), 0, Int32(height), Int32(format.rawValue),
                         flags) != 0 {
            let fatal = tjGetErrorCode(handle) == Int32(TJERR_FATAL.rawValue)
            let message = lastError(handle)
            let harmless = !fatal && Self.harmlessWarnings.contains { message.contains($0) }
            if !harmless || JPEGStructure.isTruncated(jpeg) { throw failure(jpeg, message) }
        }
    }

    private func prepare(_ jpeg: UnsafeRawBufferPointer, _ p: ImagePreprocessing) throws(ImageError) -> Prepared {
        let header = try header(jpeg, maxPixels: p.maxPixels)
        let width = header.width, height = header.height
        let plan = ImagePlan(sourceWidth: width, sourceHeight: height, p)
        let d = plan.scaleDenominator(available: Self.denominators)
        let dw = (width + d - 1) / d, dh = (height + d - 1) / d
        let channels = p.channels
        let cmyk = header.isCMYK
        let format: TJPF
        if cmyk { format = TJPF_CMYK } else if channels == 1 { format = TJPF_GRAY } else { format = p.channelOrder == .bgr ? TJPF_BGR : TJPF_RGB }
        let decodedChannels = cmyk ? 4 : channels
        let image = pixels.reserve(dw * dh * decodedChannels)
        try decompress(jpeg, header, into: image, width: dw, height: dh, format: format)
        if cmyk { convertCMYK(image, count: dw * dh, channels: channels, order: p.channelOrder) }
        return resampling(UnsafePointer(image), width: dw, height: dh, channels: channels, plan: plan,
                          denominator: d, info: ImageInfo(width: width, height: height, scaleDenominator: d))
    }

    /// The resize tables for an image decoded at 1/`denominator` of the plan's source size.
    private func resampling(
        _ image: UnsafePointer<UInt8>, width dw: Int, height dh: Int, channels: Int, plan: ImagePlan,
        denominator: Int, info: ImageInfo
    ) -> Prepared {
        // Decoded-image coordinates of the source regions.
        let scale = Double(denominator)
        let x0 = plan.x.regionStart / scale, x1 = plan.x.regionEnd / scale
        let y0 = plan.y.regionStart / scale, y1 = plan.y.regionEnd / scale
        // Pillow skips a pass that would be the identity.
        let resizeColumns = !(plan.x.virtualSize == dw && x0 == 0 && x1 == Double(dw))
        let resizeRows = !(plan.y.virtualSize == dh && y0 == 0 && y1 == Double(dh))
        if resizeColumns {
            columns.compute(inSize: dw, in0: x0, in1: x1, outSize: plan.x.virtualSize, first: plan.x.first,
                            count: plan.x.count, lanes: channels == 3, pairs: vectorLoops)
        }
        if resizeRows {
            rows.compute(inSize: dh, in0: y0, in1: y1, outSize: plan.y.virtualSize, first: plan.y.first, count: plan.y.count)
        }
        return Prepared(info: info, plan: plan, channels: channels, image: image, stride: dw * channels,
                        resizeColumns: resizeColumns, resizeRows: resizeRows)
    }

    /// Preprocesses already decoded interleaved 8-bit pixels (`channels` must match the
    /// config's) exactly as a JPEG decoded at full size: the resampler without TurboJPEG.
    func preprocess(
        pixels: UnsafePointer<UInt8>, width: Int, height: Int, _ p: ImagePreprocessing,
        into output: UnsafeMutableBufferPointer<UInt8>
    ) throws(ImageError) {
        try check(p, outputCount: output.count)
        let plan = ImagePlan(sourceWidth: width, sourceHeight: height, p)
        let prepared = resampling(pixels, width: width, height: height, channels: p.channels, plan: plan,
                                  denominator: 1, info: ImageInfo(width: width, height: height, scaleDenominator: 1))
        var sink = ByteSink(output: output.baseAddress!, width: p.width, height: p.height, channels: p.channels,
                            planar: p.layout == .nchw, fill: plan.fill)
        emit(prepared, into: &sink)
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

    /// Writes every output row: padding, or the window's resized samples. Streams: each
    /// needed source row is widened to Float and resampled horizontally once, into a ring
    /// of as many rows as the vertical filter's longest tap run; each output row is then
    /// the weighted sum of its ring rows, rounded to 8 bits.
    private func emit<Sink: RowSink>(_ prepared: Prepared, into sink: inout Sink) {
        let plan = prepared.plan
        let channels = prepared.channels
        let length = plan.x.count * channels
        let bytesRow = rowBuffer.reserve(length + 8)
        let high = accumulator.reserve(2 * (length + 8))
        let low = high + (length + 8)
        // Ring of horizontally resampled rows (one padding value each, see `horizontal`).
        let slots = prepared.resizeRows ? max(1, rows.maxTaps) : 1
        let slotStride = length + 4
        let ringRows = ring.reserve(slots * slotStride)
        let sourceColumns = prepared.resizeColumns ? columns.sourceRange : plan.x.first ..< plan.x.first + plan.x.count
        let widePadding = prepared.resizeColumns ? Resample.rowPadding(columns, channels: channels) : 4
        let wide = widened.reserve(sourceColumns.count * channels + widePadding)
        wide.update(repeating: 0, count: sourceColumns.count * channels + widePadding)
        var computed = 0  // source rows below this are done (the last `slots` of them kept)

        func resampled(_ r: Int) -> UnsafePointer<Float> { UnsafePointer(ringRows + (r % slots) * slotStride) }
        func produce(upTo end: Int, from start: Int) {
            let from = max(computed, start)
            guard from < end else { return }
            for r in from..<end {
                let slot = ringRows + (r % slots) * slotStride
                let bytes = prepared.image + r * prepared.stride + sourceColumns.lowerBound * channels
                if prepared.resizeColumns {
                    Resample.widen(bytes, into: wide, count: sourceColumns.count * channels)
                    Resample.horizontal(wide, origin: sourceColumns.lowerBound, channels: channels, table: columns, into: slot)
                } else {
                    Resample.widen(bytes, into: slot, count: length)
                }
            }
            computed = max(computed, end)
        }

        for y in 0..<sink.height {
            let j = y - plan.y.offset
            guard j >= 0 && j < plan.y.count else {
                sink.fill(row: y, from: 0, to: sink.width)
                continue
            }
            let samples: UnsafePointer<UInt8>
            if prepared.resizeRows {
                let start = Int(rows.starts.pointer![j]), taps = Int(rows.taps.pointer![j])
                produce(upTo: start + taps, from: start)
                Resample.vertical(resampled, table: rows, sample: j, length: length, high: high, low: low, into: bytesRow,
                                  vectorLoops: vectorLoops)
                samples = UnsafePointer(bytesRow)
            } else if prepared.resizeColumns {
                let r = plan.y.first + j
                produce(upTo: r + 1, from: r)
                Resample.narrow(resampled(r), into: bytesRow, count: length)
                samples = UnsafePointer(bytesRow)
            } else {
                samples = prepared.image + (plan.y.first + j) * prepared.stride + plan.x.first * channels
            }
            if plan.x.offset > 0 { sink.fill(row: y, from: 0, to: plan.x.offset) }
            sink.pixels(row: y, at: plan.x.offset, samples, count: plan.x.count)
            let end = plan.x.offset + plan.x.count
            if end < sink.width { sink.fill(row: y, from: end, to: sink.width) }
        }
    }

    func trim() {
        let limit = retainedBytesLimit
        pixels.release(above: limit)
        widened.release(above: limit)
        ring.release(above: limit)
        accumulator.release(above: limit)
        rowBuffer.release(above: limit)
        columns.release(above: limit)
        rows.release(above: limit)
        tensorflowScratch.release(above: limit)
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
