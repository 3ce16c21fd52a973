// image-bench: times ImageCodec on JPEG files and optionally writes the tensor as .npy.
//
// usage: image-bench FILE... [--width 299] [--height 299] [--channels 3] [--order rgb|bgr]
//            [--layout nhwc|nchw] [--resize stretch|shorter:N|fraction:F|letterbox:FILL]
//            [--scale S] [--mean M[,M,M]] [--std S[,S,S]] [--dtype float32|uint8]
//            [--max-pixels N] [--repeat N] [--output OUT.npy] [--retained-mb MB]
//        TensorFlow-exact mode (ImagePreprocessing.tensorflow), on with --tf-resize:
//            --tf-resize legacy|half-pixel [--tf-dct fast|accurate] [--tf-crop F]
//            [--tf-before OPS] [--tf-after OPS]     OPS: add:V,sub:V,mul:V,div:V (in order)
//            [--tf-literal]   (steps run literally, not as Grappler rewrites a graph's)
//        (--width/--height/--channels give the resize size and DecodeJpeg's channels, 0 = 3;
//        --order/--layout/--resize/--scale/--mean/--std do not apply.)
//
// Several files are one batch through one decoder (sizes may differ): the .npy holds
// [N, ...] in file order and each timed round decodes them all. Runs one warm-up round, then
// N timed rounds on this thread (files already in memory), prints one `source:` line per
// file and `median_ms: X` (per round) last. Exit status 2 with `error: MESSAGE` on stderr
// when an image is rejected (an ImageError), 1 on a usage or I/O error.
@preconcurrency import Glibc
import ImageCodec

func fail(_ message: String, status: Int32 = 1) -> Never {
    fputs("error: \(message)\n", stderr)
    exit(status)
}

func readFile(_ path: String) -> [UInt8] {
    guard let file = fopen(path, "rb") else { fail("cannot open \(path)") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
}

func writeNPY(_ path: String, descr: String, shape: [Int], payload: UnsafeRawBufferPointer) {
    let shapeText = shape.map(String.init).joined(separator: ", ")
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(shapeText)), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
    let length = header.utf8.count
    bytes += [UInt8(length & 0xFF), UInt8(length >> 8)]
    bytes += Array(header.utf8)
    guard let file = fopen(path, "wb") else { fail("cannot write \(path)") }
    defer { fclose(file) }
    guard fwrite(bytes, 1, bytes.count, file) == bytes.count,
          fwrite(payload.baseAddress, 1, payload.count, file) == payload.count else {
        fail("cannot write \(path)")
    }
}

