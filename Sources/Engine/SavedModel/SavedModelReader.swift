import FoundationEssentials
import SwiftProtobuf
import TensorFlowProto

/// A SavedModel directory read natively: the meta graph tagged exactly {"serve"} from
/// `saved_model.pb`, with OpDef attribute defaults merged into every node; the variables bundle;
/// where each variable's value is (TF1: the restore graph; TF2: the saved object graph, the way
/// `tf.saved_model.load` binds a function's captured inputs); assets; the init op.
///
/// `init` checks everything it resolves eagerly (tag set, duplicate functions, assets on disk,
/// the restore graph, the checkpoint's object graph) and throws `EngineError.invalidModel` naming
/// the file and the problem; tensor values are read (and checksummed) on demand. Immutable.
///
///     let reader = try SavedModelReader(directory: "/models/inception/1")
///     for (name, signature) in reader.signatures { ... }
///     let kernel = try reader.variable(node: "InceptionV3/conv2d/kernel")                 // TF1
///     if case .variable(let v) = try reader.capture(function: f, index: 3) { try reader.value(of: v) }  // TF2
public final class SavedModelReader: @unchecked Sendable {
    /// What a concrete function's captured (trailing) input is bound to.
    public enum Capture: Sendable, Equatable {
        /// A variable whose value is the checkpoint tensor `key` (read it with `value(of:)`).
        case variable(Variable)
        /// The value of the Const node `operation` of `graph`.
        case constant(operation: String)
        /// A string scalar: the absolute path of an asset file.
        case asset(path: String)
        /// A resource (a lookup table, ...) made by calling `creator` and filled by calling
        /// `initializer` (library function names; nil when the object has none).
        case resource(node: Int, creator: String?, initializer: String?)
        /// A tensor captured from another function's graph (`name` in `function`).
        case capturedTensor(name: String, function: String)
    }

    /// A TF2 variable object (SavedVariable) and where its value is.
    public struct Variable: Sendable, Equatable {
        /// Its node id in `metaGraph.objectGraphDef` (and the checkpoint's object graph).
        public let objectID: Int
        /// SavedVariable.name (e.g. "conv/kernel"), for messages.
        public let name: String
        /// The checkpoint (bundle) key holding its value.
        public let key: String
        /// As the bundle stores it (equal to the SavedVariable's, checked).
        public let dtype: Tensorflow_DataType
        public let shape: [Int]
    }

    /// The export directory, absolute.
    public let directory: String
    /// The "serve" meta graph, attribute defaults merged into `graphDef` and library functions.
    public let metaGraph: Tensorflow_MetaGraphDef
    public var graph: Tensorflow_GraphDef { metaGraph.graphDef }
    /// The stripped op list by op name.
    public let opDefs: [String: Tensorflow_OpDef]
    /// Library functions by signature name (defaults merged into their nodes).
    public let functions: [String: Tensorflow_FunctionDef]
    /// Servable signatures by key (without `__saved_model_init_op`).
    public let signatures: [String: Tensorflow_SignatureDef]
    /// Asset tensor name (`asset_file_def[i].tensor_info.name`, e.g. "asset_path_initializer:0")
    /// to the asset's absolute path `<directory>/assets/<filename>`; every file exists.
    public let assets: [String: String]
    /// The node to run once after the variables are restored (the `__saved_model_init_op`
    /// signature's output, else collection `saved_model_main_op`, else `legacy_init_op`); nil
    /// when the export has none.
    public let initOp: String?
    /// `variables/variables` (nil when the export has no variables index).
    public let bundle: TensorBundle?
    /// TF1: VariableV2 / Variable / VarHandleOp node name to its checkpoint key, from the
    /// restore graph (`saver_def.restore_op_name` -> Assign/AssignVariableOp <- RestoreV2's
    /// tensor_names[i]), else the node's name when the bundle has that key.
    public let variableKeys: [String: String]
    /// TF2: object-graph node id to its VARIABLE_VALUE checkpoint key (from the bundle's
    /// `_CHECKPOINTABLE_OBJECT_GRAPH`); empty for TF1 exports.
    public let checkpointKeys: [Int: String]

    /// Graph node name -> index in `graph.node`.
    private let nodeIndex: [String: Int]

