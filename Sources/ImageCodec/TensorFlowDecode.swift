import CTurboJPEG

// The TensorFlow-exact path of `ImageDecoder` (`ImagePreprocessing.tensorflow`).
//
// What TensorFlow does, and how each step is reproduced:
// - DecodeJpeg (tensorflow/core/lib/jpeg/jpeg_mem.cc): libjpeg-turbo at full size (ratio 1),
//   fancy upsampling, dct_method IFAST ("" / "INTEGER_FAST") or ISLOW ("INTEGER_ACCURATE"),
//   output RGB or grayscale (a gray JPEG replicated to RGB, an RGB JPEG's luma for one
//   channel). TurboJPEG's tjDecompress2 with TJFLAG_FASTDCT / TJFLAG_ACCURATEDCT runs the
//   same libjpeg-turbo code, so the samples are the same bytes. A CMYK or YCCK JPEG is
//   decoded to CMYK and converted per pixel as TF does, in integers: with an Adobe APP14
//   marker (Pillow, Photoshop: inverted CMYK) r = k * c / 255, otherwise
//   r = (255 - k) * (255 - c) / 255 (truncating division). TF cannot decode CMYK to one
//   channel (libjpeg: "Unsupported color conversion request"), and neither can we. TF refuses
//   images with height * width * components >= 2^29; so do we.
// - The `beforeResize` steps on every sample, from Float(sample): the float32 operations
//   TensorFlow's graph optimizer leaves of them (TensorFlowImageSteps.graphExecution; or the
//   steps literally with grapplerRewrites false), in order. A sample is one of 256 values, so they are tabulated (same operations,
//   same results) and only the samples the resize reads are looked up.
// - central_crop: TensorFlowImageSteps.centralCrop (float64 offsets, as TF 2.x).
// - ResizeBilinear (tensorflow/core/kernels/image/resize_bilinear_op.cc, align_corners
//   false): per axis scale = Float(in) / Float(out); source coordinate
//   s = Float(i) * scale (legacy) or (Float(i) + 0.5) * scale - 0.5 (half-pixel centres);
//   lower = max(Int(floor(s)), 0), upper = min(Int(ceil(s)), in - 1), lerp = s - floor(s);
//   top = tl + (tr - tl) * xlerp, bottom = bl + (br - bl) * xlerp,
//   out = top + (bottom - top) * ylerp, all float32 without fused multiply-add. `top` and
//   `bottom` depend only on a source row and the output column, so each needed source row
//   is interpolated horizontally once (kept while the next output row uses it too), then
//   each output row is the vertical interpolation of two such rows: the same operations
//   on the same operands as TF's per-pixel formula.
// - The `afterResize` steps on every output value, likewise.

/// Scratch memory of the TensorFlow path, kept by the decoder between calls.
struct TensorFlowScratch {
    var lookup = ScratchBuffer<Float>()         // 256 values: the beforeResize steps of each sample
    var columnLower = ScratchBuffer<Int32>()    // per output column: the source columns' sample offsets
    var columnUpper = ScratchBuffer<Int32>()
    var columnLerp = ScratchBuffer<Float>()
    var rowLower = ScratchBuffer<Int32>()       // per output row: the source rows
    var rowUpper = ScratchBuffer<Int32>()
    var rowLerp = ScratchBuffer<Float>()
    var rows = ScratchBuffer<Float>()           // two horizontally interpolated source rows

    mutating func release(above limit: Int) {
        lookup.release(above: limit)
        columnLower.release(above: limit)
        columnUpper.release(above: limit)
        columnLerp.release(above: limit)
        rowLower.release(above: limit)
        rowUpper.release(above: limit)
        rowLerp.release(above: limit)
        rows.release(above: limit)
    }
}

/// TensorFlow's images above this many samples (height * width * the JPEG's components)
/// are refused by its decoder (`jpeg_mem.cc`: "Image too large").
let tensorflowSampleLimit = 1 << 29

