import FuzzSupport
@testable import Serving

// The configuration text formats, read as the server reads them (from files): a model's
// config.pbtxt (then its batching configuration and image-input parameters derived as at
// load), TF Serving's model_config_list file, and the batching parameters file. Any text is
// a configuration or a ServingError, never a crash.
//
// Input: [format: 1 byte] [text...]

nonisolated(unsafe) let directory = makeTemporaryDirectory("text")

let modelInputs = [
    LoadedVersion.TensorMetadata(name: "img", datatype: .fp32, shape: [-1, 3, 8, 8]),
    LoadedVersion.TensorMetadata(name: "x", datatype: .fp32, shape: [-1, 2]),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let format = input.byte() % 3
    let text = input.rest()
    switch format {
    case 0:
        writeFile(directory + "/config.pbtxt", text)
        guard let settings = try? ModelSettings.load(directory: directory) else { return 0 }
        let defaults = text.count % 2 == 0 ? nil : BatchingParameters()
        _ = settings.batching(defaults: defaults, maxBatchSize: 8, workers: 2)
        _ = settings.versionPolicy?.select([1, 2, 3, 7])
        _ = try? ImageInput.from(parameters: settings.parameters, inputs: modelInputs)
    case 1:
        writeFile(directory + "/models.config", text)
        guard let sources = try? ModelSource.fromConfigFile(directory + "/models.config") else { return 0 }
        for source in sources { _ = source.policy?.select([1, 2, 3, 7]) }
    default:
        writeFile(directory + "/batching.config", text)
        guard let parameters = try? BatchingParameters.load(path: directory + "/batching.config") else { return 0 }
        _ = ModelSettings().batching(defaults: parameters, maxBatchSize: 8, workers: 2)
    }
    return 0
}
