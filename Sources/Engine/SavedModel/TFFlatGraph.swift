import TensorFlowProto

/// One tensor of a TensorFlow graph: output `index` of node `node`.
struct TFTensorRef: Hashable, CustomStringConvertible {
    var node: String
    var index: Int

    init(node: String, index: Int) {
        self.node = node
        self.index = index
    }

    /// Parses a graph-level reference: "node" (output 0) or "node:i". Nil for "^control".
    init?(graphInput text: String) {
        guard !text.hasPrefix("^"), !text.isEmpty else { return nil }
        if let colon = text.lastIndex(of: ":"), let index = Int(text[text.index(after: colon)...]), index >= 0 {
            node = String(text[..<colon])
            self.index = index
        } else {
            node = text
            index = 0
        }
    }

    var description: String { "\(node):\(index)" }
}

/// A node of the flattened graph: function calls inlined, inputs resolved to tensors.
struct TFNode {
    var name: String
    var op: String
    var inputs: [TFTensorRef]
    var attributes: [String: Tensorflow_AttrValue]

    /// Input `index`, nil when the node (from the file) lists fewer inputs.
    func input(_ index: Int) -> TFTensorRef? { index >= 0 && index < inputs.count ? inputs[index] : nil }
}

/// A TensorFlow graph with every `StatefulPartitionedCall` / `PartitionedCall` (and direct
/// calls of library functions) inlined, so one namespace of nodes remains. Inlined nodes are
/// named `<call node>/<body node>`; a call's outputs are aliases of the tensors its body
/// returns. Control dependencies are dropped (inference needs none but Assert's).
struct TFFlatGraph {
    private(set) var nodes: [String: TFNode] = [:]
    /// Outputs of inlined calls, to the tensor they stand for.
    private var aliases: [TFTensorRef: TFTensorRef] = [:]
    /// Each inlined call node: the library function it called and its (unresolved) inputs.
    private(set) var calls: [String: (function: String, inputs: [TFTensorRef])] = [:]

    static let callOps: Set<String> = ["StatefulPartitionedCall", "PartitionedCall"]

    /// One function body being inlined: its node name prefix, argument bindings, and its
    /// nodes by (unprefixed) name, to size their named outputs.
    private struct Scope {
        var prefix: String
        var arguments: [String: TFTensorRef]
        var body: [String: Tensorflow_NodeDef]
        var depth: Int
    }

    /// Flattens `graph`, inlining calls to library functions (nesting depth limited, so a
    /// hostile file cannot recurse without end). `opDefs` size named outputs ("node:arg:i").
    init(graph: Tensorflow_GraphDef, functions: [String: Tensorflow_FunctionDef], opDefs: [String: Tensorflow_OpDef]) throws {
        let top = Scope(prefix: "", arguments: [:], body: [:], depth: 0)
        var pending: [(Tensorflow_NodeDef, Scope)] = graph.node.map { ($0, top) }
        var budget = 2_000_000
        while let (proto, scope) = pending.popLast() {
            budget -= 1
            guard budget > 0 else { throw EngineError.invalidModel("the graph inlines to more than 2,000,000 nodes") }
            let name = scope.prefix + proto.name
            guard nodes[name] == nil, calls[name] == nil else {
                throw EngineError.invalidModel("node '\(name)' is defined twice")
            }
            var inputs: [TFTensorRef] = []
            for text in proto.input where !text.hasPrefix("^") {
                inputs.append(try Self.resolve(text, in: scope, functions: functions, opDefs: opDefs))
            }
            var callee: String?
            if Self.callOps.contains(proto.op) {
                guard case .func(let f)? = proto.attr["f"]?.value else {
                    throw EngineError.invalidModel("call node '\(name)' (\(proto.op)) has no function attribute 'f'")
                }
                callee = f.name
            } else if functions[proto.op] != nil {
                callee = proto.op
            }
            guard let callee else {
                nodes[name] = TFNode(name: name, op: proto.op, inputs: inputs, attributes: proto.attr)
                continue
            }
            guard let function = functions[callee] else {
                throw EngineError.invalidModel("node '\(name)' calls function '\(callee)', which the graph's library does not define")
            }
            guard scope.depth < 64 else { throw EngineError.invalidModel("function calls nest deeper than 64 at '\(name)'") }
            let parameters = function.signature.inputArg
            guard parameters.count == inputs.count else {
                throw EngineError.invalidModel("node '\(name)' passes \(inputs.count) inputs to '\(callee)', which takes \(parameters.count)")
            }
            calls[name] = (callee, inputs)
            var body = Scope(prefix: name + "/", arguments: [:], body: [:], depth: scope.depth + 1)
            for (parameter, input) in zip(parameters, inputs) { body.arguments[parameter.name] = input }
            for node in function.nodeDef { body.body[node.name] = node }
            for (index, output) in function.signature.outputArg.enumerated() {
                guard let returned = function.ret[output.name] else {
                    throw EngineError.invalidModel("function '\(callee)' returns nothing for its output '\(output.name)'")
                }
                aliases[TFTensorRef(node: name, index: index)] = try Self.resolve(returned, in: body, functions: functions, opDefs: opDefs)
            }
            for node in function.nodeDef { pending.append((node, body)) }
        }
    }