    static let variableOps: Set<String> = ["VariableV2", "Variable", "VarHandleOp"]
    static let initSignature = "__saved_model_init_op"
    private var file: String { directory + "/saved_model.pb" }

    public init(directory path: String) throws(EngineError) {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        directory = absolute.hasSuffix("/") && absolute.count > 1 ? String(absolute.dropLast()) : absolute
        let file = directory + "/saved_model.pb"
        func invalid(_ what: String) -> EngineError { .invalidModel("'\(file)': \(what)") }

        let data: Data
        do { data = try readFile(file) } catch {
            throw .invalidModel("cannot read '\(file)': \(describeFileError(error))")
        }
        guard !data.isEmpty else { throw invalid("the file is empty") }
        let savedModel: Tensorflow_SavedModel
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 100
            savedModel = try Tensorflow_SavedModel(serializedBytes: data, options: options)
        } catch {
            throw invalid("not a valid SavedModel protobuf (truncated or corrupt?): \(error)")
        }
        let tagSets = savedModel.metaGraphs.map { Set($0.metaInfoDef.tags) }
        guard let chosen = tagSets.firstIndex(of: ["serve"]) else {
            let listed = tagSets.map { "{" + $0.sorted().map { "\"\($0)\"" }.joined(separator: ", ") + "}" }
            throw invalid("no meta graph is tagged exactly {\"serve\"}; the file has \(listed.isEmpty ? "no meta graphs (truncated?)" : listed.joined(separator: ", "))")
        }
        var meta = savedModel.metaGraphs[chosen]

        // Op definitions and their defaults.
        var opDefs: [String: Tensorflow_OpDef] = [:]
        for op in meta.metaInfoDef.strippedOpList.op {
            guard opDefs[op.name] == nil else { throw invalid("the stripped op list defines '\(op.name)' twice") }
            opDefs[op.name] = op
        }
        self.opDefs = opDefs
        var defaults: [String: [(String, Tensorflow_AttrValue)]] = [:]
        for (name, op) in opDefs {
            let list = op.attr.filter(\.hasDefaultValue).map { ($0.name, $0.defaultValue) }
            if !list.isEmpty { defaults[name] = list }
        }
        func merge(_ node: inout Tensorflow_NodeDef) {
            guard let list = defaults[node.op] else { return }
            for (name, value) in list where node.attr[name] == nil { node.attr[name] = value }
        }
        var graph = meta.graphDef
        for index in graph.node.indices { merge(&graph.node[index]) }
        var functions: [String: Tensorflow_FunctionDef] = [:]
        for var function in graph.library.function {
            let name = function.signature.name
            guard !name.isEmpty, functions[name] == nil else {
                throw invalid(name.isEmpty ? "a library function has no name" : "library function '\(name)' is defined twice")
            }
            for index in function.nodeDef.indices { merge(&function.nodeDef[index]) }
            functions[name] = function
        }
        graph.library.function = graph.library.function.map { functions[$0.signature.name]! }
        meta.graphDef = graph
        metaGraph = meta
        self.functions = functions
        signatures = meta.signatureDef.filter { $0.key != Self.initSignature }

        var nodes: [String: Tensorflow_NodeDef] = [:]
        var nodeIndex: [String: Int] = [:]
        for (index, node) in graph.node.enumerated() {
            guard nodes[node.name] == nil else { throw invalid("graph node '\(node.name)' is defined twice") }
            nodes[node.name] = node
            nodeIndex[node.name] = index
        }
        self.nodeIndex = nodeIndex

        // Assets.
        var assets: [String: String] = [:]
        var assetPaths: [String] = []
        for (index, asset) in meta.assetFileDef.enumerated() {
            let name = asset.filename
            guard !name.isEmpty, !name.contains("/"), name != ".", name != "..", !name.contains("\0") else {
                throw invalid("asset \(index) has the file name '\(name)'; an asset must be a plain file name inside assets/")
            }
            let assetPath = directory + "/assets/" + name
            var isDirectory = false
            guard FileManager.default.fileExists(atPath: assetPath, isDirectory: &isDirectory), !isDirectory else {
                throw .invalidModel("asset file '\(assetPath)' (asset_file_def \(index) of '\(file)') is missing")
            }
            assetPaths.append(assetPath)
            if case .name(let tensor)? = asset.tensorInfo.encoding { assets[tensor] = assetPath }
        }
        self.assets = assets

