/// One axis of the mapping from source pixels to output pixels: the source interval
/// `[regionStart, regionEnd)` (full-resolution pixel units) is resized to `virtualSize`
/// samples, of which `first ..< first + count` are written at output index `offset ...`.
/// Output indices outside `offset ..< offset + count` are padding.
struct AxisPlan: Equatable {
    var regionStart: Double
    var regionEnd: Double
    var virtualSize: Int
    var first: Int
    var count: Int
    var offset: Int

    /// Source pixels per virtual sample (above 1 when shrinking).
    var ratio: Double { (regionEnd - regionStart) / Double(virtualSize) }

    static func whole(_ size: Int, to virtualSize: Int, output: Int) -> AxisPlan {
        centred(regionStart: 0, regionEnd: Double(size), virtualSize: virtualSize, output: output)
    }

    /// The centred window of `output` samples (torchvision CenterCrop rounding), or the whole
    /// virtual image centred in `output` when it is smaller.
    static func centred(regionStart: Double, regionEnd: Double, virtualSize: Int, output: Int) -> AxisPlan {
        if virtualSize >= output {
            let first = Int((Double(virtualSize - output) / 2).rounded(.toNearestOrEven))
            return AxisPlan(regionStart: regionStart, regionEnd: regionEnd, virtualSize: virtualSize,
                            first: first, count: output, offset: 0)
        }
        return AxisPlan(regionStart: regionStart, regionEnd: regionEnd, virtualSize: virtualSize,
                        first: 0, count: virtualSize, offset: (output - virtualSize) / 2)
    }
}

struct ImagePlan: Equatable {
    var x: AxisPlan
    var y: AxisPlan
    /// Pixel value of the padding (before normalisation).
    var fill: UInt8

    /// The plan for a `sourceWidth` x `sourceHeight` image; `p` must be valid.
    init(sourceWidth w: Int, sourceHeight h: Int, _ p: ImagePreprocessing) {
        switch p.resize {
        case .stretch:
            x = .whole(w, to: p.width, output: p.width)
            y = .whole(h, to: p.height, output: p.height)
            fill = 0
        case .shorterSide(let side):
            let (vw, vh): (Int, Int)
            if w <= h {
                vw = side
                vh = max(1, Int(Double(side) * Double(h) / Double(w)))
            } else {
                vh = side
                vw = max(1, Int(Double(side) * Double(w) / Double(h)))
            }
            x = .whole(w, to: vw, output: p.width)
            y = .whole(h, to: vh, output: p.height)
            fill = 0
        case .centerCropFraction(let fraction):
            func crop(_ size: Int, _ output: Int) -> AxisPlan {
                let start = Int((Double(size) - Double(size) * fraction) / 2)
                let extent = max(1, size - 2 * start)
                return AxisPlan(regionStart: Double(start), regionEnd: Double(start + extent),
                                virtualSize: output, first: 0, count: output, offset: 0)
            }
            x = crop(w, p.width)
            y = crop(h, p.height)
            fill = 0
        case .letterbox(let value):
            let r = min(Double(p.width) / Double(w), Double(p.height) / Double(h))
            let vw = min(p.width, max(1, Int((Double(w) * r).rounded(.toNearestOrEven))))
            let vh = min(p.height, max(1, Int((Double(h) * r).rounded(.toNearestOrEven))))
            x = .whole(w, to: vw, output: p.width)
            y = .whole(h, to: vh, output: p.height)
            fill = value
        }
    }

    /// The DCT-domain reduction: the largest available denominator d (of 2, 4, 8) with at
    /// least d source pixels per virtual sample on both axes, so the decoded image is never
    /// smaller than what the resize needs; 1 when the image is not shrunk by 2x or more.
    func scaleDenominator(available: [Int]) -> Int {
        let limit = min(x.ratio, y.ratio)
        return available.filter { Double($0) <= limit }.max() ?? 1
    }
}
