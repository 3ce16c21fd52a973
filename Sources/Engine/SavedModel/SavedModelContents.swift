extension SavedModelReader: SavedModelContents {
    func variableValue(node: String, function: String?, capture: Int?) throws -> HostTensor {
        guard let function, let capture else { return try variable(node: node) }
        switch try self.capture(function: function, index: capture) {
        case .variable(let variable): return try value(of: variable)
        case let other:
            throw EngineError.invalidModel("'\(node)' is captured by '\(function)' as \(other), not as a variable")
        }
    }

    func capturedCount(function: String) -> Int {
        metaGraph.objectGraphDef.concreteFunctions[function]?.boundInputs.count ?? 0
    }

    func assetPath(tensorName: String) -> String? {
        assets[tensorName] ?? assets[tensorName + ":0"]
    }
}
