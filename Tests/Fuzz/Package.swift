// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets for the server's input paths. A package of its own so that the root
// package's `swift build` / `swift test` never meet executables without `main` (libFuzzer
// supplies it only under `-sanitize=fuzzer`). Built by scripts/fuzz.sh:
//
//     swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing \
//         --package-path Tests/Fuzz --scratch-path .build-fuzz
//
// `-enable-testing` lets the harnesses reach internal entry points (`@testable import`).

// The root package is a path dependency; its identity is its directory's name, whatever the
// checkout is called.
let root = String(Context.packageDirectory.split(separator: "/").dropLast(2).last!)

func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: "fuzz-\(name)",
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: root) },
        path: "Sources/\(name)"
    )
}

let package = Package(
    name: "model-server-fuzz",
    dependencies: [.package(path: "../..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [
            .product(name: "Serving", package: root), .product(name: "InferenceProtocol", package: root),
            .product(name: "ONNXProto", package: root),
        ]),
        fuzzTarget("http1", ["Transport"]),
        fuzzTarget("http2", ["Transport"]),
        fuzzTarget("v2-rest", ["InferenceProtocol", "Serving"]),
        fuzzTarget("tf-rest", ["InferenceProtocol", "Serving"]),
        fuzzTarget("grpc-messages", ["InferenceProtocol", "Serving"]),
        fuzzTarget("text-formats", ["Serving"]),
        fuzzTarget("onnx", ["Engine"]),
        fuzzTarget("savedmodel", ["Engine"]),
        fuzzTarget("jpeg", ["ImageCodec"]),
    ],
    swiftLanguageModes: [.v6]
)
