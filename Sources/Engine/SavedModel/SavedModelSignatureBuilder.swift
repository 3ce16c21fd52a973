import FoundationEssentials
import TensorFlowProto

/// What the signature builder needs from the files: the serve meta graph with attribute
/// defaults merged, and the values behind variables, captures and assets.
protocol SavedModelContents {
    var directory: String { get }
    var metaGraph: Tensorflow_MetaGraphDef { get }
    var opDefs: [String: Tensorflow_OpDef] { get }
    var functions: [String: Tensorflow_FunctionDef] { get }
    /// The checkpoint value of variable `node` (TF1 VariableV2, or a TF2 VarHandleOp that
    /// `function`'s captured argument `capture` binds); nil capture for TF1.
    func variableValue(node: String, function: String?, capture: Int?) throws -> HostTensor
    /// Number of captured (trailing) arguments of a concrete function (TF2).
    func capturedCount(function: String) -> Int
    /// The file behind an asset tensor (a Placeholder or Const named in asset_file_def).
    func assetPath(tensorName: String) -> String?
}

/// Builds `SavedModelSignature`s from the flattened graph: recognises the stages the server
/// runs itself (map_fn JPEG preprocessing, ParseExample, TopKV2 + label table) and
/// translates the numeric network between them into one engine graph per signature.
struct SavedModelSignatureBuilder {
    let contents: any SavedModelContents
    let flat: TFFlatGraph
    /// Consumers of each tensor (resolved), for walking a preprocessing chain forwards.
    private let consumers: [TFTensorRef: [(node: String, input: Int)]]
    /// TF2: top-level VarHandleOp node -> (call's function, capture index).
    private let captures: [String: (function: String, index: Int)]

    init(contents: any SavedModelContents) throws {
        self.contents = contents
        let flat = try TFFlatGraph(graph: contents.metaGraph.graphDef, functions: contents.functions, opDefs: contents.opDefs)
        self.flat = flat
        var consumers: [TFTensorRef: [(String, Int)]] = [:]
        for node in flat.nodes.values {
            for (index, input) in node.inputs.enumerated() { consumers[flat.resolved(input), default: []].append((node.name, index)) }
        }
        self.consumers = consumers
        var captures: [String: (String, Int)] = [:]
        for (_, call) in flat.calls {
            let count = contents.capturedCount(function: call.function)
            guard count > 0, count <= call.inputs.count else { continue }
            for (position, input) in call.inputs.suffix(count).enumerated() {
                let source = flat.resolved(input)
                if let node = flat.node(source.node), node.op == "VarHandleOp", captures[node.name] == nil {
                    captures[node.name] = (call.function, position)
                }
            }
        }
        self.captures = captures
    }

    func variableValue(_ node: TFNode) throws -> HostTensor {
        let capture = captures[node.name]
        return try contents.variableValue(node: node.name, function: capture?.function, capture: capture?.index)
    }

    // MARK: - Signatures