extension ImageDecoder {
    /// Decodes `jpeg` and writes `steps.height * steps.width * steps.outputChannels` floats
    /// (NHWC) to `output`, bit-identical to TensorFlow's graph.
    func decodeTensorFlow(
        _ jpeg: UnsafeRawBufferPointer, _ steps: TensorFlowImageSteps, maxPixels: Int,
        into output: UnsafeMutablePointer<Float>
    ) throws(ImageError) -> ImageInfo {
        let header = try header(jpeg, maxPixels: maxPixels)
        let width = header.width, height = header.height
        let cmyk = header.isCMYK
        let components = cmyk ? 4 : header.colorspace == Int32(TJCS_GRAY.rawValue) ? 1 : 3
        if width * height * components >= tensorflowSampleLimit {
            throw .tooLarge("the image is \(width)x\(height) with \(components) components = \(width * height * components) "
                            + "samples; TensorFlow's decode_jpeg refuses \(tensorflowSampleLimit) or more")
        }
        let channels = steps.outputChannels
        if cmyk && channels == 1 {
            throw .corrupt("the JPEG is CMYK, which cannot be decoded to one channel "
                           + "(TensorFlow's decode_jpeg with channels=1 fails on it too)")
        }
        let format = cmyk ? TJPF_CMYK : channels == 1 ? TJPF_GRAY : TJPF_RGB
        let image = pixels.reserve(width * height * (cmyk ? 4 : channels))
        let dct = steps.fastDCT ? Int32(TJFLAG_FASTDCT) : Int32(TJFLAG_ACCURATEDCT)
        try decompress(jpeg, header, into: image, width: width, height: height, format: format, flags: Self.flags | dct)
        if cmyk {
            TensorFlowPixels.cmykToRGB(image, count: width * height, adobe: JPEGStructure.hasAdobeMarker(jpeg))
        }
        TensorFlowPixels.preprocess(UnsafePointer(image), width: width, height: height, channels: channels, steps,
                                    scratch: &tensorflowScratch, into: output)
        return ImageInfo(width: width, height: height, scaleDenominator: 1)
    }
}

/// The TensorFlow path's pixel arithmetic (also run by the tests on decoded pixels).
enum TensorFlowPixels {
    /// In place: 4-byte CMYK (as libjpeg returns it) to 3-byte RGB the way TF's
    /// `jpeg_mem.cc` converts it.
    static func cmykToRGB(_ image: UnsafeMutablePointer<UInt8>, count: Int, adobe: Bool) {
        var input = UnsafePointer(image)
        var output = image
        if adobe {
            for _ in 0..<count {
                let k = Int(input[3])
                output[0] = UInt8(k * Int(input[0]) / 255)
                output[1] = UInt8(k * Int(input[1]) / 255)
                output[2] = UInt8(k * Int(input[2]) / 255)
                input += 4
                output += 3
            }
        } else {
            for _ in 0..<count {
                let k = 255 - Int(input[3])
                output[0] = UInt8(k * (255 - Int(input[0])) / 255)
                output[1] = UInt8(k * (255 - Int(input[1])) / 255)
                output[2] = UInt8(k * (255 - Int(input[2])) / 255)
                input += 4
                output += 3
            }
        }
    }

    /// TF's per-axis interpolation table (`compute_interpolation_weights`): `lower` and
    /// `upper` are source indices times `unit`.
    static func axis(
        inSize: Int, outSize: Int, halfPixelCenters: Bool, unit: Int,
        lower: UnsafeMutablePointer<Int32>, upper: UnsafeMutablePointer<Int32>, lerp: UnsafeMutablePointer<Float>
    ) {
        let scale = Float(inSize) / Float(outSize)
        for i in 0..<outSize {
            let s = halfPixelCenters ? (Float(i) + 0.5) * scale - 0.5 : Float(i) * scale
            let f = s.rounded(.down)
            lower[i] = Int32(max(Int(f), 0) * unit)
            upper[i] = Int32(min(Int(s.rounded(.up)), inSize - 1) * unit)
            lerp[i] = s - f
        }
    }

