import ArgumentParser
import Engine
import Foundation
import Serving
import Workers
import WireFormat

/// Runs an ONNX model on .npy inputs without a server: for debugging and engine benchmarks.
@main
struct ModelRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-run",
        abstract: "Run an ONNX model or a TensorFlow SavedModel on NumPy .npy inputs (and JPEG files for string inputs).")

    @Argument(help: "Path of the .onnx model, or of a TensorFlow SavedModel directory.")
    var model: String

    @Option(help: "SavedModel: the signature to run (default: serving_default or the only one).")
    var signature: String?

    @Option(name: .customLong("fetch"), help: "SavedModel: also write this graph tensor (the result of a JPEG preprocessing loop), as OUTDIR/<name with / and : as _>.npy.")
    var fetch: [String] = []

    @Option(name: .customLong("input"), help: "An input: FILE.npy (in model input order) or NAME=FILE.npy. Repeat for several inputs.")
    var inputs: [String] = []

    @Option(name: .customLong("output"), help: "Where to write the outputs: OUT.npy for the first output, or a directory for all of them (NAME.npy each).")
    var output: String?

    @Option(help: "Threads to run on: this one plus N-1 workers that kernels split their work across (BLAS stays single-threaded).")
    var threads: Int = 1

    @Option(name: .customLong("repeat"), help: "Time R runs after one warm-up run and print the median as 'median_ms: X' last.")
    var repeatCount: Int = 0

    @Option(help: "Convolution kernels: automatic (the engine's AVX-512 direct convolution and GEMM where the CPU has it, else OpenBLAS) or blas.")
    var kernels: Model.Kernels = .automatic

    @Option(help: "Print the K largest values of the first output for each batch row, with labels from --labels.")
    var top: Int = 0

    @Option(help: "A labels file (one label per line, line i names class i) for --top.")
    var labels: String?

    @Flag(help: "Print the time of every operator of one run, slowest first.")
    var profile = false

    mutating func run() throws {
        BLASKernels.relaunchWithBestKernels()
        BLAS.setThreadCount(1)
        do {
            try execute()
        } catch let error as EngineError {
            FileHandle.standardError.write(Data("model-run: \(error)\n".utf8))
            throw ExitCode(2)
        } catch let error as NPYArray.FormatError {
            FileHandle.standardError.write(Data("model-run: \(error)\n".utf8))
            throw ExitCode(2)
        } catch let error as ServingError {
            FileHandle.standardError.write(Data("model-run: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }

    func execute() throws {
        if SavedModel.isSavedModel(directory: model) {
            try executeSavedModel()
            return
        }
        // Inputs first, so the plan covers their batch size.
        var named: [String: HostTensor] = [:], positional: [HostTensor] = []
        for argument in inputs {
            if let equals = argument.firstIndex(of: "="), !argument[..<equals].hasSuffix(".npy") {
                named[String(argument[..<equals])] = try NPYTensors.read(path: String(argument[argument.index(after: equals)...]))
            } else {
                positional.append(try NPYTensors.read(path: argument))
            }
        }
        let batch = (positional + Array(named.values)).map { $0.shape.first ?? 1 }.max() ?? 1
        let loaded = try Model(path: model, options: .init(maxBatchSize: batch, kernels: kernels))
        var ordered: [HostTensor] = []
        for (index, info) in loaded.inputs.enumerated() {
            if let tensor = named[info.name] { ordered.append(tensor); continue }
            let position = ordered.count - named.keys.filter { name in loaded.inputs.prefix(index).contains { $0.name == name } }.count
            guard position < positional.count else {
                throw EngineError.invalidInput("no value for model input '\(info.name)' \(info.dtype) \(info.shape)")
            }
            ordered.append(positional[position])
        }
        for name in named.keys where !loaded.inputs.contains(where: { $0.name == name }) {
            throw EngineError.invalidInput("the model has no input '\(name)' (inputs: \(loaded.inputs.map(\.name).joined(separator: ", ")))")
        }
        try run(loaded, inputs: ordered, outputNames: loaded.outputs.map(\.name))
    }

    /// Runs `loaded` on `ordered` (model input order) and prints, writes, profiles and times
    /// as the options say.
    func run(_ loaded: Model, inputs ordered: [HostTensor], outputNames: [String]) throws {
        let pool = threads > 1 ? WorkerPool(width: threads) : nil
        let session = loaded.makeSession(runner: pool)
        let results = try session.run(ordered)
        if let output {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory), isDirectory.boolValue {
                for (name, tensor) in zip(outputNames, results) {
                    let safe = name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" }
                    try NPYTensors.write(tensor, path: output + "/" + String(safe) + ".npy")
                }
            } else {
                try NPYTensors.write(results[0], path: output)
            }
        }
        for (name, tensor) in zip(outputNames, results) { print("output \(name): \(tensor.dtype) \(tensor.shape)") }
        if top > 0, let first = results.first, first.dtype == .float32, first.shape.count == 2 {
            let names = try labels.map { try String(contentsOfFile: $0, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init) } ?? []
            let values = first.floats, classes = first.shape[1]
            for row in 0..<first.shape[0] {
                let scores = values[row * classes ..< (row + 1) * classes]
                for index in scores.indices.sorted(by: { scores[$0] > scores[$1] }).prefix(top) {
                    let label = index - row * classes
                    let name = label < names.count && !names[label].isEmpty ? names[label] : String(label)
                    print("row \(row): \(name) \(scores[index])")
                }
            }
        }
        let buffers = ordered.map { UnsafeRawBufferPointer(start: $0.bytes, count: $0.byteCount) }
        if profile {
            let steps = try session.profile(batchSize: loaded.hasDynamicBatch ? ordered[0].shape[0] : loaded.maxBatchSize, inputs: buffers)
            let total = steps.reduce(0) { $0 + $1.milliseconds }
            for step in steps.sorted(by: { $0.milliseconds > $1.milliseconds }) {
                let rate = step.flops > 0 ? String(format: " %6.1f GFLOP/s", step.flops / step.milliseconds / 1e6) : ""
                print(String(format: "%8.3f ms %5.1f%%  %@ %@", step.milliseconds, step.milliseconds / total * 100, step.opType, step.name) + rate)
            }
            var byType: [String: (ms: Double, flops: Double)] = [:]
            for step in steps { byType[step.opType, default: (0, 0)].ms += step.milliseconds; byType[step.opType]!.flops += step.flops }
            for (type, sum) in byType.sorted(by: { $0.value.ms > $1.value.ms }) {
                let rate = sum.flops > 0 ? String(format: " %6.1f GFLOP/s", sum.flops / sum.ms / 1e6) : ""
                print(String(format: "%8.3f ms %5.1f%%  all %@", sum.ms, sum.ms / total * 100, type) + rate)
            }
            print(String(format: "total %.3f ms over %d steps", total, steps.count))
        }
        if repeatCount > 0 {
            let batchSize = loaded.hasDynamicBatch ? ordered[0].shape[0] : loaded.maxBatchSize
            var times: [Double] = []
            for _ in 0..<repeatCount {
                let start = DispatchTime.now().uptimeNanoseconds
                try session.run(batchSize: batchSize, inputs: buffers) { _ in }
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            times.sort()
            let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
            let gflops = loaded.flopsPerSample * Double(batchSize) / median / 1e6
            print(String(format: "gflops_per_s: %.1f", gflops))
            print(String(format: "median_ms: %.3f", median))
        }
    }
}

extension Model.Kernels: ExpressibleByArgument {}
