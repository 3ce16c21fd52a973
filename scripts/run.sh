#!/usr/bin/env bash
# The README's run command: installs the build dependencies, builds release binaries and
# serves the shipped digits classifier (models/digits) on REST port ${PORT:-8501}.
# Extra arguments go to model-server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --static-swift-stdlib --product model-server  # as scripts/test.sh builds it
exec .build/release/model-server --model_name digits --model_base_path models/digits \
    --rest_api_port "${PORT:-8501}" "$@"