        // The init op, in the order TensorFlow's loader looks for it.
        var initOp: String?
        if let signature = meta.signatureDef[Self.initSignature] {
            guard let output = signature.outputs[Self.initSignature], case .name(let tensor)? = output.encoding,
                  let reference = TFTensorRef(graphInput: tensor) else {
                throw invalid("signature \(Self.initSignature) has no output '\(Self.initSignature)' naming a tensor")
            }
            initOp = reference.node
        } else {
            for collection in ["saved_model_main_op", "legacy_init_op"] {
                guard let entry = meta.collectionDef[collection] else { continue }
                guard case .nodeList(let list)? = entry.kind, list.value.count == 1 else {
                    throw invalid("collection '\(collection)' must name exactly one op")
                }
                let text = list.value[0]
                guard let node = text.hasPrefix("^") ? String(text.dropFirst()) : TFTensorRef(graphInput: text)?.node, !node.isEmpty else {
                    throw invalid("collection '\(collection)' names no op")
                }
                initOp = node
                break
            }
        }
        if let initOp, nodes[initOp] == nil { throw invalid("the init op '\(initOp)' is not a node of the graph") }
        self.initOp = initOp

        // Variables.
        let prefix = directory + "/variables/variables"
        let bundle = FileManager.default.fileExists(atPath: prefix + ".index") ? try TensorBundle(prefix: prefix) : nil
        self.bundle = bundle
        var variableKeys = try Self.restoreKeys(meta.saverDef.restoreOpName, nodes: nodes, file: file)
        for node in graph.node where Self.variableOps.contains(node.op) && variableKeys[node.name] == nil {
            if bundle?.entry(node.name) != nil { variableKeys[node.name] = node.name }
        }
        self.variableKeys = variableKeys

