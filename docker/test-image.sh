#!/usr/bin/env bash
# Container test: builds the image (docker/build-image.sh) and runs it the way the Kubernetes
# manifests run it: read-only root filesystem (no tmpfs either), every capability dropped,
# no new privileges, uid 65534, one CPU. Checks health, V1 and V2 predictions, the Job
# (model-client from the same image, as a second container, over REST and gRPC against the
# first through a "model-server" host name on podman's own bridge network), the KServe
# runtime's arguments on a model mounted at /mnt/models, and SIGTERM: readiness drops during
# the drain delay, then exit 0 within the grace period.
#
#   docker/test-image.sh [--no-build]
#
# Environment: PYTHON (with PyYAML; default: the deploy venv from scripts/python-env.sh),
# TEST_IMAGE_BUDGET_SECONDS (default 900: the whole script is killed past it).
# Prints one line per check and "N passed, N failed" last; exit status 1 if any failed.
# Traffic: 127.0.0.1 (published ports) and podman's bridge between the two containers only.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BUDGET="${TEST_IMAGE_BUDGET_SECONDS:-900}"
if [[ -z "${TEST_IMAGE_UNDER_TIMEOUT:-}" ]]; then
    TEST_IMAGE_UNDER_TIMEOUT=1 exec timeout --signal=TERM --kill-after=30 "$BUDGET" "$0" "$@"
fi
IMAGE="${IMAGE:-localhost/swift-model-server:dev}"
PODMAN=(podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs)
# Plain `podman run` fails here on the default rlimits (nproc/nofile above the hard limits
# of the session) and on hybrid cgroups with systemd; these are explicit.
RUN=("${PODMAN[@]}" run --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
HARDENED=(--read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges
          --user 65534:65534 --cpus 1 --memory 1g --pids-limit 256)
SUFFIX="$$"
SERVER="msd-server-$SUFFIX"
KSERVE="msd-kserve-$SUFFIX"
WORK="$(mktemp -d)"
passed=0 failed=0
t_start=$SECONDS

log() { echo "test-image: $*" >&2; }
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
check() {  # check NAME COMMAND...: pass when the command succeeds
    local name="$1"; shift
    local output
    if output="$("$@" 2>&1)"; then pass "$name"; else fail "$name" "$(printf '%s' "$output" | tail -5)"; fi
}
cleanup() {
    "${PODMAN[@]}" rm -f --ignore -t 0 "$SERVER" "$KSERVE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
summary() {
    echo "container test: $((SECONDS - t_start)) s (image build ${build_seconds:-0} s)"
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]]
}

if [[ -z "${PYTHON:-}" ]]; then
    eval "$(scripts/python-env.sh deploy)"
    PYTHON="$VENV_DEPLOY/bin/python"
fi

# --- image ---------------------------------------------------------------------------------
build_seconds=0
if [[ "${1:-}" != --no-build ]]; then
    t0=$SECONDS
    if ! docker/build-image.sh >"$WORK/build.out"; then fail "image builds"; summary; exit 1; fi
    build_seconds=$((SECONDS - t0))
    pass "image builds ($build_seconds s)"
fi
"${PODMAN[@]}" image inspect "$IMAGE" >"$WORK/image.json" || { fail "image exists"; summary; exit 1; }
check "image config: user 65534, ports 8500/8501, TF Serving env, OCI labels, size <= 150 MB" \
    "$PYTHON" - "$WORK/image.json" <<'EOF'
import json, sys
image = json.load(open(sys.argv[1]))[0]
config = image["Config"]
problems = []
if config.get("User") != "65534:65534": problems.append(f"user {config.get('User')!r}")
if set(config.get("ExposedPorts", {})) != {"8500/tcp", "8501/tcp"}: problems.append(f"ports {config.get('ExposedPorts')}")
env = dict(item.split("=", 1) for item in config.get("Env", []))
if env.get("MODEL_NAME") != "digits" or env.get("MODEL_BASE_PATH") != "/models": problems.append(f"env {env}")
labels = config.get("Labels") or {}
for key in ("title", "description", "version", "revision", "created", "base.name"):
    if not labels.get("org.opencontainers.image." + key): problems.append("missing label " + key)
