#!/usr/bin/env bash
# The project's test command: sets up everything a fresh Debian 12 machine lacks (apt
# packages, pinned Python venvs, the ONNX node-test data, the Keras reference models and the
# TensorFlow SavedModel fixtures,
# all cached under ${MODEL_SERVER_CACHE:-~/.cache/swift-model-server}), builds, and runs
# the Swift tests (debug) and the end-to-end tests (release binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
export MODEL_SERVER_CACHE="${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}"

# Layering (imports) and the .swift-format rules, before anything is built: ~15 s.
scripts/check-imports.sh
scripts/lint.sh

scripts/install-deps.sh
eval "$(scripts/python-env.sh all)"
eval "$(scripts/node-tests.sh "$VENV_TEST/bin/python")"
"$VENV_TF/bin/python" Tests/Fixtures/make_keras_models.py
# TensorFlow SavedModels (TF1 Inception export, Keras 3, TF2 module, broken copies) with
# TensorFlow's answers, made with TF >= 2.16 / Keras 3 (venv-tf2); cached, rebuilt only when
# the generator or the TF/Keras/Pillow versions change.
"$VENV_TF2/bin/python" Tests/Fixtures/make_savedmodels.py
# INT8 InceptionV3/ResNet50/MobileNetV2 (QDQ and QOperator, per-channel and per-tensor) from
# the Keras exports with onnxruntime's quantize_static, calibrated on the cached photos, with
# onnxruntime's answers; cached (about 6 min cold on 2 cores, seconds warm).
"$VENV_TEST/bin/python" Tests/Fixtures/make_quantized_models.py

# --static-swift-stdlib on every release build: it is how the container image's binary is
# built (docker/Dockerfile, docker/build-image.sh), so the end-to-end tests run what ships,
# and one flag for all products avoids recompiling every module when it changes.
swift build -c release --static-swift-stdlib --product model-run
swift build -c release --static-swift-stdlib --product model-server
swift build -c release --static-swift-stdlib --product model-client
swift build -c release --static-swift-stdlib --product image-bench
export IMAGE_BENCH="$PWD/.build/release/image-bench"
export MODEL_RUN="$PWD/.build/release/model-run"
export MODEL_SERVER="$PWD/.build/release/model-server"
export MODEL_CLIENT="$PWD/.build/release/model-client"
export KERAS_MODELS="$MODEL_SERVER_CACHE/models"
export SAVED_MODELS="$MODEL_SERVER_CACHE/savedmodels"
export ONNX_NODE_TESTS="$ONNX_NODE_TEST_DATA/node"
export ONNX_SHIPPED_TESTS="$ONNX_SHIPPED_TEST_DATA"
# The TF Serving gRPC client tests run in a child pytest under venv-tf (conftest.py).
export VENV_TF_PYTHON="$VENV_TF/bin/python"

# Deployment: the Dockerfile, the Kubernetes base and overlay and the KServe objects
# checked offline (seconds), then the image built and run as a hardened pod (docker/
# test-image.sh: about 1 min with a cached base, 3-4 min when the base is debootstrapped).
docker/check-deploy.sh
docker/test-image.sh

swift test
"$VENV_TEST/bin/python" -m pytest -q Tests/PythonTests

# A short soak of the release server (Benchmarks/soak.py; the 1M-request run is in
# BENCHMARKS.md): 100k mixed requests with a hot reload every 5 s, no unexpected answer,
# RSS within 10% of after warm-up. About 20-40 s.
"$VENV_TEST/bin/python" Benchmarks/soak.py --server "$MODEL_SERVER" --requests 100000 --warmup 20000 --reload-seconds 5

# The sanitizer gate (scripts/sanitizers.sh): model-server built with ThreadSanitizer and with
# AddressSanitizer (debug, own scratch paths .build-tsan/.build-asan), each under 45 s of
# mixed load with hot reloads and vanishing clients; any sanitizer report fails CI. Budget:
# about 12 min cold (two debug builds, ~5 min each on 2 CPUs) and 2-3 min warm.
scripts/sanitizers.sh

# Coverage-guided fuzzing (libFuzzer + ASan/LSan): every target of Tests/Fuzz from
# its committed seeds (15 s each), failing on any crash, leak, timeout or harness invariant. Budget:
# the sanitized build of Tests/Fuzz into .build-fuzz (~5 min on 2 free cores, ~11 min when
# shared) + 9 targets x ~17 s = ~8-14 min. Long runs: BENCHMARKS.md, "Reliability: fuzzing".
scripts/fuzz.sh all 15
