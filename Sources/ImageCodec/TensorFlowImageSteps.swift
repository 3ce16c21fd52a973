/// TF graph preprocessing of one JPEG, reproduced exactly (float32 arithmetic in TF's order).
///
/// The graph this stands for (the classic TF Serving Inception export's `map_fn` body, or a
/// TF2 function doing the same):
///
///     image = decode_jpeg(jpeg, channels, dct_method)        # uint8 [h, w, c], full size
///     image = beforeResize steps on Float(image)             # e.g. convert_image_dtype
///     image = central_crop(image, centralCropFraction)        # optional
///     image = ResizeBilinear(image[None], [height, width],
///                            align_corners=False, half_pixel_centers)[0]
///     image = afterResize steps                               # e.g. (x - 0.5) * 2
///
/// With no `beforeResize` steps the uint8 samples go straight into the resize, which reads
/// them as Float: that is TF2's `tf.image.resize` of a uint8 image (ResizeBilinear with
/// half-pixel centres, float32 output).
///
/// The steps are the graph's elementwise operations with scalar constant (Const) operands,
/// in graph order, each feeding the next. They run the way TensorFlow runs that graph (TF
/// Serving, a SavedModel, a tf.function: Grappler's constant folding is on), which is not
/// always one float32 operation per step: see `graphExecution(of:)`. With
/// `grapplerRewrites` false they run literally instead, one float32 operation per step (as
/// eager TensorFlow does; or for steps already rewritten by the caller, e.g. when the graph
/// has a variable operand or same-kind steps that do not feed each other directly). Every
/// executed operation is one float32 operation per element (no fused multiply-add), so the
/// result is bit-identical to TensorFlow's: TensorFlowDecode.swift documents the details.
public struct TensorFlowImageSteps: Sendable, Equatable {
    /// One elementwise float32 operation with a scalar constant, `x op value`.
    public enum Arithmetic: Sendable, Equatable {
        case add(Float), sub(Float), mul(Float), div(Float)

        @inline(__always) func apply(_ x: Float) -> Float {
            switch self {
            case .add(let v): return x + v
            case .sub(let v): return x - v
            case .mul(let v): return x * v
            case .div(let v): return x / v
            }
        }

        var constant: Float {
            switch self {
            case .add(let v), .sub(let v), .mul(let v), .div(let v): return v
            }
        }
    }

    /// DecodeJpeg's channels attribute: 3 (RGB; 0 means 3 here) or 1 (grayscale).
    public var channels: Int
    /// DecodeJpeg dct_method: true for "" / "INTEGER_FAST" (libjpeg IFAST = TJFLAG_FASTDCT), false for "INTEGER_ACCURATE".
    public var fastDCT: Bool
    /// Applied in order to every decoded sample as Float (e.g. convert_image_dtype: .mul(Float(1.0/255.0))), before crop and resize.
    /// (Executed as `graphExecution(of:)` says.)
    public var beforeResize: [Arithmetic]
    /// tf.image.central_crop fraction in (0, 1], or nil. The crop starts at
    /// `Int32((side - side * fraction) / 2)` per axis, computed in Double (TF 2.x's float64
    /// arithmetic) and spans `side - 2 * start`. Pass the float64 value the graph multiplies
    /// by: in a TF 2.x graph with a dynamic image shape that is the float32 constant widened
    /// (`Double(Float(f))`), in eager code with a static shape the Python float itself; for
    /// 0.875 (and any f with (1 - f) / 2 = 1/2^k) both agree with TF 1.x's `side // 16`.
    public var centralCropFraction: Double?
    /// ResizeBilinear to height x width; halfPixelCenters: TF2 (true) or TF1 legacy (false); align_corners is always false.
    public var height: Int, width: Int
    public var halfPixelCenters: Bool
    /// Applied in order after the resize (e.g. .sub(0.5), .mul(2.0)). (Executed as `graphExecution(of:)` says.)
    public var afterResize: [Arithmetic]
    /// Whether `beforeResize` and `afterResize` each run as Grappler rewrites a chain of
    /// constant operations (`graphExecution(of:)`, the default), or literally.
    public var grapplerRewrites: Bool

    public init(channels: Int, fastDCT: Bool = true, beforeResize: [Arithmetic] = [], centralCropFraction: Double? = nil,
                height: Int, width: Int, halfPixelCenters: Bool, afterResize: [Arithmetic] = [],
                grapplerRewrites: Bool = true) {
        self.channels = channels
        self.fastDCT = fastDCT
        self.beforeResize = beforeResize
        self.centralCropFraction = centralCropFraction
        self.height = height
        self.width = width
        self.halfPixelCenters = halfPixelCenters
        self.afterResize = afterResize
        self.grapplerRewrites = grapplerRewrites
    }