size = image["Size"]
print(f"image size {size / 1e6:.1f} MB")
if size > 150_000_000: problems.append(f"size {size / 1e6:.1f} MB > 150 MB")
if problems: sys.exit("; ".join(problems))
EOF

# --- the model-server pod, hardened -------------------------------------------------------
DRAIN=2 GRACE=10
"${RUN[@]}" -d --name "$SERVER" "${HARDENED[@]}" -p 127.0.0.1::8501 -p 127.0.0.1::8500 "$IMAGE" \
    --log_format=json --drain_delay_seconds=$DRAIN --shutdown_grace_seconds=$GRACE >/dev/null \
    || { fail "server container starts"; summary; exit 1; }
REST="$("${PODMAN[@]}" port "$SERVER" 8501/tcp)"
SERVER_IP="$("${PODMAN[@]}" inspect -f '{{.NetworkSettings.IPAddress}}' "$SERVER")"
wait_ready() {  # wait_ready HOST:PORT SECONDS
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://$1/v2/health/ready")" == 200 ]] && return 0
        sleep 0.2
    done
    return 1
}
if wait_ready "$REST" 30; then pass "ready on $REST (REST 8501 published on loopback)"; else
    fail "ready within 30 s" "$("${PODMAN[@]}" logs "$SERVER" 2>&1 | tail -5)"; summary; exit 1; fi

status_of_pid1() { "${PODMAN[@]}" exec "$SERVER" cat /proc/1/status; }
check "hardened: uid 65534, no capabilities, no_new_privs, read-only root" bash -c '
    status="$1"; inspect="$2"
    grep -q "^Uid:[[:space:]]*65534[[:space:]]65534" <<<"$status" || { echo "uid: $(grep ^Uid <<<"$status")"; exit 1; }
    for cap in CapPrm CapEff CapBnd; do grep -q "^$cap:[[:space:]]*0000000000000000" <<<"$status" || { grep "^$cap" <<<"$status"; exit 1; }; done
    grep -q "^NoNewPrivs:[[:space:]]*1" <<<"$status" || { echo "NoNewPrivs not set"; exit 1; }
    [[ "$inspect" == true ]] || { echo "ReadonlyRootfs=$inspect"; exit 1; }' _ \
    "$(status_of_pid1)" "$("${PODMAN[@]}" inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$SERVER")"
check "root filesystem is not writable (not even /tmp)" bash -c \
    '! "$@" exec '"$SERVER"' sh -c "touch /tmp/x || touch /x" 2>/dev/null' _ "${PODMAN[@]}"
check "--cpus 1: one compute thread (startup log)" bash -c \
    '"$@" logs '"$SERVER"' 2>&1 | grep -q "\"level\":\"info\",\"message\":\"model-server: REST listening on .* 1 compute threads"' _ "${PODMAN[@]}"

# --- predictions ----------------------------------------------------------------------------
"$PYTHON" - "$ROOT/models/digits/samples" "$WORK" <<'EOF'
import json, struct, sys, pathlib
samples, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def load_npy(path):  # float32, C order, version 1 header
    data = path.read_bytes()
    header_length = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + header_length].decode()
    assert "'<f4'" in header and "False" in header, header
    payload = data[10 + header_length:]
    return list(struct.unpack(f"<{len(payload) // 4}f", payload))
