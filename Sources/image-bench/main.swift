// image-bench: times ImageCodec on one JPEG file and optionally writes the tensor as .npy.
//
// usage: image-bench FILE [--width 299] [--height 299] [--channels 3] [--order rgb|bgr]
//            [--layout nhwc|nchw] [--resize stretch|shorter:N|fraction:F|letterbox:FILL]
//            [--scale S] [--mean M[,M,M]] [--std S[,S,S]] [--dtype float32|uint8]
//            [--max-pixels N] [--repeat N] [--output OUT.npy]
//
// Runs one warm-up decode, then N timed decodes on this thread (file already in memory),
// and prints `median_ms: X` last. Exit status 2 with `error: MESSAGE` on stderr when the
// image is rejected (an ImageError), 1 on a usage or I/O error.
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

var arguments = Array(CommandLine.arguments.dropFirst())
var file: String?
var p = ImagePreprocessing(width: 299, height: 299)
var repeatCount = 10
var output: String?
var dtype = "float32"
while !arguments.isEmpty {
    let argument = arguments.removeFirst()
    guard argument.hasPrefix("--") else {
        if file != nil { fail("more than one input file") }
        file = argument
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
    case "--output": output = value
    default: fail("unknown option \(argument)")
    }
}
guard let file else { fail("usage: image-bench FILE [--width W --height H ... --repeat N --output OUT.npy]") }
do throws(ImageError) { try p.validate() } catch { fail(error.message) }

let fileBytes = readFile(file)
let jpeg = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, fileBytes.count), alignment: 16)
jpeg.copyBytes(from: fileBytes)
let input = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(jpeg)[0..<fileBytes.count])
let decoder: ImageDecoder
do throws(ImageError) { decoder = try ImageDecoder() } catch { fail(error.message) }
let floatOutput = UnsafeMutableBufferPointer<Float>.allocate(capacity: p.elementCount)
let byteOutput = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: p.elementCount)

@MainActor func runOnce() -> ImageInfo {
    do throws(ImageError) {
        if dtype == "uint8" { return try decoder.decode(input, p, into: byteOutput) }
        return try decoder.decode(input, p, into: floatOutput)
    } catch {
        fail(error.message, status: 2)
    }
}

let info = runOnce()
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
    let shape = p.layout == .nhwc ? [1, p.height, p.width, p.channels] : [1, p.channels, p.height, p.width]
    if dtype == "uint8" {
        writeNPY(output, descr: "|u1", shape: shape, payload: UnsafeRawBufferPointer(byteOutput))
    } else {
        writeNPY(output, descr: "<f4", shape: shape, payload: UnsafeRawBufferPointer(floatOutput))
    }
}
print("source: \(info.width)x\(info.height), DCT scale 1/\(info.scaleDenominator)")
print("min_ms: \(times[0])")
print("median_ms: \(median)")