        var checkpointKeys: [Int: String] = [:]
        if meta.hasObjectGraphDef, let bundle, bundle.entry("_CHECKPOINTABLE_OBJECT_GRAPH") != nil {
            let strings = try bundle.strings("_CHECKPOINTABLE_OBJECT_GRAPH")
            guard strings.count == 1 else {
                throw .invalidModel("'\(prefix).index': _CHECKPOINTABLE_OBJECT_GRAPH holds \(strings.count) strings, not 1")
            }
            let objects: Tensorflow_TrackableObjectGraph
            do {
                var options = BinaryDecodingOptions()
                options.messageDepthLimit = 20
                objects = try Tensorflow_TrackableObjectGraph(serializedBytes: strings[0], options: options)
            } catch {
                throw .invalidModel("'\(prefix)': the checkpoint's object graph (_CHECKPOINTABLE_OBJECT_GRAPH) does not decode: \(error)")
            }
            for (id, node) in objects.nodes.enumerated() {
                if let attribute = node.attributes.first(where: { $0.name == "VARIABLE_VALUE" }) {
                    checkpointKeys[id] = attribute.checkpointKey
                }
            }
        }
        self.checkpointKeys = checkpointKeys
    }

    /// Variable node -> checkpoint key from the TF1 restore graph reachable from `restoreOp`:
    /// Assign(variable, RestoreV2:i) or AssignVariableOp(handle, Identity(RestoreV2:i)), the key
    /// being RestoreV2's tensor_names Const element i. Empty when there is no such graph.
    private static func restoreKeys(_ restoreOp: String, nodes: [String: Tensorflow_NodeDef], file: String) throws(EngineError) -> [String: String] {
        func invalid(_ what: String) -> EngineError { .invalidModel("'\(file)': restore graph: \(what)") }
        let start = restoreOp.hasPrefix("^") ? String(restoreOp.dropFirst()) : TFTensorRef(graphInput: restoreOp)?.node
        guard let start, nodes[start] != nil else { return [:] }
        // Through Identity chains (bounded: a cycle in a hostile file must not loop forever).
        func source(_ text: String) -> TFTensorRef? {
            guard var reference = TFTensorRef(graphInput: text) else { return nil }
            for _ in 0..<64 {
                guard let node = nodes[reference.node], node.op == "Identity", let first = node.input.first,
                      let next = TFTensorRef(graphInput: first) else { return reference }
                reference = next
            }
            return nil
        }
        var names: [String: [[UInt8]]] = [:]
        var keys: [String: String] = [:]
        var visited: Set<String> = [start]
        var pending = [start]
        while let name = pending.popLast() {
            guard let node = nodes[name] else { continue }
            for input in node.input {
                let other = input.hasPrefix("^") ? String(input.dropFirst()) : (TFTensorRef(graphInput: input)?.node ?? "")
                if nodes[other] != nil, visited.insert(other).inserted { pending.append(other) }
            }
            guard node.op == "Assign" || node.op == "AssignVariableOp", node.input.count >= 2,
                  let target = source(node.input[0]), let value = source(node.input[1]),
                  let restore = nodes[value.node], restore.op == "RestoreV2" else { continue }
            if names[restore.name] == nil {
                guard restore.input.count >= 2, let namesRef = source(restore.input[1]), let constant = nodes[namesRef.node],
                      constant.op == "Const", case .tensor(let proto)? = constant.attr["value"]?.value else {
                    throw invalid("the tensor_names input of '\(restore.name)' is not a Const")
                }
                do { names[restore.name] = try TFTypes.decodeStrings(proto, what: "'\(file)': Const '\(constant.name)'").values } catch {
                    throw (error as? EngineError) ?? invalid("\(error)")
                }
            }
            let list = names[restore.name]!
            guard value.index < list.count else {
                throw invalid("'\(node.name)' reads output \(value.index) of '\(restore.name)', which restores \(list.count) tensors")
            }
            guard let key = String(validating: list[value.index], as: UTF8.self) else {
                throw invalid("'\(restore.name)' restores a key that is not UTF-8")
            }
            if keys[target.node] == nil { keys[target.node] = key }
        }
        return keys
    }

    // MARK: values

    private func requireBundle() throws(EngineError) -> TensorBundle {
        guard let bundle else { throw .invalidModel("'\(directory)' has no variables (variables/variables.index is missing)") }
        return bundle
    }

    /// TF1: the checkpoint value of variable node `node` (VariableV2, Variable or VarHandleOp),
    /// its dtype and (when declared) shape checked against the node's.
    public func variable(node name: String) throws(EngineError) -> HostTensor {
        guard let key = variableKeys[name] else {
            throw .invalidModel("'\(file)': no checkpoint key for variable '\(name)' (not restored by '\(metaGraph.saverDef.restoreOpName)' and not a key of the bundle)")
        }
        let bundle = try requireBundle()
        guard let entry = bundle.entry(key) else { throw .invalidModel("'\(bundle.prefix).index' has no tensor '\(key)' (restored into variable '\(name)')") }
        if let index = nodeIndex[name] {
            let node = graph.node[index]
            if case .type(let dtype)? = node.attr["dtype"]?.value, dtype != entry.dtype {
                throw .invalidModel("'\(bundle.prefix).index': '\(key)' is \(TensorBundle.name(entry.dtype)), variable '\(name)' is \(TensorBundle.name(dtype))")
            }
            if case .shape(let shape)? = node.attr["shape"]?.value, !shape.unknownRank, shape.dim.allSatisfy({ $0.size >= 0 }),
               shape.dim.map({ Int($0.size) }) != entry.shape {
                throw .invalidModel("'\(bundle.prefix).index': '\(key)' has shape \(entry.shape), variable '\(name)' declares \(shape.dim.map(\.size))")
            }
        }
        return try bundle.tensor(key)
    }

    /// The checkpoint value of a captured variable.
    public func value(of variable: Variable) throws(EngineError) -> HostTensor {
        try requireBundle().tensor(variable.key)
    }

    /// Every captured input of concrete function `function`, in the order of its trailing
    /// arguments.
    public func captures(function: String) throws(EngineError) -> [Capture] {
        let count = try boundInputs(function).count
        var result: [Capture] = []
        for index in 0..<count { result.append(try capture(function: function, index: index)) }
        return result
    }

    /// What the `index`-th captured input of concrete function `function` is bound to:
    /// `object_graph_def.concrete_functions[function].bound_inputs[index]` -> that object.
    public func capture(function: String, index: Int) throws(EngineError) -> Capture {
        let bound = try boundInputs(function)
        guard index >= 0, index < bound.count else {
            throw .invalidModel("'\(file)': function '\(function)' has \(bound.count) captured inputs, not \(index + 1)")
        }
        let objects = metaGraph.objectGraphDef.nodes
        let id = Int(bound[index])
        func invalid(_ what: String) -> EngineError {
            .invalidModel("'\(file)': capture \(index) of function '\(function)' (object \(id)): \(what)")
        }
        guard id >= 0, id < objects.count else { throw invalid("no such object (the object graph has \(objects.count))") }
        switch objects[id].kind {
        case .variable(let saved)?:
            guard let key = checkpointKeys[id] else {
                throw invalid("variable '\(saved.name)' has no VARIABLE_VALUE key in the checkpoint's object graph")
            }
            let bundle = try requireBundle()
            guard let entry = bundle.entry(key) else { throw invalid("variable '\(saved.name)': the bundle has no tensor '\(key)'") }
            if saved.dtype != entry.dtype {
                throw invalid("variable '\(saved.name)' is \(TensorBundle.name(saved.dtype)), its checkpoint tensor '\(key)' \(TensorBundle.name(entry.dtype))")
            }
            if saved.hasShape, !saved.shape.unknownRank, saved.shape.dim.allSatisfy({ $0.size >= 0 }),
               saved.shape.dim.map({ Int($0.size) }) != entry.shape {
                throw invalid("variable '\(saved.name)' has shape \(saved.shape.dim.map(\.size)), its checkpoint tensor '\(key)' \(entry.shape)")
            }
            return .variable(Variable(objectID: id, name: saved.name, key: key, dtype: entry.dtype, shape: entry.shape))
        case .constant(let constant)?:
            guard let index = nodeIndex[constant.operation], graph.node[index].op == "Const" else {
                throw invalid("constant '\(constant.operation)' is not a Const node of the graph")
            }
            return .constant(operation: constant.operation)
        case .asset(let asset)?:
            let files = metaGraph.assetFileDef
            guard asset.assetFileDefIndex >= 0, Int(asset.assetFileDefIndex) < files.count else {
                throw invalid("asset index \(asset.assetFileDefIndex) is out of range (\(files.count) assets)")
            }
            // Checked in init: a plain name of an existing file.
            return .asset(path: directory + "/assets/" + files[Int(asset.assetFileDefIndex)].filename)
        case .resource?:
            func functionName(_ child: String) -> String? {
                guard let reference = objects[id].children.first(where: { $0.localName == child }),
                      reference.nodeID >= 0, Int(reference.nodeID) < objects.count else { return nil }
                switch objects[Int(reference.nodeID)].kind {
                case .function(let saved)?: return saved.concreteFunctions.first
                case .bareConcreteFunction(let bare)?: return bare.concreteFunctionName
                default: return nil
                }
            }
            let creator = functionName("_create_resource"), initializer = functionName("_initialize")
            for name in [creator, initializer].compactMap({ $0 }) where functions[name] == nil {
                throw invalid("the resource's function '\(name)' is not in the graph's library")
            }
            return .resource(node: id, creator: creator, initializer: initializer)
        case .capturedTensor(let captured)?:
            return .capturedTensor(name: captured.name, function: captured.concreteFunction)
        case let other?:
            throw invalid("a \(Self.kindName(other)) object cannot be a function input")
        case nil:
            throw invalid("the object has no kind")
        }
    }

    private func boundInputs(_ function: String) throws(EngineError) -> [Int32] {
        guard metaGraph.hasObjectGraphDef else {
            throw .invalidModel("'\(file)' has no saved object graph (a TF1 export): captured inputs of '\(function)' cannot be resolved")
        }
        guard let concrete = metaGraph.objectGraphDef.concreteFunctions[function] else {
            throw .invalidModel("'\(file)': the object graph has no concrete function '\(function)'")
        }
        return concrete.boundInputs
    }

    private static func kindName(_ kind: Tensorflow_SavedObject.OneOf_Kind) -> String {
        switch kind {
        case .userObject: return "user_object"
        case .asset: return "asset"
        case .function: return "function"
        case .variable: return "variable"
        case .bareConcreteFunction: return "bare_concrete_function"
        case .constant: return "constant"
        case .resource: return "resource"
        case .capturedTensor: return "captured_tensor"
        }
    }
}
