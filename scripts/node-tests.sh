#!/usr/bin/env bash
# Generate (once) the ONNX backend node-test data that Tests/Fixtures/node_tests.txt lists.
#
#   scripts/node-tests.sh PYTHON
#
# PYTHON is an interpreter with onnx==1.17.0, e.g. a scratch venv:
#   python3 -m venv /tmp/onnx117 && /tmp/onnx117/bin/pip install onnx==1.17.0
# (recent onnx, e.g. 1.23.2, no longer writes node tests with generate-data, hence the pin.)
#
# The data is written by the official command
#   python -m onnx.backend.test.cmd_tools generate-data --clean -o DIR
# into DIR=${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}/onnx-node-tests-1.17.0
# (DIR/node/test_*: 1288 cases, plus DIR/simple and DIR/real). DIR/.stamp records the
# onnx and numpy versions; the data is regenerated only when the stamp is missing or
# differs (numpy can change the last bit of a few expected outputs).
# Progress goes to stderr; stdout gets eval-able lines:
#   ONNX_NODE_TEST_DATA=DIR                      suite node:  DIR/node/CASE
#   ONNX_SHIPPED_TEST_DATA=<site-packages>/onnx/backend/test/data
#                                                suites pytorch-converted, pytorch-operator,
#                                                simple:      .../data/SUITE/CASE
set -euo pipefail

ONNX_VERSION=1.17.0
NODE_CASES=1288
CACHE="${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}"
DIR="$CACHE/onnx-node-tests-$ONNX_VERSION"

log() { echo "node-tests: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 PYTHON   (a python with onnx==$ONNX_VERSION)"
PY="$1"

versions="$("$PY" -c 'import onnx, numpy; print(onnx.__version__, numpy.__version__)')" \
    || die "cannot import onnx and numpy with $PY"
read -r onnx_version numpy_version <<<"$versions"
[[ "$onnx_version" == "$ONNX_VERSION" ]] || die "$PY has onnx $onnx_version, need onnx==$ONNX_VERSION"
SHIPPED="$("$PY" -c 'import os, onnx.backend.test as t; print(os.path.join(os.path.dirname(t.__file__), "data"))')"
for suite in pytorch-converted pytorch-operator simple; do
    [[ -d "$SHIPPED/$suite" ]] || die "missing $SHIPPED/$suite"
done

want="onnx=$onnx_version numpy=$numpy_version cases=$NODE_CASES"
mkdir -p "$CACHE"
# Serialise concurrent callers on the same cache.
exec 9>"$CACHE/.node-tests.lock"
flock 9

if [[ -f "$DIR/.stamp" && "$(cat "$DIR/.stamp")" == "$want" ]]; then
    log "up to date ($DIR)"
else
    log "generating node tests with onnx $onnx_version, numpy $numpy_version ..."
    t0=$SECONDS
    tmp="$DIR.tmp.$$"
    rm -rf -- "$tmp"
    # generate-data lists OUT/node before creating it, so it must exist. --clean only
    # empties OUT/node (already empty) and skips a spurious "cannot be generated" warning.
    mkdir -p "$tmp/node"
    "$PY" -m onnx.backend.test.cmd_tools generate-data --clean -o "$tmp" >&2 \
        || { rm -rf -- "$tmp"; die "generate-data failed"; }
    count="$(find "$tmp/node" -mindepth 1 -maxdepth 1 -type d -name 'test_*' | wc -l)"
    [[ "$count" -eq "$NODE_CASES" ]] || { rm -rf -- "$tmp"; die "expected $NODE_CASES node cases, got $count"; }
    echo "$want" >"$tmp/.stamp"
    rm -rf -- "$DIR"
    mv -- "$tmp" "$DIR"
    log "$count node cases in $((SECONDS - t0))s ($DIR)"
fi

echo "ONNX_NODE_TEST_DATA=$DIR"
echo "ONNX_SHIPPED_TEST_DATA=$SHIPPED"
