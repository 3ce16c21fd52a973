import FuzzSupport
import ImageCodec

// JPEG decoding with the server's preprocessing: header checks (size limit, structure walk,
// truncation), the resize/crop/letterbox plan, decoding (libjpeg-turbo, with DCT scaling),
// resampling and normalisation, in the Pillow and the TensorFlow pipelines. Any bytes and
// any valid configuration give an image or an ImageError, never a crash; an invalid
// configuration is refused by `validate` first.
//
// Input: [configuration: 8 bytes] [JPEG bytes...]

nonisolated(unsafe) let decoder: ImageDecoder = {
    do { return try ImageDecoder() } catch { fuzzFailure("ImageDecoder: \(error)") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let width = Int(input.byte() % 48) + 1, height = Int(input.byte() % 48) + 1
    let mode = input.byte()
    let channels = mode & 1 == 0 ? 3 : 1
    let parameter = Int(input.byte())
    let resize: ResizeMode
    switch (mode >> 1) % 4 {
    case 0: resize = .stretch
    case 1: resize = .shorterSide(parameter % 64 + 1)
    case 2: resize = .centerCropFraction(Double(parameter % 100 + 1) / 100)
    default: resize = .letterbox(fill: UInt8(parameter))
    }
    let maxPixels = 1 << (10 + Int(input.byte() % 8))  // 1 Ki .. 128 Ki source pixels
    let tensorflowByte = input.byte()
    let bytesOutput = input.byte() & 1 == 1
    _ = input.byte()
    var preprocessing = ImagePreprocessing(width: width, height: height, channels: channels,
                                           channelOrder: mode & 16 == 0 ? .rgb : .bgr, layout: mode & 32 == 0 ? .nhwc : .nchw,
                                           resize: resize, scale: 1.0 / 255, mean: [0.5], std: [0.25], maxPixels: maxPixels)
    if tensorflowByte & 1 == 1 {
        let steps = TensorFlowImageSteps(
            channels: channels, fastDCT: tensorflowByte & 2 != 0, beforeResize: [.mul(1.0 / 255)],
            centralCropFraction: tensorflowByte & 4 != 0 ? Double(parameter % 100 + 1) / 100 : nil,
            height: height, width: width, halfPixelCenters: tensorflowByte & 8 != 0, afterResize: [.sub(0.5), .mul(2)],
            grapplerRewrites: tensorflowByte & 16 != 0)
        preprocessing = ImagePreprocessing(tensorflow: steps, maxPixels: maxPixels)
    }
    guard (try? preprocessing.validate()) != nil else { return 0 }
    let jpeg = input.rest()
    jpeg.withUnsafeBytes { bytes in
        if bytesOutput && preprocessing.tensorflow == nil {
            var output = [UInt8](repeating: 0, count: preprocessing.elementCount)
            _ = output.withUnsafeMutableBufferPointer { try? decoder.decode(bytes, preprocessing, into: $0) }
        } else {
            var output = [Float](repeating: 0, count: preprocessing.elementCount)
            _ = output.withUnsafeMutableBufferPointer { try? decoder.decode(bytes, preprocessing, into: $0) }
        }
    }
    return 0
}