    /// `extraFetches`: graph tensors ("node:index") to add as engine outputs named by the
    /// tensor (for debugging tools: `model-run --fetch`).
    func build(name: String, signature def: Tensorflow_SignatureDef, options: Model.Options,
               cache: inout [String: Model], extraFetches: [String] = []) throws -> SavedModelSignature {
        func spec(_ alias: String, _ info: Tensorflow_TensorInfo) throws -> SavedModelSignature.TensorSpec {
            guard case .name(let tensor)? = info.encoding, !tensor.isEmpty else {
                throw EngineError.invalidModel("signature '\(name)': '\(alias)' is a sparse or composite tensor, which is not supported")
            }
            return .init(alias: alias, tensorName: tensor, dtype: info.dtype,
                         shape: info.hasTensorShape ? TFTypes.dims(info.tensorShape) : nil)
        }
        let inputs = try def.inputs.sorted { $0.key < $1.key }.map { try spec($0.key, $0.value) }
        let outputs = try def.outputs.sorted { $0.key < $1.key }.map { try spec($0.key, $0.value) }
        guard !outputs.isEmpty else { throw EngineError.invalidModel("signature '\(name)' has no outputs") }

        // Outputs: plain tensors, or TopKV2 (+ table lookup) of a network tensor.
        var coreFetches: [TFTensorRef] = []
        var fetchPlans: [(alias: String, kind: FetchKind, core: Int)] = []
        for output in outputs {
            guard let ref = TFTensorRef(graphInput: output.tensorName) else {
                throw EngineError.invalidModel("signature '\(name)': bad output tensor name '\(output.tensorName)'")
            }
            let (kind, source) = try analyzeOutput(flat.resolved(ref), signature: name, alias: output.alias)
            let index = coreFetches.firstIndex(of: source) ?? { coreFetches.append(source); return coreFetches.count - 1 }()
            fetchPlans.append((output.alias, kind, index))
        }

        var extraOutputs: [String: String] = [:]
        for tensor in extraFetches {
            guard let ref = TFTensorRef(graphInput: tensor), flat.node(flat.resolved(ref).node) != nil else {
                throw EngineError.invalidInput("--fetch '\(tensor)': the graph has no such tensor")
            }
            let source = flat.resolved(ref)
            let index = coreFetches.firstIndex(of: source) ?? { coreFetches.append(source); return coreFetches.count - 1 }()
            fetchPlans.append((tensor, .tensor, index))
            extraOutputs[tensor] = tensor
        }

        // Inputs: numeric tensors feed the network; strings go through image / example stages.
        var translator = TFTranslator(flat: flat, variable: variableValue)
        var engineInputs: [ValueInfo] = []
        var feeds: [String: SavedModelSignature.Feed] = [:]
        var usedNames = Set(outputs.map(\.alias))
        func inputName(_ alias: String) -> String {
            var candidate = alias
            while usedNames.contains(candidate) { candidate += "_" }
            usedNames.insert(candidate)
            return candidate
        }
        for input in inputs {
            guard let ref = TFTensorRef(graphInput: input.tensorName) else {
                throw EngineError.invalidModel("signature '\(name)': bad input tensor name '\(input.tensorName)'")
            }
            let fed = flat.resolved(ref)
            if input.dtype == .dtString {
                feeds[input.alias] = try stringFeed(fed, alias: input.alias, signature: name, translator: &translator,
                                                    engineInputs: &engineInputs, name: inputName)
                continue
            }
            guard let dtype = TFTypes.engineType(input.dtype) else {
                throw EngineError.invalidModel("signature '\(name)': input '\(input.alias)' has type \(TFTypes.name(input.dtype)), which is not supported")
            }
            guard let shape = input.shape else {
                throw EngineError.invalidModel("signature '\(name)': input '\(input.alias)' declares no shape")
            }
            let engineName = inputName(input.alias)
            let dims: [Dimension] = shape.enumerated().map { $0.element >= 0 ? .fixed($0.element) : .symbolic($0.offset == 0 ? "batch" : "d\($0.offset)") }
            engineInputs.append(ValueInfo(name: engineName, dtype: dtype, typeName: TFTypes.name(input.dtype), dims: dims))
            translator.feed(fed, name: engineName, rank: shape.count)
            feeds[input.alias] = .tensor(input: engineName)
        }

        let values = try translator.translate(coreFetches)
        var nodes = translator.nodes
        var outputInfos: [ValueInfo] = []
        var coreNames: [String] = []
        for (index, value) in values.enumerated() {
            // A plain output keeps its alias as the engine output's name; a top-k source gets
            // a name no input or output alias uses.
            let plain = fetchPlans.first { $0.core == index && { if case .tensor = $0.kind { return true } else { return false } }($0) }
            let outputName = plain?.alias ?? inputName((fetchPlans.first { $0.core == index }!.alias) + "_network")
            nodes.append(Node(name: outputName + "/Identity", opType: "Identity", domain: "", inputs: [value.name], outputs: [outputName], attributes: [:]))
            outputInfos.append(ValueInfo(name: outputName, dtype: .float32, typeName: "", dims: nil))
            coreNames.append(outputName)
        }
        for plan in fetchPlans where extraOutputs[plan.alias] != nil { extraOutputs[plan.alias] = coreNames[plan.core] }
        let key = engineInputs.map(\.name).joined(separator: ",") + "->" + coreFetches.map(\.description).joined(separator: ",")
            + "|" + engineInputs.map { "\($0.name):\(String(describing: $0.dims))" }.joined()
            + "=>" + coreNames.joined(separator: ",")
        let model: Model
        if let cached = cache[key] {
            model = cached
        } else {
            let sorted = try ONNXLoader.topologicallySorted(nodes, available: Set(translator.constants.keys).union(engineInputs.map(\.name)))
            let graph = Graph(nodes: sorted, constants: translator.constants, inputs: engineInputs, outputs: outputInfos, opset: 17)
            model = try Model(graph: graph, options: options)
            cache[key] = model
        }
        var fetches: [String: SavedModelSignature.Fetch] = [:]
        for plan in fetchPlans {
            let output = coreNames[plan.core]
            switch plan.kind {
            case .tensor: fetches[plan.alias] = .tensor(output: output)
            case .topKValues(let k): fetches[plan.alias] = .topKValues(output: output, k: k)
            case .topKIndices(let k): fetches[plan.alias] = .topKIndices(output: output, k: k)
            case .topKLabels(let k, let labels, let missing): fetches[plan.alias] = .topKLabels(output: output, k: k, labels: labels, missing: missing)
            }
        }
        for tensor in extraFetches { fetches[tensor] = nil }
        return SavedModelSignature(name: name, methodName: def.methodName, inputs: inputs, outputs: outputs,
                                   model: model, feeds: feeds, fetches: fetches, extraOutputs: extraOutputs)
    }

    enum FetchKind {
        case tensor
        case topKValues(Int)
        case topKIndices(Int)
        case topKLabels(Int, [String], String)
    }

    // MARK: - Outputs

    /// Follows Identity-like nodes back from `ref`.
    func throughIdentities(_ ref: TFTensorRef) -> TFTensorRef {
        var current = flat.resolved(ref)
        var hops = 0
        while let node = flat.node(current.node), ["Identity", "StopGradient", "Snapshot"].contains(node.op)
                || node.op == "IdentityN", hops < 10_000,
              let next = node.input(node.op == "IdentityN" ? current.index : 0) {
            current = flat.resolved(next)
            hops += 1
        }
        return current
    }