seven, three = load_npy(samples / "digit_7.npy"), load_npy(samples / "digit_3.npy")
(work / "v1.json").write_text(json.dumps({"instances": [[[seven[r * 8:(r + 1) * 8] for r in range(8)]]]}))
(work / "v2.json").write_text(json.dumps({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": three}]}))
EOF
check "V1 predict (TF Serving REST): digit 7" bash -c '
    answer="$(curl -sf -m 10 -X POST "http://$1/v1/models/digits:predict" -d @"$2")" || exit 1
    echo "$answer"; "$3" -c "import json,sys; a=json.loads(sys.argv[1]); assert a[\"predictions\"][0][\"classes\"][0] == \"7\", a" "$answer"' \
    _ "$REST" "$WORK/v1.json" "$PYTHON"
check "V2 predict (Open Inference Protocol REST): digit 3" bash -c '
    answer="$(curl -sf -m 10 -X POST "http://$1/v2/models/digits/infer" -H "Content-Type: application/json" -d @"$2")" || exit 1
    echo "$answer"
    "$3" -c "
import json, sys
outputs = {o[\"name\"]: o for o in json.loads(sys.argv[1])[\"outputs\"]}
assert outputs[\"classes\"][\"data\"][0] == \"3\", outputs" "$answer"' _ "$REST" "$WORK/v2.json" "$PYTHON"
check "V1 predict with a raw JPEG body: digit 3" bash -c '
    curl -sf -m 10 -X POST -H "Content-Type: image/jpeg" --data-binary @"$2" "http://$1/v1/models/digits:predict" \
    | grep -q "\"classes\":\[\"3\""' _ "$REST" "$ROOT/models/digits/samples/digit_3.jpg"
check "/metrics exports model_server_queue_size{model=\"digits\",version=\"1\"} (the HPA's Pods metric)" bash -c \
    'curl -sf -m 5 "http://$1/metrics" | grep -q "^model_server_queue_size{model=\"digits\",version=\"1\"} "' _ "$REST"

# --- the Job: model-client from the same image, a second container -------------------------
JOB=("${RUN[@]}" --rm "${HARDENED[@]}" --add-host "model-server:$SERVER_IP" "$IMAGE")
check "Job over REST (V2, JPEGs): model-client --server model-server:8501" bash -c '
    out="$("$@" model-client --server model-server:8501 --model digits /models/digits/samples/digit_4.jpg /models/digits/samples/digit_8.jpg)" || exit 1
    echo "$out"; [[ "$(grep -A1 "digit_4.jpg:" <<<"$out" | tail -1)" == "4 "* && "$(grep -A1 "digit_8.jpg:" <<<"$out" | tail -1)" == "8 "* ]]' \
    _ "${JOB[@]}"
check "Job over gRPC (h2c on 8500): model-client --protocol grpc" bash -c '
    out="$("$@" model-client --server model-server:8500 --protocol grpc --model digits --input image=/models/digits/samples/digit_5.npy)" || exit 1
    echo "$out"; [[ "$(head -1 <<<"$out")" == "5 "* ]]' _ "${JOB[@]}"
check "Job fails (exit 1) on an unknown model" bash -c \
    '"$@" model-client --server model-server:8501 --model nope /models/digits/samples/digit_4.jpg; [[ $? -eq 1 ]]' _ "${JOB[@]}"

# --- KServe: the ClusterServingRuntime's command and arguments, model at /mnt/models --------
mkdir -p "$WORK/mnt-models/1"
cp models/digits/1/model.onnx "$WORK/mnt-models/1/"
cp models/digits/config.pbtxt models/digits/labels.txt "$WORK/mnt-models/"
chmod -R a+rX "$WORK"
mapfile -t KSERVE_CMD < <("$PYTHON" - docker/kserve-runtime.yaml <<'EOF'
import sys, yaml
runtime = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "ClusterServingRuntime")
container = runtime["spec"]["containers"][0]
for word in container["command"] + container["args"]:
    print(word.replace("{{.Name}}", "digits"))
EOF
)
if ((${#KSERVE_CMD[@]})) && "${RUN[@]}" -d --name "$KSERVE" "${HARDENED[@]}" -p 127.0.0.1::8080 \
        -v "$WORK/mnt-models:/mnt/models:ro" --entrypoint "${KSERVE_CMD[0]}" "$IMAGE" "${KSERVE_CMD[@]:1}" >/dev/null; then
    KREST="$("${PODMAN[@]}" port "$KSERVE" 8080/tcp)"
    if wait_ready "$KREST" 30; then
        check "KServe runtime arguments: V2 ready and V1 predict on 8080 (/mnt/models/1/model.onnx)" bash -c \
            'curl -sf -m 10 -X POST "http://$1/v1/models/digits:predict" -d @"$2" | grep -q "\"classes\":\[\"7\""' _ "$KREST" "$WORK/v1.json"
    else
        fail "KServe runtime container ready" "$("${PODMAN[@]}" logs "$KSERVE" 2>&1 | tail -5)"
    fi
    "${PODMAN[@]}" rm -f -t 0 "$KSERVE" >/dev/null 2>&1
else
    fail "KServe runtime container starts"
fi
# A bare model file in the storage URI (/mnt/models/model.onnx, KServe's documented ONNX
# layout) is served as version 1.
mkdir -p "$WORK/bare" && cp models/digits/1/model.onnx "$WORK/bare/model.onnx" && chmod -R a+rX "$WORK/bare"
if ((${#KSERVE_CMD[@]})) && "${RUN[@]}" -d --name "$KSERVE" "${HARDENED[@]}" -p 127.0.0.1::8080 -v "$WORK/bare:/mnt/models:ro" \
        --entrypoint "${KSERVE_CMD[0]}" "$IMAGE" "${KSERVE_CMD[@]:1}" >/dev/null; then
    KREST="$("${PODMAN[@]}" port "$KSERVE" 8080/tcp)"
    if wait_ready "$KREST" 30; then
        check "bare /mnt/models/model.onnx served as version 1 (V2 infer on versions/1)" bash -c '
            curl -sf -m 10 -X POST "http://$1/v2/models/digits/versions/1/infer" -H "Content-Type: application/json" -d @"$2" \
            | grep -q "\"name\":\"logits\""' _ "$KREST" "$WORK/v2.json"
    else
        fail "bare /mnt/models/model.onnx is served" "$("${PODMAN[@]}" logs "$KSERVE" 2>&1 | tail -3)"
    fi
    "${PODMAN[@]}" rm -f -t 0 "$KSERVE" >/dev/null 2>&1
else
    fail "bare-layout container starts"
fi

# --- SIGTERM: not ready during the drain delay, then drained, exit 0 within the grace ----------
t0=$(date +%s%3N)
"${PODMAN[@]}" kill -s TERM "$SERVER" >/dev/null
sleep 0.5
code="$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://$REST/v2/health/ready")"
if [[ "$code" == 503 ]]; then pass "SIGTERM: readiness 503 during the ${DRAIN} s drain delay, still answering"
else fail "SIGTERM: readiness during the drain delay" "HTTP $code"; fi
exit_code="$(timeout $((DRAIN + GRACE + 5)) "${PODMAN[@]}" wait "$SERVER")"
elapsed_ms=$(( $(date +%s%3N) - t0 ))
check "SIGTERM: exit 0 after $elapsed_ms ms (drain ${DRAIN} s + grace ${GRACE} s)" bash -c \
    '[[ "$1" == 0 ]] && (( $2 <= $3 * 1000 )) || { echo "exit code ${1:-none} after $2 ms"; exit 1; }' \
    _ "$exit_code" "$elapsed_ms" "$((DRAIN + GRACE))"
check "SIGTERM: log says draining then stopped (JSON lines)" bash -c \
    '"$@" logs '"$SERVER"' 2>&1 | tail -3 | grep -q "\"message\":\"model-server: stopped\""' _ "${PODMAN[@]}"

summary