func floats(_ text: String, _ option: String) -> [Float] {
    let values = text.split(separator: ",").map { Float($0) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { fail("\(option) wants numbers, got \(text)") }
    return values.map { $0! }
}

func steps(_ text: String, _ option: String) -> [TensorFlowImageSteps.Arithmetic] {
    if text == "none" { return [] }
    return text.split(separator: ",").map { item in
        let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let value = Float(parts[1]) else { fail("\(option) wants OP:VALUE items, got \(item)") }
        switch parts[0] {
        case "add": return .add(value)
        case "sub": return .sub(value)
        case "mul": return .mul(value)
        case "div": return .div(value)
        default: fail("\(option): the operations are add, sub, mul, div, not \(parts[0])")
        }
    }
}

var arguments = Array(CommandLine.arguments.dropFirst())
var files: [String] = []
var tfResize: Bool?  // half-pixel centres; nil: the Pillow pipeline
var tfFastDCT = true
var tfCrop: Double?
var tfBefore: [TensorFlowImageSteps.Arithmetic] = []
var tfAfter: [TensorFlowImageSteps.Arithmetic] = []
var tfLiteral = false
var p = ImagePreprocessing(width: 299, height: 299)
var repeatCount = 10
var retainedMB: Int?
var output: String?
var dtype = "float32"
while !arguments.isEmpty {
    let argument = arguments.removeFirst()
    guard argument.hasPrefix("--") else {
        files.append(argument)
        continue
    }
    if argument == "--tf-literal" {
        tfLiteral = true
        continue
    }
    guard !arguments.isEmpty else { fail("\(argument) needs a value") }
    let value = arguments.removeFirst()
    func int() -> Int {
        guard let n = Int(value) else { fail("\(argument) wants an integer, got \(value)") }
        return n
    }
    switch argument {
    case "--width": p.width = int()
    case "--height": p.height = int()
    case "--channels": p.channels = int()
    case "--order":
        guard let order = ChannelOrder(rawValue: value) else { fail("--order is rgb or bgr") }
        p.channelOrder = order
    case "--layout":
        guard let layout = Layout(rawValue: value) else { fail("--layout is nhwc or nchw") }
        p.layout = layout
    case "--resize":
        let parts = value.split(separator: ":", maxSplits: 1).map(String.init)
        switch (parts.first ?? "", parts.count == 2 ? parts[1] : "") {
        case ("stretch", ""): p.resize = .stretch
        case ("shorter", let n) where Int(n) != nil: p.resize = .shorterSide(Int(n)!)
        case ("fraction", let f) where Double(f) != nil: p.resize = .centerCropFraction(Double(f)!)
        case ("letterbox", let v) where UInt8(v) != nil: p.resize = .letterbox(fill: UInt8(v)!)
        default: fail("--resize is stretch, shorter:N, fraction:F or letterbox:FILL")
        }
    case "--scale": p.scale = floats(value, argument)[0]
    case "--mean": p.mean = floats(value, argument)
    case "--std": p.std = floats(value, argument)
    case "--max-pixels": p.maxPixels = int()
    case "--dtype":
        guard value == "float32" || value == "uint8" else { fail("--dtype is float32 or uint8") }
        dtype = value
    case "--repeat": repeatCount = max(1, int())
    case "--retained-mb": retainedMB = int()
    case "--output": output = value
    case "--tf-resize":
        guard value == "legacy" || value == "half-pixel" else { fail("--tf-resize is legacy or half-pixel") }
        tfResize = value == "half-pixel"
    case "--tf-dct":
        guard value == "fast" || value == "accurate" else { fail("--tf-dct is fast or accurate") }
        tfFastDCT = value == "fast"
    case "--tf-crop":
        guard let f = Double(value) else { fail("--tf-crop wants a fraction, got \(value)") }
        tfCrop = f
    case "--tf-before": tfBefore = steps(value, argument)
    case "--tf-after": tfAfter = steps(value, argument)
    default: fail("unknown option \(argument)")
    }
}
if files.isEmpty { fail("usage: image-bench FILE... [--width W --height H ... --repeat N --output OUT.npy]") }
if let halfPixel = tfResize {
    if dtype != "float32" { fail("the TensorFlow mode writes float32") }
    let tf = TensorFlowImageSteps(channels: p.channels, fastDCT: tfFastDCT, beforeResize: tfBefore,
                                  centralCropFraction: tfCrop, height: p.height, width: p.width,
                                  halfPixelCenters: halfPixel, afterResize: tfAfter, grapplerRewrites: !tfLiteral)
    p = ImagePreprocessing(tensorflow: tf, maxPixels: p.maxPixels)
} else if tfCrop != nil || !tfBefore.isEmpty || !tfAfter.isEmpty || !tfFastDCT || tfLiteral {
    fail("--tf-* options need --tf-resize")
}
do throws(ImageError) { try p.validate() } catch { fail(error.message) }

let inputs: [UnsafeRawBufferPointer] = files.map { file in
    let fileBytes = readFile(file)
    let jpeg = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, fileBytes.count), alignment: 16)
    jpeg.copyBytes(from: fileBytes)
    return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(jpeg)[0..<fileBytes.count])
}
let decoder: ImageDecoder
do throws(ImageError) { decoder = try ImageDecoder() } catch { fail(error.message) }
if let retainedMB { decoder.retainedBytesLimit = retainedMB << 20 }
let count = p.elementCount
let floatOutput = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * files.count)
let byteOutput = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: count * files.count)

@MainActor func runOnce() -> [ImageInfo] {
    inputs.enumerated().map { index, input in
        do throws(ImageError) {
            let range = index * count ..< (index + 1) * count
            if dtype == "uint8" { return try decoder.decode(input, p, into: UnsafeMutableBufferPointer(rebasing: byteOutput[range])) }
            return try decoder.decode(input, p, into: UnsafeMutableBufferPointer(rebasing: floatOutput[range]))
        } catch {
            fail(files.count > 1 ? "\(files[index]): \(error.message)" : error.message, status: 2)
        }
    }
}

let infos = runOnce()
var times: [Double] = []
let clock = ContinuousClock()
for _ in 0..<repeatCount {
    let start = clock.now
    _ = runOnce()
    let elapsed = clock.now - start
    times.append(Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) * 1e-15)
}
times.sort()
let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
if let output {
    let n = files.count
    let shape = p.layout == .nhwc ? [n, p.height, p.width, p.channels] : [n, p.channels, p.height, p.width]
    if dtype == "uint8" {
        writeNPY(output, descr: "|u1", shape: shape, payload: UnsafeRawBufferPointer(byteOutput))
    } else {
        writeNPY(output, descr: "<f4", shape: shape, payload: UnsafeRawBufferPointer(floatOutput))
    }
}
for info in infos {
    print("source: \(info.width)x\(info.height), DCT scale 1/\(info.scaleDenominator)")
}
print("min_ms: \(times[0])")
print("median_ms: \(median)")
