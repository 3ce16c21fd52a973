#!/usr/bin/env bash
# Keeps the layers of README.md's request flow: fails when a module imports one it must not
# know. SwiftPM lets a target import any module built before it, so Package.swift alone does
# not hold the layers; this does. CI budget: under 1 s.
#
#   WireFormat         imports nothing of the project (wire formats only, no dependency)
#   Engine             nothing of serving, protocols, transport, threads or wire formats
#   Transport          nothing of models, serving or protocols (sockets and HTTP only)
#   ImageCodec         nothing of the engine, serving, protocols or transport
#   Serving            nothing of protocols, transport or sockets
#   Workers            nothing of protocols or transport
#   InferenceProtocol  nothing of transport or sockets (wire formats in, InferRequest out)
set -euo pipefail
cd "$(dirname "$0")/.."

project="Engine|Serving|InferenceProtocol|Transport|Workers|WireFormat|ImageCodec|ModelClientCommand|ONNXProto|TensorFlowProto|ServingProto|AVX512Kernels|AVX2Kernels|CLinuxShims|COpenBLAS|CTurboJPEG|CNGHTTP2|CZlib"
declare -A forbidden=(
    [WireFormat]="$project"
    [Engine]="Serving|InferenceProtocol|Transport|Workers|WireFormat|ImageCodec|ModelClientCommand|ServingProto|CNGHTTP2|CZlib|CTurboJPEG"
    [Transport]="Engine|Serving|InferenceProtocol|Workers|ImageCodec|ModelClientCommand|ONNXProto|TensorFlowProto|ServingProto|COpenBLAS|CTurboJPEG|AVX512Kernels|AVX2Kernels"
    [ImageCodec]="Engine|Serving|InferenceProtocol|Transport|Workers|WireFormat|ModelClientCommand|CNGHTTP2|CZlib"
    [Serving]="InferenceProtocol|Transport|Workers|ModelClientCommand|CNGHTTP2|CZlib"
    [Workers]="InferenceProtocol|Transport|ModelClientCommand|WireFormat|CNGHTTP2|CZlib"
    [InferenceProtocol]="Transport|Workers|ModelClientCommand|CNGHTTP2|CZlib|CLinuxShims"
)
# Socket calls a module without network duties must not make (whole words, as calls).
sockets='\b(socket|bind|listen|accept4?|connect|epoll_create1|epoll_ctl|epoll_wait|getaddrinfo)\('
no_sockets="WireFormat Engine ImageCodec Serving Workers InferenceProtocol"

failures=0
for module in "${!forbidden[@]}"; do
    [ -d "Sources/$module" ] || { echo "check-imports: Sources/$module is missing" >&2; failures=$((failures + 1)); continue; }
    pattern="^[[:space:]]*(@[A-Za-z_]+[[:space:]]+)*import[[:space:]]+((struct|class|enum|protocol|func|var|let|typealias)[[:space:]]+)?(${forbidden[$module]})\b"
    if hits=$(grep -rnE --include='*.swift' "$pattern" "Sources/$module"); then
        echo "$hits" | sed "s/^/check-imports: $module must not import this: /" >&2
        failures=$((failures + $(echo "$hits" | wc -l)))
    fi
done
for module in $no_sockets; do
    if hits=$(grep -rnE --include='*.swift' "$sockets" "Sources/$module" | grep -vE '^[^:]+:[0-9]+:[[:space:]]*///?'); then
        echo "$hits" | sed "s/^/check-imports: $module makes socket calls: /" >&2
        failures=$((failures + $(echo "$hits" | wc -l)))
    fi
done
if [ "$failures" -gt 0 ]; then
    echo "check-imports: $failures layering violation(s)" >&2
    exit 1
fi
echo "check-imports: the layers hold (${#forbidden[@]} modules checked)"
