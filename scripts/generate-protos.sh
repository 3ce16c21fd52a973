#!/usr/bin/env bash
# Regenerates the committed Swift code for Protos/*.proto with Debian's protoc and
# swift-protobuf's plugin at the version Package.swift pins (runtime and plugin must match).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*swift-protobuf", exact: "\([0-9.]*\)".*/\1/p' Package.swift)
cache=${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}
plugin_src="$cache/swift-protobuf-$version"
command -v protoc >/dev/null && [ -f /usr/include/google/protobuf/any.proto ] || { echo "protoc or the well-known types missing: apt-get install protobuf-compiler libprotobuf-dev" >&2; exit 1; }
if [ ! -x "$plugin_src/.build/release/protoc-gen-swift" ]; then
  rm -rf "$plugin_src"
  git clone -q --branch "$version" https://github.com/apple/swift-protobuf "$plugin_src"
  swift build -c release --package-path "$plugin_src" --product protoc-gen-swift
fi
gen() { # gen OUTDIR PROTO...
  local out=$1; shift
  protoc --plugin=protoc-gen-swift="$plugin_src/.build/release/protoc-gen-swift" \
    --swift_out="$out" --swift_opt=Visibility=Public \
    --swift_opt=ProtoPathModuleMappings=Protos/module_mappings.asciipb -I Protos "$@"
}
gen Sources/ONNXProto Protos/onnx.proto
# One module for every serving proto, so files import each other (well-known types come
# from protoc's own include directory and map to SwiftProtobuf's types).
# TensorFlow's own messages in one module (the engine reads SavedModels with them); the
# serving protos import them through Protos/module_mappings.asciipb.
gen Sources/TensorFlowProto Protos/tf_types.proto Protos/tf_tensor.proto Protos/tf_graph.proto \
  Protos/tf_object_graph.proto Protos/tf_meta_graph.proto Protos/tf_example.proto
gen Sources/ServingProto Protos/model_server_config.proto Protos/triton_model_config.proto \
  Protos/grpc_service.proto Protos/health.proto \
  Protos/tf_error_codes.proto Protos/tf_serving_apis.proto
echo "generated with protoc $(protoc --version | cut -d' ' -f2), swift-protobuf $version"
