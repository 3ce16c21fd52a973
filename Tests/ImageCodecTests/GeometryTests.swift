import Testing
@testable import ImageCodec

@Suite struct GeometryTests {
    func plan(_ w: Int, _ h: Int, _ width: Int, _ height: Int, _ resize: ResizeMode) -> ImagePlan {
        ImagePlan(sourceWidth: w, sourceHeight: h, ImagePreprocessing(width: width, height: height, resize: resize))
    }

    @Test func stretch() {
        let p = plan(1920, 1080, 299, 299, .stretch)
        #expect(p.x == AxisPlan(regionStart: 0, regionEnd: 1920, virtualSize: 299, first: 0, count: 299, offset: 0))
        #expect(p.y == AxisPlan(regionStart: 0, regionEnd: 1080, virtualSize: 299, first: 0, count: 299, offset: 0))
    }

    @Test func shorterSideThenCentreCrop() {
        // torchvision: 1920x1080 -> Resize(256) = 455x256 (int(256 * 1920 / 1080) = 455),
        // CenterCrop(224): left = round(231 / 2) = 116 (half to even), top = round(32 / 2) = 16.
        let p = plan(1920, 1080, 224, 224, .shorterSide(256))
        #expect(p.x == AxisPlan(regionStart: 0, regionEnd: 1920, virtualSize: 455, first: 116, count: 224, offset: 0))
        #expect(p.y == AxisPlan(regionStart: 0, regionEnd: 1080, virtualSize: 256, first: 16, count: 224, offset: 0))
        // Portrait, and a half-way offset rounded to even: (229 - 224) / 2 = 2.5 -> 2.
        let q = plan(500, 573, 224, 224, .shorterSide(200))
        #expect(q.x.virtualSize == 200 && q.y.virtualSize == 229)
        #expect(q.y.first == 2)
        // A crop larger than the resized image: centred, padded with 0.
        let r = plan(640, 480, 224, 224, .shorterSide(160))
        #expect(r.y == AxisPlan(regionStart: 0, regionEnd: 480, virtualSize: 160, first: 0, count: 160, offset: 32))
        #expect(r.x == AxisPlan(regionStart: 0, regionEnd: 640, virtualSize: 213, first: 0, count: 213, offset: 5))
        #expect(r.fill == 0)
    }

    @Test func centreCropFraction() {
        // TF central_crop(0.875) on 1024x768: start int((1024 - 896) / 2) = 64, int(48) = 48.
        let p = plan(1024, 768, 299, 299, .centerCropFraction(0.875))
        #expect(p.x == AxisPlan(regionStart: 64, regionEnd: 960, virtualSize: 299, first: 0, count: 299, offset: 0))
        #expect(p.y == AxisPlan(regionStart: 48, regionEnd: 720, virtualSize: 299, first: 0, count: 299, offset: 0))
        // Odd sizes: int((333 - 291.375) / 2) = 20, extent 293.
        let q = plan(333, 100, 10, 10, .centerCropFraction(0.875))
        #expect(q.x.regionStart == 20 && q.x.regionEnd == 313)
    }

    @Test func letterbox() {
        // 1920x1080 into 416x416: r = 416 / 1920, 416 x round(234) = 234, top (416 - 234) / 2 = 91.
        let p = plan(1920, 1080, 416, 416, .letterbox(fill: 114))
        #expect(p.x == AxisPlan(regionStart: 0, regionEnd: 1920, virtualSize: 416, first: 0, count: 416, offset: 0))
        #expect(p.y == AxisPlan(regionStart: 0, regionEnd: 1080, virtualSize: 234, first: 0, count: 234, offset: 91))
        #expect(p.fill == 114)
        // Extreme aspect ratio keeps at least one row.
        let q = plan(4000, 3, 100, 100, .letterbox(fill: 0))
        #expect(q.y.virtualSize == 1 && q.y.offset == 49)
    }

    @Test func dctScaleNeverLeavesLessThanTheResizeNeeds() {
        let all = [2, 4, 8]
        #expect(plan(1920, 1080, 299, 299, .stretch).scaleDenominator(available: all) == 2)   // 6.4x, 3.6x
        #expect(plan(1920, 1080, 224, 224, .shorterSide(256)).scaleDenominator(available: all) == 4)  // 4.2x
        #expect(plan(1920, 1080, 240, 135, .stretch).scaleDenominator(available: all) == 8)   // exactly 8x
        #expect(plan(1920, 1080, 241, 135, .stretch).scaleDenominator(available: all) == 4)
        #expect(plan(1920, 1080, 961, 100, .stretch).scaleDenominator(available: all) == 1)   // under 2x on x
        #expect(plan(4000, 3000, 299, 299, .stretch).scaleDenominator(available: all) == 8)
        #expect(plan(4000, 3000, 299, 299, .stretch).scaleDenominator(available: [2]) == 2)
        #expect(plan(100, 100, 400, 400, .stretch).scaleDenominator(available: all) == 1)     // enlarging
        // The crop region counts, not the whole image: 1024 * 0.5 = 512 over 100 samples.
        #expect(plan(1024, 1024, 100, 100, .centerCropFraction(0.5)).scaleDenominator(available: all) == 4)
    }

    @Test func validation() {
        func invalid(_ p: ImagePreprocessing) -> Bool {
            do { try p.validate(); return false } catch { return !error.isClientError }
        }
        #expect(!invalid(ImagePreprocessing(width: 224, height: 224)))
        #expect(invalid(ImagePreprocessing(width: 0, height: 224)))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, channels: 2)))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, mean: [0, 0])))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, std: [1, 0, 1])))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, scale: .nan)))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, resize: .shorterSide(0))))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, resize: .centerCropFraction(0))))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, resize: .centerCropFraction(1.5))))
        #expect(invalid(ImagePreprocessing(width: 224, height: 224, maxPixels: 0)))
        #expect(!invalid(ImagePreprocessing(width: 28, height: 28, channels: 1, mean: [0.5], std: [0.5])))
    }
}
