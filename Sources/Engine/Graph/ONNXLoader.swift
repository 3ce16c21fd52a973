import FoundationEssentials
import Glibc
import ONNXProto
import SwiftProtobuf

/// Reads an ONNX file into a `Graph`: decodes the protobuf, resolves external tensor data
/// relative to the model's directory, and checks the graph is well formed (every input
/// produced before use, topological order). Operator semantics are checked later, per node.
enum ONNXLoader {
    /// The newest default-domain operator set whose semantics the operators implement (ONNX
    /// 1.17, whose backend node tests the engine is checked against).
    static let newestOpset = 22

    static func load(path: String) throws -> Graph {
        let url = URL(fileURLWithPath: path)
        let data: Data
        do {
            data = try readFile(path, mapped: true)
        } catch {
            throw EngineError.invalidModel("cannot read '\(path)': \(describeFileError(error))")
        }
        return try load(data: data, directory: url.deletingLastPathComponent().path, label: path)
    }

    static func load(data: Data, directory: String?, label: String) throws -> Graph {
        if data.isEmpty { throw EngineError.invalidModel("'\(label)' is empty") }
        let model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 200
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            throw EngineError.invalidModel("'\(label)' is not a valid ONNX protobuf (truncated or corrupt?): \(error)")
        }
        guard model.hasGraph, !model.graph.output.isEmpty else {
            throw EngineError.invalidModel("'\(label)' has no graph or the graph has no outputs (truncated?)")
        }
        var opset = 0
        for entry in model.opsetImport where entry.domain.isEmpty || entry.domain == "ai.onnx" {
            opset = Int(entry.version)
        }
        if opset == 0 {
            if model.opsetImport.isEmpty { opset = 1 } else {
                throw EngineError.invalidModel("'\(label)' imports no default ONNX operator set")
            }
        }
        guard opset <= Self.newestOpset else {
            throw EngineError.invalidModel("'\(label)' uses ONNX opset \(opset); this engine implements the operators' semantics up to opset \(Self.newestOpset) (ONNX 1.17), and newer sets may change them: re-export with opset <= \(Self.newestOpset)")
        }
        let protoGraph = model.graph
        var constants: [String: HostTensor] = [:]
        for initializer in protoGraph.initializer {
            constants[initializer.name] = try decodeTensor(initializer, directory: directory)
        }
        let inputs = try protoGraph.input.filter { constants[$0.name] == nil }.map(valueInfo)
        let outputs = try protoGraph.output.map(valueInfo)
        // Single assignment (ONNX's rule): every value has one source, so the planner's
        // per-name bookkeeping (specs, arena offsets, liveness) is unambiguous.
        var sources = Set(constants.keys)
        for input in inputs where !sources.insert(input.name).inserted {
            throw EngineError.invalidModel("'\(label)': graph input '\(input.name)' is declared twice")
        }
        for (index, proto) in protoGraph.node.enumerated() {
            for output in proto.output where !output.isEmpty && !sources.insert(output).inserted {
                let name = proto.name.isEmpty ? "\(proto.opType)_\(index)" : proto.name
                throw EngineError.invalidModel("'\(label)': node '\(name)' (\(proto.opType)) writes '\(output)', which an initializer, a graph input or another node already provides")
            }
        }
        var nodes: [Node] = []
        nodes.reserveCapacity(protoGraph.node.count)
        for (index, proto) in protoGraph.node.enumerated() {
            let name = proto.name.isEmpty ? "\(proto.opType)_\(index)" : proto.name
            var attributes: [String: Attribute] = [:]
            for attribute in proto.attribute {
                attributes[attribute.name] = try decodeAttribute(attribute, node: name, op: proto.opType, directory: directory)
            }
            nodes.append(Node(name: name, opType: proto.opType, domain: proto.domain,
                              inputs: proto.input, outputs: proto.output, attributes: attributes))
        }
        let graph = Graph(nodes: try topologicallySorted(nodes, available: Set(constants.keys).union(inputs.map(\.name))),
                          constants: constants, inputs: inputs, outputs: outputs, opset: opset)
        return graph
    }

    /// Orders nodes so each runs after the producers of its inputs (ONNX requires this order,
    /// but some exporters break it). Throws for inputs nothing produces and for cycles.
    static func topologicallySorted(_ nodes: [Node], available: Set<String>) throws -> [Node] {
        var produced = available
        produced.insert("")
        var remaining = nodes
        var sorted: [Node] = []
        sorted.reserveCapacity(nodes.count)
        while !remaining.isEmpty {
            var next: [Node] = []
            var progressed = false
            for node in remaining {
                if node.inputs.allSatisfy({ produced.contains($0) }) {
                    sorted.append(node)
                    produced.formUnion(node.outputs)
                    progressed = true
                } else {
                    next.append(node)
                }
            }
            if !progressed {
                let node = next[0]
                let missing = node.inputs.first { !produced.contains($0) } ?? "?"
                throw EngineError.invalidModel("node '\(node.name)' (\(node.opType)) reads '\(missing)', which no node, initializer or graph input provides")
            }
            remaining = next
        }
        return sorted
    }

    static func valueInfo(_ proto: Onnx_ValueInfoProto) throws -> ValueInfo {
        guard case .tensorType(let tensorType)? = proto.type.value else {
            return ValueInfo(name: proto.name, dtype: nil, typeName: "non-tensor type", dims: nil)
        }
        let code = Int(tensorType.elemType)
        let dims: [Dimension]? = tensorType.hasShape ? tensorType.shape.dim.map { dim in
            switch dim.value {
            case .dimValue(let size)?: return size >= 0 ? .fixed(Int(size)) : .symbolic("?")
            case .dimParam(let name)?: return .symbolic(name)
            case nil: return .symbolic("?")
            }
        } : nil
        return ValueInfo(name: proto.name, dtype: DType(rawValue: code), typeName: DType.onnxName(code), dims: dims)
    }

    static func decodeAttribute(_ proto: Onnx_AttributeProto, node: String, op: String, directory: String?) throws -> Attribute {
        if !proto.refAttrName.isEmpty {
            throw EngineError.unsupported(node: node, op: op, reason: "attribute '\(proto.name)' refers to a function attribute")
        }
        switch proto.type {
        case .float: return .float(proto.f)
        case .int: return .int(Int(proto.i))
        case .string: return .string(String(decoding: proto.s, as: UTF8.self))
        case .tensor: return .tensor(try decodeTensor(proto.t, directory: directory))
        case .floats: return .floats(proto.floats)
        case .ints: return .ints(proto.ints.map { Int($0) })
        case .strings: return .strings(proto.strings.map { String(decoding: $0, as: UTF8.self) })
        default:
            // Old exporters leave `type` unset; infer it from the field that is filled.
            if proto.type == .undefined {
                if !proto.ints.isEmpty { return .ints(proto.ints.map { Int($0) }) }
                if !proto.floats.isEmpty { return .floats(proto.floats) }
                if proto.hasT { return .tensor(try decodeTensor(proto.t, directory: directory)) }
                if !proto.s.isEmpty { return .string(String(decoding: proto.s, as: UTF8.self)) }
                if proto.i != 0 { return .int(Int(proto.i)) }
                if proto.f != 0 { return .float(proto.f) }
            }
            return .other("\(proto.type)")
        }
    }

    /// Decodes a TensorProto's elements (raw_data, typed fields or external data) into a host tensor.
    static func decodeTensor(_ proto: Onnx_TensorProto, directory: String?) throws -> HostTensor {
        let code = Int(proto.dataType)
        guard let dtype = DType(rawValue: code) else {
            throw EngineError.invalidModel("tensor '\(proto.name)' has element type \(DType.onnxName(code)), which the engine does not support")
        }
        let shape = proto.dims.map { Int($0) }
        let byteCount = try TensorSize.bytes(shape, dtype, "tensor '\(proto.name)'")
        let count = byteCount / dtype.size
        if proto.dataLocation == .external {
            let bytes = try readExternal(proto, byteCount: byteCount, directory: directory)
            return bytes.withUnsafeBytes { HostTensor(dtype: dtype, shape: shape, copying: $0) }
        }
        if !proto.rawData.isEmpty || count == 0 {
            guard proto.rawData.count == byteCount else {
                throw EngineError.invalidModel("tensor '\(proto.name)': raw_data has \(proto.rawData.count) bytes, shape \(shape) of \(dtype) needs \(byteCount)")
            }
            return proto.rawData.withUnsafeBytes { HostTensor(dtype: dtype, shape: shape, copying: $0) }
        }
        // The typed field must hold every element: checked before the tensor is allocated.
        func filled<Source, Element>(_ values: [Source], field: String, _ convert: (Source) -> Element) throws -> HostTensor {
            guard values.count == count else {
                throw EngineError.invalidModel("tensor '\(proto.name)': \(field) has \(values.count) values, shape \(shape) needs \(count)")
            }
            let tensor = HostTensor(dtype: dtype, shape: shape)
            let destination = tensor.pointer(as: Element.self)
            for index in 0..<count { destination[index] = convert(values[index]) }
            return tensor
        }
        switch dtype {
        case .float32: return try filled(proto.floatData, field: "float_data") { $0 }
        case .float64: return try filled(proto.doubleData, field: "double_data") { $0 }
        case .int64: return try filled(proto.int64Data, field: "int64_data") { $0 }
        case .int32: return try filled(proto.int32Data, field: "int32_data") { $0 }
        case .int8: return try filled(proto.int32Data, field: "int32_data") { Int8(truncatingIfNeeded: $0) }
        case .uint8, .bool: return try filled(proto.int32Data, field: "int32_data") { UInt8(truncatingIfNeeded: $0) }
        }
    }

    static func readExternal(_ proto: Onnx_TensorProto, byteCount: Int, directory: String?) throws -> Data {
        var location = "", offset = 0, length = -1
        for entry in proto.externalData {
            switch entry.key {
            case "location": location = entry.value
            case "offset": offset = Int(entry.value) ?? -1
            case "length": length = Int(entry.value) ?? -1
            default: break
            }
        }
        guard let directory, !location.isEmpty, offset >= 0 else {
            throw EngineError.invalidModel("tensor '\(proto.name)': external data without a usable location")
        }
        if location.hasPrefix("/") || location.split(separator: "/").contains("..") {
            throw EngineError.invalidModel("tensor '\(proto.name)': external data location '\(location)' leaves the model directory")
        }
        let path = directory + "/" + location
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw EngineError.invalidModel("tensor '\(proto.name)': cannot open external data file '\(path)'")
        }
        defer { close(descriptor) }
        let wanted = length >= 0 ? length : byteCount
        guard wanted == byteCount else {
            throw EngineError.invalidModel("tensor '\(proto.name)': external length \(wanted) != \(byteCount) bytes for its shape")
        }
        var data = Data(count: wanted)
        let filled = data.withUnsafeMutableBytes { buffer -> Int in
            var done = 0
            while done < wanted {
                let count = pread(descriptor, buffer.baseAddress! + done, wanted - done, off_t(offset + done))
                if count < 0 && errno == EINTR { continue }
                if count < 0 { return -Int(errno) }
                if count == 0 { break }
                done += count
            }
            return done
        }
        if filled < 0 {
            throw EngineError.invalidModel("tensor '\(proto.name)': reading '\(location)': \(String(cString: strerror(Int32(-filled))))")
        }
        guard filled == wanted else {
            throw EngineError.invalidModel("tensor '\(proto.name)': external data file '\(location)' is too short")
        }
        return data
    }
}