    /// The float32 operations executed before and after the resize.
    var executedSteps: (before: [Arithmetic], after: [Arithmetic]) {
        guard grapplerRewrites else { return (beforeResize, afterResize) }
        return (Self.graphExecution(of: beforeResize), Self.graphExecution(of: afterResize))
    }

    /// The steps of the classic TF Serving Inception export (`inception_saved_model.py`):
    /// decode_jpeg(channels=3), convert_image_dtype(float32), central_crop(0.875),
    /// resize_bilinear(align_corners=False) to 299 x 299, then (x - 0.5) * 2.
    public static let inceptionExport = TensorFlowImageSteps(
        channels: 3, beforeResize: [.mul(Float(1.0 / 255.0))], centralCropFraction: 0.875,
        height: 299, width: 299, halfPixelCenters: false, afterResize: [.sub(0.5), .mul(2.0)])

    /// The float32 operations TensorFlow executes for a chain of graph steps (`x op c`
    /// nodes, each feeding the next), as Grappler's constant folding rewrites it:
    /// 1. a division by a constant becomes a multiplication by its float32 reciprocal
    ///    (`x / c` -> `x * (1 / c)`, ReduceDivToReciprocalMul);
    /// 2. consecutive additions/subtractions fold into one, and so do consecutive
    ///    multiplications, their constants combined in float32 (ConstantPushDown):
    ///    `(x + a) + b` -> `x + (b + a)`, `(x - a) + b` -> `x + (b - a)`,
    ///    `(x + a) - b` -> `x + (a - b)`, `(x - a) - b` -> `x - (a + b)`,
    ///    `(x * a) * b` -> `x * (b * a)`; a longer run folds from its first step on.
    /// Checked against TF 2.15 graphs on every chain of 1 to 3 of the four operations with
    /// Const operands. (Eager TensorFlow runs the steps literally; served models run graphs.
    /// With a variable operand Grappler does not fold constants, but its arithmetic optimizer
    /// may still reorder multiplications: outside this model.)
    public static func graphExecution(of steps: [Arithmetic]) -> [Arithmetic] {
        var executed: [Arithmetic] = []
        for step in steps {
            let next: Arithmetic
            if case .div(let c) = step { next = .mul(1 / c) } else { next = step }
            guard let last = executed.last else {
                executed.append(next)
                continue
            }
            switch (last, next) {
            case (.add(let a), .add(let b)): executed[executed.count - 1] = .add(b + a)
            case (.sub(let a), .add(let b)): executed[executed.count - 1] = .add(b - a)
            case (.add(let a), .sub(let b)): executed[executed.count - 1] = .add(a - b)
            case (.sub(let a), .sub(let b)): executed[executed.count - 1] = .sub(a + b)
            case (.mul(let a), .mul(let b)): executed[executed.count - 1] = .mul(b * a)
            default: executed.append(next)
            }
        }
        return executed
    }

    /// Channels of the output image: 1, or 3 for `channels` 3 and 0.
    public var outputChannels: Int { channels == 1 ? 1 : 3 }

    /// Throws `.invalidConfiguration` naming the first bad field.
    public func validate() throws(ImageError) {
        func fail(_ message: String) throws(ImageError) -> Never {
            throw .invalidConfiguration("TensorFlow image steps: \(message)")
        }
        let maxSide = 65_535
        if ![0, 1, 3].contains(channels) { try fail("channels must be 0, 1 or 3, not \(channels)") }
        if !(1...maxSide).contains(width) || !(1...maxSide).contains(height) {
            try fail("resize size \(width)x\(height) must be 1...\(maxSide) on each side")
        }
        if let fraction = centralCropFraction, !(fraction > 0 && fraction <= 1) {
            try fail("central crop fraction must be in (0, 1], not \(fraction)")
        }
        for step in beforeResize + afterResize where !step.constant.isFinite {
            try fail("step \(step) has a constant that is not finite")
        }
    }

    /// The crop window along one axis of `side` pixels: TF 2.x `central_crop`'s
    /// `start = int32((side - side * fraction) / 2)` in float64, `extent = side - 2 * start`.
    public static func centralCrop(side: Int, fraction: Double?) -> (start: Int, extent: Int) {
        guard let fraction, fraction != 1 else { return (0, side) }
        let s = Double(side)
        let start = Int((s - s * fraction) / 2)
        return (start, side - 2 * start)
    }
}
