import FoundationEssentials
import TensorFlowProto

/// A TensorFlow SavedModel read natively: the `serve` meta graph, its variables and assets,
/// and every signature translated into engine models plus the stages the server runs around
/// them. Loading either succeeds for every signature or throws one error that names what
/// cannot run (unsupported ops, patterns, corrupt files), so nothing fails at request time.
///
///     let saved = try SavedModel(directory: "export/1", options: .init(maxBatchSize: 8))
///     let signature = saved.signatures[saved.defaultSignature]!
public final class SavedModel: Sendable {
    /// By signature name; internal signatures (`__saved_model_init_op`) are left out.
    public let signatures: [String: SavedModelSignature]
    /// `serving_default` when present, else the only (or first by name) signature.
    public let defaultSignature: String
    /// The TF version that wrote the export, when recorded.
    public let tensorflowVersion: String
    /// The meta graph's SignatureDefs exactly as exported (`__saved_model_init_op` included),
    /// what TF Serving's GetModelMetadata answers.
    public let signatureDefs: [String: Tensorflow_SignatureDef]

    /// Whether `directory` holds a SavedModel (a `saved_model.pb`).
    public static func isSavedModel(directory: String) -> Bool {
        FileManager.default.fileExists(atPath: directory + "/saved_model.pb")
    }

    /// `extraFetches`: per signature, graph tensors to add as engine outputs (debugging).
    public init(directory: String, options: Model.Options = Model.Options(), extraFetches: [String: [String]] = [:]) throws {
        let contents = try SavedModelReader(directory: directory)
        try contents.bundle?.verifyAll()
        let builder = try SavedModelSignatureBuilder(contents: contents)
        var signatures: [String: SavedModelSignature] = [:]
        var cache: [String: Model] = [:]
        var failures: [String] = []
        for (name, def) in contents.metaGraph.signatureDef.sorted(by: { $0.key < $1.key }) where !name.hasPrefix("__") {
            do {
                signatures[name] = try builder.build(name: name, signature: def, options: options, cache: &cache,
                                                     extraFetches: extraFetches[name] ?? [])
            } catch let error as EngineError {
                if case .invalidModel(let message) = error {
                    failures.append(message.hasPrefix("signature '") ? message : "signature '\(name)': \(message)")
                } else {
                    failures.append("signature '\(name)': \(error)")
                }
            }
        }
        if !failures.isEmpty { throw EngineError.invalidModel(failures.joined(separator: "; ")) }
        guard !signatures.isEmpty else { throw EngineError.invalidModel("\(directory)/saved_model.pb has no serving signatures") }
        self.signatures = signatures
        defaultSignature = signatures["serving_default"] != nil ? "serving_default" : signatures.keys.sorted()[0]
        tensorflowVersion = contents.metaGraph.metaInfoDef.tensorflowVersion
        signatureDefs = contents.metaGraph.signatureDef
    }
}
