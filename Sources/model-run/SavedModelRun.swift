import Engine
import Foundation
import Serving

/// `model-run EXPORT_DIR`: a TensorFlow SavedModel signature run without a server.
/// Numeric signatures run on the engine directly (threads, --repeat and --profile apply);
/// signatures with JPEG strings or tf.Examples run through the server's own stages
/// (TF-exact decoding, top-k with labels), one thread.
extension ModelRun {
    /// Inputs by name: .npy files are tensors; any other file is one element of a string
    /// input (several make a batch, in order).
    func savedModelInputs() throws -> (tensors: [String: HostTensor], strings: [String: [[UInt8]]]) {
        var tensors: [String: HostTensor] = [:], strings: [String: [[UInt8]]] = [:]
        for argument in inputs {
            guard let equals = argument.firstIndex(of: "=") else {
                throw EngineError.invalidInput("SavedModel inputs are NAME=FILE (got '\(argument)')")
            }
            let name = String(argument[..<equals]), path = String(argument[argument.index(after: equals)...])
            if path.hasSuffix(".npy") {
                tensors[name] = try NPYTensors.read(path: path)
            } else {
                guard let data = FileManager.default.contents(atPath: path) else { throw EngineError.invalidInput("cannot read '\(path)'") }
                strings[name, default: []].append([UInt8](data))
            }
        }
        return (tensors, strings)
    }

    /// One line on how a signature input reaches the network.
    static func describe(_ feed: SavedModelSignature.Feed) -> String {
        switch feed {
        case .tensor(let input): return "tensor -> \(input)"
        case .images(let input, let steps):
            func text(_ list: [SavedModelSignature.ImageSteps.Arithmetic]) -> String {
                list.map { step -> String in
                    switch step {
                    case .add(let v): return "+\(v)"
                    case .sub(let v): return "-\(v)"
                    case .mul(let v): return "*\(v)"
                    case .div(let v): return "/\(v)"
                    }
                }.joined(separator: " ")
            }
            return "JPEG (channels \(steps.channels), \(steps.fastDCT ? "fast" : "accurate") DCT) [\(text(steps.beforeResize))]"
                + (steps.centralCropFraction.map { " central_crop \($0)" } ?? "")
                + " resize \(steps.height)x\(steps.width) \(steps.halfPixelCenters ? "half-pixel" : "legacy") [\(text(steps.afterResize))] -> \(input) (\(steps.networkTensor))"
        case .examples(let features):
            return "tf.Example " + features.map { "'\($0.key)': \(describe($0.feed))" }.joined(separator: ", ")
        }
    }

    /// The graph tensors a signature's JPEG stages produce.
    static func stageTensors(_ signature: SavedModelSignature) -> [String] {
        signature.feeds.values.flatMap { feed -> [String] in
            switch feed {
            case .images(_, let steps): return [steps.networkTensor]
            case .examples(let features):
                return features.compactMap { if case .images(_, let steps) = $0.feed { return steps.networkTensor } else { return nil } }
            case .tensor: return []
            }
        }
    }

