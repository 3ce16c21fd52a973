import Serving

/// TF Serving's classify and regress answers from a signature's outputs: `classes` (BYTES)
/// and/or `scores` (FP32), [examples, k] or [examples]; `outputs` (FP32), one per example.
enum ExampleResults {
    static let classesAlias = "classes", scoresAlias = "scores", regressionAlias = "outputs"

    static func classifications(_ response: InferResponse, _ version: LoadedVersion) throws(ServingError) -> [[(label: String, score: Float)]] {
        let classes = response.outputs.first { $0.name == classesAlias }
        let scores = response.outputs.first { $0.name == scoresAlias }
        guard classes != nil || scores != nil else {
            throw .invalidInput("the classify signature of \(version.name) has neither a 'classes' nor a 'scores' output")
        }
        let reference = (scores ?? classes)!
        let rows = reference.shape.first ?? 1
        let width = reference.shape.count > 1 ? reference.shape.dropFirst().reduce(1, *) : 1
        var labels: [String]?
        if let classes {
            guard let ranges = BytesElements.ranges(classes.data), ranges.count == rows * width else {
                throw .internalError("the 'classes' output does not match the 'scores' output")
            }
            labels = ranges.map { String(decoding: classes.data[$0], as: UTF8.self) }
        }
        var values: [Float]?
        if let scores {
            guard scores.datatype == .fp32, scores.data.count == rows * width * 4 else { throw .internalError("'scores' must be FP32 [examples, k]") }
            values = scores.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return (0..<rows).map { row in
            (0..<width).map { column in
                let index = row * width + column
                return (labels?[index] ?? "", values?[index] ?? 0)
            }
        }
    }

    static func regressions(_ response: InferResponse, _ version: LoadedVersion) throws(ServingError) -> [Float] {
        guard let output = response.outputs.first(where: { $0.name == regressionAlias }) ?? (response.outputs.count == 1 ? response.outputs.first : nil) else {
            throw .invalidInput("the regress signature of \(version.name) has no 'outputs' output")
        }
        guard output.datatype == .fp32 else { throw .invalidInput("the regression output must be FP32") }
        let values = output.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let rows = output.shape.first ?? values.count
        guard rows > 0, values.count == rows else { throw .invalidInput("the regression output must hold one value per example, shape \(output.shape)") }
        return values
    }
}
