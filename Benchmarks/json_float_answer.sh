#!/usr/bin/env bash
# End-to-end cost of writing floats into a V2 REST JSON answer: the same request to two
# model-server binaries that differ only in how JSONWriter formats a Float (ours: the Ryu
# formatter in Sources/WireFormat/JSON/JSONFloatFormatting.swift; the other built with
# `Float.description` in its place). The model is one MatMul, x[1,1] . W[1,N], so a request
# carries one number and the answer N floats; compute is negligible and the answer's JSON
# is the work. Both answers are checked byte-identical first.
#
#   Benchmarks/json_float_answer.sh SERVER_A SERVER_B [N=150528] [REQUESTS=200] [ROUNDS=3]
# Needs h2load (nghttp2-client), curl and the test venv's onnx (scripts/python-env.sh).
set -euo pipefail
a="$1" b="$2" n="${3:-150528}" requests="${4:-200}" rounds="${5:-3}"
cd "$(dirname "$0")/.."
export MODEL_SERVER_CACHE="${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}"
eval "$(scripts/python-env.sh test 2>/dev/null)"
work="$(mktemp -d /tmp/json-float-answer.XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/big/1"
"$VENV_TEST/bin/python" - "$work/big/1/model.onnx" "$n" <<'PY'
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
path, n = sys.argv[1], int(sys.argv[2])
w = np.random.default_rng(0).standard_normal((1, n)).astype(np.float32)
graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                          [numpy_helper.from_array(w, "w")])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
PY
printf '{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1.0]}]}' > "$work/request.json"

start() { # binary rest_port grpc_port
    "$1" --model_name big --model_base_path "$work/big" --rest_api_port "$2" --port "$3" --compute_threads 1 \
        --rest_api_num_threads 1 > "$work/server-$2.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/v2/models/big/ready" > /dev/null && return; sleep 0.2; done
    echo "server $1 did not become ready" >&2; cat "$work/server-$2.log" >&2; exit 1
}
start "$a" 38571 38572
start "$b" 38581 38582
for port in 38571 38581; do
    curl -sf -H 'content-type: application/json' --data-binary @"$work/request.json" "http://127.0.0.1:$port/v2/models/big/infer" -o "$work/answer-$port.json"
done
cmp "$work/answer-38571.json" "$work/answer-38581.json"
echo "N=$n: answers byte-identical, $(stat -c %s "$work/answer-38571.json") bytes; $requests requests per run, 1 connection"
# Server CPU seconds (user + system) from /proc: less disturbed by other load on a shared
# machine than wall-clock throughput, which the table also shows.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
run() { # label port pid
    local before after
    before="$(cpu "$3")"
    h2load --h1 -c 1 -n "$requests" -d "$work/request.json" -H 'content-type: application/json' \
        "http://127.0.0.1:$2/v2/models/big/infer" > "$work/h2load.txt" 2>&1
    after="$(cpu "$3")"
    awk -v label="$1" -v cpu="$(echo "$before $after $requests" | awk '{ printf "%.3f", ($2 - $1) * 1000 / $3 }')" '
        /^finished in/ { rps = $4 } /^time for request:/ { mean = $6 }
        /^status codes:/ { ok = $3 } END { printf "%-30s %9s req/s  mean %9s  server CPU %8s ms/request  2xx %s\n", label, rps, mean, cpu, ok }' "$work/h2load.txt"
}
for _ in $(seq "$rounds"); do
    run "A $(basename "$a")" 38571 "${pids[0]}"
    run "B $(basename "$b")" 38581 "${pids[1]}"
done
