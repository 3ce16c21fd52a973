import FuzzSupport
import Engine
import Glibc

// The SavedModel reader and translator: a version directory's files (saved_model.pb, the
// variables index and data shards, an asset) are a SavedModel (signature, checkpoint
// tensors, the graph translated and planned) or a thrown error, never a crash.
//
// Input: a sequence of files, each [which: 1 byte] [length: 4 bytes LE] [bytes]; `which`
// picks the file name from `names` (a later entry replaces an earlier one).

let names = [
    "saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
    "variables/variables.data-00000-of-00002", "variables/variables.data-00001-of-00002",
    "assets/vocabulary.txt", "fingerprint.pb",
]

nonisolated(unsafe) let base = makeTemporaryDirectory("savedmodel")
nonisolated(unsafe) var serial = 0

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    serial += 1
    let directory = base + "/\(serial)"
    mkdir(directory, 0o755)
    mkdir(directory + "/variables", 0o755)
    mkdir(directory + "/assets", 0o755)
    defer { removeTree(directory) }
    while input.remaining > 0 {
        let name = input.pick(names)
        let length = input.u32()
        writeFile(directory + "/" + name, input.take(length))
    }
    _ = try? SavedModel(directory: directory, options: Model.Options(maxBatchSize: 2, kernels: .blas))
    return 0
}