    private func analyzeOutput(_ ref: TFTensorRef, signature: String, alias: String) throws -> (FetchKind, TFTensorRef) {
        let source = throughIdentities(ref)
        guard let node = flat.node(source.node) else { return (.tensor, ref) }
        switch node.op {
        case "TopKV2":
            let k = try topK(node)
            return (source.index == 0 ? .topKValues(k) : .topKIndices(k), flat.resolved(node.inputs[0]))
        case "Cast" where node.input(0).flatMap({ flat.node(throughIdentities($0).node) })?.op == "TopKV2":
            guard let source = node.input(0), let top = flat.node(throughIdentities(source).node) else { return (.tensor, ref) }
            return (.topKIndices(try topK(top)), flat.resolved(top.inputs[0]))
        case "LookupTableFindV2", "LookupTableFind":
            guard node.inputs.count == 3 else { throw EngineError.invalidModel("'\(node.name)' must have 3 inputs") }
            var keys = throughIdentities(node.inputs[1])
            if let cast = flat.node(keys.node), cast.op == "Cast", let source = cast.input(0) { keys = throughIdentities(source) }
            guard let top = flat.node(keys.node), top.op == "TopKV2", keys.index == 1 else {
                throw EngineError.invalidModel("signature '\(signature)': output '\(alias)' looks up keys that are not TopKV2 indices (\(keys.node)); only top-k label lookups are supported")
            }
            let labels = try tableLabels(node.inputs[0], signature: signature)
            let missing = try strings(node.inputs[2])?.first ?? "UNK"
            return (.topKLabels(try topK(top), labels, missing), flat.resolved(top.inputs[0]))
        default:
            return (.tensor, ref)
        }
    }

    private func topK(_ node: TFNode) throws -> Int {
        guard node.inputs.count == 2, let k = integers(node.inputs[1])?.first, k > 0, k <= 1_000_000 else {
            throw EngineError.invalidModel("TopKV2 '\(node.name)' needs a constant k in 1...1000000")
        }
        return k
    }

    // MARK: - Label tables

    /// The labels a string table maps integer keys 0..<n to, from its initializer:
    /// InitializeTableV2 / LookupTableImportV2 (keys and values computed from constants) or
    /// InitializeTableFromTextFileV2 (an asset file; line numbers as keys).
    private func tableLabels(_ handle: TFTensorRef, signature: String) throws -> [String] {
        let table = flat.resolved(handle).node
        let initOps: Set<String> = ["InitializeTableV2", "InitializeTable", "LookupTableImportV2", "InitializeTableFromTextFileV2", "InitializeTableFromTextFile"]
        let tableNode = flat.node(table)
        let sharedName: String? = {
            guard let tableNode, case .s(let bytes)? = tableNode.attributes["shared_name"]?.value, !bytes.isEmpty else { return nil }
            return String(decoding: bytes, as: UTF8.self)
        }()
        let initializers = flat.nodes.values.filter { initOps.contains($0.op) && !$0.inputs.isEmpty }
        var chosen = initializers.filter { flat.resolved($0.inputs[0]).node == table }
        if chosen.isEmpty, let sharedName {
            chosen = initializers.filter { candidate in
                guard let other = flat.node(flat.resolved(candidate.inputs[0]).node),
                      case .s(let bytes)? = other.attributes["shared_name"]?.value else { return false }
                return String(decoding: bytes, as: UTF8.self) == sharedName
            }
        }
        if chosen.isEmpty && initializers.count == 1 { chosen = initializers }
        guard let initializer = chosen.first else {
            throw EngineError.invalidModel("signature '\(signature)': no initializer found for lookup table '\(table)'")
        }
        if initializer.op.hasPrefix("InitializeTableFromTextFile") {
            return try textFileLabels(initializer)
        }
        guard initializer.inputs.count == 3, let keys = integers(initializer.inputs[1]), let values = try strings(initializer.inputs[2]) else {
            throw EngineError.invalidModel("table initializer '\(initializer.name)': keys and values must be computable from constants (integer keys, string values)")
        }
        guard keys.count == values.count, keys.allSatisfy({ $0 >= 0 && $0 < 10_000_000 }) else {
            throw EngineError.invalidModel("table initializer '\(initializer.name)': \(keys.count) keys for \(values.count) values, or keys out of 0..<10000000")
        }
        var labels = [String](repeating: "", count: (keys.max() ?? -1) + 1)
        var present = [Bool](repeating: false, count: labels.count)
        for (key, value) in zip(keys, values) { labels[key] = value; present[key] = true }
        guard present.allSatisfy({ $0 }) else {
            throw EngineError.invalidModel("table initializer '\(initializer.name)': keys are not 0..<\(labels.count) (gaps are not supported)")
        }
        return labels
    }