    /// The steps after decoding, on `width` x `height` interleaved 8-bit pixels of
    /// `channels` (= steps.outputChannels): before-steps, central crop, ResizeBilinear,
    /// after-steps; writes steps.height * steps.width * channels floats to `output`.
    static func preprocess(
        _ image: UnsafePointer<UInt8>, width: Int, height: Int, channels: Int, _ steps: TensorFlowImageSteps,
        scratch: inout TensorFlowScratch, into output: UnsafeMutablePointer<Float>
    ) {
        let (before, after) = steps.executedSteps
        let lut = scratch.lookup.reserve(256)
        for v in 0..<256 {
            var x = Float(v)
            for step in before { x = step.apply(x) }
            lut[v] = x
        }
        let (y0, cropHeight) = TensorFlowImageSteps.centralCrop(side: height, fraction: steps.centralCropFraction)
        let (x0, cropWidth) = TensorFlowImageSteps.centralCrop(side: width, fraction: steps.centralCropFraction)
        let outWidth = steps.width, outHeight = steps.height
        let xl = scratch.columnLower.reserve(outWidth), xu = scratch.columnUpper.reserve(outWidth)
        let xf = scratch.columnLerp.reserve(outWidth)
        axis(inSize: cropWidth, outSize: outWidth, halfPixelCenters: steps.halfPixelCenters, unit: channels,
             lower: xl, upper: xu, lerp: xf)
        let yl = scratch.rowLower.reserve(outHeight), yu = scratch.rowUpper.reserve(outHeight)
        let yf = scratch.rowLerp.reserve(outHeight)
        axis(inSize: cropHeight, outSize: outHeight, halfPixelCenters: steps.halfPixelCenters, unit: 1,
             lower: yl, upper: yu, lerp: yf)

        let length = outWidth * channels
        let buffers = scratch.rows.reserve(2 * length)
        var top = buffers, bottom = buffers + length
        var topRow = -1, bottomRow = -1
        let stride = width * channels
        let origin = image + y0 * stride + x0 * channels

        func horizontal(_ r: Int, into row: UnsafeMutablePointer<Float>) {
            let source = origin + r * stride
            if channels == 3 {
                for x in 0..<outWidth {
                    let l = source + Int(xl[x]), u = source + Int(xu[x]), f = xf[x]
                    let o = row + 3 * x
                    let l0 = lut[Int(l[0])], l1 = lut[Int(l[1])], l2 = lut[Int(l[2])]
                    o[0] = l0 + (lut[Int(u[0])] - l0) * f
                    o[1] = l1 + (lut[Int(u[1])] - l1) * f
                    o[2] = l2 + (lut[Int(u[2])] - l2) * f
                }
            } else {
                for x in 0..<outWidth {
                    let l = lut[Int(source[Int(xl[x])])]
                    row[x] = l + (lut[Int(source[Int(xu[x])])] - l) * xf[x]
                }
            }
        }

        for y in 0..<outHeight {
            let a = Int(yl[y]), b = Int(yu[y])
            if topRow != a {
                if bottomRow == a {
                    swap(&top, &bottom)
                    swap(&topRow, &bottomRow)
                } else {
                    horizontal(a, into: top)
                    topRow = a
                }
            }
            let lowerRow: UnsafeMutablePointer<Float>
            if b == a {
                lowerRow = top
            } else {
                if bottomRow != b {
                    horizontal(b, into: bottom)
                    bottomRow = b
                }
                lowerRow = bottom
            }
            let out = output + y * length
            let f = yf[y]
            for i in 0..<length { out[i] = top[i] + (lowerRow[i] - top[i]) * f }
            for step in after {
                switch step {
                case .add(let v): for i in 0..<length { out[i] = out[i] + v }
                case .sub(let v): for i in 0..<length { out[i] = out[i] - v }
                case .mul(let v): for i in 0..<length { out[i] = out[i] * v }
                case .div(let v): for i in 0..<length { out[i] = out[i] / v }
                }
            }
        }
    }
}

extension JPEGStructure {
    /// Whether libjpeg sets `saw_Adobe_marker` on this JPEG: an APP14 segment of at least
    /// 12 data bytes starting "Adobe", among the segments before the first scan.
    static func hasAdobeMarker(_ data: UnsafeRawBufferPointer) -> Bool {
        let n = data.count
        guard n >= 4, data[0] == 0xFF, data[1] == 0xD8 else { return false }
        var i = 2
        var found = false
        while true {
            while i < n && data[i] != 0xFF { i += 1 }
            while i < n && data[i] == 0xFF { i += 1 }
            guard i < n else { return found }
            let marker = data[i]
            i += 1
            switch marker {
            case 0xD9, 0xDA:
                return found
            case 0x00, 0x01, 0xD0...0xD8:
                continue
            default:
                guard i + 2 <= n else { return found }
                let length = Int(data[i]) << 8 | Int(data[i + 1])
                guard length >= 2 else { return found }
                if marker == 0xEE && length - 2 >= 12 && i + 7 <= n
                    && Array(data[(i + 2)..<(i + 7)]) == Array("Adobe".utf8) {
                    found = true
                }
                i += length
            }
        }
    }
}