    /// The tensor `ref` stands for, following call outputs.
    func resolved(_ ref: TFTensorRef) -> TFTensorRef {
        var current = ref
        var hops = 0
        while let next = aliases[current], hops < 100_000 {
            current = next
            hops += 1
        }
        return current
    }

    /// The node producing `ref` (after following aliases), if the graph has it.
    func producer(_ ref: TFTensorRef) -> TFNode? { nodes[resolved(ref).node] }

    func node(_ name: String) -> TFNode? { nodes[name] }

    /// Resolves one input string. At graph level: "node[:i]". Inside a function body: an
    /// argument name, "node" / "node:i" style is not used; "node:output_arg:i" indexes that
    /// node's named output list.
    private static func resolve(_ text: String, in scope: Scope, functions: [String: Tensorflow_FunctionDef],
                                opDefs: [String: Tensorflow_OpDef]) throws -> TFTensorRef {
        guard scope.depth > 0 else {
            guard let ref = TFTensorRef(graphInput: text) else { throw EngineError.invalidModel("bad input reference '\(text)'") }
            return ref
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if let argument = scope.arguments[parts[0]] {
            guard parts.count == 1 || (parts.count == 2 && parts[1] == "0") else {
                throw EngineError.invalidModel("bad argument reference '\(text)' in '\(scope.prefix)'")
            }
            return argument
        }
        guard let node = scope.body[parts[0]] else {
            throw EngineError.invalidModel("'\(text)' in function body '\(scope.prefix)' names no argument or node")
        }
        if parts.count == 1 { return TFTensorRef(node: scope.prefix + parts[0], index: 0) }
        // Output lists are shorter than 100,000 (`count(of:)`), so the sum below cannot overflow.
        guard parts.count == 3, let index = Int(parts[2]), index >= 0, index < 100_000 else {
            throw EngineError.invalidModel("bad function input reference '\(text)' in '\(scope.prefix)'")
        }
        let offset = try outputOffset(of: node, argument: parts[1], functions: functions, opDefs: opDefs)
        return TFTensorRef(node: scope.prefix + parts[0], index: offset + index)
    }

    /// Flat index of the first tensor of output argument `argument` of `node`.
    private static func outputOffset(of node: Tensorflow_NodeDef, argument: String, functions: [String: Tensorflow_FunctionDef],
                                     opDefs: [String: Tensorflow_OpDef]) throws -> Int {
        if let function = functions[node.op] {
            guard let index = function.signature.outputArg.firstIndex(where: { $0.name == argument }) else {
                throw EngineError.invalidModel("function '\(node.op)' has no output '\(argument)' (node '\(node.name)')")
            }
            return index
        }
        guard let def = opDefs[node.op] else {
            // Exports leave ops used only inside loop bodies out of their op list: the
            // multi-output ones a body may use are known here; any other op has one output list.
            guard let outputs = knownOutputs[node.op] else { return 0 }
            guard let index = outputs.firstIndex(of: argument) else {
                throw EngineError.invalidModel("op \(node.op) has no output '\(argument)' (node '\(node.name)')")
            }
            return index
        }
        var offset = 0
        for output in def.outputArg {
            if output.name == argument { return offset }
            offset += try count(of: output, node)
        }
        throw EngineError.invalidModel("op \(node.op) has no output '\(argument)' (node '\(node.name)')")
    }

    /// Output argument names of multi-output ops (each one tensor), for ops an export's op
    /// list leaves out.
    static let knownOutputs: [String: [String]] = [
        "TopKV2": ["values", "indices"],
        "FusedBatchNorm": ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"],
        "FusedBatchNormV2": ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"],
        "FusedBatchNormV3": ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2", "reserve_space_3"],
        "Unique": ["y", "idx"],
        "Switch": ["output_false", "output_true"],
        "Merge": ["output", "value_index"],
        "TensorListPopBack": ["output_handle", "tensor"],
        "TensorArrayV3": ["handle", "flow"],
    ]

    /// How many tensors an argument stands for: 1, its number attribute, or its type list's length.
    static func count(of argument: Tensorflow_OpDef.ArgDef, _ node: Tensorflow_NodeDef) throws -> Int {
        if !argument.numberAttr.isEmpty {
            guard case .i(let n)? = node.attr[argument.numberAttr]?.value, n >= 0, n < 100_000 else {
                throw EngineError.invalidModel("node '\(node.name)' lacks a valid '\(argument.numberAttr)' attribute")
            }
            return Int(n)
        }
        if !argument.typeListAttr.isEmpty {
            guard case .list(let list)? = node.attr[argument.typeListAttr]?.value else {
                throw EngineError.invalidModel("node '\(node.name)' lacks its '\(argument.typeListAttr)' type list")
            }
            return list.type.count
        }
        return 1
    }
}