    func executeSavedModel() throws {
        let (tensors, strings) = try savedModelInputs()
        let batch = max((tensors.values.map { $0.shape.first ?? 1 } + strings.values.map(\.count)).max() ?? 1, 1)
        var settings = try ModelSettings.load(directory: model)
        settings.maxBatchSize = batch
        // Fetches of the stage outputs (the decoded JPEG batch) are answered from the stage;
        // other graph tensors become extra engine outputs.
        let probe = try SavedModel(directory: model, options: .init(maxBatchSize: batch, kernels: kernels))
        let name = signature ?? probe.defaultSignature
        let stageTensors = Set(probe.signatures[name].map { Self.stageTensors($0) } ?? [])
        let extra = fetch.filter { !stageTensors.contains($0) }
        let saved = extra.isEmpty ? probe : try SavedModel(directory: model, options: .init(maxBatchSize: batch, kernels: kernels),
                                                           extraFetches: [name: extra])
        guard let chosen = saved.signatures[name] else {
            throw EngineError.invalidInput("the export has no signature '\(name)' (signatures: \(saved.signatures.keys.sorted().joined(separator: ", ")))")
        }
        for (alias, feed) in chosen.feeds.sorted(by: { $0.key < $1.key }) { print("input \(alias): \(Self.describe(feed))") }
        for input in chosen.inputs where tensors[input.alias] == nil && strings[input.alias] == nil {
            throw EngineError.invalidInput("no value for signature input '\(input.alias)' (\(input.tensorName))")
        }
        let plain = chosen.feeds.values.allSatisfy { if case .tensor = $0 { return true } else { return false } }
            && chosen.fetches.values.allSatisfy { if case .tensor = $0 { return true } else { return false } }
        if plain && fetch.isEmpty {
            // Engine inputs in model order, named by the feeds.
            var named: [String: HostTensor] = [:]
            for (alias, feed) in chosen.feeds { if case .tensor(let input) = feed { named[input] = tensors[alias] } }
            // Outputs go to OUTDIR/<alias>.npy.
            if let output { try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true) }
            try run(chosen.model, inputs: chosen.model.inputs.map { named[$0.name]! }, outputNames: chosen.model.outputs.map(\.name))
            return
        }
        // Through the server's stages.
        let version = try LoadedVersion(name: "model", version: 1, directory: model, settings: settings, workers: 1)
        let servable = name == version.defaultSignatureName ? version : version.signatures[name]!
        var request = InferRequest(inputs: [])
        for input in chosen.inputs {
            if let values = strings[input.alias] {
                var data: [UInt8] = []
                for value in values { BytesElements.append(value, to: &data) }
                request.inputs.append(InferTensor(name: input.alias, datatype: .bytes, shape: [values.count], data: data))
            } else if let tensor = tensors[input.alias] {
                request.inputs.append(InferTensor(name: input.alias, datatype: TensorDataType(tensor.dtype), shape: tensor.shape,
                                                  data: [UInt8](UnsafeRawBufferPointer(start: tensor.bytes, count: tensor.byteCount))))
            }
        }
        var decoded = request
        try servable.decodeImages(&decoded)
        let response = try servable.infer(decoded, worker: 0)
        var written: [(String, InferTensor)] = response.outputs.map { ($0.name, $0) }
        if !extra.isEmpty {
            // The same network again on the decoded inputs, for the extra tensors.
            let engine = chosen.model
            let ordered = try engine.inputs.map { info -> HostTensor in
                guard let tensor = decoded.inputs.first(where: { $0.name == info.name }), let dtype = tensor.datatype.engineType else {
                    throw EngineError.invalidInput("no decoded value for network input '\(info.name)'")
                }
                return tensor.data.withUnsafeBytes { HostTensor(dtype: dtype, shape: tensor.shape, copying: $0) }
            }
            let results = try engine.makeSession().run(ordered)
            for tensorName in extra {
                guard let outputName = chosen.extraOutputs[tensorName],
                      let index = engine.outputs.firstIndex(where: { $0.name == outputName }) else { continue }
                let result = results[index]
                written.append((tensorName, InferTensor(name: tensorName, datatype: TensorDataType(result.dtype), shape: result.shape,
                                                        data: [UInt8](UnsafeRawBufferPointer(start: result.bytes, count: result.byteCount)))))
            }
        }
        for tensorName in fetch where stageTensors.contains(tensorName) {
            // The batch an image stage made stands for the TF tensor it replaced.
            guard let feed = chosen.feeds.values.first(where: { feed in
                if case .images(_, let steps) = feed { return steps.networkTensor == tensorName }
                if case .examples(let features) = feed {
                    return features.contains { if case .images(_, let steps) = $0.feed { return steps.networkTensor == tensorName } else { return false } }
                }
                return false
            }) else {
                throw EngineError.invalidInput("--fetch '\(tensorName)': only the tensor an image stage produces can be fetched")
            }
            var input: String?
            if case .images(let name, _) = feed { input = name }
            if case .examples(let features) = feed {
                for feature in features { if case .images(let name, _) = feature.feed { input = name } }
            }
            guard let tensor = decoded.inputs.first(where: { $0.name == input }) else { continue }
            written.append((tensorName, tensor))
        }
        for (outputName, tensor) in written { print("output \(outputName): \(tensor.datatype.rawValue) \(tensor.shape)") }
        guard let output else { return }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        for (outputName, tensor) in written {
            let safe = String(outputName.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" })
            let path = output + "/" + safe + ".npy"
            if tensor.datatype == .bytes {
                let elements = BytesElements.ranges(tensor.data)?.map { Array(tensor.data[$0]) } ?? []
                do { try NPYTensors.write(strings: elements, shape: tensor.shape, path: path) } catch {
                    throw EngineError.invalidInput(error.description)
                }
            } else {
                guard let dtype = tensor.datatype.engineType else { throw EngineError.invalidInput("cannot write \(tensor.datatype.rawValue) output '\(outputName)'") }
                let host = tensor.data.withUnsafeBytes { HostTensor(dtype: dtype, shape: tensor.shape, copying: $0) }
                try NPYTensors.write(host, path: path)
            }
        }
    }
}
