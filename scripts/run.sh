#!/usr/bin/env bash
# The README's run command: installs the build dependencies, builds release binaries and
# runs the shipped digits model on a sample. (model-server replaces this once it exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product model-run
exec .build/release/model-run models/digits/1/model.onnx --input "${1:-models/digits/samples/digit_7.npy}" \
    --top 3 --labels models/digits/labels.txt "${@:2}"
