/// How a JPEG becomes one model input image: geometry, channels, normalisation and layout.
///
/// Per output element: `out = (pixel * scale - mean[c]) / std[c]`, with `pixel` the resized
/// 8-bit sample (0...255) of channel `c` in `channelOrder`. `mean` and `std` hold one value
/// per channel or a single value for all channels. The UInt8 output ignores scale/mean/std.
///
/// With `tensorflow` set the image takes TensorFlow's graph preprocessing instead (see
/// `TensorFlowImageSteps`): `width`, `height` and `channels` must equal the steps',
/// `layout` is `.nhwc`, the output is Float32 only, and `channelOrder`, `resize`, `scale`,
/// `mean` and `std` are not used; `maxPixels` still applies.
public struct ImagePreprocessing: Sendable, Equatable {
    /// Model input spatial size (output columns and rows).
    public var width: Int
    public var height: Int
    /// 1 (the JPEG's luma, decoded as grayscale) or 3.
    public var channels: Int
    /// Order of the three colour channels in the output; ignored when `channels == 1`.
    public var channelOrder: ChannelOrder
    public var layout: Layout
    public var resize: ResizeMode
    public var scale: Float
    public var mean: [Float]
    public var std: [Float]
    /// Largest accepted source width * height (checked from the header, before decoding).
    public var maxPixels: Int
    /// TensorFlow-exact preprocessing instead of the Pillow pipeline, or nil.
    public var tensorflow: TensorFlowImageSteps?

    public static let defaultMaxPixels = 50_000_000

    public init(
        width: Int, height: Int, channels: Int = 3, channelOrder: ChannelOrder = .rgb,
        layout: Layout = .nhwc, resize: ResizeMode = .stretch,
        scale: Float = 1, mean: [Float] = [0], std: [Float] = [1],
        maxPixels: Int = ImagePreprocessing.defaultMaxPixels, tensorflow: TensorFlowImageSteps? = nil
    ) {
        self.width = width
        self.height = height
        self.channels = channels
        self.channelOrder = channelOrder
        self.layout = layout
        self.resize = resize
        self.scale = scale
        self.mean = mean
        self.std = std
        self.maxPixels = maxPixels
        self.tensorflow = tensorflow
    }

    /// The configuration for TensorFlow's graph preprocessing `steps`: size and channels
    /// from the steps, NHWC.
    public init(tensorflow steps: TensorFlowImageSteps, maxPixels: Int = ImagePreprocessing.defaultMaxPixels) {
        self.init(width: steps.width, height: steps.height, channels: steps.outputChannels, layout: .nhwc,
                  maxPixels: maxPixels, tensorflow: steps)
    }

    /// Elements of one output image: width * height * channels.
    public var elementCount: Int { width * height * channels }

    /// Throws `.invalidConfiguration` naming the first bad field. Call it when a model's
    /// config is loaded; `decode` repeats it (cheap) so a bad config never traps.
    public func validate() throws(ImageError) {
        func fail(_ message: String) throws(ImageError) -> Never {
            throw .invalidConfiguration(message)
        }
        let maxSide = 65_535
        if !(1...maxSide).contains(width) || !(1...maxSide).contains(height) {
            try fail("image size \(width)x\(height) must be 1...\(maxSide) on each side")
        }
        if channels != 1 && channels != 3 { try fail("channels must be 1 or 3, not \(channels)") }
        if mean.count != 1 && mean.count != channels {
            try fail("mean has \(mean.count) values; expected 1 or \(channels)")
        }
        if std.count != 1 && std.count != channels {
            try fail("std has \(std.count) values; expected 1 or \(channels)")
        }
        if !scale.isFinite || mean.contains(where: { !$0.isFinite }) {
            try fail("scale and mean must be finite")
        }
        if std.contains(where: { !$0.isFinite || $0 == 0 }) { try fail("std values must be finite and non-zero") }
        if maxPixels < 1 { try fail("maxPixels must be positive") }
        if let steps = tensorflow {
            try steps.validate()
            if width != steps.width || height != steps.height || channels != steps.outputChannels {
                try fail("with TensorFlow steps the image is \(steps.width)x\(steps.height)x\(steps.outputChannels) "
                         + "as the steps say, not \(width)x\(height)x\(channels)")
            }
            if layout != .nhwc { try fail("TensorFlow steps produce NHWC, not \(layout.rawValue)") }
        }
        switch resize {
        case .stretch, .letterbox: break
        case .shorterSide(let side):
            if !(1...maxSide).contains(side) { try fail("shorterSide must be 1...\(maxSide), not \(side)") }
        case .centerCropFraction(let fraction):
            if !(fraction > 0 && fraction <= 1) { try fail("centerCropFraction must be in (0, 1], not \(fraction)") }
        }
    }
}

public enum ChannelOrder: String, Sendable, Equatable {
    case rgb, bgr
}

public enum Layout: String, Sendable, Equatable {
    /// [height][width][channel]
    case nhwc
    /// [channel][height][width]
    case nchw
}

/// Geometry from the source image to `width` x `height`. Every resize is Pillow's
/// `Image.resize(size, BILINEAR, box)`: a triangle filter widened by the shrink factor
/// (antialiasing), pixel centres at +0.5.
public enum ResizeMode: Sendable, Equatable {
    /// The whole image to width x height (aspect ratio not kept).
    case stretch
    /// torchvision `Resize(side)` + `CenterCrop((height, width))`: the shorter side becomes
    /// `side`, the longer `Int(side * long / short)`; then the centre crop, offset
    /// `round((resized - crop) / 2)` (half to even). A crop larger than the resized image
    /// is padded with pixel value 0, the image centred at `(crop - resized) / 2` (floor).
    case shorterSide(Int)
    /// TF `central_crop(fraction)` then resize to width x height: the crop starts at
    /// `Int((side - side * fraction) / 2)` and spans `side - 2 * start`, per axis.
    case centerCropFraction(Double)
    /// Scale by `r = min(width / W, height / H)` to `round(W * r)` x `round(H * r)` (half to
    /// even, at least 1), centred at `(width - w) / 2`, `(height - h) / 2` (floor); the
    /// rest is the pixel value `fill` (normalised like any pixel).
    case letterbox(fill: UInt8)
}

/// What was decoded.
public struct ImageInfo: Sendable, Equatable {
    /// Source JPEG size.
    public var width: Int
    public var height: Int
    /// 1, 2, 4 or 8: the JPEG was decoded at 1/scaleDenominator in the DCT domain.
    public var scaleDenominator: Int
}