    private func textFileLabels(_ initializer: TFNode) throws -> [String] {
        func attr(_ key: String, _ fallback: Int) -> Int {
            if case .i(let value)? = initializer.attributes[key]?.value { return Int(value) }
            return fallback
        }
        // TF's TextFileIndex: LINE_NUMBER = -1, WHOLE_LINE = -2, a column otherwise.
        let keyIndex = attr("key_index", -1), valueIndex = attr("value_index", -2), vocabularySize = attr("vocab_size", -1)
        var delimiter = "\t"
        if case .s(let bytes)? = initializer.attributes["delimiter"]?.value { delimiter = String(decoding: bytes, as: UTF8.self) }
        guard keyIndex == -1 else {
            throw EngineError.invalidModel("text-file table '\(initializer.name)': only line numbers as keys are supported (key_index \(keyIndex))")
        }
        guard initializer.inputs.count >= 2 else { throw EngineError.invalidModel("'\(initializer.name)' has no filename input") }
        var fileRef = throughIdentities(initializer.inputs[1])
        // TF2 keeps an asset's path in a string variable the init op assigns from the asset
        // placeholder: follow ReadVariableOp -> AssignVariableOp(handle, value).
        if let read = flat.node(fileRef.node), read.op == "ReadVariableOp", let handle = read.inputs.first {
            let variable = flat.resolved(handle).node
            if let assign = flat.nodes.values.first(where: { $0.op == "AssignVariableOp" && $0.inputs.count == 2 && flat.resolved($0.inputs[0]).node == variable }) {
                fileRef = throughIdentities(assign.inputs[1])
            }
        }
        var path = contents.assetPath(tensorName: fileRef.description) ?? contents.assetPath(tensorName: fileRef.node)
        if path == nil, let name = try strings(fileRef)?.first {
            let base = name.split(separator: "/").last.map(String.init) ?? name
            let candidate = contents.directory + "/assets/" + base
            if FileManager.default.fileExists(atPath: candidate) { path = candidate }
        }
        guard let path else { throw EngineError.invalidModel("text-file table '\(initializer.name)': its file is not an asset of the export") }
        guard let data = try? readFile(path), let text = String(data: data, encoding: .utf8) else {
            throw EngineError.invalidModel("cannot read the vocabulary asset '\(path)'")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0.hasSuffix("\r") ? $0.dropLast() : $0) }
        if lines.last == "" { lines.removeLast() }
        if vocabularySize >= 0 { lines = Array(lines.prefix(vocabularySize)) }
        if valueIndex >= 0 {
            lines = try lines.enumerated().map { (number, line) in
                let fields = line.components(separatedBy: delimiter)
                guard valueIndex < fields.count else {
                    throw EngineError.invalidModel("vocabulary '\(path)' line \(number + 1) has no column \(valueIndex)")
                }
                return fields[valueIndex]
            }
        }
        return lines
    }

    // MARK: - Constant evaluation (small integer and string tensors)

    /// The integers of a tensor computable from constants (Const, Range, Cast, Size, Shape
    /// of a constant, Identity), or nil.
    func integers(_ ref: TFTensorRef, depth: Int = 0) -> [Int]? {
        let source = throughIdentities(ref)
        guard depth < 64, let node = flat.node(source.node) else { return nil }
        switch node.op {
        case "Const":
            guard case .tensor(let proto)? = node.attributes["value"]?.value else { return nil }
            if proto.dtype == .dtString { return nil }
            guard let tensor = try? TFTypes.decode(proto, what: node.name), tensor.dtype != .float32, tensor.dtype != .float64 else { return nil }
            return tensor.integers
        case "Cast":
            guard let source = node.input(0) else { return nil }
            return integers(source, depth: depth + 1)
        case "Range":
            // Values from the file: bounded first, so the arithmetic below cannot overflow.
            let limit32 = -Int(Int32.max)...Int(Int32.max)
            guard node.inputs.count == 3, let start = integers(node.inputs[0], depth: depth + 1)?.first,
                  let limit = integers(node.inputs[1], depth: depth + 1)?.first,
                  let delta = integers(node.inputs[2], depth: depth + 1)?.first, delta != 0,
                  limit32.contains(start), limit32.contains(limit), limit32.contains(delta) else { return nil }
            let count = delta > 0 ? max(0, (limit - start + delta - 1) / delta) : max(0, (start - limit - delta - 1) / -delta)
            guard count <= 10_000_000 else { return nil }
            return (0..<count).map { start + $0 * delta }
        case "Size", "Shape":
            guard let source = node.input(0), let shape = constantShape(source), shape.allSatisfy({ $0 >= 0 }),
                  (try? TensorSize.bytes(shape, .uint8, "")) != nil else { return nil }
            return node.op == "Size" ? [shape.elementCount] : shape
        default:
            return nil
        }
    }

    private func constantShape(_ ref: TFTensorRef) -> [Int]? {
        let source = throughIdentities(ref)
        guard let node = flat.node(source.node), node.op == "Const", case .tensor(let proto)? = node.attributes["value"]?.value else { return nil }
        return TFTypes.dims(proto.tensorShape)
    }

    /// The strings of a string constant (through Identity), or nil.
    func strings(_ ref: TFTensorRef) throws -> [String]? {
        let source = throughIdentities(ref)
        guard let node = flat.node(source.node), node.op == "Const", case .tensor(let proto)? = node.attributes["value"]?.value,
              proto.dtype == .dtString else { return nil }
        return try TFTypes.decodeStrings(proto, what: node.name).values.map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: - String inputs

    /// How a DT_STRING input reaches the network: JPEG bytes through a map_fn preprocessing
    /// loop, or serialized tf.Examples through ParseExample first.
    private func stringFeed(_ fed: TFTensorRef, alias: String, signature: String, translator: inout TFTranslator,
                            engineInputs: inout [ValueInfo], name: (String) -> String) throws -> SavedModelSignature.Feed {
        let users = consumers[fed] ?? []
        if let parse = users.lazy.compactMap({ self.flat.node($0.node) }).first(where: { $0.op == "ParseExample" || $0.op == "ParseExampleV2" }) {
            return try exampleFeed(parse, signature: signature, translator: &translator, engineInputs: &engineInputs, name: name)
        }
        let (stacked, steps) = try imagePipeline(from: fed, signature: signature, alias: alias)
        let engineName = name(alias)
        engineInputs.append(ValueInfo(name: engineName, dtype: .float32, typeName: "DT_FLOAT",
                                      dims: [.symbolic("batch"), .fixed(steps.height), .fixed(steps.width), .fixed(steps.channels)]))
        translator.feed(stacked, name: engineName, rank: 4)
        return .images(input: engineName, steps)
    }

    private func exampleFeed(_ parse: TFNode, signature: String, translator: inout TFTranslator,
                             engineInputs: inout [ValueInfo], name: (String) -> String) throws -> SavedModelSignature.Feed {
        guard parse.op == "ParseExample" else {
            throw EngineError.invalidModel("signature '\(signature)': \(parse.op) '\(parse.name)' is not supported (ParseExample is)")
        }
        func count(_ key: String) -> Int {
            if case .i(let v)? = parse.attributes[key]?.value { return Int(v) }
            return 0
        }
        let sparse = count("Nsparse"), dense = count("Ndense")
        guard (0...100_000).contains(dense) else {
            throw EngineError.invalidModel("ParseExample '\(parse.name)': Ndense \(dense) is out of range")
        }
        guard sparse == 0 else { throw EngineError.invalidModel("ParseExample '\(parse.name)': sparse features are not supported") }
        guard parse.inputs.count == 2 + sparse + 2 * dense else {
            throw EngineError.invalidModel("ParseExample '\(parse.name)': \(parse.inputs.count) inputs for \(dense) dense features")
        }
        guard case .list(let types)? = parse.attributes["Tdense"]?.value, types.type.count == dense,
              case .list(let shapes)? = parse.attributes["dense_shapes"]?.value, shapes.shape.count == dense else {
            throw EngineError.invalidModel("ParseExample '\(parse.name)': Tdense and dense_shapes must list \(dense) features")
        }
        var features: [SavedModelSignature.ExampleFeature] = []
        for index in 0..<dense {
            guard let key = try strings(parse.inputs[2 + index])?.first else {
                throw EngineError.invalidModel("ParseExample '\(parse.name)': dense key \(index) is not a constant")
            }
            let type = types.type[index]
            let shape = TFTypes.dims(shapes.shape[index]) ?? []
            let output = TFTensorRef(node: parse.name, index: sparse * 3 + index)
            // Defaults: an empty tensor means "required".
            let defaultRef = parse.inputs[2 + dense + index]
            var defaultValue: [UInt8]?
            if type == .dtString, let values = try strings(defaultRef), let first = values.first { defaultValue = Array(first.utf8) }
            if consumers[output] == nil { continue }
            let feed: SavedModelSignature.Feed
            if type == .dtString {
                let (stacked, steps) = try imagePipeline(from: output, signature: signature, alias: key)
                let engineName = name(key)
                engineInputs.append(ValueInfo(name: engineName, dtype: .float32, typeName: "DT_FLOAT",
                                              dims: [.symbolic("batch"), .fixed(steps.height), .fixed(steps.width), .fixed(steps.channels)]))
                translator.feed(stacked, name: engineName, rank: 4)
                feed = .images(input: engineName, steps)
            } else {
                guard let dtype = TFTypes.engineType(type) else { throw EngineError.invalidModel("ParseExample '\(parse.name)': feature '\(key)' of type \(TFTypes.name(type))") }
                let engineName = name(key)
                engineInputs.append(ValueInfo(name: engineName, dtype: dtype, typeName: TFTypes.name(type),
                                              dims: [.symbolic("batch")] + shape.map { .fixed($0) }))
                translator.feed(output, name: engineName, rank: 1 + shape.count)
                feed = .tensor(input: engineName)
            }
            features.append(.init(key: key, dtype: type, shape: shape, defaultValue: defaultValue, feed: feed))
        }
        return .examples(features)
    }

    /// Recognises `map_fn(preprocess, strings)`: the strings are scattered into a TensorArray
    /// (TF1 while loop) or a TensorList (TF2 While), each element runs DecodeJpeg -> float
    /// steps -> central crop -> ResizeBilinear -> float steps, and the results are stacked.
    /// Returns the stacked tensor (what the network reads) and the steps.
    private func imagePipeline(from strings: TFTensorRef, signature: String, alias: String) throws -> (TFTensorRef, SavedModelSignature.ImageSteps) {
        let users = (consumers[strings] ?? []).compactMap { flat.node($0.node) }
        if let scatter = users.first(where: { $0.op == "TensorArrayScatterV3" }) {
            return try tensorArrayPipeline(scatter, signature: signature, alias: alias)
        }
        if let list = users.first(where: { $0.op == "TensorListFromTensor" }) {
            return try tensorListPipeline(list, signature: signature, alias: alias)
        }
        if let decode = users.first(where: { ["DecodeJpeg", "DecodeImage"].contains($0.op) }) {
            throw EngineError.invalidModel("signature '\(signature)': input '\(alias)' is decoded by '\(decode.name)' outside a map_fn loop; only batches of JPEGs preprocessed by map_fn are supported")
        }
        throw EngineError.invalidModel("signature '\(signature)': string input '\(alias)' feeds \(users.map { "\($0.op) '\($0.name)'" }.joined(separator: ", ")); only JPEG preprocessing in map_fn and ParseExample are supported")
    }

    /// TF1 map_fn: TensorArrayScatterV3(handle, indices, strings) ... TensorArrayReadV3 in the
    /// loop body -> steps -> TensorArrayWriteV3 ... TensorArrayGatherV3 (the stacked images).
    private func tensorArrayPipeline(_ scatter: TFNode, signature: String, alias: String) throws -> (TFTensorRef, SavedModelSignature.ImageSteps) {
        // The element read inside the loop: a TensorArrayReadV3 whose handle comes (through
        // Enter) from the same TensorArrayV3 as the scatter's.
        guard let handle = scatter.input(0) else { throw EngineError.invalidModel("TensorArrayScatterV3 '\(scatter.name)' has no inputs") }
        let array = arrayRoot(handle)
        guard let read = flat.nodes.values.first(where: { $0.op == "TensorArrayReadV3" && $0.input(0).map(arrayRoot) == array }) else {
            throw EngineError.invalidModel("signature '\(signature)': map_fn over '\(alias)' has no TensorArrayReadV3")
        }
        var (steps, written) = try preprocessingChain(from: TFTensorRef(node: read.name, index: 0), signature: signature)
        guard let write = flat.node(written.node), write.op == "TensorArrayWriteV3" else {
            throw EngineError.invalidModel("signature '\(signature)': the map_fn body ends in \(flat.node(written.node)?.op ?? "?"), not TensorArrayWriteV3")
        }
        guard let writeHandle = write.input(0) else { throw EngineError.invalidModel("TensorArrayWriteV3 '\(write.name)' has no inputs") }
        let outputArray = arrayRoot(writeHandle)
        guard let gather = flat.nodes.values.first(where: { $0.op == "TensorArrayGatherV3" && $0.input(0).map(arrayRoot) == outputArray }) else {
            throw EngineError.invalidModel("signature '\(signature)': map_fn over '\(alias)' has no TensorArrayGatherV3")
        }
        steps.networkTensor = TFTensorRef(node: gather.name, index: 0).description
        return (TFTensorRef(node: gather.name, index: 0), steps)
    }

    /// The TensorArrayV3 a handle comes from, through Enter/Identity/Switch/Merge/Exit.
    private func arrayRoot(_ ref: TFTensorRef) -> String {
        var current = flat.resolved(ref)
        var seen = Set<String>()
        while let node = flat.node(current.node), seen.insert(node.name).inserted {
            switch node.op {
            case "TensorArrayV3": return node.name
            case "Enter", "Identity", "Switch", "Exit", "Merge", "TensorArrayWriteV3", "TensorArrayScatterV3":
                // The flow outputs of writes/scatters follow the handle input.
                guard !node.inputs.isEmpty else { return node.name }
                current = flat.resolved(node.inputs[0])
            default:
                return node.name
            }
        }
        return current.node
    }

    /// TF2 map_fn: TensorListFromTensor(strings) -> While(body: TensorListGetItem -> steps ->
    /// TensorListSetItem) -> TensorListStack.
    private func tensorListPipeline(_ list: TFNode, signature: String, alias: String) throws -> (TFTensorRef, SavedModelSignature.ImageSteps) {
        let listRef = TFTensorRef(node: list.name, index: 0)
        guard let loop = (consumers[listRef] ?? []).compactMap({ flat.node($0.node) }).first(where: { $0.op == "While" || $0.op == "StatelessWhile" }),
              let elementsArg = (consumers[listRef] ?? []).first(where: { flat.node($0.node)?.op.hasSuffix("While") == true })?.input else {
            throw EngineError.invalidModel("signature '\(signature)': '\(alias)' is made a TensorList but no While loop reads it")
        }
        guard case .func(let bodyAttr)? = loop.attributes["body"]?.value, let body = contents.functions[bodyAttr.name] else {
            throw EngineError.invalidModel("While '\(loop.name)' has no body function")
        }
        // Flatten the body on its own, its arguments as placeholders.
        var graph = Tensorflow_GraphDef()
        for argument in body.signature.inputArg {
            graph.node.append(.with { $0.name = "arg:" + argument.name; $0.op = "Placeholder" })
        }
        var wrapper = Tensorflow_NodeDef()
        wrapper.name = "body"
        wrapper.op = bodyAttr.name
        wrapper.input = body.signature.inputArg.map { "arg:" + $0.name }
        graph.node.append(wrapper)
        let bodyGraph = try TFFlatGraph(graph: graph, functions: contents.functions, opDefs: contents.opDefs)
        let bodyBuilder = try SavedModelSignatureBuilder(contents: contents, flat: bodyGraph)
        guard elementsArg < body.signature.inputArg.count else {
            throw EngineError.invalidModel("While '\(loop.name)' passes the strings as argument \(elementsArg); its body takes \(body.signature.inputArg.count)")
        }
        let elementArgument = TFTensorRef(node: "arg:" + body.signature.inputArg[elementsArg].name, index: 0)
        guard let get = bodyGraph.nodes.values.first(where: { $0.op == "TensorListGetItem" && $0.input(0).map(bodyGraph.resolved) == elementArgument }) else {
            throw EngineError.invalidModel("While '\(loop.name)': its body does not read the strings with TensorListGetItem")
        }
        var (steps, written) = try bodyBuilder.preprocessingChain(from: TFTensorRef(node: get.name, index: 0), signature: signature)
        guard let set = bodyGraph.node(written.node), set.op == "TensorListSetItem" else {
            throw EngineError.invalidModel("signature '\(signature)': the map_fn body ends in \(bodyGraph.node(written.node)?.op ?? "?"), not TensorListSetItem")
        }
        // Which loop variable carries the results: the body returns the set item's list.
        let setRef = TFTensorRef(node: set.name, index: 0)
        var resultIndex: Int?
        for index in body.signature.outputArg.indices
        where bodyBuilder.throughIdentities(TFTensorRef(node: "body", index: index)) == setRef {
            resultIndex = index
        }
        guard let resultIndex else { throw EngineError.invalidModel("While '\(loop.name)': the body does not return the preprocessed images") }
        let loopOutput = TFTensorRef(node: loop.name, index: resultIndex)
        guard let stack = (consumers[loopOutput] ?? []).compactMap({ flat.node($0.node) }).first(where: { $0.op == "TensorListStack" }) else {
            throw EngineError.invalidModel("While '\(loop.name)': its results are not stacked with TensorListStack")
        }
        steps.networkTensor = TFTensorRef(node: stack.name, index: 0).description
        return (TFTensorRef(node: stack.name, index: 0), steps)
    }

    private init(contents: any SavedModelContents, flat: TFFlatGraph) throws {
        self.contents = contents
        self.flat = flat
        var consumers: [TFTensorRef: [(String, Int)]] = [:]
        for node in flat.nodes.values {
            for (index, input) in node.inputs.enumerated() { consumers[flat.resolved(input), default: []].append((node.name, index)) }
        }
        self.consumers = consumers
        captures = [:]
    }

    /// Walks forward from one JPEG string element: DecodeJpeg, then a single chain of
    /// Cast / Mul / Sub / Add / RealDiv by scalar constants, ExpandDims / Squeeze / Identity,
    /// a central-crop Slice and ResizeBilinear, until the tensor written to the result list.
    /// Returns the steps and the node that consumes the final image (the write).
    func preprocessingChain(from element: TFTensorRef, signature: String) throws -> (SavedModelSignature.ImageSteps, TFTensorRef) {
        let decodeUsers = (consumers[flat.resolved(element)] ?? []).compactMap { flat.node($0.node) }
        guard let decode = decodeUsers.first(where: { $0.op == "DecodeJpeg" }), decodeUsers.count == 1 else {
            throw EngineError.invalidModel("signature '\(signature)': the map_fn body does not start with DecodeJpeg (found \(decodeUsers.map(\.op)))")
        }
        func attrInt(_ node: TFNode, _ key: String, _ fallback: Int) -> Int {
            if case .i(let v)? = node.attributes[key]?.value { return Int(v) }
            return fallback
        }
        func attrString(_ node: TFNode, _ key: String) -> String {
            if case .s(let v)? = node.attributes[key]?.value { return String(decoding: v, as: UTF8.self) }
            return ""
        }
        func attrBool(_ node: TFNode, _ key: String, _ fallback: Bool) -> Bool {
            if case .b(let v)? = node.attributes[key]?.value { return v }
            return fallback
        }
        var channels = attrInt(decode, "channels", 0)
        if channels == 0 { channels = 3 }
        guard channels == 1 || channels == 3 else { throw EngineError.invalidModel("DecodeJpeg '\(decode.name)': channels \(channels) is not supported (1 or 3)") }
        let dct = attrString(decode, "dct_method")
        guard ["", "INTEGER_FAST", "INTEGER_ACCURATE"].contains(dct) else { throw EngineError.invalidModel("DecodeJpeg '\(decode.name)': dct_method '\(dct)'") }
        guard attrInt(decode, "ratio", 1) == 1, attrBool(decode, "fancy_upscaling", true), !attrBool(decode, "try_recover_truncated", false) else {
            throw EngineError.invalidModel("DecodeJpeg '\(decode.name)': ratio, fancy_upscaling or try_recover_truncated differ from the defaults, which is not supported")
        }
        var before: [SavedModelSignature.ImageSteps.Arithmetic] = [], after: [SavedModelSignature.ImageSteps.Arithmetic] = []
        var crop: Double?
        var size: (height: Int, width: Int, halfPixel: Bool)?
        var current = TFTensorRef(node: decode.name, index: 0)
        for _ in 0..<64 {
            let users = (consumers[current] ?? []).compactMap { user -> (TFNode, Int)? in flat.node(user.node).map { ($0, user.input) } }
            // Shape/StridedSlice users compute the crop box from the image's shape: not data.
            let dataUsers = users.filter { !isShapeOnly($0.0) }
            guard dataUsers.count == 1, let (node, slot) = dataUsers.first else {
                throw EngineError.invalidModel("signature '\(signature)': the image preprocessing branches at '\(current.node)' (\(dataUsers.map { $0.0.op })); a single chain is supported")
            }
            func scalar(_ index: Int) -> Float? {
                guard let input = node.input(index) else { return nil }
                let source = throughIdentities(input)
                guard let producer = flat.node(source.node), producer.op == "Const", case .tensor(let proto)? = producer.attributes["value"]?.value,
                      let tensor = try? TFTypes.decode(proto, what: producer.name), tensor.count == 1 else { return nil }
                switch tensor.dtype {
                case .float32: return tensor.pointer(as: Float.self).pointee
                case .float64: return Float(tensor.pointer(as: Double.self).pointee)
                default: return nil
                }
            }
            switch node.op {
            case "TensorArrayWriteV3", "TensorListSetItem":
                guard slot == 2, let size else {
                    throw EngineError.invalidModel("signature '\(signature)': the map_fn body writes images without resizing them to one size (ResizeBilinear), so they cannot form a batch")
                }
                let steps = SavedModelSignature.ImageSteps(channels: channels, fastDCT: dct != "INTEGER_ACCURATE", beforeResize: before,
                                                           centralCropFraction: crop, height: size.height, width: size.width,
                                                           halfPixelCenters: size.halfPixel, afterResize: after, networkTensor: "")
                return (steps, TFTensorRef(node: node.name, index: 0))
            case "Cast", "Identity", "ExpandDims", "Squeeze", "EnsureShape", "CheckNumerics":
                if node.op == "Cast", case .type(let target)? = node.attributes["DstT"]?.value, target != .dtFloat {
                    throw EngineError.invalidModel("signature '\(signature)': image preprocessing casts to \(TFTypes.name(target)); only float32 is supported")
                }
            case "Mul", "Sub", "Add", "AddV2", "RealDiv", "Div":
                let other = 1 - slot
                guard let value = scalar(other) else {
                    throw EngineError.invalidModel("signature '\(signature)': image step '\(node.name)' (\(node.op)) is not by a scalar constant")
                }
                let step: SavedModelSignature.ImageSteps.Arithmetic
                switch node.op {
                case "Mul": step = .mul(value)
                case "Add", "AddV2": step = .add(value)
                case "Sub" where slot == 0: step = .sub(value)
                case "RealDiv" where slot == 0, "Div" where slot == 0: step = .div(value)
                default: throw EngineError.invalidModel("signature '\(signature)': image step '\(node.name)' (constant \(node.op) image) is not supported")
                }
                if size == nil { before.append(step) } else { after.append(step) }
            case "Slice":
                guard slot == 0, size == nil, crop == nil else {
                    throw EngineError.invalidModel("signature '\(signature)': image Slice '\(node.name)' is not a central crop before the resize")
                }
                guard let fraction = cropFraction(node) else {
                    throw EngineError.invalidModel("signature '\(signature)': image Slice '\(node.name)' is not tf.image.central_crop (no fraction found)")
                }
                crop = fraction
            case "ResizeBilinear":
                guard slot == 0, size == nil else { throw EngineError.invalidModel("signature '\(signature)': a second resize '\(node.name)'") }
                guard let sizeInput = node.input(1), let dims = integers(sizeInput), dims.count == 2, dims.allSatisfy({ (1...65_535).contains($0) }) else {
                    throw EngineError.invalidModel("ResizeBilinear '\(node.name)': the size must be a constant")
                }
                guard !attrBool(node, "align_corners", false) else {
                    throw EngineError.invalidModel("ResizeBilinear '\(node.name)': align_corners=true is not supported")
                }
                size = (dims[0], dims[1], attrBool(node, "half_pixel_centers", false))
            default:
                throw EngineError.invalidModel("signature '\(signature)': image preprocessing op \(node.op) ('\(node.name)') is not supported (DecodeJpeg, Cast, Mul/Sub/Add/RealDiv by constants, central_crop, ResizeBilinear are)")
            }
            current = TFTensorRef(node: node.name, index: 0)
        }
        throw EngineError.invalidModel("signature '\(signature)': the image preprocessing chain is longer than 64 ops")
    }

    /// Whether `node` only reads its input's shape (Shape, Size, Rank, or Identity /
    /// Assert-style checks whose users do), as central_crop's size computation does.
    private func isShapeOnly(_ node: TFNode, depth: Int = 0) -> Bool {
        if ["Shape", "Size", "Rank", "Assert", "NoOp"].contains(node.op) { return true }
        guard depth < 16, ["Identity", "Snapshot"].contains(node.op) else { return false }
        let users = (consumers[TFTensorRef(node: node.name, index: 0)] ?? []).compactMap { flat.node($0.node) }
        return users.allSatisfy { isShapeOnly($0, depth: depth + 1) }  // none: a dead check
    }

    /// tf.image.central_crop's fraction: the scalar constant in (0, 1] that multiplies the
    /// image size in the computation of the Slice's begin.
    private func cropFraction(_ slice: TFNode) -> Double? {
        guard let begin = slice.input(1) else { return nil }
        var stack = [begin]
        var seen = Set<String>()
        while let ref = stack.popLast() {
            let source = flat.resolved(ref)
            guard seen.insert(source.node).inserted, seen.count < 200, let node = flat.node(source.node) else { continue }
            if node.op == "Mul" {
                for input in node.inputs {
                    // The fraction may be cast (float32 -> float64) on the way.
                    var source = throughIdentities(input)
                    while let cast = flat.node(source.node), cast.op == "Cast", !cast.inputs.isEmpty { source = throughIdentities(cast.inputs[0]) }
                    if let producer = flat.node(source.node), producer.op == "Const",
                       case .tensor(let proto)? = producer.attributes["value"]?.value,
                       let tensor = try? TFTypes.decode(proto, what: producer.name), tensor.count == 1 {
                        let value = tensor.dtype == .float64 ? tensor.pointer(as: Double.self).pointee
                            : tensor.dtype == .float32 ? Double(tensor.pointer(as: Float.self).pointee) : -1
                        if value > 0 && value <= 1 { return value }
                    }
                }
            }
            // The box comes from the image's shape: never walk into the image data itself.
            if ["Shape", "Size", "Rank", "DecodeJpeg", "TensorArrayReadV3", "TensorListGetItem"].contains(node.op) { continue }
            stack.append(contentsOf: node.inputs)
        }
        return nil
    }
}
