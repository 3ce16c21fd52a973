import FoundationEssentials
import Glibc

/// Post-processing that turns a score tensor [batch, classes] into classes: the classic TF
/// Serving Inception outputs (`classes` BYTES [batch, k] and `scores` FP32 [batch, k]) when
/// the model's config asks for top-k, and the V2 classification extension
/// (`"classification": k` on a requested output: BYTES "score:index[:label]").
public struct Classification: Sendable {
    /// Names of the top-k outputs.
    public static let classesOutput = "classes", scoresOutput = "scores"

    /// The float output that holds per-class scores or logits.
    public var output: String
    /// Apply softmax first (the model outputs logits).
    public var softmax: Bool
    /// Top-k answered as `classes` and `scores` outputs instead of the raw scores; nil: off.
    public var topK: Int?
    public var labels: [String]
    /// Output names of the top-k answer (a TF signature's own aliases).
    public var classesName = Classification.classesOutput
    public var scoresName = Classification.scoresOutput
    /// TF's lookup-table default for indices without a label.
    public var missingLabel: String?

    /// Reads the config.pbtxt parameters `classification_output`, `softmax` ("true"),
    /// `top_k` and the output's `label_filename`. Nil when `classification_output` is absent
    /// and no output has labels.
    public static func from(settings: ModelSettings, labels: [String: [String]], outputs: [String]) -> Classification? {
        let named = settings.parameters["classification_output"]
        guard let output = named ?? labels.keys.sorted().first ?? (settings.parameters["top_k"] != nil ? outputs.first : nil) else { return nil }
        return Classification(output: output, softmax: settings.parameters["softmax"]?.lowercased() == "true",
                              topK: settings.parameters["top_k"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil },
                              labels: labels[output] ?? [])
    }

    /// Per row, the `k` best (class index, score), best first.
    func top(_ tensor: InferTensor, k: Int, applySoftmax: Bool) -> [[(index: Int, score: Float)]] {
        guard tensor.datatype == .fp32, tensor.shape.count >= 1 else { return [] }
        let rows = tensor.shape.count == 1 ? 1 : tensor.shape[0]
        let classes = tensor.elementCount / max(rows, 1)
        return tensor.data.withUnsafeBytes { raw -> [[(Int, Float)]] in
            let values = raw.bindMemory(to: Float.self)
            return (0..<rows).map { row in
                var scores = Array(values[row * classes ..< (row + 1) * classes])
                if applySoftmax {
                    let peak = scores.max() ?? 0
                    var sum: Float = 0
                    for i in scores.indices { scores[i] = expf(scores[i] - peak); sum += scores[i] }
                    for i in scores.indices { scores[i] /= sum }
                }
                let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
                return order.prefix(min(k, classes)).map { ($0, scores[$0]) }
            }
        }
    }

    func label(_ index: Int) -> String? { index < labels.count && !labels[index].isEmpty ? labels[index] : nil }

    /// `classes` and `scores` outputs for `tensor`.
    func topKOutputs(_ tensor: InferTensor, k: Int) -> [InferTensor] {
        let best = top(tensor, k: k, applySoftmax: softmax)
        var classes: [UInt8] = [], scores: [UInt8] = []
        let width = best.first?.count ?? 0
        for row in best {
            for (index, score) in row {
                BytesElements.append((label(index) ?? missingLabel ?? String(index)).utf8, to: &classes)
                withUnsafeBytes(of: score) { scores.append(contentsOf: $0) }
            }
        }
        return [InferTensor(name: classesName, datatype: .bytes, shape: [best.count, width], data: classes),
                InferTensor(name: scoresName, datatype: .fp32, shape: [best.count, width], data: scores)]
    }

    /// The V2 classification extension's BYTES tensor "score:index[:label]" [batch, k].
    func extensionOutput(_ tensor: InferTensor, k: Int) -> InferTensor {
        let best = top(tensor, k: k, applySoftmax: softmax)
        var data: [UInt8] = []
        for row in best {
            for (index, score) in row {
                var text = "\(score):\(index)"
                if let name = label(index) { text += ":" + name }
                BytesElements.append(text.utf8, to: &data)
            }
        }
        let batched = tensor.shape.count > 1
        return InferTensor(name: tensor.name, datatype: .bytes, shape: batched ? [best.count, best.first?.count ?? 0] : [best.first?.count ?? 0], data: data)
    }
}
