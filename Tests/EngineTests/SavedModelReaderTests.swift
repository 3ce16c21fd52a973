import Foundation
import SwiftProtobuf
import TensorFlowProto
import Testing
@testable import Engine

/// SavedModelReader on the exports TensorFlow 2.15 wrote (Tests/Fixtures/savedmodels, see
/// make_small_savedmodels.py), and on damaged copies of them.
struct SavedModelReaderTests {
    static func reader(_ fixture: String) throws -> SavedModelReader {
        try SavedModelReader(directory: SavedModelManifest.export(fixture))
    }

    static func rawMetaGraph(_ path: String) throws -> Tensorflow_MetaGraphDef {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(path)/saved_model.pb"))
        return try Tensorflow_SavedModel(serializedBytes: data).metaGraphs[0]
    }

    /// Every node (graph and functions) has every attribute its OpDef gives a default, and
    /// nodes that lacked one before got the OpDef's value; present attributes are untouched.
    @Test(arguments: SavedModelManifest.names) func defaultsMerged(fixture: String) throws {
        let reader = try Self.reader(fixture)
        let raw = try Self.rawMetaGraph(SavedModelManifest.export(fixture))
        func allNodes(_ graph: Tensorflow_GraphDef) -> [Tensorflow_NodeDef] {
            graph.node + graph.library.function.flatMap(\.nodeDef)
        }
        let before = allNodes(raw.graphDef), after = allNodes(reader.graph)
        #expect(before.count == after.count)
        var filled = 0
        for (old, new) in zip(before, after) {
            #expect(old.name == new.name)
            for (name, value) in old.attr { #expect(new.attr[name] == value, "\(new.name).\(name) changed") }
            guard let op = reader.opDefs[new.op] else { continue }
            for attr in op.attr where attr.hasDefaultValue {
                #expect(new.attr[attr.name] != nil, "\(new.name) (\(new.op)) lacks \(attr.name)")
                if old.attr[attr.name] == nil {
                    filled += 1
                    #expect(new.attr[attr.name] == attr.defaultValue)
                }
            }
        }
        // TF2 saves strip default attributes; TF1's builder keeps them.
        #expect((filled > 0) == (fixture != "tf1_graph"), "\(filled) attributes filled")
        #expect(reader.functions.count == raw.graphDef.library.function.count)
        for function in reader.functions.values {
            #expect(function.nodeDef.allSatisfy { node in
                reader.opDefs[node.op].map { op in op.attr.allSatisfy { !$0.hasDefaultValue || node.attr[$0.name] != nil } } ?? true
            })
        }
    }

    @Test func tf1GraphExport() throws {
        let manifest = try SavedModelManifest.load("tf1_graph")
        let reader = try Self.reader("tf1_graph")
        #expect(Array(reader.signatures.keys) == ["serving_default"])
        #expect(reader.signatures["serving_default"]?.inputs["x"]?.name == "x:0")
        #expect(reader.initOp == manifest.init_op)
        #expect(reader.assets.isEmpty)
        #expect(reader.checkpointKeys.isEmpty)
        #expect(reader.bundle?.numShards == 2)
        for value in manifest.written {
            let node = try #require(value.node)
            #expect(reader.variableKeys[node] == value.key, "\(node)")
            let graphNode = try #require(reader.graph.node.first { $0.name == node })
            #expect(graphNode.op == value.op)
            let expected = try manifest.expected(value, fixture: "tf1_graph")
            if let tensor = expected.tensor {
                let actual = try reader.variable(node: node)
                #expect(sameTensor(actual, tensor), "\(node): \(actual) vs \(tensor)")
            } else {
                #expect(try reader.bundle!.strings(reader.variableKeys[node]!) == expected.strings!)
            }
        }
        #expect(engineError { _ = try reader.variable(node: "x") }?.contains("no checkpoint key for variable 'x'") == true)
        #expect(engineError { _ = try reader.capture(function: "f", index: 0) }?.contains("no saved object graph") == true)
    }

    /// The init op: signature __saved_model_init_op, else collection saved_model_main_op, else
    /// legacy_init_op; one naming a missing node is an error.
    @Test func initOpPrecedence() throws {
        let scratch = try ScratchExport("tf1_graph")
        defer { scratch.remove() }
        var model = try Tensorflow_SavedModel(serializedBytes: Data(scratch.read("saved_model.pb")))
        func reread() throws -> String? {
            try scratch.write("saved_model.pb", [UInt8](model.serializedBytes() as Data))
            return try SavedModelReader(directory: scratch.path).initOp
        }
        #expect(try reread() == "legacy_init_op")
        var main = Tensorflow_CollectionDef()
        main.nodeList.value = ["save/restore_all"]
        model.metaGraphs[0].collectionDef["saved_model_main_op"] = main
        #expect(try reread() == "save/restore_all")
        var signature = Tensorflow_SignatureDef()
        var output = Tensorflow_TensorInfo()
        output.name = "save/Const:0"
        signature.outputs["__saved_model_init_op"] = output
        model.metaGraphs[0].signatureDef["__saved_model_init_op"] = signature
        #expect(try reread() == "save/Const")
        #expect(try SavedModelReader(directory: scratch.path).signatures.keys.sorted() == ["serving_default"])
        model.metaGraphs[0].signatureDef["__saved_model_init_op"]!.outputs["__saved_model_init_op"]!.name = "nowhere:0"
        let message = try #require(engineError { _ = try reread() })
        #expect(message.contains("init op 'nowhere'"), "\(message)")
        model.metaGraphs[0].signatureDef["__saved_model_init_op"] = nil
        model.metaGraphs[0].collectionDef["saved_model_main_op"]!.nodeList.value = []
        #expect(engineError { _ = try reread() }?.contains("exactly one op") == true)
    }

    /// The restore graph decides the key: a variable restored from another key reads that key.
    @Test func tf1KeysComeFromTheRestoreGraph() throws {
        let scratch = try ScratchExport("tf1_graph")
        defer { scratch.remove() }
        var model = try Tensorflow_SavedModel(serializedBytes: Data(scratch.read("saved_model.pb")))
        var graph = model.metaGraphs[0].graphDef
        // Swap the first two tensor names of save/RestoreV2 (and the assigned variables' keys with them).
        let index = try #require(graph.node.firstIndex { $0.name == "save/RestoreV2/tensor_names" })
        guard case .tensor(var proto)? = graph.node[index].attr["value"]?.value else { Issue.record("no value"); return }
        let first = proto.stringVal[0], second = proto.stringVal[1]
        proto.stringVal.swapAt(0, 1)
        graph.node[index].attr["value"]!.tensor = proto
        model.metaGraphs[0].graphDef = graph
        try scratch.write("saved_model.pb", [UInt8](model.serializedBytes() as Data))
        let reader = try SavedModelReader(directory: scratch.path)
        let assigned = try #require(graph.node.first { $0.name == "save/Assign" }).input[0]
        #expect(reader.variableKeys[assigned] == String(decoding: second, as: UTF8.self))
        #expect(reader.variableKeys[assigned] != String(decoding: first, as: UTF8.self))
        // The dtype/shape check catches the mismatch between the node and the swapped key.
        #expect(engineError { _ = try reader.variable(node: assigned) } != nil)
    }

    /// Captured inputs of the serving function, resolved through the object graph, equal what
    /// TensorFlow's loader binds to them (recorded by the generator).
    @Test(arguments: ["tf2_module", "keras"]) func tf2Captures(fixture: String) throws {
        let manifest = try SavedModelManifest.load(fixture)
        let expected = try #require(manifest.captures)
        let reader = try Self.reader(fixture)
        #expect(reader.functions[expected.function] != nil)
        let captures = try reader.captures(function: expected.function)
        #expect(captures.count == expected.inputs.count)
        for (index, (capture, record)) in zip(captures, expected.inputs).enumerated() {
            switch (capture, record.kind) {
            case (.variable(let variable), "variable"?):
                let value = try reader.value(of: variable)
                let reference = try manifest.expected(record, fixture: fixture).tensor!
                #expect(sameTensor(value, reference), "capture \(index): \(variable.key)")
                #expect(variable.key.hasSuffix("/.ATTRIBUTES/VARIABLE_VALUE"))
            case (.constant(let operation), "tensor"?):
                let node = try #require(reader.graph.node.first { $0.name == operation })
                let value = try TFTypes.decode(node.attr["value"]!.tensor, what: operation)
                let reference = try manifest.expected(record, fixture: fixture).tensor!
                #expect(value.shape == reference.shape && value.doubles == reference.doubles, "capture \(index): \(operation)")
            case (.resource(_, let creator, let initializer), "resource"?):
                #expect(creator != nil && initializer != nil)
                // The table's initializer captures the vocabulary asset and the table itself.
                let inner = try reader.captures(function: initializer!)
                let assetPath = "\(reader.directory)/assets/vocab.txt"
                #expect(inner.contains(.asset(path: assetPath)), "\(inner)")
                #expect(try String(contentsOfFile: assetPath, encoding: .utf8) == manifest.assets?["vocab.txt"])
            default:
                Issue.record("capture \(index): \(capture) but TensorFlow bound a \(record.kind ?? "?")")
            }
        }
        #expect(engineError { _ = try reader.capture(function: expected.function, index: captures.count) }?.contains("captured inputs") == true)
        #expect(engineError { _ = try reader.capture(function: "nope", index: 0) }?.contains("no concrete function 'nope'") == true)
    }

    @Test func tf2ModuleExport() throws {
        let reader = try Self.reader("tf2_module")
        #expect(Array(reader.signatures.keys) == ["serving_default"])
        #expect(reader.assets == ["asset_path_initializer:0": "\(reader.directory)/assets/vocab.txt"])
        let initOp = try #require(reader.initOp)
        #expect(reader.graph.node.contains { $0.name == initOp })
        #expect(reader.checkpointKeys.count == 4)
        #expect(Set(reader.checkpointKeys.values) == Set(["w", "b", "step", "offsets"].map { "\($0)/.ATTRIBUTES/VARIABLE_VALUE" }))
    }

    @Test func relativeDirectory() throws {
        let fixture = SavedModelManifest.export("keras")
        let relative = fixture.replacingOccurrences(of: FileManager.default.currentDirectoryPath + "/", with: "")
        let reader = try SavedModelReader(directory: relative + "/")
        #expect(reader.directory.hasPrefix("/") && !reader.directory.hasSuffix("/"))
    }

    /// A large export named by SAVEDMODEL_LARGE (e.g. a Keras InceptionV3 saved with
    /// tf.saved_model.save): open, resolve every capture of every signature, read every numeric
    /// checkpoint tensor (each checksummed); prints the times.
    @Test(.enabled(if: Fixtures.environmentDirectory("SAVEDMODEL_LARGE") != nil)) func largeExport() throws {
        let directory = Fixtures.environmentDirectory("SAVEDMODEL_LARGE")!
        let clock = ContinuousClock()
        var reader: SavedModelReader?
        let open = try clock.measure { reader = try SavedModelReader(directory: directory) }
        let bundle = try #require(reader?.bundle)
        var captured = 0
        let resolve = try clock.measure {
            for signature in reader!.signatures.values {
                for output in signature.outputs.values {
                    guard case .name(let name)? = output.encoding,
                          let node = reader!.graph.node.first(where: { $0.name == TFTensorRef(graphInput: name)?.node }),
                          case .func(let f)? = node.attr["f"]?.value else { continue }
                    captured += try reader!.captures(function: f.name).count
                }
            }
        }
        var bytes = 0
        let read = try clock.measure {
            for key in bundle.keys where bundle.entry(key)!.dtype != .dtString { bytes += try bundle.tensor(key).byteCount }
        }
        print("large export: open \(open), \(captured) captures in \(resolve), \(bytes) bytes of \(bundle.keys.count) tensors in \(read)")
        #expect(captured > 0 && bytes > 0)
    }

    // MARK: damaged exports: each an error naming the problem, never a crash

    @Test func tagSets() throws {
        let scratch = try ScratchExport("tf2_module")
        defer { scratch.remove() }
        var model = try Tensorflow_SavedModel(serializedBytes: Data(scratch.read("saved_model.pb")))
        model.metaGraphs[0].metaInfoDef.tags = ["serve", "gpu"]
        var train = model.metaGraphs[0]
        train.metaInfoDef.tags = ["train"]
        model.metaGraphs.append(train)
        try scratch.write("saved_model.pb", [UInt8](model.serializedBytes() as Data))
        let message = try #require(engineError { _ = try SavedModelReader(directory: scratch.path) })
        #expect(message.contains("no meta graph is tagged exactly {\"serve\"}"), "\(message)")
        #expect(message.contains("{\"gpu\", \"serve\"}, {\"train\"}"), "\(message)")
        // The serve graph need not be the first.
        model.metaGraphs[1].metaInfoDef.tags = ["serve"]
        try scratch.write("saved_model.pb", [UInt8](model.serializedBytes() as Data))
        #expect(try SavedModelReader(directory: scratch.path).signatures.count == 1)
    }

    @Test func assetNames() throws {
        for (name, expected) in [("../vocab.txt", "plain file name"), ("sub/vocab.txt", "plain file name"), ("..", "plain file name"),
                                 ("", "plain file name"), ("missing.txt", "is missing")] {
            let scratch = try ScratchExport("tf2_module")
            defer { scratch.remove() }
            var model = try Tensorflow_SavedModel(serializedBytes: Data(scratch.read("saved_model.pb")))
            model.metaGraphs[0].assetFileDef[0].filename = name
            try scratch.write("saved_model.pb", [UInt8](model.serializedBytes() as Data))
            let message = try #require(engineError { _ = try SavedModelReader(directory: scratch.path) }, "\(name)")
            #expect(message.contains(expected), "\(name): \(message)")
        }
        let scratch = try ScratchExport("tf2_module")
        defer { scratch.remove() }
        try FileManager.default.removeItem(atPath: "\(scratch.path)/assets/vocab.txt")
        #expect(engineError { _ = try SavedModelReader(directory: scratch.path) }?.contains("assets/vocab.txt") == true)
    }

    @Test func missingFiles() throws {
        let scratch = try ScratchExport("keras")
        defer { scratch.remove() }
        try FileManager.default.removeItem(atPath: "\(scratch.path)/variables/variables.data-00000-of-00001")
        #expect(engineError { _ = try SavedModelReader(directory: scratch.path) }?.contains("variables.data-00000-of-00001") == true)
        try FileManager.default.removeItem(atPath: "\(scratch.path)/saved_model.pb")
        #expect(engineError { _ = try SavedModelReader(directory: scratch.path) }?.contains("saved_model.pb") == true)
    }

    /// A flipped byte in the checkpoint's object graph (a string tensor read at open).
    @Test func damagedObjectGraph() throws {
        let scratch = try ScratchExport("keras")
        defer { scratch.remove() }
        let entry = try #require(try TensorBundle(prefix: scratch.prefix).entry("_CHECKPOINTABLE_OBJECT_GRAPH"))
        try scratch.flip("variables/variables.data-00000-of-00001", at: entry.offset + entry.size / 2)
        let message = try #require(engineError { _ = try SavedModelReader(directory: scratch.path) })
        #expect(message.contains("_CHECKPOINTABLE_OBJECT_GRAPH") && message.contains("checksum"), "\(message)")
    }

    /// A flipped byte in a variable: found when the captured value is read.
    @Test func damagedVariable() throws {
        let scratch = try ScratchExport("keras")
        defer { scratch.remove() }
        let manifest = try SavedModelManifest.load("keras")
        let reader = try SavedModelReader(directory: scratch.path)
        guard case .variable(let variable) = try reader.capture(function: manifest.captures!.function, index: 0) else {
            Issue.record("capture 0 is not a variable"); return
        }
        let entry = try #require(reader.bundle?.entry(variable.key))
        try scratch.flip("variables/variables.data-00000-of-00001", at: entry.offset)
        let damaged = try SavedModelReader(directory: scratch.path)
        let message = try #require(engineError { _ = try damaged.value(of: variable) })
        #expect(message.contains("checksum mismatch for tensor '\(variable.key)'"), "\(message)")
    }

    @Test(arguments: SavedModelManifest.names) func truncatedSavedModel(fixture: String) throws {
        let scratch = try ScratchExport(fixture)
        defer { scratch.remove() }
        let original = try scratch.read("saved_model.pb")
        var lengths = Array(stride(from: 0, to: original.count, by: max(1, original.count / 97)))
        lengths += [original.count - 1, original.count - 2, 1, 2]
        for length in lengths {
            try scratch.write("saved_model.pb", Array(original[..<length]))
            let message = engineError { _ = try SavedModelReader(directory: scratch.path) }
            #expect(message != nil, "truncated to \(length) of \(original.count) bytes")
        }
    }

    /// Random and mutated files: an error or (for mutations a protobuf cannot notice, such as a
    /// changed name) a reader; never a crash.
    @Test func randomBytes() throws {
        let scratch = try ScratchExport("tf2_module")
        defer { scratch.remove() }
        var generator = SystemRandomNumberGenerator()
        let original = try scratch.read("saved_model.pb")
        for round in 0..<200 {
            var bytes: [UInt8]
            if round < 50 {
                bytes = (0..<Int.random(in: 1...4000, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                try scratch.write("saved_model.pb", bytes)
                #expect(engineError { _ = try SavedModelReader(directory: scratch.path) } != nil, "round \(round)")
                continue
            }
            bytes = original
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            try scratch.write("saved_model.pb", bytes)
            if let reader = try? SavedModelReader(directory: scratch.path) {
                // Whatever it resolves must not crash either.
                for signature in reader.signatures.values {
                    for output in signature.outputs.values {
                        guard case .name(let name)? = output.encoding, let node = reader.graph.node.first(where: { $0.name == TFTensorRef(graphInput: name)?.node }),
                              case .func(let f)? = node.attr["f"]?.value else { continue }
                        _ = try? reader.captures(function: f.name)
                    }
                }
            }
        }
    }
}
