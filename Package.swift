// swift-tools-version: 6.1
import PackageDescription

// One thin C target per C library; Swift modules follow the layers in README.md.
let package = Package(
    name: "swift-model-server",
    products: [
        .executable(name: "model-run", targets: ["model-run"]),
        .executable(name: "model-server", targets: ["model-server"]),
        .executable(name: "model-client", targets: ["model-client"]),
        // For the fuzzing package (Tests/Fuzz), which depends on this one by path.
        .library(name: "Transport", targets: ["Transport"]),
        .library(name: "InferenceProtocol", targets: ["InferenceProtocol"]),
        .library(name: "Serving", targets: ["Serving"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "ImageCodec", targets: ["ImageCodec"]),
        .library(name: "ONNXProto", targets: ["ONNXProto"]),
    ],
    dependencies: [
        // No package traits: the default BinaryDelimitedStreams trait imports Foundation
        // (Input/OutputStream), which links ICU's 34 MB of data into every static binary.
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Optimised in debug builds too: the CRC-32C loops check every checkpoint byte at load.
        .target(name: "CLinuxShims", cSettings: [.unsafeFlags(["-O2"])]),
        // The one lock and condition type of every Swift layer (heap-allocated pthread objects).
        .target(name: "Locks"),
        // Integer GEMM kernels of the quantized operators (vpdpbusd / vpmaddwd intrinsics, each
        // path behind a function-level target attribute and a run-time CPU check).
        .target(name: "CQuantKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(
            name: "ONNXProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // Built for AVX-512; the engine calls it only after checking the CPU at run time.
        .target(
            name: "AVX512Kernels",
            dependencies: ["CLinuxShims"],
            swiftSettings: [.unsafeFlags(["-target-cpu", "skylake-avx512"])]
        ),
        // The direct convolution and row kernels again (the same sources, linked), built for
        // AVX2 + FMA (x86-64-v3) for CPUs without AVX-512; called after the run-time check.
        .target(
            name: "AVX2Kernels",
            dependencies: ["CLinuxShims"],
            swiftSettings: [.unsafeFlags(["-target-cpu", "haswell"]), .define("AVX2_KERNELS")]
        ),
        .target(
            name: "Engine",
            dependencies: ["COpenBLAS", "ONNXProto", "TensorFlowProto", "AVX512Kernels", "AVX2Kernels", "CLinuxShims",
                           "CQuantKernels", "Locks"]
        ),
        // TensorFlow's own messages (graphs, SavedModel, tensors, tf.Example): read by the
        // engine's SavedModel frontend and carried by the TF Serving protocol.
        .target(
            name: "TensorFlowProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(
            name: "ServingProto",
            dependencies: ["TensorFlowProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // Wire formats with no dependency: JSON, NPY, base64, percent-encoding, gRPC framing.
        .target(name: "WireFormat"),
        .target(name: "Transport", dependencies: ["CLinuxShims", "CNGHTTP2", "CZlib", "Locks", "WireFormat"]),
        .target(name: "ImageCodec", dependencies: ["CTurboJPEG", "AVX2Kernels", "CLinuxShims", "Locks"]),
        .executableTarget(name: "image-bench", dependencies: ["ImageCodec"]),
        // The JSON tensor path against Foundation's decoders (BENCHMARKS.md, "Wire formats").
        .executableTarget(name: "wireformat-bench", dependencies: ["WireFormat"]),
        .target(name: "Serving", dependencies: ["Engine", "ImageCodec", "Locks", "ServingProto", "TensorFlowProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "InferenceProtocol", dependencies: ["Serving", "WireFormat", "ServingProto", "TensorFlowProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "Workers", dependencies: ["Engine", "Serving", "CLinuxShims", "Locks"]),
        // The Job-side CLI: POSIX sockets only (no Foundation networking, no SwiftNIO); gRPC
        // through libnghttp2's memory API. A library so that model-server can also run it
        // when invoked as model-client (the container image's multi-call binary).
        .target(
            name: "ModelClientCommand",
            dependencies: ["CNGHTTP2", "WireFormat", "ServingProto", "TensorFlowProto", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(name: "model-client", dependencies: ["ModelClientCommand"]),
        .executableTarget(
            name: "model-server",
            dependencies: ["Transport", "InferenceProtocol", "Serving", "Workers", "ModelClientCommand", "WireFormat",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "model-run",
            dependencies: ["Engine", "Workers", "Serving", "WireFormat", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "WireFormatTests", dependencies: ["WireFormat"]),
        .testTarget(name: "TransportTests", dependencies: ["Transport"]),
        .testTarget(name: "WorkersTests", dependencies: ["Workers"]),
        .testTarget(name: "ServingTests", dependencies: ["Serving"]),
        .testTarget(name: "ImageCodecTests", dependencies: ["ImageCodec", "CTurboJPEG"]),
        .testTarget(
            name: "InferenceProtocolTests",
            dependencies: ["InferenceProtocol", "Serving", "WireFormat", "ServingProto", "TensorFlowProto", "ONNXProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .testTarget(
            name: "EngineTests",
            dependencies: ["Engine", "WireFormat", "ONNXProto", "TensorFlowProto", "AVX512Kernels", "CLinuxShims"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
